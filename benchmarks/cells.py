"""GRU vs LSTM at equal hidden size and at equal parameter count: parameters, step time, CER after short trainings.

    python benchmarks/cells.py --train M.jsonl --valid V.jsonl [--steps 300] [--minutes 4] [--out FILE]
    python benchmarks/cells.py --no-train        # sizes and step times only

Step time: fastest wall time of one `model.step` on a 16-frame chunk (160 ms of
audio) with carried state, batch 1 and batch 100, at --threads torch threads.
Training: `python -m asr.train` with the same manifests, seed, step budget and
options for every cell; CER is the validation CER that asr.train logs at the end.
"""

from __future__ import annotations

import argparse
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import common
import torch

from asr.model.network import GRUCTC, ModelConfig

CHUNK_FRAMES = 16  # feature frames (10 ms) per step
BATCHES = (1, 100)
TIMING_STEPS = 30  # timed steps per batch size (after warm-up)


def size_configs(base: ModelConfig) -> list[tuple[str, ModelConfig]]:
    """The GRU, an LSTM of the same hidden size, and an LSTM whose parameter count is closest to the GRU's."""
    gru = ModelConfig(**{**base.to_dict(), "cell": "gru"})
    lstm_same = ModelConfig(**{**base.to_dict(), "cell": "lstm"})
    target = GRUCTC(gru).num_parameters()
    hidden = min(
        range(16, base.hidden_size + 1),
        key=lambda h: abs(
            count_parameters(ModelConfig(**{**base.to_dict(), "cell": "lstm", "hidden_size": h})) - target
        ),
    )
    lstm_params = ModelConfig(**{**base.to_dict(), "cell": "lstm", "hidden_size": hidden})
    return [
        (f"gru H={gru.hidden_size}", gru),
        (f"lstm H={lstm_same.hidden_size} (same H)", lstm_same),
        (f"lstm H={hidden} (same params)", lstm_params),
    ]


def count_parameters(c: ModelConfig) -> int:
    """GRUCTC.num_parameters() without building the model (checked against it in `main`)."""
    conv = c.conv_channels * c.n_mels * 3 + c.conv_channels + c.conv_channels * c.conv_channels * 3 + c.conv_channels
    return conv + rnn_parameters(c) + c.hidden_size * c.vocab_size + c.vocab_size


def rnn_parameters(c: ModelConfig) -> int:
    """Weights and the two biases of every layer of the recurrent stack."""
    gates = 3 if c.cell == "gru" else 4
    inputs = [c.conv_channels] + [c.hidden_size] * (c.num_layers - 1)
    return sum(gates * c.hidden_size * (i + c.hidden_size + 2) for i in inputs)


def train_and_score(name: str, config: ModelConfig, args, out_dir: Path) -> dict:
    """Run asr.train for one cell; the CER/WER of its final validation and the steps it reached."""
    options = ["--cell", config.cell, "--hidden-size", str(config.hidden_size)]
    options += ["--num-layers", str(config.num_layers), "--conv-channels", str(config.conv_channels)]
    return common.train_and_score(name, options, args, out_dir / name.split()[0] / f"h{config.hidden_size}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="JSON results file (default: benchmarks/results/cells.json)")
    p.add_argument("--hidden-size", type=int, default=ModelConfig.hidden_size, help="the GRU's hidden size")
    p.add_argument("--num-layers", type=int, default=ModelConfig.num_layers)
    common.add_training_arguments(p, steps=300, minutes=4.0, warmup_steps=50, parallel=1)
    args = p.parse_args(argv)
    if not args.no_train and not (args.train and args.valid):
        p.error("--train and --valid are needed for the trainings (or --no-train)")

    torch.set_num_threads(args.threads)
    base = ModelConfig(hidden_size=args.hidden_size, num_layers=args.num_layers)
    rows, cells = [], size_configs(base)
    for name, config in cells:  # timings first, with no training running beside them
        params = GRUCTC(config).num_parameters()
        assert params == count_parameters(config), "count_parameters is out of date with GRUCTC"
        row = {"cell": name, "params": params, "rnn_params": rnn_parameters(config)}
        for batch in BATCHES:
            row[f"step_ms_b{batch}"] = 1000 * common.step_time(GRUCTC(config), batch, CHUNK_FRAMES, TIMING_STEPS)
        print(f"  {name}: {params / 1e6:.2f} M params, step b1 {row['step_ms_b1']:.2f} ms, "
              f"b100 {row['step_ms_b100']:.2f} ms", flush=True)  # fmt: skip
        rows.append(row)
    if not args.no_train:
        with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.parallel) as pool:
            work = Path(args.work_dir or tmp)
            scores = pool.map(lambda cell: train_and_score(*cell, args, work), cells)
            for row, score in zip(rows, scores, strict=True):
                row.update(score)

    print()
    columns = ["cell", "params", "rnn_params", "step_ms_b1", "step_ms_b100"]
    if not args.no_train:
        columns += ["steps", "train_minutes"]
        columns += sorted({k for row in rows for k in row if k.startswith(("cer_", "wer_"))})
    common.print_table(rows, columns)
    gru = rows[0]
    for row in rows[1:]:
        print(
            f"{row['cell']}: {row['params'] / gru['params']:.2f}x the GRU's parameters, "
            f"step {row['step_ms_b1'] / gru['step_ms_b1']:.2f}x (b1) / {row['step_ms_b100'] / gru['step_ms_b100']:.2f}x (b100)"
        )
    common.write_json(
        args.out,
        "cells",
        {
            "machine": common.machine(),
            "threads": args.threads,
            "chunk_frames": CHUNK_FRAMES,
            "training": None if args.no_train else vars(args),
            "results": rows,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
