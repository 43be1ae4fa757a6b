"""One-file model bundle: format tag + version + config + tokens + weights (normalisation stats included).

Loaded with `torch.load(weights_only=True)`, so a checkpoint cannot run code.
Every way a file can be wrong gives a `CheckpointError` whose one-line message
names the file and the problem.
"""

from __future__ import annotations

from pathlib import Path

import torch

from asr.model.network import GRUCTC, ModelConfig
from asr.util.atomic import atomic_open

FORMAT = "gru-asr"  # tag that tells our bundles from other torch files
VERSION = 1  # bump when the bundle's layout changes incompatibly


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file and the problem."""


def save_checkpoint(path, model: GRUCTC, tokens: list[str] | None = None, extra: dict | None = None) -> None:
    """Write the bundle atomically (temporary file, then rename); `tokens` default to the model's."""
    bundle = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config.to_dict(),
        "tokens": list(model.tokens if tokens is None else tokens),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra or {},
    }
    with atomic_open(path, "wb") as f:
        torch.save(bundle, f)


def read_bundle(path) -> dict:
    """Load and validate a bundle without building the model."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint")
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any file that is not a bundle: torch's unpickler raises IndexError, KeyError, ...
        if path.stat().st_size == 0:
            raise CheckpointError(f"{path}: empty file, not a checkpoint") from None
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "Unsupported global" in str(exc):
            raise CheckpointError(f"{path}: not a gru-asr checkpoint (holds objects other than tensors)") from None
        if "WeightsUnpickler error:" in str(exc):
            reason = str(exc).split("WeightsUnpickler error:")[1].strip().splitlines()[0]
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({reason[:200]})") from None
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a gru-asr checkpoint (no '{FORMAT}' format tag)")
    version = bundle.get("version")
    if version != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version}, this gru-asr reads version {VERSION}")
    for key, kind in (("config", dict), ("tokens", list), ("state_dict", dict)):
        if not isinstance(bundle.get(key), kind):
            raise CheckpointError(f"{path}: checkpoint is missing its '{key}'")
    return bundle


def load_checkpoint(path, device="cpu") -> GRUCTC:
    """Build the model (with its tokens, `source` and `extra`) from a bundle."""
    bundle = read_bundle(path)
    try:
        config = ModelConfig.from_dict(bundle["config"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: bad model config ({str(exc).splitlines()[0][:200]})") from None
    if len(bundle["tokens"]) != config.vocab_size:
        raise CheckpointError(f"{path}: {len(bundle['tokens'])} tokens but the model outputs {config.vocab_size}")
    try:
        model = GRUCTC(config, bundle["tokens"])
        model.load_state_dict(bundle["state_dict"])
    except (ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: weights do not match the config ({str(exc).splitlines()[0][:200]})") from None
    model.extra = dict(bundle.get("extra") or {})
    model.source = str(path)
    return model.to(device).eval()
