#!/usr/bin/env python3
"""Teacher labels for clips that come without text (Beneath a Steel Sky's speech), kept where the teacher is sure.

The Whisper teacher (teacher.py, packed: many short clips share a 30 s window) transcribes every clip listed in
a clips TSV (columns id, duration, audio relative to the TSV; sky_speech.py writes one). A clip's label is the
transcript in our spoken forms (asr.model.tokenizer.normalize_text), kept only when `refusal()` finds nothing wrong:
- the teacher heard words at all (its no-speech probability is not used: packed, it belongs to the whole 30 s
  window, which starts with silence, not to one clip);
- its mean log word probability is at least MIN_LOGPROB (calibrated on clips with exact labels: Flight of
  the Amazon Queen's script, `--calibrate`, where the teacher's WER is measured per confidence band);
- no number of 3 or more digits ("1984": which reading?), no repetition loop (compression ratio at most 2.4);
- a plausible speaking rate: MIN_CPS to MAX_CPS characters of the label per second of audio.
Teacher transcripts are cached (WORK/labels/NAME_teacher.tsv: a rerun labels only what is missing); every
clip's transcript, label and verdict go to WORK/labels/NAME.tsv, the kept ones to OUT/NAME_train.jsonl.

    python recipes/default_en/local/label_clips.py WORK/games/sky/clips.tsv WORK --name sky [--speaker sky]
    python recipes/default_en/local/label_clips.py --calibrate WORK/manifests/queen_train.jsonl WORK [--limit N]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import re
import sys
from pathlib import Path

from teacher import read_cache

from asr.model.tokenizer import normalize_text

MIN_LOGPROB = -0.2  # Queen calibration (300 clips): teacher WER 3.0% at >= -0.1, 8.8% in [-0.2, -0.1), 18.9% below
MAX_COMPRESSION = 2.4
MIN_CPS, MAX_CPS = 4.0, 30.0
BATCH = 64  # clips handed to the teacher at a time (the cache is written after each batch)


def refusal(text: str, avg_logprob: float, compression: float, duration: float) -> str:
    """Why a teacher transcript is not kept as a label ("" when it is)."""
    label = normalize_text(text)
    if not label:
        return "no words"
    if not avg_logprob >= MIN_LOGPROB:  # NaN (an undecodable clip) is refused too
        return "unsure"
    if compression > MAX_COMPRESSION:
        return "repetition"
    if re.search(r"\d{3,}", text):
        return "long number"
    cps = len(label) / max(duration, 1e-3)
    if not MIN_CPS <= cps <= MAX_CPS:
        return "rate"
    return ""


def transcribe(clips: list[tuple[str, Path]], work: Path, cache_path: Path) -> dict[str, list[str]]:
    """Teacher transcripts {id: [text, avg_logprob, no_speech, compression]}, cached in cache_path."""
    cache = read_cache(cache_path, 5)
    todo = [(uid, audio) for uid, audio in clips if uid not in cache]
    if not todo:
        return cache
    from teacher import Teacher
    from tqdm import tqdm

    from asr.audio.files import load_audio

    teacher = Teacher(work / "teacher")
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    with open(cache_path, "a", newline="", encoding="utf-8") as f, tqdm(total=len(todo), desc="teacher") as bar:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        for start in range(0, len(todo), BATCH):
            batch, audio = [], []
            for uid, path in todo[start : start + BATCH]:
                try:
                    audio.append(load_audio(path))
                    batch.append(uid)
                except Exception as e:  # an undecodable clip is counted and refused, never the end of the stage
                    print(f"warning: {uid}: {str(e).splitlines()[0] if str(e) else e}", file=sys.stderr)
                    cache[uid] = ["", "nan", "nan", "nan"]
                    writer.writerow([uid, *cache[uid]])
            for uid, label in zip(batch, teacher.label_packed(audio), strict=True):
                cache[uid] = [
                    label.text.replace("\t", " "),
                    f"{label.avg_logprob:.3f}",
                    f"{label.no_speech_prob:.3f}",
                    f"{label.compression_ratio:.2f}",
                ]
                writer.writerow([uid, *cache[uid]])
            f.flush()
            bar.update(len(todo[start : start + BATCH]))
    return cache


def _scores(row: list[str]) -> tuple[str, float, float, float]:
    return row[0], float(row[1]), float(row[2]), float(row[3])


def label(args) -> int:
    table = args.clips
    if not table.is_file():
        sys.exit(f"error: {table} not found")
    with open(table, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))[: args.limit or None]
    if rows and not {"id", "duration", "audio"} <= set(rows[0]):
        sys.exit(f"error: {table} needs the columns id, duration, audio")
    clips = [(r["id"], table.parent / r["audio"]) for r in rows]
    labels = args.work / "labels"
    cache = transcribe(clips, args.work, labels / f"{args.name}_teacher.tsv")
    out = (args.out or args.work / "manifests").resolve()
    out.mkdir(parents=True, exist_ok=True)
    kept, reasons = [], {}
    with open(labels / f"{args.name}.tsv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["id", "teacher", "avg_logprob", "no_speech", "label", "refused"])
        for row, (uid, audio) in zip(rows, clips, strict=True):
            text, logp, no_speech, compression = _scores(cache[uid])
            duration = float(row["duration"])
            why = refusal(text, logp, compression, duration)
            reasons[why] = reasons.get(why, 0) + 1
            writer.writerow([uid, text, f"{logp:.3f}", f"{no_speech:.3f}", normalize_text(text), why])
            if not why:
                entry = {"id": uid, "audio": os.path.relpath(audio.resolve(), out), "duration": duration}
                kept.append({**entry, "text": normalize_text(text), "speaker": args.speaker or args.name})
    with open(out / f"{args.name}_train.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(x) + "\n" for x in kept)
    hours = sum(x["duration"] for x in kept) / 3600
    refused = ", ".join(f"{why} {n}" for why, n in sorted(reasons.items()) if why) or "none"
    print(f"{args.name}_train: {len(kept)} of {len(rows)} clips kept, {hours:.2f} h (refused: {refused})")
    return 0


def calibrate(args) -> int:
    """The teacher's WER on clips with exact labels, per confidence band: the evidence for MIN_LOGPROB."""
    import jiwer

    manifest = args.clips
    if not manifest.is_file():
        sys.exit(f"error: {manifest} not found")
    entries = [json.loads(line) for line in open(manifest, encoding="utf-8")]
    random.Random(0).shuffle(entries)
    entries = entries[: args.limit or 300]
    clips = [(e["id"], (manifest.parent / e["audio"]).resolve()) for e in entries]
    cache = transcribe(clips, args.work, args.work / "labels" / f"{manifest.stem}_teacher.tsv")
    rows = []
    for e in entries:
        text, logp, _, compression = _scores(cache[e["id"]])
        hyp = normalize_text(text)
        errors = jiwer.process_words(e["text"], hyp).wer * len(e["text"].split()) if e["text"] else 0
        why = refusal(text, logp, compression, e["duration"])
        rows.append((logp, errors, len(e["text"].split()), why, e["text"], hyp))
    print(f"teacher on {len(rows)} clips of {manifest.name} (exact labels), by mean log word probability:")
    print("| band | clips | teacher WER |")
    print("|---|---|---|")
    bands = [(-math.inf, -1.0), (-1.0, -0.5), (-0.5, -0.35), (-0.35, -0.2), (-0.2, -0.1), (-0.1, math.inf)]
    for lo, hi in bands:
        band = [r for r in rows if lo <= r[0] < hi]
        words = sum(r[2] for r in band)
        if band:
            print(f"| [{lo:g}, {hi:g}) | {len(band)} | {100 * sum(r[1] for r in band) / max(words, 1):.1f}% |")
    kept = [r for r in rows if not r[3]]
    words = sum(r[2] for r in kept)
    print(
        f"kept by refusal() (MIN_LOGPROB {MIN_LOGPROB}): {len(kept)} of {len(rows)} clips, teacher WER "
        f"{100 * sum(r[1] for r in kept) / max(words, 1):.1f}% on them"
    )
    audit = rows[:100]  # the label audit: where the teacher is sure and still differs, is the label wrong?
    differ = [r for r in audit if r[1]]
    sure = [r for r in differ if r[0] >= -0.1]
    print(
        f"audit: {len(differ)} of the first {len(audit)} clips differ from the teacher; {len(sure)} where it is sure:"
    )
    for r in sure:
        print(f"  {r[0]:.2f}  label: {r[4]}  |  teacher: {r[5]}")
    if args.show:
        print(f"the {args.show} kept clips with the most teacher errors:")
        for r in sorted(kept, key=lambda r: -r[1])[: args.show]:
            print(f"  {r[0]:.2f}  label: {r[4]}  |  teacher: {r[5]}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("clips", type=Path, help="clips TSV (id, duration, audio); with --calibrate a JSONL manifest")
    ap.add_argument("work", type=Path, help="the recipe's WORK folder")
    ap.add_argument("--name", default="sky", help="output names: labels/NAME.tsv, NAME_train.jsonl")
    ap.add_argument("--speaker", default=None, help="speaker of every clip (default: NAME)")
    ap.add_argument("--out", type=Path, default=None, help="manifest folder (default WORK/manifests)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N clips (calibrate: N random; default 300)")
    ap.add_argument("--calibrate", action="store_true", help="measure the teacher on a manifest with exact labels")
    ap.add_argument("--show", type=int, default=0, help="with --calibrate: print the N worst kept clips")
    args = ap.parse_args(argv)
    return calibrate(args) if args.calibrate else label(args)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
