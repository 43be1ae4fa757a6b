"""Model export and int8 dynamic quantisation."""

from __future__ import annotations

import warnings

import torch


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
    for attr in ("tokens", "extra", "source"):
        if hasattr(model, attr):
            setattr(quantized, attr, getattr(model, attr))
    return quantized
