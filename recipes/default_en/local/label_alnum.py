#!/usr/bin/env python3
"""Verbatim labels for ../shared/data/alnum, whose `prompt` is what speakers were asked to say, not what they said.

The Whisper teacher (teacher.py) transcribes each clip; a clip is kept only where the transcript agrees with
the prompt's spoken forms, and its label is then the teacher's transcript in our spoken forms:

- names (spell a name): single letters are letters ("S-A-F-F-R-O-N" -> "s a f f r o n"), other words words;
  agrees when the letters spell the prompt's letters and the words are the prompt's words (either may be
  absent: a speaker may say the name, spell it, or both; not neither).
- numbers (a 10-digit number): digits are spoken one by one ("888 511" -> "eight eight eight five one one"),
  "double"/"triple" and "oh" are read as they are said; agrees when the digits are the prompt's digits.
- addresses: numbers as normalize_text says them ("48" -> "forty eight", "4-0-7" -> "four zero seven");
  agrees when the words other than numbers are the prompt's, and the numbers' digits are the prompt's
  (digits said one by one count as one number); a number of 3 or more digits written whole ("407") is
  refused, since the transcript does not say how it was read.

Teacher transcripts are cached (WORK/labels/alnum_teacher.tsv: a rerun labels only what is missing); the
result is WORK/labels/alnum.tsv (every clip: prompt, teacher, label, kept) and OUT/alnum_train.jsonl (the kept).

    python recipes/default_en/local/label_alnum.py DATA/alnum WORK
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from pathlib import Path

from teacher import read_cache

from asr.model.tokenizer import normalize_text

DIGIT_WORDS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5"}
DIGIT_WORDS |= {"six": "6", "seven": "7", "eight": "8", "nine": "9"}
REPEATS = {"double": 2, "triple": 3}


def _spaced_digits(text: str) -> str:
    """'888 511-2931' -> '8 8 8 5 1 1 2 9 3 1': every digit its own word."""
    return re.sub(r"\d+", lambda m: " ".join(m.group()), text)


def _joined_digits(text: str) -> str:
    """'4-8 Ridge 9, 6, 4' -> '48 Ridge 964': digits said one by one (hyphens, commas, spaces) as one number."""
    return re.sub(r"\b\d\b(?:[\s,-]+\b\d\b)+", lambda m: re.sub(r"\D", "", m.group()), text)


def digits_of(words: list[str]) -> str:
    """The digit string spoken by digit words, with 'double'/'triple' repeating the next digit."""
    out, repeat = [], 1
    for w in words:
        if w in REPEATS:
            repeat = REPEATS[w]
        elif w in DIGIT_WORDS:
            out.append(DIGIT_WORDS[w] * repeat)
            repeat = 1
    return "".join(out)


def spoken_label(teacher: str, kind: str) -> str:
    """The teacher's transcript in our spoken forms (see the module's docstring)."""
    if kind == "numbers":
        return normalize_text(_spaced_digits(teacher))
    return normalize_text(teacher)


def agrees(teacher: str, prompt: str, kind: str) -> bool:
    """Whether the teacher heard the prompt, by its spoken forms."""
    if kind == "names":
        tokens = normalize_text(teacher).split()
        letters = "".join(t for t in tokens if len(t) == 1)
        words = [t for t in tokens if len(t) > 1]
        want_letters = "".join(c for c in normalize_text(prompt) if c.isalpha())
        want_words = normalize_text(prompt).split()
        if not letters and not words:
            return False
        return (not letters or letters == want_letters) and (not words or words == want_words)
    if kind == "numbers":
        return digits_of(spoken_label(teacher, kind).split()) == re.sub(r"\D", "", prompt) != ""
    if kind == "addresses":
        if re.search(r"\d{3,}", teacher):  # "407": "four oh seven" or "four hundred seven"? not verbatim
            return False
        return _address_key(_joined_digits(teacher)) == _address_key(prompt)
    raise ValueError(f"unknown alnum kind {kind!r}")


def _address_key(text: str) -> tuple[list[str], list[str]]:
    """(words other than numbers, the numbers' digit strings) of an address."""
    tokens = re.findall(r"\d+|[A-Za-z']+", text)
    words = [normalize_text(t) for t in tokens if not t.isdigit()]
    return [w for w in words if w], [t for t in tokens if t.isdigit()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("alnum", type=Path, help="the alnum folder (with transcripts.tsv)")
    ap.add_argument("work", type=Path, help="the recipe's WORK folder")
    ap.add_argument("--out", type=Path, default=None, help="manifest folder (default WORK/manifests)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N clips (a quick test; 0: all)")
    args = ap.parse_args(argv)
    table = args.alnum / "transcripts.tsv"
    if not table.is_file():
        sys.exit(f"error: {table} not found")
    with open(table, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))[: args.limit or None]
    labels = args.work / "labels"
    labels.mkdir(parents=True, exist_ok=True)
    cache_path = labels / "alnum_teacher.tsv"
    cache = read_cache(cache_path, 4)
    todo = [r for r in rows if r["file"] not in cache]
    if todo:
        from teacher import Teacher
        from tqdm import tqdm

        teacher = Teacher(args.work / "teacher")
        with open(cache_path, "a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, delimiter="\t", lineterminator="\n")
            for row in tqdm(todo, desc="teacher", unit="clip", file=sys.stderr):
                try:
                    label = teacher.label(str(args.alnum / row["file"]))
                except Exception as e:  # an undecodable clip is counted and skipped, never the end of the stage
                    print(f"warning: {row['file']}: skipped: {e}", file=sys.stderr)
                    cache[row["file"]] = ["", "nan", "nan"]
                else:
                    cache[row["file"]] = [label.text, f"{label.avg_logprob:.3f}", f"{label.no_speech_prob:.3f}"]
                writer.writerow([row["file"], *cache[row["file"]]])
                f.flush()

    out = args.out or args.work / "manifests"
    out.mkdir(parents=True, exist_ok=True)
    kept, counts = [], {}
    with open(labels / "alnum.tsv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["file", "kind", "speaker", "prompt", "teacher", "reference", "kept"])
        for row in rows:
            text = cache[row["file"]][0]
            ok = bool(text) and agrees(text, row["prompt"], row["kind"])
            reference = spoken_label(text, row["kind"]) if text else ""
            writer.writerow([row["file"], row["kind"], row["speaker"], row["prompt"], text, reference, int(ok)])
            total, good = counts.get(row["kind"], (0, 0))
            counts[row["kind"]] = (total + 1, good + ok)
            if ok:
                audio = args.alnum / row["file"]
                kept.append(
                    {
                        "id": f"alnum_{row['kind']}_{Path(row['file']).stem}",
                        "audio": os.path.relpath(audio.resolve(), out.resolve()),
                        "duration": float(row["duration_s"]),
                        "text": reference,
                        "speaker": row["speaker"],
                    }
                )
    with open(out / "alnum_train.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(x) + "\n" for x in kept)
    for kind, (total, good) in sorted(counts.items()):
        print(f"alnum {kind}: {good} of {total} clips agree with their prompt")
    hours = sum(x["duration"] for x in kept) / 3600
    speakers = len({x["speaker"] for x in kept})
    print(f"alnum_train: {len(kept)} of {len(rows)} clips kept, {hours:.2f} h, {speakers} speakers")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
