"""The recipes' stages run end to end (tiny settings): real data preparation, training, evaluation, export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asr.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "hidden_size": 32,
    "num_layers": 1,
    "conv_channels": 16,
    "max_steps": 3,
    "num_workers": 0,
    "stats_utterances": 8,
    "max_batch_seconds": 60,
    "valid_every": 0,
    "warmup_steps": 2,
}


def run_recipe(name: str, work: Path, env: dict, *stages: str) -> str:
    env = {**os.environ, "WORK": str(work), "PYTHON": sys.executable, **env}
    proc = subprocess.run(
        ["bash", str(REPO / "recipes" / name / "prepare.sh"), *stages],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_librispeech_recipe_on_the_real_sample(tmp_path, shared_data):
    conf = tmp_path / "tiny.json"
    conf.write_text(json.dumps(TINY))
    out = run_recipe(
        "librispeech",
        tmp_path / "work",
        {"CONF": str(conf), "CORPUS": str(shared_data / "librispeech_layout" / "LibriSpeech")},
    )
    assert "wrote 4 utterances" in out and "WER" in out
    assert load_checkpoint(tmp_path / "work" / "exp" / "best.pt").config.hidden_size == 32
    assert (tmp_path / "work" / "exp" / "best.onnx").stat().st_size > 0
    again = run_recipe("librispeech", tmp_path / "work", {"CONF": str(conf)})  # every stage is marked done
    assert again.count("done already") == 5  # stages 1-5 (0, the download, runs only when asked)


@pytest.mark.slow
def test_default_recipe_end_to_end_tiny(tmp_path, shared_data):
    conf = tmp_path / "tiny.json"
    conf.write_text(json.dumps(TINY))
    out = run_recipe(
        "default_en",
        tmp_path / "work",
        {"CONF": str(conf), "NUM_SYNTH": "24", "NUM_TEST": "6", "NUM_UNSEEN": "3", "DATA": str(shared_data)},
    )
    work = tmp_path / "work"
    manifests = {p.stem: sum(1 for _ in p.open()) for p in (work / "manifests").glob("*.jsonl")}
    assert manifests["synth_train"] == 24 and manifests["fsdd_test"] == 500 and manifests["so762_dev"] > 0
    assert "WER" in (work / "eval_greedy.txt").read_text() and "WER" in (work / "eval_beam.txt").read_text()
    assert load_checkpoint(work / "default_en.pt").tokens[0] == "<blank>"
    assert "stage 6" in out
