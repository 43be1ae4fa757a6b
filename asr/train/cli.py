"""`asr train` / `python -m asr.train`: parse the options, train, report a problem as one line."""

from __future__ import annotations

import sys
import warnings

import torch.distributed as dist

from asr.train.manifests import DataError
from asr.train.options import TrainError, parse_args
from asr.train.trainer import Trainer


def main(argv=None) -> int:
    args = parse_args(argv)
    warnings.formatwarning = lambda message, *rest, **kw: f"warning: {message}\n"
    try:
        trainer = Trainer(args)
        trainer.fit()
        if dist.is_initialized():
            # every rank done with its collectives before any tears its process group down: a rank that
            # destroyed gloo while another was still in one aborted at exit now and then (SIGABRT)
            dist.barrier()
    except (TrainError, DataError) as exc:
        print(f"asr train: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0
