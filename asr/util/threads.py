"""`--threads` for the single-stream commands (transcribe, stream, mic): torch's CPU thread count."""

from __future__ import annotations

import argparse

from asr.util.errors import UserError

SINGLE_STREAM_THREADS = 1  # one stream gains nothing from a second thread (benchmarks/rtf.py: greedy 1 thread
# RTF 0.0093 against 0.0108 with 2) and loses 4-8x when the other core is busy


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=SINGLE_STREAM_THREADS,
        help=f"torch CPU threads (default {SINGLE_STREAM_THREADS}: best for one stream, above all on a busy machine)",
    )


def set_threads(threads: int) -> None:
    import torch

    if threads < 1:
        raise UserError(f"--threads must be at least 1, not {threads}")
    torch.set_num_threads(threads)
