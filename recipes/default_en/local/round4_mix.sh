# The training mix of round 4's probes (sourced by local/model_probe.sh; stage 13 trains on the probes' winner,
# rounds 1-3's mix, instead): every real-speech set the recipe builds, with speechocean762 (the nearest to
# so762_dev's unseen speakers) and the two small many-speaker sets weighted up, and the natural synthetic speech
# once. Sets a stage did not build (no teacher: no alnum, no Steel Sky) are left out with a note. Per epoch with
# everything built: 26.5 h, 18 h of it real speech (67%).
#   round4_mix MANIFEST_DIR [NAME...]  -> fills the array MIX with "path.jsonl:weight" entries (without NAME...)
round4_mix() {
  local dir=$1 entry name
  shift
  MIX=()
  for entry in synth_train:1 so762_train:3 fsdd_train:2 alnum_train:3 speech_commands_train:1 ljspeech_train:1 \
    asterisk_train:1 queen_train:1 sky_train:1; do
    name=${entry%%:*}
    if [[ " $* " == *" $name "* ]]; then
      continue
    elif [ -f "$dir/$name.jsonl" ]; then
      MIX+=("$dir/$name.jsonl:${entry##*:}")
    else
      echo "round 4 mix: $name not built, left out" >&2
    fi
  done
}
