"""Is a model's WER on a set really different from another's, or within the noise of the set's few clips?

    python benchmarks/compare_reports.py BASE.tsv NEW.tsv [--system default] [--resamples 2000] [--seed 0]

BASE and NEW are two `benchmarks/accuracy.py --report` files (columns system, set, id, ref, hyp) of the same
clips. For every (system, set) in both, this prints each WER, their difference, and a 95% paired bootstrap
interval of the difference: the set's utterances drawn again with replacement, both models' word errors summed
over the same draw (WER = errors / reference words). "worse" or "better" only where the interval lies wholly
above or below zero; otherwise "within noise". speechocean762's so762_dev, 160 clips and 987 words, moves by a
point or more from a handful of words, and a shipping decision should know that.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path)
import numpy as np

COLUMNS = ["system", "set", "id", "ref", "hyp"]


def read_report(path: Path) -> dict:
    """{(system, set): {id: (ref, hyp)}} of an accuracy.py --report; ValueError when it is not one."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f, delimiter="\t"))
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not text (an accuracy.py --report TSV is)") from None
    if not rows or rows[0] != COLUMNS:
        raise ValueError(f"{path}: not an accuracy.py --report file (its header is not {' '.join(COLUMNS)})")
    out = defaultdict(dict)
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(COLUMNS):
            raise ValueError(f"{path}: line {number} has {len(row)} columns, not {len(COLUMNS)}")
        system, name, uid, ref, hyp = row
        out[system, name][uid] = (ref, hyp)
    return dict(out)


def word_errors(pairs: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Each utterance's word errors (substitutions + deletions + insertions) and reference words."""
    import jiwer

    from asr.model.tokenizer import normalize_text

    errors, words = [], []
    for ref, hyp in pairs:
        ref, hyp = normalize_text(ref), normalize_text(hyp)
        out = jiwer.process_words(ref, hyp)
        errors.append(out.substitutions + out.deletions + out.insertions)
        words.append(out.hits + out.substitutions + out.deletions)
    return np.array(errors, dtype=np.float64), np.array(words, dtype=np.float64)


def paired_bootstrap(base: np.ndarray, new: np.ndarray, words: np.ndarray, resamples: int, seed: int) -> tuple:
    """(WER difference new - base, its 2.5% and 97.5% bootstrap quantiles) over utterances drawn with
    replacement, the same draw for both."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(words), size=(resamples, len(words)))
    total = words[draws].sum(axis=1)
    diffs = (new[draws].sum(axis=1) - base[draws].sum(axis=1)) / np.maximum(total, 1)
    low, high = np.quantile(diffs, [0.025, 0.975])
    return (new.sum() - base.sum()) / words.sum(), low, high


def compare(base: dict, new: dict, systems: list[str] | None, resamples: int, seed: int) -> list[dict]:
    """One record per (system, set) both reports hold (only `systems` where given); ValueError when their clips
    differ."""
    records = []
    for key in sorted(set(base) & set(new)):
        if systems and key[0] not in systems:
            continue
        a, b = base[key], new[key]
        if set(a) != set(b) or any(a[uid][0] != b[uid][0] for uid in a):
            raise ValueError(f"{key[0]} {key[1]}: the two reports hold different clips or references")
        ids = sorted(a)
        base_errors, words = word_errors([a[uid] for uid in ids])
        new_errors, _ = word_errors([b[uid] for uid in ids])
        diff, low, high = paired_bootstrap(base_errors, new_errors, words, resamples, seed)
        verdict = "worse" if low > 0 else "better" if high < 0 else "within noise"
        wer = (base_errors.sum() / words.sum(), new_errors.sum() / words.sum())
        record = {"system": key[0], "set": key[1], "utterances": len(ids), "words": int(words.sum())}
        record |= {"base_wer": wer[0], "new_wer": wer[1], "diff": diff, "low": low, "high": high, "verdict": verdict}
        records.append(record)
    return records


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("base", type=Path, help="the baseline's accuracy.py --report")
    p.add_argument("new", type=Path, help="the new model's accuracy.py --report")
    p.add_argument("--system", action="append", help="only this system (again for more; default: all in both)")
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        if args.resamples < 100:
            raise ValueError(f"--resamples must be at least 100, not {args.resamples}")
        records = compare(read_report(args.base), read_report(args.new), args.system, args.resamples, args.seed)
    except ValueError as exc:
        print(f"compare_reports: error: {exc}", file=sys.stderr)
        return 2
    if not records:
        print("compare_reports: error: the two reports share no system and set", file=sys.stderr)
        return 2
    print("| system | set | clips (words) | base WER | new WER | new - base | 95% interval | verdict |")
    print("|---|---|---|---|---|---|---|---|")
    for r in records:
        cells = [r["system"], r["set"], f"{r['utterances']} ({r['words']})", f"{r['base_wer']:.1%}"]
        cells += [f"{r['new_wer']:.1%}", f"{r['diff']:+.1%}", f"{r['low']:+.1%} .. {r['high']:+.1%}", r["verdict"]]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
