#!/usr/bin/env bash
# Regenerates examples/hello.wav, the README's example clip, with espeak-ng (16 kHz mono 16-bit).
set -euo pipefail
cd "$(dirname "$0")"
espeak-ng -v en-us -s 150 -w /tmp/hello_22k.wav "hello world, this is a test of streaming speech recognition"
sox /tmp/hello_22k.wav -r 16000 -c 1 -b 16 hello.wav
