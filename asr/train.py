"""Training loop: CTC on GRUCTC, Adam with warmup + cosine decay, AMP on GPU, torchrun DDP, resume.

    python -m asr.train --train data/train.jsonl:2 extra.jsonl --valid data/dev.jsonl --out exp/run1
    torchrun --nproc_per_node 4 -m asr.train ...        # DDP: gloo on CPU, nccl on CUDA

Learning rate: linear warmup from 0 to --lr over --warmup-steps, then cosine decay to --lr * --min-lr-ratio
at the last step (--max-steps if given, else --epochs x batches per epoch). With --max-minutes, the decay
follows whichever budget runs out first (steps or wall-clock time, resumed runs counted in), so a time-boxed
run on a busy machine still ends at the low learning rate; under DDP the ranks share the slowest rank's clock,
so they agree on the learning rate and on the step to stop at.

OUT holds last.pt (full training state, for --resume; written every --checkpoint-every steps and at the end),
model.pt (latest model bundle) and best.pt (the bundle with the best WER on the first --valid manifest),
log.jsonl (one JSON object per log line) and curve.png (loss and valid WER against step).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fnmatch
import json
import math
import os
import random
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from asr import user_models
from asr.atomic import atomic_open
from asr.augment import AugmentConfig
from asr.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from asr.dataset import ASRDataset, BucketingSampler, collate, compute_stats, load_manifests
from asr.decoding import ctc_greedy
from asr.loading import DEFAULT_MODEL
from asr.manifests import DataError, read_manifest
from asr.model import GRUCTC, MAX_LOOKAHEAD, STRIDES, ModelConfig
from asr.tokenizer import BLANK, CharTokenizer

MODEL_OPTIONS = (
    "hidden_size",
    "num_layers",
    "conv_channels",
    "cell",
    "dropout",
    "layer_norm",
    "subsampling",
    "lookahead",
)  # args -> ModelConfig fields
STATE_VERSION = 1  # layout of last.pt
SELECT_BY = ("wer", "loss")  # --select-by: validation results whose lowest picks best.pt


class TrainError(RuntimeError):
    """A problem that stops training; reported as one line."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr train", description="Train a streaming GRU-CTC recognizer.")
    a = p.add_argument
    a("--config", help="JSON file of defaults (keys: option names with underscores); the command line overrides")
    a("--train", nargs="+", metavar="MANIFEST[:WEIGHT]", help="training manifests; weight k repeats one k times")
    a("--valid", nargs="+", default=[], metavar="MANIFEST", help="validation manifests (the first picks best.pt)")
    a("--out", help="output folder")
    d = ModelConfig()
    a("--hidden-size", type=int, default=d.hidden_size)
    a("--num-layers", type=int, default=d.num_layers)
    a("--conv-channels", type=int, default=d.conv_channels)
    a("--cell", choices=("gru", "lstm"), default=d.cell)
    a("--dropout", type=float, default=d.dropout)
    a("--layer-norm", action=argparse.BooleanOptionalAction, default=d.layer_norm, help="LayerNorm before the RNN")
    a(
        "--subsampling",
        type=int,
        choices=sorted(STRIDES),
        default=d.subsampling,
        help="feature frames (10 ms) per output frame: 4 is cheapest; 2 or 3 leave characters more frames",
    )
    a(
        "--lookahead",
        type=int,
        default=None,
        help=f"output frames the model waits for before labelling one (0-{MAX_LOOKAHEAD}; default {d.lookahead});"
        " with --init, a model without lookahead gets one that starts as a pass-through",
    )
    a("--epochs", type=int, default=30)
    a("--max-steps", type=int, default=0, help="stop after this many optimizer steps (0: no limit)")
    a("--max-minutes", type=float, default=0.0, help="stop cleanly after this wall-clock budget (0: no limit)")
    a("--lr", type=float, default=1e-3, help="peak learning rate")
    a("--warmup-steps", type=int, default=500)
    a("--min-lr-ratio", type=float, default=0.05, help="final learning rate as a fraction of --lr")
    a("--weight-decay", type=float, default=0.0)
    a("--max-batch-seconds", type=float, default=300.0, help="padded audio seconds per batch (per process)")
    a("--grad-clip", type=float, default=5.0, help="max gradient norm")
    a("--num-workers", type=int, default=2)
    a("--seed", type=int, default=0)
    a("--resume", action="store_true", help="continue from OUT/last.pt if it exists")
    a(
        "--init",
        metavar="MODEL",
        help="start from this model's weights and feature statistics ('default': the embedded model), to fine-tune;"
        " its architecture replaces the model options; fresh optimizer and schedule; --resume's OUT/last.pt wins",
    )
    a(
        "--freeze",
        nargs="+",
        default=[],
        metavar="PATTERN",
        help="parameters not trained: names matching these shell patterns (e.g. 'rnn.*_l2*' 'output.*');"
        " see the model's state_dict keys",
    )
    a(
        "--l2-init",
        type=float,
        default=0.0,
        metavar="WEIGHT",
        help="with --init: add WEIGHT x the squared distance of the trained weights from the --init ones to the loss"
        " (keeps a fine-tuned model near its start)",
    )
    a(
        "--kl-init",
        type=float,
        default=0.0,
        metavar="WEIGHT",
        help="with --init: add WEIGHT x the KL divergence of the trained model's output distribution from the --init"
        " model's, per output frame of each batch, to the loss (keeps what the fine-tuned model recognises elsewhere)",
    )
    a("--checkpoint-every", type=int, default=500, help="steps between saves of OUT/last.pt")
    a("--valid-every", type=int, default=1000, help="steps between validations (0: only at the end)")
    a(
        "--patience",
        type=int,
        default=0,
        help="stop after this many validations in a row without a better score on the first --valid set (0: never)",
    )
    a(
        "--ties",
        choices=("earlier", "later"),
        default="earlier",
        help="which of equally good validations best.pt is: the earlier (default), or the later, and then --patience"
        " counts only validations worse than the best (a flat score, as a few utterances' WER often is, goes on)",
    )
    a(
        "--select-by",
        choices=SELECT_BY,
        default="wer",
        help="the first --valid set's score that picks best.pt and counts for --patience: its greedy WER (default), or"
        " its mean CTC loss (smoother than the WER of a few utterances)",
    )
    a("--log-every", type=int, default=10, help="steps between log lines")
    a("--stats-utterances", type=int, default=500, help="utterances sampled for feature normalisation")
    a("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    a("--quiet", action="store_true", help="no progress bars or validation lines (log.jsonl has them all)")
    a("--device", default=None, help="cuda, cuda:1, cpu (default: cuda when available)")
    a("--no-augment", action="store_true", help="turn off waveform augmentation and SpecAugment")
    a("--augment-from-epoch", type=int, default=0, help="first epoch with augmentation (earlier ones are clean)")
    a("--augment-scale", type=float, default=1.0, help="multiplies every augmentation's probability")
    aug = AugmentConfig
    a(
        "--speed-prob",
        type=float,
        default=None,
        help=f"probability of speed perturbation (default: {aug.speed_prob} x --augment-scale)",
    )
    a(
        "--pad-prob",
        type=float,
        default=aug.pad_prob,
        help=f"probability of {aug.pad_seconds[0]:g}-{aug.pad_seconds[1]:g} s of quiet noise before and after an"
        f" utterance (not scaled; default {aug.pad_prob:g})",
    )
    a(
        "--speeds",
        type=float,
        nargs="+",
        default=list(aug.speeds),
        help=f"speed perturbation factors, one drawn per perturbed utterance (default {' '.join(map(str, aug.speeds))})",
    )
    return p


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config:
        try:
            config = json.loads(Path(args.config).read_text())
        except (OSError, ValueError) as exc:
            parser.error(f"--config {args.config}: {exc}")
        if not isinstance(config, dict):
            parser.error(f"--config {args.config}: expected a JSON object")
        known = {a.dest for a in parser._actions} - {"help", "config"}
        unknown = sorted(set(config) - known)
        if unknown:
            parser.error(f"--config {args.config}: unknown keys {unknown}")
        parser.set_defaults(**config)
        args = parser.parse_args(argv)
    if isinstance(args.train, str):
        args.train = [args.train]
    if isinstance(args.valid, str):
        args.valid = [args.valid]
    if any(not 0.5 <= f <= 2.0 for f in args.speeds):
        parser.error(f"--speeds: factors must lie in 0.5-2.0, got {args.speeds}")
    for name in ("speed_prob", "pad_prob"):
        value = getattr(args, name)
        if value is not None and not 0.0 <= value <= 1.0:
            parser.error(f"--{name.replace('_', '-')}: a probability in 0-1, got {value}")
    if not args.train:
        parser.error("--train is required (on the command line or in --config)")
    if not args.out:
        parser.error("--out is required (on the command line or in --config)")
    return args


def augment_config(args) -> AugmentConfig:
    """The augmentation of the options: default probabilities times --augment-scale, then --speeds, --pad-prob
    and --speed-prob as given (unscaled)."""
    config = AugmentConfig().scaled(args.augment_scale)
    config = dataclasses.replace(config, speeds=tuple(args.speeds), pad_prob=args.pad_prob)
    if args.speed_prob is not None:
        config = dataclasses.replace(config, speed_prob=args.speed_prob)
    return config


# -- distributed and randomness --------------------------------------------------------------------------------


def setup_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world_size); initialises the process group when launched by torchrun with WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world


def pick_device(name: str | None) -> torch.device:
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainError("--device cuda but CUDA is not available")
        if device.index is None and "LOCAL_RANK" in os.environ:
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    return device


def rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):
            torch.cuda.set_rng_state_all(state["cuda"])


def _python_tuple(x):
    """torch.load gives lists back where random.getstate had tuples."""
    return tuple(_python_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def lr_lambda(warmup: int, total: int, min_ratio: float, time_fraction=None):
    """Multiplier of the peak lr at a step: linear warmup, then cosine down to min_ratio at `total`.

    `time_fraction()`, if given, is the share of the time budget spent; the decay follows the larger share.
    """

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if time_fraction is not None:
            progress = max(progress, min(1.0, time_fraction()))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


# -- logging and plots ------------------------------------------------------------------------------------------


def append_log(out: Path, record: dict) -> None:
    with open(out / "log.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def plot_curve(out: Path) -> None:
    """OUT/curve.png from OUT/log.jsonl: training loss and valid WER against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, valid = [], {}
    log = out / "log.jsonl"
    for line in log.read_text().splitlines() if log.exists() else []:
        r = json.loads(line)
        if "valid" in r:
            valid.setdefault(r["valid"], []).append((r["step"], r["wer"]))
        else:
            train.append((r["step"], r["loss"]))
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train, strict=True), color="tab:blue", label="train loss")
    ax.set_xlabel("step")
    ax.set_ylabel("CTC loss", color="tab:blue")
    if valid:
        ax2 = ax.twinx()
        for name, points in valid.items():
            ax2.plot(*zip(*points, strict=True), "o-", label=f"WER {Path(name).stem}")
        ax2.set_ylabel("valid WER")
        ax2.legend(loc="upper right")
    fig.tight_layout()
    with atomic_open(out / "curve.png", "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


# -- validation ----------------------------------------------------------------------------------------------


def frame_kl(reference: torch.Tensor, log_probs: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """Mean over the valid output frames of KL(reference || model); both (B, U, V) log-probs, lens (B,)."""
    valid = torch.arange(log_probs.shape[1], device=lens.device)[None, :] < lens[:, None]  # (B, U)
    kl = (reference.exp() * (reference - log_probs)).sum(-1)  # (B, U)
    return (kl * valid).sum() / valid.sum().clamp_min(1)


@torch.inference_mode()
def validate(model: GRUCTC, loader, tokenizer, device) -> dict:
    """Greedy-decode a loader of (feats, lens, targets, target_lens): WER, CER and mean CTC loss."""
    import jiwer

    was_training = model.training
    model.eval()
    refs, hyps, losses = [], [], []
    for batch in loader:
        if batch is None:
            continue
        feats, feat_lens, targets, target_lens = (t.to(device) for t in batch)
        log_probs, out_lens = model(feats, feat_lens)
        losses.append(ctc(log_probs.float(), targets, out_lens, target_lens).item())
        for lp, n, tgt, m in zip(
            log_probs.float().cpu(), out_lens.tolist(), targets.cpu(), target_lens.tolist(), strict=True
        ):
            refs.append(tokenizer.decode(tgt[:m].tolist()))
            hyps.append(ctc_greedy(lp[:n], tokenizer.tokens)[0])
    model.train(was_training)
    if not refs:
        return {"wer": float("nan"), "cer": float("nan"), "loss": float("nan"), "utterances": 0}
    return {
        "wer": jiwer.wer(refs, hyps),
        "cer": jiwer.cer(refs, hyps),
        "loss": sum(losses) / len(losses),
        "utterances": len(refs),
    }


def ctc(log_probs, targets, out_lens, target_lens):
    """Mean CTC loss; log_probs (B, U, V) -> (U, B, V) as ctc_loss wants."""
    return F.ctc_loss(
        log_probs.transpose(0, 1), targets, out_lens, target_lens, blank=BLANK, reduction="mean", zero_infinity=True
    )


# -- the trainer -----------------------------------------------------------------------------------------------


class Trainer:
    def __init__(self, args):
        self.args = args
        self.device = pick_device(args.device)
        self.rank, self.world = setup_distributed(self.device)
        self.main = self.rank == 0
        if not self.main:
            warnings.simplefilter("ignore")  # rank 0 reports data problems once
        if args.threads:
            torch.set_num_threads(args.threads)
        self.out = Path(args.out)
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
        self.tokenizer = CharTokenizer()

        entries = load_manifests(args.train)
        if not entries:
            raise TrainError(f"no usable training utterances in {' '.join(args.train)}")
        self.train_set = ASRDataset(
            entries,
            self.tokenizer,
            augment=not args.no_augment,
            seed=args.seed,
            config=augment_config(args),
            augment_from_epoch=args.augment_from_epoch,
        )
        self.sampler = BucketingSampler(
            [e["duration"] for e in entries], args.max_batch_seconds, args.seed, True, self.world, self.rank
        )
        self.batches_per_epoch = len(self.sampler)
        self.valid_sets = []
        for path in args.valid:
            valid = read_manifest(path)
            if valid:
                ds = ASRDataset(valid, self.tokenizer, augment=False)
                sampler = BucketingSampler([e["duration"] for e in valid], args.max_batch_seconds, shuffle=False)
                self.valid_sets.append((path, self._loader(ds, sampler)))

        self.step = self.epoch = self.position = 0
        self.elapsed_before = 0.0  # training seconds of earlier runs (resume)
        self.clock = time.monotonic()
        self.shared_elapsed = 0.0  # elapsed() as the ranks agreed on it at the last step (the largest)
        self.best_wer = float("inf")  # the first --valid set's WER at best.pt
        self.best_score = float("inf")  # its --select-by result there
        self.stale_validations = 0  # validations since the best score (--patience)
        self.validated_step = -1
        resume = self.out / "last.pt"
        if args.resume and resume.exists():
            self.state = torch.load(resume, map_location="cpu", weights_only=True)
            config = ModelConfig.from_dict(self.state["config"])
        else:
            self.state = None
            fields = {k: getattr(args, k) for k in MODEL_OPTIONS if getattr(args, k) is not None}
            config = model_config(n_mels=80, vocab_size=len(self.tokenizer), **fields)
        initial = self._initial_model() if self.state is None and args.init else None
        if initial is not None:
            config = initial.config
            if args.lookahead is not None:
                config = model_config(**{**config.to_dict(), "lookahead": args.lookahead})
        self.model = GRUCTC(config, self.tokenizer.tokens).to(self.device)
        if initial is not None:  # weights and normalisation stats as trained; the optimizer starts afresh
            wanted = self.model.state_dict()
            weights = {k: v for k, v in initial.state_dict().items() if k in wanted}
            if config.lookahead != initial.config.lookahead:  # the row convolution starts as a pass-through
                weights.pop("lookahead.weight", None)
            missing = self.model.load_state_dict(weights, strict=False).missing_keys
            assert set(missing) <= {"lookahead.weight"}, missing
        elif self.state is None and self.main:  # DDP broadcasts rank 0's buffers, the stats among them
            mean, std = compute_stats(entries, args.stats_utterances, args.seed)
            self.model.set_normalization(mean.to(self.device), std.to(self.device))

        trained = self._trainable_parameters()
        for option, value in (("--l2-init", args.l2_init), ("--kl-init", args.kl_init)):
            if value and not args.init:
                raise TrainError(f"{option} needs --init (the model to stay near)")
        if (args.l2_init or args.kl_init) and initial is None:  # resumed: the --init model again, once
            initial = self._initial_model()
        self.anchor = None  # --l2-init: the --init weights of the trained parameters
        if args.l2_init:
            start = initial.state_dict()
            self.anchor = [(p, start[name].to(self.device)) for name, p in trained if name in start]
        self.reference = None  # --kl-init: the --init model, whose outputs the trained one is kept near
        if args.kl_init:
            self.reference = initial.to(self.device).eval().requires_grad_(False)
        self.optimizer = torch.optim.Adam([p for _, p in trained], lr=args.lr, weight_decay=args.weight_decay)
        total = args.max_steps or args.epochs * self.batches_per_epoch
        time_fraction = (lambda: self.shared_elapsed / (args.max_minutes * 60)) if args.max_minutes else None
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(args.warmup_steps, total, args.min_lr_ratio, time_fraction)
        )
        cuda = self.device.type == "cuda"
        self.amp_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        if self.state is not None:
            self._load_state(self.state)
        self.ddp = None
        if self.world > 1:
            ids = [self.device.index] if cuda else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.loader = self._loader(self.train_set, self.sampler)

    def _trainable_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        """(name, parameter) of those trained; --freeze turns the others' gradients off."""
        named = list(self.model.named_parameters())
        for pattern in self.args.freeze:
            if not any(fnmatch.fnmatchcase(name, pattern) for name, _ in named):
                raise TrainError(
                    f"--freeze {pattern}: matches no parameter (they are: {', '.join(n for n, _ in named)})"
                )
        trained = []
        for name, param in named:
            frozen = any(fnmatch.fnmatchcase(name, pattern) for pattern in self.args.freeze)
            param.requires_grad_(not frozen)
            if not frozen:
                trained.append((name, param))
        if not trained:
            raise TrainError("--freeze leaves no parameter to train")
        return trained

    def _initial_model(self) -> GRUCTC:
        """The --init model, checked against this run's tokenizer."""
        try:
            model = load_checkpoint(user_models.resolve(self.args.init) or DEFAULT_MODEL)
        except CheckpointError as exc:
            raise TrainError(f"--init {exc}") from None
        if model.tokens != self.tokenizer.tokens:
            raise TrainError(f"--init {self.args.init}: its output tokens differ from the character set trained here")
        return model

    def _loader(self, dataset, sampler):
        return torch.utils.data.DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=self.args.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator(),  # its own seeds: iterators do not draw from the global RNG (exact resume)
        )

    # -- state ----------------------------------------------------------------------------------------------
    def _training_state(self) -> dict:
        return {
            "version": STATE_VERSION,
            "config": self.model.config.to_dict(),
            "tokens": self.tokenizer.tokens,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "position": self.position,
            "best_wer": self.best_wer,
            "best_score": self.best_score,
            "stale_validations": self.stale_validations,
            "elapsed": self.elapsed(),
            "rng": rng_state(),
        }

    def _load_state(self, state: dict) -> None:
        if state.get("version") != STATE_VERSION:
            raise TrainError(f"{self.out / 'last.pt'}: training state version {state.get('version')}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.position = state["step"], state["epoch"], state["position"]
        self.best_wer = state["best_wer"]
        self.best_score = state.get("best_score", self.best_wer)  # states before --select-by: the WER
        self.stale_validations = state.get("stale_validations", 0)
        self.elapsed_before = self.shared_elapsed = state.get("elapsed", 0.0)
        rng = state["rng"]
        rng["python"] = _python_tuple(rng["python"])
        set_rng_state(rng)

    def elapsed(self) -> float:
        """Seconds of training so far, earlier (resumed) runs included."""
        return self.elapsed_before + time.monotonic() - self.clock

    def save(self) -> None:
        if not self.main:
            return
        with atomic_open(self.out / "last.pt", "wb") as f:
            torch.save(self._training_state(), f)
        save_checkpoint(self.out / "model.pt", self.model, self.tokenizer.tokens, self._extra())

    def _extra(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "best_wer": self.best_wer}

    # -- loop -----------------------------------------------------------------------------------------------
    def _agree(self, skip: bool, stop: bool) -> tuple[bool, bool]:
        """All ranks take the same decision to skip a batch or stop, and share the largest elapsed time."""
        if self.world == 1:
            self.shared_elapsed = self.elapsed()
            return skip, stop
        flags = torch.tensor([float(skip), float(stop), self.elapsed()], dtype=torch.float64, device=self.device)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        self.shared_elapsed = float(flags[2])
        return bool(flags[0]), bool(flags[1])

    def train_step(self, batch) -> float:
        feats, feat_lens, targets, target_lens = (t.to(self.device, non_blocking=True) for t in batch)
        model = self.ddp or self.model
        amp = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else contextlib.nullcontext()
        with amp:
            log_probs, out_lens = model(feats, feat_lens)
        loss = ctc(log_probs.float(), targets, out_lens, target_lens)
        if self.anchor:
            loss = loss + self.args.l2_init * sum(((p - p0) ** 2).sum() for p, p0 in self.anchor)
        if self.reference is not None:
            with torch.no_grad(), amp:
                reference, _ = self.reference(feats, feat_lens)
            loss = loss + self.args.kl_init * frame_kl(reference.float(), log_probs.float(), out_lens)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.args.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss.item()

    def run_validation(self) -> None:
        if not (self.main and self.valid_sets) or self.validated_step == self.step:
            return
        self.validated_step = self.step
        for i, (path, loader) in enumerate(self.valid_sets):
            result = validate(self.model, loader, self.tokenizer, self.device)
            record = {"step": self.step, "epoch": self.epoch, "valid": path, **result}
            append_log(self.out, record)
            if not self.args.quiet:
                print(
                    f"step {self.step} valid {path}: WER {result['wer']:.2%} CER {result['cer']:.2%}", file=sys.stderr
                )
            if i == 0:
                self._select(result)
        plot_curve(self.out)

    def _select(self, result: dict) -> None:
        """The first --valid set's result: best.pt if it is the best so far, and --patience's count."""
        score, later = result[self.args.select_by], self.args.ties == "later"
        better, tied = score < self.best_score, score == self.best_score
        if better or (later and tied):
            self.best_score, self.best_wer = score, result["wer"]
            save_checkpoint(self.out / "best.pt", self.model, self.tokenizer.tokens, self._extra())
        worse = not score <= self.best_score  # NaN (no utterance) too
        self.stale_validations = 0 if better or (later and not worse) else self.stale_validations + 1

    def fit(self) -> None:
        from tqdm import tqdm

        a = self.args
        started = time.monotonic()
        self.clock = started
        audio_seconds, window_loss, window_n, window_start = 0.0, 0.0, 0, time.monotonic()
        stop = a.max_steps and self.step >= a.max_steps
        if self.main and not a.quiet:
            n = self.model.num_parameters()
            print(
                f"training {n / 1e6:.2f}M parameters on {self.device} x{self.world}, step {self.step}", file=sys.stderr
            )
        while not stop and self.epoch < a.epochs:
            self.sampler.set_epoch(self.epoch, self.position)
            self.train_set.epoch = self.epoch
            bar = tqdm(
                self.loader,
                total=self.batches_per_epoch,
                initial=self.position,
                desc=f"epoch {self.epoch}",
                disable=not self.main or a.quiet,
                dynamic_ncols=True,
            )
            for batch in bar:
                skip, stop = self._agree(batch is None, False)
                if not skip:
                    loss = self.train_step(batch)
                    window_loss, window_n = window_loss + loss, window_n + 1
                    seconds = float(batch[1].sum()) * 0.01 * self.world  # 10 ms frames, all ranks
                    audio_seconds += seconds
                    bar.set_postfix(loss=f"{loss:.3f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
                self.step += 1
                self.position += 1
                if self.main and window_n and self.step % a.log_every == 0:
                    now = time.monotonic()
                    record = {
                        "step": self.step,
                        "epoch": self.epoch,
                        "loss": window_loss / window_n,
                        "lr": self.scheduler.get_last_lr()[0],
                        "audio_seconds_per_second": audio_seconds / (now - window_start),
                        "elapsed": round(now - started, 1),
                    }
                    append_log(self.out, record)
                    window_loss, window_n, audio_seconds, window_start = 0.0, 0, 0.0, now
                if a.checkpoint_every and self.step % a.checkpoint_every == 0:
                    self.save()
                if a.valid_every and self.step % a.valid_every == 0:
                    self.run_validation()
                    audio_seconds, window_start = 0.0, time.monotonic()  # throughput: training time only
                over_steps = a.max_steps and self.step >= a.max_steps
                out_of_patience = a.patience and self.stale_validations >= a.patience  # rank 0 validates
                _, stop = self._agree(False, bool(over_steps or out_of_patience))
                stop = stop or bool(a.max_minutes and self.shared_elapsed > a.max_minutes * 60)
                if stop:
                    if out_of_patience and self.main and not a.quiet:
                        print(
                            f"no better {a.select_by} in {a.patience} validations: stopping at step {self.step}",
                            file=sys.stderr,
                        )
                    break
            bar.close()
            if not stop:
                self.epoch += 1
                self.position = 0
        self.run_validation()
        self.save()
        if self.main:
            plot_curve(self.out)
            if not a.quiet:
                print(f"finished at step {self.step}; model in {self.out / 'model.pt'}", file=sys.stderr)


def model_config(**fields) -> ModelConfig:
    try:
        return ModelConfig(**fields)
    except ValueError as exc:
        raise TrainError(str(exc)) from None


def main(argv=None) -> int:
    args = parse_args(argv)
    warnings.formatwarning = lambda message, *rest, **kw: f"warning: {message}\n"
    try:
        trainer = Trainer(args)
        trainer.fit()
        if dist.is_initialized():
            # every rank done with its collectives before any tears its process group down: a rank that
            # destroyed gloo while another was still in one aborted at exit now and then (SIGABRT)
            dist.barrier()
    except (TrainError, DataError) as exc:
        print(f"asr train: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
