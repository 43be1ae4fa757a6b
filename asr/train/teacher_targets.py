"""A teacher's frame-level targets for the auxiliary loss (`asr train --aux-weight`): a big model's encoder states of
the clean audio (recipes/default_en/local/whisper_targets.py makes them from Whisper's encoder, projected to a few
dozen dimensions), one .npy file per utterance, named by the manifest's "teacher" field (relative paths resolve
against the manifest's folder, as "audio" does).

A target file holds (N, D) float16 or float32 rows, one per TEACHER_SHIFT seconds of the clean audio. `align` maps
them onto the model's output frames of the augmented audio, whose time the augmentation moved (leads, padding, a
stream's first utterance before it: an offset; speed perturbation: a factor), and says which output frames have a
target at all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

TEACHER_SHIFT = 0.02  # seconds per target row (Whisper's encoder: 1,500 states per 30 s)


class TargetError(ValueError):
    """A target file that cannot be used; the message names the file."""


def resolve(entry: dict, folder: Path) -> dict:
    """The entry with its "teacher" path made absolute against the manifest's `folder` (unchanged without one)."""
    teacher = entry.get("teacher")
    if not isinstance(teacher, str) or Path(teacher).is_absolute():
        return entry
    return {**entry, "teacher": str((folder / teacher).resolve())}


def load_targets(path) -> np.ndarray:
    """(N, D) float32 rows of a target file; TargetError for a missing, unreadable or misshapen one."""
    try:
        rows = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise TargetError(f"{path}: not a readable target file ({str(exc).splitlines()[0][:120]})") from None
    if rows.ndim != 2 or not np.issubdtype(rows.dtype, np.floating):
        raise TargetError(f"{path}: expected (frames, dims) floats, got {rows.dtype} {rows.shape}")
    return rows.astype(np.float32, copy=False)


def align(
    rows: np.ndarray, frames: int, frame_shift: float, offset: float = 0.0, speed: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(targets (frames, D), mask (frames,) bool): for each output frame u of the augmented audio (frame_shift
    seconds each), the target row nearest to where its middle came from in the clean audio, time
    (u + 0.5) * frame_shift * speed - offset; frames from outside the clean audio (leads, gaps, another utterance)
    are masked out."""
    clean = (np.arange(frames) + 0.5) * frame_shift * speed - offset
    index = np.floor(clean / TEACHER_SHIFT + 1e-6).astype(np.int64)  # 1e-6: 0.58 / 0.02 is 28.999...
    mask = (clean >= 0) & (index < len(rows))
    targets = np.zeros((frames, rows.shape[1]), np.float32)
    targets[mask] = rows[index[mask]]
    return torch.from_numpy(targets), torch.from_numpy(mask)
