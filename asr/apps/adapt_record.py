"""`asr adapt --record`: read prompts aloud into the microphone; each becomes a wav + txt pair and a manifest line.

For each prompt: Enter starts the recording, which stops after STOP_SILENCE s of quiet following speech (or on
Enter, or after MAX_SECONDS); a level meter runs meanwhile (on a terminal). A clip that is silent or clipped is
refused with its reason and recorded again; after a kept clip, Enter goes on, `r` records it again, `q` stops.
The prompts (asr/assets/adapt_prompts.txt) were written for this and share no sentence with an evaluation set.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from pathlib import Path

import numpy as np

from asr.util.atomic import atomic_open
from asr.util.errors import UserError

PROMPTS = Path(__file__).parents[1] / "assets" / "adapt_prompts.txt"
BLOCK_SECONDS = 0.05
SPEECH_DBFS = -40.0  # a block this loud is speech
STOP_SILENCE = 1.0  # seconds below it after speech end a recording
MAX_SECONDS = 15.0
NO_AUDIO_SECONDS = 5.0  # the device gave nothing for this long: give up


def prompts(n: int, seed: int) -> list[str]:
    lines = [line.strip() for line in PROMPTS.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not 1 <= n <= len(lines):
        raise UserError(f"--prompts must be 1 to {len(lines)}, not {n}")
    order = list(range(len(lines)))
    np.random.default_rng(seed).shuffle(order)
    return [lines[i] for i in sorted(order[:n])]


class Lines:
    """stdin's lines, read by a thread, so a recording can stop on Enter; end of input reads as 'q'."""

    def __init__(self, stream=None):
        self.queue: queue.Queue[str] = queue.Queue()
        self.stream = stream or sys.stdin
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.stream:
            self.queue.put(line.strip().lower())
        self.queue.put("q")

    def get(self, timeout: float | None = None) -> str | None:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None


def level_dbfs(block: np.ndarray) -> float:
    return 20 * np.log10(max(float(np.sqrt(np.mean(block.astype(np.float64) ** 2))), 1e-10))


def record_one(sd, device: dict, rate: int, lines: Lines, meter: bool) -> np.ndarray:
    """One take: int16 samples at `rate`, from Enter until the silence after speech (or Enter again)."""
    blocks: queue.Queue[bytes] = queue.Queue()
    size = max(1, int(rate * BLOCK_SECONDS))
    taken: list[np.ndarray] = []
    spoke, quiet, last_audio = False, 0.0, time.monotonic()
    with sd.RawInputStream(
        device=device["index"],
        samplerate=rate,
        channels=1,
        dtype="int16",
        blocksize=size,
        callback=lambda indata, frames, time_info, status: blocks.put(bytes(indata)),
    ):
        print("recording...", file=sys.stderr, flush=True)
        while sum(len(b) for b in taken) < MAX_SECONDS * rate:
            if lines.get(timeout=0) is not None:  # Enter (or anything) stops it
                break
            try:
                block = np.frombuffer(blocks.get(timeout=0.1), np.int16)
            except queue.Empty:
                if time.monotonic() - last_audio > NO_AUDIO_SECONDS:
                    raise UserError(
                        f"no audio from input device {device['name']!r} for {NO_AUDIO_SECONDS:g} s"
                    ) from None
                continue
            last_audio = time.monotonic()
            taken.append(block)
            level = level_dbfs(block / 32768.0)
            if meter:
                bar = "#" * max(0, min(40, int((level + 60) * 40 / 60)))
                print(f"\r{level:6.1f} dBFS |{bar:<40}|", end="", file=sys.stderr, flush=True)
            if level >= SPEECH_DBFS:
                spoke, quiet = True, 0.0
            elif spoke:
                quiet += len(block) / rate
                if quiet >= STOP_SILENCE:
                    break
    if meter:
        print(file=sys.stderr)
    return np.concatenate(taken) if taken else np.zeros(0, np.int16)


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    """`samples` (int16) as a 16-bit mono WAV, written atomically."""
    from asr.apps.mic import open_wav

    with atomic_open(path, "wb") as f, open_wav(f, rate) as out:
        out.writeframes(samples.astype("<i2").tobytes())


def record_session(sd, device: dict, rate: int, texts: list[str], out: Path, lines: Lines | None = None) -> int:
    """Record `texts` into OUT/NNN.wav + .txt and OUT/manifest.jsonl; the number of clips kept."""
    from asr.apps.adapt_clips import clip_problem
    from asr.audio.files import load_audio
    from asr.train.manifests import write_manifest

    lines = lines or Lines()
    meter = sys.stderr.isatty()
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    i = 0
    while i < len(texts):
        text = texts[i]
        print(f"\n[{i + 1}/{len(texts)}] {text}", flush=True)
        print("Enter: record (it stops after a second of silence), q: stop here", flush=True)
        if lines.get() == "q":
            break
        samples = record_one(sd, device, rate, lines, meter)
        wav = out / f"{i + 1:03d}.wav"
        write_wav(wav, samples, rate)
        problem = clip_problem(load_audio(wav))
        if problem:
            wav.unlink()
            print(f"not kept: {problem}; once more", flush=True)
            continue
        (out / f"{i + 1:03d}.txt").write_text(text + "\n", encoding="utf-8")
        print("kept. Enter: next, r: record it again, q: stop here", flush=True)
        answer = lines.get()
        if answer == "r":
            continue
        entries.append({"id": wav.stem, "audio": str(wav), "duration": round(len(samples) / rate, 3), "text": text})
        write_manifest(out / "manifest.jsonl", entries)  # after every clip: a Ctrl-C loses nothing kept
        i += 1
        if answer == "q":
            break
    print(f"{len(entries)} clips in {out}", file=sys.stderr, flush=True)
    return len(entries)
