#!/usr/bin/env bash
# Round 4's model probes (issue "Round 4"): two trainings side by side, one thread each, for the same 40 minutes
# on round 4's mix (local/round4_mix.sh), then both evaluated greedy and with the default decoding on so762_dev,
# cv_dev and the other real-speech sets. Two pairs:
#   scratch    (a) today's 3 x 320 GRU against (b) a 4 x 384 GRU, both from scratch (conf/probe_models_scratch.json)
#   lookahead  (a) 3 x 320 against (c) 3 x 320 with a 2-frame (80 ms) lookahead, both fine-tuned from the shipped
#              model (conf/probe_models_finetune.json; the lookahead starts as a pass-through)
#   mixes      3 x 320 fine-tuned on round 4's mix without the two games, against rounds 1-3's real speech with the
#              natural synthetic speech (the voice probe's mix), both as in `lookahead`
#   bash recipes/default_en/local/model_probe.sh scratch|lookahead|mixes     (after stages 1-3 and 9-12; WORK/probe_models/)
set -euo pipefail
PAIR=${1:?usage: model_probe.sh scratch|lookahead|mixes}
source "$(dirname "${BASH_SOURCE[0]}")/probe_lib.sh"
P=$WORK/probe_models
source $RECIPE/local/round4_mix.sh
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
  mixes)
    names=(finetune_no_games finetune_old_mix)
    opts=("--init $INIT" "--init $INIT")
    conf=$RECIPE/conf/probe_models_finetune.json ;;
  *) echo "model_probe.sh: unknown pair $PAIR (scratch, lookahead or mixes)" >&2; exit 2 ;;
esac
for i in 0 1; do
  case ${names[$i]} in
    finetune_no_games) round4_mix "$M" queen_train sky_train ;;
    finetune_old_mix) MIX=("$M/synth_train.jsonl" "$M/so762_train.jsonl:3" "$M/fsdd_train.jsonl:2") ;;  # rounds 1-3's
    *) round4_mix "$M" ;;
  esac
  # shellcheck disable=SC2086  # opts are word lists
  $PYTHON -m asr.train --config "$conf" --out "$P/${names[$i]}" --resume ${opts[$i]} \
    --train "${MIX[@]}" --valid "$M/so762_dev.jsonl" > "$P/${names[$i]}.log" 2>&1 &
done
wait
evaluate_probes "${names[@]}"
