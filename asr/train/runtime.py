"""What a training process runs on: the device, the DDP process group, the random generators' state (exact
resume), the learning-rate schedule, and the optimizer state of a resume that adds or drops the auxiliary head."""

from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from asr.train.options import TrainError


def setup_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world_size); initialises the process group when launched by torchrun with WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world


def keep_recent(model: Path, folder: Path, step: int, keep: int) -> None:
    """Copy MODEL to FOLDER/step_STEP.pt and delete all but the KEEP latest steps' copies there."""
    folder.mkdir(exist_ok=True)
    shutil.copyfile(model, folder / f"step_{step}.pt")
    steps = ((p.stem.removeprefix("step_"), p) for p in folder.glob("step_*.pt"))
    saved = sorted((int(n), p) for n, p in steps if n.isdigit())
    for _, old in saved[:-keep]:
        old.unlink()


def pick_device(name: str | None) -> torch.device:
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainError("--device cuda but CUDA is not available")
        if device.index is None and "LOCAL_RANK" in os.environ:
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    return device


def rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):
            torch.cuda.set_rng_state_all(state["cuda"])


def _python_tuple(x):
    """torch.load gives lists back where random.getstate had tuples."""
    return tuple(_python_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def lr_lambda(warmup: int, total: int, min_ratio: float, time_fraction=None):
    """Multiplier of the peak lr at a step: linear warmup, then cosine down to min_ratio at `total`.

    `time_fraction()`, if given, is the share of the time budget spent; the decay follows the larger share.
    """

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if time_fraction is not None:
            progress = max(progress, min(1.0, time_fraction()))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def optimizer_with_parameters(optimizer: dict, change: int) -> dict:
    """An optimizer state dict (one group; the auxiliary head's parameters last) with `change` parameters appended
    (> 0: no moments yet, Adam starts them at their first step) or the last -change removed with their moments."""
    (group,) = optimizer["param_groups"]
    params = list(group["params"])
    if change > 0:
        params += range(max(params) + 1, max(params) + 1 + change)
    else:
        params = params[: len(params) + change]
    state = {k: v for k, v in optimizer["state"].items() if k in params}
    return {"state": state, "param_groups": [{**group, "params": params}]}
