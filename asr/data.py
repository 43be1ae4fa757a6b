"""Training data: JSONL manifests, corpus importers, Dataset, length-bucketing sampler, augmentation.

A manifest holds one JSON object per line:
    {"id": "1089-134686-0000", "audio": "clips/a.flac", "duration": 10.4, "text": "he hoped ...", "speaker": "1089"}
Relative `audio` paths resolve against the manifest's folder. Bad lines and unreadable audio are
reported as warnings and skipped; they never stop a run.

Legend: B = batch, T = feature frames, F = mel bins, S = target tokens.

CLI: python -m asr.data {librispeech,commonvoice,folder,tsv} ROOT OUT.jsonl [--tsv TABLE]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import sys
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torchaudio

from asr.audio import SAMPLE_RATE, AudioError, LogMel, load_audio
from asr.tokenizer import normalize_text

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus")
FIELDS = {"id": str, "audio": str, "duration": (int, float), "text": str}  # required fields and their types


class DataError(ValueError):
    """A manifest or corpus that cannot be used at all; the message names it."""


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


# -- manifests ---------------------------------------------------------------------------------------------


def _check_entry(obj, folder: Path) -> tuple[dict | None, str]:
    """Validate one parsed line: (entry with absolute audio path, "") or (None, problem)."""
    if not isinstance(obj, dict):
        return None, "not a JSON object"
    for name, kind in FIELDS.items():
        if name not in obj:
            return None, f"missing field '{name}'"
        value = obj[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            return None, f"field '{name}' should be {'a number' if name == 'duration' else 'a string'}"
    if not math.isfinite(obj["duration"]) or obj["duration"] <= 0:
        return None, f"non-positive duration {obj['duration']}"
    if not obj["text"].strip():
        return None, "empty text"
    if "speaker" in obj and not isinstance(obj["speaker"], (str, int)):
        return None, "field 'speaker' should be a string"
    audio = Path(obj["audio"])
    audio = audio if audio.is_absolute() else folder / audio
    if not audio.is_file():
        return None, f"audio file not found: {audio}"
    return {**obj, "audio": str(audio.resolve())}, ""


def read_manifest(path) -> list[dict]:
    """Read a JSONL manifest; audio paths come back absolute. Bad lines are warned about and skipped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such manifest")
    folder = path.resolve().parent
    entries = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                _warn(f"{path}:{n}: skipped: invalid JSON ({exc.msg})")
                continue
            entry, problem = _check_entry(obj, folder)
            if entry is None:
                _warn(f"{path}:{n}: skipped: {problem}")
            else:
                entries.append(entry)
    return entries


def write_manifest(path, entries) -> None:
    """Write entries atomically; audio paths are stored relative to the manifest's folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.resolve().parent
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for e in entries:
            rel = os.path.relpath(Path(e["audio"]).resolve(), folder)
            f.write(json.dumps({**e, "audio": Path(rel).as_posix()}, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def parse_weighted(spec: str) -> tuple[str, int]:
    """'a.jsonl:2' -> ('a.jsonl', 2); 'a.jsonl' -> ('a.jsonl', 1)."""
    head, sep, tail = spec.rpartition(":")
    if sep and tail.isdigit():
        if int(tail) < 1:
            raise DataError(f"{spec}: weight must be a positive integer")
        return head, int(tail)
    return spec, 1


def load_manifests(specs) -> list[dict]:
    """Read MANIFEST[:WEIGHT] specs; a manifest of weight k contributes its entries k times per epoch."""
    entries = []
    for spec in specs:
        path, weight = parse_weighted(spec)
        entries.extend(read_manifest(path) * weight)
    return entries


# -- corpus importers ---------------------------------------------------------------------------------------


def _make_entry(uid: str, audio: Path, text: str, speaker=None) -> dict | None:
    import soundfile as sf

    text = normalize_text(text)
    if not text:
        _warn(f"{audio}: skipped: transcript is empty after normalisation")
        return None
    try:
        duration = sf.info(str(audio)).duration
    except Exception as exc:  # libsndfile raises plain RuntimeErrors
        _warn(f"{audio}: skipped: cannot read audio ({str(exc).strip().splitlines()[0] if str(exc) else exc})")
        return None
    entry = {"id": uid, "audio": str(audio.resolve()), "duration": round(float(duration), 3), "text": text}
    if speaker is not None:
        entry["speaker"] = str(speaker)
    return entry


def _root(root) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such directory")
    return root


def import_librispeech(root) -> list[dict]:
    """LibriSpeech layout: <speaker>/<chapter>/<speaker>-<chapter>.trans.txt + flac, anywhere under root."""
    entries = []
    for trans in sorted(_root(root).rglob("*.trans.txt")):
        for n, line in enumerate(trans.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            uid, _, text = line.strip().partition(" ")
            if not uid:
                continue
            audio = trans.parent / f"{uid}.flac"
            if not audio.is_file():
                _warn(f"{trans}:{n}: skipped: audio file not found: {audio}")
                continue
            entry = _make_entry(uid, audio, text, speaker=uid.split("-")[0])
            if entry:
                entries.append(entry)
    return entries


def import_commonvoice(root, tsv: str = "train.tsv") -> list[dict]:
    """Common Voice layout: <root>/<tsv> (columns path, sentence, client_id) and <root>/clips/<path>."""
    root = _root(root)
    table, _, rows = _read_table(root / tsv, [{"path", "sentence"}])
    entries = []
    for n, row in rows:
        audio = root / "clips" / (row.get("path") or "")
        if not row.get("path") or not audio.is_file():
            _warn(f"{table}:{n}: skipped: audio file not found: {audio}")
            continue
        entry = _make_entry(Path(row["path"]).stem, audio, row.get("sentence") or "", row.get("client_id"))
        if entry:
            entries.append(entry)
    return entries


def _read_table(table: Path, wanted: list[set[str]]) -> tuple[Path, set[str], list[tuple[int, dict]]]:
    """A tab-separated table with a header: (its path, its columns, [(line number, row)]); it must have all
    the columns of one of the `wanted` sets."""
    if not table.is_file():
        raise DataError(f"{table}: no such file")
    with open(table, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        rows = list(enumerate(reader, 2))
        columns = set(reader.fieldnames or [])
    if not any(want <= columns for want in wanted):
        missing = sorted(wanted[0] - columns)
        alternatives = " or ".join("+".join(sorted(w)) for w in wanted)
        raise DataError(f"{table}: missing columns {missing} (want {alternatives})")
    return table, columns, rows


def import_folder(root) -> list[dict]:
    """Audio files anywhere under root, each with a sidecar <stem>.txt transcript."""
    root = _root(root)
    entries = []
    for audio in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()):
        text_file = audio.with_suffix(".txt")
        if not text_file.is_file():
            _warn(f"{audio}: skipped: no transcript {text_file.name}")
            continue
        uid = audio.relative_to(root).with_suffix("").as_posix().replace("/", "-")
        entry = _make_entry(uid, audio, text_file.read_text(encoding="utf-8", errors="replace"))
        if entry:
            entries.append(entry)
    return entries


def import_tsv(root, tsv: str = "transcripts.tsv") -> list[dict]:
    """A folder with a table: <root>/<tsv>, tab-separated with a header, columns `file` (relative to root) and
    `reference` (or `text`), optionally `speaker` (as ../shared/data's sets and many small corpora)."""
    root = _root(root)
    table, columns, rows = _read_table(root / tsv, [{"file", "reference"}, {"file", "text"}])
    text_column = "reference" if "reference" in columns else "text"
    entries = []
    for n, row in rows:
        audio = root / (row.get("file") or "")
        if not row.get("file") or not audio.is_file():
            _warn(f"{table}:{n}: skipped: audio file not found: {audio}")
            continue
        uid = Path(row["file"]).with_suffix("").as_posix().replace("/", "-")
        entry = _make_entry(uid, audio, row.get(text_column) or "", row.get("speaker") or None)
        if entry:
            entries.append(entry)
    return entries


# -- sampler -----------------------------------------------------------------------------------------------


class BucketingSampler(torch.utils.data.Sampler):
    """Batches of similar-length utterances, at most `max_batch_seconds` of padded audio each.

    A batch's cost is its longest duration times its size (what padding makes it weigh); an utterance
    longer than the budget gets a batch of its own. Each epoch sorts by duration with a little seeded
    jitter (so batches change between epochs), cuts batches, and shuffles their order. Under DDP the
    batch list is padded by repetition to a multiple of `num_replicas`, and rank r takes every
    num_replicas-th batch from r: all ranks see the same number of batches. `start` skips batches
    already consumed in the epoch (resume mid-epoch).
    """

    def __init__(
        self,
        durations,
        max_batch_seconds: float,
        seed: int = 0,
        shuffle: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        if max_batch_seconds <= 0:
            raise ValueError("max_batch_seconds must be positive")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} out of range for {num_replicas} replicas")
        self.durations = [float(d) for d in durations]
        self.max_batch_seconds = max_batch_seconds
        self.seed, self.shuffle = seed, shuffle
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def _all_batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 100003 + self.epoch)
        if self.shuffle:
            order = sorted(range(len(self.durations)), key=lambda i: self.durations[i] * rng.uniform(0.9, 1.1))
        else:
            order = sorted(range(len(self.durations)), key=lambda i: self.durations[i])
        batches, batch, longest = [], [], 0.0
        for i in order:
            d = self.durations[i]
            if batch and max(longest, d) * (len(batch) + 1) > self.max_batch_seconds:
                batches.append(batch)
                batch, longest = [], 0.0
            batch.append(i)
            longest = max(longest, d)
        if batch:
            batches.append(batch)
        if self.shuffle:
            rng.shuffle(batches)
        if batches and len(batches) % self.num_replicas:
            batches += batches[: self.num_replicas - len(batches) % self.num_replicas]
        return batches

    def __iter__(self):
        return iter(self._all_batches()[self.rank :: self.num_replicas][self.start :])

    def __len__(self) -> int:
        """Batches per epoch for this rank (ignoring `start`)."""
        return len(self._all_batches()) // self.num_replicas


# -- augmentation ------------------------------------------------------------------------------------------


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


# -- dataset -----------------------------------------------------------------------------------------------


class ASRDataset(torch.utils.data.Dataset):
    """entries -> (feats (T, F) raw log-mel, token ids (S,) long), or None for unreadable audio.

    Augmentation randomness is seeded by (seed, epoch, index): reproducible, and different per epoch
    and for each repeat of an entry. Set `epoch` before creating each epoch's DataLoader iterator.
    """

    def __init__(
        self,
        entries,
        tokenizer,
        augment: bool = False,
        seed: int = 0,
        config: AugmentConfig | None = None,
        augment_from_epoch: int = 0,
    ):
        self.entries = list(entries)
        self.tokenizer = tokenizer
        self.augment = augment
        self.augment_from_epoch = augment_from_epoch  # clean epochs first: CTC leaves its blank plateau sooner
        self.seed = seed
        self.epoch = 0
        self.config = config or AugmentConfig()
        self.logmel = LogMel()

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int):
        entry = self.entries[index]
        try:
            wave = load_audio(entry["audio"])
        except AudioError as exc:
            _warn(f"skipped {entry.get('id')}: {exc}")
            return None
        ids = self.tokenizer.encode(entry["text"])
        if not ids or wave.size == 0:
            _warn(f"skipped {entry.get('id')}: empty audio or transcript")
            return None
        rng = np.random.default_rng([self.seed, self.epoch, index])
        augment = self.augment and self.epoch >= self.augment_from_epoch
        if augment:
            wave = augment_waveform(wave, rng, self.config)
        with torch.no_grad():
            feats = self.logmel(torch.from_numpy(wave))
        if augment and rng.random() < self.config.specaug_prob:
            feats = spec_augment(feats, int(rng.integers(2**31)), self.config)
        return feats, torch.tensor(ids, dtype=torch.long)


def collate(batch):
    """[(feats (T, F), ids (S,)) or None] -> feats (B, T, F), feat_lens (B,), targets (B, S), target_lens (B,).

    Nones (unreadable audio) are dropped; an all-None batch gives None.
    """
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    feat_lens = torch.tensor([f.shape[0] for f, _ in batch])
    target_lens = torch.tensor([t.numel() for _, t in batch])
    feats = torch.nn.utils.rnn.pad_sequence([f for f, _ in batch], batch_first=True)
    targets = torch.nn.utils.rnn.pad_sequence([t for _, t in batch], batch_first=True)
    return feats, feat_lens, targets, target_lens


def compute_stats(entries, n: int = 500, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Global per-bin mean and std (F,) of LogMel over a random sample of n entries."""
    entries = list(entries)
    sample = random.Random(seed).sample(entries, min(n, len(entries)))
    logmel = LogMel()
    total = torch.zeros(logmel.mel.n_mels, dtype=torch.float64)
    squares = torch.zeros_like(total)
    count = 0
    for entry in sample:
        try:
            wave = load_audio(entry["audio"])
        except AudioError as exc:
            _warn(f"skipped {entry.get('id')}: {exc}")
            continue
        with torch.no_grad():
            feats = logmel(torch.from_numpy(wave)).double()
        total += feats.sum(0)
        squares += feats.pow(2).sum(0)
        count += feats.shape[0]
    if count == 0:
        raise DataError("no readable audio to compute feature statistics from")
    mean = total / count
    std = (squares / count - mean**2).clamp_min(1e-10).sqrt()
    return mean.float(), std.float()


# -- CLI ---------------------------------------------------------------------------------------------------

IMPORTERS = {
    "librispeech": import_librispeech,
    "commonvoice": import_commonvoice,
    "folder": import_folder,
    "tsv": import_tsv,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asr.data", description="Import a corpus into a JSONL manifest.")
    parser.add_argument("layout", choices=sorted(IMPORTERS))
    parser.add_argument("root", help="corpus folder")
    parser.add_argument("out", help="manifest to write (JSONL)")
    parser.add_argument(
        "--tsv", default=None, help="the table to read (commonvoice: default train.tsv; tsv: transcripts.tsv)"
    )
    args = parser.parse_args(argv)
    try:
        if args.layout in ("commonvoice", "tsv") and args.tsv:
            entries = IMPORTERS[args.layout](args.root, args.tsv)
        else:
            entries = IMPORTERS[args.layout](args.root)
        if not entries:
            raise DataError(f"{args.root}: no usable utterances found for the {args.layout} layout")
        write_manifest(args.out, entries)
    except (DataError, OSError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    hours = sum(e["duration"] for e in entries) / 3600
    print(f"wrote {len(entries)} utterances ({hours:.2f} h) to {args.out}")
    return 0


if __name__ == "__main__":
    warnings.formatwarning = lambda msg, *a, **k: f"warning: {msg}\n"
    sys.exit(main())
