#!/usr/bin/env python3
"""Asterisk's English prompts as training speech: one professional speaker (Allison Smith), 8 kHz, exact text.

Debian `main` ships the recordings (`asterisk-core-sounds-en-wav`) and their transcripts (`core-sounds-en.txt`
in `asterisk-core-sounds-en`); licence CC BY-SA 3.0 (Allison Smith, Digium). The packages are fetched with
`apt-get download` and unpacked with `dpkg -x` into WORK/debs/asterisk (the system is not changed); a transcript
line `name: text` labels `sounds/en_US_f_Allison/name.wav`. Lines that describe a sound (`[beep tone]`) and
recordings that cannot be read are counted and skipped; "*" and "#" are read as the prompts say them ("star",
"pound").

    python recipes/default_en/local/asterisk_prompts.py WORK [--extracted DIR] [--out WORK/manifests]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
from pathlib import Path

from debs import extract

PACKAGES = ("asterisk-core-sounds-en-wav", "asterisk-core-sounds-en")
TRANSCRIPTS = "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
SOUNDS = "usr/share/asterisk/sounds/en_US_f_Allison"
SPEAKER = "asterisk_allison"
SPOKEN_SYMBOLS = {"*": " star ", "#": " pound "}


def read_transcripts(path: Path) -> list[tuple[str, str]]:
    """[(name, text)] of the `name: text` lines; comments, blank lines and sound descriptions left out."""
    out = []
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") if path.suffix == ".gz" else open(path) as f:
        for line in f:
            name, sep, text = line.strip().partition(":")
            text = text.strip()
            if not sep or not name or name.startswith(";") or " " in name or not text:
                continue
            if text.startswith("[") and text.endswith("]"):
                continue
            out.append((name, text))
    return out


def spoken(text: str) -> str:
    from asr.model.tokenizer import normalize_text

    for symbol, words in SPOKEN_SYMBOLS.items():
        text = text.replace(symbol, words)
    return normalize_text(text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("work", type=Path, help="the recipe's WORK folder")
    ap.add_argument("--extracted", type=Path, default=None, help="the packages already unpacked here (dpkg -x)")
    ap.add_argument("--out", type=Path, default=None, help="manifest folder (default WORK/manifests)")
    args = ap.parse_args(argv)
    import soundfile as sf

    root = args.extracted or extract(args.work / "debs" / "asterisk", PACKAGES)
    transcripts = root / TRANSCRIPTS
    if not transcripts.is_file():
        sys.exit(f"error: {transcripts} not found")
    out = (args.out or args.work / "manifests").resolve()
    out.mkdir(parents=True, exist_ok=True)
    entries, skipped = [], 0
    for name, text in read_transcripts(transcripts):
        audio = (root / SOUNDS / f"{name}.wav").resolve()
        try:
            duration = sf.info(str(audio)).duration
        except Exception as e:  # missing or undecodable: counted, never the end of the stage
            print(f"warning: {name}: skipped: {str(e).strip().splitlines()[0] if str(e) else e}", file=sys.stderr)
            skipped += 1
            continue
        label = spoken(text)
        if not label:
            skipped += 1
            continue
        uid = "asterisk_" + name.replace("/", "-")
        entries.append({"id": uid, "audio": os.path.relpath(audio, out), "duration": round(duration, 3), "text": label})
        entries[-1]["speaker"] = SPEAKER
    with open(out / "asterisk_train.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(e) + "\n" for e in entries)
    hours = sum(e["duration"] for e in entries) / 3600
    print(f"asterisk_train: {len(entries)} prompts, {hours:.2f} h, 1 speaker ({skipped} skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
