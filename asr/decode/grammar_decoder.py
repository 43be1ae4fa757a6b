"""Decoding under a closed grammar (`asr.decode.grammar`): only its phrases come out, or "[unk]".

flashlight's lexicon decoder (as `asr.decode.beam`) searches a lexicon of the grammar's units only (its phrases
spelled whole, with "|" between their words, and the words of its repeating patterns: `Grammar.units`), and the
grammar's automaton is its language model (`GrammarLM`): a unit the grammar allows next scores 0, any other
`NEG`, and an utterance may end only where a phrase ends (`finish`). So every hypothesis left is a grammar
phrase, with word times and confidences as any final's. Hypotheses that meet in the same place are merged by
adding their probabilities (flashlight's log_add), not by keeping the better one.

"[unk]" (where the grammar lists it) is decided by rejection: the best phrase's acoustic score is compared with
the best path the model allows at all (its most likely token in every frame); when the phrase is worse by more
than `unk_threshold` nats per letter, the utterance is "[unk]". (A filler in the search, any letters at a penalty
per frame, separated in-grammar from out-of-grammar words worse on the tuning speakers: benchmarks/README.md.)
An utterance whose every frame is best explained by a blank or a space is empty, as without a grammar; one where no
phrase survived the beam (long speech against a short grammar) is "[unk]" (or empty without it).

Legend: U = output frames, V = vocabulary.
"""

from __future__ import annotations

import math

import torch
from flashlight.lib.text.decoder import CriterionType, LexiconDecoder, LexiconDecoderOptions, SmearingMode, Trie
from flashlight.lib.text.dictionary import Dictionary
from torchaudio.models.decoder import CTCDecoderLM, CTCDecoderLMState

from asr.decode.beam import CONFIDENCE_MARGIN, IMPOSSIBLE, BeamSearchDecoder
from asr.decode.grammar import DEFAULT_UNK_THRESHOLD, UNK_WORD, Grammar, GrammarError, compile_grammar
from asr.decode.greedy import FRAME_SHIFT
from asr.decode.tables import reject
from asr.lm.arpa import SIL, UNK
from asr.model.tokenizer import BLANK

NEG = -1e9  # score of a word the grammar does not allow next, and of an utterance it does not allow to end there
EMPTY = {"text": "", "confidence": 1.0, "words": []}


class GrammarState(CTCDecoderLMState):
    """A state of the grammar's automaton (None: no phrase can be completed any more)."""

    def __init__(self, key):
        super().__init__()
        self.key = key


class GrammarLM(CTCDecoderLM):
    """The grammar as flashlight's LM over its units: 0 for a unit it allows next, NEG for any other; ending is
    allowed where a phrase ends. One state object per automaton state, so the decoder merges hypotheses in the
    same one."""

    def __init__(self, grammar: Grammar):
        super().__init__()
        self.grammar = grammar
        self.states: dict = {}
        self.dead = GrammarState(None)

    def _state(self, key) -> GrammarState:
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = GrammarState(key)
        return state

    def start(self, start_with_nothing: bool):
        return self._state(self.grammar.start)

    def score(self, state: GrammarState, unit: int):
        if state.key is not None and unit < len(self.grammar.units):
            nxt = self.grammar.step_unit(state.key, unit)
            if nxt is not None:
                return self._state(nxt), 0.0
        return self.dead, NEG

    def finish(self, state: GrammarState):
        return state, 0.0 if state.key is not None and self.grammar.accepting(state.key) else NEG


def grammar_tables(grammar: Grammar, fl_tokens: tuple[str, ...]) -> tuple[Dictionary, Trie]:
    """The unit dictionary (the grammar's unit ids, then <unk>) and the lexicon trie of its units spelled in these
    tokens ("|" after each word); built once per grammar and tokens (decoders of the same grammar share them)."""
    cache = grammar.__dict__.setdefault("_tables", {})
    if fl_tokens not in cache:
        tokens = Dictionary(list(fl_tokens))
        letters = set(fl_tokens) - {SIL, fl_tokens[BLANK]}
        for word in grammar.words:
            if not set(word) <= letters:
                raise GrammarError(f"grammar word {word!r} has characters the model's tokens do not have")
        sil = tokens.get_index(SIL)
        trie = Trie(tokens.index_size(), sil)
        for index, unit in enumerate(grammar.units):
            trie.insert([i for word in unit for i in [*(tokens.get_index(c) for c in word), sil]], index, 0.0)
        trie.smear(SmearingMode.MAX)
        units = Dictionary([*(" ".join(unit) for unit in grammar.units), UNK])
        cache[fl_tokens] = (units, trie)
    return cache[fl_tokens]


class GrammarDecoder(BeamSearchDecoder):
    """Beam search restricted to a grammar's phrases, for one stream: `begin()`, `step(chunk)`..., `best()` (the best
    grammar prefix so far), `end()`; as `BeamSearchDecoder`, whose streaming and word-time code it shares.

    grammar: phrases (Vosk's list, `asr.decode.grammar`) or a compiled `Grammar`
    unk_threshold: nats per letter the best phrase may fall below the model's best path before it is "[unk]"
    (only where the grammar lists "[unk]"); the other options as `BeamSearchDecoder`'s (token_beam: default all
    tokens; with 8, as the English LM's beam, the letters a phrase needs were missing from a frame's 8 likeliest for
    3 of 120 commands spoken by training voices, 0 with all, at 0.7 ms instead of 0.4 per command).
    """

    closed = True  # asr.stream: partial results are this decoder's best grammar prefix

    def __init__(
        self,
        tokens: list[str],
        grammar,
        beam_size: int = 16,
        nbest: int = 1,
        beam_threshold: float = 25.0,
        token_beam: int | None = None,
        word_score: float = 0.0,
        unk_threshold: float = DEFAULT_UNK_THRESHOLD,
        frame_shift: float = FRAME_SHIFT,
    ):
        if beam_size < 1 or nbest < 1 or beam_threshold <= 0 or (token_beam is not None and token_beam < 1):
            reject("beam_size, nbest and token_beam must be >= 1 and beam_threshold > 0")
        if " " not in tokens or SIL in tokens or tokens[BLANK] != "<blank>":
            reject(f"tokens need '<blank>' first and ' ' as word separator, and no {SIL!r}")
        self.tokens, self.nbest, self.frame_shift = list(tokens), nbest, frame_shift
        self.space = tokens.index(" ")
        self.lexicon_mode = True
        self.grammar = grammar if isinstance(grammar, Grammar) else compile_grammar(tuple(grammar))
        self.unk_threshold = unk_threshold
        self.gap = math.nan  # the last utterance's best phrase: nats per letter below the best path (diagnostics)
        fl_tokens = tuple(SIL if t == " " else t for t in tokens)
        words, self._trie = grammar_tables(self.grammar, fl_tokens)
        self._lm = GrammarLM(self.grammar)  # flashlight keeps references only; Python must keep them alive
        options = LexiconDecoderOptions(
            beam_size=beam_size,
            beam_size_token=min(token_beam or len(tokens), len(tokens)),
            beam_threshold=beam_threshold,
            lm_weight=1.0,
            word_score=word_score,
            unk_score=float("-inf"),
            sil_score=0.0,
            log_add=True,  # hypotheses merged by summing their probabilities (CTC's sum over alignments): on the
            # tuning speakers 53.7% of Speech Commands' words right under their grammar, 52.6% keeping the best
            criterion_type=CriterionType.CTC,
        )
        sil = fl_tokens.index(SIL)
        self._decoder = LexiconDecoder(options, self._trie, self._lm, sil, BLANK, words.get_index(UNK), [], False)
        self._chunks: list[torch.Tensor] = []
        self._started = False

    def _hyp_words(self, hyp) -> list[str]:
        units = self.grammar.units
        return [word for u in hyp.words if 0 <= u < len(units) for word in units[u]]

    def partial_words(self, time_offset: float = 0.0) -> list[dict]:
        """The best hypothesis' words so far that begin a grammar phrase (the last one whole), with times (s,
        plus `time_offset`) and confidences: what `best()` says."""
        if not self._started or not self._chunks:
            return []
        # the hypotheses at the last frame (flashlight's best hypothesis stops at the last unit completed, and a
        # unit can be a whole phrase)
        hyp = max(self._decoder.get_all_final_hypothesis(), key=lambda h: h.score, default=None)
        if hyp is None or hyp.score < NEG / 2:
            return []
        log_probs = torch.cat(self._chunks)
        emitted = self._collapse(hyp.tokens, len(log_probs))
        while emitted and emitted[-1][0] != self.space:  # the word being spelled is not one yet
            emitted.pop()
        words = self._words(emitted, log_probs, time_offset)
        state, grammar = self.grammar.start, self.grammar
        for n, w in enumerate(words):
            index = grammar.word_id(w["word"])
            state = None if index is None else grammar.step(state, index)
            if state is None:
                return words[:n]
        return words

    def best(self) -> str:
        """The best hypothesis' grammar prefix so far (whole words), for partial results."""
        return " ".join(w["word"] for w in self.partial_words())

    def end(self, time_offset: float = 0.0) -> list[dict]:
        """Finish the utterance: n-best [{text, confidence, words}] of grammar phrases, best first (as
        `BeamSearchDecoder.end`); "[unk]" first where the grammar lists it and the best phrase is rejected."""
        if not self._started:
            self.begin()
        log_probs = torch.cat(self._chunks) if self._chunks else torch.zeros(0, len(self.tokens))
        last = torch.full((1, len(self.tokens)), IMPOSSIBLE)  # one "|" frame completes the last word
        last[0, self.space] = 0.0
        self._decoder.decode_step(last.data_ptr(), 1, len(self.tokens))
        self._decoder.decode_end()
        hyps = [h for h in self._decoder.get_all_final_hypothesis() if h.score > NEG / 2]  # phrases that end
        self._started = False
        self._chunks = []
        self.gap = math.nan
        best_logp, best_tokens = log_probs.max(-1)  # the best path at all: each frame's likeliest token
        speech = ((best_tokens != BLANK) & (best_tokens != self.space)).nonzero().flatten().tolist()
        if not speech:
            return [dict(EMPTY)]  # nothing said
        if not hyps:  # every phrase fell out of the beam: they fit worse than anything else by far
            if not self.grammar.unk:
                return [dict(EMPTY)]
            self.gap = math.inf
            start, end = time_offset + speech[0] * self.frame_shift, time_offset + (speech[-1] + 1) * self.frame_shift
            conf = round(float(best_logp[speech].exp().mean()), 4)
            unk = {"word": UNK_WORD, "start": round(start, 3), "end": round(end, 3), "conf": conf}
            return [{"text": UNK_WORD, "confidence": 1.0, "words": [unk]}]

        by_text: dict[str, tuple[float, list]] = {}  # text -> (log-sum-exp of scores, path of the best)
        ranked_hyps = sorted(hyps, key=lambda h: -h.score)
        floor = ranked_hyps[0].score - CONFIDENCE_MARGIN
        for hyp in ranked_hyps:
            if hyp.score < floor and len(by_text) >= self.nbest:
                break
            text = " ".join(self._hyp_words(hyp))
            if text in by_text:
                score, first = by_text[text]
                high, low = max(score, hyp.score), min(score, hyp.score)
                by_text[text] = (high + math.log1p(math.exp(low - high)), first)
            else:
                by_text[text] = (hyp.score, hyp.tokens)
        total = torch.logsumexp(torch.tensor([s for s, _ in by_text.values()], dtype=torch.float64), 0).item()
        ranked = sorted(by_text.items(), key=lambda item: (-item[1][0], item[0]))[: self.nbest]
        frames = len(log_probs)
        results = [
            {
                "text": text,
                "confidence": round(math.exp(score - total), 4),
                "words": self._words(self._collapse(path, frames), log_probs, time_offset),
            }
            for text, (score, path) in ranked
        ]
        best = results[0]
        letters = max(1, sum(map(len, self._hyp_words(ranked_hyps[0]))))
        self.gap = (float(best_logp.sum()) - ranked_hyps[0].emittingModelScore) / letters
        if self.grammar.unk and self.gap > self.unk_threshold:
            words = best["words"]
            unk = {"word": UNK_WORD, "start": words[0]["start"], "end": words[-1]["end"]} if words else None
            if unk:
                unk["conf"] = round(sum(w["conf"] for w in words) / len(words), 4)
            results[0] = {"text": UNK_WORD, "confidence": best["confidence"], "words": [unk] if unk else []}
        return results


def grammar_factory(tokens, grammar, **options):
    """A per-stream factory of `GrammarDecoder`s for asr.stream; the first decoder is built now (so a mistake is
    reported before any audio) and handed out first."""
    checked = [GrammarDecoder(tokens, grammar, **options)]

    def factory():
        return checked.pop() if checked else GrammarDecoder(tokens, grammar, **options)

    return factory
