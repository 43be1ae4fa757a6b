#!/usr/bin/env python3
"""JSONL manifests for the shared real speech (see DATA/README.md).

Writes to OUT:
  so762_train.jsonl  speechocean762 minus the DEV_SPEAKERS below
  so762_dev.jsonl    the DEV_SPEAKERS (validation)
  fsdd_train.jsonl   FSDD speakers george, jackson, lucas, nicolas, theo
  fsdd_test.jsonl    FSDD speaker yweweler (held out: evaluation only)
  real_en.jsonl      read English sentences (evaluation only, never training)
  real_en_no_ps.jsonl  real_en without pocketsphinx's own test clips (whose LM our default decoding uses)
  real_en_no_lj.jsonl  real_en without its LJSpeech clips (ljspeech_train's speaker)
  cv_dev.jsonl       Common Voice sample, many microphones and accents (selection and tuning, never training), if
                     cv_sample/ exists
  speech_commands_train.jsonl  Speech Commands test set: one word each, 219 of its 239 speakers (training), if present;
                               ids name the word folder too (a speaker's stems repeat across words)
  sc_dev.jsonl                 its other SC_DEV_SPEAKERS (20) speakers, spread over the sorted speaker ids (selection:
                               never trained on), if present
  ljspeech_train.jsonl         the first 385 LJSpeech clips, one speaker (training), if present
  ls_pseudo_train.jsonl  librispeech_pseudo (Whisper-made labels): 231 of its 261 native speakers (training), if present;
                         without the clips whose label has fewer than MIN_CHARS_PER_SECOND characters a second (10
                         clips of 9-16 s labelled "chapter sixteen" and the like: Whisper stopped after the heading)
  ls_pseudo_dev.jsonl    LS_DEV_SPEAKERS (20) other speakers, spread over the speaker ids in numeric order
                         (selection: never trained on), if present
  picovoice_train.jsonl  picovoice_s2i's spoken coffee orders, 50+ speakers (training), if present; all of it: its
                         speakers are not named (`unknown`), so no held-out slice could keep them out of training
  dctts_train.jsonl      dctts_selfrec: one non-native speaker reading LJSpeech's sentences (training), if present
Audio paths are relative to OUT; texts are normalised with normalize_text. The dev slices are chosen by rule from
the speaker ids, so the same data always gives the same split, with no speaker on both sides.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

from asr.model.tokenizer import normalize_text

# speechocean762 validation speakers: two per cell of child (< 16 years) / adult x female / male,
# taken from meta/train/spk2age and spk2gender, spread over the speaker ids.
DEV_SPEAKERS = {
    "so762_0048",
    "so762_3046",  # child, male (6, 9 years)
    "so762_0070",
    "so762_5414",  # child, female (6, 11 years)
    "so762_1309",
    "so762_9624",  # adult, male (31, 29 years)
    "so762_2089",
    "so762_9613",  # adult, female (20, 33 years)
}
FSDD_TRAIN = {"george", "jackson", "lucas", "nicolas", "theo"}
FSDD_TEST = {"yweweler"}
POCKETSPHINX_SOURCE = "cmusphinx/pocketsphinx"  # real_en clips from pocketsphinx's tests
SC_DEV_SPEAKERS = 20  # Speech Commands speakers held out for selection (sc_dev)
LS_DEV_SPEAKERS = 20  # librispeech_pseudo speakers held out for selection (ls_pseudo_dev)
MIN_CHARS_PER_SECOND = 4.0  # a machine-made label shorter than this misses words (local/label_clips.py's rule)


def spread(ordered: list, n: int) -> set:
    """n items spread evenly over an ordered list: the middle one of each of n equal parts."""
    if n > len(ordered):
        sys.exit(f"error: {n} dev speakers wanted, only {len(ordered)} there")
    return {ordered[(2 * i + 1) * len(ordered) // (2 * n)] for i in range(n)}


def split_speakers(items: list, n: int, key=None) -> tuple[list, list]:
    """(train, dev): dev holds every utterance of n speakers spread over the speakers sorted by `key`."""
    dev = spread(sorted({x["speaker"] for x in items}, key=key), n)
    return [x for x in items if x["speaker"] not in dev], [x for x in items if x["speaker"] in dev]


def is_ljspeech(row: dict) -> bool:
    """A real_en clip by LJSpeech's speaker (lhotse's fixtures, speechbrain's TTS sample)."""
    return "ljspeech" in row["source"].lower() or "/LJ0" in row["source"]


def whole_label(row: dict) -> bool:
    """A machine-made label long enough for its clip: at least MIN_CHARS_PER_SECOND characters a second."""
    return len(normalize_text(row["reference"])) >= MIN_CHARS_PER_SECOND * float(row["duration_s"])


def read_tsv(path: Path) -> list[dict]:
    if not path.exists():
        sys.exit(f"error: {path} not found")
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def clip_name(row: dict) -> str:
    """A clip's name: its file's stem (unique in most sets)."""
    return Path(row["file"]).stem


def folder_and_name(row: dict) -> str:
    """A clip's folder and stem ('yes_0c540988_0'): Speech Commands' stems repeat across its word folders."""
    path = Path(row["file"])
    return f"{path.parent.name}_{path.stem}"


def rows(data, name, out, keep=lambda row: True, speaker=lambda row: row["speaker"], ident=clip_name):
    for i, row in enumerate(read_tsv(data / name / "transcripts.tsv")):
        if keep(row):
            audio = data / name / row["file"]
            yield {
                "id": f"{name}_{ident(row)}" if name != "real_en" else f"real_en_{i:03d}",
                "audio": os.path.relpath(audio, out),
                "duration": float(row["duration_s"]),
                "text": normalize_text(row["reference"]),
                "speaker": speaker(row),
            }


def write(out: Path, name: str, items) -> None:
    items = list(items)
    missing = [x["audio"] for x in items if not (out / x["audio"]).exists()]
    if missing:
        sys.exit(f"error: {len(missing)} audio files missing in {name}, e.g. {out / missing[0]}")
    with open(out / f"{name}.jsonl", "w") as f:
        f.writelines(json.dumps(x) + "\n" for x in items)
    hours = sum(x["duration"] for x in items) / 3600
    speakers = {x["speaker"] for x in items}
    named = "speakers not named" if speakers == {"unknown"} else f"{len(speakers)} speakers"
    print(f"{name}: {len(items)} utterances, {hours:.2f} h, {named}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path, help="shared data folder (with speechocean762/, fsdd/, real_en/)")
    ap.add_argument("out", type=Path, help="manifest folder (WORK/manifests)")
    args = ap.parse_args()
    if not args.data.is_dir():
        sys.exit(f"error: data folder {args.data} not found (set DATA=...)")
    data, out = Path(os.path.abspath(args.data)), Path(os.path.abspath(args.out))
    out.mkdir(parents=True, exist_ok=True)

    so762 = list(rows(data, "speechocean762", out))
    speakers = {x["speaker"] for x in so762}
    if not DEV_SPEAKERS <= speakers:
        sys.exit(f"error: dev speakers missing from speechocean762: {sorted(DEV_SPEAKERS - speakers)}")
    write(out, "so762_train", (x for x in so762 if x["speaker"] not in DEV_SPEAKERS))
    write(out, "so762_dev", (x for x in so762 if x["speaker"] in DEV_SPEAKERS))
    write(out, "fsdd_train", rows(data, "fsdd", out, lambda row: row["speaker"] in FSDD_TRAIN))
    write(out, "fsdd_test", rows(data, "fsdd", out, lambda row: row["speaker"] in FSDD_TEST))
    real_en_speaker = lambda row: row["source"].split(":")[0]  # noqa: E731
    write(out, "real_en", rows(data, "real_en", out, speaker=real_en_speaker))
    write(
        out,
        "real_en_no_ps",
        (x for x in rows(data, "real_en", out, speaker=real_en_speaker) if x["speaker"] != POCKETSPHINX_SOURCE),
    )
    no_lj = rows(data, "real_en", out, keep=lambda row: not is_ljspeech(row), speaker=real_en_speaker)
    write(out, "real_en_no_lj", no_lj)
    present = lambda folder: (data / folder / "transcripts.tsv").exists()  # noqa: E731
    if present("cv_sample"):
        write(out, "cv_dev", rows(data, "cv_sample", out))
    if present("speech_commands"):
        train, dev = split_speakers(list(rows(data, "speech_commands", out, ident=folder_and_name)), SC_DEV_SPEAKERS)
        write(out, "speech_commands_train", train)
        write(out, "sc_dev", dev)
    if present("ljspeech_part"):
        write(out, "ljspeech_train", rows(data, "ljspeech_part", out))
    if present("librispeech_pseudo"):
        ls_id = lambda speaker: int(speaker.removeprefix("ls"))  # noqa: E731  # 'ls60' < 'ls201', as LibriSpeech lists them
        train, dev = split_speakers(list(rows(data, "librispeech_pseudo", out, whole_label)), LS_DEV_SPEAKERS, ls_id)
        write(out, "ls_pseudo_train", train)
        write(out, "ls_pseudo_dev", dev)
    if present("picovoice_s2i"):
        write(out, "picovoice_train", rows(data, "picovoice_s2i", out))
    if present("dctts_selfrec"):
        write(out, "dctts_train", rows(data, "dctts_selfrec", out))


if __name__ == "__main__":
    main()
