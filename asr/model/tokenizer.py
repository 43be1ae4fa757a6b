"""Characters <-> token ids, and English text normalisation.

Token 0 is the CTC blank. The default vocabulary is blank, space, apostrophe
and a-z; text is normalised to it (lower case, punctuation dropped, digits
spelled out) before it is encoded.
"""

from __future__ import annotations

import re
import unicodedata

BLANK = 0  # CTC blank token id
DEFAULT_TOKENS = ["<blank>", " ", "'"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = [(10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred")]


def number_to_words(n: int) -> str:
    """Spell out a non-negative integer: 1984 -> 'one thousand nine hundred eighty four'."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    for value, name in _SCALES:
        if n >= value:
            high, rest = divmod(n, value)
            words = number_to_words(high) + " " + name
            return words if rest == 0 else words + " " + number_to_words(rest)
    raise AssertionError("unreachable")


def _spell_number(match: re.Match) -> str:
    digits = match.group(0)
    if len(digits) > 1 and digits.startswith("0") or len(digits) > 12:
        return " ".join(_ONES[int(d)] for d in digits)  # codes and long strings: digit by digit
    return " " + number_to_words(int(digits)) + " "


def normalize_text(text: str) -> str:
    """Normalise English text to the default vocabulary.

    'Hello, World! It's 42.' -> "hello world it's forty two"
    """
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.lower().replace("\u2019", "'").replace("`", "'").replace("&", " and ").replace("%", " percent ")
    text = re.sub(r"(\d),(\d{3})", r"\1\2", text)  # 1,000 -> 1000
    text = re.sub(r"\d+", _spell_number, text)
    text = re.sub(r"[^a-z' ]+", " ", text)
    text = re.sub(r"(^|\s)'+|'+(\s|$)", " ", text)  # quotes, not apostrophes
    return " ".join(text.split())


class CharTokenizer:
    """Maps text to token ids and back. `tokens[0]` must be the blank."""

    def __init__(self, tokens: list[str] | None = None):
        self.tokens = list(tokens or DEFAULT_TOKENS)
        if not self.tokens or self.tokens[BLANK] != "<blank>":
            raise ValueError("token 0 must be '<blank>'")
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        """Normalised text -> ids; characters outside the vocabulary are dropped."""
        return [self.index[c] for c in normalize_text(text) if c in self.index]

    def decode(self, ids) -> str:
        """Ids (blanks and repeats already removed) -> text."""
        return "".join(self.tokens[i] for i in ids if i != BLANK)
