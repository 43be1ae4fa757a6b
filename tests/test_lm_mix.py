"""asr.lm.mix: two ARPA models interpolated into one, read back by KenLM and used in beam search."""

import math

import pytest
from flashlight.lib.text.decoder.kenlm import KenLM
from flashlight.lib.text.dictionary import create_word_dict
from test_beam import CORPUS as CATS
from test_beam import WORDS, best, cat_or_cad

from asr.decode.beam import BeamSearchDecoder
from asr.lm.arpa import BOS, build_arpa, estimate, write_arpa
from asr.lm.mix import ArpaError, main, mix, prob, read_arpa
from asr.model.tokenizer import DEFAULT_TOKENS as TOKENS

CADS = ["the cad sat", "a cad ran here", "the cad is big", "new york is big"]


@pytest.fixture
def models(tmp_path):
    return build_arpa(CATS, tmp_path / "cats.arpa"), build_arpa(CADS, tmp_path / "cads.arpa")


def test_read_arpa_gives_back_what_was_estimated(models):
    table = read_arpa(models[0])
    for n, grams in enumerate(estimate(CATS, 3)):
        assert table[n].keys() == grams.keys()
        for gram, (logp, bow) in grams.items():
            assert table[n][gram][0] == pytest.approx(logp, abs=1e-6)
            assert (table[n][gram][1] is None) == (bow is None)


def test_seen_ngrams_are_the_exact_mixture_and_every_context_sums_to_one(models):
    a, b = read_arpa(models[0]), read_arpa(models[1])
    mixed = mix(a, b, 0.7)
    assert mixed[2].keys() == a[2].keys() | b[2].keys()
    for gram in [("the", "cat", "sat"), ("the", "cad", "sat"), ("new", "york"), ("cat",)]:
        expected = 0.7 * prob(a, gram) + 0.3 * prob(b, gram)
        assert 10 ** mixed[len(gram) - 1][gram][0] == pytest.approx(expected, rel=1e-9)
    vocab = [w for (w,) in mixed[0] if w != BOS]
    contexts = [()] + [g for g in mixed[0] if g[0] != "</s>"] + list(mixed[1])
    for context in contexts:  # to 1e-5: the two models were read from ARPA's 6 decimals
        total = sum(prob(mixed, context + (w,)) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-5), context
    # weight 1 keeps the first model's seen n-grams as they were
    whole = mix(a, b, 1.0)
    for gram, (logp, _) in a[2].items():
        assert whole[2][gram][0] == pytest.approx(logp, abs=1e-9)
    with pytest.raises(ValueError, match="within 0-1"):
        mix(a, b, 1.5)


def test_the_mixed_arpa_loads_in_kenlm_and_moves_the_beam_between_the_two(models, tmp_path):
    a, b = read_arpa(models[0]), read_arpa(models[1])
    path = write_arpa(mix(a, b, 0.5), tmp_path / "mixed.arpa")
    words = sorted(w for (w,) in read_arpa(path)[0])
    lm = KenLM(str(path), create_word_dict({w: [[w]] for w in words}))  # KenLM accepts the file
    assert lm is not None
    assert math.isclose(sum(10**p for p, _ in read_arpa(path)[0].values() if p > -99), 1.0, abs_tol=1e-4)
    log_probs = cat_or_cad(0.45, 0.45)
    by_weight = {}
    for weight in (0.95, 0.05):
        mixed = write_arpa(mix(a, b, weight), tmp_path / f"mixed{weight}.arpa")
        by_weight[weight] = best(BeamSearchDecoder(TOKENS, lexicon=WORDS, lm=mixed, lm_weight=1.0), log_probs)
    assert by_weight == {0.95: "the cat sat", 0.05: "the cad sat"}


def test_cli_and_its_one_line_errors(models, tmp_path, capsys):
    out = tmp_path / "m.arpa"
    assert main([str(models[0]), str(models[1]), str(out), "--weight", "0.6"]) == 0
    assert "wrote" in capsys.readouterr().err and len(read_arpa(out)) == 3
    assert main([str(models[0]), str(tmp_path / "none.arpa"), str(out)]) == 1
    assert "none.arpa" in capsys.readouterr().err
    assert main([str(models[0]), str(models[1]), str(out), "--weight", "2"]) == 1
    assert "within 0-1" in capsys.readouterr().err
    broken = tmp_path / "broken.arpa"
    broken.write_text(models[0].read_text().replace("ngram 2=", "ngram 2=1"))
    with pytest.raises(ArpaError, match="header counts"):
        read_arpa(broken)
