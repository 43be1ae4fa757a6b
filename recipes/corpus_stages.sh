# Stages 2-5 of the real-corpus recipes (sourced by recipes/{librispeech,commonvoice}/prepare.sh after stage 1):
#   2  language model     -> WORK/lm.arpa (word 3-gram from the training transcripts)
#   3  train              -> WORK/exp/{best,model,last}.pt   (torchrun DDP when NPROC or NNODES > 1)
#   4  evaluate           -> WORK/eval_{greedy,beam}.{txt,tsv}
#   5  export             -> WORK/exp/best.onnx
# Expects WORK, PYTHON, CONF, NPROC, NNODES, NODE_RANK, MASTER, EXTRA_TRAIN_ARGS and the manifest lists
# train_manifests, valid_manifests, eval_manifests (space-separated paths).

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
  $PYTHON -m asr.apps.evaluate $eval_manifests --model "$WORK/exp/best.pt" --report "$WORK/eval_greedy.tsv" | tee "$WORK/eval_greedy.txt"
  $PYTHON -m asr.apps.evaluate $eval_manifests --model "$WORK/exp/best.pt" --beam-size 16 --lm "$WORK/lm.arpa" \
    --report "$WORK/eval_beam.tsv" | tee "$WORK/eval_beam.txt"
  done_stage 4
fi

if run_stage 5 "export"; then
  $PYTHON -m asr.apps.cli export --format onnx --model "$WORK/exp/best.pt" --out "$WORK/exp/best.onnx"
  done_stage 5
fi
