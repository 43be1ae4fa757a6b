# Shared by the probe scripts (voice_probe.sh, model_probe.sh; sourced, with P set to the probe's folder): the
# repository as the working folder, PYTHON, WORK, M (the manifests), INIT (the shipped model), one thread per
# training process; and evaluate_probes.
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
cd "$REPO"
RECIPE=recipes/default_en
WORK=${WORK:-$RECIPE/work}
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
INIT=${INIT:-asr/assets/default_en.pt}
M=$WORK/manifests
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=1

# evaluate_probes NAME...: P/NAME/best.pt, greedy and with the default decoding, on every real-speech set and both
# held-out synthetic sets -> P/NAME_{greedy,default}.{txt,tsv}
evaluate_probes() {
  local sets="$M/so762_dev.jsonl $M/cv_dev.jsonl $M/fsdd_test.jsonl $M/real_en.jsonl $M/real_en_no_ps.jsonl"
  sets="$sets $M/synth_unseen_voice.jsonl $M/synth_unseen_natural.jsonl"
  local name decoding opts
  for name in "$@"; do
    for decoding in greedy default; do
      opts=$([ "$decoding" = greedy ] && echo "--decoding greedy" || true)
      # shellcheck disable=SC2086  # sets and opts are word lists
      $PYTHON -m asr.apps.evaluate $sets --model "$P/$name/best.pt" $opts --report "$P/${name}_$decoding.tsv" \
        | tee "$P/${name}_$decoding.txt"
    done
  done
}
