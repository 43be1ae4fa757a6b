"""Recognition at run time: whole files (`transcription`, `asr.transcribe`) and live streams: one (`Recognizer`)
or many in one forward pass (`BatchEngine`), with endpoints (`EndpointConfig`).

The names most programs need are importable from here: `from asr.stream import Recognizer, EndpointConfig`.
"""

from asr.stream.endpoint import EndpointConfig
from asr.stream.engine import DEFAULT_CHUNK_FRAMES, BatchEngine
from asr.stream.recognizer import Recognizer
from asr.stream.stream import Stream

__all__ = ["BatchEngine", "DEFAULT_CHUNK_FRAMES", "EndpointConfig", "Recognizer", "Stream"]
