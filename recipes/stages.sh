# Shared by the recipes' prepare.sh (sourced): --stage/--stop-stage options and .done markers.
#   source recipes/stages.sh "$@"     (after WORK is set)
#   if run_stage N "what"; then ...; done_stage N; fi
stage=1
stop_stage=100
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    *) echo "usage: $0 [--stage N] [--stop-stage M]  (unknown argument: $1)" >&2; exit 2 ;;
  esac
done
mkdir -p "$WORK"

# run_stage N NAME: true when stage N is in range and not done yet.
run_stage() {
  [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ] || return 1
  if [ -f "$WORK/.done.$1" ]; then echo "stage $1 ($2): done already ($WORK/.done.$1)"; return 1; fi
  echo "stage $1: $2"
}
done_stage() { touch "$WORK/.done.$1"; }
