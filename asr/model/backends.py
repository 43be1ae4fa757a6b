"""Exported models (ONNX Runtime, TorchScript) behind the streaming model contract.

`OnnxModel` and `TorchScriptModel` implement `asr.model.network.StreamingModel` as GRUCTC does: `tokens`, `config`,
`device` (the CPU), `source`, `extra`, `init_state(batch, device)` and `step(feats, state) -> (log_probs,
state)`; `eval()` is there so that code written for torch modules works unchanged.

The exported graph takes whole groups of S = config.subsampling frames; `step` keeps the
0 to S-1 leftover *raw* frames in `state.pending` (GRUCTC keeps normalised ones;
each backend reads only its own states).

Legend: B = batch, T = feature frames, U = output frames, F = mel bins, V = vocabulary.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from asr.model.network import ModelConfig, ModelState, initial_state, state_names


class StepBackend:
    """Common part: pending frames, state shapes; subclasses implement `_run(feats, *states)`, the states named by
    `asr.model.network.state_names(config)`, in order, returning (log_probs, *states)."""

    def __init__(self, tokens: list[str], config: ModelConfig, source: str):
        self.tokens = list(tokens)
        self.config = config
        self.source = source
        self.extra: dict = {}
        self.state_names = state_names(config)

    def eval(self):
        return self

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def init_state(self, batch: int = 1, device=None) -> ModelState:
        return initial_state(self.config, batch, self.device)

    def step(self, feats: torch.Tensor, state: ModelState):
        """feats (B, T, F) raw log-mel, any T >= 0 -> (log_probs (B, U, V), new state). The input state is kept."""
        x = torch.cat([state.pending, feats], dim=1) if state.pending.shape[1] else feats
        usable = x.shape[1] - x.shape[1] % self.config.subsampling
        pending = x[:, usable:]
        if usable == 0:
            return x.new_zeros(x.shape[0], 0, self.config.vocab_size), replace(state, pending=pending)
        log_probs, *states = self._run(x[:, :usable], *(getattr(state, name) for name in self.state_names))
        return log_probs, replace(state, pending=pending, **dict(zip(self.state_names, states)))

    def _run(self, feats, *states):
        raise NotImplementedError


class OnnxModel(StepBackend):
    """An exported .onnx step on ONNX Runtime's CPU provider; `threads` = intra-op threads (None: ORT's default)."""

    def __init__(self, path, threads: int | None = None):
        import onnxruntime as ort

        path = Path(path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types
            raise ValueError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0][:200]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "tokens" not in meta or "config" not in meta:
            raise ValueError(
                f"{path}: ONNX model without gru-asr metadata (tokens, config); export it with `asr export`"
            )
        super().__init__(json.loads(meta["tokens"]), ModelConfig.from_dict(json.loads(meta["config"])), str(path))
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _run(self, feats, *states):
        inputs = {"feats": _np(feats), **{name: _np(t) for name, t in zip(self.state_names, states)}}
        return tuple(torch.from_numpy(o) for o in self.session.run(self.output_names, inputs))


class TorchScriptModel(StepBackend):
    """An exported TorchScript step (fp32 or int8), loaded without the gru-asr model code."""

    def __init__(self, path):
        path = Path(path)
        extra = {"tokens.json": "", "config.json": ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                self.module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra).eval()
        except Exception as exc:  # torch.jit raises RuntimeError and friends
            raise ValueError(f"{path}: not a loadable TorchScript model ({str(exc).splitlines()[0][:200]})") from None
        if not extra["tokens.json"] or not extra["config.json"]:
            raise ValueError(f"{path}: TorchScript model without gru-asr tokens/config; export it with `asr export`")
        super().__init__(
            json.loads(extra["tokens.json"]), ModelConfig.from_dict(json.loads(extra["config.json"])), str(path)
        )

    @torch.inference_mode()
    def _run(self, feats, *states):
        return self.module(feats.float().contiguous(), *(t.contiguous() for t in states))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).contiguous().numpy()
