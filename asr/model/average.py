"""Checkpoint averaging: one bundle whose weights are the mean of several bundles' of the same model.

    python -m asr.model.average OUT MODEL [MODEL ...]

The usual last step of a training run (as WeNet's and ESPnet's recipes do): the weights of the last few
checkpoints of one run, saved a few hundred steps apart late in training, averaged element by element. The mean
sits nearer the middle of the region the optimiser was moving about in, and often decodes better than any one of
them; whether it does is for the selection score to say (`recipes/default_en/local/selection.py`). The bundles
must be the same model: the same config, tokens and tensors (checkpoints of different runs, or of a run before
and after `--widen`, are refused). The first bundle's `extra` is kept, with the list of averaged files added.
"""

from __future__ import annotations

import argparse
import sys

import torch

from asr.model.checkpoint import CheckpointError, load_checkpoint, read_bundle, save_checkpoint


def average_state_dicts(paths: list) -> dict:
    """The element-wise mean of the bundles' state dicts (summed in float64, stored as each tensor's dtype);
    CheckpointError naming the file when one is not the first's model."""
    if not paths:
        raise CheckpointError("no checkpoints to average")
    first = read_bundle(paths[0])
    total = {key: value.to(torch.float64) for key, value in first["state_dict"].items()}
    for path in paths[1:]:
        bundle = read_bundle(path)
        for key in ("config", "tokens"):
            if bundle[key] != first[key]:
                raise CheckpointError(f"{path}: not the same model as {paths[0]} (its {key} differs)")
        state = bundle["state_dict"]
        if state.keys() != total.keys():
            raise CheckpointError(f"{path}: not the same model as {paths[0]} (other tensors)")
        for key, value in state.items():
            if value.shape != total[key].shape:
                raise CheckpointError(f"{path}: not the same model as {paths[0]} ({key} is {tuple(value.shape)})")
            total[key] += value.to(torch.float64)
    dtypes = {key: value.dtype for key, value in first["state_dict"].items()}
    return {key: (value / len(paths)).to(dtypes[key]) for key, value in total.items()}


def average(paths: list, out) -> None:
    """Write the average of the bundles at PATHS to OUT (a bundle like any other)."""
    state = average_state_dicts(paths)
    model = load_checkpoint(paths[0])
    model.load_state_dict(state)
    save_checkpoint(out, model, extra={**model.extra, "averaged": [str(p) for p in paths]})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", help="where to write the averaged bundle")
    p.add_argument("models", nargs="+", metavar="MODEL", help="bundles of one model (e.g. one run's checkpoints)")
    args = p.parse_args(argv)
    try:
        average(args.models, args.out)
    except CheckpointError as exc:
        print(f"average: error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(args.models)} checkpoints averaged: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
