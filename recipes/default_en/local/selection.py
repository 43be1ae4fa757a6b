#!/usr/bin/env python3
"""The one selection score (issue 31): a model bundle's greedy CER on each selection set, and their mean.

    python recipes/default_en/local/selection.py WORK/manifests --model MODEL [--json score.json] [--report utt.tsv]
        [--baseline round4.json] [--streamed]
    python recipes/default_en/local/selection.py WORK/manifests --print-sets   # the sets' paths, for asr train --valid

The selection sets look like our users and were never trained on: so762_dev (8 speechocean762 speakers, non-native
adults and children), cv_dev (Common Voice: many microphones and accents), ls_pseudo_dev (20 native LibriSpeech
speakers, Whisper-made labels) and sc_dev (20 Speech Commands speakers, one word each), all from stage 3, and the
held-out game characters' slices where a stage has built them (GAME_SETS; none does yet). Every set weighs the
same in the mean, whatever its size. The score is the CER, not the WER: round 4's greedy WER on cv_dev and
ls_pseudo_dev is 93-97%, where a model can get much better or worse without the WER showing it, so a mean of WERs
moved only with sc_dev's one-word clips (round 5's first probe: 90.96% -> 83.68% from sc_dev alone, while
so762_dev got worse). And so that one set's gain cannot hide another's loss, --baseline (another model's --json)
adds the verdict a new model ships on: a better mean and no set worse. Checkpoints, mixes and LM weights are
chosen on this score (`asr train --valid $(selection.py M --print-sets) --select-on mean --select-by cer` is its
training-time twin: the same sets and mean, without the tail padding that `asr eval` decodes after each clip).
real_en and fsdd's yweweler stay evaluation only: they are not here.

Decoding and scoring are `asr eval`'s (asr.apps.evaluate): greedy by default; `--decoding beam --lm-weight W` scores
an LM weight on the same sets; --streamed decodes each clip as the product does (`asr transcribe`: endpoints, the
model state restarted after each and in quiet silence before speech), which whole-clip decoding does not see: round
5's first candidate lost 1.7 WER points on so762_dev that way (default decoding), where round 4 lost none. A
--baseline must have been decoded the same way. Prints one line per set and the mean; --json writes them, --report
every utterance.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import asr
from asr.apps.evaluate import BATCH_SECONDS, describe_decoding, score_manifest, write_report
from asr.decode.config import DecodingConfig
from asr.model.checkpoint import CheckpointError
from asr.model.user_models import MODEL_HELP
from asr.train.manifests import DataError, read_manifest

SETS = ("so762_dev", "cv_dev", "ls_pseudo_dev", "sc_dev")  # stage 3's; each must be there
GAME_SETS = ("queen_dev", "sky_dev")  # held-out game characters, used where a stage has built them


def selection_sets(manifests: Path) -> list[Path]:
    """The selection sets' manifests in MANIFESTS; DataError when one of SETS is missing."""
    missing = [name for name in SETS if not (manifests / f"{name}.jsonl").is_file()]
    if missing:
        raise DataError(f"{manifests}: no {', '.join(missing)} (recipes/default_en/prepare.sh stage 3 builds them)")
    names = SETS + tuple(name for name in GAME_SETS if (manifests / f"{name}.jsonl").is_file())
    return [manifests / f"{name}.jsonl" for name in names]


def read_baseline(path: Path, names: list[str], decoding: str) -> dict:
    """Another model's --json record, checked to hold the mean CER and each of NAMES' CER, decoded as `decoding`
    describes; ValueError if not."""
    try:
        baseline = json.loads(path.read_text())
        cers = [baseline["mean"]["cer"]] + [baseline["sets"][name]["cer"] for name in names]
    except OSError as exc:
        raise ValueError(f"--baseline {path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"--baseline {path}: not a selection.py --json record of these sets ({exc!r})") from None
    if not all(isinstance(cer, (int, float)) for cer in cers):
        raise ValueError(f"--baseline {path}: its CERs are not numbers")
    if baseline.get("decoding", decoding) != decoding:
        raise ValueError(f"--baseline {path}: decoded '{baseline['decoding']}', not '{decoding}' as asked here")
    return baseline


def verdict(scores: dict, mean: dict, baseline: dict) -> str:
    """Each set's CER against the baseline's (a --json record), and whether the model ships: a lower mean CER and
    no set's CER higher."""
    lines, worse = [], []
    for name, score in scores.items():
        before = baseline["sets"][name]["cer"]
        lines.append(f"  {name}: CER {before:.2%} -> {score['cer']:.2%} ({score['cer'] - before:+.2%})")
        if score["cer"] > before:
            worse.append(name)
    before = baseline["mean"]["cer"]
    lines.append(f"  mean: CER {before:.2%} -> {mean['cer']:.2%} ({mean['cer'] - before:+.2%})")
    if mean["cer"] >= before:
        ships = "no: the mean CER is not lower"
    elif worse:
        ships = f"no: worse on {', '.join(worse)}"
    else:
        ships = "yes: a lower mean CER and no set worse"
    return "\n".join([f"against {baseline.get('model', 'the baseline')}:", *lines, f"ships: {ships}"])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("manifests", type=Path, help="the recipe's manifest folder (WORK/manifests)")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--print-sets", action="store_true", help="print the selection sets' paths, one a line, and stop")
    p.add_argument("--json", type=Path, help="write the per-set figures and their mean here")
    p.add_argument("--report", type=Path, help="write every utterance's reference, hypothesis and errors here (TSV)")
    p.add_argument(
        "--baseline", type=Path, help="another model's --json: print each set's change and whether this model ships"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-seconds", type=float, default=BATCH_SECONDS, help="padded audio seconds per batch")
    p.add_argument("--streamed", action="store_true", help="decode each clip as asr transcribe does (endpoints)")
    DecodingConfig.add_arguments(p, hotwords=False)
    p.set_defaults(decoding="greedy")  # the selection score is greedy: the model alone
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        paths = selection_sets(args.manifests)
        if args.print_sets:
            print("\n".join(map(str, paths)))
            return 0
        decoding = DecodingConfig.from_args(args)
        # an LM in the user's cache written as ~/...: records compare on any machine
        described = describe_decoding(decoding, args.streamed).replace(str(Path.home()), "~")
        baseline = read_baseline(args.baseline, [path.stem for path in paths], described) if args.baseline else None
        sets = [(path, read_manifest(path)) for path in paths]
        model = asr.load_model(args.model, device=args.device)
        factory = decoding.beam_factory(model.tokens)
        beam = factory() if factory else None
    except (CheckpointError, DataError, ValueError, FileNotFoundError) as exc:
        print(f"selection: error: {exc}", file=sys.stderr)
        return 2
    print(f"decoding: {described}", file=sys.stderr)
    scores, rows = {}, []
    streamed = decoding if args.streamed else None
    for path, entries in sets:
        score = score_manifest(model, str(path), entries, args.device, args.batch_seconds, beam, streamed)
        if not score["utterances"]:
            print(f"selection: error: {path}: no usable utterances", file=sys.stderr)
            return 1
        rows += score.pop("rows")
        scores[path.stem] = score
        print(f"{path.stem}: WER {score['wer']:.2%} CER {score['cer']:.2%} ({score['utterances']} utterances)")
    mean = {key: sum(s[key] for s in scores.values()) / len(scores) for key in ("wer", "cer")}
    figures = f"{mean['cer']:.2%} (mean WER {mean['wer']:.2%})"
    print(f"selection score (mean {decoding.method} CER of {len(scores)} sets): {figures}")
    if baseline:
        print(verdict(scores, mean, baseline))
    if args.json:
        record = {"model": args.model or "default", "decoding": described, "sets": scores}
        args.json.write_text(json.dumps({**record, "mean": mean}, indent=1) + "\n")
    if args.report:
        write_report(args.report, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
