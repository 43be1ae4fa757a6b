"""Resampling to the model's 16 kHz with torchaudio's band-limited sinc filter: whole signals (`resample`) and
streams chunk by chunk (`StreamResampler`, whose output equals `resample` of the whole signal)."""

from __future__ import annotations

import numpy as np
import torch
import torchaudio

from asr.audio import SAMPLE_RATE, AudioError


def resample(samples: np.ndarray, orig_rate: int, new_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a 1-D float32 signal with torchaudio's band-limited sinc filter."""
    if orig_rate == new_rate:
        return np.ascontiguousarray(samples, dtype=np.float32)
    if orig_rate <= 0:
        raise AudioError(f"invalid sample rate {orig_rate}")
    out = torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(samples)), orig_rate, new_rate)
    return out.numpy()


class StreamResampler:
    """Chunked resampling for one stream with torchaudio's sinc kernel.

    The concatenation of `accept` outputs followed by `flush()` equals
    `resample()` of the whole signal: each output block is computed once all
    its input samples (the filter's look-ahead included) have arrived, so the
    output lags the input by about the filter's half width (< 1 ms at the default width).
    """

    def __init__(self, orig_rate: int, new_rate: int = SAMPLE_RATE):
        if orig_rate <= 0 or new_rate <= 0:
            raise AudioError(f"invalid sample rate {orig_rate}")
        self.identity = orig_rate == new_rate
        if not self.identity:
            r = torchaudio.transforms.Resample(orig_rate, new_rate)
            self.kernel, self.width = r.kernel, r.width
            self.orig, self.new = orig_rate // r.gcd, new_rate // r.gcd
            self.window = self.kernel.shape[-1]  # input samples per output block
        self.reset()

    def reset(self) -> None:
        self.buf = torch.zeros(0 if self.identity else self.width)  # left zero padding, as in resample()
        self.samples_in = 0
        self.samples_out = 0

    def accept(self, chunk) -> np.ndarray:
        chunk = np.asarray(chunk, dtype=np.float32)
        if self.identity:
            return chunk
        self.samples_in += len(chunk)
        self.buf = torch.cat([self.buf, torch.from_numpy(chunk)])
        return self._blocks()

    def flush(self) -> np.ndarray:
        """The last samples (the filter's right padding), after which the stream is reset."""
        if self.identity:
            return np.zeros(0, np.float32)
        self.buf = torch.cat([self.buf, torch.zeros(self.width + self.orig)])
        out = self._blocks()
        total = -(-self.new * self.samples_in // self.orig)  # ceil, as resample()'s target length
        out = out[: max(0, total - (self.samples_out - len(out)))]
        self.reset()
        return out

    def _blocks(self) -> np.ndarray:
        if self.buf.numel() < self.window:
            return np.zeros(0, np.float32)
        blocks = (self.buf.numel() - self.window) // self.orig + 1
        used = (blocks - 1) * self.orig + self.window
        out = torch.nn.functional.conv1d(self.buf[None, None, :used], self.kernel, stride=self.orig)
        self.buf = self.buf[blocks * self.orig :].clone()
        out = out[0].transpose(0, 1).reshape(-1).numpy()
        self.samples_out += len(out)
        return out
