#!/usr/bin/env bash
# Round 5's probe (issue 31): the shipped model fine-tuned on every real voice the recipe builds plus the natural
# synthetic speech (round5_mix below), with vocal-tract-length perturbation (conf/gru3x320_round5_probe.json:
# --vtlp-prob 0.5, factors 0.9-1.1; one thread, lr 3e-4, 120 minutes), validated on the selection sets
# (local/selection.py --print-sets: so762_dev, cv_dev, ls_pseudo_dev, sc_dev) with --select-on mean, so best.pt is
# the step with the best mean greedy WER over them; then best.pt's selection score (asr eval's decoding).
#   bash recipes/default_en/local/round5_probe.sh NAME [asr train options...]
# The two arms run side by side (one thread each, 2026-12-07): without round 5's variation, and with all of it
# (conf/gru3x320_round5_group.json: VTLP, leads of silence, streams of two utterances, microphone EQ, codecs):
#   bash recipes/default_en/local/round5_probe.sh none --vtlp-prob 0 --max-minutes 110 &
#   CONF5=recipes/default_en/conf/gru3x320_round5_group.json bash recipes/default_en/local/round5_probe.sh group \
#     --max-minutes 110 &
# Round 5's long run (from 2026-12-07, resumed session after session until its score stops improving): the group arm's
# best.pt widened to 3 x 448 (--widen, Net2Net: the probes' seen and unseen speakers came out alike, 44.0% and 44.3%
# greedy CER on librispeech_pseudo), two 1-thread DDP processes, a cosine over 9 hours, best.pt by the mean CER:
#   NPROC=2 INIT=~/gru-asr-r5/group/best.pt CONF5=recipes/default_en/conf/gru3x448_round5_long.json \
#     bash recipes/default_en/local/round5_probe.sh long --widen 448 --max-minutes 540 &
# (stop it by killing it: the same command resumes it from last.pt, saved every 100 steps; --widen and --init are
# then unused). Its second stretch (2026-12-07) was two arms from its step-1,300 state (cp -a R5_DIR/long
# R5_DIR/long_aux), one process each, speechocean762 weighed x5, the teacher targets' manifests for both, and the
# auxiliary loss turned on for one by --resume; the long run goes on from long_aux:
#   TEACHER_DIR=recipes/default_en/work/whisper_targets WEIGHTS=so762_train:5 INIT=~/gru-asr-r5/group/best.pt \
#     CONF5=recipes/default_en/conf/gru3x448_round5_long.json bash recipes/default_en/local/round5_probe.sh long_aux \
#     --widen 448 --aux-weight 0.3 &   # (long: the same without --aux-weight)
# The auxiliary teacher loss against none (issue 31, item 4): TEACHER_DIR (local/whisper_targets.py's OUT) gives the
# mix's manifests with teacher targets, where it has them, to both arms (the same data); only --aux-weight differs:
#   TEACHER_DIR=recipes/default_en/work/whisper_targets INIT=~/gru-asr-r5/long/model.pt \
#     CONF5=recipes/default_en/conf/gru3x448_round5_long.json bash recipes/default_en/local/round5_probe.sh aux \
#     --aux-weight 0.3 --max-minutes 120 &   # and the same with NAME noaux and without --aux-weight
# NAME is the run's folder under R5_DIR (default ~/gru-asr-r5: outside the work tree, so the full trainer state,
# last.pt, survives a checkout); options after it go to asr train last and win (e.g. --vtlp-prob 0 for the arm
# without VTLP, --max-steps 2 to try the command). Run again with the same NAME, it resumes from R5_DIR/NAME/last.pt.
# Needs stages 1-3 and 9-12 (sets a stage did not build are left out with a note). Writes R5_DIR/NAME/ (last.pt,
# model.pt, best.pt, log.jsonl with the {"valid": "mean"} records, curve.png), R5_DIR/NAME.log and
# R5_DIR/NAME/selection.{json,txt}.
set -euo pipefail
NAME=${1:?usage: round5_probe.sh NAME [asr train options...]}
shift
source "$(dirname "${BASH_SOURCE[0]}")/probe_lib.sh"
R5_DIR=${R5_DIR:-$HOME/gru-asr-r5}
CONF5=${CONF5:-$RECIPE/conf/gru3x320_round5_probe.json}

# round5_mix DIR -> MIX: every real voice, weighted (starting weights, to be measured on the selection score):
# the many-speaker sets up (speechocean762 x3, librispeech_pseudo x3, picovoice x2, alnum x3; Speech Commands once:
# one word a clip), fsdd's digits x2, the single-speaker and acted sets once, the natural synthetic speech once.
# WEIGHTS="NAME:W ..." changes some of them (e.g. WEIGHTS=so762_train:5).
# Never cv_dev, sc_dev, ls_pseudo_dev, so762_dev (selection), real_en* or fsdd_test (evaluation only).
round5_mix() {
  local dir=$1 entry name
  MIX=()
  for entry in synth_train:1 so762_train:3 fsdd_train:2 speech_commands_train:1 ljspeech_train:1 alnum_train:3 \
    asterisk_train:1 queen_train:1 sky_train:1 ls_pseudo_train:3 picovoice_train:2 dctts_train:1; do
    name=${entry%%:*}
    for override in ${WEIGHTS:-}; do  # WEIGHTS="so762_train:5 ...": other weights for these sets
      if [ "${override%%:*}" = "$name" ]; then entry=$override; fi
    done
    if [ -n "${TEACHER_DIR:-}" ] && [ -f "$TEACHER_DIR/$name.jsonl" ]; then  # with teacher targets (--aux-weight)
      MIX+=("$TEACHER_DIR/$name.jsonl:${entry##*:}")
    elif [ -f "$dir/$name.jsonl" ]; then
      MIX+=("$dir/$name.jsonl:${entry##*:}")
    else
      echo "round 5 mix: $name not built, left out" >&2
    fi
  done
}

round5_mix "$M"
sets=$($PYTHON $RECIPE/local/selection.py "$M" --print-sets)  # fails, saying so, without stage 3's selection sets
mapfile -t VALID <<< "$sets"
mkdir -p "$R5_DIR"
TRAIN_CMD=($PYTHON -m asr.train)
if [ "${NPROC:-1}" -gt 1 ]; then  # DDP over gloo, one thread each (probe_lib.sh sets OMP_NUM_THREADS=1)
  TRAIN_CMD=($PYTHON -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m asr.train)
fi
"${TRAIN_CMD[@]}" --config "$CONF5" --out "$R5_DIR/$NAME" --resume --init "$INIT" \
  --train "${MIX[@]}" --valid "${VALID[@]}" "$@" 2>&1 | tee -a "$R5_DIR/$NAME.log"
$PYTHON $RECIPE/local/selection.py "$M" --model "$R5_DIR/$NAME/best.pt" --json "$R5_DIR/$NAME/selection.json" \
  | tee "$R5_DIR/$NAME/selection.txt"
