"""Closed grammars: the phrases an application expects (Vosk's grammar), parsed and compiled into a word automaton.

A grammar is a list of phrases, as Vosk takes it (`["yes", "no", "call mom", "[unk]"]`): an utterance is exactly
one of them. "[unk]" (a phrase of its own) lets the recognizer answer "[unk]" for speech that fits no phrase
well (`asr.decode.grammar_decoder`). Phrases are normalised as transcripts are (`normalize_text`: lower case,
punctuation dropped, "7" -> "seven"). A small pattern language, used only where a phrase has parentheses:

    (yes | no)                 alternatives
    (please)?                  optional;  (...)* none or more;  (...)+ one or more
    (zero | one | two){4,10}   4 to 10 of them;  {4}: exactly 4;  {4,}: at least 4

so "(zero|one|two|three|four|five|six|seven|eight|nine){4,10}" is a PIN of 4-10 digits and "call (mom | dad)
(please)?" four phrases. Quantifiers follow a ")" only: "how are you?" is a plain phrase.

This module needs no torch (the server checks a client's grammar with it): phrases -> `Grammar`, an NFA over
word ids built once, determinised lazily (only the states a decoding reaches) and shared by every decoder of
that grammar in a process.
"""

from __future__ import annotations

import functools
import json
import re
import time
import unicodedata
from pathlib import Path

from asr.model.tokenizer import normalize_text

UNK_WORD = "[unk]"  # Vosk's filler: speech outside the grammar
# "[unk]" when the best phrase is this many nats per letter below the model's best path (asr.decode.grammar_decoder);
# chosen on the Speech Commands speakers set aside for it (benchmarks/grammar.py --set tuning): 83.5% of the words
# outside a grammar of the 10 keywords came out [unk], 47.5% of the keywords right (58.8% without [unk])
DEFAULT_UNK_THRESHOLD = 2.0
MAX_REPEAT = 100  # largest bound in {m,n}
MAX_STATES = 2_000_000  # NFA states a grammar may compile to ("grammar too large" beyond)
MAX_NESTING = 50  # parentheses
MAX_EXPANSION = 1000  # a phrase that stands for at most this many word sequences is searched as those sequences
_QUANTIFIER = re.compile(r"\s*(\?|\*|\+|\{\s*(\d+)\s*(,\s*(\d*)\s*)?\})")
_FOREIGN = re.compile(r"[^\W\d_a-z]")  # a letter outside a-z (after accents are taken off)
_PLAIN = re.compile(r"[a-z]+(?:'[a-z]+)*(?: [a-z]+(?:'[a-z]+)*)*")  # text normalize_text leaves as it is
_UNK_INSIDE = re.compile(r"\[\s*unk\s*\]", re.IGNORECASE)


class GrammarError(ValueError):
    """A grammar that cannot be used; the message is one line."""


def _short(text, limit: int = 60) -> str:
    text = str(text)
    return repr(text if len(text) <= limit else text[:limit] + "...")


def load_grammar(spec: str) -> tuple[str, ...]:
    """`--grammar FILE|JSON`: a file holding a JSON list of phrases (or one phrase per line; lines starting with #
    are comments), or the JSON list itself -> the phrases."""
    path = Path(spec)
    if not path.is_file():
        try:
            value = json.loads(spec)
        except ValueError:
            raise GrammarError(f"grammar {_short(spec)} is neither a file nor a JSON list of phrases") from None
        return check_phrases(value)
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise GrammarError(f"cannot read grammar {path}: {e}") from None
    try:
        return check_phrases(json.loads(content))
    except json.JSONDecodeError:
        lines = [line.strip() for line in content.splitlines()]
        return check_phrases([line for line in lines if line and not line.startswith("#")])


def parse_json_grammar(text) -> tuple[str, ...]:
    """Vosk's grammar argument (a JSON list of phrases as a string) -> the phrases."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        raise GrammarError(f"grammar must be a JSON list of phrases, not {_short(text)}") from None
    return check_phrases(value)


def check_phrases(phrases) -> tuple[str, ...]:
    """The phrases as a tuple, each checked (one-line GrammarError): a non-empty list of strings that compile."""
    if isinstance(phrases, (str, bytes)) or not isinstance(phrases, (list, tuple)):
        raise GrammarError(f"grammar must be a list of phrases, not {type(phrases).__name__}")
    if not phrases:
        raise GrammarError("grammar has no phrases")
    for i, p in enumerate(phrases, 1):
        if not isinstance(p, str):
            raise GrammarError(f"grammar phrase {i} is not a string: {_short(p)}")
    phrases = tuple(phrases)
    compile_grammar(phrases)
    return phrases


# -- parsing --------------------------------------------------------------------------------------


def _words(text: str, phrase: str) -> list[str]:
    """Plain text of a phrase -> its normalised words; letters the tokens cannot spell are an error."""
    plain = text.strip().lower()
    if _PLAIN.fullmatch(plain):
        return plain.split()
    if _UNK_INSIDE.search(text):
        raise GrammarError(f"grammar phrase {_short(phrase)}: [unk] must be a phrase of its own")
    if not text.isascii():
        decomposed = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).lower()
        bad = _FOREIGN.search(decomposed)
        if bad:
            raise GrammarError(f"grammar phrase {_short(phrase)} has {bad.group()!r}, which the model cannot spell")
    return normalize_text(text).split()


def _lex(phrase: str) -> list[tuple]:
    """A phrase -> tokens: ("(",), (")", lo, hi) with its quantifier (1, 1 without), ("|",), ("w", word)."""
    if not any(c in phrase for c in "()|"):
        return [("w", w) for w in _words(phrase, phrase)]
    out, text, i = [], [], 0
    while i < len(phrase):
        c = phrase[i]
        if c not in "()|":
            text.append(c)
            i += 1
            continue
        out += [("w", w) for w in _words("".join(text), phrase)]
        text = []
        i += 1
        if c != ")":
            out.append((c,))
            continue
        lo = hi = 1
        m = _QUANTIFIER.match(phrase, i)
        if m:
            op = m.group(1)
            if op == "?":
                lo, hi = 0, 1
            elif op == "*":
                lo, hi = 0, None
            elif op == "+":
                lo, hi = 1, None
            else:
                lo = int(m.group(2))
                hi = lo if m.group(3) is None else (int(m.group(4)) if m.group(4) else None)
                if (hi is not None and hi < lo) or max(lo, hi or 0) > MAX_REPEAT or hi == 0:
                    bounds = f"want 0 <= m <= n, 1 <= n <= {MAX_REPEAT}"
                    raise GrammarError(
                        f"grammar phrase {_short(phrase)} has a bad repeat {op.replace(' ', '')} ({bounds})"
                    )
            i = m.end()
        out.append((")", lo, hi))
    out += [("w", w) for w in _words("".join(text), phrase)]
    return out


def _parse(phrase: str):
    """A phrase -> its tree: ("alt", [seq...]), ("seq", [item...]), ("word", w), ("rep", node, lo, hi)."""
    tokens, pos = _lex(phrase), 0

    def alternatives(depth: int):
        nonlocal pos
        if depth > MAX_NESTING:
            raise GrammarError(f"grammar phrase {_short(phrase)} nests parentheses too deep")
        seqs = [sequence(depth)]
        while pos < len(tokens) and tokens[pos][0] == "|":
            pos += 1
            seqs.append(sequence(depth))
        return seqs[0] if len(seqs) == 1 else ("alt", seqs)

    def sequence(depth: int):
        nonlocal pos
        items = []
        while pos < len(tokens) and tokens[pos][0] in ("w", "("):
            token = tokens[pos]
            pos += 1
            if token[0] == "w":
                items.append(("word", token[1]))
                continue
            inner = alternatives(depth + 1)
            if pos >= len(tokens) or tokens[pos][0] != ")":
                raise GrammarError(f"grammar phrase {_short(phrase)} has an unclosed '('")
            _, lo, hi = tokens[pos]
            pos += 1
            items.append(inner if (lo, hi) == (1, 1) else ("rep", inner, lo, hi))
        return ("seq", items)

    tree = alternatives(0)
    if pos < len(tokens):
        raise GrammarError(f"grammar phrase {_short(phrase)} has an unmatched ')'")
    return tree


def _nullable(node) -> bool:
    kind = node[0]
    if kind == "word":
        return False
    if kind == "seq":
        return all(_nullable(n) for n in node[1])
    if kind == "alt":
        return any(_nullable(n) for n in node[1])
    return node[2] == 0 or _nullable(node[1])


def _expand(node, limit: int = MAX_EXPANSION) -> list[tuple[str, ...]] | None:
    """The word sequences a phrase's tree stands for, or None where they are more than `limit` (or endless)."""
    kind = node[0]
    if kind == "word":
        return [(node[1],)]
    if kind == "alt":
        out = []
        for alternative in node[1]:
            more = _expand(alternative, limit)
            if more is None or len(out) + len(more) > limit:
                return None
            out += more
        return out
    if kind == "seq":
        out = [()]
        for item in node[1]:
            more = _expand(item, limit)
            if more is None or len(out) * len(more) > limit:
                return None
            out = [a + b for a in out for b in more]
        return out
    _, body, lo, hi = node
    if hi is None:
        return None
    return _expand(("alt", [("seq", [body] * k) for k in range(lo, hi + 1)]), limit)


def _tree_words(node):
    if node[0] == "word":
        yield node[1]
    elif node[0] in ("alt", "seq"):
        for child in node[1]:
            yield from _tree_words(child)
    else:
        yield from _tree_words(node[1])


# -- the automaton --------------------------------------------------------------------------------


class Grammar:
    """Phrases compiled into an NFA over word ids (Thompson's construction), determinised on demand.

    `words`: the vocabulary (word id = index); `unk`: whether "[unk]" is a phrase. A DFA state is the frozenset
    of the NFA states with word arcs that an utterance's words so far reach (with `final` among them where the
    utterance may end there); `start`, `step(state, word)` (None: the word cannot come next), `accepting`.

    `units`: what a decoder spells, as tuples of words: each phrase that stands for at most MAX_EXPANSION word
    sequences is those sequences, whole (so a search inside one is always inside an allowed phrase: a
    word-by-word search fills its beam with words the grammar does not allow there, found out only at their
    ends); the words of the other phrases (repeats, long patterns) one by one. `step_unit` walks a unit.
    """

    def __init__(self, phrases: tuple[str, ...]):
        self.phrases = phrases
        self.words: list[str] = []
        self._ids: dict[str, int] = {}
        self.eps: list[list[int]] = []  # epsilon arcs per NFA state
        self.arcs: list[list[tuple[int, int]]] = []  # (word id, target) per NFA state
        self.unk = False
        units: dict[tuple[str, ...], None] = {}
        start, self.final = self._new(), self._new()
        for number, phrase in enumerate(phrases, 1):
            if number % 64 == 0:
                time.sleep(0)  # a server compiles a client's grammar beside its engine's thread: let it run
            if phrase.strip().lower() == UNK_WORD:
                self.unk = True
                continue
            tree = _parse(phrase)
            if tree == ("seq", []):
                raise GrammarError(f"grammar phrase {number} ({_short(phrase)}) has no words")
            if _nullable(tree):
                raise GrammarError(f"grammar phrase {number} ({_short(phrase)}) can be empty")
            self._build(tree, start, self.final)
            expanded = _expand(tree)
            units.update(dict.fromkeys(expanded) if expanded else dict.fromkeys((w,) for w in _tree_words(tree)))
        if not self.words:
            raise GrammarError("grammar has no phrases besides [unk]")
        self.units = list(units)
        self._moves: dict[frozenset, dict[int, frozenset | None]] = {}
        self._unit_moves: dict[tuple[frozenset, int], frozenset | None] = {}
        self.start = self._close([start])

    def _new(self) -> int:
        if len(self.eps) >= MAX_STATES:
            raise GrammarError(f"grammar too large (more than {MAX_STATES:,} states; fewer or shorter repeats)")
        self.eps.append([])
        self.arcs.append([])
        return len(self.eps) - 1

    def _word_id(self, word: str) -> int:
        if word not in self._ids:
            self._ids[word] = len(self.words)
            self.words.append(word)
        return self._ids[word]

    def _build(self, node, s: int, e: int) -> None:
        """Connect NFA state s to e by `node`."""
        kind = node[0]
        if kind == "word":
            self.arcs[s].append((self._word_id(node[1]), e))
        elif kind == "alt":
            for alternative in node[1]:
                self._build(alternative, s, e)
        elif kind == "seq":
            items = node[1]
            if not items:
                self.eps[s].append(e)
            for i, item in enumerate(items):
                nxt = e if i == len(items) - 1 else self._new()
                self._build(item, s, nxt)
                s = nxt
        else:  # ("rep", body, lo, hi)
            _, body, lo, hi = node
            for _ in range(lo):
                nxt = self._new()
                self._build(body, s, nxt)
                s = nxt
            if hi is None:  # a loop through a fresh state: m -body-> m2 -> m, and out
                m, m2 = self._new(), self._new()
                self.eps[s].append(m)
                self._build(body, m, m2)
                self.eps[m2].append(m)
                self.eps[m].append(e)
                return
            for _ in range(hi - lo):  # x{0,2} = (x (x)?)?: each optional copy may end the repeat
                self.eps[s].append(e)
                nxt = self._new()
                self._build(body, s, nxt)
                s = nxt
            self.eps[s].append(e)

    def _close(self, states) -> frozenset:
        seen, todo = set(states), list(states)
        while todo:
            for t in self.eps[todo.pop()]:
                if t not in seen:
                    seen.add(t)
                    todo.append(t)
        return frozenset(s for s in seen if self.arcs[s] or s == self.final)

    def step(self, state: frozenset, word: int) -> frozenset | None:
        moves = self._moves.get(state)
        if moves is None:
            targets: dict[int, list[int]] = {}
            for s in state:
                for w, t in self.arcs[s]:
                    targets.setdefault(w, []).append(t)
            moves = {w: ts for w, ts in targets.items()}
            self._moves[state] = moves
        nxt = moves.get(word)
        if isinstance(nxt, list):  # closed on first use
            nxt = moves[word] = self._close(nxt)
        return nxt

    def word_id(self, word: str) -> int | None:
        return self._ids.get(word)

    def step_unit(self, state: frozenset, unit: int) -> frozenset | None:
        """The state after unit number `unit` (its words one by one), or None."""
        key = (state, unit)
        if key not in self._unit_moves:
            for word in self.units[unit]:
                state = self.step(state, self._ids[word])
                if state is None:
                    break
            self._unit_moves[key] = state
        return self._unit_moves[key]

    def accepting(self, state: frozenset) -> bool:
        return self.final in state

    def __repr__(self) -> str:
        unk = ", [unk]" if self.unk else ""
        return f"Grammar({len(self.phrases)} phrases, {len(self.words)} words, {len(self.units)} units{unk})"


@functools.lru_cache(maxsize=16)
def compile_grammar(phrases: tuple[str, ...]) -> Grammar:
    """The `Grammar` of these phrases, compiled once per process (every stream with the same grammar shares it)."""
    return Grammar(phrases)
