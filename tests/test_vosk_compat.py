"""asr.compat.vosk: Vosk's Python API on gru-asr, driven as vosk-api's own examples drive Vosk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave

import numpy as np
import pytest
from conftest import REPO, json_objects

from asr.compat.vosk import KaldiRecognizer, Model
from asr.decode.config import DecodingConfig
from asr.stream import Recognizer

# As vosk-api's python/example/test_simple.py is written, with only the import changed.
PROGRAM = """
import sys
import wave

from asr.compat.vosk import Model, KaldiRecognizer, SetLogLevel

SetLogLevel(0)

wf = wave.open(sys.argv[1], "rb")
if wf.getnchannels() != 1 or wf.getsampwidth() != 2 or wf.getcomptype() != "NONE":
    print("Audio file must be WAV format mono PCM.")
    sys.exit(1)

model = Model(lang="en-us")

rec = KaldiRecognizer(model, wf.getframerate())
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


@pytest.fixture(scope="module")
def model():
    return Model()


def chunks_of(path, frames=4000) -> tuple[list[bytes], int]:
    with wave.open(str(path), "rb") as wf:
        rate, chunks = wf.getframerate(), []
        while data := wf.readframes(frames):
            chunks.append(data)
    return chunks, rate


def test_a_vosk_example_program_runs_unchanged_but_its_import(tmp_path, speech_wav, model):
    program = tmp_path / "test_simple.py"
    program.write_text(PROGRAM)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(program), str(speech_wav)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    printed = json_objects(proc.stdout)
    chunks, rate = chunks_of(speech_wav)
    rec = Recognizer(model.model, rate)  # what the same audio gives through our own API
    expected = []
    for data in chunks:
        if rec.accept_waveform(data):
            expected.append(rec.result())
        else:
            partial = rec.partial_result()
            words = rec.stream.greedy.words()
            partial["partial_result"] = [{k: w[k] for k in ("conf", "end", "start", "word")} for w in words]
            expected.append(partial)
    expected.append(rec.final_result())
    assert (
        printed == expected
        and printed[-1]["text"]
        and printed[-1]["result"][0].keys()
        == {
            "conf",
            "end",
            "start",
            "word",
        }
    )


def test_options_words_alternatives_grammar_and_reset(speech_wav, model):
    chunks, rate = chunks_of(speech_wav)
    rec = KaldiRecognizer(model, rate)
    for data in chunks:
        rec.AcceptWaveform(data)
    plain = json.loads(rec.FinalResult())
    assert set(plain) == {"text"} and plain["text"]  # Vosk's default: no word list without SetWords(True)
    assert json.loads(rec.PartialResult()) == {"partial": ""}

    rec = KaldiRecognizer(model, rate)
    rec.SetMaxAlternatives(3)
    for data in chunks:
        rec.AcceptWaveform(data)
    alternatives = json.loads(rec.FinalResult())["alternatives"]
    assert 1 <= len(alternatives) <= 3 and alternatives[0]["text"] == plain["text"]
    assert all(set(a) == {"confidence", "text"} for a in alternatives)

    grammar = '["zebra crossing", "[unk]"]'  # closed, as in Vosk: the fox is none of its phrases
    rec = KaldiRecognizer(model, rate, grammar)
    closed = Recognizer(model.model, rate, decoding=DecodingConfig(grammar=("zebra crossing", "[unk]")))
    for data in chunks:
        rec.AcceptWaveform(data)
        closed.accept_waveform(data)
    assert json.loads(rec.FinalResult())["text"] == closed.final_result()["text"] == "[unk]"

    rec = KaldiRecognizer(model, rate)
    rec.AcceptWaveform(chunks[0])
    rec.SetGrammar('["hello"]')  # audio is in: from the next utterance on
    rec.Reset()
    assert json.loads(rec.PartialResult()) == {"partial": ""}
    for data in chunks:
        rec.AcceptWaveform(data)
    assert json.loads(rec.FinalResult())["text"]


def test_max_alternatives_set_while_audio_is_in_apply_to_the_next_result(speech_wav, model):
    """As in Vosk, whose results read the setting when they are made: set halfway through the audio, it gives
    that utterance's final result the alternatives of a recognizer set so from the start; 0 turns them off."""
    chunks, rate = chunks_of(speech_wav)
    from_start = KaldiRecognizer(model, rate)
    from_start.SetMaxAlternatives(3)
    for data in chunks:
        from_start.AcceptWaveform(data)
    expected = json.loads(from_start.FinalResult())
    assert len(expected["alternatives"]) > 1  # the sentence has several readings in the beam

    rec = KaldiRecognizer(model, rate)
    rec.SetWords(True)
    for data in chunks[: len(chunks) // 2]:
        rec.AcceptWaveform(data)
    rec.SetMaxAlternatives(3)
    for data in chunks[len(chunks) // 2 :]:
        rec.AcceptWaveform(data)
    assert json.loads(rec.FinalResult()) == expected
    for data in chunks[:2]:
        rec.AcceptWaveform(data)
    rec.SetMaxAlternatives(0)
    for data in chunks[2:]:
        rec.AcceptWaveform(data)
    plain = json.loads(rec.FinalResult())
    assert plain["text"] == expected["alternatives"][0]["text"] and plain["result"]


def test_after_final_result_the_recognizer_starts_afresh(speech_wav, model):
    """Vosk's FinalResult ends the stream: the next audio gets a new decoder and feature pipeline, and its times go
    on from the end of the audio before. The same clip twice gives the same result, moved by its length."""
    chunks, rate = chunks_of(speech_wav)
    rec = KaldiRecognizer(model, rate)
    rec.SetWords(True)
    results = []
    for _ in range(2):
        for data in chunks:
            rec.AcceptWaveform(data)
        results.append(json.loads(rec.FinalResult()))
        assert json.loads(rec.PartialResult()) == {"partial": ""}
    first, second = results
    assert second["text"] == first["text"] and len(second["result"]) == len(first["result"]) > 0
    shift = second["result"][0]["start"] - first["result"][0]["start"]
    assert shift == pytest.approx(sum(len(c) for c in chunks) / 2 / rate, abs=0.021)  # to the nearest 40 ms frame
    for a, b in zip(first["result"], second["result"], strict=True):
        assert b == {**a, "start": pytest.approx(a["start"] + shift), "end": pytest.approx(a["end"] + shift)}


def test_bad_arguments_are_value_errors(model):
    with pytest.raises(ValueError, match="JSON list"):
        KaldiRecognizer(model, 16000, "zebra")
    with pytest.raises(ValueError, match="English"):
        Model(lang="de")
    with pytest.raises(ValueError, match="sample rate"):
        KaldiRecognizer(model, 4000)
    rec = KaldiRecognizer(model, 16000)
    assert rec.AcceptWaveform(np.zeros(1600, "<i2").tobytes()) == 0
