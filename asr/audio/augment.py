"""Training-time augmentation: silence padding, speed perturbation, reverberation, noise, band-limiting and
gain on 16 kHz waveforms, and SpecAugment masks on features.

Legend: T = feature frames, F = mel bins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
import torchaudio

from asr.audio import SAMPLE_RATE


@dataclass
class AugmentConfig:
    """Probability of each augmentation per utterance, and its ranges."""

    speed_prob: float = 0.6  # pick one of `speeds`
    speeds: tuple = (0.9, 1.0, 1.1)  # speed factors (sox `speed`: tempo and pitch together, like another vocal tract)
    pad_prob: float = 0.0  # silence before and after: speech need not start at the first sample (off by default)
    pad_seconds: tuple = (0.0, 0.5)  # each side's silence, drawn uniformly
    pad_level_db: tuple = (-90.0, -50.0)  # the silence's noise floor (dB of full scale), like a quiet microphone
    noise_prob: float = 0.4
    snr_db: tuple = (5.0, 30.0)
    reverb_prob: float = 0.25
    rt60: tuple = (0.15, 0.7)  # seconds, decay of the synthetic room response
    bandlimit_prob: float = 0.15  # 8 kHz telephone band
    gain_prob: float = 0.5
    gain_db: tuple = (-10.0, 6.0)
    specaug_prob: float = 0.8
    freq_mask: int = 20  # bins, two masks
    time_mask: int = 40  # frames, two masks (at most 10% of the utterance each)

    def scaled(self, factor: float) -> AugmentConfig:
        """The same augmentations with every probability times `factor` (capped at 1)."""
        probs = {f.name: min(1.0, getattr(self, f.name) * factor) for f in fields(self) if f.name.endswith("_prob")}
        return replace(self, **probs)


def colored_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-power noise with a 1/f^exponent power spectrum: 0 white, 1 pink, 2 brown."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1] if n > 2 else 1.0
    noise = np.fft.irfft(spectrum / freqs ** (exponent / 2), n)
    noise -= noise.mean()
    return (noise / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


def synthetic_rir(rt60: float, rng: np.random.Generator, length: float = 0.5) -> np.ndarray:
    """Exponentially decaying noise tail after a direct-path impulse (60 dB down after rt60 seconds)."""
    t = np.arange(int(SAMPLE_RATE * min(length, rt60 * 1.2))) / SAMPLE_RATE
    rir = rng.standard_normal(t.size) * np.exp(-6.9 * t / rt60) * 0.3
    rir[0] = 1.0
    return (rir / np.sqrt(np.sum(rir**2))).astype(np.float32)


def augment_waveform(wave: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig | None = None) -> np.ndarray:
    """Silence padding, speed, reverberation, noise, band-limiting and gain, each with its probability. 16 kHz."""
    cfg = cfg or AugmentConfig()
    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    if rng.random() < cfg.pad_prob:
        before, after = (int(SAMPLE_RATE * rng.uniform(*cfg.pad_seconds)) for _ in range(2))
        floor = 10 ** (rng.uniform(*cfg.pad_level_db) / 20)
        pad = torch.from_numpy((rng.standard_normal(before + after) * floor).astype(np.float32))
        x = torch.cat([pad[:before], x, pad[before:]])
    if rng.random() < cfg.speed_prob:
        speed = float(rng.choice(cfg.speeds))
        if speed != 1.0:  # play the samples as if recorded at speed*16k: shorter and higher (sox `speed`)
            x = torchaudio.functional.resample(x, int(SAMPLE_RATE * speed), SAMPLE_RATE)
    if rng.random() < cfg.reverb_prob and x.numel() > 0:
        rms = x.pow(2).mean().sqrt()
        rir = torch.from_numpy(synthetic_rir(rng.uniform(*cfg.rt60), rng))
        x = torchaudio.functional.fftconvolve(x, rir)[: x.numel()]
        x = x * rms / (x.pow(2).mean().sqrt() + 1e-8)
    if rng.random() < cfg.noise_prob and x.numel() > 2:
        power = float(x.pow(2).mean())
        noise = colored_noise(x.numel(), float(rng.choice([0.0, 1.0, 2.0])), rng)
        snr = rng.uniform(*cfg.snr_db)
        x = x + torch.from_numpy(noise) * math.sqrt(power / 10 ** (snr / 10))
    if rng.random() < cfg.bandlimit_prob:
        n = x.numel()
        x = torchaudio.functional.resample(torchaudio.functional.resample(x, SAMPLE_RATE, 8000), 8000, SAMPLE_RATE)
        x = torch.nn.functional.pad(x, (0, max(0, n - x.numel())))[:n]
    if rng.random() < cfg.gain_prob:
        x = x * 10 ** (rng.uniform(*cfg.gain_db) / 20)
    return x.numpy()


def spec_augment(feats: torch.Tensor, seed: int, cfg: AugmentConfig | None = None) -> torch.Tensor:
    """Two frequency and two time masks on (T, F) features, filled with the utterance mean, seeded."""
    cfg = cfg or AugmentConfig()
    T = feats.shape[0]
    if T < 10:
        return feats
    spec = feats.t().unsqueeze(0)  # (1, F, T): torchaudio's layout
    fill = float(feats.mean())
    freq = torchaudio.transforms.FrequencyMasking(cfg.freq_mask)
    time = torchaudio.transforms.TimeMasking(min(cfg.time_mask, max(1, T // 10)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for mask in (freq, freq, time, time):
            spec = mask(spec, fill)
    return spec.squeeze(0).t().contiguous()
