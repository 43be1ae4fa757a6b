"""The CTC loss, the KL pull towards a reference model, greedy validation (WER, CER, loss) of a model, and the mean
of several sets' validations (`asr train --select-on mean`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from asr.decode.greedy import ctc_greedy
from asr.model.network import GRUCTC
from asr.model.tokenizer import BLANK

MEAN = "mean"  # the "valid" of the mean's record in log.jsonl
SCORES = ("wer", "cer", "loss")


def frame_kl(reference: torch.Tensor, log_probs: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """Mean over the valid output frames of KL(reference || model); both (B, U, V) log-probs, lens (B,)."""
    valid = torch.arange(log_probs.shape[1], device=lens.device)[None, :] < lens[:, None]  # (B, U)
    kl = (reference.exp() * (reference - log_probs)).sum(-1)  # (B, U)
    return (kl * valid).sum() / valid.sum().clamp_min(1)


@torch.inference_mode()
def validate(model: GRUCTC, loader, tokenizer, device) -> dict:
    """Greedy-decode a loader of (feats, lens, targets, target_lens): WER, CER and mean CTC loss."""
    import jiwer

    was_training = model.training
    model.eval()
    refs, hyps, losses = [], [], []
    for batch in loader:
        if batch is None:
            continue
        feats, feat_lens, targets, target_lens = (t.to(device) for t in batch)
        log_probs, out_lens = model(feats, feat_lens)
        losses.append(ctc(log_probs.float(), targets, out_lens, target_lens).item())
        for lp, n, tgt, m in zip(
            log_probs.float().cpu(), out_lens.tolist(), targets.cpu(), target_lens.tolist(), strict=True
        ):
            refs.append(tokenizer.decode(tgt[:m].tolist()))
            hyps.append(ctc_greedy(lp[:n], tokenizer.tokens)[0])
    model.train(was_training)
    if not refs:
        return {"wer": float("nan"), "cer": float("nan"), "loss": float("nan"), "utterances": 0}
    return {
        "wer": jiwer.wer(refs, hyps),
        "cer": jiwer.cer(refs, hyps),
        "loss": sum(losses) / len(losses),
        "utterances": len(refs),
    }


def mean_result(results: list[dict]) -> dict:
    """The mean of several validation sets' WER, CER and loss, every set weighing the same however many utterances
    it has (no one corpus dominates); sets without a usable utterance are left out (NaN when none is left)."""
    scored = [r for r in results if r["utterances"]]
    mean = {k: sum(r[k] for r in scored) / len(scored) if scored else float("nan") for k in SCORES}
    return {**mean, "sets": len(scored), "utterances": sum(r["utterances"] for r in scored)}


def ctc(log_probs, targets, out_lens, target_lens):
    """Mean CTC loss; log_probs (B, U, V) -> (U, B, V) as ctc_loss wants."""
    return F.ctc_loss(
        log_probs.transpose(0, 1), targets, out_lens, target_lens, blank=BLANK, reduction="mean", zero_infinity=True
    )
