"""Manifests, importers, sampler, augmentation, Dataset: on speech synthesized with espeak-ng."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import AUGMENT_OFF, REPO, synthesize

from asr.audio import SAMPLE_RATE
from asr.audio.augment import (
    VTLP_LIMITS,
    AugmentConfig,
    WarpedLogMel,
    augment_waveform,
    colored_noise,
    spec_augment,
    vtlp_warp,
    warped_filterbank,
)
from asr.audio.files import load_audio
from asr.audio.frontend import N_MELS, LogMel
from asr.model.tokenizer import CharTokenizer
from asr.train.dataset import ASRDataset, BucketingSampler, collate, compute_stats, load_manifests, parse_weighted
from asr.train.manifests import (
    DataError,
    import_commonvoice,
    import_folder,
    import_librispeech,
    import_tsv,
    main,
    read_manifest,
    write_manifest,
)

SENTENCES = ["The cat sat on the mat.", "A dog ran in the park!", "Open the door, please.", "It is 42 degrees."]


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    """Four synthesized sentences as 22.05 kHz wav files."""
    folder = tmp_path_factory.mktemp("wavs")
    return [synthesize(text, folder / f"s{i}.wav") for i, text in enumerate(SENTENCES)]


@pytest.fixture
def manifest(tmp_path, wavs):
    entries = [
        {"id": f"s{i}", "audio": str(w), "duration": sf.info(str(w)).duration, "text": t}
        for i, (w, t) in enumerate(zip(wavs, SENTENCES, strict=True))
    ]
    path = tmp_path / "data" / "train.jsonl"
    write_manifest(path, entries)
    return path


# -- manifests ---------------------------------------------------------------------------------------------


def test_write_read_roundtrip_uses_relative_paths(manifest, wavs):
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert not any(line["audio"].startswith("/") for line in lines)
    assert not list(manifest.parent.glob("*.tmp"))
    entries = read_manifest(manifest)
    assert [e["audio"] for e in entries] == [str(w.resolve()) for w in wavs]
    assert [e["text"] for e in entries] == SENTENCES


BAD_LINES = {
    "invalid JSON": '{"id": "x", "audio": ',
    "not a JSON object": "[1, 2]",
    "missing field 'id'": {"audio": "a.wav", "duration": 1.0, "text": "hi"},
    "missing field 'audio'": {"id": "x", "duration": 1.0, "text": "hi"},
    "missing field 'duration'": {"id": "x", "audio": "a.wav", "text": "hi"},
    "missing field 'text'": {"id": "x", "audio": "a.wav", "duration": 1.0},
    "field 'duration' should be a number": {"id": "x", "audio": "a.wav", "duration": "1.0", "text": "hi"},
    "field 'duration' should be a number (bool)": {"id": "x", "audio": "a.wav", "duration": True, "text": "hi"},
    "field 'text' should be a string": {"id": "x", "audio": "a.wav", "duration": 1.0, "text": 5},
    "field 'id' should be a string": {"id": 7, "audio": "a.wav", "duration": 1.0, "text": "hi"},
    "field 'audio' should be a string": {"id": "x", "audio": None, "duration": 1.0, "text": "hi"},
    "field 'speaker' should be a string": {"id": "x", "audio": "a.wav", "duration": 1.0, "text": "hi", "speaker": []},
    "empty text": {"id": "x", "audio": "a.wav", "duration": 1.0, "text": "  "},
    "non-positive duration": {"id": "x", "audio": "a.wav", "duration": 0, "text": "hi"},
    "non-positive duration (negative)": {"id": "x", "audio": "a.wav", "duration": -2.5, "text": "hi"},
    "non-positive duration (nan)": '{"id": "x", "audio": "a.wav", "duration": NaN, "text": "hi"}',
    "audio file not found": {"id": "x", "audio": "missing.wav", "duration": 1.0, "text": "hi"},
}


@pytest.mark.parametrize("problem", sorted(BAD_LINES))
def test_bad_manifest_line_is_warned_and_skipped(tmp_path, wavs, problem):
    good = {"id": "good", "audio": str(wavs[0]), "duration": 1.5, "text": "the cat"}
    bad = BAD_LINES[problem]
    if isinstance(bad, dict) and bad.get("audio") == "a.wav":
        bad = {**bad, "audio": str(wavs[1])}  # an existing file, so that only the named problem remains
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + (bad if isinstance(bad, str) else json.dumps(bad)) + "\n")
    with pytest.warns(UserWarning) as record:
        entries = read_manifest(path)
    assert [e["id"] for e in entries] == ["good"]
    message = str(record[0].message)
    assert f"{path}:3" in message
    assert problem.split(" (")[0] in message


def test_a_file_that_is_no_manifest_is_one_error_not_a_warning_per_line(tmp_path, wavs):
    """An audio file, other binary data, or text most of whose lines are not JSON objects: one DataError naming the
    file and why, and no warning at all (an audio file gave hundreds of 'invalid JSON' ones)."""
    good = json.dumps({"id": "good", "audio": str(wavs[0]), "duration": 1.5, "text": "the cat"})
    sf.write(tmp_path / "a.flac", load_audio(wavs[0]), SAMPLE_RATE)
    (tmp_path / "random.bin").write_bytes(np.random.default_rng(0).integers(0, 256, 9000, np.uint8).tobytes())
    (tmp_path / "notes.txt").write_text("some notes\n" * 30 + good + "\n" + "[1, 2]\n")
    cases = {
        wavs[0]: "it is WAV audio",
        tmp_path / "a.flac": "it is FLAC audio",
        tmp_path / "random.bin": "it is binary data",
        tmp_path / "notes.txt": "31 of its 32 lines are not JSON objects, line 1: invalid JSON",
    }
    for path, reason in cases.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(DataError) as caught:
                read_manifest(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: not a JSONL manifest ({reason}") and "\n" not in message, message
    (tmp_path / "half.jsonl").write_text(good + "\nnot json\n")  # half its lines good: a manifest, one warning
    with pytest.warns(UserWarning, match="half.jsonl:2: skipped: invalid JSON"):
        assert [e["id"] for e in read_manifest(tmp_path / "half.jsonl")] == ["good"]


def test_missing_manifest_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no such manifest"):
        read_manifest(tmp_path / "nope.jsonl")


def test_weighted_manifests_repeat_entries(manifest):
    assert parse_weighted("a.jsonl:3") == ("a.jsonl", 3)
    assert parse_weighted("c:/x/a.jsonl") == ("c:/x/a.jsonl", 1)
    assert len(load_manifests([f"{manifest}:2", str(manifest)])) == 3 * len(SENTENCES)
    with pytest.raises(DataError):
        parse_weighted("a.jsonl:0")


# -- importers ---------------------------------------------------------------------------------------------


def _copy_as(src, dst, fmt=None):
    data, rate = sf.read(str(src))
    dst.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(dst), data, rate, format=fmt)
    return dst


def test_import_librispeech_layout(tmp_path, wavs):
    chapter = tmp_path / "LibriSpeech" / "dev-clean" / "84" / "121123"
    lines = []
    for i, (w, text) in enumerate(zip(wavs, SENTENCES, strict=True)):
        _copy_as(w, chapter / f"84-121123-{i:04d}.flac")
        lines.append(f"84-121123-{i:04d} {text.upper()}")
    lines.append("84-121123-0099 NO AUDIO FOR THIS ONE")
    (chapter / "84-121123.trans.txt").write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="audio file not found"):
        entries = import_librispeech(tmp_path)
    assert [e["id"] for e in entries] == [f"84-121123-{i:04d}" for i in range(4)]
    assert entries[3]["text"] == "it is forty two degrees"
    assert entries[0]["speaker"] == "84"
    assert abs(entries[0]["duration"] - sf.info(str(wavs[0])).duration) < 0.01


def test_import_real_librispeech_sample(shared_data, tmp_path):
    entries = import_librispeech(shared_data / "librispeech_layout")
    assert len(entries) == 4
    assert all(e["duration"] > 1 and e["text"] == e["text"].lower() for e in entries)
    write_manifest(tmp_path / "ls.jsonl", entries)
    assert read_manifest(tmp_path / "ls.jsonl") == entries


def test_import_commonvoice_layout(tmp_path, wavs):
    rows = ["client_id\tpath\tsentence\tup_votes"]
    for i, (w, text) in enumerate(zip(wavs, SENTENCES, strict=True)):
        _copy_as(w, tmp_path / "clips" / f"cv_{i}.mp3", "MP3")
        rows.append(f"spk{i % 2}\tcv_{i}.mp3\t{text}\t2")
    rows.append('spk9\tmissing.mp3\t"Quoted" text\t0')
    (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n")
    with pytest.warns(UserWarning, match=r"train.tsv:6: skipped"):
        entries = import_commonvoice(tmp_path)
    assert [e["id"] for e in entries] == [f"cv_{i}" for i in range(4)]
    assert entries[1] | {"audio": None} == {
        "id": "cv_1",
        "audio": None,
        "duration": entries[1]["duration"],
        "text": "a dog ran in the park",
        "speaker": "spk1",
    }
    assert abs(len(load_audio(entries[0]["audio"])) / SAMPLE_RATE - entries[0]["duration"]) < 0.1
    with pytest.raises(DataError, match="dev.tsv"):
        import_commonvoice(tmp_path, "dev.tsv")


def test_import_folder_layout(tmp_path, wavs):
    for i, (w, text) in enumerate(zip(wavs, SENTENCES, strict=True)):
        sub = tmp_path / ("a" if i < 2 else "b")
        _copy_as(w, sub / f"u{i}.wav")
        (sub / f"u{i}.txt").write_text(text + "\n")
    _copy_as(wavs[0], tmp_path / "orphan.wav")
    with pytest.warns(UserWarning, match="no transcript"):
        entries = import_folder(tmp_path)
    assert [e["id"] for e in entries] == ["a-u0", "a-u1", "b-u2", "b-u3"]
    assert entries[2]["text"] == "open the door please"


def test_import_tsv_layout(tmp_path, wavs):
    """A folder with transcripts.tsv, as ../shared/data's sets: Ogg Opus clips too, a corrupt one skipped."""
    rows = ["file\tduration_s\tsample_rate\treference\tspeaker"]
    for i, (w, text) in enumerate(zip(wavs, SENTENCES, strict=True)):
        name = f"audio/{'words' if i % 2 else 'lines'}/c{i}.{'opus' if i < 2 else 'wav'}"
        (_opus if i < 2 else _copy_as)(w, tmp_path / name)
        rows.append(f"{name}\t1.0\t16000\t{text}\tspk{i % 2}")
    (tmp_path / "audio" / "bad.opus").write_bytes(b"OggS not really")
    rows += ["audio/bad.opus\t1.0\t16000\tbroken\tspk0", "audio/none.wav\t1.0\t16000\tmissing\tspk0"]
    (tmp_path / "transcripts.tsv").write_text("\n".join(rows) + "\n")
    with pytest.warns(UserWarning) as record:
        entries = import_tsv(tmp_path)
    assert [e["id"] for e in entries] == ["audio-lines-c0", "audio-words-c1", "audio-lines-c2", "audio-words-c3"]
    assert {e["speaker"] for e in entries} == {"spk0", "spk1"} and entries[3]["text"] == "it is forty two degrees"
    assert abs(len(load_audio(entries[0]["audio"])) / SAMPLE_RATE - entries[0]["duration"]) < 0.1
    assert any("bad.opus" in str(r.message) for r in record) and any("none.wav" in str(r.message) for r in record)
    (tmp_path / "other.tsv").write_text("path\tsentence\n")
    with pytest.raises(DataError, match="missing columns"):
        import_tsv(tmp_path, "other.tsv")


def test_import_real_tsv_sets(shared_data):
    for name, speakers in (("ljspeech_part", 1), ("speech_commands", 239)):
        if not (shared_data / name / "transcripts.tsv").is_file():
            pytest.skip(f"{shared_data / name} not found")
        entries = import_tsv(shared_data / name)
        assert len({e["speaker"] for e in entries}) == speakers and all(e["text"] for e in entries)


def _opus(src, dst):
    """Ogg Opus at 16 kHz (load_audio resamples), as ../shared/data's clips."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(dst), load_audio(src), SAMPLE_RATE, format="OGG", subtype="OPUS")
    return dst


def test_cli_writes_manifest_and_reports_errors_in_one_line(tmp_path, wavs, capsys):
    for i, w in enumerate(wavs):
        _copy_as(w, tmp_path / "c" / f"u{i}.wav")
        (tmp_path / "c" / f"u{i}.txt").write_text(SENTENCES[i])
    assert main(["folder", str(tmp_path / "c"), str(tmp_path / "out" / "m.jsonl")]) == 0
    assert len(read_manifest(tmp_path / "out" / "m.jsonl")) == 4
    assert main(["librispeech", str(tmp_path / "nope"), str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "no such directory" in err and len(err.strip().splitlines()) == 1
    proc = subprocess.run(
        [sys.executable, "-m", "asr.train.manifests", "commonvoice", str(tmp_path / "c"), str(tmp_path / "y.jsonl")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "train.tsv: no such file" in proc.stderr


# -- sampler -----------------------------------------------------------------------------------------------


def test_bucketing_sampler_bounds_and_covers():
    durations = np.random.default_rng(0).uniform(0.5, 12, 300).tolist() + [50.0]
    sampler = BucketingSampler(durations, max_batch_seconds=40, seed=1)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(durations)))
    for b in batches:
        assert len(b) == 1 or max(durations[i] for i in b) * len(b) <= 40
    spread = np.mean([max(durations[i] for i in b) - min(durations[i] for i in b) for b in batches])
    assert spread < 3  # similar lengths together
    assert list(sampler) == batches  # same epoch, same order
    sampler.set_epoch(1)
    assert list(sampler) != batches
    sampler.set_epoch(1, start=5)
    assert list(sampler) == _epoch(durations, 1)[5:]


def _epoch(durations, epoch):
    s = BucketingSampler(durations, 40, seed=1)
    s.set_epoch(epoch)
    return list(s)


def test_bucketing_sampler_ddp_ranks_get_equal_batches():
    durations = np.random.default_rng(1).uniform(1, 10, 101).tolist()
    ranks = [BucketingSampler(durations, 30, seed=3, num_replicas=3, rank=r) for r in range(3)]
    lists = [list(s) for s in ranks]
    assert len({len(x) for x in lists}) == 1 and len(lists[0]) == len(ranks[0])
    covered = {i for x in lists for b in x for i in b}
    assert covered == set(range(101))
    assert not set(map(tuple, lists[0])) & set(map(tuple, lists[1]))  # ranks do not share batches, padding aside
    with pytest.raises(ValueError):
        BucketingSampler(durations, 30, num_replicas=2, rank=2)


# -- augmentation and features ---------------------------------------------------------------------------------


def test_augment_waveform_each_effect(wavs):
    wave = load_audio(wavs[0])
    off = dict(speed_prob=0, noise_prob=0, reverb_prob=0, bandlimit_prob=0, gain_prob=0)
    rng = np.random.default_rng
    assert np.array_equal(augment_waveform(wave, rng(0), AugmentConfig(**off)), wave)
    lengths = {len(augment_waveform(wave, rng(s), AugmentConfig(**{**off, "speed_prob": 1}))) for s in range(12)}
    assert lengths == {len(wave), round(len(wave) / 0.9), round(len(wave) / 1.1)}
    wide = AugmentConfig(**{**off, "speed_prob": 1, "speeds": (0.85, 1.15)})
    lengths = {len(augment_waveform(wave, rng(s), wide)) for s in range(12)}
    assert lengths == {math.ceil(len(wave) / 0.85), math.ceil(len(wave) / 1.15)}  # resample rounds up
    padded = augment_waveform(wave, rng(3), AugmentConfig(**{**off, "pad_prob": 1, "pad_seconds": (0.25, 0.25)}))
    assert len(padded) == len(wave) + 8000 and np.array_equal(padded[4000:-4000], wave)
    assert 0 < np.abs(padded[:4000]).max() < 10 ** (-50 / 20) * 5
    noisy = augment_waveform(wave, rng(1), AugmentConfig(**{**off, "noise_prob": 1, "snr_db": (10, 10)}))
    snr = 10 * np.log10(np.mean(wave**2) / np.mean((noisy - wave) ** 2))
    assert abs(snr - 10) < 0.5
    for effect in ("reverb_prob", "bandlimit_prob", "gain_prob"):
        out = augment_waveform(wave, rng(2), AugmentConfig(**{**off, effect: 1}))
        assert out.shape == wave.shape and np.isfinite(out).all() and not np.allclose(out, wave)
    full = AugmentConfig(**{k: 1 for k in off})
    assert np.array_equal(augment_waveform(wave, rng(5), full), augment_waveform(wave, rng(5), full))


def test_colored_noise_spectra():
    rng = np.random.default_rng(0)
    for exponent in (0.0, 1.0, 2.0):
        noise = colored_noise(32000, exponent, rng)
        assert abs(np.mean(noise**2) - 1) < 1e-3
        power = np.abs(np.fft.rfft(noise)) ** 2
        low, high = power[10:100].mean(), power[8000:16000].mean()
        assert (low / high > 10) == (exponent > 0)


def test_spec_augment_masks_deterministically():
    feats = torch.randn(300, N_MELS)
    a, b = spec_augment(feats, seed=7), spec_augment(feats, seed=7)
    assert torch.equal(a, b) and not torch.equal(a, feats)
    assert (a == feats.mean()).any()


def test_vtlp_factor_1_is_logmel_and_other_factors_move_a_tone(wavs):
    """VTLP's warped filterbank: factor 1 is LogMel's exactly (features too); 0.9 moves a tone's peak mel bin down,
    1.1 up; 0 Hz and Nyquist stay put; no filter is empty within VTLP_LIMITS; a warped call leaves LogMel's."""
    straight = LogMel()
    assert torch.equal(warped_filterbank(1.0), straight.filterbank)
    speech = torch.from_numpy(load_audio(wavs[0]))
    warped = WarpedLogMel()
    assert torch.equal(warped(speech), straight(speech)) and torch.equal(warped(speech, 1.0), straight(speech))
    higher = warped(speech, 1.1)
    assert higher.shape == straight(speech).shape and not torch.equal(higher, straight(speech))
    assert torch.equal(warped.filterbank, straight.filterbank)
    t = torch.arange(SAMPLE_RATE) / SAMPLE_RATE
    for hz in (300, 1000, 3000, 6000):
        tone = torch.sin(2 * math.pi * hz * t)
        peaks = [int(warped(tone, factor).mean(0).argmax()) for factor in (0.9, 1.0, 1.1)]
        assert peaks[0] < peaks[1] < peaks[2], (hz, peaks)
    for factor in (*VTLP_LIMITS, 0.9, 1.1):
        ends = vtlp_warp(torch.tensor([0.0, SAMPLE_RATE / 2]), factor)
        assert ends.tolist() == [0.0, SAMPLE_RATE / 2]
        assert (warped_filterbank(factor).max(0).values > 0).all(), factor
    assert vtlp_warp(torch.tensor([1000.0]), 1.1).item() == pytest.approx(1000 / 1.1)


def test_dataset_features_without_vtlp_are_todays_and_with_it_warped(manifest):
    """VTLP off (the default): the dataset's features are those of today's pipeline, the same random draws and
    LogMel; on: warped, the same shape; without augmentation (validation): never warped."""
    entries, tokens = read_manifest(manifest), CharTokenizer()
    config = AugmentConfig()
    rng = np.random.default_rng([3, 0, 1])  # (seed, epoch, index)
    feats = LogMel()(torch.from_numpy(augment_waveform(load_audio(entries[1]["audio"]), rng, config)))
    if rng.random() < config.specaug_prob:
        feats = spec_augment(feats, int(rng.integers(2**31)), config)
    assert torch.equal(ASRDataset(entries, tokens, augment=True, seed=3)[1][0], feats)
    plain = ASRDataset(entries, tokens, augment=True, seed=3, config=AugmentConfig(**AUGMENT_OFF))[1][0]
    warped = ASRDataset(entries, tokens, augment=True, seed=3, config=AugmentConfig(**AUGMENT_OFF, vtlp_prob=1))[1][0]
    assert warped.shape == plain.shape and not torch.equal(warped, plain)
    clean = ASRDataset(entries, tokens, augment=False, config=AugmentConfig(**AUGMENT_OFF, vtlp_prob=1))[1][0]
    assert torch.equal(clean, plain) and torch.equal(clean, LogMel()(torch.from_numpy(load_audio(entries[1]["audio"]))))


def test_dataset_collate_and_unreadable_audio(manifest, tmp_path):
    entries = read_manifest(manifest)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wav")
    entries.append({"id": "broken", "audio": str(broken), "duration": 1.0, "text": "hello"})
    ds = ASRDataset(entries, CharTokenizer(), augment=True, seed=3)
    with pytest.warns(UserWarning, match="skipped broken"):
        assert ds[4] is None
    feats, ids = ds[0]
    assert feats.shape[1] == N_MELS and ids.tolist() == CharTokenizer().encode(SENTENCES[0])
    assert torch.equal(ds[1][0], ds[1][0])  # seeded per (seed, epoch, index)
    ds.epoch = 1
    assert not torch.equal(ds[1][0], feats)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, x_lens, y, y_lens = collate([ds[i] for i in range(5)])
    assert x.shape == (4, int(x_lens.max()), N_MELS) and y.shape == (4, int(y_lens.max()))
    assert collate([None]) is None


def test_compute_stats_matches_direct(manifest):
    entries = read_manifest(manifest)
    mean, std = compute_stats(entries, n=10)
    feats = torch.cat([LogMel()(torch.from_numpy(load_audio(e["audio"]))) for e in entries])
    assert torch.allclose(mean, feats.mean(0), atol=1e-3)
    assert torch.allclose(std, feats.std(0), rtol=1e-2)


def test_dataset_augments_from_the_given_epoch(manifest):
    entries = read_manifest(manifest)
    ds = ASRDataset(entries, CharTokenizer(), augment=True, seed=3, augment_from_epoch=2)
    clean = ASRDataset(entries, CharTokenizer(), augment=False)
    for epoch in (0, 1):
        ds.epoch = epoch
        assert torch.equal(ds[0][0], clean[0][0])
    ds.epoch = 2
    assert not torch.equal(ds[0][0], clean[0][0])


def test_augment_config_scaled():
    half = AugmentConfig().scaled(0.5)
    assert half.speed_prob == AugmentConfig().speed_prob / 2 and half.snr_db == AugmentConfig().snr_db
    assert AugmentConfig().scaled(10).noise_prob == 1.0
