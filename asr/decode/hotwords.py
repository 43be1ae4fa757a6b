"""Hotwords: phrases boosted in beam search by wrapping the decoder's LM, and their "phrase:weight" syntax.

Hotwords are boosted by wrapping the LM (`HotwordLM`): each unit (a word, or a letter in lexicon-free
mode) that extends a hotword phrase earns its share of the phrase's weight, and a partial match that
breaks off, or is left open at the end, gives its bonus back. A phrase's weight is the bonus per word, in
the units of the log-probs (natural log), so a weight of 2 outweighs an acoustic odds ratio of e^2 per word.
"""

from __future__ import annotations

import math

from torchaudio.models.decoder import CTCDecoderLM, CTCDecoderLMState

from asr.decode.tables import reject


class HotwordState(CTCDecoderLMState):
    """An LM state of `HotwordLM`: the wrapped LM's state, the open hotword matches, and the states after
    each unit asked for (with the unit's score)."""

    def __init__(self, base_state, matches: frozenset):
        super().__init__()
        self.base_state, self.matches = base_state, matches
        self.after: dict[int, tuple[HotwordState, float]] = {}


class HotwordLM(CTCDecoderLM):
    """KenLM (or no LM) plus hotword bonuses, in KenLM's units (log10): the decoder weighs the sum by its
    lm_weight, as it weighs the lexicon trie's look-ahead (unigram scores), so that where no hotword matches
    every hypothesis scores exactly as without hotwords. A bonus (natural log) is divided by `scale`, the
    decoder's lm_weight, so it counts in full. Units are word ids (lexicon) or token ids.

    States form a tree of unit histories, one per history, as flashlight's KenLM and ZeroLM states do: the
    decoder merges hypotheses whose LM states are the same object, so states shared by hypotheses that differ
    further back (say, per last n words) would merge hypotheses the decoder keeps apart without hotwords,
    and change its beam. A match is (phrase, units matched so far); the bonus of the open matches is a
    potential: score += gain of a completed phrase + potential(after) - potential(before).
    In lexicon-free mode phrases are letters framed by the `boundary` token "|", which also stands for the
    utterance's start and end, so "cat" is not matched inside "bobcat" or "cats".
    """

    def __init__(
        self,
        base,
        scale: float,
        phrases: list[tuple[list[int], list[float]]],
        boundary: int | None,
        base_units: int | None = None,
        base_unk: int = 0,
    ):
        """`base_units`: units with ids from this one up are unknown to `base` (hotwords added to a shared
        lexicon) and are scored as its `base_unk`."""
        super().__init__()
        self.base, self.scale, self.boundary = base, scale, boundary
        self.base_units, self.base_unk = base_units, base_unk
        self.phrases = [(units, [sum(bonuses[:k]) for k in range(len(bonuses) + 1)]) for units, bonuses in phrases]
        self.starting: dict[int, list[int]] = {}  # unit -> the phrases that begin with it (a scan would cost
        for p, (units, _) in enumerate(self.phrases):  # every score call O(phrases): 1,000 in a phrase_list)
            self.starting.setdefault(units[0], []).append(p)
        self.root: HotwordState | None = None  # the tree of this utterance's states (flashlight holds only pointers)

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
        matches = frozenset()
        if self.boundary is not None:  # the utterance starts at a word boundary
            matches, _ = self._advance(matches, self.boundary)
        self.root = HotwordState(self.base.start(start_with_nothing) if self.base else None, matches)  # a new utterance
        return self.root

    def score(self, state: HotwordState, unit: int):
        if unit in state.after:
            return state.after[unit]
        base_state, lm_score = None, 0.0
        if self.base is not None:
            known = self.base_units is None or unit < self.base_units
            base_state, lm_score = self.base.score(state.base_state, unit if known else self.base_unk)
        matches, bonus = self._advance(state.matches, unit)
        result = state.after[unit] = (HotwordState(base_state, matches), lm_score + bonus / self.scale)
        return result

    def finish(self, state: HotwordState):
        lm_score = self.base.finish(state.base_state)[1] if self.base is not None else 0.0
        matches, bonus = state.matches, 0.0
        if self.boundary is not None:  # and ends at one
            matches, bonus = self._advance(matches, self.boundary)
        return state, lm_score + (bonus - self._potential(matches)) / self.scale


def parse_hotwords(hotwords, default_weight: float) -> list[tuple[list[str], float]]:
    """[phrase | (phrase, weight)] -> [(words, weight)]."""
    result = []
    for item in hotwords or []:
        phrase, weight = (item, default_weight) if isinstance(item, str) else item
        words = str(phrase).split()
        if not words or not math.isfinite(float(weight)):
            reject(f"bad hotword {item!r}: want a phrase or (phrase, finite weight)")
        result.append((words, float(weight)))
    return result


def parse_hotword(spec: str) -> tuple[str, float] | str:
    """'new york:3.5' -> ('new york', 3.5); 'new york' -> 'new york' (default weight)."""
    phrase, sep, weight = spec.rpartition(":")
    if sep and phrase:
        try:
            return phrase, float(weight)
        except ValueError:
            pass
    return spec
