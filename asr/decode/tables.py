"""What the beam decoders of one (LM, lexicon, tokens) share, loaded once per process: the dictionaries, the
lexicon, the KenLM model and the lexicon's trie; and the vocabulary of an ARPA file."""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from flashlight.lib.text.decoder import SmearingMode, Trie, ZeroLM
from flashlight.lib.text.decoder.kenlm import KenLM
from flashlight.lib.text.dictionary import Dictionary, create_word_dict

from asr.lm.arpa import SIL, UNK


def reject(message: str):
    raise ValueError(message)


def load_lexicon(lexicon, letters: set[str]) -> dict[str, list[list[str]]]:
    """A lexicon file or a list of words -> {word: [spelling]}; each spelling a list of tokens."""
    if not isinstance(lexicon, (str, Path)):
        words = list(lexicon)
        bad = [w for w in words if not isinstance(w, str)]
        if bad:
            reject(f"lexicon words must be strings, got {bad[0]!r}")
        return {w: [[*w, SIL]] for w in words if w and set(w) <= letters}
    path = Path(lexicon)
    if not path.is_file():
        reject(f"lexicon file not found: {path}")
    result: dict[str, list[list[str]]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        reject(f"cannot read lexicon {path}: {e}")
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        spelling = fields[1:]
        unknown = [t for t in spelling if t not in letters and t != SIL]
        if not spelling or unknown:
            what = f"unknown token {unknown[0]!r}" if unknown else "no spelling"
            reject(f"bad lexicon {path} line {number}: {what}")
        result.setdefault(fields[0], []).append(spelling)
    if not result:
        reject(f"lexicon {path} has no words")
    return result


class Tables:
    """What every decoder of one (LM, lexicon, tokens) shares: the token and word dictionaries, the lexicon
    ({word: [spelling]}), the KenLM model indexed by the word dictionary and the lexicon's trie smeared with
    the LM's unigram scores (lexicon mode). Loaded once per process: a general-English LM takes seconds and
    hundreds of MB, so a stream must not load its own."""

    def __init__(self, lm, lexicon, fl_tokens: tuple[str, ...], letters: set[str]):
        self.tokens_dict = Dictionary(list(fl_tokens))
        if lexicon is not None:
            self.words = load_lexicon(lexicon, letters)
            self.words.setdefault(UNK, [])
            self.word_dict = create_word_dict(self.words)
        else:
            self.words, self.word_dict = None, self.tokens_dict
        self.lm = None
        if lm is not None:
            try:
                with quiet_stderr():  # KenLM prints its progress bar and advice to the C stderr
                    self.lm = KenLM(str(lm), self.word_dict)
            except Exception as e:  # flashlight raises RuntimeError with KenLM's multi-line message
                reject(f"cannot load language model {lm}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        self.trie, self.entries = None, []
        if lexicon is not None:
            lm = self.lm or ZeroLM()
            start = lm.start(False)
            for word, spellings in self.words.items():  # (spelling ids, word id, unigram score) per spelling
                index = self.word_dict.get_index(word)
                score = lm.score(start, index)[1]
                self.entries += [([self.tokens_dict.get_index(t) for t in sp], index, score) for sp in spellings]
            self.trie = self.trie_with({})

    @functools.cached_property
    def trie_without_lm(self) -> Trie:
        """The lexicon's trie without the LM's scores (decoders with hotwords and an LM weighed 0)."""
        return self.trie_with({}, lm_scores=False)

    def trie_with(self, extra: dict[str, tuple[list[list[str]], int, float]], lm_scores: bool = True) -> Trie:
        """The lexicon's trie, each word with its unigram LM score (0 without `lm_scores`), max-smeared (as
        torchaudio builds it), plus `extra` words {word: (spellings, word id, score)} (hotwords outside the
        lexicon)."""
        trie = Trie(self.tokens_dict.index_size(), self.tokens_dict.get_index(SIL))
        for spelling, index, score in cooperative(self.entries):
            trie.insert(spelling, index, score if lm_scores else 0.0)
        for spellings, index, score in cooperative(extra.values()):
            for spelling in spellings:
                trie.insert([self.tokens_dict.get_index(t) for t in spelling], index, score)
        trie.smear(SmearingMode.MAX)
        return trie


def cooperative(items, every: int = 32):
    """`items`, giving other threads the GIL every `every` of them: a decoder with a large phrase_list takes about
    half a second to build (its own lexicon trie), and a server builds it beside its engine's thread, whose
    streams must not wait for it (a waiting thread otherwise gets the GIL back only after the 5 ms switch interval,
    every time it lets go of it)."""
    for i, item in enumerate(items):
        if i % every == every - 1:
            time.sleep(0)
        yield item


_TABLES: dict = {}
_TABLES_LOCK = threading.Lock()
MAX_SHARED_TABLES = 4  # distinct (LM, lexicon) pairs kept loaded per process


def shared_tables(lm, lexicon, fl_tokens: tuple[str, ...], letters: set[str]) -> Tables:
    """The `Tables` of this LM file (as it is now on disk), lexicon and tokens, loaded on first use."""

    def file_key(path):
        st = Path(path).stat()
        return (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)

    if lexicon is None or isinstance(lexicon, (str, Path)):
        lexicon_key = None if lexicon is None else file_key(lexicon) if Path(lexicon).is_file() else str(lexicon)
    else:
        lexicon = list(lexicon)
        lexicon_key = ("words", tuple(lexicon))
    key = (None if lm is None else file_key(lm), lexicon_key, fl_tokens)
    with _TABLES_LOCK:
        tables = _TABLES.get(key)
        if tables is None:
            tables = Tables(lm, lexicon, fl_tokens, letters)
            if len(_TABLES) >= MAX_SHARED_TABLES:
                _TABLES.pop(next(iter(_TABLES)))  # decoders built from it keep their own reference
            _TABLES[key] = tables
        return tables


@contextmanager
def quiet_stderr():
    """Send file descriptor 2 to /dev/null meanwhile (C libraries' chatter); Python's sys.stderr is untouched."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def arpa_vocabulary(path) -> tuple[str, ...]:
    """The words of an ARPA model's unigram section (for a lexicon that matches the LM); read once per file
    version, since every stream's decoder asks."""
    try:
        st = Path(path).stat()
    except OSError as exc:
        reject(f"cannot read language model {path}: {exc.strerror or exc}")
    return _arpa_vocabulary(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=MAX_SHARED_TABLES)
def _arpa_vocabulary(path: str, size: int, mtime_ns: int) -> tuple[str, ...]:
    words, in_unigrams = [], False
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line.startswith("\\"):
                    if in_unigrams:
                        break
                    in_unigrams = line == "\\1-grams:"
                elif in_unigrams and line:
                    parts = line.split("\t")
                    if len(parts) >= 2 and parts[1] not in ("<s>", "</s>", UNK):
                        words.append(parts[1])
    except (OSError, UnicodeDecodeError) as exc:
        reject(f"cannot read language model {path}: {exc}")
    if not words:
        reject(f"{path}: no unigrams found (an ARPA file is needed to derive the lexicon; pass --lexicon for binaries)")
    return tuple(words)
