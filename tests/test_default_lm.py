"""The default English LM: the sphinx trie reader (asr.lm.sphinx), its cache (asr.lm.default), DecodingConfig."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from asr.decode.config import DecodingConfig
from asr.decode.greedy import ctc_greedy
from asr.lm import default as default_lm
from asr.lm.arpa import build_arpa, estimate
from asr.lm.sphinx import LOG10_BASE, SphinxLM, SphinxLMError
from asr.model.tokenizer import DEFAULT_TOKENS as TOKENS
from tests.test_beam import sentence

pocketsphinx = pytest.importorskip("pocketsphinx", reason="pocketsphinx (a dependency) is not installed")

CORPUS = [
    "the cat sat on the mat",
    "the dog sat on the log",
    "a cat and a dog",
    "the cat ate the dog food",
    "on the mat the cat sat",
]


@pytest.fixture(scope="module")
def tiny_bin(tmp_path_factory):
    """A sphinx trie model written by pocketsphinx itself from an ARPA file that asr.lm.arpa estimated."""
    folder = tmp_path_factory.mktemp("sphinx")
    build_arpa(CORPUS, folder / "tiny.arpa", order=3)
    model = pocketsphinx.NGramModel(pocketsphinx.Config(), pocketsphinx.LogMath(), str(folder / "tiny.arpa"))
    model.write(str(folder / "tiny.lm.bin"), pocketsphinx.NGramModel.str_to_type("bin"))
    return folder / "tiny.lm.bin"


def test_reader_round_trips_the_binary_format(tiny_bin, tmp_path):
    lm = SphinxLM(tiny_bin)
    table = estimate(CORPUS, 3)
    assert lm.order == 3 and lm.counts == [len(t) for t in table]
    for n in (1, 2, 3):
        for ids, logp, i in zip(lm.words[n].tolist(), lm.logp[n].tolist(), range(len(lm.logp[n])), strict=True):
            gram = tuple(lm.vocab[w] for w in ids)
            want_logp, want_bow = table[n - 1][gram]
            if want_logp > -90:  # <s> is never predicted: sphinx stores its own floor
                assert logp == pytest.approx(want_logp, abs=1e-5), gram
            if n < 3:
                assert lm.backoff[n][i] == pytest.approx(want_bow or 0.0, abs=1e-5), gram
    # and written as ARPA, every n-gram comes back with its probability
    lm.write_arpa(tmp_path / "back.arpa")
    text = (tmp_path / "back.arpa").read_text()
    assert text.startswith("\\data\\") and text.rstrip().endswith("\\end\\")
    lines = [line.split("\t") for line in text.splitlines() if "\t" in line]
    assert len(lines) == sum(lm.counts)
    probs = {tuple(f[1].split()): float(f[0]) for f in lines}
    assert probs[("the", "cat", "sat")] == pytest.approx(table[2][("the", "cat", "sat")][0], abs=1e-5)


def test_corrupt_models_are_one_line_errors(tiny_bin, tmp_path):
    data = tiny_bin.read_bytes()
    cases = {
        "missing.lm.bin": None,
        "text.lm.bin": b"this is not a language model\n",
        "truncated.lm.bin": data[: len(data) // 2],
        "header_only.lm.bin": data[:30],
    }
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(SphinxLMError) as err:
            SphinxLM(path)
        assert "\n" not in str(err.value) and str(path) in str(err.value)


@pytest.fixture(scope="module")
def english():
    return SphinxLM(default_lm.source_path())


def test_pocketsphinx_english_model_matches_pocketsphinx_scores(english):
    """Converted n-grams, queried with ARPA back-off, score as pocketsphinx's own reader does (4,000 n-grams:
    stored ones of each order, and random ones that back off)."""
    lm, vocab_size = english, len(english.vocab)
    assert lm.counts == [72547, 2051541, 1669625]

    def keys(words: np.ndarray) -> np.ndarray:
        key = np.zeros(len(words), np.int64)
        for k in range(words.shape[1]):
            key = key * vocab_size + words[:, k]
        return key

    tables = {}
    for n in (1, 2, 3):
        key = keys(lm.words[n])
        order = np.argsort(key)
        tables[n] = (key[order], lm.logp[n][order], None if lm.backoff[n] is None else lm.backoff[n][order])

    def find(n, gram):
        sorted_keys, logp, bow = tables[n]
        key = keys(np.array([gram]))[0]
        i = np.searchsorted(sorted_keys, key)
        if i < len(sorted_keys) and sorted_keys[i] == key:
            return logp[i], (bow[i] if bow is not None else None)
        return None

    def score(gram):
        hit = find(len(gram), gram)
        if hit is not None:
            return hit[0]
        context = find(len(gram) - 1, gram[:-1])
        return (context[1] if context else 0.0) + score(gram[1:])

    ps = pocketsphinx.NGramModel.readfile(str(default_lm.source_path()))
    rng = np.random.default_rng(0)
    stored = [lm.words[n][rng.integers(0, lm.counts[n - 1], 1000)] for n in (2, 3)]
    bos = lm.vocab.index("<s>")
    random_ids = rng.integers(0, vocab_size, (2000, 3))
    random_ids = random_ids[(random_ids != bos).all(axis=1)]
    for grams in [*stored, random_ids]:
        for gram in grams.tolist():
            theirs = ps.prob([lm.vocab[w] for w in reversed(gram)]) * LOG10_BASE  # sphinx: word first, then history
            assert score(gram) == pytest.approx(theirs, abs=1e-4), [lm.vocab[w] for w in gram]


@pytest.fixture
def cache(tmp_path, monkeypatch, tiny_bin):
    """The default LM's cache in a fresh folder, built from the tiny model."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(default_lm, "source_path", lambda: tiny_bin)
    return tmp_path / "cache" / "gru-asr"


def test_cache_is_built_once_atomically_and_rebuilt_when_broken(cache, monkeypatch, capsys):
    assert not default_lm.is_built()
    path = default_lm.default_lm_path(progress=False)
    assert path.parent == cache and path.read_text().startswith("\\data\\") and default_lm.is_built()
    assert "building the English language model" in capsys.readouterr().err
    mtime = path.stat().st_mtime_ns
    assert default_lm.default_lm_path() == path and path.stat().st_mtime_ns == mtime  # used as it is
    assert capsys.readouterr().err == ""

    path.write_text(path.read_text()[:100])  # a truncated cache (a crash, a full disk) is rebuilt
    assert not default_lm.is_built()
    default_lm.default_lm_path(progress=False)
    assert default_lm.is_built()

    # a conversion that fails half-way leaves neither a partial file nor a temporary one
    path.unlink()

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(SphinxLM, "write_arpa", fail)
    with pytest.raises(default_lm.LMUnavailable, match="No space left on device"):
        default_lm.build()
    assert sorted(p.name for p in cache.iterdir()) == [f"{default_lm.NAME}.json"]


def test_write_arpa_replaces_atomically(tiny_bin, tmp_path, monkeypatch):
    lm = SphinxLM(tiny_bin)
    out = tmp_path / "lm.arpa"
    out.write_text("the old file\n")

    def interrupted(lines):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        lm.write_arpa(out, progress=interrupted)
    assert out.read_text() == "the old file\n" and sorted(p.name for p in tmp_path.iterdir()) == ["lm.arpa"]


def test_without_the_lm_finals_fall_back_to_greedy(monkeypatch, capsys):
    def missing():
        raise default_lm.LMUnavailable("the pocketsphinx package is not installed")

    monkeypatch.setattr(default_lm, "source_path", missing)
    monkeypatch.setenv("XDG_CACHE_HOME", "/nonexistent")
    config = DecodingConfig().resolved()
    assert config.method == "greedy" and config.lm is None
    assert DecodingConfig().beam_factory(TOKENS) is None
    assert "final results are decoded greedily" in capsys.readouterr().err
    # hotwords still get the beam, without an LM
    assert DecodingConfig(hotwords=(("cat", 2.0),)).beam_factory(TOKENS) is not None


def test_default_lm_fixes_a_spelling_the_acoustics_got_wrong():
    log_probs = sentence("the cat sat on the mat", {2: {"a": 0.55, "e": 0.4}})  # "tha cat ..." by a hair
    assert ctc_greedy(log_probs, TOKENS)[0] == "tha cat sat on the mat"
    beam = DecodingConfig().beam_factory(TOKENS)()
    assert beam.decode(log_probs)[0]["text"] == "the cat sat on the mat"
    no_lm = DecodingConfig(lm=None).beam_factory(TOKENS)()
    assert no_lm.decode(log_probs)[0]["text"] == "tha cat sat on the mat"
    assert DecodingConfig(method="greedy").beam_factory(TOKENS) is None


def test_beam_word_times_equal_greedy_on_clear_speech():
    log_probs = sentence("the cat sat on the mat")
    _, greedy_words = ctc_greedy(log_probs, TOKENS)
    words = DecodingConfig().beam_factory(TOKENS)().decode(log_probs)[0]["words"]
    assert [(w["word"], w["start"], w["end"]) for w in words] == [
        (w["word"], w["start"], w["end"]) for w in greedy_words
    ]
    assert all(0 < w["conf"] <= 1 for w in words)


def test_decoding_config_checks_everything_once():
    for bad, message in [
        (dict(method="fast"), "decoding must be one of"),
        (dict(beam_size=0), "beam size"),
        (dict(beam_size=2.5), "beam size"),
        (dict(lm_weight=float("nan")), "lm weight must be a finite number"),
        (dict(lm_weight=-1.0), "lm weight must be >= 0"),
        (dict(word_score=float("inf")), "word score"),
        (dict(lm="/nonexistent.arpa"), "language model file not found"),
        (dict(lexicon="/nonexistent.txt"), "lexicon file not found"),
        (dict(hotwords=(("", 1.0),)), "bad hotword"),
        (dict(hotwords=(("zebra", float("nan")),)), "bad hotword weight"),
        (dict(nbest=0), "alternatives"),
    ]:
        with pytest.raises(ValueError, match=message):
            DecodingConfig(**bad)
    config = DecodingConfig(hotwords=("new york", ("zebra", 3)))
    assert config.hotwords == (("new york", 2.0), ("zebra", 3.0))
    with pytest.raises(AttributeError):
        config.beam_size = 4  # frozen


def test_command_line_options_and_one_line_errors(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    DecodingConfig.add_arguments(parser)
    args = parser.parse_args(
        ["--decoding", "greedy", "--hotword", "new york:3.5", "--hotword", "zebra", "--lm", "none"]
    )
    config = DecodingConfig.from_args(args)
    assert config.method == "greedy" and config.lm is None
    assert config.hotwords == (("new york", 3.5), ("zebra", 2.0)) and config.uses_beam
    with pytest.raises(ValueError, match="bad hotword weight 'abc'"):
        DecodingConfig.from_args(parser.parse_args(["--hotword", "quick:abc"]))

    run = [sys.executable, "-m", "asr.apps.cli"]
    out = subprocess.run([*run, "lm", "info"], capture_output=True, text=True)
    assert out.returncode == 0 and "en-us.lm.bin" in out.stdout and "beam 64" in out.stdout
    for bad, message in [
        (["--beam-size", "-1"], "beam size"),
        (["--lm-weight", "nan"], "lm weight"),
        (["--lm", str(tmp_path / "none.arpa")], "language model file not found"),
    ]:
        out = subprocess.run([*run, "transcribe", *bad, "examples/hello.wav"], capture_output=True, text=True)
        assert out.returncode == 2 and out.stderr.startswith("asr: error:") and message in out.stderr
        assert "Traceback" not in out.stderr


def test_lexicon_free_decoding_with_a_character_lm(tmp_path):
    from asr.lm.arpa import char_sentence

    chars = build_arpa([char_sentence(s) for s in CORPUS], tmp_path / "chars.arpa", order=4)
    config = DecodingConfig(lm=str(chars), lexicon="free", lm_weight=1.0)
    assert "lexicon-free" in config.describe()
    beam = config.beam_factory(TOKENS)()
    assert not beam.lexicon_mode
    log_probs = sentence("the cat sat", {2: {"a": 0.55, "e": 0.4}})
    assert beam.decode(log_probs)[0]["text"] == "the cat sat"
    # a spelling no lexicon holds survives when the acoustics are sure of it
    assert beam.decode(sentence("the zat sat"))[0]["text"] == "the zat sat"
