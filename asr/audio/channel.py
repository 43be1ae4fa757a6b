"""Channel augmentation for training: what users' microphones, links and streams do to speech. Lossy codec round
trips (Opus and MP3 at low bit rates, 8 kHz mu-law telephone), microphone colouring (random EQ), and the silences of
a live stream (digital zeros or a quiet noise floor). 16 kHz float waveforms in and out.
"""

from __future__ import annotations

import io
import math

import numpy as np
import soundfile as sf
import torch
import torchaudio

from asr.audio import SAMPLE_RATE

CODECS = ("opus", "mp3", "mulaw")  # codec_roundtrip's choices
# libsndfile's format, subtype and compression levels (drawn uniformly; higher is a lower bit rate): at 16 kHz, Opus
# 0.9-0.995 is about 30-9 kbit/s, MP3 0.8-0.99 about 23-19 kbit/s (1.0 fails for MP3)
_FORMATS = {"opus": ("OGG", "OPUS", (0.9, 0.995)), "mp3": ("MP3", "MPEG_LAYER_III", (0.8, 0.99))}


def silence(n: int, rng: np.random.Generator, zero_share: float, level_db: tuple) -> np.ndarray:
    """n samples of silence: digital zeros (with probability zero_share), else Gaussian noise at a level drawn from
    level_db (dB of full scale), like a quiet microphone."""
    if n <= 0:
        return np.zeros(0, dtype=np.float32)
    if rng.random() < zero_share:
        return np.zeros(n, dtype=np.float32)
    return (rng.standard_normal(n) * 10 ** (rng.uniform(*level_db) / 20)).astype(np.float32)


def random_eq(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A microphone's colouring: one to three peaking filters (100-6,000 Hz, -12 to +12 dB, Q 0.7-2), and on half the
    utterances a high-pass (50-400 Hz) and on half a low-pass (3-7.5 kHz); the utterance's RMS is kept."""
    if x.numel() < 2:
        return x
    rms = x.pow(2).mean().sqrt()
    y = x
    for _ in range(int(rng.integers(1, 4))):
        centre = math.exp(rng.uniform(math.log(100.0), math.log(6000.0)))
        y = torchaudio.functional.equalizer_biquad(
            y, SAMPLE_RATE, centre, float(rng.uniform(-12, 12)), float(rng.uniform(0.7, 2.0))
        )
    if rng.random() < 0.5:
        y = torchaudio.functional.highpass_biquad(y, SAMPLE_RATE, float(rng.uniform(50, 400)))
    if rng.random() < 0.5:
        y = torchaudio.functional.lowpass_biquad(y, SAMPLE_RATE, float(rng.uniform(3000, 7500)))
    y = torch.nan_to_num(y)
    return y * rms / (y.pow(2).mean().sqrt() + 1e-8)


def codec_roundtrip(x: np.ndarray, codec: str, rng: np.random.Generator) -> np.ndarray:
    """x encoded and decoded again, the same length: Opus or MP3 at a low bit rate (libsndfile, compression level
    drawn from _FORMATS), or 'mulaw': 8 kHz 8-bit mu-law, as a telephone line carries it."""
    n = x.size
    if n == 0:
        return x
    if codec == "mulaw":
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).clamp(-1, 1)
        narrow = torchaudio.functional.resample(t, SAMPLE_RATE, 8000)
        coded = torchaudio.functional.mu_law_encoding(narrow.clamp(-1, 1), 256)
        y = torchaudio.functional.resample(torchaudio.functional.mu_law_decoding(coded, 256), 8000, SAMPLE_RATE).numpy()
    else:
        fmt, subtype, levels = _FORMATS[codec]
        buf = io.BytesIO()
        level = float(rng.uniform(*levels))
        sf.write(buf, np.clip(x, -1, 1), SAMPLE_RATE, format=fmt, subtype=subtype, compression_level=level)
        buf.seek(0)
        y, _ = sf.read(buf, dtype="float32")
    y = np.asarray(y, dtype=np.float32).reshape(-1)[:n]
    return np.pad(y, (0, n - y.size))
