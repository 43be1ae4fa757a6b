"""Closed grammars (Vosk's SetGrammar, issue 30): phrases and patterns compiled into an automaton, the grammar decoder
on real (espeak-ng) speech, and the grammar through every entry point: `asr transcribe | stream | eval`,
`Recognizer`, the Vosk shim (a Vosk program with its import switched) and the websocket server. Only grammar
phrases or "[unk]" come out; bad grammars are one-line errors everywhere."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import wave

import numpy as np
import pytest
import torch
from conftest import REPO, json_objects, synthesize
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import asr
from asr.apps.cli import main as cli_main
from asr.decode.beam import BeamSearchDecoder
from asr.decode.config import DecodingConfig
from asr.decode.grammar import GrammarError, check_phrases, compile_grammar, load_grammar
from asr.lm.arpa import build_arpa
from asr.lm.arpa import main as lm_main
from asr.model.tokenizer import DEFAULT_TOKENS
from asr.stream import Recognizer
from server.config import ServerConfig, make_decoder_factory
from server.running import BackgroundServer

DIGIT = "(zero|one|two|three|four|five|six|seven|eight|nine)"
GRAMMAR = ["yes", "no", "call mom", "call dad", "turn (on | off) the lights", DIGIT + "{3,6}", "[unk]"]
IN_GRAMMAR = ["yes", "call mom", "call dad", "turn on the lights", "turn off the lights", "four one seven"]
OUTSIDE = ["the quick brown fox jumps over the lazy dog", "bananas are my favourite fruit"]


def accepts(grammar, text: str, whole: bool = True) -> bool:
    """Whether the compiled grammar takes `text` (as a whole phrase, or as the start of one)."""
    state = grammar.start
    for word in text.split():
        if word not in grammar.words:
            return False
        state = grammar.step(state, grammar.word_id(word))
        if state is None:
            return False
    return grammar.accepting(state) if whole else True


def allowed(text: str, phrases=GRAMMAR) -> bool:
    return text == "[unk]" and "[unk]" in phrases or accepts(compile_grammar(tuple(phrases)), text)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, object]:
    """espeak-ng speech of each phrase (in and outside the grammar), and a second of silence."""
    folder = tmp_path_factory.mktemp("grammar_tts")
    out = {text: synthesize(text, folder / f"{i}.wav") for i, text in enumerate(IN_GRAMMAR + OUTSIDE)}
    silence = folder / "silence.wav"
    with wave.open(str(silence), "wb") as wf:
        wf.setnchannels(1), wf.setsampwidth(2), wf.setframerate(16000)
        wf.writeframes(np.zeros(16000, "<i2").tobytes())
    out[""] = silence
    return out


def pcm16k(path) -> bytes:
    from asr.audio.files import load_audio

    return (np.clip(load_audio(path), -1, 1) * 32767).astype("<i2").tobytes()


# -- the grammar language ----------------------------------------------------------------------------------


def test_phrases_and_patterns_take_exactly_their_word_sequences():
    g = compile_grammar(("Yes!", "no", "call (mom | dad) (please)?", "(one|two){2,3}", "(go)+ now", "[unk]", "7 up"))
    assert g.unk and set(g.words) >= {"yes", "call", "mom", "please", "seven", "up"}
    for text in ["yes", "no", "call mom", "call dad please", "one two", "two two one", "go now", "go go go now"]:
        assert accepts(g, text), text
    assert accepts(g, "seven up")  # normalised as transcripts are: "7" -> "seven"
    for text in ["yes no", "call", "call please", "one", "one two one two", "now", "unk", "call mom mom"]:
        assert not accepts(g, text), text
    assert accepts(g, "call", whole=False) and not accepts(g, "please", whole=False)
    assert accepts(compile_grammar(("how are you?",)), "how are you")  # "?" after a word is punctuation


@pytest.mark.parametrize(
    "grammar, message",
    [
        ([], "grammar has no phrases"),
        ("yes", "grammar must be a list of phrases, not str"),
        ({"yes": 1}, "grammar must be a list of phrases, not dict"),
        (["yes", 3], "grammar phrase 2 is not a string: '3'"),
        (["[unk]"], "grammar has no phrases besides [unk]"),
        (["!!!"], "grammar phrase 1 ('!!!') has no words"),
        (["call 张三"], "grammar phrase 'call 张三' has '张', which the model cannot spell"),
        (["call [unk]"], "grammar phrase 'call [unk]': [unk] must be a phrase of its own"),
        (["(yes | no"], "has an unclosed '('"),
        (["yes)"], "has an unmatched ')'"),
        (["(yes)?"], "can be empty"),
        (["(one){5,2}"], "has a bad repeat {5,2}"),
        (["(one){1000}"], "has a bad repeat {1000}"),
    ],
)
def test_bad_grammars_are_one_line_errors(grammar, message):
    with pytest.raises(GrammarError) as caught:
        check_phrases(grammar)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="grammar"):
        DecodingConfig(grammar=grammar)


def test_grammar_from_json_a_json_file_or_a_file_of_lines(tmp_path):
    assert load_grammar('["yes", "no", "[unk]"]') == ("yes", "no", "[unk]")
    (tmp_path / "g.json").write_text('["call mom",\n "[unk]"]')
    assert load_grammar(str(tmp_path / "g.json")) == ("call mom", "[unk]")
    (tmp_path / "g.txt").write_text("# commands\n[unk]\ncall mom\n\n  turn (on|off) the lights \n")
    assert load_grammar(str(tmp_path / "g.txt")) == ("[unk]", "call mom", "turn (on|off) the lights")
    with pytest.raises(GrammarError, match="neither a file nor a JSON list"):
        load_grammar(str(tmp_path / "missing.txt"))


def test_a_huge_grammar_stays_fast():
    """10,000 phrases (not compiled before in this process): compiled, its decoder built and an utterance
    decoded in seconds (a loose guard; benchmarks/grammar.py has the figures)."""
    phrases = [f"dial extension {n} for room {n % 97}" for n in range(10_000)] + ["[unk]"]
    start = time.perf_counter()
    decoder = DecodingConfig(grammar=phrases).beam_factory(DEFAULT_TOKENS)()
    torch.manual_seed(0)
    decoder.decode(torch.randn(200, len(DEFAULT_TOKENS)).log_softmax(-1))
    assert time.perf_counter() - start < 15


def test_order_1_lm_loads_in_kenlm(tmp_path):
    """`python -m asr.lm --order 1` (issue 30: KenLM refused it): a unigram model KenLM loads and decodes with."""
    digits = "zero one two three four five six seven eight nine".split()
    (tmp_path / "digits.txt").write_text("\n".join(digits) + "\n")
    assert lm_main([str(tmp_path / "digits.txt"), str(tmp_path / "d1.arpa"), "--order", "1"]) == 0
    build_arpa(digits, tmp_path / "d1b.arpa", order=1)
    for path in (tmp_path / "d1.arpa", tmp_path / "d1b.arpa"):
        decoder = BeamSearchDecoder(DEFAULT_TOKENS, lm=path, lexicon=digits)
        torch.manual_seed(0)
        assert set(decoder.decode(torch.randn(30, len(DEFAULT_TOKENS)).log_softmax(-1))[0]["text"].split()) <= set(
            digits
        )


# -- decoding real speech ------------------------------------------------------------------------------------


def test_only_grammar_phrases_or_unk_come_out(default_model, clips):
    decoding = DecodingConfig(grammar=GRAMMAR)
    for text, path in clips.items():
        result = asr.transcribe(default_model, path, decoding=decoding)
        expected = "[unk]" if text in OUTSIDE else text
        assert result["text"] == expected, (text, result)
        times = [t for w in result["words"] for t in (w["start"], w["end"])]
        assert times == sorted(times) and all(0 <= t <= result["duration"] for t in times)
        assert [w["word"] for w in result["words"]] == expected.split()
    closed = DecodingConfig(grammar=[p for p in GRAMMAR if p != "[unk]"])  # without [unk]: a phrase all the same
    for text in OUTSIDE:
        out = asr.transcribe(default_model, clips[text], decoding=closed)["text"]
        assert out and allowed(out)


def test_stream_partials_are_grammar_prefixes_and_alternatives_grammar_phrases(default_model, clips):
    grammar = compile_grammar(tuple(GRAMMAR))
    for text in ["turn off the lights", "four one seven", OUTSIDE[0]]:
        data = pcm16k(clips[text])
        rec = Recognizer(default_model, 16000, decoding=DecodingConfig(grammar=GRAMMAR), max_alternatives=3)
        partials = []
        for i in range(0, len(data), 3200):
            rec.accept_waveform(data[i : i + 3200])
            partials.append(rec.partial_result()["partial"])
        assert all(accepts(grammar, p, whole=False) for p in partials), partials
        assert text in OUTSIDE or partials[-1] == " ".join(text.split()[:-1])  # words done: all but the last
        alternatives = rec.final_result()["alternatives"]
        assert alternatives[0]["text"] == ("[unk]" if text in OUTSIDE else text)
        assert all(allowed(a["text"]) for a in alternatives)


# -- the command line ------------------------------------------------------------------------------------------


def run_cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "asr.apps.cli", *map(str, args)], capture_output=True, text=True, **kw)


def test_cli_transcribe_stream_and_eval_with_a_grammar(clips, tmp_path, default_model):
    grammar = tmp_path / "commands.txt"
    grammar.write_text("\n".join(GRAMMAR) + "\n")
    files = [clips["call mom"], clips["turn on the lights"], clips[OUTSIDE[1]]]
    proc = run_cli("transcribe", "--json", "--grammar", grammar, *files)
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["text"] for line in proc.stdout.splitlines()] == [
        "call mom",
        "turn on the lights",
        "[unk]",
    ]

    proc = run_cli("stream", "--json", "--grammar", json.dumps(GRAMMAR), clips["four one seven"])
    assert proc.returncode == 0, proc.stderr
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    assert replies[-1]["text"] == "four one seven"
    assert all(accepts(compile_grammar(tuple(GRAMMAR)), r["partial"], whole=False) for r in replies if "partial" in r)

    manifest = tmp_path / "commands.jsonl"
    lines = [{"id": t, "audio": str(clips[t]), "duration": 2.0, "text": t} for t in ("yes", "call dad")]
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    proc = run_cli("eval", "--grammar", grammar, manifest)
    assert proc.returncode == 0 and "WER 0.00%" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "value, message",
    [
        ("[]", "--grammar: grammar has no phrases"),
        ('["yes", 1]', "--grammar: grammar phrase 2 is not a string: '1'"),
        ("no_such_grammar.txt", "--grammar: grammar 'no_such_grammar.txt' is neither a file nor a JSON list"),
        ('["(yes"]', "--grammar: grammar phrase '(yes' has an unclosed '('"),
        ('["Grüße, 世界"]', "which the model cannot spell"),
    ],
)
def test_cli_bad_grammar_is_one_line(value, message, speech_wav, capsys):
    for command in ("transcribe", "stream", "eval"):
        assert cli_main([command, "--grammar", value, str(speech_wav)]) != 0
        err = capsys.readouterr().err
        assert err.startswith("asr") and ": error: " in err and len(err.strip().splitlines()) == 1, err
        assert message in err


# -- Vosk's API ---------------------------------------------------------------------------------------------

# vosk-api's python/example/test_simple.py, with a grammar as its KaldiRecognizer takes one; only the import changed
VOSK_PROGRAM = """
import sys
import wave

from asr.compat.vosk import Model, KaldiRecognizer, SetLogLevel

SetLogLevel(0)

wf = wave.open(sys.argv[1], "rb")
model = Model(lang="en-us")
rec = KaldiRecognizer(model, wf.getframerate(), sys.argv[2])
rec.SetWords(True)
rec.SetPartialWords(True)

while True:
    data = wf.readframes(4000)
    if len(data) == 0:
        break
    if rec.AcceptWaveform(data):
        print(rec.Result())
    else:
        print(rec.PartialResult())

print(rec.FinalResult())
"""


def test_a_vosk_program_with_a_grammar_runs_unchanged_and_says_only_its_phrases(tmp_path, clips):
    program = tmp_path / "test_grammar.py"
    program.write_text(VOSK_PROGRAM)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    grammar = compile_grammar(tuple(GRAMMAR))
    for text in ["call dad", "four one seven", OUTSIDE[0]]:
        proc = subprocess.run(
            [sys.executable, str(program), str(clips[text]), json.dumps(GRAMMAR)],
            capture_output=True,
            text=True,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        printed = json_objects(proc.stdout)
        final = printed[-1]
        assert final["text"] == ("[unk]" if text in OUTSIDE else text)
        assert [w["word"] for w in final["result"]] == final["text"].split()
        for reply in printed[:-1]:
            if "partial" in reply:
                assert accepts(grammar, reply["partial"], whole=False)
                assert " ".join(w["word"] for w in reply["partial_result"]) == reply["partial"]
            else:
                assert allowed(reply["text"]) or not reply["text"]


def test_set_grammar_closes_the_vocabulary_and_bad_grammars_are_value_errors(default_model, clips):
    from asr.compat.vosk import KaldiRecognizer, Model

    model = Model()
    data = pcm16k(clips["turn off the lights"])
    rec = KaldiRecognizer(model, 16000)
    rec.SetGrammar(json.dumps(["turn on the lights", "call mom"]))  # no audio yet: at once
    rec.AcceptWaveform(data)
    assert json.loads(rec.FinalResult())["text"] in ("turn on the lights", "call mom")
    rec.SetGrammar(json.dumps(["turn (on|off) the lights", "[unk]"]))  # after a final: from the next utterance
    rec.AcceptWaveform(data)
    assert json.loads(rec.FinalResult())["text"] == "turn off the lights"
    for bad in ("zebra", "[]", '["yes", 2]', '["[unk]"]'):
        with pytest.raises(ValueError, match="grammar"):
            KaldiRecognizer(model, 16000, bad)


# -- the server ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(default_model):
    factory = make_decoder_factory(default_model.tokens, DecodingConfig(method="greedy"))  # no LM to load
    with BackgroundServer(default_model, ServerConfig(port=0, sample_rate=16000), decoder_factory=factory) as srv:
        yield srv


async def converse(url, config: dict, data: bytes, chunk: int = 6400) -> list[dict]:
    async with connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"config": config}))
        replies = []
        for i in range(0, len(data), chunk):
            await ws.send(data[i : i + chunk])
            replies.append(json.loads(await ws.recv()))
        await ws.send('{"eof" : 1}')
        replies.append(json.loads(await ws.recv()))
        return replies


def test_server_grammar_gives_only_its_phrases_and_phrase_list_still_boosts(server, clips):
    grammar = compile_grammar(tuple(GRAMMAR))
    for text in ["call mom", "turn on the lights", OUTSIDE[1]]:
        replies = asyncio.run(converse(server.url, {"sample_rate": 16000, "grammar": GRAMMAR}, pcm16k(clips[text])))
        assert replies[-1]["text"] == ("[unk]" if text in OUTSIDE else text)
        assert all(accepts(grammar, r["partial"], whole=False) for r in replies if "partial" in r)
        assert all(allowed(r["text"]) for r in replies if "text" in r and r["text"])
    boosted = asyncio.run(converse(server.url, {"phrase_list": ["zebra crossing"]}, pcm16k(clips[OUTSIDE[1]])))
    assert boosted[-1]["text"] not in ("", "[unk]", "zebra crossing")  # boosting does not close the vocabulary


@pytest.mark.parametrize(
    "grammar, message",
    [
        ("yes no", '"grammar" must be a list of 1 to 10000 strings'),
        ([], '"grammar" must be a list of 1 to 10000 strings'),
        (["yes"] * 10_001, '"grammar" must be a list of 1 to 10000 strings'),
        (["yes", "x" * 201], '"grammar" must be a list of 1 to 10000 strings of at most 200 characters'),
        (["(yes | no"], "bad grammar: grammar phrase '(yes | no' has an unclosed '('"),
        (["naïve", "日本語"], "bad grammar: grammar phrase '日本語' has '日', which the model cannot spell"),
    ],
)
def test_server_bad_grammar_is_a_protocol_error(server, grammar, message):
    async def client():
        async with connect(server.url, max_size=None) as ws:
            await ws.send(json.dumps({"config": {"grammar": grammar}}))
            reply = json.loads(await ws.recv())
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            return reply, closed.value.rcvd.code

    reply, code = asyncio.run(client())
    assert code == 1003 and message in reply["error"]


def test_server_takes_a_10000_phrase_grammar(server, clips):
    phrases = ["call mom", "call dad", "[unk]"] + [f"call extension {n}" for n in range(1000, 10_997)]
    start = time.perf_counter()
    replies = asyncio.run(converse(server.url, {"sample_rate": 16000, "grammar": phrases}, pcm16k(clips["call dad"])))
    assert replies[-1]["text"] == "call dad" and time.perf_counter() - start < 30
