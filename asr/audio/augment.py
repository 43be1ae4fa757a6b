"""Training-time augmentation: silence padding and leads, speed perturbation, reverberation, noise, microphone
colouring, band-limiting, codec round trips and gain on 16 kHz waveforms (the channel ones in asr.audio.channel),
vocal-tract-length perturbation (VTLP: a warped mel filterbank) and SpecAugment masks on features. Inference
features are LogMel's, never these.

Legend: T = feature frames, F = mel bins, K = FFT bins (N_FFT // 2 + 1).
"""

from __future__ import annotations

import functools
import math
import zipfile
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
import torchaudio

from asr.audio import SAMPLE_RATE
from asr.audio.channel import CODECS, codec_roundtrip, random_eq, silence
from asr.audio.frontend import N_FFT, N_MELS, LogMel

VTLP_HIGH = SAMPLE_RATE / 2 - 500.0  # Hz: above it (x the factor where < 1) the warp bends to keep Nyquist in place
# --augment-scale leaves these
UNSCALED = ("lead_prob", "stream_prob", "concat_prob", "eq_prob", "codec_prob", "vtlp_prob")
VTLP_LIMITS = (0.8, 1.12)  # warp factors allowed: above ~1.12 the lowest mel filter falls between two FFT bins


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
    rooms: str | None = None  # a bank of room impulse responses (load_rooms): reverberation draws from it instead
    bandlimit_prob: float = 0.15  # 8 kHz telephone band
    gain_prob: float = 0.5
    gain_db: tuple = (-10.0, 6.0)
    lead_prob: float = 0.0  # a lead of silence before the speech (and a third as much after), as a live stream gives
    lead_seconds: tuple = (0.0, 2.0)  # the lead, drawn uniformly (off by default; leads, streams, EQ, codecs unscaled)
    zero_share: float = 0.5  # of the leads and a stream's gaps: digital silence (zeros) rather than a noise floor
    stream_prob: float = 0.0  # (ASRDataset) a shorter utterance before this one, silence between: the state carried
    gap_seconds: tuple = (0.1, 2.0)  # the silence between a stream's two utterances, drawn uniformly
    concat_prob: float = 0.0  # (ASRDataset) a one-word utterance joined by other one-word ones into a phrase
    concat_words: tuple = (2, 4)  # words in such a phrase, drawn uniformly (the same speaker's where it is known)
    concat_gap: tuple = (0.05, 0.4)  # seconds of silence between its words, drawn uniformly
    eq_prob: float = 0.0  # a microphone's colouring (asr.audio.channel.random_eq)
    codec_prob: float = 0.0  # a lossy round trip: Opus or MP3 at a low bit rate, or 8 kHz mu-law (telephone)
    vtlp_prob: float = 0.0  # warp the mel filterbank (off by default; not scaled by --augment-scale)
    vtlp_factors: tuple = (0.9, 1.1)  # the warp factor's range, drawn uniformly: > 1 moves energy up in frequency
    specaug_prob: float = 0.8
    freq_mask: int = 20  # bins, two masks
    time_mask: int = 40  # frames, two masks (at most 10% of the utterance each)

    def scaled(self, factor: float) -> AugmentConfig:
        """The same augmentations with every probability times `factor` (capped at 1)."""
        scaled = [f.name for f in fields(self) if f.name.endswith("_prob") and f.name not in UNSCALED]
        probs = {name: min(1.0, getattr(self, name) * factor) for name in scaled}
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


@functools.cache
def load_rooms(path: str) -> tuple[np.ndarray, ...]:
    """The room impulse responses of a bank (recipes/default_en/local/make_rooms.py): an .npz with `rirs` (N, L)
    zero-padded and their `lengths`, each starting at its direct path. ValueError, saying why, for anything else."""
    try:
        with np.load(path) as bank:
            rirs, lengths = np.asarray(bank["rirs"], np.float32), np.asarray(bank["lengths"])
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a room impulse response bank ({exc})") from None
    if rirs.ndim != 2 or not len(rirs) or lengths.shape != (len(rirs),) or not (0 < lengths).all():
        raise ValueError(f"{path}: not a room impulse response bank (rirs {rirs.shape}, lengths {lengths.shape})")
    return tuple(rir[: min(int(n), rirs.shape[1])] for rir, n in zip(rirs, lengths, strict=True))


def augment_waveform(
    wave: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig | None = None, timing: dict | None = None
) -> np.ndarray:
    """Silence padding and leads, speed, reverberation, noise, microphone colouring, band-limiting, codec round trips
    and gain, each with its probability. 16 kHz. An augmentation that is off draws nothing.

    `timing` (a dict, optional) gets where the input's time went: "offset", the seconds of audio put before it,
    and "speed", its speed factor; input time t is output time (t + offset) / speed."""
    cfg = cfg or AugmentConfig()
    offset, speed = 0, 1.0
    if cfg.lead_prob and rng.random() < cfg.lead_prob:
        lead = int(SAMPLE_RATE * rng.uniform(*cfg.lead_seconds))
        quiet = [silence(k, rng, cfg.zero_share, cfg.pad_level_db) for k in (lead, lead // 3)]
        wave = np.concatenate([quiet[0], np.asarray(wave, dtype=np.float32), quiet[1]])
        offset += lead
    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    if rng.random() < cfg.pad_prob:
        before, after = (int(SAMPLE_RATE * rng.uniform(*cfg.pad_seconds)) for _ in range(2))
        floor = 10 ** (rng.uniform(*cfg.pad_level_db) / 20)
        pad = torch.from_numpy((rng.standard_normal(before + after) * floor).astype(np.float32))
        x = torch.cat([pad[:before], x, pad[before:]])
        offset += before
    if rng.random() < cfg.speed_prob:
        speed = float(rng.choice(cfg.speeds))
        if speed != 1.0:  # play the samples as if recorded at speed*16k: shorter and higher (sox `speed`)
            x = torchaudio.functional.resample(x, int(SAMPLE_RATE * speed), SAMPLE_RATE)
    if timing is not None:
        timing.update(offset=offset / SAMPLE_RATE, speed=speed)
    if rng.random() < cfg.reverb_prob and x.numel() > 0:
        rms = x.pow(2).mean().sqrt()
        if cfg.rooms:
            bank = load_rooms(cfg.rooms)
            rir = torch.from_numpy(bank[rng.integers(len(bank))])
        else:
            rir = torch.from_numpy(synthetic_rir(rng.uniform(*cfg.rt60), rng))
        x = torchaudio.functional.fftconvolve(x, rir)[: x.numel()]
        x = x * rms / (x.pow(2).mean().sqrt() + 1e-8)
    if rng.random() < cfg.noise_prob and x.numel() > 2:
        power = float(x.pow(2).mean())
        noise = colored_noise(x.numel(), float(rng.choice([0.0, 1.0, 2.0])), rng)
        snr = rng.uniform(*cfg.snr_db)
        x = x + torch.from_numpy(noise) * math.sqrt(power / 10 ** (snr / 10))
    if cfg.eq_prob and rng.random() < cfg.eq_prob:
        x = random_eq(x, rng)
    if rng.random() < cfg.bandlimit_prob:
        n = x.numel()
        x = torchaudio.functional.resample(torchaudio.functional.resample(x, SAMPLE_RATE, 8000), 8000, SAMPLE_RATE)
        x = torch.nn.functional.pad(x, (0, max(0, n - x.numel())))[:n]
    if cfg.codec_prob and rng.random() < cfg.codec_prob:
        x = torch.from_numpy(codec_roundtrip(x.numpy(), str(rng.choice(CODECS)), rng))
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


def vtlp_warp(freqs: torch.Tensor, factor: float) -> torch.Tensor:
    """Kaldi's piecewise-linear VTLN warp (VtlnWarpFreq, --vtln-high -500) of frequencies in Hz: f / factor up to
    h = VTLP_HIGH x min(1, factor), then a straight line from there to Nyquist, which stays put. (Kaldi's lower
    bend, at --vtln-low, is no bend for a filterbank that starts at 0 Hz: both its pieces are f / factor.)"""
    high, nyquist = VTLP_HIGH * min(1.0, factor), SAMPLE_RATE / 2
    right = nyquist + (nyquist - high / factor) / (nyquist - high) * (freqs - nyquist)
    return torch.where(freqs < high, freqs / factor, right)


def warped_filterbank(factor: float) -> torch.Tensor:
    """LogMel's mel filterbank (K, F) (torchaudio's HTK triangles, 0 Hz to Nyquist) with its band edges warped by
    vtlp_warp, as Kaldi's VTLN warps its mel banks: a factor above 1 lowers the edges, so a sound's energy lands in
    higher bins, as from a shorter vocal tract. Factor 1 gives LogMel's filterbank exactly."""
    mels = torch.linspace(0.0, 2595.0 * math.log10(1.0 + SAMPLE_RATE / 2 / 700.0), N_MELS + 2)
    edges = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)  # Hz, torchaudio's _mel_to_hz
    if factor != 1.0:
        edges = vtlp_warp(edges, factor)
    freqs = torch.linspace(0, SAMPLE_RATE // 2, N_FFT // 2 + 1)  # the FFT bins' frequencies
    widths = edges[1:] - edges[:-1]
    slopes = edges[None, :] - freqs[:, None]  # (K, F + 2)
    rising, falling = -slopes[:, :-2] / widths[:-1], slopes[:, 2:] / widths[1:]
    return torch.clamp_min(torch.minimum(rising, falling), 0.0)


class WarpedLogMel(LogMel):
    """LogMel whose filterbank a call may warp (VTLP, training features only): `(samples, factor)` -> (..., T, F);
    factor 1 is LogMel itself."""

    def forward(self, samples: torch.Tensor, factor: float = 1.0) -> torch.Tensor:
        if factor == 1.0:
            return super().forward(samples)
        straight = self.filterbank
        self.filterbank = warped_filterbank(factor).to(straight)
        try:
            return super().forward(samples)
        finally:
            self.filterbank = straight
