"""The frontend and the model are chunk-exact: any chunking gives the whole-utterance result."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from asr.audio import SAMPLE_RATE, AudioError
from asr.audio.files import load_audio
from asr.audio.frontend import HOP_LENGTH, N_FFT, N_MELS, LogMel, MelStream, num_frames
from asr.model.network import GRUCTC, ModelConfig

LOGMEL = LogMel()
SIGNAL = np.random.default_rng(0).standard_normal(SAMPLE_RATE * 2).astype(np.float32) * 0.1
WHOLE = LOGMEL(torch.from_numpy(SIGNAL))


def split(n: int, sizes: list[int]):
    """Cut range(n) into consecutive pieces of the given sizes (cycled), zero-size pieces included."""
    i, k = 0, 0
    while i < n:
        size = sizes[k % len(sizes)]
        yield i, min(n, i + size)
        i, k = i + size, k + 1
        if size == 0 and all(s == 0 for s in sizes):
            raise ValueError("all-zero sizes")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2500), min_size=1, max_size=12).filter(any))
def test_melstream_equals_logmel_over_any_chunking(sizes):
    stream = MelStream(LOGMEL)
    out = torch.cat([stream.accept(SIGNAL[a:b]) for a, b in split(len(SIGNAL), sizes)])
    assert out.shape == WHOLE.shape == (num_frames(len(SIGNAL)), N_MELS)
    assert (out - WHOLE).abs().max() <= 1e-4


def test_melstream_keeps_a_bounded_tail():
    stream = MelStream(LOGMEL)
    for a, b in split(len(SIGNAL), [1234]):
        stream.accept(SIGNAL[a:b])
        assert stream.tail.numel() < N_FFT
    assert stream.samples_seen == len(SIGNAL)


def test_digital_silence_looks_like_the_quietest_microphone():
    """Zeros' features are those of white noise at about -100 dBFS (the log floor), not far below it (they were
    5.4 lower, a place in feature space the model never trains on)."""
    logmel = LogMel()
    quiet = np.random.default_rng(0).standard_normal(SAMPLE_RATE) * 10 ** (-100 / 20)
    noise, zeros = logmel(torch.from_numpy(quiet.astype(np.float32))), logmel(torch.zeros(SAMPLE_RATE))
    assert abs(float(zeros.mean()) - float(noise.mean())) < 1.0
    assert float(zeros.max()) == float(zeros.min())


def test_logmel_shape_and_short_input():
    assert WHOLE.shape[0] == 1 + (len(SIGNAL) - N_FFT) // HOP_LENGTH
    assert LOGMEL(torch.zeros(N_FFT - 1)).shape == (0, N_MELS)
    assert torch.isfinite(LOGMEL(torch.zeros(N_FFT))).all()  # the log floor keeps silence finite


@pytest.mark.parametrize(
    ("cell", "subsampling", "lookahead"),
    [("gru", 4, 0), ("lstm", 4, 0), ("gru", 3, 0), ("gru", 2, 0), ("gru", 4, 1), ("gru", 4, 2), ("lstm", 3, 2)],
)
@settings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.integers(min_value=0, max_value=41), min_size=1, max_size=10).filter(any))
def test_model_step_equals_forward_over_any_chunking(cell, subsampling, lookahead, sizes):
    torch.manual_seed(0)
    config = ModelConfig(
        hidden_size=48, num_layers=2, conv_channels=32, cell=cell, subsampling=subsampling, lookahead=lookahead
    )
    model = GRUCTC(config).eval()
    model.set_normalization(torch.randn(N_MELS), torch.rand(N_MELS) + 0.5)
    if lookahead:
        torch.nn.init.normal_(model.lookahead.weight)  # every tap in use, not the pass-through start
    feats = torch.randn(3, 157, N_MELS)
    with torch.no_grad():
        whole, lens = model(feats, torch.tensor([157, 100, 9]))
        state = model.init_state(3)
        pieces = []
        for a, b in split(feats.shape[1], sizes):
            out, state = model.step(feats[:, a:b], state)
            pieces.append(out)
    streamed = torch.cat(pieces, dim=1)
    assert whole.shape == streamed.shape == (3, 157 // subsampling, model.config.vocab_size)
    assert lens.tolist() == [157 // subsampling, 100 // subsampling, 9 // subsampling]
    assert state.look.shape == (3, lookahead, 48)
    assert (whole - streamed).abs().max() <= 1e-4


def test_lookahead_starts_as_the_model_without_it_delayed():
    """A lookahead model given a model's weights (its row convolution a pass-through) is that model, K frames late;
    output frame i sees the GRU outputs i - K .. i."""
    torch.manual_seed(2)
    small = dict(hidden_size=32, num_layers=2, conv_channels=16)
    base = GRUCTC(ModelConfig(**small)).eval()
    late = GRUCTC(ModelConfig(**small, lookahead=2)).eval()
    assert late.load_state_dict(base.state_dict(), strict=False).missing_keys == ["lookahead.weight"]
    feats = torch.randn(1, 120, N_MELS)
    with torch.no_grad():
        a, _ = base(feats, torch.tensor([120]))
        b, _ = late(feats, torch.tensor([120]))
        torch.nn.init.normal_(late.lookahead.weight)
        c, _ = late(feats, torch.tensor([120]))
        changed = feats.clone()
        changed[:, 80:] += 1.0  # from output frame 20 on
        d, _ = late(changed, torch.tensor([120]))
    assert (a[:, :-2] - b[:, 2:]).abs().max() <= 1e-6
    assert (c[:, :20] - d[:, :20]).abs().max() == 0 and (c[:, 20] - d[:, 20]).abs().max() > 0  # causal
    assert ModelConfig(lookahead=2).output_delay == pytest.approx(0.08)


def test_step_does_not_modify_its_input_state():
    model = GRUCTC(ModelConfig(hidden_size=16, num_layers=1, conv_channels=8)).eval()
    state = model.init_state(1)
    before = state.hidden.clone()
    with torch.no_grad():
        model.step(torch.randn(1, 8, N_MELS), state)
    assert torch.equal(state.hidden, before)


def test_default_config_is_about_two_million_parameters():
    assert 1.5e6 < GRUCTC().num_parameters() < 2.5e6


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="cell"):
        ModelConfig(cell="transformer")
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({"hidden": 3})
    with pytest.raises(ValueError, match="subsampling"):
        ModelConfig(subsampling=5)
    for bad in (-1, 5):
        with pytest.raises(ValueError, match="lookahead"):
            ModelConfig(lookahead=bad)


def test_frame_shift_follows_subsampling_and_old_bundles_load_as_4x():
    assert [ModelConfig(subsampling=s).frame_shift for s in (2, 3, 4)] == pytest.approx([0.02, 0.03, 0.04])
    old = ModelConfig().to_dict()
    del old["subsampling"]  # bundles written before the option existed
    assert ModelConfig.from_dict(old).subsampling == 4


@pytest.mark.parametrize(
    ("fmt", "rate", "channels"), [("WAV", 8000, 1), ("FLAC", 44100, 2), ("OGG", 22050, 1), ("MP3", 48000, 2)]
)
def test_load_audio_any_format_rate_and_channels(tmp_path, fmt, rate, channels):
    t = np.arange(rate) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    data = np.stack([tone] * channels, axis=1)
    path = tmp_path / f"tone.{fmt.lower()}"
    try:
        sf.write(path, data, rate, format=fmt)
    except (sf.LibsndfileError, TypeError, ValueError) as exc:
        pytest.skip(f"libsndfile here cannot write {fmt}: {exc}")
    out = load_audio(path)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - SAMPLE_RATE) < SAMPLE_RATE * 0.01 + 1200  # mp3 adds encoder padding
    spectrum = np.abs(np.fft.rfft(out[2000:14000]))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / 12000 - 440) < 5


def test_load_audio_arrays():
    ints = (np.ones(800) * 16384).astype(np.int16)
    out = load_audio(ints, sample_rate=8000)
    assert len(out) == 1600 and abs(out[800] - 0.5) < 0.01
    assert len(load_audio(np.zeros((16000, 2), np.float32))) == 16000
    with pytest.raises(AudioError, match="shape"):
        load_audio(np.zeros((2, 2, 2)))


def test_load_audio_errors_name_the_file(tmp_path):
    with pytest.raises(AudioError, match="missing.wav: no such file"):
        load_audio(tmp_path / "missing.wav")
    with pytest.raises(AudioError, match="directory"):
        load_audio(tmp_path)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.raises(AudioError, match="junk.wav: cannot read audio"):
        load_audio(junk)


def test_real_speech_loads_and_resamples(shared_data):
    clip = next((shared_data / "fsdd" / "recordings").glob("*.wav"))
    info = sf.info(clip)
    out = load_audio(clip)
    assert info.samplerate == 8000
    assert abs(len(out) - info.frames * 2) <= 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_cuda_step_matches_cpu():
    model = GRUCTC(ModelConfig(hidden_size=32, num_layers=2, conv_channels=16)).eval()
    feats = torch.randn(2, 64, N_MELS)
    with torch.no_grad():
        cpu, _ = model(feats, torch.tensor([64, 64]))
        gpu_model = model.to("cuda")
        out, _ = gpu_model.step(feats.cuda(), gpu_model.init_state(2))
    assert (cpu - out.cpu()).abs().max() <= 1e-4
