#!/usr/bin/env bash
# Common Voice recipe: the DeepSpeech2-sized streaming GRU (5 x 800) of the LibriSpeech recipe, trained on Mozilla
# Common Voice (many speakers, accents and microphones; MP3 clips) on GPUs, one or many machines.
#
#   CORPUS=/data/cv-corpus-21.0-2025-03-14/en bash recipes/commonvoice/prepare.sh [--stage N] [--stop-stage M]
#
# Stages (each is skipped when WORK/.done.<stage> exists; delete it to redo):
#   0  download (--stage 0) -> nothing: Common Voice is downloaded by hand from https://commonvoice.mozilla.org/datasets
#                            (pick the language, accept the terms, extract the archive; CORPUS is the language folder
#                            holding train.tsv, dev.tsv, test.tsv and clips/)
#   1  manifests          -> WORK/manifests/{train,dev,test}.jsonl from CORPUS/{train,dev,test}.tsv
#   2  language model     -> WORK/lm.arpa (word 3-gram from the training transcripts)   (2-5: recipes/corpus_stages.sh)
#   3  train              -> WORK/exp/{best,model,last}.pt   (torchrun DDP when NPROC or NNODES > 1)
#   4  evaluate           -> WORK/eval_{greedy,beam}.{txt,tsv}  (dev and test)
#   5  export             -> WORK/exp/best.onnx
#
# Knobs (environment): CORPUS, WORK, PYTHON, CONF, NPROC (processes per machine, e.g. GPUs), NNODES, NODE_RANK,
# MASTER (host:port of node 0), EXTRA_TRAIN_ARGS (e.g. "--init default" to start from the embedded model).
# Sentences are lower-cased and stripped of punctuation by the importer; clips whose text has no letters are skipped.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
RECIPE=recipes/commonvoice
WORK=${WORK:-$RECIPE/work}
CORPUS=${CORPUS:-}
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
CONF=${CONF:-recipes/librispeech/conf/gru5x800.json}  # the same model and schedule as LibriSpeech
NPROC=${NPROC:-1}
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER=${MASTER:-127.0.0.1:29500}
EXTRA_TRAIN_ARGS=${EXTRA_TRAIN_ARGS:-}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

source recipes/stages.sh "$@"
mkdir -p "$WORK/manifests"

if run_stage 0 "download"; then
  echo "  Common Voice needs its terms accepted: download the archive from https://commonvoice.mozilla.org/datasets,"
  echo "  extract it and set CORPUS to its language folder (e.g. cv-corpus-21.0-2025-03-14/en)"
  done_stage 0
fi

if run_stage 1 "manifests from $CORPUS"; then
  [ -n "$CORPUS" ] && [ -d "$CORPUS" ] || { echo "error: set CORPUS to a Common Voice language folder (got '$CORPUS')" >&2; exit 1; }
  for split in train dev test; do
    if [ -f "$CORPUS/$split.tsv" ]; then
      $PYTHON -m asr.train.manifests commonvoice "$CORPUS" "$WORK/manifests/$split.jsonl" --tsv "$split.tsv"
    else
      echo "  no $CORPUS/$split.tsv: skipped"
    fi
  done
  [ -f "$WORK/manifests/train.jsonl" ] || { echo "error: no usable train.tsv under $CORPUS" >&2; exit 1; }
  done_stage 1
fi

train_manifests=$WORK/manifests/train.jsonl
valid_manifests=$(ls "$WORK"/manifests/dev.jsonl 2>/dev/null || echo "$train_manifests")
eval_manifests=$(ls "$WORK"/manifests/{dev,test}.jsonl 2>/dev/null || echo "$train_manifests")
source recipes/corpus_stages.sh  # stages 2-5
