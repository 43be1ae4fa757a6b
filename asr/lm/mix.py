"""Linear interpolation of two back-off n-gram LMs (ARPA) into one ARPA model, as SRILM's static `-mix-lm`.

    p(w | h) = weight p_a(w | h) + (1 - weight) p_b(w | h)

for every n-gram seen by either model (each model's probability with its own back-off; a word one model
lacks has probability 0 in it, so that each model's distribution stays one over the union of the words).
The mixed model's back-off weight of each context h then makes its distribution sum to one:

    bow(h) = (1 - sum_{w: hw seen} p(w | h)) / (1 - sum_{w: hw seen} p(w | h'))

with h' the context without its first word, taken from the mixed model itself. For seen n-grams the mixture
is exact; for an unseen one it is the mixed model's back-off, not the exact mixture (as SRILM's static mix).

    python -m asr.lm.mix default own3.arpa mixed.arpa --weight 0.8     # "default": the English LM's ARPA cache
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict

from asr.lm.arpa import BOS, NEVER, write_arpa

Table = list[dict[tuple[str, ...], tuple[float, float | None]]]  # per order: {n-gram: (log10 p, log10 bow)}
MIN_MASS = 1e-6  # floor of the left-over probability mass when a back-off weight is computed


class ArpaError(ValueError):
    pass


def read_arpa(path, progress=None) -> Table:
    """Every n-gram of an ARPA file with its log10 probability and back-off weight; `progress(lines)`."""
    tables: Table = []
    counts: list[int] = []
    section = 0
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith("\\"):
                if line == "\\end\\":
                    break
                if line.endswith("-grams:"):
                    section = int(line[1:].split("-")[0])
                    if section != len(tables) + 1:
                        raise ArpaError(f"{path}:{number}: {line} out of order")
                    tables.append({})
                continue
            if section == 0:
                if line.startswith("ngram "):
                    counts.append(int(line.split("=")[1]))
                continue
            parts = line.split()
            if len(parts) not in (section + 1, section + 2):
                raise ArpaError(f"{path}:{number}: {section}-gram line with {len(parts)} fields")
            bow = float(parts[section + 1]) if len(parts) == section + 2 else None
            tables[-1][tuple(parts[1 : section + 1])] = (float(parts[0]), bow)
            if progress and number % 100_000 == 0:
                progress(100_000)
    if not tables or [len(t) for t in tables] != counts[: len(tables)] or len(counts) != len(tables):
        raise ArpaError(f"{path}: header counts {counts} do not match the n-grams read {[len(t) for t in tables]}")
    return tables


def prob(tables: Table, gram: tuple[str, ...]) -> float:
    """p(w | h) (not log) of gram = h + (w,) in a back-off model; 0 for a word it has never seen."""
    weight = 0.0  # log10 of the back-off weights collected on the way down
    while gram:
        n = len(gram)
        if n <= len(tables):
            hit = tables[n - 1].get(gram)
            if hit is not None:
                return 10.0 ** (hit[0] + weight)
            if n > 1:
                context = tables[n - 2].get(gram[:-1])
                if context is not None and context[1] is not None:
                    weight += context[1]
        gram = gram[1:]
    return 0.0


def mix(a: Table, b: Table, weight: float, progress=None) -> Table:
    """The interpolated model (see the module's docstring); `progress(n)` as n-grams are done."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be within 0-1, got {weight}")
    order = max(len(a), len(b))
    out: Table = []
    for n in range(1, order + 1):
        grams = set(a[n - 1] if n <= len(a) else ()) | set(b[n - 1] if n <= len(b) else ())
        table = {}
        for gram in grams:
            if gram == (BOS,):
                table[gram] = (NEVER, None)
                continue
            p = weight * prob(a, gram) + (1.0 - weight) * prob(b, gram)
            table[gram] = (math.log10(p) if p > 0 else NEVER, None)
        out.append(table)
        if progress:
            progress(len(grams))
    for n in range(1, order):  # back-off weights of the contexts of order n, from the mixed model
        children: dict[tuple[str, ...], list[tuple[str, ...]]] = defaultdict(list)
        for gram in out[n]:
            children[gram[:-1]].append(gram)
        table = out[n - 1]
        for context in table:
            seen = children.get(context)
            if not seen:
                continue
            high = sum(10.0 ** out[n][g][0] for g in seen)
            low = sum(prob(out, g[1:]) for g in seen)
            bow = max(1.0 - high, MIN_MASS) / max(1.0 - low, MIN_MASS)
            table[context] = (table[context][0], math.log10(bow))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asr.lm.mix", description=__doc__.splitlines()[0])
    parser.add_argument("a", help='first ARPA model ("default": the English LM, converted on first use)')
    parser.add_argument("b", help="second ARPA model")
    parser.add_argument("out", help="the mixed ARPA model")
    parser.add_argument("--weight", type=float, default=0.5, help="weight of the first model (0-1, default 0.5)")
    args = parser.parse_args(argv)
    from tqdm import tqdm

    try:
        if not 0.0 <= args.weight <= 1.0:
            raise ValueError(f"--weight must be within 0-1, got {args.weight}")
        paths = []
        for name in (args.a, args.b):
            if name == "default":
                from asr.lm.default import arpa_path

                name = arpa_path()
            paths.append(name)
        with tqdm(desc="reading", unit=" lines", unit_scale=True) as bar:
            a, b = (read_arpa(p, bar.update) for p in paths)
        with tqdm(desc="mixing", unit=" n-grams", unit_scale=True) as bar:
            mixed = mix(a, b, args.weight, bar.update)
        write_arpa(mixed, args.out)
    except (ArpaError, OSError, ValueError, UnicodeDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: " + ", ".join(f"{len(t)} {n}-grams" for n, t in enumerate(mixed, 1)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
