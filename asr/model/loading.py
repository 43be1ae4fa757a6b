"""Loading a model: a bundle (`.pt`, the embedded one by default), an exported `.onnx` or `.ts` file, or the
name of one of the user's models (`asr adapt --name NAME`). Every result is an `asr.model.network.StreamingModel`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from asr.model import user_models
from asr.model.checkpoint import CheckpointError, load_checkpoint

DEFAULT_MODEL = Path(__file__).parents[1] / "assets" / "default_en.pt"
TORCHSCRIPT_SUFFIXES = (".ts", ".torchscript", ".jit")


class ModelNotFoundError(FileNotFoundError):
    pass


def default_model_path() -> Path:
    return DEFAULT_MODEL


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r} (want auto, cpu, cuda or cuda:N)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was asked for but torch sees no GPU (use --device cpu)")
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not supported (want auto, cpu, cuda or cuda:N)")
    return resolved


def load_model(path=None, device: str = "auto", threads: int | None = None):
    """Load a model (default: the embedded bundle) onto `device` ("auto", "cpu", "cuda").

    A `.onnx` file runs on ONNX Runtime's CPU provider (`threads` intra-op threads; None: its default) and a
    `.ts` file is an exported TorchScript step (`asr export`); both run on the CPU and behave like the bundle
    for `transcribe`, `Recognizer` and the server. A name (`asr adapt --name NAME`) is a model in
    `asr.model.user_models.models_dir()`; "default" the embedded one.
    """
    path = user_models.resolve(path)
    if path is None:
        path = DEFAULT_MODEL
        if not path.exists():
            raise ModelNotFoundError(
                "no model installed: the embedded default model is missing from asr/assets "
                "(train one with recipes/default_en/prepare.sh, or pass --model PATH)"
            )
    path = Path(path)
    if path.suffix == ".onnx" or path.suffix in TORCHSCRIPT_SUFFIXES:
        if not path.exists():
            raise CheckpointError(f"{path}: no such file")
        from asr.model.backends import OnnxModel, TorchScriptModel

        return OnnxModel(path, threads=threads) if path.suffix == ".onnx" else TorchScriptModel(path)
    return load_checkpoint(path, device=resolve_device(device))
