"""Streaming recognition: one stream (`Recognizer`) or many in one forward pass (`BatchEngine`).

A `Stream` holds everything of one stream except the model: PCM conversion,
streaming resampling, the samples not yet turned into features, the decoder
of the current utterance, and the endpoint rules. The `BatchEngine` owns the
frontend, the model and the streams' model states, stacked along the batch
dimension in slots; every stream with samples for a full chunk is advanced by
one batched log-mel call and one `model.step`. Features are computed with
`center=False` framing from each stream's carried samples, exactly as
`MelStream` does, so the result is the same as over the whole signal. A `Recognizer` is a BatchEngine with one stream, so a stream in
a batch gives exactly the results it gives alone.

Legend: U = output frames (10 ms x the model's subsampling), V = vocabulary, F = mel bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from asr.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, SAMPLE_RATE, pad_tail
from asr.decoding import FRAME_SHIFT, GreedyDecoder, best_path, clip_word_times, delay_word_times
from asr.decoding_config import DecodingConfig
from asr.frontend import HOP_LENGTH, N_FFT, LogMel, num_frames
from asr.resample import StreamResampler
from asr.tokenizer import BLANK

DEFAULT_CHUNK_FRAMES = 16  # feature frames (10 ms each) per model step: 160 ms
MAX_FLUSH_BATCH = 256  # streams in one forward pass of `BatchEngine.flush`


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


class PcmInput:
    """Turns what accept_waveform gets into float32 samples; carries an odd trailing byte."""

    def __init__(self):
        self.odd = b""

    def convert(self, data) -> np.ndarray:
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = self.odd + bytes(data)
            cut = len(data) - len(data) % 2
            self.odd = data[cut:]
            return np.frombuffer(data[:cut], dtype="<i2").astype(np.float32) / 32768.0
        if isinstance(data, torch.Tensor):
            data = data.detach().cpu().numpy()
        if not isinstance(data, np.ndarray):
            raise TypeError(f"audio must be int16 PCM bytes or a numpy array, not {type(data).__name__}")
        if data.ndim != 1:
            raise ValueError(f"audio array must be 1-D (mono), got shape {data.shape}")
        if data.dtype == np.int16:
            return data.astype(np.float32) / 32768.0
        if data.dtype in (np.float32, np.float64):
            return data.astype(np.float32, copy=False)
        raise TypeError(f"audio array must be int16, float32 or float64, not {data.dtype}")


class Stream:
    """One stream's input, features, decoding and endpoints (no model, no model state)."""

    def __init__(
        self,
        tokens: list[str],
        sample_rate: float = SAMPLE_RATE,
        endpoint: EndpointConfig | None = None,
        words: bool = True,
        max_alternatives: int = 0,
        beam_factory=None,
        frame: int = 0,
        frame_shift: float = FRAME_SHIFT,
        output_delay: float = 0.0,
    ):
        rate = float(sample_rate)
        if not rate.is_integer() or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
            raise ValueError(
                f"sample rate {sample_rate} not supported (whole Hz from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE})"
            )
        self.tokens = tokens
        self.space = tokens.index(" ")
        self.sample_rate = int(rate)
        self.frame_shift = frame_shift  # seconds per output frame of the model
        self.output_delay = output_delay  # seconds: a lookahead model labels each frame this much earlier
        self.endpoint = ep = endpoint or EndpointConfig()
        self._endpoint_frames = (
            ep.frames(ep.silence_no_speech, frame_shift),
            ep.frames(ep.silence_after_speech, frame_shift),
            ep.frames(ep.max_utterance, frame_shift),
            ep.frames(ep.max_utterance + ep.max_utterance_grace, frame_shift),
            ep.frames(ep.word_boundary, frame_shift),
        )
        self.words = words
        self.max_alternatives = max_alternatives
        self.pcm = PcmInput()
        self.resampler = StreamResampler(self.sample_rate)
        self.samples = np.zeros(0, np.float32)  # 16 kHz samples not yet framed (frames overlap: N_FFT > HOP)
        self.frame = frame  # absolute index of the next output frame
        self.start_time = frame * frame_shift  # seconds: where this stream's audio starts on its time line
        self.received = 0  # 16 kHz samples pushed so far
        self.time_limit = None  # seconds: word times stop here (set while the engine decodes tail padding)
        self.finals: list[dict] = []  # finished utterances not yet collected
        self.slot = -1  # row in the engine's stacked state
        self.beam = beam_factory() if beam_factory else None  # one beam decoder per stream, reused per utterance
        if self.beam:
            self.beam.frame_shift = frame_shift  # word times in this model's frames, whoever built the factory
        self._new_utterance()

    # -- input ---------------------------------------------------------------
    def push(self, data) -> None:
        samples = self.pcm.convert(data)
        if samples.size:
            self._push_samples(self.resampler.accept(samples))

    def end_input(self) -> None:
        """Queue the resampler's last samples (those its filter held back); it starts afresh for later audio."""
        tail = self.resampler.flush()
        if tail.size:
            self._push_samples(tail)

    def _push_samples(self, samples: np.ndarray) -> None:
        self.samples = np.concatenate([self.samples, samples]) if self.samples.size else samples
        self.received += samples.size

    @property
    def end_time(self) -> float:
        """Seconds: the end of the audio pushed so far, on the stream's time line."""
        return self.start_time + self.received / SAMPLE_RATE

    @property
    def ready(self) -> int:
        """Feature frames the carried samples make."""
        return num_frames(self.samples.size)

    def take(self, n: int) -> np.ndarray:
        """The samples of the next n frames (n <= ready): ((n - 1) * HOP_LENGTH + N_FFT,); keeps the overlap."""
        window = self.samples[: (n - 1) * HOP_LENGTH + N_FFT]
        self.samples = self.samples[n * HOP_LENGTH :]
        return window

    # -- decoding --------------------------------------------------------------
    def _new_utterance(self) -> None:
        """A fresh greedy decoder; the beam decoder begins its next utterance with its first frames (beginning
        frees the last one's hypotheses, which a stream that ends now need not wait for)."""
        self.greedy = GreedyDecoder(self.tokens, self.frame_shift, start_frame=self.frame)

    def consume(self, log_probs: torch.Tensor, best=None) -> None:
        """Decode the model's next output frames (U, V), ending utterances where a rule fires.

        `best`: `best_path(log_probs)` when the caller has it already (the engine computes it for the batch).
        """
        tokens, logps = best or best_path(log_probs)
        while tokens:
            cut = self._endpoint_at(tokens)
            n = len(tokens) if cut is None else cut + 1
            self.greedy.accept_best(tokens[:n], logps[:n])
            if self.beam:
                self.beam.step(log_probs[:n])
            self.frame += n
            if cut is None:
                return
            self.finish_utterance()
            tokens, logps, log_probs = tokens[n:], logps[n:], log_probs[n:]

    def _endpoint_at(self, tokens: list[int]) -> int | None:
        """Index of the first frame (given by its best token) at which an endpoint rule fires, or None."""
        if not self.endpoint.enabled:
            return None
        no_speech, after_speech, longest, hardest, boundary = self._endpoint_frames
        start, last = self.greedy.start_frame, self.greedy.last_speech_frame
        for i, tok in enumerate(tokens):
            t = self.frame + i
            if tok != BLANK and tok != self.space:
                last = t
            elapsed = t - start + 1
            if elapsed >= longest and (tok == self.space or t - last >= boundary or elapsed >= hardest):
                return i  # rule 3, not inside a word where it can help it
            if t - last >= after_speech if last >= start else elapsed >= no_speech:
                return i
        return None

    def finish_utterance(self) -> None:
        """Close the current utterance into a final result and start the next one."""
        self.finals.append(self._final())
        self._new_utterance()

    def _final(self) -> dict:
        if self.beam:
            hyps = self.beam.end(time_offset=self.greedy.start_frame * self.frame_shift)
            text = hyps[0]["text"] if hyps else ""
            words = hyps[0]["words"] if hyps else []
        else:
            hyps, words = None, self.greedy.words()
            text = " ".join(w["word"] for w in words)
        words = delay_word_times(words, self.output_delay, earliest=self.greedy.start_frame * self.frame_shift)
        if self.time_limit is not None:
            words = clip_word_times(words, self.time_limit)
        if self.max_alternatives > 0:
            alts = hyps or [{"text": text, "confidence": _mean_conf(words)}]
            alts = alts[: self.max_alternatives]
            return {"alternatives": [{"text": h["text"], "confidence": round(h["confidence"], 4)} for h in alts]}
        result = {"text": text}
        if self.words and words:
            result["result"] = [
                {"conf": w["conf"], "end": w["end"], "start": w["start"], "word": w["word"]} for w in words
            ]
        return result

    # -- results (Vosk-like) ---------------------------------------------------
    def has_final(self) -> bool:
        return bool(self.finals)

    def partial(self) -> dict:
        return {"partial": self.greedy.text()}

    def pop_final(self) -> dict:
        """The finished utterances since the last call, merged into one result."""
        finals, self.finals = self.finals, []
        if len(finals) == 1:
            return finals[0]
        if finals and "alternatives" in finals[0]:
            best = [f["alternatives"][0] for f in finals]
            text = " ".join(b["text"] for b in best if b["text"])
            return {"alternatives": [{"text": text, "confidence": min(b["confidence"] for b in best)}]}
        merged = {"text": " ".join(f["text"] for f in finals if f["text"])}
        words = [w for f in finals for w in f.get("result", [])]
        if words:
            merged["result"] = words
        return merged


def _mean_conf(words: list[dict]) -> float:
    return sum(w["conf"] for w in words) / len(words) if words else 1.0


class BatchEngine:
    """Advances many streams with one model.step per chunk of `chunk_frames` feature frames.

    Streams may join (`add_stream`) and leave (`remove_stream`) at any time.
    Not thread-safe: drive it from one thread (the server's worker does).
    """

    def __init__(self, model, chunk_frames: int = DEFAULT_CHUNK_FRAMES, device=None, capacity: int = 8):
        """`chunk_frames` is rounded up to a multiple of the model's subsampling S (whole output frames)."""
        if chunk_frames <= 0:
            raise ValueError(f"chunk_frames must be positive, got {chunk_frames}")
        self.subsampling = S = model.config.subsampling
        self.model = model.eval()
        self.device = torch.device(device) if device is not None else model.device
        self.chunk_frames = -(-chunk_frames // S) * S
        self.logmel = LogMel()
        self.streams: dict[int, Stream] = {}
        self.state = model.init_state(capacity, self.device)
        self.free = list(range(capacity - 1, -1, -1))

    def add_stream(self, sample_rate: float = SAMPLE_RATE, **options) -> Stream:
        """A new stream; `options` go to `Stream` (endpoint, words, max_alternatives, beam_factory)."""
        config = self.model.config
        stream = Stream(
            self.model.tokens, sample_rate, frame_shift=config.frame_shift, output_delay=config.output_delay, **options
        )
        if not self.free:
            self._grow()
        stream.slot = self.free.pop()
        self._zero(stream.slot)
        self.streams[stream.slot] = stream
        return stream

    def remove_stream(self, stream: Stream) -> None:
        if self.streams.get(stream.slot) is stream:
            del self.streams[stream.slot]
            self.free.append(stream.slot)
        stream.slot = -1

    def reset_stream(self, stream: Stream) -> None:
        """Forget the stream's audio and model state (keeps its slot)."""
        self._zero(stream.slot)

    def _zero(self, slot: int) -> None:
        self.state.zero(slot)

    def _grow(self) -> None:
        capacity = self.state.batch
        self.state = self.state.grown(capacity * 2)
        self.free.extend(range(capacity * 2 - 1, capacity - 1, -1))

    @torch.inference_mode()
    def _advance(self, streams: list[Stream], frames: int) -> None:
        waves = torch.from_numpy(np.stack([s.take(frames) for s in streams]))
        feats = self.logmel(waves).to(self.device)  # (B, frames, F): one frontend call for the batch
        slots = torch.tensor([s.slot for s in streams], device=self.device)
        log_probs, new = self.model.step(feats, self.state.select(slots))  # whole groups of S: no pending frames
        self.state.assign(slots, new)
        log_probs = log_probs.float().cpu()
        best_logp, best = log_probs.max(dim=-1)  # (B, U): one call for the batch, not one per stream
        for stream, lp, tokens, logps in zip(streams, log_probs, best.tolist(), best_logp.tolist()):
            stream.consume(lp, (tokens, logps))

    def step(self) -> int:
        """One forward pass over every stream with a full chunk ready; returns how many advanced."""
        ready = [s for s in self.streams.values() if s.ready >= self.chunk_frames]
        if ready:
            self._advance(ready, self.chunk_frames)
        return len(ready)

    def run(self) -> None:
        """Step until no stream has a full chunk."""
        while self.step():
            pass

    def flush(self, *streams: Stream) -> None:
        """Decode what is queued for each stream, then `asr.audio.TAIL_PADDING` s of silence; end its utterance.

        The silence lets the causal model emit the last letters it has heard (`asr.audio.pad_tail`). Then the
        stream goes on from the end of its real audio: the samples short of a whole output frame stay queued for
        the audio that may follow, the frame count leaves the padding out and word times stop at the audio's end;
        only the model state has seen the silence. A stream that never got audio is not padded. Audio at another
        rate first gets the resampler's last samples. Streams flushed together share forward passes (one per
        distinct length of what is left), with the results each would get alone.
        """
        streams = list(dict.fromkeys(streams))  # once each
        for stream in streams:
            stream.end_input()
        while ready := [s for s in streams if s.ready >= self.chunk_frames]:  # their queued audio, not others'
            self._advance(ready, self.chunk_frames)
        plans, by_frames = [], {}
        for stream in streams:
            real = stream.ready - stream.ready % self.subsampling  # feature frames, as without the padding
            plans.append((stream, stream.samples[real * HOP_LENGTH :], stream.frame + real // self.subsampling))
            if stream.received:  # a stream without audio has nothing to finish
                stream.samples, stream.time_limit = pad_tail(stream.samples), stream.end_time
            frames = stream.ready - stream.ready % self.subsampling
            if frames:
                by_frames.setdefault(frames, []).append(stream)
        for frames, group in by_frames.items():
            for i in range(0, len(group), MAX_FLUSH_BATCH):
                self._advance(group[i : i + MAX_FLUSH_BATCH], frames)
        for stream, rest, end_frame in plans:
            stream.samples, stream.frame = rest, end_frame
            stream.finish_utterance()
            stream.time_limit = None


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
        """The utterance(s) ended at the last endpoint; without one, ends the current utterance now."""
        if not self.stream.has_final():
            self.stream.finish_utterance()
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
