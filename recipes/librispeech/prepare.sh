#!/usr/bin/env bash
# LibriSpeech recipe: a DeepSpeech2-sized streaming GRU (5 x 800) for GPUs, one or many machines.
#
#   bash recipes/librispeech/prepare.sh [--stage N] [--stop-stage M]
#
# Stages (each is skipped when WORK/.done.<stage> exists; delete it to redo):
#   0  download           -> CORPUS/<split>/ from openslr.org (only with DOWNLOAD=1; needs internet)
#   1  manifests          -> WORK/manifests/<split>.jsonl for every split found under CORPUS
#   2  language model     -> WORK/lm.arpa (word 3-gram from the training transcripts)
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
    $PYTHON -m asr.data librispeech "$CORPUS/$split" "$WORK/manifests/$split.jsonl"
    found=1
  done
  [ $found = 1 ] || { echo "error: no LibriSpeech split ($SPLITS) under $CORPUS" >&2; exit 1; }
  done_stage 1
fi

# Training uses the train-* manifests; where none exist (the 4-utterance sample) it uses whatever there is.
train_manifests=$(ls "$WORK"/manifests/train-*.jsonl 2>/dev/null || ls "$WORK"/manifests/*.jsonl)
valid_manifests=$(ls "$WORK"/manifests/dev-*.jsonl 2>/dev/null || ls "$WORK"/manifests/test-*.jsonl)
eval_manifests=$(ls "$WORK"/manifests/{dev,test}-*.jsonl 2>/dev/null || true)

if run_stage 2 "word 3-gram language model"; then
  cat $train_manifests | $PYTHON -c "import json,sys; [print(json.loads(l)['text']) for l in sys.stdin if l.strip()]" > "$WORK/lm_text.txt"
  $PYTHON -m asr.lm "$WORK/lm_text.txt" "$WORK/lm.arpa" --order 3
  done_stage 2
fi

if run_stage 3 "train ($CONF, $NNODES node(s) x $NPROC process(es))"; then
  args=(--config "$CONF" --out "$WORK/exp" --resume --train $train_manifests --valid $valid_manifests $EXTRA_TRAIN_ARGS)
  if [ "$NPROC" -gt 1 ] || [ "$NNODES" -gt 1 ]; then
    # DDP: nccl on GPUs, gloo on CPUs; run the same command on every node with its NODE_RANK
    $PYTHON -m torch.distributed.run --nnodes "$NNODES" --node_rank "$NODE_RANK" --nproc_per_node "$NPROC" \
      --master_addr "${MASTER%:*}" --master_port "${MASTER#*:}" -m asr.train "${args[@]}"
  else
    $PYTHON -m asr.train "${args[@]}"
  fi
  done_stage 3
fi

if run_stage 4 "evaluate"; then
  $PYTHON -m asr.evaluate $eval_manifests --model "$WORK/exp/best.pt" --report "$WORK/eval_greedy.tsv" | tee "$WORK/eval_greedy.txt"
  $PYTHON -m asr.evaluate $eval_manifests --model "$WORK/exp/best.pt" --beam-size 16 --lm "$WORK/lm.arpa" \
    --report "$WORK/eval_beam.tsv" | tee "$WORK/eval_beam.txt"
  done_stage 4
fi

if run_stage 5 "export"; then
  $PYTHON -m asr.cli export --format onnx --model "$WORK/exp/best.pt" --out "$WORK/exp/best.onnx"
  done_stage 5
fi
