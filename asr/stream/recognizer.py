"""`Recognizer`: one stream, Vosk-like, on a `BatchEngine` of its own (so a stream in a batch gives exactly the
results it gives alone)."""

from __future__ import annotations

from asr.audio import SAMPLE_RATE
from asr.decode.config import DecodingConfig
from asr.stream.endpoint import EndpointConfig
from asr.stream.engine import DEFAULT_CHUNK_FRAMES, BatchEngine


class Recognizer:
    """One stream, Vosk-like.

    rec = Recognizer(model, sample_rate=16000)
    if rec.accept_waveform(pcm):   # int16 bytes, or an int16/float array; any size
        print(rec.result())        # {"text": ..., "result": [{"word", "start", "end", "conf"}]}
    else:
        print(rec.partial_result())
    print(rec.final_result())
    """

    def __init__(
        self,
        model,
        sample_rate: float = SAMPLE_RATE,
        *,
        endpoint: EndpointConfig | None = None,
        words: bool = True,
        max_alternatives: int = 0,
        decoding: DecodingConfig | None = None,
        beam_factory=None,
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    ):
        """Finals are decoded as `decoding` says (default: `DecodingConfig()`, beam search with the general
        English LM; `DecodingConfig(method="greedy")` for none); `beam_factory` (a per-stream decoder factory,
        as `DecodingConfig.beam_factory` makes) takes its place when given. Partials are always greedy."""
        if beam_factory is None:
            decoding = decoding or DecodingConfig()
            if max_alternatives > 0:
                decoding = decoding.replace(nbest=max(decoding.nbest, max_alternatives))
            beam_factory = decoding.beam_factory(model.tokens)
        self.engine = BatchEngine(model, chunk_frames=chunk_frames, capacity=1)
        self.options = dict(
            endpoint=endpoint, words=words, max_alternatives=max_alternatives, beam_factory=beam_factory
        )
        self.sample_rate = sample_rate
        self.stream = self.engine.add_stream(sample_rate, **self.options)

    def accept_waveform(self, data) -> bool:
        """Feed audio; True when an utterance has ended (collect it with `result()`)."""
        self.stream.push(data)
        self.engine.run()
        return self.stream.has_final()

    def partial_result(self) -> dict:
        return self.stream.partial()

    def result(self) -> dict:
        """The utterance(s) ended at the last endpoint; without one, ends the current utterance now (and, with
        endpoints on, the next starts from a fresh model state, as after an endpoint)."""
        if not self.stream.has_final():
            self.stream.finish_utterance()
            if self.stream.endpoint.enabled:
                self.engine.restart(self.stream)
        return self.stream.pop_final()

    def final_result(self) -> dict:
        """Decode all audio given so far and end the utterance (call at the end of a stream)."""
        self.engine.flush(self.stream)
        return self.stream.pop_final()

    def reset(self) -> None:
        """Drop the current utterance, queued audio and model state; times keep counting."""
        frame = self.stream.frame + self.stream.ready // self.engine.subsampling
        self.engine.remove_stream(self.stream)
        self.stream = self.engine.add_stream(self.sample_rate, frame=frame, **self.options)
