#!/usr/bin/env python3
"""Seen and unseen speakers (issue 31's table): a model's greedy WER and CER and its default-decoding WER on samples
of up to 120 clips (seeded) of sets whose speakers round 5 trains on and sets it never hears.

    python recipes/default_en/local/seen_unseen.py WORK/manifests --model MODEL [--json out.json]

Rows (a row is left out, with a note, where stage 3 or 9-12 did not build its manifest):
  so762_train (seen), so762_dev (unseen); fsdd_train (seen), fsdd_test (yweweler, unseen, the same ten words);
  ljspeech_train (one native reader: seen since round 5); speech_commands_train (seen since round 5), sc_dev
  (unseen); ls_pseudo_train (seen since round 5), ls_pseudo_dev (unseen); cv_dev and real_en (unseen).
The ratio of a corpus's unseen to seen CER is the gap the issue wants closed (a ratio near 1 means the model is
short of capacity, not of speakers). Decoding and scoring are `asr eval`'s (asr.apps.evaluate).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import asr
from asr.apps.evaluate import score_manifest
from asr.decode.config import DecodingConfig
from asr.train.manifests import read_manifest

ROWS = (  # (manifest, speakers: seen or unseen by round 5's training)
    ("so762_train", "seen"),
    ("so762_dev", "unseen"),
    ("fsdd_train", "seen"),
    ("fsdd_test", "unseen"),
    ("ljspeech_train", "seen"),
    ("speech_commands_train", "seen"),
    ("sc_dev", "unseen"),
    ("ls_pseudo_train", "seen"),
    ("ls_pseudo_dev", "unseen"),
    ("cv_dev", "unseen"),
    ("real_en", "unseen"),
)
SAMPLE = 120


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("manifests", type=Path)
    p.add_argument("--model", default=None, help="model bundle (default: the embedded model)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--sample", type=int, default=SAMPLE, help=f"clips per set, drawn with seed 0 (default {SAMPLE})")
    p.add_argument("--greedy-only", action="store_true", help="skip the default decoding (beam 64 + LM: the slow part)")
    args = p.parse_args(argv)
    model = asr.load_model(args.model, device="cpu")
    beam = None if args.greedy_only else DecodingConfig().resolved().beam_factory(model.tokens)()
    table = {}
    for name, seen in ROWS:
        path = args.manifests / f"{name}.jsonl"
        if not path.is_file():
            print(f"note: left out {name}: {path} not found", file=sys.stderr)
            continue
        entries = read_manifest(path)
        entries = random.Random(0).sample(entries, min(args.sample, len(entries)))
        greedy = score_manifest(model, str(path), entries)
        default = score_manifest(model, str(path), entries, beam=beam) if beam else {"wer": float("nan")}
        table[name] = {"speakers": seen, "utterances": greedy["utterances"], "greedy_wer": greedy["wer"]}
        table[name].update(greedy_cer=greedy["cer"], default_wer=default["wer"])
    print("| set | speakers in round 5's training | clips | greedy WER | greedy CER | default WER |")
    print("|---|---|---:|---:|---:|---:|")
    for name, r in table.items():
        figures = f"{r['greedy_wer']:.1%} | {r['greedy_cer']:.1%} | {r['default_wer']:.1%}"
        print(f"| {name} | {r['speakers']} | {r['utterances']} | {figures} |")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model or "default", "sets": table}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
