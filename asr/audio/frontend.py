"""The log-mel frontend. Shapes: T = samples or frames, F = mel bins (N_MELS).

`LogMel` turns a whole signal into features; `MelStream` does the same chunk by chunk, carrying the samples that
do not yet fill a frame, so that the concatenation of its outputs over any chunking equals `LogMel` on the whole
signal (frames use `center=False`, i.e. frame t covers samples [t * HOP_LENGTH, t * HOP_LENGTH + N_FFT)).
`BatchEngine` (asr.stream) runs `LogMel` over many streams' buffers itself; `MelStream` is the one-stream form
that `asr.transcribe` reads long files with.
"""

from __future__ import annotations

import numpy as np
import torch
import torchaudio

from asr.audio import SAMPLE_RATE

N_FFT = 400  # samples: 25 ms analysis window at 16 kHz
HOP_LENGTH = 160  # samples: 10 ms between frames
N_MELS = 80  # mel bins
# Power floor before the log: digital silence (zeros) comes out like white noise at about -100 dBFS, the quietest
# microphone, not far below anything the model trains on. (It was 1e-10 until 2026-12-07: a lead of digital silence
# then sent the model's state somewhere speech never took it; FSDD yweweler after 1 s of zeros, greedy WER 88.0%,
# 61.5% with this floor, and 64.5% / 63.0% without a lead.)
LOG_FLOOR = 1e-8


def num_frames(num_samples: int) -> int:
    """Frames LogMel yields for a signal of `num_samples` samples."""
    return 0 if num_samples < N_FFT else 1 + (num_samples - N_FFT) // HOP_LENGTH


class LogMel(torch.nn.Module):
    """Log-mel features of a whole signal: (T,) or (B, T) samples -> (..., frames, F)."""

    def __init__(self):
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE,
            n_fft=N_FFT,
            win_length=N_FFT,
            hop_length=HOP_LENGTH,
            n_mels=N_MELS,
            center=False,
            power=2.0,
        )
        # the same tensors, reachable in one attribute lookup (forward uses them directly)
        self.register_buffer("window", self.mel.spectrogram.window, persistent=False)  # (N_FFT,)
        self.register_buffer("filterbank", self.mel.mel_scale.fb, persistent=False)  # (N_FFT // 2 + 1, F)

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        if samples.shape[-1] < N_FFT:
            return samples.new_zeros(*samples.shape[:-1], 0, N_MELS)
        # What self.mel computes (center=False, power 2), without torchaudio's per-call overhead and
        # in (..., frames, F) order directly: frames * window -> |rfft|^2 -> mel filterbank -> log.
        frames = samples.unfold(-1, N_FFT, HOP_LENGTH) * self.window  # (..., frames, N_FFT)
        spec = torch.fft.rfft(frames)  # (..., frames, N_FFT // 2 + 1) complex
        power = spec.real.square() + spec.imag.square()  # |X|^2 (.abs().square() is 2x slower)
        return torch.log((power @ self.filterbank).clamp_min(LOG_FLOOR))


class MelStream:
    """Chunked LogMel for one stream: `accept(chunk) -> (frames, F)` new frames.

    Carries the samples that do not complete a frame yet. Memory is bounded:
    the tail is always shorter than N_FFT samples.
    """

    def __init__(self, logmel: LogMel | None = None):
        self.logmel = logmel or LogMel()
        self.tail = torch.zeros(0)
        self.samples_seen = 0

    def accept(self, chunk) -> torch.Tensor:
        chunk = torch.as_tensor(np.asarray(chunk, dtype=np.float32))
        self.samples_seen += chunk.numel()
        buf = torch.cat([self.tail, chunk]) if self.tail.numel() else chunk
        n = num_frames(buf.numel())
        if n == 0:
            self.tail = buf
            return torch.zeros(0, N_MELS)
        used = (n - 1) * HOP_LENGTH + N_FFT
        feats = self.logmel(buf[:used])
        self.tail = buf[n * HOP_LENGTH :].clone()
        return feats

    def reset(self) -> None:
        self.tail = torch.zeros(0)
        self.samples_seen = 0
