"""When an utterance ends (sherpa-onnx / WeNet-style rules on the model's best token per output frame), and when the
model's state starts afresh: at every endpoint, and in silence before speech."""

from __future__ import annotations

from dataclasses import dataclass

from asr.decode.greedy import FRAME_SHIFT


@dataclass
class EndpointConfig:
    """When an utterance ends (sherpa-onnx / WeNet style rules) and the model state restarts. Times in seconds.

    Silence means output frames whose best token is the blank or a space. The GRU was trained on single
    utterances, each from a zero state with a little silence before it: a state that has carried an earlier
    sentence, or seconds of silence or noise, hears the next words worse. So, where endpoints are enabled, the
    model's state starts afresh after every endpoint, and again after every `idle_restart` of quiet silence
    (no letter recognised and the audio below `quiet_level`, so speech the model does not recognise is not cut)
    while nothing has been recognised; each time the last `warmup` of audio is run through the fresh state first (its
    output not decoded), so a word that begins right there is heard whole. Restarts fall on frames the rules
    pick from the model's output, so every chunking of the audio gives the same results.
    """

    enabled: bool = True
    silence_no_speech: float = 2.4  # rule 1: this much silence and nothing recognised yet
    silence_after_speech: float = 1.0  # rule 2: this much silence after some words
    max_utterance: float = 20.0  # rule 3: utterance length limit, then the cut waits for a word boundary
    max_utterance_grace: float = 2.0  # ... for at most this long; then it cuts wherever it is
    word_boundary: float = 0.12  # ... a word boundary: a space, or this much silence since the last letter
    idle_restart: float = 0.3  # a fresh state after this much quiet silence with nothing recognised (0: never)
    quiet_level: float = -45.0  # dBFS: output frames whose audio is quieter than this count as quiet (RMS)
    warmup: float = 0.2  # audio before a restart run through the fresh state (its output not decoded)

    def frames(self, seconds: float, frame_shift: float = FRAME_SHIFT) -> int:
        return max(1, round(seconds / frame_shift))
