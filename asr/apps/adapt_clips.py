"""The clips `asr adapt` learns from: read from a folder or a manifest, refused when silent or clipped, and split
into the part trained on and the part held out."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import numpy as np

from asr.audio import AudioError
from asr.audio.files import load_audio
from asr.util.errors import UserError

MIN_CLIPS = 5  # usable clips needed: at least four to train on, one to hold out
HELD_OUT_FRACTION = 0.2
SILENT_DBFS = -50.0  # a clip whose loudest 50 ms is quieter than this is refused as silent
CLIPPED_FRACTION = 0.002  # a clip with more of its samples at full scale than this is refused as clipped
FULL_SCALE = 0.999


def clip_problem(samples: np.ndarray) -> str | None:
    """Why a recording cannot be used (silent, clipped), or None."""
    if samples.size == 0:
        return "empty"
    window = 800  # 50 ms at 16 kHz
    frames = (
        samples[: samples.size - samples.size % window].reshape(-1, window) if samples.size >= window else samples[None]
    )
    loudest = float(np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)).max())
    level = 20 * np.log10(max(loudest, 1e-10))
    if level < SILENT_DBFS:
        return f"silent (loudest 50 ms at {level:.0f} dBFS, below {SILENT_DBFS:g})"
    clipped = float(np.mean(np.abs(samples) >= FULL_SCALE))
    if clipped > CLIPPED_FRACTION:
        return f"clipped ({clipped:.1%} of its samples at full scale): record it less loud"
    return None


def collect(source) -> tuple[list[dict], list[tuple[str, str]]]:
    """(usable entries, [(clip, reason)] refused) from a folder or a manifest."""
    from asr.train.manifests import DataError, import_folder, read_manifest

    path = Path(source)
    if not path.exists():
        raise UserError(f"{path}: no such folder or manifest")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            entries = import_folder(path) if path.is_dir() else read_manifest(path)
        except DataError as exc:
            raise UserError(str(exc)) from None
    refused = [("", str(w.message)) for w in caught]
    usable = []
    for entry in entries:
        try:
            problem = clip_problem(load_audio(entry["audio"]))
        except AudioError as exc:
            problem = str(exc)
        if problem:
            refused.append((entry["audio"], problem))
        else:
            usable.append(entry)
    return usable, refused


def split(entries: list[dict], seed: int) -> tuple[list[dict], list[dict]]:
    """(train, held out): a fifth held out, at least one, chosen by `seed`."""
    order = list(entries)
    random.Random(seed).shuffle(order)
    held = max(1, round(len(order) * HELD_OUT_FRACTION))
    return order[held:], order[:held]
