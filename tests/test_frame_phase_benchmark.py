"""benchmarks/frame_phase.py on a few real clips: a stream carries nothing from one utterance into the next."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "frame_phase.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True, timeout=600, check=False
    )


def test_the_silence_stream_equals_its_clips_alone_at_their_places(shared_data, default_model, tmp_path):
    out = tmp_path / "frame_phase.json"
    proc = run("--sets", "real_en_16k", "--shifts", "2", "--limit", "4", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    result = data["sets"]["real_en_16k"]
    assert result["stream_silence_equals_places_alone"] == "4 of 4 clips"
    rows = result["wer"]
    assert list(rows)[:2] == ["alone +0 ms", "alone +20 ms"]
    assert rows["alone, lowest"] <= rows["alone, mean of the positions"] <= rows["alone, highest"]
    assert rows["stream-silence"] == rows["stream's places, alone"]
    assert len(result["clips"]) == 4 and all(c["ref"] for c in result["clips"])
    assert "| stream-silence |" in proc.stdout


def test_an_unknown_set_is_a_one_line_error():
    proc = run("--sets", "nope")
    assert proc.returncode != 0
    assert proc.stderr.strip().startswith("error: unknown set 'nope'") and len(proc.stderr.strip().splitlines()) == 1
