"""benchmarks/compare_reports.py: paired bootstrap intervals of the WER difference between two accuracy reports."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "compare_reports.py"


def _write(path: Path, rows: list[tuple]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["system", "set", "id", "ref", "hyp"])
        writer.writerows(rows)
    return path


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def _table(stdout: str) -> dict:
    rows = [line.strip("|").split("|") for line in stdout.splitlines()[2:]]
    return {(r[0].strip(), r[1].strip()): [c.strip() for c in r[2:]] for r in rows}


def test_intervals_tell_a_real_difference_from_noise(tmp_path):
    rng = np.random.default_rng(0)
    refs = [" ".join(rng.choice(["one", "two", "three", "four", "five"], size=5)) for _ in range(200)]
    base, new = [], []
    for i, ref in enumerate(refs):
        words = ref.split()
        wrong = " ".join(["zero", *words[1:]])
        base.append(("default", "big", f"u{i}", ref, wrong if i % 5 == 0 else ref))  # 40 word errors
        new.append(("default", "big", f"u{i}", ref, wrong if i % 2 == 0 else ref))  # 100: worse beyond noise
        base.append(("default", "tiny", f"t{i}", ref, wrong if i == 0 else ref))  # 1 against 2: within noise
        new.append(("default", "tiny", f"t{i}", ref, wrong if i in (0, 1) else ref))
        base.append(("greedy", "big", f"u{i}", ref, wrong if i % 2 == 0 else ref))  # the reverse: better
        new.append(("greedy", "big", f"u{i}", ref, wrong if i % 5 == 0 else ref))
    a, b = _write(tmp_path / "a.tsv", base), _write(tmp_path / "b.tsv", new)
    proc = _run(a, b)
    assert proc.returncode == 0, proc.stderr
    table = _table(proc.stdout)
    assert table["default", "big"][:4] == ["200 (1000)", "4.0%", "10.0%", "+6.0%"]
    assert table["default", "big"][-1] == "worse"
    assert table["default", "tiny"][-1] == "within noise" and table["default", "tiny"][3] == "+0.1%"
    low, high = (float(x.rstrip("%")) for x in table["default", "tiny"][4].split(" .. "))
    assert low <= 0 <= high
    assert table["greedy", "big"][-1] == "better"
    only = _table(_run(a, b, "--system", "greedy").stdout)
    assert list(only) == [("greedy", "big")]


def test_mismatched_or_wrong_files_are_one_line_errors(tmp_path):
    a = _write(tmp_path / "a.tsv", [("default", "s", "u1", "one two", "one two")])
    b = _write(tmp_path / "b.tsv", [("default", "s", "u2", "one two", "one two")])
    proc = _run(a, b)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "compare_reports: error: default s: the two reports hold different clips or references"
    )
    (tmp_path / "c.tsv").write_text("manifest\tid\tref\thyp\terrors\twords\n")  # asr eval's report, not this
    proc = _run(a, tmp_path / "c.tsv")
    assert proc.returncode == 2 and "not an accuracy.py --report file" in proc.stderr
    proc = _run(a, tmp_path / "absent.tsv")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "absent.tsv" in proc.stderr
