#!/usr/bin/env bash
# LibriSpeech recipe: a DeepSpeech2-sized streaming GRU (5 x 800) for GPUs, one or many machines.
#
#   bash recipes/librispeech/prepare.sh [--stage N] [--stop-stage M]
#
# Stages (each is skipped when WORK/.done.<stage> exists; delete it to redo):
#   0  download           -> CORPUS/<split>/ from openslr.org (only with DOWNLOAD=1; needs internet)
#   1  manifests          -> WORK/manifests/<split>.jsonl for every split found under CORPUS
#   2  language model     -> WORK/lm.arpa (word 3-gram from the training transcripts)   (2-5: recipes/corpus_stages.sh)
#   3  train              -> WORK/exp/{best,model,last}.pt   (torchrun DDP when NPROC or NNODES > 1)
#   4  evaluate           -> WORK/eval_{greedy,beam}.txt
#   5  export             -> WORK/exp/best.onnx
#
# Knobs (environment): CORPUS (folder holding train-clean-100/, dev-clean/, ...), WORK, PYTHON, CONF,
# NPROC (processes per machine, e.g. GPUs), NNODES, NODE_RANK, MASTER (host:port of node 0), EXTRA_TRAIN_ARGS.
# Without CORPUS it runs on the real LibriSpeech sample in ../shared/data/librispeech_layout (4 utterances of
# test-clean), which is only good for checking that every stage works end to end.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
RECIPE=recipes/librispeech
WORK=${WORK:-$RECIPE/work}
CORPUS=${CORPUS:-$(dirname "$REPO")/shared/data/librispeech_layout/LibriSpeech}
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
CONF=${CONF:-$RECIPE/conf/gru5x800.json}
NPROC=${NPROC:-1}
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER=${MASTER:-127.0.0.1:29500}
EXTRA_TRAIN_ARGS=${EXTRA_TRAIN_ARGS:-}
SPLITS="train-clean-100 train-clean-360 train-other-500 dev-clean dev-other test-clean test-other"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

source recipes/stages.sh "$@"
mkdir -p "$WORK/manifests"

if run_stage 0 "download"; then
  if [ "${DOWNLOAD:-0}" = 1 ]; then
    mkdir -p "$CORPUS"
    for split in $SPLITS; do
      [ -d "$CORPUS/$split" ] && continue
      curl -fL "https://www.openslr.org/resources/12/$split.tar.gz" | tar -xz -C "$(dirname "$CORPUS")"
    done
  else
    echo "  skipped: set DOWNLOAD=1 to fetch LibriSpeech (about 60 GB) into $CORPUS"
  fi
  done_stage 0
fi

if run_stage 1 "manifests from $CORPUS"; then
  [ -d "$CORPUS" ] || { echo "error: corpus folder $CORPUS not found (set CORPUS, or DOWNLOAD=1 --stage 0)" >&2; exit 1; }
  found=0
  for split in $SPLITS; do
    [ -d "$CORPUS/$split" ] || continue
    $PYTHON -m asr.train.manifests librispeech "$CORPUS/$split" "$WORK/manifests/$split.jsonl"
    found=1
  done
  [ $found = 1 ] || { echo "error: no LibriSpeech split ($SPLITS) under $CORPUS" >&2; exit 1; }
  done_stage 1
fi

# Training uses the train-* manifests; where none exist (the 4-utterance sample) it uses whatever there is.
train_manifests=$(ls "$WORK"/manifests/train-*.jsonl 2>/dev/null || ls "$WORK"/manifests/*.jsonl)
valid_manifests=$(ls "$WORK"/manifests/dev-*.jsonl 2>/dev/null || ls "$WORK"/manifests/test-*.jsonl)
eval_manifests=$(ls "$WORK"/manifests/{dev,test}-*.jsonl 2>/dev/null || true)
source recipes/corpus_stages.sh  # stages 2-5
