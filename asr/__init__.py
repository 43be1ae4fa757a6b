"""gru-asr: streaming speech recognition with a unidirectional GRU and CTC.

import asr
model = asr.load_model()                 # the embedded default model, a file, or one of your models by name
result = asr.transcribe(model, "a.wav")  # {"text", "words": [{word, start, end, conf}], "duration"}

The names below are imported when first used, so that `import asr` (and the parts that need no model, such as
`server.protocol`) does not load torch.
"""

from __future__ import annotations

import importlib

__all__ = [
    "load_model",
    "transcribe",
    "default_model_path",
    "resolve_device",
    "ModelNotFoundError",
    "CheckpointError",
    "Recognizer",
    "DecodingConfig",
]
__version__ = "0.1.0"

_HOMES = {
    "load_model": "asr.model.loading",
    "default_model_path": "asr.model.loading",
    "resolve_device": "asr.model.loading",
    "ModelNotFoundError": "asr.model.loading",
    "CheckpointError": "asr.model.checkpoint",
    "transcribe": "asr.stream.transcription",
    "Recognizer": "asr.stream",
    "DecodingConfig": "asr.decode.config",
}


def __getattr__(name):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'asr' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
