"""Reverberation from simulated rooms (issue 31): recipes/default_en/local/make_rooms.py's bank of pyroomacoustics
impulse responses, asr.audio.augment drawing from it with the speech's timing kept, and `asr train --rooms`."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import AUGMENT_OFF, REPO, synthesize

from asr.audio.augment import AugmentConfig, augment_waveform, load_rooms
from asr.train import cli as train
from asr.train.manifests import write_manifest

ECHO = 800  # samples: the hand-made bank's one reflection


def _echo_bank(path):
    rir = np.zeros((1, 1200), np.float32)
    rir[0, 0], rir[0, ECHO] = 1.0, 0.5
    np.savez(path, rirs=rir, lengths=np.array([ECHO + 1]))
    return path


def test_make_rooms_writes_responses_that_start_at_their_direct_path(tmp_path):
    if importlib.util.find_spec("pyroomacoustics") is None:
        pytest.skip("pyroomacoustics is not installed (pip install pyroomacoustics==0.10.1)")
    sys.path.insert(0, str(REPO / "recipes" / "default_en" / "local"))
    from make_rooms import main

    out = tmp_path / "rooms.npz"
    assert main([str(out), "--count", "3", "--rt60", "0.2", "0.5", "--seed", "1"]) == 0
    rirs = load_rooms(str(out))
    bank = np.load(out)
    assert len(rirs) == 3 and ((0.2 <= bank["rt60"]) & (bank["rt60"] <= 0.5)).all()
    assert ((0.3 <= bank["distance"]) & (bank["distance"] <= 4.0)).all()
    for rir in rirs:
        assert np.argmax(np.abs(rir)) == 0 and np.isclose(np.sum(rir.astype(np.float64) ** 2), 1.0, atol=1e-4)
        tail = np.sum(rir[160:].astype(np.float64) ** 2)  # energy after 10 ms: reflections, not a bare impulse
        assert 0.01 < tail < 0.99, tail


def test_reverberation_draws_from_the_bank_and_keeps_the_timing(tmp_path, speech_wav):
    bank = str(_echo_bank(tmp_path / "echo.npz"))
    wave, rate = sf.read(speech_wav, dtype="float32")
    wave = wave[: rate * 2]
    cfg = AugmentConfig(**{**AUGMENT_OFF, "reverb_prob": 1.0}, rooms=bank)
    out = augment_waveform(wave, np.random.default_rng(0), cfg)
    expected = wave.copy()
    expected[ECHO:] += 0.5 * wave[:-ECHO]  # the direct path at 0, the reflection ECHO samples later
    expected *= np.sqrt(np.mean(wave**2) / np.mean(expected**2))  # the loudness kept
    assert out.shape == wave.shape and np.allclose(out, expected, atol=2e-4)
    synthetic = augment_waveform(wave, np.random.default_rng(0), AugmentConfig(**{**AUGMENT_OFF, "reverb_prob": 1.0}))
    assert not np.allclose(synthetic, expected, atol=1e-2)  # without a bank: asr.audio.augment.synthetic_rir


def test_a_bad_bank_is_one_clear_error(tmp_path, capsys):
    text = tmp_path / "notes.npz"
    text.write_text("not a bank")
    keys = tmp_path / "keys.npz"
    np.savez(keys, something=np.zeros(3))
    for path in (tmp_path / "missing.npz", text, keys):
        with pytest.raises(ValueError, match="not a room impulse response bank"):
            load_rooms(str(path))
    wav = synthesize("open the door", tmp_path / "u.wav")
    manifest = tmp_path / "train.jsonl"
    write_manifest(manifest, [{"id": "u", "audio": str(wav), "duration": sf.info(str(wav)).duration, "text": "x"}])
    argv = ["--train", str(manifest), "--out", str(tmp_path / "run"), "--rooms", str(text), "--max-steps", "1"]
    assert train.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("asr train: error: --rooms") and "notes.npz" in err and len(err.splitlines()) == 1


def test_training_with_the_bank(tmp_path):
    bank = _echo_bank(tmp_path / "echo.npz")
    entries = []
    for i, text in enumerate(["the cat sat on the mat", "open the door please"]):
        wav = synthesize(text, tmp_path / f"u{i}.wav")
        entries.append({"id": f"u{i}", "audio": str(wav), "duration": sf.info(str(wav)).duration, "text": text})
    write_manifest(tmp_path / "train.jsonl", entries)
    tiny = ["--hidden-size", "32", "--num-layers", "1", "--conv-channels", "32", "--num-workers", "0", "--threads", "1"]
    argv = ["--train", str(tmp_path / "train.jsonl"), "--out", str(tmp_path / "run"), *tiny, "--rooms", str(bank)]
    argv += ["--augment-from-epoch", "0", "--augment-scale", "4", "--max-steps", "2", "--max-batch-seconds", "4"]
    assert train.main(argv) == 0
    assert (tmp_path / "run" / "model.pt").is_file()
