"""CTC beam search over log-prob chunks: flashlight's decoder (torchaudio.models.decoder), KenLM, lexicon, hotwords.

Legend: U = output frames, V = vocabulary. Token 0 is the blank, token " " separates words; flashlight calls
our " " its silence token "|".

Two modes:
- lexicon (`lexicon=` a file or a list of words): only lexicon words are produced (unknown ones too when
  `unk_score` > -inf); `lm` is a word n-gram model (ARPA or KenLM binary). Each spelling ends in "|", so a
  last word is completed by one "|" frame that `end()` appends.
- lexicon-free (`lexicon=None`): any token sequence; `lm` is None or a character model over our tokens
  (`python -m asr.lm --chars`).

Hotwords are boosted by wrapping the LM (`_HotwordLM`): each unit (a word, or a letter in lexicon-free
mode) that extends a hotword phrase earns its share of the phrase's weight, and a partial match that
breaks off, or is left open at the end, gives its bonus back. A phrase's weight is the bonus per word, in
the units of the log-probs (natural log), so a weight of 2 outweighs an acoustic odds ratio of e^2 per word.

Scores: acoustic ln-probs + lm_weight x KenLM log10 probs + word_score per word (+ hotword bonuses).
`confidence` is the posterior of a text among all hypotheses left in the beam at the end: a softmax over
their scores, hypotheses with the same text summed. The n-best texts are distinct and their confidences
sum to at most 1.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from flashlight.lib.text.decoder import (
    CriterionType,
    LexiconDecoder,
    LexiconDecoderOptions,
    LexiconFreeDecoder,
    LexiconFreeDecoderOptions,
    SmearingMode,
    Trie,
    ZeroLM,
)
from flashlight.lib.text.decoder.kenlm import KenLM
from flashlight.lib.text.dictionary import Dictionary, create_word_dict
from torchaudio.models.decoder import CTCDecoderLM, CTCDecoderLMState

from asr.decoding import FRAME_SHIFT
from asr.lm import DEFAULT_LM_WEIGHT, SIL, UNK
from asr.tokenizer import BLANK

IMPOSSIBLE = -1e30  # log-prob of the tokens other than "|" in the frame `end()` appends in lexicon mode
CONFIDENCE_MARGIN = 15.0  # hypotheses this far (ln) below the best are left out of n-best and confidences
MAX_HISTORY = 5  # words of history that tell LM states apart (KenLM models up to 6-grams)


class _State(CTCDecoderLMState):
    """An LM state of `_HotwordLM`: its key, and the wrapped KenLM state."""

    def __init__(self, key, base_state):
        super().__init__()
        self.key, self.base_state = key, base_state


class _HotwordLM(CTCDecoderLM):
    """KenLM (or no LM) x lm_weight, plus hotword bonuses. Units are word ids (lexicon) or token ids.

    States are canonical per (last MAX_HISTORY units, open hotword matches), so the decoder merges
    hypotheses that KenLM could not tell apart. A match is (phrase, units matched so far); the bonus of the
    open matches is a potential: score += gain of a completed phrase + potential(after) - potential(before).
    In lexicon-free mode phrases are letters framed by the `boundary` token "|", which also stands for the
    utterance's start and end, so "cat" is not matched inside "bobcat" or "cats".
    """

    def __init__(
        self,
        base,
        lm_weight: float,
        phrases: list[tuple[list[int], list[float]]],
        boundary: int | None,
        base_units: int | None = None,
        base_unk: int = 0,
    ):
        """`base_units`: units with ids from this one up are unknown to `base` (hotwords added to a shared
        lexicon) and are scored as its `base_unk`."""
        super().__init__()
        self.base, self.lm_weight, self.boundary = base, lm_weight, boundary
        self.base_units, self.base_unk = base_units, base_unk
        self.phrases = [(units, [sum(bonuses[:k]) for k in range(len(bonuses) + 1)]) for units, bonuses in phrases]
        self.starting: dict[int, list[int]] = {}  # unit -> the phrases that begin with it (a scan would cost
        for p, (units, _) in enumerate(self.phrases):  # every score call O(phrases): 1,000 in a phrase_list)
            self.starting.setdefault(units[0], []).append(p)
        self.states: dict = {}
        self.cache: dict = {}

    def _state(self, key, base_state) -> _State:
        if key not in self.states:
            self.states[key] = _State(key, base_state)
        return self.states[key]

    def _potential(self, matches) -> float:
        return max((self.phrases[p][1][k] for p, k in matches), default=0.0)

    def _advance(self, matches: frozenset, unit: int) -> tuple[frozenset, float]:
        """Open matches after `unit`, and the bonus it earns (or gives back)."""
        advanced = [(p, k + 1) for p, k in matches if self.phrases[p][0][k] == unit]
        advanced += [(p, 1) for p in self.starting.get(unit, ())]
        done = [self.phrases[p][1][-1] for p, k in advanced if k == len(self.phrases[p][0])]
        still_open = frozenset((p, k) for p, k in advanced if k < len(self.phrases[p][0]))
        return still_open, max(done, default=0.0) + self._potential(still_open) - self._potential(matches)

    def start(self, start_with_nothing: bool):
        self.states, self.cache = {}, {}  # a new utterance
        matches = frozenset()
        if self.boundary is not None:  # the utterance starts at a word boundary
            matches, _ = self._advance(matches, self.boundary)
        return self._state(((), matches), self.base.start(start_with_nothing) if self.base else None)

    def score(self, state: _State, unit: int):
        if (state.key, unit) in self.cache:
            return self.cache[state.key, unit]
        history, matches = state.key
        base_state, lm_score = None, 0.0
        if self.base is not None:
            known = self.base_units is None or unit < self.base_units
            base_state, lm_score = self.base.score(state.base_state, unit if known else self.base_unk)
        matches, bonus = self._advance(matches, unit)
        result = (
            self._state(((history + (unit,))[-MAX_HISTORY:], matches), base_state),
            self.lm_weight * lm_score + bonus,
        )
        self.cache[state.key, unit] = result
        return result

    def finish(self, state: _State):
        lm_score = self.base.finish(state.base_state)[1] if self.base is not None else 0.0
        matches, bonus = state.key[1], 0.0
        if self.boundary is not None:  # and ends at one
            matches, bonus = self._advance(matches, self.boundary)
        return state, self.lm_weight * lm_score + bonus - self._potential(matches)


def _fail(message: str):
    raise ValueError(message)


def _load_lexicon(lexicon, letters: set[str]) -> dict[str, list[list[str]]]:
    """A lexicon file or a list of words -> {word: [spelling]}; each spelling a list of tokens."""
    if not isinstance(lexicon, (str, Path)):
        words = list(lexicon)
        bad = [w for w in words if not isinstance(w, str)]
        if bad:
            _fail(f"lexicon words must be strings, got {bad[0]!r}")
        return {w: [[*w, SIL]] for w in words if w and set(w) <= letters}
    path = Path(lexicon)
    if not path.is_file():
        _fail(f"lexicon file not found: {path}")
    result: dict[str, list[list[str]]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        _fail(f"cannot read lexicon {path}: {e}")
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        spelling = fields[1:]
        unknown = [t for t in spelling if t not in letters and t != SIL]
        if not spelling or unknown:
            what = f"unknown token {unknown[0]!r}" if unknown else "no spelling"
            _fail(f"bad lexicon {path} line {number}: {what}")
        result.setdefault(fields[0], []).append(spelling)
    if not result:
        _fail(f"lexicon {path} has no words")
    return result


def _parse_hotwords(hotwords, default_weight: float) -> list[tuple[list[str], float]]:
    """[phrase | (phrase, weight)] -> [(words, weight)]."""
    result = []
    for item in hotwords or []:
        phrase, weight = (item, default_weight) if isinstance(item, str) else item
        words = str(phrase).split()
        if not words or not math.isfinite(float(weight)):
            _fail(f"bad hotword {item!r}: want a phrase or (phrase, finite weight)")
        result.append((words, float(weight)))
    return result


class _Tables:
    """What every decoder of one (LM, lexicon, tokens) shares: the token and word dictionaries, the lexicon
    ({word: [spelling]}), the KenLM model indexed by the word dictionary and the lexicon's trie smeared with
    the LM's unigram scores (lexicon mode). Loaded once per process: a general-English LM takes seconds and
    hundreds of MB, so a stream must not load its own."""

    def __init__(self, lm, lexicon, fl_tokens: tuple[str, ...], letters: set[str]):
        self.tokens_dict = Dictionary(list(fl_tokens))
        if lexicon is not None:
            self.words = _load_lexicon(lexicon, letters)
            self.words.setdefault(UNK, [])
            self.word_dict = create_word_dict(self.words)
        else:
            self.words, self.word_dict = None, self.tokens_dict
        self.lm = None
        if lm is not None:
            try:
                with _quiet_stderr():  # KenLM prints its progress bar and advice to the C stderr
                    self.lm = KenLM(str(lm), self.word_dict)
            except Exception as e:  # flashlight raises RuntimeError with KenLM's multi-line message
                _fail(f"cannot load language model {lm}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        self.trie, self.entries = None, []
        if lexicon is not None:
            lm = self.lm or ZeroLM()
            start = lm.start(False)
            for word, spellings in self.words.items():  # (spelling ids, word id, unigram score) per spelling
                index = self.word_dict.get_index(word)
                score = lm.score(start, index)[1]
                self.entries += [([self.tokens_dict.get_index(t) for t in sp], index, score) for sp in spellings]
            self.trie = self.trie_with({})

    def trie_with(self, extra: dict[str, tuple[list[list[str]], int, float]]) -> Trie:
        """The lexicon's trie, each word with its unigram LM score, max-smeared (as torchaudio builds it), plus
        `extra` words {word: (spellings, word id, score)} (hotwords outside the lexicon)."""
        trie = Trie(self.tokens_dict.index_size(), self.tokens_dict.get_index(SIL))
        for spelling, index, score in cooperative(self.entries):
            trie.insert(spelling, index, score)
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


def _shared_tables(lm, lexicon, fl_tokens: tuple[str, ...], letters: set[str]) -> _Tables:
    """The `_Tables` of this LM file (as it is now on disk), lexicon and tokens, loaded on first use."""

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
            tables = _Tables(lm, lexicon, fl_tokens, letters)
            if len(_TABLES) >= MAX_SHARED_TABLES:
                _TABLES.pop(next(iter(_TABLES)))  # decoders built from it keep their own reference
            _TABLES[key] = tables
        return tables


@contextmanager
def _quiet_stderr():
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


class BeamSearchDecoder:
    """CTC beam search for one stream: `decode(log_probs)`, or `begin()`, `step(chunk)`..., `best()`, `end()`.

    tokens:     our token list (token 0 the blank, " " the word separator)
    beam_size:  hypotheses kept per frame
    lm:         KenLM model file (.arpa or binary): words with a lexicon, characters without
    lexicon:    flashlight lexicon file or list of words; None for lexicon-free decoding
    lm_weight:  weight of the LM's log10 probabilities
    word_score: added per word (lexicon mode)
    unk_score:  score of a word outside the lexicon (-inf: never)
    hotwords:   [phrase or (phrase, weight)]; weight (default `hotword_weight`) is the bonus per word
    nbest:      how many distinct texts `end()` returns
    beam_threshold: hypotheses more than this below the best are pruned
    token_beam: the most tokens a hypothesis is extended by per frame (the likeliest; default all)
    """

    def __init__(
        self,
        tokens: list[str],
        beam_size: int = 16,
        lm: str | Path | None = None,
        lexicon: str | Path | list[str] | None = None,
        lm_weight: float = DEFAULT_LM_WEIGHT,
        word_score: float = 0.0,
        unk_score: float = float("-inf"),
        hotwords: list | None = None,
        nbest: int = 1,
        beam_threshold: float = 25.0,
        token_beam: int | None = None,
        hotword_weight: float = 2.0,
        frame_shift: float = FRAME_SHIFT,
        **unknown,
    ):
        if unknown:
            _fail(f"unknown beam search option(s): {', '.join(sorted(unknown))}")
        if beam_size < 1 or nbest < 1 or beam_threshold <= 0 or (token_beam is not None and token_beam < 1):
            _fail("beam_size, nbest and token_beam must be >= 1 and beam_threshold > 0")
        if " " not in tokens or SIL in tokens or tokens[BLANK] != "<blank>":
            _fail(f"tokens need '<blank>' first and ' ' as word separator, and no {SIL!r}")
        self.tokens, self.nbest, self.frame_shift = list(tokens), nbest, frame_shift
        self._chars = ["" if i == BLANK else t for i, t in enumerate(tokens)]  # a token's text in a hypothesis
        single = all(len(t) == 1 and t.isascii() for t in self._chars[1:]) and len(tokens) <= 256
        self._byte_table = bytes(ord(c) if c else 0 for c in self._chars).ljust(256, b"\0") if single else None
        self.space = tokens.index(" ")
        fl_tokens = [SIL if t == " " else t for t in tokens]
        if lm is not None and not Path(lm).is_file():
            _fail(f"language model file not found: {lm}")
        phrases = _parse_hotwords(hotwords, hotword_weight)
        letters = set(tokens) - {" ", tokens[BLANK]}

        self.lexicon_mode = lexicon is not None
        tables = _shared_tables(lm, lexicon, tuple(fl_tokens), letters)
        self._tables = tables  # kept alive with the decoder: flashlight holds raw pointers into them
        word_dict, words, base, trie = tables.word_dict, tables.words, tables.lm, tables.trie
        extra = {}
        if self.lexicon_mode:
            for phrase, _ in phrases:  # hotwords must be spellable; those outside the lexicon are added
                for w in phrase:
                    if not set(w) <= letters:
                        _fail(f"hotword {w!r} has characters outside the tokens")
                    if w not in words:
                        extra.setdefault(w, [[*w, SIL]])
            if extra:  # the shared words keep their ids (the shared LM's index); the added ones follow
                words = {**words, **extra}
                shared = tables.word_dict
                word_dict = Dictionary([shared.get_entry(i) for i in cooperative(range(shared.index_size()))] + list(extra))
                word_dict.set_default_index(shared.get_index(UNK))
            units = [([word_dict.get_index(w) for w in phrase], [weight] * len(phrase)) for phrase, weight in phrases]
        else:
            units = [self._letter_units(phrase, weight, fl_tokens) for phrase, weight in phrases]

        if units:
            boundary = None if self.lexicon_mode else self.space
            unk = tables.word_dict.get_index(UNK) if self.lexicon_mode else 0
            model = _HotwordLM(base, lm_weight, units, boundary, tables.word_dict.index_size(), unk)
            weight = 1.0
            if extra:  # hotwords outside the lexicon need a trie of this decoder's own
                start = model.start(False)
                trie = tables.trie_with(
                    {
                        w: (sp, word_dict.get_index(w), model.score(start, word_dict.get_index(w))[1])
                        for w, sp in cooperative(extra.items())
                    }
                )
        else:
            model, weight = (base, lm_weight) if base is not None else (ZeroLM(), 0.0)
        self._lm, self._trie = model, trie  # flashlight keeps references only; Python must keep them alive

        common = dict(
            beam_size=beam_size,
            beam_size_token=min(token_beam or len(tokens), len(tokens)),
            beam_threshold=beam_threshold,
            lm_weight=weight,
            sil_score=0.0,
            log_add=False,
            criterion_type=CriterionType.CTC,
        )
        sil, blank = fl_tokens.index(SIL), BLANK
        if self.lexicon_mode:
            options = LexiconDecoderOptions(word_score=word_score, unk_score=unk_score, **common)
            unk = word_dict.get_index(UNK)
            self._decoder = LexiconDecoder(options, trie, model, sil, blank, unk, [], False)
        else:
            options = LexiconFreeDecoderOptions(**common)
            self._decoder = LexiconFreeDecoder(options, model, sil, blank, [])
        self._chunks: list[torch.Tensor] = []
        self._started = False

    @staticmethod
    def _letter_units(phrase: list[str], weight: float, fl_tokens: list[str]) -> tuple[list[int], list[float]]:
        """Lexicon-free hotword: "|" + letters + "|" per word as token ids; a letter earns weight / len(word)."""
        sil = fl_tokens.index(SIL)
        units, bonuses = [sil], [0.0]
        for w in phrase:
            for c in w:
                if c not in fl_tokens:
                    _fail(f"hotword {w!r} has characters outside the tokens")
                units.append(fl_tokens.index(c))
                bonuses.append(weight / len(w))
            units.append(sil)
            bonuses.append(0.0)
        return units, bonuses

    # streaming API

    def begin(self) -> None:
        """Start an utterance."""
        self._decoder.decode_begin()
        self._chunks = []
        self._started = True

    def step(self, log_probs: torch.Tensor) -> None:
        """Decode the next U frames: log_probs (U, V), natural-log CTC posteriors."""
        if log_probs.ndim != 2 or log_probs.shape[1] != len(self.tokens):
            _fail(f"log_probs must be (U, {len(self.tokens)}), got {tuple(log_probs.shape)}")
        if not self._started:
            self.begin()
        if log_probs.shape[0] == 0:
            return
        emissions = log_probs.detach().to("cpu", torch.float32).contiguous()
        self._chunks.append(emissions)
        self._decoder.decode_step(emissions.data_ptr(), emissions.shape[0], emissions.shape[1])

    def best(self) -> str:
        """Text of the best hypothesis so far, for partial results.

        In lexicon mode flashlight's best path stops at the last completed word; the letters of the word
        in progress are read greedily from the frames after it.
        """
        if not self._started or not self._chunks:
            return ""
        path = list(self._decoder.get_best_hypothesis(0).tokens)  # entry 0 is the start state
        path += torch.cat(self._chunks)[len(path) - 1 :].argmax(-1).tolist()
        return self._text(self._collapse(path))

    def end(self, time_offset: float = 0.0) -> list[dict]:
        """Finish the utterance: n-best [{text, confidence, words: [{word, start, end, conf}]}], best first.

        Times are in seconds from the first frame given to `begin`, plus `time_offset`.
        """
        if not self._started:
            self.begin()
        log_probs = torch.cat(self._chunks) if self._chunks else torch.zeros(0, len(self.tokens))
        if self.lexicon_mode:  # one "|" frame completes the last word
            last = torch.full((1, len(self.tokens)), IMPOSSIBLE)
            last[0, self.space] = 0.0
            self._decoder.decode_step(last.data_ptr(), 1, len(self.tokens))
        self._decoder.decode_end()
        hyps = self._decoder.get_all_final_hypothesis()
        self._started = False
        self._chunks = []

        by_text: dict[str, tuple[float, list]] = {}  # text -> (log-sum-exp of scores, path of the best)
        ranked_hyps = sorted(hyps, key=lambda h: -h.score)
        floor = ranked_hyps[0].score - CONFIDENCE_MARGIN if ranked_hyps else 0.0
        frames = len(log_probs)
        for hyp in ranked_hyps:
            if hyp.score < floor and len(by_text) >= self.nbest:
                break  # the rest's share of the posterior is below e^-margin each: not worth reading their paths
            path = hyp.tokens
            text = self._path_text(path, frames)
            if text in by_text:
                score, first = by_text[text]
                high, low = max(score, hyp.score), min(score, hyp.score)
                by_text[text] = (high + math.log1p(math.exp(low - high)), first)
            else:
                by_text[text] = (hyp.score, path)
        if not by_text:
            return [{"text": "", "confidence": 1.0, "words": []}]
        total = torch.logsumexp(torch.tensor([s for s, _ in by_text.values()], dtype=torch.float64), 0).item()
        ranked = sorted(by_text.items(), key=lambda item: (-item[1][0], item[0]))[: self.nbest]
        return [
            {
                "text": text,
                "confidence": round(math.exp(score - total), 4),
                "words": self._words(self._collapse(path, frames), log_probs, time_offset),
            }
            for text, (score, path) in ranked
        ]

    def decode(self, log_probs: torch.Tensor, time_offset: float = 0.0) -> list[dict]:
        """Whole utterance: log_probs (U, V) -> n-best list as `end()` returns."""
        self.begin()
        self.step(log_probs)
        return self.end(time_offset)

    # hypotheses -> text and words

    def _collapse(self, path: list[int], frames: int | None = None) -> list[tuple[int, int]]:
        """A hypothesis' per-frame tokens (entry 0 is the start state) -> [(token, frame)] after CTC collapse."""
        path = list(path)[1:]
        if frames is not None:
            path = path[:frames]  # drop the "|" frame appended by end() and decode_end's final entry
        emitted, prev = [], self.space
        for frame, token in enumerate(path):
            if token != BLANK and token != prev:
                emitted.append((token, frame))
            prev = token
        return emitted

    def _path_text(self, path: list[int], frames: int) -> str:
        """The text of a hypothesis' per-frame tokens (as `_text(_collapse(path, frames))`, faster: every
        hypothesis in the beam is read for the confidences)."""
        if self._byte_table is not None:  # in C: ids as bytes, runs collapsed, ids mapped to letters
            ids = np.frombuffer(bytes(path[1 : frames + 1]), np.uint8)
            runs = ids[np.concatenate(([True], ids[1:] != ids[:-1]))] if ids.size else ids
            chars = runs.tobytes().translate(self._byte_table, bytes([BLANK])).decode("ascii")
        else:
            chars = "".join(self._chars[t] for t, _ in itertools.groupby(path[1 : frames + 1]))
        return " ".join(chars.split())

    def _text(self, emitted: list[tuple[int, int]]) -> str:
        return " ".join("".join(self.tokens[t] for t, _ in emitted).split())

    def _words(self, emitted: list[tuple[int, int]], log_probs: torch.Tensor, time_offset: float) -> list[dict]:
        words, current = [], []
        for token, frame in emitted + [(self.space, -1)]:
            if token != self.space:
                current.append((token, frame))
                continue
            if current:
                probs = [math.exp(float(log_probs[f, t])) for t, f in current]
                words.append(
                    {
                        "word": "".join(self.tokens[t] for t, _ in current),
                        "start": round(time_offset + current[0][1] * self.frame_shift, 3),
                        "end": round(time_offset + (current[-1][1] + 1) * self.frame_shift, 3),
                        "conf": round(sum(probs) / len(probs), 4),
                    }
                )
            current = []
        return words


def arpa_vocabulary(path) -> tuple[str, ...]:
    """The words of an ARPA model's unigram section (for a lexicon that matches the LM); read once per file
    version, since every stream's decoder asks."""
    try:
        st = Path(path).stat()
    except OSError as exc:
        _fail(f"cannot read language model {path}: {exc.strerror or exc}")
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
        _fail(f"cannot read language model {path}: {exc}")
    if not words:
        _fail(f"{path}: no unigrams found (an ARPA file is needed to derive the lexicon; pass --lexicon for binaries)")
    return tuple(words)


def parse_hotword(spec: str) -> tuple[str, float] | str:
    """'new york:3.5' -> ('new york', 3.5); 'new york' -> 'new york' (default weight)."""
    phrase, sep, weight = spec.rpartition(":")
    if sep and phrase:
        try:
            return phrase, float(weight)
        except ValueError:
            pass
    return spec


def beam_factory_from_options(tokens, beam_size=16, lm=None, hotwords=(), lexicon=None, lexicon_from_lm=True, **options):
    """A factory of per-stream decoders for asr.stream (its `beam_factory`).

    With a word LM and no lexicon, the lexicon is the LM's vocabulary (ARPA files), unless `lexicon_from_lm`
    is False (lexicon-free decoding with a character LM).
    The options are checked here, so a mistake is reported before any audio is decoded; the decoder built for
    that check (its language model loaded) is the factory's first.
    """
    if lm is not None and lexicon is None and lexicon_from_lm and str(lm).endswith(".arpa"):
        lexicon = arpa_vocabulary(lm)
    hotwords = [parse_hotword(h) if isinstance(h, str) else h for h in hotwords or ()]
    kwargs = dict(beam_size=beam_size, lm=lm, lexicon=lexicon, hotwords=hotwords or None, **options)
    checked = [BeamSearchDecoder(tokens, **kwargs)]  # built now to report mistakes; handed out first

    def factory():
        return checked.pop() if checked else BeamSearchDecoder(tokens, **kwargs)

    return factory
