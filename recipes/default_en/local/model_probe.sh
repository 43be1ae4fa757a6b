#!/usr/bin/env bash
# Round 4's model probes (issue "Round 4"): two trainings side by side, one thread each, for the same 40 minutes
# on round 4's mix (local/round4_mix.sh), then both evaluated greedy and with the default decoding on so762_dev,
# cv_dev and the other real-speech sets. Two pairs:
#   scratch    (a) today's 3 x 320 GRU against (b) a 4 x 384 GRU, both from scratch (conf/probe_models_scratch.json)
#   lookahead  (a) 3 x 320 against (c) 3 x 320 with a 2-frame (80 ms) lookahead, both fine-tuned from the shipped
#              model (conf/probe_models_finetune.json; the lookahead starts as a pass-through)
#   bash recipes/default_en/local/model_probe.sh scratch|lookahead     (after stages 1-3 and 9-12; WORK/probe_models/)
set -euo pipefail
PAIR=${1:?usage: model_probe.sh scratch|lookahead}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
cd "$REPO"
RECIPE=recipes/default_en
WORK=${WORK:-$RECIPE/work}
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
INIT=${INIT:-asr/assets/default_en.pt}
M=$WORK/manifests
P=$WORK/probe_models
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=1
source $RECIPE/local/round4_mix.sh
round4_mix "$M"
mkdir -p "$P"
case $PAIR in
  scratch)
    names=(scratch_3x320 scratch_4x384)
    opts=("--hidden-size 320 --num-layers 3" "--hidden-size 384 --num-layers 4")
    conf=$RECIPE/conf/probe_models_scratch.json ;;
  lookahead)
    names=(finetune_3x320 finetune_3x320_look2)
    opts=("--init $INIT" "--init $INIT --lookahead 2")
    conf=$RECIPE/conf/probe_models_finetune.json ;;
  *) echo "model_probe.sh: unknown pair $PAIR (scratch or lookahead)" >&2; exit 2 ;;
esac
for i in 0 1; do
  # shellcheck disable=SC2086  # opts are word lists
  $PYTHON -m asr.train --config "$conf" --out "$P/${names[$i]}" --resume ${opts[$i]} \
    --train "${MIX[@]}" --valid "$M/so762_dev.jsonl" > "$P/${names[$i]}.log" 2>&1 &
done
wait
sets="$M/so762_dev.jsonl $M/cv_dev.jsonl $M/fsdd_test.jsonl $M/real_en.jsonl $M/real_en_no_ps.jsonl"
sets="$sets $M/synth_unseen_voice.jsonl $M/synth_unseen_natural.jsonl"
for name in "${names[@]}"; do
  for decoding in greedy default; do
    dopts=$([ $decoding = greedy ] && echo "--decoding greedy" || true)
    $PYTHON -m asr.evaluate $sets --model "$P/$name/best.pt" $dopts --report "$P/${name}_$decoding.tsv" \
      | tee "$P/${name}_$decoding.txt"
  done
done
