"""What `asr adapt` buys per speaker: WER before and after on the speaker's own unseen clips, and on real_en.

    python benchmarks/adapt.py --manifests recipes/default_en/work/manifests            # every speaker, 5 min each
    python benchmarks/adapt.py --manifests DIR --speakers so762_0048 yweweler --minutes 2

Speakers never used in training or tuning: the 8 speakers of so762_dev (20 utterances each: adapt on the first
10, test on the other 10), the FSDD speaker yweweler (fsdd_test: adapt on 50 digits, 5 of each, test on the
other 450), and the two held-out synthetic voices (synth_unseen_voice, synth_unseen_natural: adapt on 50, test
on 50). Each adaptation is `asr adapt MANIFEST --name SPEAKER --minutes M` on its adaptation clips, as a user
would run it (it holds a fifth of them out for early stopping itself), into a temporary XDG_DATA_HOME. WER is
the default decoding (beam search with the general English LM) of the speaker's test clips and of real_en, before
(the starting model) and after (the adapted one; the starting model where `asr adapt` saved nothing). Prints a
table and writes benchmarks/results/adapt.json.

`--all-clips` is a diagnosis, not what users get: each speaker's fine-tuning runs on all its adaptation clips,
nothing held out, and the result is kept whatever it does (is the held-out decision what limits the gain?).

`--set tuning` runs other speakers, on which `asr adapt`'s fine-tuning settings are chosen (so that the
speakers above stay unseen by that choice too): six voice actors of Flight of the Amazon Queen (adapt on 10
lines, test on 20) and the Asterisk prompts' speaker (50 and 50), none of them in the embedded model's training
mix. `--adapt-args "--lr 2e-4 ..."` passes options to `asr adapt`. Results: benchmarks/results/adapt_tuning.json.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path)

import asr
from asr.apps.adapt import held_out_wer as wer
from asr.decode.config import DecodingConfig
from asr.model import user_models
from asr.model.checkpoint import load_checkpoint
from asr.train.manifests import read_manifest, write_manifest

REAL_EN = "real_en"


def speakers(folder: Path) -> dict[str, tuple[list[dict], list[dict]]]:
    """{speaker: (adaptation clips, test clips)} from the recipe's manifests (those present)."""
    out = {}
    if (folder / "so762_dev.jsonl").exists():
        by_speaker: dict[str, list[dict]] = {}
        for e in read_manifest(folder / "so762_dev.jsonl"):
            by_speaker.setdefault(e["speaker"], []).append(e)
        for name, entries in sorted(by_speaker.items()):
            out[name] = (entries[:10], entries[10:])
    if (folder / "fsdd_test.jsonl").exists():
        entries = read_manifest(folder / "fsdd_test.jsonl")
        adapt = [e for e in entries if int(e["id"].rsplit("_", 1)[1]) < 5]  # fsdd_D_yweweler_N: N < 5 of each digit
        out["yweweler"] = (adapt, [e for e in entries if e not in adapt])
    for name in ("synth_unseen_voice", "synth_unseen_natural"):
        if (folder / f"{name}.jsonl").exists():
            entries = read_manifest(folder / f"{name}.jsonl")
            out[name] = (entries[:50], entries[50:])
    return out


TUNING_QUEEN = ("queen_bob", "queen_sparky", "queen_faye", "queen_azura", "queen_witch", "queen_tammy")


def tuning_speakers(folder: Path) -> dict[str, tuple[list[dict], list[dict]]]:
    """{speaker: (adaptation clips, test clips)} of the tuning set (see the module doc)."""
    out = {}
    if (folder / "queen_train.jsonl").exists():
        by_speaker: dict[str, list[dict]] = {}
        for e in read_manifest(folder / "queen_train.jsonl"):
            if e["speaker"] in TUNING_QUEEN and e["duration"] >= 1.0:
                by_speaker.setdefault(e["speaker"], []).append(e)
        for name in TUNING_QUEEN:
            lines = by_speaker.get(name, [])
            if len(lines) >= 30:
                entries = random.Random(name).sample(lines, 30)
                out[name] = (entries[:10], entries[10:])
    if (folder / "asterisk_train.jsonl").exists():
        entries = random.Random(0).sample(read_manifest(folder / "asterisk_train.jsonl"), 100)
        out["asterisk_allison"] = (entries[:50], entries[50:])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifests", type=Path, required=True, help="the recipe's WORK/manifests folder")
    p.add_argument("--speakers", nargs="+", default=None, help="only these (default: all)")
    p.add_argument("--minutes", type=float, default=5.0, help="asr adapt --minutes (default 5)")
    p.add_argument("--model", default=None, help="the model to adapt (default: the embedded one)")
    p.add_argument("--set", choices=("test", "tuning"), default="test", help="the speakers (see above; default test)")
    p.add_argument("--adapt-args", default="", help="more options for `asr adapt` (one string)")
    p.add_argument("--all-clips", action="store_true", help="train on every adaptation clip, keep the result (above)")
    p.add_argument("--out", default=None, help="JSON results (default benchmarks/results/adapt[_tuning].json)")
    args = p.parse_args(argv)
    command = shlex.join(["python", "benchmarks/adapt.py", *(sys.argv[1:] if argv is None else argv)])

    from asr.apps import adapt

    sets = (speakers if args.set == "test" else tuning_speakers)(args.manifests)
    if args.speakers:
        unknown = set(args.speakers) - set(sets)
        if unknown:
            sys.exit(f"error: unknown speakers {sorted(unknown)} (have: {', '.join(sets)})")
        sets = {k: v for k, v in sets.items() if k in args.speakers}
    real_en = read_manifest(args.manifests / f"{REAL_EN}.jsonl")
    decoding = DecodingConfig().resolved()
    start = asr.load_model(args.model, device="cpu")
    real_before = wer(start, real_en, decoding)
    rows = []
    print(
        f"{'speaker':<22}{'clips':>7}{'WER before':>12}{'after':>8}{'rel.':>8}{'minutes':>9}{'real_en after':>15}"
        f"{'held out: before':>18}{'after':>8}"
    )
    with tempfile.TemporaryDirectory(prefix="adapt_bench_") as tmp:
        os.environ["XDG_DATA_HOME"] = str(Path(tmp) / "data")
        for name, (adapt_clips, test_clips) in sets.items():
            manifest = Path(tmp) / f"{name}.jsonl"
            write_manifest(manifest, adapt_clips)
            before = wer(start, test_clips, decoding)
            t0 = time.monotonic()
            argv = [str(manifest), "--name", name.replace(":", "_"), "--minutes", str(args.minutes)]
            argv += shlex.split(args.adapt_args) + (["--model", args.model] if args.model else [])
            options = adapt.build_parser().parse_args(argv)
            adapt.check(options)
            if args.all_clips:
                outcome = None
                model = load_checkpoint(
                    adapt.fine_tune(
                        adapt.start_model_path(args.model),
                        manifest,
                        manifest,
                        Path(tmp) / f"{name}_exp",
                        options,
                    )
                )
            else:
                outcome = adapt.adapt(options, user_models.model_file(options.name))
                model = asr.load_model(outcome.saved, device="cpu") if outcome.saved else start
            seconds = time.monotonic() - t0
            saved = outcome is None or outcome.saved is not None
            after = wer(model, test_clips, decoding)
            real_after = wer(model, real_en, decoding) if saved else real_before
            rows.append(
                {
                    "speaker": name,
                    "adapt_clips": len(adapt_clips),
                    "test_clips": len(test_clips),
                    "wer_before": before,
                    "wer_after": after,
                    "relative_reduction": (before - after) / before if before else 0.0,
                    "seconds": seconds,
                    "saved": saved,
                    "held_out_clips": outcome.held_out_clips if outcome else 0,
                    "held_out_wer_before": outcome.before.wer if outcome else None,
                    "held_out_wer_after": outcome.after.wer if outcome else None,
                    "held_out_cer_before": outcome.before.cer if outcome else None,
                    "held_out_cer_after": outcome.after.cer if outcome else None,
                    "held_out_loss_before": outcome.before.loss if outcome else None,
                    "held_out_loss_after": outcome.after.loss if outcome else None,
                    "held_out_improved": outcome.improved if outcome else None,
                    "real_en_before": real_before,
                    "real_en_after": real_after,
                }
            )
            r = rows[-1]
            print(
                f"{name:<22}{len(adapt_clips):>7}{before:>12.1%}{after:>8.1%}{r['relative_reduction']:>8.1%}"
                f"{seconds / 60:>9.1f}{real_after:>15.1%}"
                + (f"{outcome.before.wer:>18.1%}{outcome.after.wer:>8.1%}" if outcome else f"{'(all clips)':>18}"),
                flush=True,
            )
    mean = sum(r["relative_reduction"] for r in rows) / len(rows) if rows else 0.0
    worst = max((r["real_en_after"] - r["real_en_before"] for r in rows), default=0.0)
    print(f"mean relative WER reduction {mean:.1%}; real_en at most {worst * 100:+.1f} points (was {real_before:.1%})")
    common.write_json(
        args.out,
        "adapt" if args.set == "test" else "adapt_tuning",
        {
            "command": command,
            "machine": common.machine(),
            "model": str(args.model or asr.default_model_path()),
            "minutes": args.minutes,
            "set": args.set,
            "adapt_args": args.adapt_args,
            "all_clips": args.all_clips,
            "decoding": decoding.describe(),
            "rows": rows,
            "mean_relative_reduction": mean,
            "real_en_worst_change": worst,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
