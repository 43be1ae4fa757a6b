"""`asr eval --streamed`: each utterance decoded as `asr transcribe` decodes a file (endpoints, restarts of the
model state), where plain `asr eval` decodes it whole with one state."""

from __future__ import annotations

import csv
import json

import numpy as np
import soundfile as sf

import asr
from asr.apps import evaluate
from asr.audio.files import load_audio
from asr.decode.config import DecodingConfig
from asr.stream.endpoint import EndpointConfig


def _report(path) -> dict[str, str]:
    with open(path, encoding="utf-8") as f:
        return {row["id"]: row["hyp"] for row in csv.DictReader(f, delimiter="\t")}


def test_streamed_eval_decodes_as_transcribe_does(tmp_path, speech_wav, default_model, capsys):
    once = load_audio(speech_wav)
    twice = np.concatenate([once, np.zeros(2 * 16000, np.float32), once])  # an endpoint, then a fresh state
    sf.write(tmp_path / "twice.wav", twice, 16000)
    text = "the quick brown fox jumps over the lazy dog"
    manifest = tmp_path / "m.jsonl"
    rows = [{"id": "once", "audio": str(speech_wav), "duration": len(once) / 16000, "text": text}]
    rows.append({"id": "twice", "audio": str(tmp_path / "twice.wav"), "duration": len(twice) / 16000})
    rows[1]["text"] = f"{text} {text}"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    greedy = DecodingConfig(method="greedy")
    argv = [str(manifest), "--decoding", "greedy", "--report"]

    assert evaluate.main([*argv, str(tmp_path / "streamed.tsv"), "--streamed"]) == 0
    assert "decoding: greedy, streamed" in capsys.readouterr().err
    streamed = _report(tmp_path / "streamed.tsv")
    for row in rows:
        assert streamed[row["id"]] == asr.transcribe(default_model, row["audio"], decoding=greedy)["text"]

    assert evaluate.main([*argv, str(tmp_path / "whole.tsv")]) == 0
    whole = _report(tmp_path / "whole.tsv")
    one_state = EndpointConfig(enabled=False)
    for row in rows:
        expected = asr.transcribe(default_model, row["audio"], decoding=greedy, endpoint=one_state)["text"]
        assert whole[row["id"]] == expected
