"""The auxiliary loss (`asr train --aux-weight W`): one recurrent layer of the model learns to predict a big model's
encoder states (Whisper's, asr.train.teacher_targets) of the clean audio while the model hears the augmented
audio, so that what a model trained on 680,000 hours knows about voices shapes ours. A small head reads the tapped
layer's outputs at the frame and K frames after it (a lookahead: the teacher's states saw the whole utterance),
so the layer need not be the teacher; the head is the trainer's alone, never in a saved model, and inference costs
nothing. The loss is the mean squared error over the frames that have a target (the teacher's projected states
are whitened: about 1 per dimension for a head that knows nothing).
"""

from __future__ import annotations

import torch
from torch import nn

from asr.model.network import GRUCTC


class AuxHead(nn.Module):
    """(B, U, H) layer outputs -> (B, U, D) predictions; frame u reads frames u .. u + lookahead."""

    def __init__(self, hidden: int, dims: int, lookahead: int = 2):
        super().__init__()
        self.lookahead = lookahead
        self.conv = nn.Conv1d(hidden, dims, lookahead + 1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(y.transpose(1, 2), (0, self.lookahead))
        return self.conv(x).transpose(1, 2)


class WithAux(nn.Module):
    """The model and the head as one module (so DDP averages the head's gradients too): forward gives the model's
    (log_probs, out_lens) and the head's predictions from layer `layer`."""

    def __init__(self, model: GRUCTC, head: AuxHead, layer: int):
        super().__init__()
        self.model, self.head, self.layer = model, head, layer

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor):
        log_probs, out_lens, tap = self.model.forward_tapped(feats, feat_lens, self.layer)
        return log_probs, out_lens, self.head(tap)


def aux_loss(pred: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error per dimension over the frames whose mask is set ((B, U, D), (B, U', D), (B, U'): the
    shorter of U and U' counts); 0 (with a gradient) where none is."""
    frames = min(pred.shape[1], targets.shape[1])
    pred, targets, mask = pred[:, :frames], targets[:, :frames], mask[:, :frames]
    if not mask.any():
        return pred.sum() * 0.0
    return (pred[mask] - targets[mask]).pow(2).mean()
