"""CTC decoding: greedy (incremental, with word times and confidences).

Legend: U = output frames, V = vocabulary. Token 0 is the blank, token " " separates words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from asr.model.network import ModelConfig
from asr.model.tokenizer import BLANK

FRAME_SHIFT = ModelConfig().frame_shift  # seconds per output frame of the default model config (40 ms)


@dataclass
class Emission:
    token: int
    frame: int  # absolute output frame index
    prob: float  # posterior of the token at that frame


class GreedyDecoder:
    """Incremental greedy CTC over log-prob chunks of one stream.

    The last frame's token is carried across chunk edges, so a repeat split by a
    chunk boundary collapses as it would over the whole utterance.
    """

    def __init__(self, tokens: list[str], frame_shift: float = FRAME_SHIFT, start_frame: int = 0):
        self.tokens = tokens
        self.space = tokens.index(" ") if " " in tokens else -1
        self.frame_shift = frame_shift
        self.start_frame = start_frame  # absolute index of the first frame (times are absolute)
        self.frames = start_frame  # absolute index of the next frame
        self.prev = BLANK  # argmax of the last frame seen
        self.emissions: list[Emission] = []
        self.last_speech_frame = start_frame - 1  # last frame whose argmax was a letter
        self._chars, self._text, self._text_for = "", "", 0  # text() caches and the emission count they cover

    def accept(self, log_probs: torch.Tensor) -> None:
        """log_probs: (U, V) for the next U frames."""
        if log_probs.shape[0]:
            self.accept_best(*best_path(log_probs))

    def accept_best(self, best: list[int], best_logp: list[float]) -> None:
        """The next frames given by their best token and its log-prob (what `best_path` returns).

        Plain Python: a streaming chunk is a few frames, where each numpy or torch call's fixed cost
        (a few microseconds) outweighs the work, and a server does this for hundreds of streams per chunk.
        """
        prev, frame, space = self.prev, self.frames, self.space
        for tok, logp in zip(best, best_logp):
            if tok != BLANK:
                if tok != prev:
                    self.emissions.append(Emission(tok, frame, math.exp(logp)))
                if tok != space:
                    self.last_speech_frame = frame
            prev = tok
            frame += 1
        self.prev, self.frames = prev, frame

    @property
    def trailing_silence_frames(self) -> int:
        """Frames since the last frame whose best token was a letter."""
        return self.frames - 1 - self.last_speech_frame

    @property
    def has_speech(self) -> bool:
        return self.last_speech_frame >= self.start_frame

    def text(self) -> str:
        """The words so far; cached, since partial results ask after every chunk (emissions only grow)."""
        if self._text_for != len(self.emissions):
            self._chars += "".join(self.tokens[e.token] for e in self.emissions[self._text_for :])
            self._text = " ".join(self._chars.split())
            self._text_for = len(self.emissions)
        return self._text

    def words(self, time_offset: float = 0.0) -> list[dict]:
        """[{word, start, end, conf}] with times in seconds (plus `time_offset`); conf is the mean letter posterior."""
        words, current = [], []
        for e in self.emissions + [Emission(self.space, -1, 1.0)]:
            if e.token == self.space:
                if current:
                    words.append(self._word(current, time_offset))
                current = []
            else:
                current.append(e)
        return words

    def _word(self, emissions: list[Emission], time_offset: float) -> dict:
        return {
            "word": "".join(self.tokens[e.token] for e in emissions),
            "start": round(time_offset + emissions[0].frame * self.frame_shift, 3),
            "end": round(time_offset + (emissions[-1].frame + 1) * self.frame_shift, 3),
            "conf": round(sum(e.prob for e in emissions) / len(emissions), 4),
        }


def clip_word_times(words: list[dict], end: float) -> list[dict]:
    """`words` with start and end times no later than `end` (s): letters emitted in the tail padding."""
    end = round(end, 3)
    return [{**w, "start": min(w["start"], end), "end": min(w["end"], end)} for w in words]


def delay_word_times(words: list[dict], delay: float, earliest: float = 0.0) -> list[dict]:
    """`words` with times `delay` s earlier, none before `earliest`: a lookahead model's outputs come late."""
    if not delay:
        return words
    earliest = round(earliest, 3)
    return [
        {**w, "start": max(round(w["start"] - delay, 3), earliest), "end": max(round(w["end"] - delay, 3), earliest)}
        for w in words
    ]


def best_path(log_probs: torch.Tensor) -> tuple[list[int], list[float]]:
    """(U, V) log-probs -> the best token of each frame and its log-prob, as lists."""
    logp, best = log_probs.detach().float().cpu().max(dim=-1)
    return best.tolist(), logp.tolist()


def ctc_greedy(log_probs: torch.Tensor, tokens: list[str], frame_shift: float = FRAME_SHIFT):
    """Whole-utterance greedy decoding: (U, V) -> (text, words)."""
    decoder = GreedyDecoder(tokens, frame_shift)
    decoder.accept(log_probs)
    words = decoder.words()
    return " ".join(w["word"] for w in words), words
