"""How final results are decoded: one frozen `DecodingConfig`, checked once, for every entry point.

`asr transcribe`, `asr stream`, `asr eval`, `asr mic`, `asr serve`, `asr.transcribe` and `asr.Recognizer` take one:

- "beam" (the default): CTC prefix beam search with a word LM over the utterance, in lexicon mode over the
  LM's vocabulary (flashlight's decoder); the LM is by default the general-English one (`asr.lm.default`).
- "greedy": the best token per frame, no LM (cheapest; what partial results always use).

Hotwords or n-best alternatives need the beam: with "greedy" they switch that stream to beam search without
an LM. A grammar (`asr.decode.grammar`: Vosk's list of phrases) closes the vocabulary: beam search over its
phrases only, in place of the LM and hotwords, with "[unk]" where it lists it. When the default LM cannot be had (pocketsphinx missing, an unwritable cache) finals fall back to
greedy decoding with one warning, so recognition still works.

The defaults were tuned on so762_dev only (speechocean762's validation speakers; see the README).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from asr.decode.grammar import DEFAULT_UNK_THRESHOLD, GrammarError, check_phrases, compile_grammar, load_grammar
from asr.lm.arpa import DEFAULT_LM_WEIGHT

DEFAULT_LM = "default"  # the general-English LM (asr.lm.default)
LEXICON_FREE = "free"  # lexicon: none, any letter sequence (with a character LM, `python -m asr.lm --chars`)
METHODS = ("beam", "greedy")
DEFAULT_BEAM_SIZE = 64
DEFAULT_WORD_SCORE = 0.0
DEFAULT_TOKEN_BEAM = (
    8  # tokens a hypothesis is extended by per frame (so762_dev, beam 32: all 29 took 2.4x the time, same WER)
)
DEFAULT_BEAM_THRESHOLD = 15.0  # prune hypotheses this far below the best (25 took 1.5x the time, same WER)
DEFAULT_HOTWORD_WEIGHT = 2.0
MAX_BEAM_SIZE = 1024

_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        print(f"asr: warning: {message}", file=sys.stderr)


@dataclass(frozen=True)
class DecodingConfig:
    """method "beam" | "greedy"; lm: "default", a path (.arpa, or a KenLM binary with `lexicon`) or None (no
    LM); lm_weight x log10 LM probabilities and word_score per word are added to the acoustic ln-probs;
    hotwords: ((phrase, weight), ...), boosted in beam search; nbest: alternatives a final result carries;
    grammar: (phrase, ...), Vosk's list with "[unk]" and `asr.decode.grammar`'s patterns: only those phrases
    come out (the LM and hotwords are not used); unk_threshold: nats per letter a phrase may fall below the
    model's best path before it is "[unk]"."""

    method: str = "beam"
    beam_size: int = DEFAULT_BEAM_SIZE
    lm: str | None = DEFAULT_LM
    lexicon: str | None = None  # None: the LM's vocabulary; LEXICON_FREE: none
    lm_weight: float = DEFAULT_LM_WEIGHT
    word_score: float = DEFAULT_WORD_SCORE
    token_beam: int = DEFAULT_TOKEN_BEAM
    beam_threshold: float = DEFAULT_BEAM_THRESHOLD
    hotwords: tuple[tuple[str, float], ...] = ()
    hotword_weight: float = DEFAULT_HOTWORD_WEIGHT
    nbest: int = 1
    grammar: tuple[str, ...] | None = None
    unk_threshold: float = DEFAULT_UNK_THRESHOLD

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"decoding must be one of {', '.join(METHODS)}, not {self.method!r}")
        if (
            isinstance(self.beam_size, bool)
            or not isinstance(self.beam_size, int)
            or not 1 <= self.beam_size <= MAX_BEAM_SIZE
        ):
            raise ValueError(f"beam size must be a whole number from 1 to {MAX_BEAM_SIZE}, not {self.beam_size!r}")
        if isinstance(self.nbest, bool) or not isinstance(self.nbest, int) or not 1 <= self.nbest <= 100:
            raise ValueError(f"number of alternatives must be from 1 to 100, not {self.nbest!r}")
        if isinstance(self.token_beam, bool) or not isinstance(self.token_beam, int) or self.token_beam < 1:
            raise ValueError(f"token beam must be a whole number >= 1, not {self.token_beam!r}")
        for name in ("lm_weight", "word_score", "hotword_weight", "beam_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name.replace('_', ' ')} must be a finite number, not {value!r}")
        unk = self.unk_threshold
        if isinstance(unk, bool) or not isinstance(unk, (int, float)) or math.isnan(unk):
            raise ValueError(f"unk threshold must be a number (inf: never [unk]), not {unk!r}")
        if self.lm_weight < 0:
            raise ValueError(f"lm weight must be >= 0, not {self.lm_weight}")
        if self.beam_threshold <= 0:
            raise ValueError(f"beam threshold must be > 0, not {self.beam_threshold}")
        for path, what in ((self.lm, "language model"), (self.lexicon, "lexicon")):
            special = DEFAULT_LM if what == "language model" else LEXICON_FREE
            if path is not None and path != special and not Path(path).is_file():
                raise ValueError(f"{what} file not found: {path}")
        hotwords = []
        for item in self.hotwords:
            phrase, weight = (item, self.hotword_weight) if isinstance(item, str) else item
            if not isinstance(phrase, str) or not phrase.split():
                raise ValueError(f"bad hotword {item!r}: want a phrase or (phrase, weight)")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise ValueError(f"bad hotword weight {weight!r} for {phrase!r}: want a finite number")
            hotwords.append((phrase, float(weight)))
        object.__setattr__(self, "hotwords", tuple(hotwords))
        if self.grammar is not None:
            object.__setattr__(self, "grammar", check_phrases(self.grammar))  # GrammarError: a ValueError

    def replace(self, **changes) -> DecodingConfig:
        return dataclasses.replace(self, **changes)

    @property
    def uses_beam(self) -> bool:
        """Whether finals need beam search: asked for, or for hotwords, alternatives or a grammar."""
        return self.method == "beam" or bool(self.hotwords) or self.nbest > 1 or self.grammar is not None

    def describe(self) -> str:
        if self.grammar is not None:
            unk = f", [unk] beyond {self.unk_threshold:g}/letter" if compile_grammar(self.grammar).unk else ""
            return f"grammar of {len(self.grammar)} phrases, beam {self.beam_size}{unk}"
        if not self.uses_beam:
            return "greedy"
        lm = "no LM" if self.lm is None or self.method == "greedy" else f"LM {self.lm} x {self.lm_weight:g}"
        lexicon = ", lexicon-free" if self.lexicon == LEXICON_FREE else ""
        return f"beam {self.beam_size}, {lm}{lexicon}, word score {self.word_score:g}"

    def resolved(self) -> DecodingConfig:
        """This config with the default LM replaced by its file (built on first use); where it cannot be had,
        greedy decoding, with one warning. Servers resolve once at start-up; `beam_factory` resolves itself."""
        if self.method == "greedy" or self.lm != DEFAULT_LM or self.grammar is not None:
            return self  # a grammar needs no LM
        from asr.lm.default import LMUnavailable, default_lm_path

        try:
            return self.replace(lm=str(default_lm_path()))
        except LMUnavailable as e:
            _warn_once(f"no language model, final results are decoded greedily: {e}")
            return self.replace(method="greedy", lm=None)

    def beam_factory(self, tokens: list[str]):
        """A per-stream decoder factory for `asr.stream` (None: greedy). The LM is loaded on the first call in
        a process and shared by every decoder after it."""
        config = self.resolved()
        if not config.uses_beam:
            return None
        if config.grammar is not None:
            from asr.decode.grammar_decoder import grammar_factory

            return grammar_factory(
                tokens,
                config.grammar,
                beam_size=config.beam_size,
                beam_threshold=config.beam_threshold,  # every token is tried: the grammar prunes (token_beam: the LM's)
                word_score=config.word_score,
                unk_threshold=config.unk_threshold,
                nbest=config.nbest,
            )
        from asr.decode.beam import beam_factory_from_options

        free = config.lexicon == LEXICON_FREE
        return beam_factory_from_options(
            tokens,
            config.beam_size,
            config.lm if config.method == "beam" else None,
            hotwords=list(config.hotwords),
            lexicon=None if free or config.method != "beam" else config.lexicon,
            lexicon_from_lm=not free,
            lm_weight=config.lm_weight,
            word_score=config.word_score,
            token_beam=config.token_beam,
            beam_threshold=config.beam_threshold,
            nbest=config.nbest,
        )

    # -- command lines ---------------------------------------------------------------
    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser, hotwords: bool = True) -> None:
        g = parser.add_argument_group("decoding of final results")
        g.add_argument(
            "--decoding",
            choices=METHODS,
            default="beam",
            help="beam: prefix beam search with the LM (default); greedy: best token per frame, no LM",
        )
        g.add_argument(
            "--beam-size", type=int, default=DEFAULT_BEAM_SIZE, help=f"hypotheses kept (default {DEFAULT_BEAM_SIZE})"
        )
        g.add_argument(
            "--lm",
            default=DEFAULT_LM,
            help="word LM: 'default' (general English, see `asr lm info`), a .arpa/KenLM file, or 'none'",
        )
        g.add_argument(
            "--lexicon",
            help=f"lexicon file (default: the LM's vocabulary), or '{LEXICON_FREE}': any spelling, with a character LM",
        )
        g.add_argument(
            "--lm-weight",
            type=float,
            default=DEFAULT_LM_WEIGHT,
            help=f"weight of the LM (default {DEFAULT_LM_WEIGHT})",
        )
        g.add_argument(
            "--word-score",
            type=float,
            default=DEFAULT_WORD_SCORE,
            help=f"score per word (default {DEFAULT_WORD_SCORE:g})",
        )
        g.add_argument(
            "--grammar",
            metavar="FILE|JSON",
            help='only these phrases come out: a JSON list as Vosk takes it (\'["yes", "no", "[unk]"]\'), or a file '
            "with one (or one phrase per line); replaces the LM and hotwords (see README, Decoding)",
        )
        g.add_argument(
            "--unk-threshold",
            type=float,
            default=DEFAULT_UNK_THRESHOLD,
            help=f"with [unk] in the grammar: nats per letter the best phrase may fall below the model's best path "
            f"(default {DEFAULT_UNK_THRESHOLD:g}; lower: more [unk])",
        )
        if hotwords:
            g.add_argument(
                "--hotword", action="append", default=[], metavar="PHRASE[:WEIGHT]", help="boost a phrase (repeatable)"
            )
            g.add_argument(
                "--hotword-weight",
                type=float,
                default=DEFAULT_HOTWORD_WEIGHT,
                help=f"bonus per word of a hotword without its own weight (default {DEFAULT_HOTWORD_WEIGHT:g})",
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DecodingConfig:
        """From `add_arguments`' options; raises ValueError (one line) on a bad value."""
        hotwords = []
        for spec in getattr(args, "hotword", None) or ():
            phrase, sep, weight = spec.rpartition(":")
            if sep and phrase:
                try:
                    hotwords.append((phrase, float(weight)))
                    continue
                except ValueError:
                    raise ValueError(f"bad hotword weight {weight!r} in {spec!r}: want PHRASE:NUMBER") from None
            hotwords.append((spec, getattr(args, "hotword_weight", DEFAULT_HOTWORD_WEIGHT)))
        grammar = getattr(args, "grammar", None)
        try:
            grammar = None if grammar is None else load_grammar(grammar)
        except GrammarError as e:
            raise ValueError(f"--grammar: {e}") from None
        return cls(
            method=args.decoding,
            beam_size=args.beam_size,
            lm=None if str(args.lm).lower() == "none" else args.lm,
            lexicon=args.lexicon,
            lm_weight=args.lm_weight,
            word_score=args.word_score,
            hotwords=tuple(hotwords),
            hotword_weight=getattr(args, "hotword_weight", DEFAULT_HOTWORD_WEIGHT),
            grammar=grammar,
            unk_threshold=getattr(args, "unk_threshold", DEFAULT_UNK_THRESHOLD),
        )
