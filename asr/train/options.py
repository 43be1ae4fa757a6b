"""The options of `asr train` (command line and --config JSON), and the model config and augmentation they give."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from asr.audio.augment import VTLP_LIMITS, AugmentConfig, load_rooms
from asr.model.network import MAX_LOOKAHEAD, STRIDES, ModelConfig

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
SELECT_BY = ("wer", "cer", "loss")  # --select-by: validation results whose lowest picks best.pt
SELECT_ON = ("first", "mean")  # --select-on: the first --valid set's results, or their mean over all sets


class TrainError(RuntimeError):
    """A problem that stops training; reported as one line."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr train", description="Train a streaming GRU-CTC recognizer.")
    a = p.add_argument
    a("--config", help="JSON file of defaults (keys: option names with underscores); the command line overrides")
    a("--train", nargs="+", metavar="MANIFEST[:WEIGHT]", help="training manifests; weight k repeats one k times")
    a(
        "--valid",
        nargs="+",
        default=[],
        metavar="MANIFEST",
        help="validation manifests (the first picks best.pt, or with --select-on mean all of them)",
    )
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
        "--widen",
        type=int,
        default=None,
        metavar="H",
        help="with --init: widen the --init model's recurrent layers to H units first, computing the same function"
        " (Net2Net: asr.model.widen, noise 0.01), when it is short of capacity",
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
    a(
        "--aux-weight",
        type=float,
        default=0.0,
        metavar="W",
        help="add W x the auxiliary loss: a recurrent layer predicts a teacher's encoder states of the clean audio"
        " (the training manifests' 'teacher' files, asr.train.aux; 0: off)",
    )
    a(
        "--aux-layer",
        type=int,
        default=None,
        help="the recurrent layer (0-based) the auxiliary head reads (default: the middle one)",
    )
    a("--aux-lookahead", type=int, default=2, help="output frames after its own the auxiliary head reads (default 2)")
    a("--checkpoint-every", type=int, default=500, help="steps between saves of OUT/last.pt")
    a(
        "--keep-checkpoints",
        type=int,
        default=0,
        help="also keep the last N saves' models as OUT/checkpoints/step_S.pt, for python -m asr.model.average"
        " (default 0: none)",
    )
    a("--valid-every", type=int, default=1000, help="steps between validations (0: only at the end)")
    a(
        "--patience",
        type=int,
        default=0,
        help="stop after this many validations in a row without a better --select-on score (0: never)",
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
        help="the validation score that picks best.pt and counts for --patience: the greedy WER (default), the greedy"
        " CER (finer: it still moves where the WER is near 100%), or the mean CTC loss (smoother than the WER of a few"
        " utterances)",
    )
    a(
        "--select-on",
        choices=SELECT_ON,
        default="first",
        help="whose --select-by score picks best.pt and counts for --patience: the first --valid set's (default), or"
        " the mean over all --valid sets, every set weighing the same however many utterances it has (logged in"
        ' log.jsonl as valid "mean")',
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
    a(
        "--vtlp-prob",
        type=float,
        default=aug.vtlp_prob,
        help="probability of vocal-tract-length perturbation: the utterance's features through a mel filterbank warped"
        f" by a factor drawn from --vtlp-factors (Kaldi's VTLN warp; not scaled; default {aug.vtlp_prob:g}: off)",
    )
    a(
        "--vtlp-factors",
        type=float,
        nargs=2,
        default=list(aug.vtlp_factors),
        metavar=("LOW", "HIGH"),
        help=f"VTLP's warp factors, drawn uniformly (default {aug.vtlp_factors[0]:g} {aug.vtlp_factors[1]:g}; above 1"
        " moves energy up in frequency)",
    )
    a(
        "--lead-prob",
        type=float,
        default=aug.lead_prob,
        help="probability of a lead of silence before an utterance (a third as much after), as a live stream gives"
        f" (not scaled; default {aug.lead_prob:g}: off)",
    )
    a(
        "--lead-seconds",
        type=float,
        nargs=2,
        default=list(aug.lead_seconds),
        metavar=("LOW", "HIGH"),
        help=f"the lead's length, drawn uniformly (default {aug.lead_seconds[0]:g} {aug.lead_seconds[1]:g})",
    )
    a(
        "--stream-prob",
        type=float,
        default=aug.stream_prob,
        help="probability that an utterance becomes a stream of two: a shorter one, silence, then it, so the model"
        f" learns to carry its state from one into the next (not scaled; default {aug.stream_prob:g}: off)",
    )
    a(
        "--gap-seconds",
        type=float,
        nargs=2,
        default=list(aug.gap_seconds),
        metavar=("LOW", "HIGH"),
        help=f"the silence between a stream's utterances, drawn uniformly (default {aug.gap_seconds[0]:g}"
        f" {aug.gap_seconds[1]:g})",
    )
    a(
        "--concat-prob",
        type=float,
        default=aug.concat_prob,
        help="probability that a one-word utterance (a command, a digit) is joined by other one-word ones into a"
        " phrase, short silences between them, the same speaker's where the manifests name speakers (not scaled;"
        f" default {aug.concat_prob:g}: off)",
    )
    a(
        "--concat-words",
        type=int,
        nargs=2,
        default=list(aug.concat_words),
        metavar=("LOW", "HIGH"),
        help=f"words in such a phrase, drawn uniformly (default {aug.concat_words[0]} {aug.concat_words[1]})",
    )
    a(
        "--zero-share",
        type=float,
        default=aug.zero_share,
        help=f"of the leads and gaps, the share that is digital silence, not a quiet noise floor (default {aug.zero_share:g})",
    )
    a(
        "--eq-prob",
        type=float,
        default=aug.eq_prob,
        help=f"probability of a random microphone colouring (peaking EQ, high/low-pass; not scaled; default {aug.eq_prob:g})",
    )
    a(
        "--codec-prob",
        type=float,
        default=aug.codec_prob,
        help="probability of a lossy round trip: Opus or MP3 at a low bit rate, or 8 kHz mu-law telephone (not scaled;"
        f" default {aug.codec_prob:g})",
    )
    a(
        "--rooms",
        default=None,
        metavar="BANK",
        help="reverberate with room impulse responses drawn from this bank (.npz made by"
        " recipes/default_en/local/make_rooms.py: simulated rooms) instead of synthetic ones",
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
    low, high = args.vtlp_factors
    if not VTLP_LIMITS[0] <= low <= high <= VTLP_LIMITS[1]:
        limits = "-".join(f"{x:g}" for x in VTLP_LIMITS)
        parser.error(f"--vtlp-factors: LOW <= HIGH within {limits} (the mel filterbank's limits), got {low:g} {high:g}")
    for name in ("lead_seconds", "gap_seconds"):
        low, high = getattr(args, name)
        if not 0.0 <= low <= high <= 30.0:
            parser.error(f"--{name.replace('_', '-')}: 0 <= LOW <= HIGH <= 30 seconds, got {low:g} {high:g}")
    low, high = args.concat_words
    if not 2 <= low <= high <= 16:
        parser.error(f"--concat-words: 2 <= LOW <= HIGH <= 16 words, got {low} {high}")
    for name in (
        "speed_prob",
        "pad_prob",
        "vtlp_prob",
        "lead_prob",
        "stream_prob",
        "concat_prob",
        "zero_share",
        "eq_prob",
        "codec_prob",
    ):
        value = getattr(args, name)
        if value is not None and not 0.0 <= value <= 1.0:
            parser.error(f"--{name.replace('_', '-')}: a probability in 0-1, got {value}")
    if not args.train:
        parser.error("--train is required (on the command line or in --config)")
    if not args.out:
        parser.error("--out is required (on the command line or in --config)")
    return args


def augment_config(args) -> AugmentConfig:
    """The augmentation of the options: default probabilities times --augment-scale, then --speeds, --pad-prob,
    --vtlp-*, --lead-*, --stream-prob, --gap-seconds, --concat-*, --zero-share, --eq-prob, --codec-prob and
    --speed-prob as given (unscaled)."""
    config = AugmentConfig().scaled(args.augment_scale)
    probs = ("pad_prob", "vtlp_prob", "lead_prob", "stream_prob", "concat_prob", "zero_share", "eq_prob", "codec_prob")
    given = {name: getattr(args, name) for name in probs}
    names = ("speeds", "vtlp_factors", "lead_seconds", "gap_seconds", "concat_words")
    ranges = {name: tuple(getattr(args, name)) for name in names}
    config = dataclasses.replace(config, **given, **ranges)
    if args.speed_prob is not None:
        config = dataclasses.replace(config, speed_prob=args.speed_prob)
    if args.rooms:
        try:
            load_rooms(args.rooms)
        except ValueError as exc:
            raise TrainError(f"--rooms {exc}") from None
        config = dataclasses.replace(config, rooms=str(args.rooms))
    return config


def model_config(**fields) -> ModelConfig:
    try:
        return ModelConfig(**fields)
    except ValueError as exc:
        raise TrainError(str(exc)) from None
