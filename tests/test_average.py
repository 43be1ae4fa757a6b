"""Checkpoint averaging (asr.model.average): the averaged bundle holds each tensor's mean and loads like any other;
bundles of different models, a corrupt file or none at all are one-line errors."""

from __future__ import annotations

import pytest
import torch

from asr.model.average import main
from asr.model.checkpoint import load_checkpoint, save_checkpoint
from asr.model.network import GRUCTC, ModelConfig


def _bundle(path, seed: int, hidden: int = 24):
    torch.manual_seed(seed)
    model = GRUCTC(ModelConfig(hidden_size=hidden, num_layers=2, conv_channels=16)).eval()
    with torch.no_grad():
        model.set_normalization(torch.randn(80), torch.rand(80) + 0.5)
    save_checkpoint(path, model, extra={"step": seed})
    return model


def test_average_is_each_tensors_mean_and_decodes(tmp_path, capsys):
    models = [_bundle(tmp_path / f"m{i}.pt", seed=i) for i in range(3)]
    out = tmp_path / "avg.pt"
    assert main([str(out), *(str(tmp_path / f"m{i}.pt") for i in range(3))]) == 0
    assert "3 checkpoints averaged" in capsys.readouterr().out
    avg = load_checkpoint(out)
    states = [m.state_dict() for m in models]
    for key, value in avg.state_dict().items():
        expected = sum(s[key].double() for s in states) / 3
        assert torch.allclose(value.double(), expected, atol=1e-6), key
    assert not torch.equal(avg.rnn.weight_hh_l0, models[0].rnn.weight_hh_l0)
    assert avg.extra["step"] == 0 and len(avg.extra["averaged"]) == 3
    with torch.no_grad():
        log_probs, lens = avg(torch.randn(1, 100, 80), torch.tensor([100]))
    assert torch.isfinite(log_probs).all() and int(lens[0]) == log_probs.shape[1]


def test_one_checkpoint_averages_to_itself(tmp_path):
    model = _bundle(tmp_path / "m.pt", seed=4)
    assert main([str(tmp_path / "avg.pt"), str(tmp_path / "m.pt")]) == 0
    for key, value in load_checkpoint(tmp_path / "avg.pt").state_dict().items():
        assert torch.equal(value, model.state_dict()[key])


@pytest.mark.parametrize(
    "second, message",
    [("wider", "not the same model as"), ("corrupt", "truncated or corrupt"), ("missing", "no such file")],
)
def test_bad_inputs_are_one_line_errors_and_write_nothing(tmp_path, capsys, second, message):
    _bundle(tmp_path / "a.pt", seed=0)
    other = tmp_path / "b.pt"
    if second == "wider":
        _bundle(other, seed=1, hidden=32)
    elif second == "corrupt":
        other.write_bytes((tmp_path / "a.pt").read_bytes()[:500])
    out = tmp_path / "avg.pt"
    assert main([str(out), str(tmp_path / "a.pt"), str(other)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("average: error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
