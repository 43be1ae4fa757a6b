"""Beam search (asr.decode.beam) and n-gram LM building (asr.lm.arpa) on hand-made CTC posteriors."""

import math
import random
import re

import pytest
import torch
from flashlight.lib.text.decoder.kenlm import KenLM
from flashlight.lib.text.dictionary import create_word_dict

from asr.decode.beam import BeamSearchDecoder
from asr.decode.greedy import FRAME_SHIFT, ctc_greedy
from asr.lm.arpa import build_arpa, build_lexicon, char_sentence, main
from asr.model.tokenizer import DEFAULT_TOKENS as TOKENS

CORPUS = ["the cat sat on the mat", "the cat sat", "a cat sat here", "the dog sat on a log", "a dog ran"]
WORDS = sorted({w for s in CORPUS for w in s.split()} | {"cad", "york", "yorc", "new", "is", "big"})


def frames(*items, floor=1e-3) -> torch.Tensor:
    """Each item a token (p = 0.95) or {token: prob}; the rest spread evenly. -> (U, V) log-probs."""
    rows = []
    for item in items:
        dist = {item: 0.95} if isinstance(item, str) else dict(item)
        row = torch.full((len(TOKENS),), (max(1.0 - sum(dist.values()), 0.0) + floor * len(TOKENS)) / len(TOKENS))
        for token, p in dist.items():
            row[TOKENS.index(token)] += p
        rows.append(row / row.sum())
    return torch.stack(rows).log() if rows else torch.zeros(0, len(TOKENS))


def sentence(text: str, ambiguous: dict | None = None) -> torch.Tensor:
    """A CTC path: a blank, then 2 frames + a blank per letter, ' ' + a blank between words.

    ambiguous: {character index in text: {token: prob}} replaces that letter's two frames.
    """
    ambiguous = ambiguous or {}
    items = ["<blank>"]
    for i, c in enumerate(text):
        item = ambiguous.get(i, c)
        items += [" ", "<blank>"] if c == " " else [item, item, "<blank>"]
    return frames(*items)


def cat_or_cad(p_t: float, p_d: float) -> torch.Tensor:
    """'the ca? sat' with the ? frames split between t and d."""
    return sentence("the cat sat", {6: {"t": p_t, "d": p_d}})


def best(decoder: BeamSearchDecoder, log_probs: torch.Tensor) -> str:
    return decoder.decode(log_probs)[0]["text"]


@pytest.fixture(scope="module")
def arpa(tmp_path_factory):
    return build_arpa(CORPUS, tmp_path_factory.mktemp("lm") / "words.arpa", order=3)


def test_beam_without_lm_equals_greedy_on_clean_paths():
    for text in ["the cat sat on the mat", "a dog ran", "hello world it's me", "aa bb"]:
        log_probs = sentence(text)
        assert ctc_greedy(log_probs, TOKENS)[0] == text
        assert best(BeamSearchDecoder(TOKENS), log_probs) == text
    words = "the cat sat on mat".split()
    assert (
        best(BeamSearchDecoder(TOKENS, lexicon=words), sentence("the cat sat on the mat")) == "the cat sat on the mat"
    )


@pytest.mark.parametrize("mode", ["free", "lexicon+lm", "free+hotwords", "lexicon+lm+hotwords"])
def test_incremental_equals_whole_over_random_chunkings(mode, arpa):
    options = {
        "free": {},
        "lexicon+lm": {"lexicon": WORDS, "lm": arpa},
        "free+hotwords": {"hotwords": [("cat", 1.0), "dog ran"]},
        "lexicon+lm+hotwords": {"lexicon": WORDS, "lm": arpa, "hotwords": [("new york", 0.5)]},
    }[mode]
    rng = random.Random(0)
    text = "the cat sat on the mat a dog ran the cat sat"
    ambiguous = {i: {c: 0.5, "d": 0.4} for i, c in enumerate(text) if c != " " and rng.random() < 0.3}
    log_probs = sentence(text, ambiguous)
    log_probs = (
        log_probs + 0.3 * torch.randn(log_probs.shape, generator=torch.Generator().manual_seed(0))
    ).log_softmax(-1)
    decoder = BeamSearchDecoder(TOKENS, nbest=3, **options)
    whole = decoder.decode(log_probs, time_offset=1.5)
    for _ in range(4):
        decoder.begin()
        i = 0
        while i < len(log_probs):
            n = rng.randint(0, 12)
            decoder.step(log_probs[i : i + n])
            assert isinstance(decoder.best(), str)
            i += n
        assert decoder.end(time_offset=1.5) == whole


def test_partial_results_grow():
    log_probs = sentence("the cat sat")
    decoder = BeamSearchDecoder(TOKENS, lexicon=WORDS)
    decoder.begin()
    partials = []
    for i in range(0, len(log_probs), 4):
        decoder.step(log_probs[i : i + 4])
        partials.append(decoder.best())
    assert partials[-1] == "the cat sat"
    assert all("the cat sat".startswith(p) for p in partials)


def test_arpa_file_sanity(arpa):
    text = arpa.read_text()
    counts = {int(n): int(c) for n, c in re.findall(r"^ngram (\d+)=(\d+)$", text, re.M)}
    sections = re.split(r"^\\(\d)-grams:$", text, flags=re.M)
    assert text.startswith("\\data\\") and text.rstrip().endswith("\\end\\")
    assert sorted(int(n) for n in sections[1::2]) == sorted(counts) == [1, 2, 3]
    for n, body in zip(sections[1::2], sections[2::2], strict=True):
        entries = [line.split("\t") for line in body.strip().splitlines() if line and not line.startswith("\\")]
        assert len(entries) == counts[int(n)]
        assert all(len(e[1].split()) == int(n) and float(e[0]) <= 0 for e in entries)
    assert {"<s>", "</s>", "<unk>"} <= {line.split("\t")[1] for line in sections[2].strip().splitlines()}

    # KenLM loads it, and from any context the probabilities of all words (and </s>) sum to 1
    vocab = sorted({w for s in CORPUS for w in s.split()}) + ["<unk>"]
    word_dict = create_word_dict({**{w: [[*w, "|"]] for w in vocab}, "<unk>": []})
    lm = KenLM(str(arpa), word_dict)
    for context in [[], ["the"], ["the", "cat"], ["on", "a"], ["dog", "the"]]:
        state = lm.start(False)
        for w in context:
            state, _ = lm.score(state, word_dict.get_index(w))
        total = sum(10 ** lm.score(state, word_dict.get_index(w))[1] for w in vocab) + 10 ** lm.finish(state)[1]
        assert total == pytest.approx(1.0, abs=1e-4)
    the = lm.start(False)
    the, _ = lm.score(the, word_dict.get_index("the"))
    assert lm.score(the, word_dict.get_index("cat"))[1] > lm.score(the, word_dict.get_index("ran"))[1]


def test_word_lm_resolves_an_ambiguous_word(arpa, tmp_path):
    log_probs = cat_or_cad(0.4, 0.5)  # acoustics slightly prefer "cad"
    assert ctc_greedy(log_probs, TOKENS)[0] == "the cad sat"
    assert best(BeamSearchDecoder(TOKENS, lexicon=WORDS, lm=arpa, lm_weight=0.0), log_probs) == "the cad sat"
    assert best(BeamSearchDecoder(TOKENS, lexicon=WORDS, lm=arpa, lm_weight=0.5), log_probs) == "the cat sat"
    # the other direction: an LM that has seen "cad" pulls a slightly more "cat"-like path to it
    cad_lm = build_arpa([s.replace("cat", "cad") for s in CORPUS], tmp_path / "cad.arpa")
    assert best(BeamSearchDecoder(TOKENS, lexicon=WORDS, lm=cad_lm), cat_or_cad(0.5, 0.4)) == "the cad sat"
    # a character LM in lexicon-free mode does the same
    chars = build_arpa([char_sentence(s) for s in CORPUS], tmp_path / "chars.arpa", order=4)
    assert best(BeamSearchDecoder(TOKENS, lm=chars), log_probs) == "the cat sat"


@pytest.mark.parametrize("lexicon", [None, WORDS], ids=["free", "lexicon"])
def test_hotword_flips_an_ambiguous_word_and_less_likely_needs_more(lexicon):
    def decoded(log_probs, weight):
        return best(BeamSearchDecoder(TOKENS, lexicon=lexicon, hotwords=[("cat", weight)]), log_probs)

    close, far = cat_or_cad(0.4, 0.5), cat_or_cad(0.2, 0.7)  # acoustic odds per frame 1.25 and 3.5, two frames
    assert best(BeamSearchDecoder(TOKENS, lexicon=lexicon), close) == "the cad sat"
    assert decoded(close, 0.25) == "the cad sat"
    assert decoded(close, 1.0) == "the cat sat"
    assert decoded(far, 1.0) == "the cad sat"
    assert decoded(far, 3.0) == "the cat sat"
    # a weight is a bonus per word in natural-log units: it must beat 2 ln(odds)
    assert 2 * math.log(0.5 / 0.4) < 1.0 < 2 * math.log(0.7 / 0.2) < 3.0


@pytest.mark.parametrize("lexicon", [None, WORDS], ids=["free", "lexicon"])
def test_hotword_phrases_earn_only_when_complete(lexicon):
    log_probs = sentence("new yorc is big", {7: {"k": 0.4, "c": 0.5}})

    def decoded(phrase):
        return best(BeamSearchDecoder(TOKENS, lexicon=lexicon, hotwords=[(phrase, 0.3)]), log_probs)

    assert decoded("new york") == "new york is big"  # 2 x 0.3 beats the acoustic margin 2 ln 1.25 = 0.45
    assert decoded("york") == "new yorc is big"  # 0.3 alone does not
    assert decoded("old york") == "new yorc is big"  # a partial match gives its bonus back
    if lexicon is None:  # letters match whole words only
        bobcat = sentence("a bobcad sat", {7: {"t": 0.4, "d": 0.5}})
        assert best(BeamSearchDecoder(TOKENS, hotwords=[("cat", 3.0)]), bobcat) == "a bobcad sat"
        assert best(BeamSearchDecoder(TOKENS, hotwords=[("bobcat", 3.0)]), bobcat) == "a bobcat sat"


def test_hotword_outside_the_lexicon_is_added():
    log_probs = sentence("the cat sat", {6: {"t": 0.4, "d": 0.5}})
    assert best(BeamSearchDecoder(TOKENS, lexicon=["the", "cad", "sat"]), log_probs) == "the cad sat"
    assert best(BeamSearchDecoder(TOKENS, lexicon=["the", "cad", "sat"], hotwords=["cat"]), log_probs) == "the cat sat"


@pytest.mark.parametrize("lm_weight", [0.0, 1.5, 3.0])
@pytest.mark.parametrize("mode", ["lexicon+lm", "free+chars", "free"])
def test_an_unmatched_hotword_changes_no_hypothesis(mode, lm_weight, arpa, tmp_path_factory):
    # issue 29: a decoder with hotwords scored the trie's look-ahead with weight 1 instead of lm_weight and merged
    # hypotheses the decoder without them keeps apart, so "zebra:0" changed 19 of real_en's 42 transcripts
    chars = build_arpa([char_sentence(s) for s in CORPUS], tmp_path_factory.mktemp("lm") / "chars.arpa", order=4)
    options = {"lexicon+lm": {"lexicon": WORDS, "lm": arpa}, "free+chars": {"lm": chars}, "free": {}}[mode]
    options.update(beam_size=4, nbest=3, lm_weight=lm_weight)  # a narrow beam: pruning decides
    for seed in range(10):
        rng = random.Random(seed)
        text = f"{rng.choice(CORPUS)} {rng.choice(CORPUS)}"
        ambiguous = {
            i: {c: 0.5, rng.choice("dtmsa"): 0.4} for i, c in enumerate(text) if c != " " and rng.random() < 0.4
        }
        log_probs = sentence(text, ambiguous)
        noise = torch.randn(log_probs.shape, generator=torch.Generator().manual_seed(seed))
        log_probs = (log_probs + noise).log_softmax(-1)
        without = BeamSearchDecoder(TOKENS, **options).decode(log_probs)
        for hotwords in ([("zebra", 0.0)], [("new york", 0.0), ("cat", 0.0)]):  # outside the lexicon, in it
            boosted = BeamSearchDecoder(TOKENS, hotwords=hotwords, **options).decode(log_probs)
            assert boosted == without, (seed, hotwords)  # texts, confidences, words, times


def test_an_unrelated_hotword_changes_no_real_en_transcript(default_model, shared_data):
    import csv

    import asr
    from asr.decode.config import DecodingConfig

    plain = DecodingConfig().resolved()
    if plain.method != "beam":
        pytest.skip("the default language model cannot be had here (see the warning above)")
    root = shared_data / "real_en"
    with open(root / "transcripts.tsv", newline="") as f:
        paths = [root / row["file"] for row in csv.DictReader(f, delimiter="\t")]
    assert len(paths) == 42
    for hotword in (("zebra", 0.0), ("zebra", 2.0)):  # 2: a server's phrase_list weight
        boosted = plain.replace(hotwords=(hotword,))
        changed = [
            p.name
            for p in paths
            if asr.transcribe(default_model, p, decoding=boosted) != asr.transcribe(default_model, p, decoding=plain)
        ]
        assert changed == [], f"{hotword} changed {len(changed)} of {len(paths)}: {changed}"


@pytest.mark.parametrize("options", [{}, {"lexicon": WORDS}], ids=["free", "lexicon"])
def test_nbest_distinct_sorted_confidences(options):
    log_probs = sentence("the cat sat", {6: {"t": 0.4, "d": 0.5}, 8: {"s": 0.5, "m": 0.4}})
    results = BeamSearchDecoder(TOKENS, nbest=4, **options).decode(log_probs)
    texts = [r["text"] for r in results]
    confidences = [r["confidence"] for r in results]
    assert 2 <= len(results) <= 4 and len(set(texts)) == len(texts)
    assert confidences == sorted(confidences, reverse=True)
    assert all(0 <= c <= 1 for c in confidences) and sum(confidences) <= 1 + 1e-3
    assert texts[0] == "the cad sat"
    if options:
        assert set(texts) == {"the cad sat", "the cad mat", "the cat sat", "the cat mat"}
    assert BeamSearchDecoder(TOKENS, **options).decode(frames())[0]["text"] == ""  # no frames


def test_word_times_come_from_frames():
    log_probs = sentence("the cat")  # frames: blank, t t _, h h _, e e _, ' ' _, c c _ ...
    (result,) = BeamSearchDecoder(TOKENS, lexicon=["the", "cat"]).decode(log_probs, time_offset=10.0)
    the, cat = result["words"]
    assert (the["word"], the["start"], the["end"]) == (
        "the",
        round(10 + 1 * FRAME_SHIFT, 3),
        round(10 + 8 * FRAME_SHIFT, 3),
    )
    assert (cat["word"], cat["start"], cat["end"]) == (
        "cat",
        round(10 + 12 * FRAME_SHIFT, 3),
        round(10 + 19 * FRAME_SHIFT, 3),
    )
    assert 0.9 < the["conf"] <= 1


def test_lexicon_file(tmp_path):
    path = build_lexicon(["cat", "the", "cat", "<unk>", "naïve", "it's"], tmp_path / "lex.txt", tokens=TOKENS)
    assert path.read_text() == "cat\tc a t |\nthe\tt h e |\nit's\ti t ' s |\n"
    assert best(BeamSearchDecoder(TOKENS, lexicon=path), sentence("the cat")) == "the cat"


def test_bad_inputs_give_one_line_value_errors(tmp_path, arpa):
    bad_lexicon = tmp_path / "bad.lex"
    bad_lexicon.write_text("cat\tc a t |\ndog\tD o g |\n")
    bad_lm = tmp_path / "bad.arpa"
    bad_lm.write_text("not an arpa file\n")
    cases = [
        ({"lm": tmp_path / "missing.arpa"}, "missing.arpa"),
        ({"lm": bad_lm}, "bad.arpa"),
        ({"lexicon": tmp_path / "missing.lex"}, "missing.lex"),
        ({"lexicon": bad_lexicon}, "bad.lex line 2"),
        ({"beam_width": 3}, "beam_width"),
        ({"beam_size": 0}, "beam_size"),
        ({"hotwords": [("cat", float("nan"))]}, "hotword"),
        ({"lexicon": WORDS, "hotwords": ["caté"]}, "caté"),
    ]
    for options, needle in cases:
        with pytest.raises(ValueError, match=re.escape(needle)) as error:
            BeamSearchDecoder(TOKENS, **options)
        assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="log_probs"):
        BeamSearchDecoder(TOKENS).decode(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="tokens"):
        BeamSearchDecoder(["a", "b"])


def test_lm_cli(tmp_path, capsys):
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(CORPUS) + "\n")
    assert main([str(text), str(tmp_path / "out.arpa"), "--order", "2", "--lexicon", str(tmp_path / "lex")]) == 0
    assert "ngram 2=" in (tmp_path / "out.arpa").read_text()
    assert (tmp_path / "lex").read_text().startswith("the\tt h e |\n")
    assert main([str(tmp_path / "nope.txt"), str(tmp_path / "x.arpa")]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error:") and "nope.txt" in err
    assert main([str(text), str(tmp_path / "x.arpa"), "--order", "0"]) == 1
