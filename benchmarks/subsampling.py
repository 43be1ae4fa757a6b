"""Output frame rate: the GRU at 4x, 3x and 2x subsampling (40, 30, 20 ms frames), same size otherwise.

    python benchmarks/subsampling.py --train M.jsonl[:W] ... --valid V.jsonl ... [--minutes 25] [--parallel 3]
    python benchmarks/subsampling.py --no-train --train M.jsonl   # step times and CTC frame occupancy only

Fewer output frames are cheaper (the GRU runs once per output frame) but leave character CTC less room:
occupancy = (characters + repeated-letter blanks) / output frames; above 1 an utterance cannot be aligned at
all, and alignments get hard well before that. Printed per training manifest (speed 1.1 augmentation raises
it by a tenth). Step time: fastest `model.step` on a 24-frame chunk (240 ms) with carried state, batch 1 and
100. Training: `python -m asr.train` for the same wall-clock budget (`--minutes`, trainings run side by side
with `--parallel`), same data, seed and options; CER/WER from its final validation, and the audio seconds it
trained per wall-clock second.
"""

from __future__ import annotations

import argparse
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import common
import numpy as np
import torch

from asr.model.network import GRUCTC, STRIDES, ModelConfig
from asr.train.dataset import parse_weighted
from asr.train.manifests import read_manifest

CHUNK_FRAMES = 24  # feature frames per timed step: a multiple of 2, 3 and 4
BATCHES = (1, 100)
TIMING_STEPS = 30


def occupancy(manifest: str, subsampling: int) -> dict:
    """CTC labels needed per output frame over a manifest: median, 90th percentile, share above 0.8 and 1."""
    ratios = []
    for e in read_manifest(manifest):
        text = e["text"]
        needed = len(text) + sum(a == b for a, b in zip(text, text[1:], strict=False))  # a blank between repeats
        frames = int(e["duration"] * 100) // subsampling
        ratios.append(needed / max(frames, 1))
    r = np.array(ratios)
    return {
        "median": float(np.median(r)),
        "p90": float(np.percentile(r, 90)),
        "over_0.8": float((r > 0.8).mean()),
        "over_1": float((r > 1).mean()),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="JSON results file (default: benchmarks/results/subsampling.json)")
    p.add_argument("--subsampling", type=int, nargs="+", default=[4, 3, 2], choices=sorted(STRIDES))
    common.add_training_arguments(p, steps=100000, minutes=25.0, warmup_steps=300, parallel=3)
    args = p.parse_args(argv)
    if not args.train or (not args.no_train and not args.valid):
        p.error("--train (and --valid, unless --no-train) are needed")

    torch.set_num_threads(args.threads)
    rows = []
    for s in args.subsampling:
        config = ModelConfig(subsampling=s)
        row = {
            "subsampling": s,
            "frame_ms": round(1000 * config.frame_shift),
            "params": GRUCTC(config).num_parameters(),
        }
        for batch in BATCHES:
            row[f"step_ms_b{batch}"] = 1000 * common.step_time(GRUCTC(config), batch, CHUNK_FRAMES, TIMING_STEPS)
        for spec in args.train:
            path, _ = parse_weighted(spec)
            occ = occupancy(path, s)
            stem = Path(path).stem
            row[f"occ_median_{stem}"], row[f"occ_over1_{stem}"] = occ["median"], occ["over_1"]
            row.setdefault("occupancy", {})[stem] = occ
        print(f"  {s}x: step b1 {row['step_ms_b1']:.2f} ms, b100 {row['step_ms_b100']:.2f} ms", flush=True)
        rows.append(row)
    if not args.no_train:
        with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.parallel) as pool:
            work = Path(args.work_dir or tmp)

            def run(s: int) -> dict:
                return common.train_and_score(f"{s}x", ["--subsampling", str(s)], args, work / f"sub{s}")

            for row, score in zip(rows, pool.map(run, args.subsampling), strict=True):
                row.update(score)

    print()
    columns = ["subsampling", "frame_ms", "step_ms_b1", "step_ms_b100"]
    columns += sorted(k for k in rows[0] if k.startswith("occ_"))
    if not args.no_train:
        columns += ["steps", "audio_s_per_s", "train_minutes"]
        columns += sorted({k for row in rows for k in row if k.startswith(("cer_", "wer_"))})
    common.print_table(rows, columns)
    base = rows[0]
    for row in rows[1:]:
        print(f"{row['subsampling']}x vs {base['subsampling']}x: step {row['step_ms_b1'] / base['step_ms_b1']:.2f}x (b1)"
              f" / {row['step_ms_b100'] / base['step_ms_b100']:.2f}x (b100)")  # fmt: skip
    common.write_json(
        args.out,
        "subsampling",
        {"machine": common.machine(), "threads": args.threads, "chunk_frames": CHUNK_FRAMES,
         "training": None if args.no_train else vars(args), "results": rows},
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
