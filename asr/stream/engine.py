"""`BatchEngine`: many streams advanced by one model, in one forward pass per chunk.

A `Stream` (`asr.stream.stream`) holds everything of one stream except the model. The engine owns the frontend,
the model and the streams' model states, stacked along the batch dimension in slots; every stream with samples
for a full chunk is advanced by one batched log-mel call and one `model.step`. Features are computed with
`center=False` framing from each stream's carried samples, exactly as `MelStream` does, so the result is the
same as over the whole signal. A `Recognizer` is a BatchEngine with one stream, so a stream in a batch gives
exactly the results it gives alone.

Where a stream's rules restart its model state (`EndpointConfig`: after an endpoint, or at the first sound after
quiet silence), the engine zeroes the stream's state, queues the output frames after the restart point again with
up to `warmup` (at a sound: `onset_lead`) of audio before them (`Stream.unread`), and skips the warm-up's output:
the state that hears the next words starts from zero a known number of frames earlier, whatever the chunking.

Legend: U = output frames (10 ms x the model's subsampling), V = vocabulary, F = mel bins.
"""

from __future__ import annotations

import numpy as np
import torch

from asr.audio import SAMPLE_RATE, TAIL_PADDING, pad_tail
from asr.audio.frontend import HOP_LENGTH, LogMel
from asr.stream.stream import Stream

DEFAULT_CHUNK_FRAMES = 16  # feature frames (10 ms each) per model step: 160 ms
MAX_FLUSH_BATCH = 256  # streams in one forward pass of `BatchEngine.flush`


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
        if stream.endpoint.enabled:  # a restart goes back over the last chunk (a flush's: with padding) and warmup
            frames = self.chunk_frames + round(TAIL_PADDING * SAMPLE_RATE) // HOP_LENGTH
            frames += (max(stream.warmup_frames, stream.onset_lead_frames) + 1) * self.subsampling
            stream.history_limit = -(-frames // self.subsampling) * self.subsampling * HOP_LENGTH
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
        stream.forget_history()
        stream.warmup_left = stream.quiet_run = 0
        stream.onset_frame = -1  # a flush rewinds `frame` behind its padding: no onset from there may outlive it

    def restart(self, stream: Stream, unused: int = 0) -> None:
        """Start the stream's model state afresh after the last frame it decoded: the `unused` output frames
        computed after that frame are queued again, behind up to `endpoint.warmup` of the audio before it (at a
        sound after quiet silence: the `Stream.restart_lead` frames of it), which the fresh state hears first and
        nobody decodes."""
        per_frame = self.subsampling * HOP_LENGTH  # samples per output frame
        lead = stream.warmup_frames if stream.restart_lead is None else stream.restart_lead
        back = min(unused + lead, stream.history_size // per_frame)
        stream.restart_lead = None
        stream.unread(back * per_frame)
        stream.warmup_left = back - unused  # the quiet run goes on (a restart at a sound has cleared it)
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
        hops = waves[:, : frames * HOP_LENGTH].reshape(len(streams), frames // self.subsampling, -1)
        levels = (10 * torch.log10(hops.square().mean(-1).clamp_min(1e-12))).tolist()  # (B, U) dBFS per frame
        slots = torch.tensor([s.slot for s in streams], device=self.device)
        log_probs, new = self.model.step(feats, self.state.select(slots))  # whole groups of S: no pending frames
        self.state.assign(slots, new)
        log_probs = log_probs.float().cpu()
        best_logp, best = log_probs.max(dim=-1)  # (B, U): one call for the batch, not one per stream
        for stream, lp, tokens, logps, level in zip(streams, log_probs, best.tolist(), best_logp.tolist(), levels):
            skip = min(stream.warmup_left, len(tokens))  # a restart's warm-up: heard, not decoded
            stream.warmup_left -= skip
            if skip < len(tokens):
                quiet = [db < stream.endpoint.quiet_level for db in level[skip:]]
                used = stream.consume(lp[skip:], (tokens[skip:], logps[skip:]), until_restart=True, quiet=quiet)
                if used is not None:
                    self.restart(stream, len(tokens) - skip - used)

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
        stream goes on from the end of its real audio with a fresh model state: the samples short of a whole
        output frame stay queued for the audio that may follow, the frame count leaves the padding out and word
        times stop at the audio's end. A stream that never got audio is not padded. Audio at another rate first
        gets the resampler's last samples. Streams flushed together share forward passes (one per distinct
        length of what is left), with the results each would get alone.
        """
        streams = list(dict.fromkeys(streams))  # once each
        for stream in streams:
            stream.end_input()
        while ready := [s for s in streams if s.ready >= self.chunk_frames]:  # their queued audio, not others'
            self._advance(ready, self.chunk_frames)
        plans = []
        for stream in streams:
            real = stream.ready - stream.ready % self.subsampling  # feature frames, as without the padding
            end_frame = stream.frame + real // self.subsampling - stream.warmup_left  # a warm-up is not decoded
            plans.append((stream, stream.samples[real * HOP_LENGTH :], end_frame))
            if stream.received:  # a stream without audio has nothing to finish
                stream.samples, stream.time_limit = pad_tail(stream.samples), stream.end_time
        while True:  # until each has less than an output frame left (a restart queues frames again)
            by_frames = {}
            for stream in streams:
                if frames := stream.ready - stream.ready % self.subsampling:
                    by_frames.setdefault(frames, []).append(stream)
            if not by_frames:
                break
            for frames, group in by_frames.items():
                for i in range(0, len(group), MAX_FLUSH_BATCH):
                    self._advance(group[i : i + MAX_FLUSH_BATCH], frames)
        for stream, rest, end_frame in plans:
            stream.samples, stream.frame = rest, end_frame
            stream.finish_utterance()
            stream.time_limit = None
            self.reset_stream(stream)  # the next utterance starts afresh
