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
    model's state starts afresh after every endpoint, running the last `warmup` of audio through the fresh state
    first (its output not decoded); and at the first sound after at least `idle_restart` of quiet silence with
    nothing recognised (a frame with a letter, or audio at or above `quiet_level`, after frames with neither; an
    endpoint in the silence does not break the run), the state starts afresh `onset_lead` before that frame (or
    where the quiet began, if later): whatever the length of the silence before it, speech is heard by a state
    that has heard exactly that much of it. Restarts fall on frames the rules pick from the model's output and the
    audio, so every chunking of the audio gives the same results.
    """

    enabled: bool = True
    silence_no_speech: float = 2.4  # rule 1: nothing recognised for this long (since a sound restarted the state)
    silence_after_speech: float = 1.0  # rule 2: this much silence after some words
    max_utterance: float = 20.0  # rule 3: utterance length limit, then the cut waits for a word boundary
    max_utterance_grace: float = 2.0  # ... for at most this long; then it cuts wherever it is
    word_boundary: float = 0.12  # ... a word boundary: a space, or this much silence since the last letter
    idle_restart: float = 0.3  # quiet silence with nothing recognised before a sound restarts the state (0: never)
    quiet_level: float = -45.0  # dBFS: output frames whose audio is quieter than this count as quiet (RMS)
    warmup: float = 0.2  # audio before a restart run through the fresh state (its output not decoded)
    onset_lead: float = 0.4  # ... this much of the quiet before the sound goes through the fresh state first

    def frames(self, seconds: float, frame_shift: float = FRAME_SHIFT) -> int:
        return max(1, round(seconds / frame_shift))
