#!/usr/bin/env bash
# Default English recipe: data preparation (and later training, evaluation, export).
#
#   bash recipes/default_en/prepare.sh [--stage N] [--stop-stage M]
#
# Stages (each is skipped when WORK/.done.<stage> exists; delete it to redo):
#   1  text corpus        -> WORK/text/{train,test,lm_train}.txt
#   2  synthetic speech   -> WORK/synth/wav/, WORK/manifests/synth_{train,test,unseen_voice}.jsonl
#   3  real manifests     -> WORK/manifests/{so762_train,so762_dev,fsdd_train,fsdd_test,real_en}.jsonl
#   4  train              -> WORK/exp/{best,model,last}.pt, log.jsonl, curve.png   (conf: CONF)
#   5  LM + evaluation    -> WORK/lm.arpa, WORK/eval_{greedy,beam}.{txt,tsv}
#   6  export             -> WORK/default_en.pt (+ .onnx, .int8.ts)
#
# Knobs (environment): WORK, DATA, PYTHON, CONF, NUM_SYNTH (train utterances to synthesise), NUM_TEST, NUM_UNSEEN,
# NJ (parallel jobs), NPROC (training processes: DDP over gloo, one thread each), SEED.
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
CONF=${CONF:-$RECIPE/conf/gru3x320.json}
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
    --num-train "$NUM_SYNTH" --num-test "$NUM_TEST" --num-unseen "$NUM_UNSEEN" --nj "$NJ" --seed "$SEED"
  done_stage 2
fi

if run_stage 3 "real speech manifests from $DATA"; then
  $PYTHON $RECIPE/local/real_manifests.py "$DATA" "$WORK/manifests"
  done_stage 3
fi

if run_stage 4 "train ($CONF)"; then
  # real speech is weighted up (speechocean762 x3, fsdd x2) so that 9 h of synthetic voices do not drown it
  M=$WORK/manifests
  train=($PYTHON -m asr.train)
  if [ "$NPROC" -gt 1 ]; then
    export OMP_NUM_THREADS=1
    train=($PYTHON -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m asr.train)
  fi
  "${train[@]}" --config "$CONF" --out "$WORK/exp" --resume \
    --train "$M/synth_train.jsonl" "$M/so762_train.jsonl:3" "$M/fsdd_train.jsonl:2" \
    --valid "$M/so762_dev.jsonl" "$M/synth_test.jsonl"
  done_stage 4
fi

if run_stage 5 "language model and evaluation"; then
  # a word 3-gram from the synthetic corpus' training text and speechocean762's training transcripts
  cat "$WORK/text/lm_train.txt" <($PYTHON -c "import json,sys; [print(json.loads(l)['text']) for l in open(sys.argv[1])]" "$WORK/manifests/so762_train.jsonl") > "$WORK/text/lm_all.txt"
  $PYTHON -m asr.lm "$WORK/text/lm_all.txt" "$WORK/lm.arpa" --order 3
  M=$WORK/manifests
  for decoding in greedy beam; do
    opts=""; [ $decoding = beam ] && opts="--beam-size 16 --lm $WORK/lm.arpa"
    $PYTHON -m asr.evaluate "$M/synth_test.jsonl" "$M/synth_unseen_voice.jsonl" "$M/so762_dev.jsonl" "$M/fsdd_test.jsonl" "$M/real_en.jsonl" \
      --model "$WORK/exp/best.pt" --report "$WORK/eval_$decoding.tsv" $opts | tee "$WORK/eval_$decoding.txt"
  done
  done_stage 5
fi

if run_stage 6 "export"; then
  # the shipped model: the best bundle, plus ONNX and int8 TorchScript exports beside it
  cp "$WORK/exp/best.pt" "$WORK/default_en.pt"
  $PYTHON -m asr.cli export --format onnx --model "$WORK/default_en.pt" --out "$WORK/default_en.onnx"
  $PYTHON -m asr.cli export --format torchscript --int8 --model "$WORK/default_en.pt" --out "$WORK/default_en.int8.ts"
  echo "to ship it: cp $WORK/default_en.pt asr/assets/default_en.pt"
  done_stage 6
fi
