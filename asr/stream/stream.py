"""One stream without its model: PCM conversion, streaming resampling, the samples not yet turned into features,
the decoders of the current utterance, the endpoint rules (and where the model state restarts), the audio a
restart's warm-up replays, and the finished results (Vosk-like)."""

from __future__ import annotations

from collections import deque

import numpy as np
import torch

from asr.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, SAMPLE_RATE
from asr.audio.frontend import HOP_LENGTH, N_FFT, num_frames
from asr.audio.resample import StreamResampler
from asr.decode.greedy import FRAME_SHIFT, GreedyDecoder, best_path, clip_word_times, delay_word_times
from asr.model.tokenizer import BLANK
from asr.stream.endpoint import EndpointConfig


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
            ep.frames(ep.idle_restart, frame_shift) if ep.idle_restart > 0 else None,
        )
        self.warmup_frames = ep.frames(ep.warmup, frame_shift) if ep.warmup > 0 else 0  # an endpoint restart's
        self.onset_lead_frames = ep.frames(ep.onset_lead, frame_shift) if ep.onset_lead > 0 else 0  # a sound's, at most
        self.restart_lead = None  # output frames of quiet audio an onset restart replays (None: `warmup_frames`)
        self.words = words
        self.max_alternatives = max_alternatives
        self.pcm = PcmInput()
        self.resampler = StreamResampler(self.sample_rate)
        self.samples = np.zeros(0, np.float32)  # 16 kHz samples not yet framed (frames overlap: N_FFT > HOP)
        self.history: deque[np.ndarray] = deque()  # the last samples framed, for a restart (`unread`), as taken
        self.history_size = 0  # samples in `history`
        self.history_limit = 0  # samples kept in `history`, at least (the engine sets it)
        self.warmup_left = 0  # output frames the model computes but nobody decodes (a restart's warm-up)
        self.frame = frame  # absolute index of the next output frame
        self.start_time = frame * frame_shift  # seconds: where this stream's audio starts on its time line
        self.quiet_run = 0  # output frames of quiet silence in a row up to now (an endpoint does not break it)
        self.onset_frame = -1  # absolute index of the frame of the last onset restart's sound (rule 1 counts from it)
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
        if self.history_limit:  # whole pieces, the oldest dropped while the rest still hold the limit
            self.history.append(self.samples[: n * HOP_LENGTH])
            self.history_size += n * HOP_LENGTH
            while self.history_size - self.history[0].size >= self.history_limit:
                self.history_size -= self.history.popleft().size
        self.samples = self.samples[n * HOP_LENGTH :]
        return window

    def unread(self, n: int) -> None:
        """Queue the last `n` framed samples again (n <= `history_size`)."""
        if n:
            kept = np.concatenate(self.history)
            self.samples = np.concatenate([kept[kept.size - n :], self.samples])
            self.history = deque([kept[: kept.size - n]])
            self.history_size -= n

    def forget_history(self) -> None:
        self.history, self.history_size = deque(), 0

    # -- decoding --------------------------------------------------------------
    def _new_utterance(self) -> None:
        """A fresh greedy decoder; the beam decoder begins its next utterance with its first frames (beginning
        frees the last one's hypotheses, which a stream that ends now need not wait for)."""
        self.greedy = GreedyDecoder(self.tokens, self.frame_shift, start_frame=self.frame)

    def consume(self, log_probs: torch.Tensor, best=None, until_restart: bool = False, quiet=None) -> int | None:
        """Decode the model's next output frames (U, V), ending utterances where a rule fires.

        `best`: `best_path(log_probs)` when the caller has it already (the engine computes it for the batch).
        With `until_restart` (the engine: a model runs behind these frames), decoding stops after the first frame
        where the model state is to restart (an endpoint), or before the first frame of sound after `idle_restart`
        of quiet silence with nothing recognised, and the frames used are returned; the engine restarts the state
        and computes the frames after it again. Without it, or where no restart falls in these frames, all are
        decoded and None is returned. `quiet`: per frame, whether its audio is below `endpoint.quiet_level` (the
        engine measures it; onset restarts need it).
        """
        tokens, logps = best or best_path(log_probs)
        quiet = list(quiet) if quiet is not None else [False] * len(tokens)
        used = 0
        while tokens:
            cut, ends = self._event_at(tokens, quiet, until_restart)
            n = len(tokens) if cut is None else cut + 1  # 0: the state restarts before these frames
            if n:
                self.greedy.accept_best(tokens[:n], logps[:n])
                if self.beam:
                    self.beam.step(log_probs[:n])
            self.frame += n
            used += n
            if cut is None:
                return None
            if ends:
                self.finish_utterance()
            if until_restart:
                return used
            tokens, logps, log_probs, quiet = tokens[n:], logps[n:], log_probs[n:], quiet[n:]
        return None

    def _event_at(self, tokens: list[int], quiet: list[bool], restarts: bool) -> tuple[int | None, bool]:
        """(index of the first frame, given by its best token, at which an endpoint rule fires or, with
        `restarts`, the last before the first sound after quiet silence, where the state restarts (-1: before these
        frames); whether it is an endpoint), or (None, False).
        Keeps `quiet_run` up to the frame returned (or the last)."""
        if not self.endpoint.enabled:
            return None, False
        no_speech, after_speech, longest, hardest, boundary, idle = self._endpoint_frames
        start, last = self.greedy.start_frame, self.greedy.last_speech_frame
        for i, tok in enumerate(tokens):
            t = self.frame + i
            speech = tok != BLANK and tok != self.space
            if restarts and idle and last < start and self.quiet_run >= idle and not (quiet[i] and not speech):
                self.restart_lead = min(self.quiet_run, self.onset_lead_frames)  # the fresh state hears this much first
                self.quiet_run = 0
                self.onset_frame = t  # rule 1 counts from the sound, not from the silence the utterance began with
                return i - 1, False  # sound after quiet silence: the state restarts before this frame
            if speech:
                last = t
            self.quiet_run = self.quiet_run + 1 if quiet[i] and not speech else 0
            elapsed = t - start + 1
            if elapsed >= longest and (tok == self.space or t - last >= boundary or elapsed >= hardest):
                self.quiet_run = 0
                return i, True  # rule 3, not inside a word where it can help it
            if t - last >= after_speech if last >= start else t - max(start, self.onset_frame) + 1 >= no_speech:
                return i, True  # the quiet run goes on: a sound right after still restarts the state behind its lead
        return None, False

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
        if getattr(self.beam, "closed", False):  # a grammar: its best phrase prefix, not letters outside it
            return {"partial": self.beam.best()}
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
