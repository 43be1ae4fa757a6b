#!/usr/bin/env bash
# Default English recipe: data preparation (and later training, evaluation, export).
#
#   bash recipes/default_en/prepare.sh [--stage N] [--stop-stage M]
#
# Stages (each is skipped when WORK/.done.<stage> exists; delete it to redo):
#   1  text corpus        -> WORK/text/{train,test,lm_train}.txt
#   2  synthetic speech   -> WORK/synth/wav/, WORK/manifests/synth_{train,test,unseen_voice}.jsonl
#   3  real manifests     -> WORK/manifests/{so762_train,so762_dev,fsdd_train,fsdd_test,real_en}.jsonl
#   4  train   (placeholder)
#   5  eval    (placeholder)
#   6  export  (placeholder)
#
# Knobs (environment): WORK, DATA, PYTHON, NUM_SYNTH (train utterances to synthesise), NJ (parallel jobs), SEED.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
RECIPE=recipes/default_en
WORK=${WORK:-$RECIPE/work}
DATA=${DATA:-$(dirname "$REPO")/shared/data}
PYTHON=${PYTHON:-python3}
NUM_SYNTH=${NUM_SYNTH:-5000}
NJ=${NJ:-2}
SEED=${SEED:-1234}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

stage=1
stop_stage=100
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    *) echo "usage: $0 [--stage N] [--stop-stage M]  (unknown argument: $1)" >&2; exit 2 ;;
  esac
done
mkdir -p "$WORK"

# run_stage N NAME: true when stage N is in range and not done yet.
run_stage() {
  [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ] || return 1
  if [ -f "$WORK/.done.$1" ]; then echo "stage $1 ($2): done already ($WORK/.done.$1)"; return 1; fi
  echo "stage $1: $2"
}
done_stage() { touch "$WORK/.done.$1"; }

if run_stage 1 "text corpus"; then
  # real speech transcripts stay out of the synthetic corpus (evaluation sets must be unseen text)
  exclude=$(ls "$DATA"/real_en/transcripts.tsv "$DATA"/speechocean762/transcripts.tsv 2>/dev/null || true)
  $PYTHON $RECIPE/local/make_corpus.py "$WORK/text" --seed "$SEED" --exclude $exclude
  done_stage 1
fi

if run_stage 2 "synthetic speech ($NUM_SYNTH train utterances, $NJ jobs)"; then
  $PYTHON $RECIPE/local/synthesize.py --text "$WORK/text" --out "$WORK" \
    --num-train "$NUM_SYNTH" --nj "$NJ" --seed "$SEED"
  done_stage 2
fi

if run_stage 3 "real speech manifests from $DATA"; then
  $PYTHON $RECIPE/local/real_manifests.py "$DATA" "$WORK/manifests"
  done_stage 3
fi

# stage 4: train  -- TODO(lead): train with $RECIPE/conf/<model>.yaml on WORK/manifests/*train*.jsonl
# if run_stage 4 "train"; then
#   ...
#   done_stage 4
# fi

# stage 5: eval   -- TODO(lead): WER on synth_test, synth_unseen_voice, so762_dev, fsdd_test, real_en

# stage 6: export -- TODO(lead): export the trained model for streaming inference
