"""Training data pipeline: weighted mixing of manifests, the Dataset, the length-bucketing batch sampler,
collation, and feature statistics.

Legend: B = batch, T = feature frames, F = mel bins, S = target tokens.
"""

from __future__ import annotations

import bisect
import random

import numpy as np
import torch

from asr.audio import SAMPLE_RATE, AudioError
from asr.audio.augment import AugmentConfig, WarpedLogMel, augment_waveform, spec_augment
from asr.audio.channel import silence
from asr.audio.files import load_audio
from asr.audio.frontend import LogMel
from asr.model.network import FEATURE_SHIFT
from asr.train.manifests import DataError, _warn, read_manifest
from asr.train.teacher_targets import TargetError, align, load_targets

# -- weighted manifests ------------------------------------------------------------------------------------


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


# -- dataset -----------------------------------------------------------------------------------------------


class ASRDataset(torch.utils.data.Dataset):
    """entries -> (feats (T, F) raw log-mel, token ids (S,) long), or None for unreadable audio.

    Augmentation randomness is seeded by (seed, epoch, index): reproducible, and different per epoch
    and for each repeat of an entry. Set `epoch` before creating each epoch's DataLoader iterator. With
    augmentation, the features may come through a warped mel filterbank (VTLP, `config.vtlp_prob`); without, they
    are LogMel's, as at inference. With `config.stream_prob`, an utterance may become a stream of two: a shorter
    entry's audio, a gap of silence, then its own, the transcripts joined by a space (so at most about twice its
    duration: batches may hold up to that much more audio than the sampler planned). With `config.concat_prob`, a
    one-word utterance may become a phrase of `config.concat_words` one-word utterances (its speaker's, where the
    manifests name speakers), short silences between them, its own at a random place.

    With `aux_subsampling` S > 0 (the auxiliary loss), items are (feats, ids, targets (T // S, D), mask (T // S,)):
    the entry's teacher targets (its "teacher" file, asr.train.teacher_targets) on the model's output frames of the
    augmented audio, and which frames have one (none where the entry has no teacher file).
    """

    def __init__(
        self,
        entries,
        tokenizer,
        augment: bool = False,
        seed: int = 0,
        config: AugmentConfig | None = None,
        augment_from_epoch: int = 0,
        aux_subsampling: int = 0,
    ):
        self.entries = list(entries)
        self.tokenizer = tokenizer
        self.augment = augment
        self.augment_from_epoch = augment_from_epoch  # clean epochs first: CTC leaves its blank plateau sooner
        self.seed = seed
        self.epoch = 0
        self.config = config or AugmentConfig()
        self.logmel = WarpedLogMel()  # LogMel unless a warp factor is given
        self.by_duration = sorted(range(len(self.entries)), key=lambda i: self.entries[i]["duration"])
        self.durations = [self.entries[i]["duration"] for i in self.by_duration]  # ascending
        self.one_word: dict = {}  # speaker (None: not named) -> indices of one-word entries (phrases, concat_prob)
        for i, entry in enumerate(self.entries):
            if len(str(entry.get("text", "")).split()) == 1:
                self.one_word.setdefault(entry.get("speaker"), []).append(i)
        self.all_one_word = sorted(i for group in self.one_word.values() for i in group)
        self.aux_subsampling = self.aux_dims = 0
        if aux_subsampling:
            self.enable_aux(aux_subsampling)

    def enable_aux(self, subsampling: int) -> int:
        """Items get teacher targets on output frames of `subsampling` feature frames; returns their width D, from
        the first entry with a readable "teacher" file (0: no entry has one)."""
        self.aux_subsampling = subsampling
        for entry in self.entries:
            if entry.get("teacher"):
                try:
                    self.aux_dims = load_targets(entry["teacher"]).shape[1]
                    break
                except TargetError as exc:
                    _warn(str(exc))
        return self.aux_dims

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
        prefix, timing = 0.0, {"offset": 0.0, "speed": 1.0}
        phrase = self.config.concat_prob and len(entry["text"].split()) == 1 and len(self.all_one_word) > 1
        if augment and phrase and rng.random() < self.config.concat_prob:
            wave, ids, prefix = self._phrase(index, wave, rng)
        elif augment and self.config.stream_prob and rng.random() < self.config.stream_prob:
            wave, ids, prefix = self._stream(entry, wave, ids, rng)
        if augment:
            wave = augment_waveform(wave, rng, self.config, timing)
        factor = 1.0  # VTLP's warp; no draw while it is off, so that the other draws stay as they were
        if augment and self.config.vtlp_prob and rng.random() < self.config.vtlp_prob:
            factor = float(rng.uniform(*self.config.vtlp_factors))
        with torch.no_grad():
            feats = self.logmel(torch.from_numpy(wave), factor)
        if augment and rng.random() < self.config.specaug_prob:
            feats = spec_augment(feats, int(rng.integers(2**31)), self.config)
        ids = torch.tensor(ids, dtype=torch.long)
        if not self.aux_subsampling:
            return feats, ids
        return (feats, ids, *self._targets(entry, feats.shape[0], prefix + timing["offset"], timing["speed"]))

    def _targets(self, entry, feature_frames: int, offset: float, speed: float):
        """(targets (U, D), mask (U,)) of the entry's teacher file on the U output frames (all masked without one)."""
        frames = feature_frames // self.aux_subsampling
        rows = None
        if entry.get("teacher"):
            try:
                rows = load_targets(entry["teacher"])
            except TargetError as exc:
                _warn(f"{entry.get('id')}: {exc}")
        if rows is None or rows.shape[1] != self.aux_dims:
            return torch.zeros(frames, self.aux_dims), torch.zeros(frames, dtype=torch.bool)
        return align(rows, frames, FEATURE_SHIFT * self.aux_subsampling, offset, speed)

    def _stream(self, entry, wave, ids, rng):
        """(wave, ids, seconds before `entry`'s audio) of a stream of two utterances: a random entry no longer than
        `entry`, a gap of silence (config.gap_seconds; zeros or a quiet floor), then `entry`. Unchanged (0 seconds
        before) where no shorter entry reads."""
        shorter = bisect.bisect_right(self.durations, entry["duration"])
        if shorter == 0:
            return wave, ids, 0.0
        first = self.entries[self.by_duration[int(rng.integers(shorter))]]
        try:
            before = load_audio(first["audio"])
        except AudioError:
            return wave, ids, 0.0
        first_ids = self.tokenizer.encode(first["text"])
        if not first_ids or before.size == 0:
            return wave, ids, 0.0
        cfg = self.config
        gap = silence(int(SAMPLE_RATE * rng.uniform(*cfg.gap_seconds)), rng, cfg.zero_share, cfg.pad_level_db)
        ids = self.tokenizer.encode(first["text"] + " " + entry["text"])
        return np.concatenate([before, gap, wave]), ids, (before.size + gap.size) / SAMPLE_RATE

    def _phrase(self, index, wave, rng):
        """(wave, ids, seconds before entry `index`'s audio) of a phrase of one-word utterances: entry `index` at a
        random place among others drawn from its speaker's one-word entries (or all of them, where the speaker is
        not named or has no other), config.concat_gap of silence between the words."""
        cfg = self.config
        entry = self.entries[index]
        group = self.one_word.get(entry.get("speaker"), [])
        pool = group if entry.get("speaker") is not None and len(group) > 1 else self.all_one_word
        words = int(rng.integers(cfg.concat_words[0], cfg.concat_words[1] + 1))
        others = [int(pool[k]) for k in rng.integers(len(pool), size=words - 1)]
        place = int(rng.integers(words))
        order = others[:place] + [index] + others[place:]
        pieces, texts, prefix = [], [], 0.0
        for position, i in enumerate(order):
            own = position == place
            if own:
                audio = wave
            else:
                try:
                    audio = load_audio(self.entries[i]["audio"])
                except AudioError:
                    continue
                if audio.size == 0:
                    continue
            if pieces:
                seconds = rng.uniform(*cfg.concat_gap)
                pieces.append(silence(int(SAMPLE_RATE * seconds), rng, cfg.zero_share, cfg.pad_level_db))
            if own:
                prefix = sum(piece.size for piece in pieces) / SAMPLE_RATE
            pieces.append(audio)
            texts.append(self.entries[i]["text"])
        return np.concatenate(pieces), self.tokenizer.encode(" ".join(texts)), prefix


def collate(batch):
    """[(feats (T, F), ids (S,)) or None] -> feats (B, T, F), feat_lens (B,), targets (B, S), target_lens (B,);
    items with teacher targets (T // S rows, mask) add aux (B, U, D) and aux_mask (B, U), padded with False.

    Nones (unreadable audio) are dropped; an all-None batch gives None.
    """
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    pad = torch.nn.utils.rnn.pad_sequence
    feat_lens = torch.tensor([b[0].shape[0] for b in batch])
    target_lens = torch.tensor([b[1].numel() for b in batch])
    feats = pad([b[0] for b in batch], batch_first=True)
    targets = pad([b[1] for b in batch], batch_first=True)
    if len(batch[0]) == 2:
        return feats, feat_lens, targets, target_lens
    aux = pad([b[2] for b in batch], batch_first=True)
    aux_mask = pad([b[3] for b in batch], batch_first=True)  # padding: False
    return feats, feat_lens, targets, target_lens, aux, aux_mask


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
