"""Read a CMU Sphinx trie language model (`.lm.bin`, as pocketsphinx ships) and write it as ARPA.

pocketsphinx 5.1.1's own writers are broken (`sphinx_lm_convert` stops after the unigrams, the Python
`NGramModel.write` writes wrong probabilities), while its binary format is small and documented by its
reader (`ngram_model_trie.c`, `lm_trie.c`, `lm_trie_quant.c`, `bitarr.c`), which this module follows:

    "Trie Language Model"  uint8 order  uint32 counts[order]          (little-endian throughout)
    int32 (quantizer type, unused)  float32 bins: per middle order 65,536 probs then 65,536 back-offs;
                                    then 65,536 probs of the highest order
    unigrams[counts[0] + 1]: float32 prob, float32 back-off, uint32 first child   (the last is a sentinel)
    bit-packed n-gram arrays: each middle order, then the highest order
    int32 k  k bytes of NUL-terminated words (the unigram ids' spellings)

The trie is reversed, as KenLM's: a unigram is the predicted word w, its children the previous word, and so
on, so the node reached by w <- h1 <- h2 is the ARPA n-gram "h2 h1 w". Each packed entry (LSB first) holds
the word id (bits enough for counts[0]), a middle order's 32 quantized bits (16 back-off bits, then 16 prob
bits, each an index into its bins) and the first child (bits enough for the next order's count; the
sentinel after the last entry ends the last range), or the highest order's 16 prob bits. Probabilities are
in log base 1.0001 (sphinx's logmath), so log10 p = value * log10(1.0001).

Middle n-grams that the original ARPA lacked but a higher one needed were added by the writer with
p = p(lower) + back-off and no back-off of their own; they are exact, so they are written like the others.

    python -m asr.lm.sphinx en-us.lm.bin en-us.arpa
"""

from __future__ import annotations

import argparse
import math
import struct
import sys
from pathlib import Path

import numpy as np

from asr.util.atomic import atomic_open

HEADER = b"Trie Language Model"
LOG10_BASE = math.log10(1.0001)  # sphinx's logmath base
QUANT_BITS = 16  # bits per quantized prob or back-off
BINS = 1 << QUANT_BITS


class SphinxLMError(ValueError):
    """The file is not a readable sphinx trie language model."""


def _bits(max_value: int) -> int:
    return max_value.bit_length()  # bitarr_required_bits: 0 for 0


def _read_fields(mem: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """`width`-bit unsigned fields at the given bit offsets of a little-endian bit array (LSB first)."""
    byte = starts >> 3
    window = np.zeros(len(starts), np.uint64)
    for k in range(8):  # 8 bytes hold any field of <= 57 bits after a shift of <= 7
        window |= mem[byte + k].astype(np.uint64) << np.uint64(8 * k)
    return ((window >> (starts & 7).astype(np.uint64)) & np.uint64((1 << width) - 1)).astype(np.int64)


class SphinxLM:
    """The n-grams of a sphinx trie model, as arrays: `words[n]` (count, n) word ids in ARPA order, `logp[n]`
    and `backoff[n]` (log10; backoff None at the highest order), for n = 1..order; `vocab` the spellings."""

    def __init__(self, path):
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise SphinxLMError(f"cannot read {path}: {e.strerror or e}") from None
        try:
            self._parse(data)
        except (struct.error, IndexError, ValueError) as e:
            if isinstance(e, SphinxLMError):
                raise SphinxLMError(f"{path}: {e}") from None
            raise SphinxLMError(f"{path}: truncated or corrupt sphinx trie model ({e})") from None

    def _parse(self, data: bytes) -> None:
        if not data.startswith(HEADER):
            raise SphinxLMError("not a sphinx trie language model (no 'Trie Language Model' header)")
        off = len(HEADER)
        order = data[off]
        if not 2 <= order <= 6:
            raise SphinxLMError(f"unsupported order {order}")
        counts = list(struct.unpack_from(f"<{order}I", data, off + 1))
        off += 1 + 4 * order + 4  # counts, then the unused quantizer type
        n_bins = ((order - 2) * 2 + 1) * BINS
        bins = np.frombuffer(data, "<f4", n_bins, off).astype(np.float64)
        off += 4 * n_bins
        unigram_type = np.dtype([("prob", "<f4"), ("bo", "<f4"), ("next", "<u4")])
        unigrams = np.frombuffer(data, unigram_type, counts[0] + 1, off)
        off += unigram_type.itemsize * (counts[0] + 1)
        mem = np.frombuffer(data, np.uint8, offset=off)
        word_bits = _bits(counts[0])

        self.order, self.counts = order, counts
        self.words = [None, np.arange(counts[0], dtype=np.int64)[:, None]]
        self.logp = [None, unigrams["prob"][:-1].astype(np.float64) * LOG10_BASE]
        self.backoff = [None, unigrams["bo"][:-1].astype(np.float64) * LOG10_BASE]
        # parent -> children ranges; reversed paths (predicted word first) of the current order's nodes
        firsts = unigrams["next"].astype(np.int64)
        paths = self.words[1]
        byte = 0
        for n in range(2, order + 1):
            middle = n < order
            next_bits = _bits(counts[n]) if middle else 0
            quant = 2 * QUANT_BITS if middle else QUANT_BITS
            total = word_bits + quant + next_bits
            size = ((1 + counts[n - 1]) * total + 7) // 8 + 8  # the header's count sizes the array
            level = mem[byte : byte + size]
            if len(level) < size:
                raise SphinxLMError(f"truncated at the {n}-grams")
            byte += size
            # the entries reachable from the lower order: the writer may count a few more than it links
            entries = int(firsts[-1])
            if firsts[0] != 0 or np.any(np.diff(firsts) < 0) or entries > counts[n - 1]:
                raise SphinxLMError(f"the {n - 1}-grams' child ranges are out of order or past the {n}-grams")
            parents = np.repeat(np.arange(len(firsts) - 1), np.diff(firsts))
            start = np.arange(entries, dtype=np.int64) * total
            word = _read_fields(level, start, word_bits)
            if entries and word.max() >= counts[0]:
                raise SphinxLMError(f"a {n}-gram has word id {word.max()} >= {counts[0]}")
            table = (n - 2) * 2
            if middle:
                bo_code = _read_fields(level, start + word_bits, QUANT_BITS)
                prob_code = _read_fields(level, start + word_bits + QUANT_BITS, QUANT_BITS)
                sentinel = np.arange(entries + 1, dtype=np.int64) * total + word_bits + quant
                firsts = _read_fields(level, sentinel, next_bits) if next_bits else np.zeros(entries + 1, np.int64)
                backoff = bins[(table + 1) * BINS + bo_code] * LOG10_BASE
            else:
                prob_code = _read_fields(level, start + word_bits, QUANT_BITS)
                backoff = None
            paths = np.concatenate([paths[parents], word[:, None]], axis=1)
            self.words.append(paths[:, ::-1])  # ARPA order: history first, predicted word last
            self.logp.append(bins[table * BINS + prob_code] * LOG10_BASE)
            self.backoff.append(backoff)
            counts[n - 1] = entries
        strings = data[off + byte :]
        (k,) = struct.unpack_from("<i", strings)
        vocab = strings[4 : 4 + k].split(b"\0")[: counts[0]]
        if len(vocab) != counts[0]:
            raise SphinxLMError(f"{len(vocab)} word strings for {counts[0]} unigrams")
        self.vocab = [w.decode("utf-8", "replace") for w in vocab]

    def write_arpa(self, path, progress=None) -> Path:
        """Write the model as ARPA (atomically: a temporary file renamed into place); `progress(lines)` per block."""
        path = Path(path)
        vocab = np.array(self.vocab, dtype=object)
        with atomic_open(path) as f:
            f.write("\\data\\\n" + "".join(f"ngram {n}={self.counts[n - 1]}\n" for n in range(1, self.order + 1)))
            for n in range(1, self.order + 1):
                f.write(f"\n\\{n}-grams:\n")
                block = 200_000
                for lo in range(0, self.counts[n - 1], block):
                    hi = min(lo + block, self.counts[n - 1])
                    text = vocab[self.words[n][lo:hi, 0]]
                    for k in range(1, n):
                        text = text + " " + vocab[self.words[n][lo:hi, k]]
                    logp = np.char.mod("%.6f", np.maximum(self.logp[n][lo:hi], -99.0))
                    lines = logp.astype(object) + "\t" + text
                    if self.backoff[n] is not None:
                        lines = lines + "\t" + np.char.mod("%.6f", self.backoff[n][lo:hi]).astype(object)
                    f.write("\n".join(lines) + "\n")
                    if progress:
                        progress(hi - lo)
            f.write("\n\\end\\\n")
        return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asr.lm.sphinx", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="sphinx trie model (.lm.bin)")
    parser.add_argument("out", help="output .arpa file")
    args = parser.parse_args(argv)
    try:
        lm = SphinxLM(args.model)
        lm.write_arpa(args.out)
    except (SphinxLMError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: " + ", ".join(f"{c} {n}-grams" for n, c in enumerate(lm.counts, 1)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
