"""`asr adapt`: fit the model to one speaker's voice and microphone, in minutes on a CPU.

    asr adapt --record --name NAME       # read 40 prompts into the microphone (asr.apps.adapt_record), then adapt
    asr adapt DIR --name NAME            # DIR: audio files (wav, flac, ogg, mp3) with a .txt transcript beside each
    asr adapt clips.jsonl --name NAME    # or a manifest (JSONL: audio, text; as `python -m asr.train.manifests` writes)
    asr transcribe --model NAME a.wav    # then any command takes the name

A clip that is silent or clipped is refused with its reason; a fifth of the others (at least one) is held out.
The starting model (the embedded one, or --model) is fine-tuned on the rest for at most --steps (2 per second of
training clips) and at most --minutes (small learning rate, outputs and weights kept near the starting model's,
augmentation and silence padding as in training), and the last step is kept (--select-by loss|wer: the best
held-out one; a fifth of a few dozen clips is too few to pick a step by). --mix F keeps the weights F of the way
from the starting model's to the fine-tuned ones (default 1: the fine-tuned ones). The held-out scores before and
after decide: the WER with the default decoding, an equal WER broken by the CER (same decoding), an equal CER by the
mean CTC loss per clip (a handful of one-word clips moves the WER in steps of 10-20 points, the loss moves with
every change). If the adapted model is better, it is saved as $XDG_DATA_HOME/gru-asr/models/NAME.pt
(`asr.model.user_models`); if not, the command says so, saves nothing, and the starting model stays what you use,
unless --keep saves it anyway. Both print the scores before and after.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from asr.apps.adapt_clips import MIN_CLIPS, collect, split
from asr.model.user_models import MODEL_HELP
from asr.util.errors import UserError

DEFAULT_MINUTES = 5.0
# fine-tuning settings: measured by benchmarks/adapt.py
LEARNING_RATE = 5e-4
WARMUP_STEPS = 10
BATCH_SECONDS = 60.0
PATIENCE = 0  # with --select-by loss|wer: held-out checks worse than the best before stopping (0: never)
FROZEN: tuple[str, ...] = ()  # parameter name patterns not fine-tuned
L2_INIT = 0.05  # weight of the squared distance from the starting weights
KL_INIT = 0.2  # weight of the KL divergence of the outputs from the starting model's
MIX = 1.0  # the saved weights: start + MIX * (fine-tuned - start); 0.7 measured in benchmarks/README.md (W)
MIN_VALID_EVERY = 5  # steps
# the step kept: "last" (the whole budget; a held-out fifth of 10-50 clips is too few to pick a step by, see
# benchmarks/README.md), or the best held-out "loss" (CTC) or "wer" (greedy)
SELECT_BY = "last"
# optimizer steps per second of training clips at most: a budget that grows with the clips (on the tuning
# speakers as good as 100 passes over them, and Asterisk's 112 s done in 2.7 minutes instead of 5)
STEPS_PER_SECOND = 2.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr adapt", description="fit the model to your own voice and microphone")
    p.add_argument(
        "source", nargs="?", metavar="DIR|MANIFEST", help="folder of audio files with .txt beside each, or a manifest"
    )
    p.add_argument("--name", required=True, help="name to save the adapted model as (then: --model NAME)")
    p.add_argument("--record", action="store_true", help="record prompts from the microphone first")
    p.add_argument("--prompts", type=int, default=40, help="with --record: sentences to read (default 40)")
    p.add_argument("--out", default=None, help="with --record: where the clips go (default: beside your models)")
    p.add_argument("--device", default=None, help="with --record: input device, as `asr mic --device`")
    p.add_argument("--samplerate", type=int, default=None, help="with --record: capture rate (default: the device's)")
    p.add_argument("--no-train", action="store_true", help="with --record: only record (adapt later: asr adapt DIR)")
    p.add_argument("--model", default=None, help=f"the model to start from; {MODEL_HELP}")
    p.add_argument(
        "--minutes", type=float, default=DEFAULT_MINUTES, help=f"training time (default {DEFAULT_MINUTES:g})"
    )
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads for training (default 2)")
    p.add_argument("--seed", type=int, default=0, help="picks the held-out clips and the training order")
    p.add_argument("--force", action="store_true", help="replace an existing model of that name")
    p.add_argument(
        "--keep",
        action="store_true",
        help="save the adapted model even if it did no better on the held-out clips (the scores are printed)",
    )
    t = p.add_argument_group("fine-tuning (defaults measured by benchmarks/adapt.py)")
    t.add_argument("--lr", type=float, default=LEARNING_RATE, help=f"peak learning rate (default {LEARNING_RATE:g})")
    t.add_argument(
        "--freeze",
        nargs="+",
        default=list(FROZEN),
        metavar="PATTERN",
        help=f"parameters left as they are, as `asr train --freeze` (default: {' '.join(FROZEN) or 'none'})",
    )
    t.add_argument(
        "--l2-init",
        type=float,
        default=L2_INIT,
        metavar="WEIGHT",
        help=f"pull toward the starting weights, as `asr train --l2-init` (default {L2_INIT:g})",
    )
    t.add_argument(
        "--kl-init",
        type=float,
        default=KL_INIT,
        metavar="WEIGHT",
        help=f"keep the outputs near the starting model's, as `asr train --kl-init` (default {KL_INIT:g})",
    )
    t.add_argument(
        "--mix",
        type=float,
        default=MIX,
        metavar="FRACTION",
        help=f"how far the saved weights go from the starting model's toward the fine-tuned ones (default {MIX:g})",
    )
    t.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"optimizer steps at most, within --minutes (default {STEPS_PER_SECOND:g} per second of training clips)",
    )
    t.add_argument(
        "--select-by",
        choices=("last", "loss", "wer"),
        default=SELECT_BY,
        help=f"the step kept: the last, or the best held-out CTC loss or greedy WER, the later of equal ones"
        f" (default {SELECT_BY})",
    )
    t.add_argument(
        "--patience",
        type=int,
        default=PATIENCE,
        help=f"with --select-by loss|wer: stop after this many held-out checks worse than the best"
        f" (default {PATIENCE}: use all --steps and --minutes)",
    )
    return p


# -- measuring -----------------------------------------------------------------------------------------------
def _decoded(model, entries: list[dict], decoding) -> tuple[list[str], list[str]]:
    """(references, hypotheses) of the readable entries, decoded with `decoding` (an asr.DecodingConfig)."""
    from asr.apps.evaluate import transcribe_entries
    from asr.model.tokenizer import normalize_text

    factory = decoding.beam_factory(model.tokens)
    results = transcribe_entries(model, entries, beam=factory() if factory else None)
    return [normalize_text(e["text"]) for e, _ in results], [h for _, h in results]


def held_out_wer(model, entries: list[dict], decoding) -> float:
    """WER of `model` on the entries, with `decoding` (an asr.DecodingConfig)."""
    import jiwer

    return jiwer.wer(*_decoded(model, entries, decoding))


@dataclass(frozen=True)
class HeldOut:
    """A model's scores on the held-out clips: WER and CER with the default decoding, and the mean CTC loss per
    clip (nats per target letter, as training's validation computes it, on the clips' features)."""

    wer: float
    cer: float
    loss: float


def held_out_scores(model, entries: list[dict], decoding) -> HeldOut:
    """`model`'s HeldOut scores on the entries; WER and CER with `decoding` (an asr.DecodingConfig)."""
    import jiwer
    import torch

    from asr.model.tokenizer import CharTokenizer
    from asr.train.dataset import ASRDataset, collate
    from asr.train.validation import validate

    refs, hyps = _decoded(model, entries, decoding)
    tokenizer = CharTokenizer(model.tokens)
    clips = torch.utils.data.DataLoader(ASRDataset(entries, tokenizer), batch_size=1, collate_fn=collate)
    loss = validate(model, clips, tokenizer, "cpu")["loss"]  # one clip per batch: the mean over clips
    return HeldOut(jiwer.wer(refs, hyps), jiwer.cer(refs, hyps), loss)


def judge(before: HeldOut, after: HeldOut) -> tuple[bool, str]:
    """(whether `after` is better, why): a lower WER; at an equal WER a lower CER; at both equal a lower loss."""
    for name, old, new in (("WER", before.wer, after.wer), ("CER", before.cer, after.cer)):
        if new != old:
            return new < old, f"{name} {'fell' if new < old else 'rose'}"
    if after.loss < before.loss:
        return True, "the same WER and CER, lower loss"
    return False, "the same WER and CER, loss not lower"


def scores_line(before: HeldOut, after: HeldOut) -> str:
    return (
        f"held-out WER {before.wer:.1%} -> {after.wer:.1%}, CER {before.cer:.1%} -> {after.cer:.1%},"
        f" CTC loss per clip {before.loss:.3f} -> {after.loss:.3f}"
    )


class Progress:
    """A bar over the training's steps or time budget, whichever runs out first, whose postfix is the latest
    held-out WER of the training's log.jsonl."""

    def __init__(self, log: Path, seconds: float, steps: int):
        from tqdm import tqdm

        self.log, self.seconds, self.steps, self.stop = log, seconds, steps, threading.Event()
        self.bar = tqdm(total=steps, unit="step", desc="adapting", file=sys.stderr, dynamic_ncols=True)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.started = time.monotonic()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self._update()
        self.bar.close()

    def _run(self):
        while not self.stop.wait(0.5):
            self._update()

    def _update(self):
        wers, step = [], 0
        if self.log.exists():
            for line in self.log.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # being written
                    continue
                step = max(step, record.get("step", 0))
                if "wer" in record:
                    wers.append(record["wer"])
        time_share = (time.monotonic() - self.started) / self.seconds
        self.bar.n = min(self.steps, max(step, round(time_share * self.steps)))
        if wers:
            self.bar.set_postfix_str(f"held-out WER (greedy) {wers[-1]:.1%}, best {min(wers):.1%}", refresh=False)
        self.bar.refresh()


def fine_tune(start: Path, train: Path, held: Path, out: Path, args) -> Path:
    """Train from `start` on the `train` manifest, `held` the held-out one; the bundle kept: the last step's
    (OUT/model.pt) or the best held-out one's (best.pt). At most args.steps (default: 2 per second of clips)."""
    from asr.train import cli as trainer
    from asr.train.manifests import read_manifest

    seconds = sum(e["duration"] for e in read_manifest(train))
    steps_per_pass = max(MIN_VALID_EVERY, int(np.ceil(seconds / BATCH_SECONDS)))
    steps = args.steps or max(1, round(STEPS_PER_SECOND * seconds))

    argv = ["--init", str(start), "--train", str(train), "--valid", str(held), "--out", str(out)]
    argv += ["--lr", str(args.lr), "--warmup-steps", str(WARMUP_STEPS), "--min-lr-ratio", "0.1"]
    argv += [
        "--max-minutes",
        str(args.minutes),
        "--epochs",
        "100000",
        "--max-steps",
        str(steps),
        "--max-batch-seconds",
        str(BATCH_SECONDS),
    ]
    argv += ["--valid-every", str(steps_per_pass), "--patience", str(args.patience), "--checkpoint-every", "0"]
    argv += ["--l2-init", str(args.l2_init), "--kl-init", str(args.kl_init)]
    argv += ["--select-by", args.select_by, "--ties", "later"] if args.select_by != "last" else []
    argv += ["--freeze", *args.freeze] if args.freeze else []
    argv += ["--augment-scale", "0.5", "--pad-prob", "0.3", "--num-workers", "0", "--threads", str(args.threads)]
    argv += ["--seed", str(args.seed), "--device", "cpu", "--quiet"]
    with Progress(out / "log.jsonl", args.minutes * 60, steps):
        code = trainer.main(argv)
    kept = out / ("model.pt" if args.select_by == "last" else "best.pt")
    if code or not kept.exists():
        raise UserError("fine-tuning failed (see the lines above)")
    return kept


def mixed(start: dict, tuned: dict, fraction: float) -> dict:
    """The weights `fraction` of the way from `start` to `tuned` (floating-point tensors; others as tuned)."""
    return {k: start[k] + fraction * (v - start[k]) if v.is_floating_point() else v for k, v in tuned.items()}


def record(args) -> Path:
    """--record: the prompts read into the microphone; the folder they went into."""
    from asr.apps import adapt_record
    from asr.apps.mic import capture_rate, find_device, import_sounddevice
    from asr.model import user_models

    texts = adapt_record.prompts(args.prompts, args.seed)
    out = Path(args.out) if args.out else user_models.models_dir().parent / "recordings" / args.name
    sd = import_sounddevice()
    device = find_device(sd, args.device)
    rate = capture_rate(device, args.samplerate)
    print(f"recording {len(texts)} prompts from {device['name']!r} at {rate} Hz into {out}", file=sys.stderr)
    try:
        adapt_record.record_session(sd, device, rate, texts, out)
    except sd.PortAudioError as exc:
        raise UserError(f"cannot record from {device['name']!r}: {exc}") from None
    return out / "manifest.jsonl"


# -- the command ------------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What one adaptation did: the held-out scores before and after, whether they improved, the model saved."""

    before: HeldOut
    after: HeldOut
    improved: bool  # by WER, at an equal WER by CER, at both equal by loss (`judge`)
    train_clips: int
    held_out_clips: int
    saved: Path | None  # None: the adapted model was no better on the held-out clips (and no --keep)


def check(args) -> None:
    """The options' one-line errors, before anything is recorded or trained."""
    if not args.minutes > 0 or args.threads < 1 or (args.steps is not None and args.steps < 1):
        raise UserError("--minutes must be positive, --threads and --steps at least 1")
    if not args.lr > 0 or min(args.l2_init, args.kl_init, args.patience) < 0:
        raise UserError("--lr must be positive, --l2-init, --kl-init and --patience not negative")
    if not 0 < args.mix <= 1:
        raise UserError("--mix must be in (0, 1]")
    if args.patience and args.select_by == "last":
        raise UserError("--patience stops on a held-out score: give --select-by loss or wer with it")
    if args.record == (args.source is not None):
        raise UserError("give either DIR|MANIFEST (recordings you have) or --record (to make them), not both")


def start_model_path(model: str | None) -> Path:
    """The bundle fine-tuning starts from: --model (a user model's name or a path), or the embedded one."""
    import asr
    from asr.model import user_models

    return user_models.resolve(model) or asr.default_model_path()


def adapt(args, target: Path) -> Outcome:
    """Fine-tune on args.source's clips; save the model as `target` if its held-out scores improved (`judge`), or
    whatever they did with args.keep."""
    import asr
    from asr.decode.config import DecodingConfig
    from asr.model.checkpoint import load_checkpoint, save_checkpoint
    from asr.train.manifests import write_manifest

    start_path = start_model_path(args.model)
    start = asr.load_model(start_path, device="cpu")
    if not hasattr(start, "state_dict"):
        raise UserError(f"--model {args.model}: an exported model cannot be trained; give its .pt bundle")

    entries, refused = collect(args.source)
    for clip, reason in refused:
        print(f"refused {clip}: {reason}" if clip else f"skipped: {reason}", file=sys.stderr)
    if len(entries) < MIN_CLIPS:
        raise UserError(f"{len(entries)} usable clips in {args.source}: at least {MIN_CLIPS} are needed")
    train, held = split(entries, args.seed)
    seconds = sum(e["duration"] for e in train)
    print(
        f"{len(train)} clips ({seconds / 60:.1f} min) to train on, {len(held)} held out; starting from {start_path}",
        file=sys.stderr,
    )
    decoding = DecodingConfig().resolved()
    before = held_out_scores(start, held, decoding)
    with tempfile.TemporaryDirectory(prefix="asr_adapt_") as tmp:
        work = Path(tmp)
        write_manifest(work / "train.jsonl", train)
        write_manifest(work / "held.jsonl", held)
        best = load_checkpoint(fine_tune(start_path, work / "train.jsonl", work / "held.jsonl", work / "exp", args))
        if args.mix < 1:
            best.load_state_dict(mixed(start.state_dict(), best.state_dict(), args.mix))
        after = held_out_scores(best, held, decoding)
        improved, why = judge(before, after)
        outcome = Outcome(before, after, improved, len(train), len(held), None)
        print(scores_line(before, after), file=sys.stderr)
        if not improved and not args.keep:
            print(
                f"the held-out scores did not improve ({why}): nothing saved, keep using {start_path}"
                " (--keep saves the adapted model anyway)",
                file=sys.stderr,
            )
            return outcome
        held_out = {"before": asdict(before), "after": asdict(after), "improved": improved}
        extra = {**best.extra, "adapted_from": str(start_path), "held_out": held_out}
        extra.update(clips={"train": len(train), "held_out": len(held)}, minutes=args.minutes, mix=args.mix)
        save_checkpoint(target, best, best.tokens, extra)
    if improved:
        print(f"better on the held-out clips ({why}); saved {target}", file=sys.stderr)
    else:
        print(f"the held-out scores did not improve ({why}); saved {target} anyway (--keep)", file=sys.stderr)
    print(f"use it with: asr transcribe --model {args.name} FILE (and stream, mic, serve)", file=sys.stderr)
    outcome.saved = target
    return outcome


def main(argv=None) -> int:
    from asr.model import user_models

    args = build_parser().parse_args(argv)
    try:
        target = user_models.model_file(args.name)
    except ValueError as exc:
        raise UserError(f"--name: {exc}") from None
    if target.exists() and not args.force:
        raise UserError(f"a model named {args.name!r} exists ({target}): choose another name, or --force")
    check(args)
    if args.record:
        args.source = record(args)
        if args.no_train:
            return 0
    return 0 if adapt(args, target).saved else 1


if __name__ == "__main__":
    from asr.apps.cli import main as cli_main

    sys.exit(cli_main(["adapt", *sys.argv[1:]]))
