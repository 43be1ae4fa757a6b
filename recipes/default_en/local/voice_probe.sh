#!/usr/bin/env bash
# What the natural synthetic voices buy (issue "Training data", part 4): two fine-tunes of the shipped model side
# by side, one thread each, for the same 25 minutes (conf/probe_voices.json) on the same real speech
# (speechocean762 x3, fsdd x2, as round 3), one with the robotic synthetic speech of rounds 1-3 (VOICES=robotic:
# espeak-ng, mbrola, flite), one with the natural mix (stage 2's default), the same 12,000 sentences; then both
# are evaluated greedy and with the default decoding on every real-speech set and both held-out synthetic sets.
#   bash recipes/default_en/local/voice_probe.sh            (after stages 1-3; WORK/probe_voices/ holds it all)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/probe_lib.sh"
P=$WORK/probe_voices
mkdir -p "$P"
if [ ! -f "$P/robotic/manifests/synth_train.jsonl" ]; then  # the same sentences, the voices of rounds 1-3
  $PYTHON $RECIPE/local/synthesize.py --text "$WORK/text" --out "$P/robotic" --num-train "$(wc -l < "$M/synth_train.jsonl")" \
    --num-test 1 --num-unseen 0 --voices robotic --nj 2
fi
for mix in robotic natural; do
  synth=$M/synth_train.jsonl
  [ $mix = robotic ] && synth=$P/robotic/manifests/synth_train.jsonl
  $PYTHON -m asr.train --config $RECIPE/conf/probe_voices.json --out "$P/$mix" --resume --init "$INIT" \
    --train "$synth" "$M/so762_train.jsonl:3" "$M/fsdd_train.jsonl:2" --valid "$M/so762_dev.jsonl" \
    > "$P/$mix.log" 2>&1 &
done
wait
evaluate_probes robotic natural
