"""Channel and stream augmentation (asr.audio.channel, the lead and stream options): on speech synthesized with
espeak-ng."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import AUGMENT_OFF, synthesize

from asr.audio import SAMPLE_RATE
from asr.audio.augment import AugmentConfig, augment_waveform
from asr.audio.channel import CODECS, codec_roundtrip, random_eq, silence
from asr.audio.files import load_audio
from asr.model.tokenizer import CharTokenizer
from asr.train.dataset import ASRDataset

SENTENCES = ["open the door", "a dog ran in the park and then it sat down by the old tree"]


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    folder = tmp_path_factory.mktemp("channel")
    return [synthesize(text, folder / f"s{i}.wav") for i, text in enumerate(SENTENCES)]


def _band_energy(x: np.ndarray, low: float, high: float) -> float:
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / SAMPLE_RATE)
    return float(power[(freqs >= low) & (freqs < high)].sum())


@pytest.mark.parametrize("codec", CODECS)
def test_a_codec_round_trip_keeps_length_and_timing_and_loses_detail(speech, codec):
    x = load_audio(speech[1])
    y = codec_roundtrip(x, codec, np.random.default_rng(1))
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert not np.allclose(y, x, atol=1e-3)
    lags = range(-200, 201)
    assert max(lags, key=lambda k: float(np.dot(x[400:-400], np.roll(y, k)[400:-400]))) == 0  # no delay
    snr = 10 * np.log10(np.mean(x**2) / np.mean((y - x) ** 2))
    assert 3 < snr < 40, snr  # the words are still there, the detail is not
    if codec == "mulaw":  # a telephone line carries nothing above 4 kHz
        assert _band_energy(y, 4200, 8000) < 1e-3 * _band_energy(y, 0, 4000)


def test_random_eq_colours_the_spectrum_and_keeps_the_level(speech):
    x = torch.from_numpy(load_audio(speech[1]))
    shapes = []
    for seed in range(4):
        y = random_eq(x, np.random.default_rng(seed))
        assert y.shape == x.shape and torch.isfinite(y).all()
        assert float(y.pow(2).mean().sqrt()) == pytest.approx(float(x.pow(2).mean().sqrt()), rel=1e-3)
        shapes.append(_band_energy(y.numpy(), 0, 1000) / _band_energy(y.numpy(), 1000, 8000))
    assert len({round(s, 3) for s in shapes}) == 4  # each draw a different microphone


def test_silence_is_digital_zeros_or_a_quiet_floor():
    rng = np.random.default_rng(0)
    draws = [silence(1600, rng, 0.5, (-60.0, -50.0)) for _ in range(40)]
    zeros = [d for d in draws if not d.any()]
    assert 5 < len(zeros) < 35
    for d in draws:
        if d.any():
            assert -62 < 20 * np.log10(np.sqrt(np.mean(d**2))) < -48
    assert silence(0, rng, 0.5, (-60.0, -50.0)).size == 0


def test_a_lead_puts_silence_before_the_speech_and_a_third_after(speech):
    x = load_audio(speech[0])
    config = AugmentConfig(**AUGMENT_OFF, lead_prob=1, lead_seconds=(0.6, 0.6), zero_share=1)
    y = augment_waveform(x, np.random.default_rng(0), config)
    lead = int(0.6 * SAMPLE_RATE)
    assert y.size == x.size + lead + lead // 3
    assert not y[:lead].any() and np.array_equal(y[lead : lead + x.size], x) and not y[lead + x.size :].any()
    off = AugmentConfig(**AUGMENT_OFF)  # leads are off by default
    assert np.array_equal(augment_waveform(x, np.random.default_rng(0), off), x)


def test_a_stream_example_is_a_shorter_utterance_a_gap_and_this_one(speech, tmp_path):
    entries = [
        {"id": f"s{i}", "audio": str(w), "duration": sf.info(str(w)).duration, "text": t}
        for i, (w, t) in enumerate(zip(speech, SENTENCES, strict=True))
    ]
    tokens = CharTokenizer()
    config = AugmentConfig(**AUGMENT_OFF, stream_prob=1, gap_seconds=(0.5, 0.5), zero_share=1)
    stream = ASRDataset(entries, tokens, augment=True, config=config)
    plain = ASRDataset(entries, tokens, augment=True, config=AugmentConfig(**AUGMENT_OFF))
    feats, ids = stream[1]
    first = 0 if ids.tolist() == tokens.encode(SENTENCES[0] + " " + SENTENCES[1]) else 1
    assert ids.tolist() == tokens.encode(SENTENCES[first] + " " + SENTENCES[1])
    frames = plain[first][0].shape[0] + plain[1][0].shape[0] + 50  # 0.5 s of gap: 50 frames of 10 ms
    assert abs(feats.shape[0] - frames) <= 2
    own = load_audio(speech[1])
    for seed in range(6):  # the first utterance is drawn from those no longer than this one: itself or the other
        wave, ids, prefix = stream._stream(entries[1], own, tokens.encode(SENTENCES[1]), np.random.default_rng(seed))
        first = {len(tokens.encode(text + " " + SENTENCES[1])): text for text in SENTENCES}[len(ids)]
        before = load_audio(speech[SENTENCES.index(first)])
        assert np.array_equal(wave[: before.size], before) and np.array_equal(wave[-own.size :], own)
        assert wave.size == before.size + own.size + SAMPLE_RATE // 2 and not wave[before.size : -own.size].any()
        assert prefix == (wave.size - own.size) / SAMPLE_RATE  # where this utterance starts (the aux loss's offset)
    shortest_ids = stream[0][1].tolist()
    assert shortest_ids in (tokens.encode(SENTENCES[0] + " " + SENTENCES[0]), tokens.encode(SENTENCES[0]))
    clean = ASRDataset(entries, tokens, augment=False, config=config)
    assert clean[1][1].tolist() == tokens.encode(SENTENCES[1])  # validation never streams


def test_a_one_word_clip_becomes_a_phrase_of_its_speakers_words(tmp_path):
    words = {"yes": "a", "no": "a", "stop": "a", "left": "b", "right": "b"}
    entries = []
    for i, (word, speaker) in enumerate(words.items()):
        wav = synthesize(word, tmp_path / f"{word}.wav")
        entries.append({"id": f"w{i}", "audio": str(wav), "duration": 0.5, "text": word, "speaker": speaker})
    wav = synthesize(SENTENCES[0], tmp_path / "sentence.wav")
    entries.append({"id": "s", "audio": str(wav), "duration": 1.0, "text": SENTENCES[0], "speaker": "a"})
    entries.append({"id": "n", "audio": str(wav), "duration": 1.0, "text": "go"})  # no speaker named
    tokens = CharTokenizer()
    config = AugmentConfig(**AUGMENT_OFF, concat_prob=1, concat_words=(3, 3), zero_share=1)
    phrases = ASRDataset(entries, tokens, augment=True, config=config)
    own = load_audio(entries[0]["audio"])
    places = set()
    for seed in range(12):
        wave, ids, prefix = phrases._phrase(0, own, np.random.default_rng(seed))
        text = tokens.decode(ids).split()
        assert len(text) == 3 and "yes" in text and set(text) <= {"yes", "no", "stop"}, text  # speaker a's words
        start = round(prefix * SAMPLE_RATE)
        assert np.array_equal(wave[start : start + own.size], own)  # where this word is (the aux loss's offset)
        parts = sum(load_audio(entries[list(words).index(w)]["audio"]).size for w in text)
        gaps = (wave.size - parts) / SAMPLE_RATE  # two gaps of 0.05-0.4 s
        assert 0.1 - 1e-3 <= gaps <= 0.8 + 1e-3, gaps
        places.add(start == 0)
    assert places == {True, False}  # the word is first in some phrases, later in others
    assert len(tokens.decode(phrases[0][1].tolist()).split()) == 3  # through __getitem__
    assert phrases[5][1].tolist() == tokens.encode(SENTENCES[0])  # more than one word: as it is
    unnamed = tokens.decode(phrases[6][1].tolist()).split()  # no speaker: any one-word entry
    assert len(unnamed) == 3 and "go" in unnamed and set(unnamed) <= set(words) | {"go"}
    clean = ASRDataset(entries, tokens, augment=False, config=config)
    assert clean[0][1].tolist() == tokens.encode("yes")  # validation never joins


def test_phrase_options(capsys):
    from asr.train.options import augment_config, parse_args

    args = parse_args(["--train", "t.jsonl", "--out", "o", "--concat-prob", "0.3", "--concat-words", "2", "5"])
    config = augment_config(args)
    assert config.concat_prob == 0.3 and config.concat_words == (2, 5)
    for bad in (["--concat-words", "1", "3"], ["--concat-words", "4", "3"], ["--concat-prob", "2"]):
        with pytest.raises(SystemExit):
            parse_args(["--train", "t.jsonl", "--out", "o", *bad])
        assert "--concat-" in capsys.readouterr().err
