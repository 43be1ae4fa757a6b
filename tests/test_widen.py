"""Net2Net widening (asr.model.widen): the wider model computes the same log-probs, offline and streamed, for a GRU
or an LSTM, with or without lookahead; the CLI writes a loadable bundle; bad widths are one-line errors."""

from __future__ import annotations

import pytest
import torch

from asr.model.checkpoint import load_checkpoint, save_checkpoint
from asr.model.network import GRUCTC, ModelConfig
from asr.model.widen import main, widen


def _model(**overrides) -> GRUCTC:
    torch.manual_seed(0)
    config = ModelConfig(hidden_size=24, num_layers=2, conv_channels=16, **overrides)
    model = GRUCTC(config).eval()
    with torch.no_grad():  # non-trivial statistics and weights, as a trained model has
        model.set_normalization(torch.randn(80), torch.rand(80) + 0.5)
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def _streamed(model: GRUCTC, feats: torch.Tensor, chunk: int) -> torch.Tensor:
    state, outs = model.init_state(feats.shape[0]), []
    for start in range(0, feats.shape[1], chunk):
        out, state = model.step(feats[:, start : start + chunk], state)
        outs.append(out)
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("overrides", [{}, {"cell": "lstm"}, {"lookahead": 2}])
def test_widened_model_computes_the_same_log_probs(overrides):
    model = _model(**overrides)
    feats, lens = torch.randn(3, 203, 80), torch.tensor([203, 150, 97])
    wide = widen(model, 61, noise=0.0, seed=3).eval()  # 61: some units copied three times, most twice or once
    assert wide.config.hidden_size == 61 and wide.rnn.hidden_size == 61
    assert wide.num_parameters() > model.num_parameters()
    with torch.no_grad():
        before, _ = model(feats, lens)
        after, out_lens = wide(feats, lens)
        assert torch.allclose(before, after, atol=1e-4), (before - after).abs().max()
        assert torch.allclose(_streamed(wide, feats, 37), after, atol=1e-4)  # streaming still equals offline
    assert torch.equal(wide.feat_mean, model.feat_mean) and torch.equal(wide.conv1.weight, model.conv1.weight)


def test_noise_moves_the_weights_a_little_and_is_seeded():
    model = _model()
    feats, lens = torch.randn(2, 120, 80), torch.tensor([120, 80])
    a, b, c = (widen(model, 40, noise=0.01, seed=s).eval() for s in (1, 1, 2))
    assert torch.equal(a.rnn.weight_hh_l0, b.rnn.weight_hh_l0) and not torch.equal(
        a.rnn.weight_hh_l0, c.rnn.weight_hh_l0
    )
    copies = a.rnn.weight_hh_l1[24:40]  # widened units' rows differ from their originals' now
    assert not any(torch.equal(copies[i], a.rnn.weight_hh_l1[j]) for i in range(16) for j in range(24))
    with torch.no_grad():
        before, _ = model(feats, lens)
        after, _ = a(feats, lens)
    assert 0 < (before - after).abs().max() < 0.5


def test_cli_writes_a_bundle_and_refuses_a_narrower_width(tmp_path, capsys):
    model = _model()
    model.extra = {"step": 7}
    save_checkpoint(tmp_path / "m.pt", model, extra=model.extra)
    assert main([str(tmp_path / "m.pt"), str(tmp_path / "w.pt"), "--hidden-size", "32", "--noise", "0"]) == 0
    wide = load_checkpoint(tmp_path / "w.pt")
    assert wide.config.hidden_size == 32 and wide.tokens == model.tokens
    assert wide.extra["step"] == 7 and wide.extra["widened"] == {"from": 24, "to": 32, "noise": 0.0}
    assert "24 -> 32 units a layer" in capsys.readouterr().out
    for argv in (
        [str(tmp_path / "m.pt"), str(tmp_path / "x.pt"), "--hidden-size", "24"],
        [str(tmp_path / "nope.pt"), str(tmp_path / "x.pt"), "--hidden-size", "48"],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("widen: error:") and len(err.splitlines()) == 1
    assert not (tmp_path / "x.pt").exists()
