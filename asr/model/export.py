"""Model export (ONNX, TorchScript) and int8 dynamic quantisation (`asr.model.loading` loads what it writes).

    asr export --format onnx --model model.pt --out model.onnx [--int8]
    asr export --format torchscript --model model.pt --out model.ts [--int8]

Both formats hold the streaming step without its pending-frame buffer:

    (feats (B, T, F), hidden (L, B, H'), ctx1 (B, 2, F), ctx2 (B, 2, C)[, look (B, K, H)])
        -> (log_probs (B, T/S, V), hidden, ctx1, ctx2[, look])

(`look` only for a model with lookahead, K = config.lookahead: files of models without it are as before.)

T must be a multiple of S, the model's subsampling; B and T are dynamic. The loaders in
`asr.model.backends` carry the 0 to S-1 leftover frames themselves, so the loaded
models have GRUCTC's `step(feats, state)` for any T. Tokens and the model
config travel inside the file (ONNX metadata_props / TorchScript extra files).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from asr.model.network import ModelState, state_names
from asr.model.user_models import MODEL_HELP
from asr.util.atomic import atomic_open

FORMATS = ("onnx", "torchscript")
EXAMPLE_BATCH, EXAMPLE_GROUPS = 2, 4  # shape of the example input used for tracing (groups of S frames)
MAX_BATCH, MAX_GROUPS = 4096, 1 << 20  # bounds of the dynamic dimensions (streams; groups of S frames)
TS_EXTRA_FILES = ("tokens.json", "config.json")


def quantize_int8(model):
    """Dynamic int8 quantisation of the GRU/LSTM and the output layer, for CPU inference.

    Uses torch.ao's eager dynamic quantisation (deprecated in favour of torchao,
    which does not quantise recurrent layers yet). The result keeps `step`,
    `forward`, `init_state` and the model's tokens.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(
            model.cpu().eval(), {torch.nn.GRU, torch.nn.LSTM, torch.nn.Linear}, dtype=torch.qint8
        )
    return quantized  # a copy of the model: its tokens, source and extra included


class StepModule(nn.Module):
    """GRUCTC's streaming step as a pure function of tensors (T a multiple of S), for export."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, feats, hidden, ctx1, ctx2):
        return self._step(feats, hidden, ctx1, ctx2, None)[:4]

    def _step(self, feats, hidden, ctx1, ctx2, look):
        m = self.model
        y, ctx1, ctx2 = m._subsample(m.normalize(feats), ctx1, ctx2)
        y, hidden = m._rnn(y, hidden)
        y, look = m._look(y, look)
        return m._head(y), hidden, ctx1, ctx2, look


class LookaheadStepModule(StepModule):
    """The step of a model with lookahead: one more state tensor, the last K GRU outputs."""

    def forward(self, feats, hidden, ctx1, ctx2, look):
        return self._step(feats, hidden, ctx1, ctx2, look)


def _step_module(model) -> StepModule:
    return LookaheadStepModule(model) if model.config.lookahead else StepModule(model)


def _example_inputs(model) -> tuple[torch.Tensor, ...]:
    state = model.init_state(EXAMPLE_BATCH, torch.device("cpu"))
    feats = torch.randn(EXAMPLE_BATCH, EXAMPLE_GROUPS * model.config.subsampling, model.config.n_mels)
    return (feats, *(getattr(state, name) for name in state_names(model.config)))


def metadata(model) -> dict[str, str]:
    return {"tokens": json.dumps(list(model.tokens)), "config": json.dumps(model.config.to_dict())}


def export_onnx(model, out, int8: bool = False) -> Path:
    """Write the streaming step as ONNX (opset 18, dynamo exporter); int8 via onnxruntime's quantize_dynamic."""
    import onnx

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    groups = torch.export.Dim("groups", min=1, max=MAX_GROUPS)
    names = state_names(model.config)
    dynamic = {"feats": {0: batch, 1: model.config.subsampling * groups}}
    dynamic.update({name: {ModelState.batch_dim(name): batch} for name in names})
    tmp = out.with_name(out.name + ".tmp")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" notes
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
        warnings.simplefilter("ignore")
        # torch.export first, then ONNX: torch.onnx.export(module) fails on a second export in one process
        with torch.no_grad():
            program = torch.export.export(_step_module(model), _example_inputs(model), dynamic_shapes=dynamic)
        program = torch.onnx.export(
            program,
            input_names=["feats", *names],
            output_names=["log_probs", *(f"{name}_out" for name in names)],
            dynamo=True,
            verbose=False,
        )
    proto = program.model_proto
    _fix_output_shapes(proto)
    for key, value in metadata(model).items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, tmp)
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        fp32, tmp = tmp, out.with_name(out.name + ".int8.tmp")
        root = logging.getLogger()
        level = root.level
        root.setLevel(max(level, logging.ERROR))  # onnxruntime's "consider pre-processing" warnings: only meanwhile
        try:
            quantize_dynamic(fp32, tmp, weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)  # the host program's logging as it was
        fp32.unlink()
        _copy_metadata(proto, tmp)
    tmp.replace(out)
    return out


def _fix_output_shapes(proto) -> None:
    """The exporter writes the example's output length (4) as a fixed dim: make it symbolic, drop inferred shapes."""
    del proto.graph.value_info[:]
    for value in proto.graph.output:
        dims = value.type.tensor_type.shape.dim
        if value.name == "log_probs":
            dims[1].Clear()
            dims[1].dim_param = "frames_out"


def _copy_metadata(source_proto, path: Path) -> None:
    import onnx

    proto = onnx.load(path)
    del proto.metadata_props[:]
    proto.metadata_props.extend(source_proto.metadata_props)
    onnx.save(proto, path)


def export_torchscript(model, out, int8: bool = False) -> Path:
    """Trace the streaming step (optionally of the int8 model) into a TorchScript file with tokens and config."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    if int8:
        model = quantize_int8(model)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(_step_module(model), _example_inputs(model), check_trace=False)
    extra = {f"{k}.json": v for k, v in metadata(model).items()}
    with warnings.catch_warnings(), atomic_open(out, "wb") as f:
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still the simplest C++-loadable form
        torch.jit.save(traced, f, _extra_files=extra)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr export", description="export the streaming model to ONNX or TorchScript")
    p.add_argument("--format", required=True, choices=FORMATS, help="onnx (for ONNX Runtime) or torchscript")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--out", required=True, help="output file (e.g. model.onnx, model.ts)")
    p.add_argument("--int8", action="store_true", help="int8 dynamic quantisation of the weights")
    return p


def main(argv=None) -> int:
    from asr.model.checkpoint import CheckpointError
    from asr.model.loading import load_model

    args = build_parser().parse_args(argv)
    out = Path(args.out)
    try:
        if out.is_dir():
            raise ValueError(f"--out {out}: is a directory, give a file name")
        model = load_model(args.model, device="cpu")
        if args.format == "onnx":
            export_onnx(model, out, int8=args.int8)
        else:
            export_torchscript(model, out, int8=args.int8)
    except ImportError as exc:
        print(
            f"asr export: error: {args.format} export needs {exc.name} (pip install onnx onnxruntime onnxscript)",
            file=sys.stderr,
        )
        return 2
    except (CheckpointError, ValueError, FileNotFoundError, OSError) as exc:
        print(f"asr export: error: {exc}", file=sys.stderr)
        return 2
    size = out.stat().st_size / 1e6
    print(f"wrote {out} ({args.format}{' int8' if args.int8 else ''}, {size:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
