"""Memory and per-chunk time over a long stream through one Recognizer (default: one hour of audio).

    python benchmarks/long_stream.py [--minutes 60] [--model PATH] [--threads 1]

The audio loops real or synthesized speech clips with pauses between them (so endpoints fire as in a
conversation), fed in 0.2 s chunks as fast as possible. Prints RSS and mean time per chunk for each tenth of
the stream; memory must stay flat and the time per chunk must not grow.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import add_model_argument, load_clips, load_model, print_table, write_json

import asr
from asr.audio import SAMPLE_RATE

CHUNK = 3200  # samples: 0.2 s at 16 kHz
PAUSE = 1.5  # seconds of quiet between clips


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def audio_loop(clips, total_samples: int, rng):
    """Chunks of speech clips separated by low noise, until total_samples."""
    sent = 0
    while True:
        for clip in clips:
            pause = (rng.standard_normal(int(PAUSE * SAMPLE_RATE)) * 0.002).astype(np.float32)
            for piece in (clip, pause):
                for i in range(0, len(piece), CHUNK):
                    if sent >= total_samples:
                        return
                    chunk = piece[i : i + CHUNK]
                    sent += len(chunk)
                    yield chunk


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_argument(p)
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    model, model_name = load_model(args.model)
    clips = [c["samples"] for c in load_clips(max_clips=8)[0]]
    rng = np.random.default_rng(0)
    total = int(args.minutes * 60 * SAMPLE_RATE)
    rec = asr.Recognizer(model)
    tenth = total // 10
    rows, finals, done, times, start_rss = [], 0, 0, [], rss_mb()
    for chunk in audio_loop(clips, total, rng):
        t = time.perf_counter()
        if rec.accept_waveform(chunk):
            rec.result()
            finals += 1
        times.append(time.perf_counter() - t)
        done += len(chunk)
        if done // tenth > len(rows) or done >= total:
            rows.append(
                {
                    "audio_min": round(done / SAMPLE_RATE / 60, 1),
                    "rss_mb": round(rss_mb(), 1),
                    "chunk_ms_mean": round(1000 * float(np.mean(times)), 3),
                    "chunk_ms_p99": round(1000 * float(np.percentile(times, 99)), 3),
                    "finals": finals,
                }
            )
            times = []
    rec.final_result()
    print_table(rows, ["audio_min", "rss_mb", "chunk_ms_mean", "chunk_ms_p99", "finals"])
    growth = rows[-1]["rss_mb"] - rows[0]["rss_mb"]
    slowdown = rows[-1]["chunk_ms_mean"] / rows[0]["chunk_ms_mean"]
    print(f"RSS growth from the first to the last tenth: {growth:+.1f} MB (start of run {start_rss:.0f} MB)")
    print(f"time per chunk, last tenth / first tenth: {slowdown:.2f}x")
    data = {
        "model": model_name,
        "minutes": args.minutes,
        "rows": rows,
        "rss_growth_mb": growth,
        "chunk_time_ratio": slowdown,
    }
    write_json(args.out, "long_stream", data)


if __name__ == "__main__":
    main()
