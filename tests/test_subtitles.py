"""Subtitles from word times (asr.apps.subtitles) and `asr transcribe --format/--output-dir`."""

from __future__ import annotations

import subprocess
import sys

from asr.apps.subtitles import cues, lines, to_srt, to_vtt


def words(*items):
    return [{"word": w, "start": s, "end": e} for w, s, e in items]


def test_cues_break_at_pauses_length_and_duration():
    ws = words(("one", 0.0, 0.3), ("two", 0.4, 0.7), ("three", 1.5, 1.9), ("four", 2.0, 2.3))
    assert [(c.start, c.end, c.text) for c in cues(ws)] == [(0.0, 0.7, "one two"), (1.5, 2.3, "three four")]
    long = words(*[(f"word{i}", i * 0.5, i * 0.5 + 0.4) for i in range(20)])
    for cue in cues(long):
        assert len(cue.text) <= 84 and cue.end - cue.start <= 6.0
    assert " ".join(c.text for c in cues(long)) == " ".join(w["word"] for w in long)  # nothing lost
    assert cues([]) == []


def test_lines_break_near_the_middle_within_the_limit():
    assert lines("short text") == "short text"
    text = "the quick brown fox jumps over the lazy dog and runs far away"
    first, second = lines(text).split("\n")
    assert len(first) <= 42 and f"{first} {second}" == text and abs(len(first) - len(second)) < 12


def test_srt_and_vtt_layout():
    cs = cues(words(("hello", 0.12, 0.5), ("world", 0.6, 1.0), ("again", 3661.0, 3661.25)))
    assert to_srt(cs) == "1\n00:00:00,120 --> 00:00:01,000\nhello world\n\n2\n01:01:01,000 --> 01:01:01,250\nagain\n"
    assert to_vtt(cs).startswith("WEBVTT\n\n00:00:00.120 --> 00:00:01.000\nhello world\n\n01:01:01.000")


def test_transcribe_writes_each_format_into_the_output_dir(tmp_path, speech_wav):
    folder = tmp_path / "out"
    for fmt in ("srt", "vtt", "json", "txt"):
        cmd = [sys.executable, "-m", "asr.apps.cli", "transcribe", "--decoding", "greedy", "--format", fmt]
        proc = subprocess.run([*cmd, "--output-dir", str(folder), str(speech_wav)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == str(folder / f"{speech_wav.stem}.{fmt}")
    srt = (folder / f"{speech_wav.stem}.srt").read_text()
    assert srt.startswith("1\n00:00:") and " --> " in srt
    assert (folder / f"{speech_wav.stem}.vtt").read_text().startswith("WEBVTT\n\n")
    txt = (folder / f"{speech_wav.stem}.txt").read_text().strip()
    assert (
        txt
        and txt.split()
        == " ".join(line for line in srt.splitlines()[2:] if line and "-->" not in line and not line.isdigit()).split()
    )
    (tmp_path / "file").write_text("x")
    proc = subprocess.run(
        [sys.executable, "-m", "asr.apps.cli", "transcribe", "--output-dir", str(tmp_path / "file"), str(speech_wav)],
        capture_output=True,
        text=True,
    )
    assert (
        proc.returncode == 2 and proc.stderr.startswith("asr: error: --output-dir") and "Traceback" not in proc.stderr
    )
