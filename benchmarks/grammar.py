"""Closed grammars (`--grammar`, Vosk's SetGrammar): word and phrase accuracy with and without one, out-of-grammar
speech coming out "[unk]", and what decoding costs per utterance beside the open-vocabulary beam.

    python benchmarks/grammar.py                  # the evaluation speakers (yweweler: evaluation only, run it once)
    python benchmarks/grammar.py --set tuning     # the speakers the [unk] threshold was chosen on

Sets (the model's log-probs of each clip, with the tail padding a final gets, are computed once, then decoded by
every system, so systems are compared on the same acoustics; 1 thread):

- fsdd: the held-out digit speaker yweweler, all 500 clips and (as issue 30 measured) the first 200 in
  transcripts.tsv order, which hold only zero to three. --set tuning: 40 clips of each FSDD training speaker
  (the model trained on these). Grammars: the ten digits (one per utterance), the same with [unk], and digit
  strings "(zero|...|nine)+"; open vocabulary beside them: greedy, the default decoding (beam 64 + the English
  LM) and the default beam with an LM over the ten digit words only (`python -m asr.lm --order 2`).
- speech_commands: speakers whose hash (hex) % 4 == 0 are the tuning speakers, the others the test speakers; the
  shipped model never trained on Speech Commands. Test: every clip of the 25 words outside the ten keywords and
  every --keyword-every'th keyword clip. Grammars: the 35 words + [unk] (all in grammar), and the ten keywords +
  [unk] (the 25 others out of grammar: the share that comes out "[unk]").
- commands: 30 voice commands and 15 sentences outside them, spoken by the recipe's held-out voices (espeak-ng
  en-029+f4, flite rms; `recipes/default_en/local/synthesize.py` HELD_OUT); --set tuning: by four training
  voices (espeak-ng en-us+m3, en-gb-x-rp+f2, flite awb, slt). Grammars: the commands + [unk], and the commands
  among 970 (1,000 in all) or 9,970 (10,000) other phrases + [unk].
- (bound): not a decoder, the likeliest of the grammar's words for each clip by the CTC forward probability of
  the model's outputs: the most any decoder of one word per utterance could get from this model.
- cost: milliseconds per utterance to decode the commands' and the speech_commands' clips (decoding only, from
  the log-probs) with the default beam and with grammars of 10, 35, 1,000 and 10,000 phrases.

Word accuracy is 1 - WER over the set (jiwer); phrase accuracy the share of utterances exactly right; "[unk]"
counts as wrong on in-grammar speech. `--sweep` adds the in-grammar accuracy and out-of-grammar [unk] share at
other [unk] thresholds (the decoder's `gap` of each utterance, decided afterwards).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jiwer
import torch
from common import REPO, add_model_argument, load_model, machine, print_table, write_json

from asr.audio import pad_tail
from asr.audio.files import load_audio
from asr.audio.frontend import LogMel
from asr.decode.config import DecodingConfig
from asr.decode.grammar import DEFAULT_UNK_THRESHOLD, UNK_WORD
from asr.decode.greedy import ctc_greedy
from asr.lm.arpa import build_arpa
from asr.model.tokenizer import normalize_text

DATA = REPO.parent / "shared" / "data"
DIGITS = "zero one two three four five six seven eight nine".split()
KEYWORDS = "yes no up down left right on off stop go".split()
OTHER_WORDS = DIGITS + (
    "bed bird cat dog happy house marvin sheila tree wow backward forward follow learn visual".split()
)  # Speech Commands' 25 words besides the keywords
COMMANDS = [
    "turn on the lights", "turn off the lights", "open the door", "close the door", "lock the door",
    "play music", "stop the music", "next song", "previous song", "volume up", "volume down",
    "what time is it", "set an alarm", "cancel the alarm", "call mom", "call dad", "call the office",
    "read my messages", "check the weather", "start the timer", "stop the timer", "go back", "main menu",
    "speak to an agent", "repeat that", "yes please", "no thanks", "check my balance", "pay my bill", "help",
]  # fmt: skip
OUTSIDE = [
    "the quick brown fox jumps over the lazy dog", "please bring me a glass of water",
    "how far is the nearest station", "my favourite colour is green", "the train leaves at noon",
    "can you recommend a good book", "it is raining again today", "we went to the beach last summer",
    "where did you park the car", "the children are playing outside", "i would like a cup of tea",
    "this soup is too salty", "she sells sea shells by the sea shore", "the museum opens at nine",
    "bananas are my favourite fruit",
]  # fmt: skip
VOICES = (("espeak-ng", "en-029+f4"), ("flite", "rms"))  # the recipe's held-out voices
TUNING_VOICES = (("espeak-ng", "en-us+m3"), ("espeak-ng", "en-gb-x-rp+f2"), ("flite", "awb"), ("flite", "slt"))
THRESHOLDS = (1.0, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 4.0)


def filler_phrases(n: int) -> list[str]:
    """n home-automation and dialling phrases, none of them a COMMANDS phrase: grammars of 1,000 and 10,000."""
    actions = ["turn on", "turn off", "dim", "brighten", "open", "close", "lock", "unlock", "check", "clean"]
    things = ["lamp", "fan", "heater", "window", "blinds", "oven", "tv", "radio", "garage", "speaker"]
    places = ["kitchen", "bedroom", "living room", "hall", "garden", "office", "bathroom", "basement", "attic", "porch"]
    out = [f"{a} the {p} {t}" for a, t, p in itertools.product(actions, things, places)]
    out += [f"dial extension {normalize_text(str(k))}" for k in range(1000, 1000 + max(0, n - len(out)))]
    return [p for p in out if p not in COMMANDS][:n]


# -- clips -------------------------------------------------------------------------------------------------


def read_tsv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def fsdd_clips(tuning: bool) -> dict[str, list[dict]]:
    rows = read_tsv(DATA / "fsdd" / "transcripts.tsv")
    if tuning:
        picked = [r for r in rows if r["speaker"] != "yweweler" and int(r["index"]) < 8]
        return {"fsdd_train_speakers": [clip(DATA / "fsdd" / r["file"], r["reference"]) for r in picked]}
    test = [clip(DATA / "fsdd" / r["file"], r["reference"]) for r in rows if r["speaker"] == "yweweler"]
    return {"fsdd_yweweler": test, "fsdd_yweweler_first200": test[:200]}


def speech_commands_clips(tuning: bool, keyword_every: int) -> list[dict]:
    rows = read_tsv(DATA / "speech_commands" / "transcripts.tsv")
    mine = [r for r in rows if (int(r["speaker"][3:], 16) % 4 == 0) == tuning]
    keywords = [r for r in mine if r["reference"] in KEYWORDS]
    picked = mine if tuning else [r for r in mine if r["reference"] not in KEYWORDS] + keywords[::keyword_every]
    return [clip(DATA / "speech_commands" / r["file"], r["reference"]) for r in picked]


def command_clips(folder: Path, voices=VOICES) -> list[dict]:
    clips = []
    for (engine, voice), (i, text) in itertools.product(voices, enumerate(COMMANDS + OUTSIDE)):
        wav = folder / f"{engine}_{voice}_{i}.wav"
        if engine == "flite":
            cmd = ["flite", "-voice", voice, "-t", text, "-o", str(wav)]
        else:
            cmd = ["espeak-ng", "-v", voice, "-w", str(wav), text]
        subprocess.run(cmd, check=True, capture_output=True)
        clips.append(clip(wav, text, voice=f"{engine} {voice}"))
    return clips


def clip(path: Path, reference: str, **extra) -> dict:
    return {"path": str(path), "ref": normalize_text(reference), **extra}


@torch.inference_mode()
def add_log_probs(model, clips: list[dict]) -> None:
    logmel = LogMel()
    for c in clips:
        feats = logmel(torch.from_numpy(pad_tail(load_audio(c["path"]))))
        lp, n = model(feats[None], torch.tensor([feats.shape[0]]))
        c["lp"] = lp[0, : int(n[0])].float().contiguous()


# -- systems -----------------------------------------------------------------------------------------------


def decode_all(decoder, clips: list[dict], tokens: list[str]) -> tuple[list[str], list[float], float]:
    """Texts, [unk] gaps (grammars) and milliseconds per utterance of one decoder (None: greedy) over the clips."""
    texts, gaps = [], []
    start = time.perf_counter()
    for c in clips:
        if decoder is None:
            texts.append(ctc_greedy(c["lp"], tokens)[0])
        else:
            texts.append(decoder.decode(c["lp"])[0]["text"])
        gaps.append(getattr(decoder, "gap", math.nan))
    return texts, gaps, 1000 * (time.perf_counter() - start) / max(1, len(clips))


def score(name: str, system: str, clips: list[dict], texts: list[str], ms: float, in_grammar=None) -> dict:
    """Word and phrase accuracy over the in-grammar clips (all, without `in_grammar`), the [unk] share of the
    others."""
    inside = [i for i, c in enumerate(clips) if in_grammar is None or c["ref"] in in_grammar]
    outside = [i for i in range(len(clips)) if i not in set(inside)]
    refs, hyps = [clips[i]["ref"] for i in inside], [texts[i] for i in inside]
    row = {"set": name, "system": system, "clips": len(inside), "ms_per_utt": round(ms, 3)}
    if inside:
        row["word_acc"] = round(100 * (1 - jiwer.wer(refs, [h if h else "<empty>" for h in hyps])), 1)
        row["phrase_acc"] = round(100 * sum(r == h for r, h in zip(refs, hyps)) / len(inside), 1)
        row["unk_in"] = round(100 * sum(h == UNK_WORD for h in hyps) / len(inside), 1)
    if outside:
        row["oog_clips"] = len(outside)
        row["oog_unk"] = round(100 * sum(texts[i] == UNK_WORD for i in outside) / len(outside), 1)
    return row


def with_threshold(texts: list[str], gaps: list[float], threshold: float) -> list[str]:
    return [UNK_WORD if g > threshold else t for t, g in zip(texts, gaps)]


class Likeliest:
    """Not a decoder: the likeliest of a list of words by the CTC forward probability of the model's outputs (sum
    over alignments, with a space before or after allowed): what any one-word-per-utterance decoder could get at
    best from these outputs."""

    def __init__(self, tokens: list[str], words: list[str]):
        index = {t: i for i, t in enumerate(tokens)}
        variants = [(w, v) for w in words for v in (w, f" {w}", f"{w} ", f" {w} ")]
        self.words, self.n = words, len(variants)
        width = max(len(v) for _, v in variants)
        self.targets = torch.tensor([[index[c] for c in v] + [0] * (width - len(v)) for _, v in variants])
        self.lengths = torch.tensor([len(v) for _, v in variants])

    def decode(self, lp: torch.Tensor) -> list[dict]:
        logp = lp[:, None].expand(-1, self.n, -1)
        frames = torch.full((self.n,), lp.shape[0])
        nll = torch.nn.functional.ctc_loss(logp, self.targets, frames, self.lengths, reduction="none")
        per_word = torch.logsumexp(-nll.view(len(self.words), 4), dim=1)
        return [{"text": self.words[int(per_word.argmax())]}]


def grammar_decoder(tokens: list[str], phrases, unk=True):
    """The default decoding's beam options with a grammar; [unk] is decided afterwards from each utterance's gap."""
    config = DecodingConfig(grammar=tuple(phrases) + ((UNK_WORD,) if unk else ()), unk_threshold=math.inf)
    return config.beam_factory(tokens)()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_argument(p)
    p.add_argument("--set", choices=("test", "tuning"), default="test")
    p.add_argument("--keyword-every", type=int, default=8, help="every Nth keyword clip of the test speakers")
    p.add_argument("--sweep", action="store_true", help="also other [unk] thresholds")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    tuning = args.set == "tuning"
    if not (DATA / "fsdd").is_dir() or not (DATA / "speech_commands").is_dir():
        sys.exit(f"needs fsdd/ and speech_commands/ in {DATA}")
    model, model_name = load_model(args.model)
    tokens = model.tokens

    def grammar(phrases, unk=True):
        return grammar_decoder(tokens, phrases, unk)

    tmp = Path(tempfile.mkdtemp(prefix="grammar_bench_"))
    sets = {**fsdd_clips(tuning), "speech_commands": speech_commands_clips(tuning, args.keyword_every)}
    if all(shutil.which(e) for e, _ in VOICES):
        sets["commands"] = command_clips(tmp, TUNING_VOICES if tuning else VOICES)
    for clips in sets.values():
        add_log_probs(model, clips)
    digits_lm = build_arpa(DIGITS, tmp / "digits2.arpa", order=2)
    default = DecodingConfig().beam_factory(model.tokens)()
    digit_lm_beam = DecodingConfig(lm=str(digits_lm)).beam_factory(model.tokens)()
    words35 = KEYWORDS + OTHER_WORDS
    systems = {
        "fsdd": [
            ("greedy", None, None, False),
            ("default beam + English LM", default, None, False),
            ("default beam + LM over the ten digits", digit_lm_beam, None, False),
            ("grammar: ten digits", grammar(DIGITS, unk=False), None, False),
            ("grammar: ten digits + [unk]", grammar(DIGITS), None, True),
            ("grammar: (zero|...|nine)+", grammar(["(" + "|".join(DIGITS) + ")+"], unk=False), None, False),
            ("(bound) likeliest of the ten digits", Likeliest(tokens, DIGITS), None, False),
        ],
        "speech_commands": [
            ("greedy", None, None, False),
            ("default beam + English LM", default, None, False),
            ("grammar: 35 words", grammar(words35, unk=False), None, False),
            ("grammar: 35 words + [unk]", grammar(words35), None, True),
            ("grammar: 10 keywords", grammar(KEYWORDS, unk=False), KEYWORDS, False),
            ("grammar: 10 keywords + [unk]", grammar(KEYWORDS), KEYWORDS, True),
            ("(bound) likeliest of the 35 words", Likeliest(tokens, words35), None, False),
        ],
        "commands": [
            ("greedy", None, COMMANDS, False),
            ("default beam + English LM", default, COMMANDS, False),
            ("grammar: 30 commands + [unk]", grammar(COMMANDS), COMMANDS, True),
            ("grammar: 1,000 phrases + [unk]", grammar(COMMANDS + filler_phrases(970)), COMMANDS, True),
            ("grammar: 10,000 phrases + [unk]", grammar(COMMANDS + filler_phrases(9970)), COMMANDS, True),
        ],
    }
    rows, sweeps = [], []
    for name, clips in sets.items():
        for system, decoder, in_grammar, unk in systems[name.split("_")[0] if name.startswith("fsdd") else name]:
            texts, gaps, ms = decode_all(decoder, clips, tokens)
            if unk:
                for threshold in THRESHOLDS if args.sweep else ():
                    row = score(name, system, clips, with_threshold(texts, gaps, threshold), ms, in_grammar)
                    sweeps.append({**row, "unk_threshold": threshold})
                texts = with_threshold(texts, gaps, DEFAULT_UNK_THRESHOLD)
            rows.append(score(name, system, clips, texts, ms, in_grammar))
            print(rows[-1], flush=True)

    cost_clips = sets["speech_commands"] + sets.get("commands", [])
    cost = []
    for label, decoder in [
        ("default beam + English LM", default),
        ("grammar of 10 phrases (digits)", grammar(DIGITS)),
        ("grammar of 35 phrases", grammar(words35)),
        ("grammar of 1,000 phrases", grammar(COMMANDS + filler_phrases(970))),
        ("grammar of 10,000 phrases", grammar(COMMANDS + filler_phrases(9970))),
    ]:
        _, _, ms = decode_all(decoder, cost_clips, tokens)
        cost.append({"decoder": label, "utterances": len(cost_clips), "ms_per_utt": round(ms, 3)})
    start = time.perf_counter()
    grammar(COMMANDS + filler_phrases(9970) + ["call extension"])  # compile and build, not cached yet
    build_10k = time.perf_counter() - start

    columns = ["set", "system", "clips", "word_acc", "phrase_acc", "unk_in", "oog_clips", "oog_unk", "ms_per_utt"]
    print()
    print_table(rows, columns)
    if sweeps:
        print("\n[unk] thresholds (nats per letter):")
        print_table(sweeps, ["set", "system", "unk_threshold", "word_acc", "phrase_acc", "unk_in", "oog_unk"])
    print(f"\ndecoding cost per utterance ({len(cost_clips)} clips, {args.threads} thread(s)):")
    print_table(cost, ["decoder", "utterances", "ms_per_utt"])
    print(f"compiling a 10,000-phrase grammar and building its first decoder: {build_10k:.2f} s")
    write_json(
        args.out or (REPO / "benchmarks" / "results" / f"grammar{'_tuning' if tuning else ''}.json"),
        "grammar",
        {
            "command": "python benchmarks/grammar.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": machine(),
            "model": model_name,
            "unk_threshold": DEFAULT_UNK_THRESHOLD,
            "results": rows,
            "sweep": sweeps,
            "cost": cost,
            "build_10k_phrases_s": round(build_10k, 3),
        },
    )
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
