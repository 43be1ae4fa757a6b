"""CTC beam search over log-prob chunks: flashlight's decoder (torchaudio.models.decoder), KenLM, lexicon, hotwords.

Legend: U = output frames, V = vocabulary. Token 0 is the blank, token " " separates words; flashlight calls
our " " its silence token "|".

Two modes:
- lexicon (`lexicon=` a file or a list of words): only lexicon words are produced (unknown ones too when
  `unk_score` > -inf); `lm` is a word n-gram model (ARPA or KenLM binary). Each spelling ends in "|", so a
  last word is completed by one "|" frame that `end()` appends.
- lexicon-free (`lexicon=None`): any token sequence; `lm` is None or a character model over our tokens
  (`python -m asr.lm --chars`).

Hotwords are boosted by wrapping the LM (`asr.decode.hotwords`).

Scores: acoustic ln-probs + lm_weight x KenLM log10 probs + word_score per word (+ hotword bonuses).
`confidence` is the posterior of a text among all hypotheses left in the beam at the end: a softmax over
their scores, hypotheses with the same text summed. The n-best texts are distinct and their confidences
sum to at most 1.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import torch
from flashlight.lib.text.decoder import (
    CriterionType,
    LexiconDecoder,
    LexiconDecoderOptions,
    LexiconFreeDecoder,
    LexiconFreeDecoderOptions,
    ZeroLM,
)
from flashlight.lib.text.dictionary import Dictionary

from asr.decode.greedy import FRAME_SHIFT
from asr.decode.hotwords import HotwordLM, parse_hotword, parse_hotwords
from asr.decode.tables import arpa_vocabulary, cooperative, reject, shared_tables
from asr.lm.arpa import DEFAULT_LM_WEIGHT, SIL, UNK
from asr.model.tokenizer import BLANK

IMPOSSIBLE = -1e30  # log-prob of the tokens other than "|" in the frame `end()` appends in lexicon mode
CONFIDENCE_MARGIN = 15.0  # hypotheses this far (ln) below the best are left out of n-best and confidences


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
            reject(f"unknown beam search option(s): {', '.join(sorted(unknown))}")
        if beam_size < 1 or nbest < 1 or beam_threshold <= 0 or (token_beam is not None and token_beam < 1):
            reject("beam_size, nbest and token_beam must be >= 1 and beam_threshold > 0")
        if " " not in tokens or SIL in tokens or tokens[BLANK] != "<blank>":
            reject(f"tokens need '<blank>' first and ' ' as word separator, and no {SIL!r}")
        self.tokens, self.nbest, self.frame_shift = list(tokens), nbest, frame_shift
        self._chars = ["" if i == BLANK else t for i, t in enumerate(tokens)]  # a token's text in a hypothesis
        single = all(len(t) == 1 and t.isascii() for t in self._chars[1:]) and len(tokens) <= 256
        self._byte_table = bytes(ord(c) if c else 0 for c in self._chars).ljust(256, b"\0") if single else None
        self.space = tokens.index(" ")
        fl_tokens = [SIL if t == " " else t for t in tokens]
        if lm is not None and not Path(lm).is_file():
            reject(f"language model file not found: {lm}")
        phrases = parse_hotwords(hotwords, hotword_weight)
        letters = set(tokens) - {" ", tokens[BLANK]}

        self.lexicon_mode = lexicon is not None
        tables = shared_tables(lm, lexicon, tuple(fl_tokens), letters)
        self._tables = tables  # kept alive with the decoder: flashlight holds raw pointers into them
        word_dict, words, base, trie = tables.word_dict, tables.words, tables.lm, tables.trie
        extra = {}
        if self.lexicon_mode:
            for phrase, _ in phrases:  # hotwords must be spellable; those outside the lexicon are added
                for w in phrase:
                    if not set(w) <= letters:
                        reject(f"hotword {w!r} has characters outside the tokens")
                    if w not in words:
                        extra.setdefault(w, [[*w, SIL]])
            if extra:  # the shared words keep their ids (the shared LM's index); the added ones follow
                words = {**words, **extra}
                shared = tables.word_dict
                word_dict = Dictionary(
                    [shared.get_entry(i) for i in cooperative(range(shared.index_size()))] + list(extra)
                )
                word_dict.set_default_index(shared.get_index(UNK))
            units = [([word_dict.get_index(w) for w in phrase], [weight] * len(phrase)) for phrase, weight in phrases]
        else:
            units = [self._letter_units(phrase, weight, fl_tokens) for phrase, weight in phrases]

        if units:
            # the decoder weighs the LM and the trie's look-ahead by lm_weight, as without hotwords; an LM
            # weighed 0 is left out, and its unigram scores out of the trie
            boundary = None if self.lexicon_mode else self.space
            unk = tables.word_dict.get_index(UNK) if self.lexicon_mode else 0
            weight, with_lm = (lm_weight, base is not None) if lm_weight > 0 else (1.0, False)
            model = HotwordLM(base if with_lm else None, weight, units, boundary, tables.word_dict.index_size(), unk)
            if self.lexicon_mode and base is not None and not with_lm and not extra:
                trie = tables.trie_without_lm
            elif extra:  # hotwords outside the lexicon need a trie of this decoder's own
                start = model.start(False)
                trie = tables.trie_with(
                    {
                        w: (sp, word_dict.get_index(w), model.score(start, word_dict.get_index(w))[1])
                        for w, sp in cooperative(extra.items())
                    },
                    lm_scores=with_lm,
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
                    reject(f"hotword {w!r} has characters outside the tokens")
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
            reject(f"log_probs must be (U, {len(self.tokens)}), got {tuple(log_probs.shape)}")
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


def beam_factory_from_options(
    tokens, beam_size=16, lm=None, hotwords=(), lexicon=None, lexicon_from_lm=True, **options
):
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
