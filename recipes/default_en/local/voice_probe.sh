#!/usr/bin/env bash
# What the natural synthetic voices buy (issue "Training data", part 4): two fine-tunes of the shipped model side
# by side, one thread each, for the same 25 minutes (conf/probe_voices.json) on the same real speech
# (speechocean762 x3, fsdd x2, as round 3), one with the robotic synthetic speech of rounds 1-3 (VOICES=robotic:
# espeak-ng, mbrola, flite), one with the natural mix (stage 2's default), the same 12,000 sentences; then both
# are evaluated greedy and with the default decoding on every real-speech set and both held-out synthetic sets.
#   bash recipes/default_en/local/voice_probe.sh            (after stages 1-3; WORK/probe_voices/ holds it all)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
cd "$REPO"
RECIPE=recipes/default_en
WORK=${WORK:-$RECIPE/work}
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
INIT=${INIT:-asr/assets/default_en.pt}
M=$WORK/manifests
P=$WORK/probe_voices
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=1
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
sets="$M/so762_dev.jsonl $M/cv_dev.jsonl $M/fsdd_test.jsonl $M/real_en.jsonl $M/real_en_no_ps.jsonl"
sets="$sets $M/synth_unseen_voice.jsonl $M/synth_unseen_natural.jsonl"
for mix in robotic natural; do
  for decoding in greedy default; do
    opts=$([ $decoding = greedy ] && echo "--decoding greedy" || true)
    $PYTHON -m asr.evaluate $sets --model "$P/$mix/best.pt" $opts --report "$P/${mix}_$decoding.tsv" \
      | tee "$P/${mix}_$decoding.txt"
  done
done
