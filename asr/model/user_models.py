"""Named models of this user: `asr adapt --name NAME` saves one, `--model NAME` finds it in every command.

They live in $XDG_DATA_HOME/gru-asr/models/NAME.pt (default ~/.local/share/gru-asr/models/), as ordinary model
bundles. A `--model` value is a file when such a file exists, else a name when it looks like one (letters,
digits, `_` and `-`: no dots or slashes, so `model.pt` is always a file), else a file (and its error).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from asr.model.checkpoint import CheckpointError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
DEFAULT = "default"  # the embedded model, as a --model value
MODEL_HELP = (
    "model: a bundle, .onnx or .ts file, or the name of one of your `asr adapt` models (default: the embedded one)"
)


def models_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "gru-asr" / "models"


def check_name(name: str) -> str:
    """`name` if it can name a model, else ValueError with the rule."""
    if not NAME.fullmatch(name or "") or name == DEFAULT:
        raise ValueError(
            f"model name {name!r}: use 1-64 letters, digits, '_' or '-', starting with a letter or digit"
            f" (and not {DEFAULT!r})"
        )
    return name


def model_file(name: str) -> Path:
    return models_dir() / f"{check_name(name)}.pt"


def names() -> list[str]:
    folder = models_dir()
    return sorted(p.stem for p in folder.glob("*.pt") if NAME.fullmatch(p.stem)) if folder.is_dir() else []


def resolve(spec) -> Path | None:
    """The file a --model value means: None for the embedded model (None or "default"), a named model's file, or
    the path as given (whose loader reports it when it is missing)."""
    if spec is None or str(spec) == DEFAULT:
        return None
    path = Path(spec)
    if path.exists() or not NAME.fullmatch(str(spec)):
        return path
    named = models_dir() / f"{spec}.pt"
    if named.exists():
        return named
    known = names()
    have = f"yours: {', '.join(known)}" if known else "you have none yet (`asr adapt` makes them)"
    raise CheckpointError(f"{spec}: no such file, and no model of that name in {models_dir()} ({have})")
