"""Tokenizer normalisation, greedy CTC on constructed log-probs, checkpoint round trip and bad files."""

from __future__ import annotations

import pickle

import pytest
import torch

from asr.decode.greedy import BLANK, FRAME_SHIFT, GreedyDecoder, clip_word_times, ctc_greedy
from asr.model.checkpoint import VERSION, CheckpointError, load_checkpoint, read_bundle, save_checkpoint
from asr.model.network import GRUCTC, ModelConfig
from asr.model.tokenizer import DEFAULT_TOKENS, CharTokenizer, normalize_text, number_to_words

TOKENS = DEFAULT_TOKENS


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("Hello, World!", "hello world"),
        ("It's 42 o'clock.", "it's forty two o'clock"),
        ("Call 0351 now", "call zero three five one now"),
        ("1,000 people & 50% more", "one thousand people and fifty percent more"),
        ("Café  déjà-vu", "cafe deja vu"),
        ("'quoted' words", "quoted words"),
        ("WE CALL IT BEAR", "we call it bear"),
    ],
)
def test_normalize_text(raw, normal):
    assert normalize_text(raw) == normal


def test_number_to_words():
    assert number_to_words(0) == "zero"
    assert number_to_words(1984) == "one thousand nine hundred eighty four"
    assert number_to_words(2_000_017) == "two million seventeen"


def test_tokenizer_round_trip():
    tok = CharTokenizer()
    ids = tok.encode("Don't stop")
    assert BLANK not in ids and tok.decode(ids) == "don't stop"
    with pytest.raises(ValueError):
        CharTokenizer(["a", "b"])


def frames_for(path: list[str], p: float = 0.9) -> torch.Tensor:
    """Log-probs whose best token per frame follows `path` ('_' = blank) with probability p."""
    lp = torch.full((len(path), len(TOKENS)), (1 - p) / (len(TOKENS) - 1)).log()
    for t, ch in enumerate(path):
        lp[t, BLANK if ch == "_" else TOKENS.index(ch)] = torch.tensor(p).log()
    return lp


def test_ctc_greedy_collapses_repeats_and_times_words():
    path = list("_hh_e_ll_l_oo__ _w_o_rr_l_d__")
    text, words = ctc_greedy(frames_for(path), TOKENS)
    assert text == "hello world"
    assert [w["word"] for w in words] == ["hello", "world"]
    assert words[0]["start"] == pytest.approx(1 * FRAME_SHIFT)
    assert words[0]["end"] == pytest.approx(12 * FRAME_SHIFT)  # last 'o' first seen on frame 11
    assert words[1]["start"] == pytest.approx(17 * FRAME_SHIFT)
    assert all(w["conf"] == pytest.approx(0.9) for w in words)


def test_greedy_decoder_carries_repeats_across_chunks():
    lp = frames_for(list("_aa_a_"))
    whole = ctc_greedy(lp, TOKENS)[0]
    for cut in range(lp.shape[0] + 1):
        dec = GreedyDecoder(TOKENS)
        dec.accept(lp[:cut])
        dec.accept(lp[cut:])
        assert dec.text() == whole == "aa"


def test_low_confidence_word():
    lp = frames_for(list("_hi_")) * 0 + frames_for(list("_hi_"), p=0.3)
    assert ctc_greedy(lp, TOKENS)[1][0]["conf"] == pytest.approx(0.3, abs=1e-3)


def test_trailing_silence_counts_blank_frames():
    dec = GreedyDecoder(TOKENS)
    dec.accept(frames_for(list("__ab____")))
    assert dec.has_speech and dec.trailing_silence_frames == 4


# -- checkpoints -------------------------------------------------------------


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    model = GRUCTC(ModelConfig(hidden_size=24, num_layers=2, conv_channels=16))
    model.set_normalization(torch.randn(80), torch.rand(80) + 1)
    return model.eval()


def test_checkpoint_round_trip(tmp_path, tiny_model):
    path = tmp_path / "m.pt"
    save_checkpoint(path, tiny_model, TOKENS, extra={"trained_on": "test"})
    loaded = load_checkpoint(path)
    assert loaded.config == tiny_model.config and loaded.tokens == TOKENS
    assert loaded.extra == {"trained_on": "test"}
    feats = torch.randn(1, 40, 80)
    with torch.no_grad():
        assert torch.equal(tiny_model(feats, torch.tensor([40]))[0], loaded(feats, torch.tensor([40]))[0])
    assert torch.equal(loaded.feat_mean, tiny_model.feat_mean)
    assert not list(tmp_path.glob("*.tmp"))  # written atomically


def test_bad_checkpoints_give_one_line_errors(tmp_path, tiny_model):
    good = tmp_path / "good.pt"
    save_checkpoint(good, tiny_model, TOKENS)
    data = good.read_bytes()
    cases = {}
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    cases["truncated.pt"] = "truncated or corrupt"
    (tmp_path / "corrupt.pt").write_bytes(bytes(range(256)) * 40)
    cases["corrupt.pt"] = "truncated or corrupt"
    (tmp_path / "empty.pt").write_bytes(b"")
    cases["empty.pt"] = "empty file"
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    cases["foreign.pt"] = "not a gru-asr checkpoint"
    torch.save({"format": "gru-asr", "version": VERSION + 1}, tmp_path / "future.pt")
    cases["future.pt"] = f"version {VERSION + 1}"
    with open(tmp_path / "pickle.pt", "wb") as f:
        pickle.dump({"format": "gru-asr", "obj": ModelConfig()}, f)
    cases["pickle.pt"] = "not a gru-asr checkpoint|corrupt"
    bundle = read_bundle(good)
    bundle["state_dict"].pop("output.weight")
    torch.save(bundle, tmp_path / "mismatch.pt")
    cases["mismatch.pt"] = "weights do not match"
    bundle = read_bundle(good)
    bundle["config"]["colour"] = "blue"
    torch.save(bundle, tmp_path / "config.pt")
    cases["config.pt"] = "bad model config"
    cases["missing.pt"] = "no such file"
    for name, problem in cases.items():
        with pytest.raises(CheckpointError, match=problem) as info:
            load_checkpoint(tmp_path / name)
        message = str(info.value)
        assert name in message and "\n" not in message, message


def test_clip_word_times_stops_words_at_the_audio_end():
    words = [{"word": "a", "start": 0.4, "end": 0.48, "conf": 0.9}, {"word": "b", "start": 1.2, "end": 1.36, "conf": 1}]
    assert clip_word_times(words, 1.3) == [words[0], {"word": "b", "start": 1.2, "end": 1.3, "conf": 1}]
    assert clip_word_times(words, 1.0)[1]["start"] == 1.0 and clip_word_times([], 0.0) == []
