"""When an utterance ends: sherpa-onnx / WeNet-style rules on the model's best token per output frame."""

from __future__ import annotations

from dataclasses import dataclass

from asr.decode.greedy import FRAME_SHIFT


@dataclass
class EndpointConfig:
    """When an utterance ends (sherpa-onnx / WeNet style rules). Times in seconds.

    Silence means output frames whose best token is the blank or a space.
    """

    enabled: bool = True
    silence_no_speech: float = 2.4  # rule 1: this much silence and nothing recognised yet
    silence_after_speech: float = 1.0  # rule 2: this much silence after some words
    max_utterance: float = 20.0  # rule 3: utterance length limit, then the cut waits for a word boundary
    max_utterance_grace: float = 2.0  # ... for at most this long; then it cuts wherever it is
    word_boundary: float = 0.12  # ... a word boundary: a space, or this much silence since the last letter

    def frames(self, seconds: float, frame_shift: float = FRAME_SHIFT) -> int:
        return max(1, round(seconds / frame_shift))
