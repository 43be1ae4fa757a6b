"""Export: ONNX / TorchScript steps equal the PyTorch model over chunks with carried state; int8 stays close."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import asr
from asr.apps.cli import main as cli_main
from asr.audio.files import load_audio
from asr.model.checkpoint import CheckpointError, save_checkpoint
from asr.model.export import export_onnx, export_torchscript
from asr.model.loading import load_model
from asr.model.network import GRUCTC, ModelConfig, StreamingModel
from asr.model.tokenizer import DEFAULT_TOKENS
from asr.stream import EndpointConfig, Recognizer

CHUNKS = (16, 7, 1, 9, 32, 3, 12)  # feature frames per step: multiples of 4 and leftovers
FP32_TOLERANCE = 1e-4
INT8_TOLERANCE = 0.5  # log-prob difference allowed after int8 quantisation (random weights; measured ~0.01)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(7)
    model = GRUCTC(ModelConfig()).eval()
    path = tmp_path_factory.mktemp("export") / "random.pt"
    save_checkpoint(path, model, DEFAULT_TOKENS)
    return path


@pytest.fixture(scope="module")
def model(model_path):
    return asr.load_model(model_path, device="cpu")


@pytest.fixture(scope="module")
def exported(model, model_path):
    """{(format, int8): path}, exported once per module."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out = {}
    for int8 in (False, True):
        suffix = "_int8" if int8 else ""
        out["onnx", int8] = export_onnx(model, model_path.with_name(f"m{suffix}.onnx"), int8=int8)
        out["torchscript", int8] = export_torchscript(model, model_path.with_name(f"m{suffix}.ts"), int8=int8)
    return out


def test_int8_onnx_export_leaves_the_programs_logging_as_it_was(model, tmp_path):
    """onnxruntime's quantiser warns a lot, so the export raises the root logger's level while it runs, and only
    then: a program that exports (the server, a test run) keeps its warnings afterwards."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.INFO)
    try:
        export_onnx(model, tmp_path / "m.onnx", int8=True)
        assert root.level == logging.INFO
    finally:
        root.setLevel(before)


def max_step_difference(reference, other, batch: int = 3) -> float:
    """Largest |log-prob| difference over CHUNKS steps, each model carrying its own state."""
    gen = torch.Generator().manual_seed(0)
    s_ref, s_other = reference.init_state(batch, "cpu"), other.init_state(batch, "cpu")
    worst = 0.0
    with torch.inference_mode():
        for frames in CHUNKS:
            feats = torch.randn(batch, frames, reference.config.n_mels, generator=gen) * 3 - 5
            a, s_ref = reference.step(feats, s_ref)
            b, s_other = other.step(feats, s_other)
            assert a.shape == b.shape
            if a.numel():
                worst = max(worst, float((a - b).abs().max()))
    worst = max(worst, float((s_ref.hidden - s_other.hidden).abs().max()))
    if s_ref.look.numel():
        worst = max(worst, float((s_ref.look - s_other.look).abs().max()))
    return worst


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_fp32_export_matches_torch(model, exported, fmt):
    loaded = load_model(exported[fmt, False])
    assert loaded.tokens == model.tokens and loaded.config == model.config
    assert max_step_difference(model, loaded) < FP32_TOLERANCE


def test_export_of_a_3x_subsampling_model_matches_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(5)
    model = GRUCTC(ModelConfig(hidden_size=48, num_layers=2, conv_channels=32, subsampling=3)).eval()
    for path in (export_onnx(model, tmp_path / "m3.onnx"), export_torchscript(model, tmp_path / "m3.ts")):
        loaded = load_model(path)
        assert loaded.config.subsampling == 3
        assert max_step_difference(model, loaded) < FP32_TOLERANCE, path


def test_export_of_a_lookahead_model_matches_torch(tmp_path):
    """The lookahead's buffer travels as one more state tensor; files without lookahead keep their inputs."""
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(6)
    model = GRUCTC(ModelConfig(hidden_size=48, num_layers=2, conv_channels=32, lookahead=2)).eval()
    torch.nn.init.normal_(model.lookahead.weight)
    for path in (export_onnx(model, tmp_path / "la.onnx"), export_torchscript(model, tmp_path / "la.ts")):
        loaded = load_model(path)
        assert loaded.config.lookahead == 2
        assert max_step_difference(model, loaded) < FP32_TOLERANCE, path
    names = [i.name for i in ort.InferenceSession(str(tmp_path / "la.onnx")).get_inputs()]
    assert names == ["feats", "hidden", "ctx1", "ctx2", "look"]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_int8_export_runs_and_stays_close(model, exported, fmt):
    diff = max_step_difference(model, load_model(exported[fmt, True]))
    print(f"{fmt} int8 max |log-prob difference| = {diff:.4f}")
    assert 0 < diff < INT8_TOLERANCE


def recognize(model, samples: np.ndarray) -> dict:
    rec = Recognizer(model, endpoint=EndpointConfig(enabled=False))
    for i in range(0, len(samples), 3200):  # 0.2 s chunks
        rec.accept_waveform(samples[i : i + 3200])
    return rec.final_result()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_recognizer_on_exported_model_gives_the_same_result(model, exported, speech_wav, fmt):
    samples = load_audio(speech_wav)
    expected = recognize(model, samples)
    assert expected["text"]
    assert recognize(load_model(exported[fmt, False]), samples) == expected


def test_transcribe_accepts_an_onnx_model(model, exported, speech_wav):
    assert (
        asr.transcribe(load_model(exported["onnx", False]), speech_wav)["text"]
        == asr.transcribe(model, speech_wav)["text"]
    )


def test_onnx_threads_option(exported):
    from asr.model.backends import OnnxModel

    one = OnnxModel(exported["onnx", False], threads=1)
    assert max_step_difference(load_model(exported["onnx", False]), one) == 0


def test_every_loaded_form_keeps_the_streaming_model_contract(model_path, exported):
    for path in (model_path, *exported.values()):
        loaded = load_model(path, device="cpu")
        assert isinstance(loaded, StreamingModel) and loaded.device == torch.device("cpu")
        assert loaded.source == str(path) and len(loaded.tokens) == loaded.config.vocab_size


def test_load_model_reads_bundles_and_rejects_missing_files(model_path, tmp_path):
    assert isinstance(load_model(model_path), GRUCTC)
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    pytest.importorskip("onnxruntime")
    with pytest.raises(ValueError, match="not a loadable ONNX model"):
        load_model(bad)


def test_cli_export_and_one_line_errors(model_path, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "cli.ts"
    assert cli_main(["export", "--format", "torchscript", "--model", str(model_path), "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    capsys.readouterr()
    assert cli_main(["export", "--format", "onnx", "--model", str(tmp_path / "nope.pt"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such file" in err
    assert cli_main(["export", "--format", "onnx", "--model", str(model_path), "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli_main(["export", "--format", "tflite", "--out", str(out)])
    assert exc.value.code == 2


def test_load_model_and_cli_take_exported_files(tmp_path, speech_wav):
    import subprocess
    import sys

    import asr
    from asr.model.checkpoint import save_checkpoint
    from asr.model.export import export_onnx
    from asr.model.network import GRUCTC, ModelConfig
    from asr.model.tokenizer import DEFAULT_TOKENS

    torch.manual_seed(0)
    model = GRUCTC(ModelConfig(hidden_size=32, num_layers=1, conv_channels=16)).eval()
    bundle = tmp_path / "m.pt"
    save_checkpoint(bundle, model, DEFAULT_TOKENS)
    export_onnx(asr.load_model(bundle, device="cpu"), tmp_path / "m.onnx")
    expected = asr.transcribe(asr.load_model(bundle, device="cpu"), speech_wav)["text"]
    assert asr.transcribe(asr.load_model(tmp_path / "m.onnx"), speech_wav)["text"] == expected
    proc = subprocess.run(
        [sys.executable, "-m", "asr.apps.cli", "transcribe", "--model", str(tmp_path / "m.onnx"), str(speech_wav)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == expected, proc.stderr
