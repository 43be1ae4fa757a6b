"""Word (or character) n-gram language models in ARPA format, and flashlight lexicons, in pure Python.

`build_arpa` estimates an interpolated Kneser-Ney model (one discount per order, as lmplz without
--discount_fallback tuning) so that recipes and tests can make a KenLM-loadable model without lmplz:

    p(w | h) = max(a(h w) - D, 0) / a(h .) + gamma(h) p(w | h')      gamma(h) = D N1+(h .) / a(h .)

where a() are raw counts at the highest order and continuation counts N1+(. g) below it (raw counts for
n-grams that start with <s>, which have no left context), h' is h without its first word, and the unigram
distribution is interpolated with the uniform one over the vocabulary (which includes </s> and <unk>).
In the ARPA file each seen n-gram carries log10 p(w | h) and each context its log10 gamma(h) as back-off
weight, which is exact for an interpolated model.

    python -m asr.lm corpus.txt lm.arpa --order 3           # one normalised sentence per line
    python -m asr.lm corpus.txt chars.arpa --order 6 --chars  # character LM ("t h e | c a t") for lexicon-free beams
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from asr.util.atomic import atomic_open

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
SIL = "|"  # flashlight's word separator token (our " ")
NEVER = -99.0  # log10 probability written for <s>, which is never predicted (ARPA convention)
MIN_DISCOUNT, MAX_DISCOUNT = 0.1, 0.9  # clamp for the Kneser-Ney discount on tiny or degenerate corpora
# weight of a word LM in beam search, tuned on so762_dev for the embedded model: the default English LM at beam
# 64 (benchmarks/lm_decoding.py), and the recipe's own 3-gram at beam 16, both gave 1.5
DEFAULT_LM_WEIGHT = 1.5


def char_sentence(text: str) -> str:
    """'the cat' -> 't h e | c a t': a sentence for a character LM over our tokens."""
    return f" {SIL} ".join(" ".join(word) for word in text.split())


def _discount(counts: Iterable[int]) -> float:
    """Ney's estimate D = n1 / (n1 + 2 n2) from counts of counts, clamped."""
    of = Counter(counts)
    n1, n2 = of[1], of[2]
    d = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5
    return min(max(d, MIN_DISCOUNT), MAX_DISCOUNT)


def estimate(sentences: Iterable[str], order: int = 3) -> list[dict[tuple[str, ...], tuple[float, float | None]]]:
    """Interpolated Kneser-Ney: for each order n, {n-gram: (log10 prob, log10 back-off or None)}."""
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    raw: list[Counter] = [Counter() for _ in range(order + 1)]  # raw[n][ngram], n = 1..order
    for sentence in sentences:
        words = [BOS] + sentence.split() + [EOS]
        if len(words) == 2:
            continue
        for n in range(1, order + 1):
            for i in range(len(words) - n + 1):
                raw[n][tuple(words[i : i + n])] += 1
    if not raw[1]:
        raise ValueError("no text to estimate a language model from")

    adjusted: list[dict] = [{} for _ in range(order + 1)]  # a(g) at each order
    adjusted[order] = dict(raw[order])
    for n in range(1, order):
        left = Counter(g[1:] for g in raw[n + 1])  # N1+(. g): distinct left extensions
        adjusted[n] = {g: (c if g[0] == BOS else left[g]) for g, c in raw[n].items()}
    adjusted[1].pop((BOS,), None)  # <s> is never predicted

    vocab = {g[0] for g in raw[1]} - {BOS} | {EOS, UNK}
    probs: list[dict] = [{} for _ in range(order + 1)]  # natural probabilities
    gammas: list[dict] = [{} for _ in range(order + 1)]  # gamma(h) for contexts h of order n - 1
    for n in range(1, order + 1):
        d = _discount(adjusted[n].values())
        total, types = defaultdict(int), defaultdict(int)
        for g, a in adjusted[n].items():
            total[g[:-1]] += a
            types[g[:-1]] += 1
        for h in total:
            gammas[n][h] = d * types[h] / total[h]
        grams = dict(adjusted[n])
        if n == 1:
            grams.setdefault((UNK,), 0)
        for g, a in grams.items():
            h = g[:-1]
            lower = 1 / len(vocab) if n == 1 else probs[n - 1][g[1:]]
            probs[n][g] = max(a - d, 0) / total[h] + gammas[n][h] * lower

    table: list[dict] = [{} for _ in range(order + 1)]
    for n in range(1, order + 1):
        for g, p in probs[n].items():
            bow = gammas[n + 1].get(g) if n < order else None
            table[n][g] = (math.log10(p), None if bow is None else math.log10(bow))
    bos_bow = gammas[2].get((BOS,)) if order > 1 else None
    table[1][(BOS,)] = (NEVER, None if bos_bow is None else math.log10(bos_bow))
    return table[1:]


def build_arpa(sentences: Iterable[str], path, order: int = 3) -> Path:
    """Estimate an interpolated Kneser-Ney n-gram model from whitespace-tokenised sentences; write ARPA."""
    return write_arpa(estimate(sentences, order), path)


def write_arpa(table: list[dict[tuple[str, ...], tuple[float, float | None]]], path) -> Path:
    """ARPA text of {n-gram: (log10 p, log10 bow or None)} per order, written atomically (a temporary file
    renamed into place). A unigram model is written as a bigram model without bigrams (back-off weights 0, the
    same probabilities): KenLM loads nothing below order 2."""
    path = Path(path)
    if len(table) == 1:
        table = [{g: (logp, 0.0 if bow is None else bow) for g, (logp, bow) in table[0].items()}, {}]
    with atomic_open(path) as f:
        f.write("\\data\\\n" + "".join(f"ngram {n}={len(grams)}\n" for n, grams in enumerate(table, 1)))
        for n, grams in enumerate(table, 1):
            f.write(f"\n\\{n}-grams:\n")
            for g in sorted(grams):
                logp, bow = grams[g]
                f.write(f"{logp:.6f}\t{' '.join(g)}" + ("" if bow is None else f"\t{bow:.6f}") + "\n")
        f.write("\n\\end\\\n")
    return path


def build_lexicon(words: Iterable[str], path, tokens: list[str] | None = None) -> Path:
    """Write a flashlight lexicon: 'word<TAB>w o r d |' per line, first occurrence order, no duplicates.

    Our space token is flashlight's "|", ending each spelling. With `tokens`, words holding a character
    outside them are left out. Sentence markers and <unk> are never written.
    """
    letters = None if tokens is None else set(tokens) - {" "}
    seen, lines = set(), []
    for word in words:
        if word in seen or word in (BOS, EOS, UNK) or not word or any(c.isspace() for c in word):
            continue
        if letters is not None and not set(word) <= letters:
            continue
        seen.add(word)
        lines.append(f"{word}\t{' '.join(word)} {SIL}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asr.lm", description="Build an ARPA n-gram LM from text.")
    parser.add_argument("text", help="text file, one normalised sentence per line")
    parser.add_argument("out", help="output .arpa file")
    parser.add_argument("--order", type=int, default=3, help="n-gram order (default 3)")
    parser.add_argument("--chars", action="store_true", help="character LM ('t h e | c a t') for lexicon-free decoding")
    parser.add_argument("--lexicon", help="also write a flashlight lexicon of the words to this file")
    args = parser.parse_args(argv)
    try:
        lines = Path(args.text).read_text(encoding="utf-8").splitlines()
        sentences = [char_sentence(line) if args.chars else line for line in lines]
        build_arpa(sentences, args.out, args.order)
        if args.lexicon:
            build_lexicon((w for line in lines for w in line.split()), args.lexicon)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
