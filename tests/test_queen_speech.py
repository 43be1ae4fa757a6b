"""Flight of the Amazon Queen's speech: clip names derived as the engine does, from a miniature queen.1c made here."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest

LOCAL = Path(__file__).resolve().parents[1] / "recipes" / "default_en" / "local"
sys.path.insert(0, str(LOCAL))

from queen_speech import GAME, Line, clip_texts, person, refusal, segments, spoken, voice_file  # noqa: E402


class Blob:
    """Big-endian values and the game's strings (a length byte, the text, padding to `align`)."""

    def __init__(self):
        self.data = bytearray()

    def h(self, *values: int) -> Blob:
        self.data += struct.pack(f">{len(values)}h", *values)
        return self

    def s(self, text: str, align: int = 2) -> Blob:
        raw = text.encode("latin-1")
        self.data += bytes([len(raw)]) + raw
        if raw:
            self.data += b"\0" * (-len(self.data) % align)
        return self

    def at(self) -> int:
        return len(self.data)

    def patch(self, offset: int, value: int) -> None:
        struct.pack_into(">H", self.data, offset, value)


def dog() -> bytes:
    """FAYE1.DOG: talk key 5, one level; Joe's table (an opening line, id 6 twice), the person's, the greetings."""
    b = Blob().h(1, 5, 5, 3, 2).h(*[0] * 6).h(0, 0, 0).h(0, 0)  # 32 bytes; three pointers patched below
    b.data += bytes(96)  # the tree
    for ident, text in ((0, "Hello, I'm Joe.*03Who are you?"), (6, "Nice hat.*02"), (6, "Never said.")):
        b.h(0, ident).s(text, align=4)
    b.patch(22, b.at())
    for ident, text in ((0, "Hi again Joe."), (6, "Thanks!*00I *XY00(10,20)made it.*GD*02Bye.")):
        b.h(0, ident).s(text, align=4)
    b.patch(26, b.at())
    b.s("Hi again Joe.").s("0")  # the person's greeting when they have met; Joe's is "0": none
    b.patch(24, b.at())
    b.h(0, 0).s("")
    return bytes(b.data)


def cut() -> bytes:
    """C1A.CUT: Joe speaks, a rock animates (frames to skip), Sparky speaks, a text object is said."""
    b = Blob().h(0, 4, 0, 0, 0, 0)  # panel, 4 objects, flags; states, sentences, banks patched below

    def obj(number: int, anims: int = 0, execute: int = 0) -> Blob:
        return b.h(number, 0, 0, 0, anims, execute, *[0] * 11).h(1, -1)  # one person to turn on

    obj(0)
    obj(3, anims=1, execute=1).h(3, *[1] * 9, 3, *[2] * 9, -2)  # two frames
    obj(1)
    obj(-3)
    b.patch(10, b.at())
    b.h(0).s("FAYE1.DOG").h(2)  # no banks; then the dialogue and its person (object 2)
    b.patch(8, b.at())
    b.s("*FF")
    for text in ("Let's go.*FR", "*", "Hi Joe, &#($!! it's you.*02", "Joe!*01We found you!"):
        b.s(text)
    b.patch(6, b.at())
    b.h(0, 0, 0, 0)
    return bytes(b.data)


def jas() -> tuple[bytes, bytes]:
    """QUEEN.JAS (1 room: Sparky, Faye, a rock; one command starts FAYE1.DOG; two actors) and QUEEN2.JAS."""
    b = Blob().h(1, 3, 3, 3)  # rooms, names, objects, descriptions
    for name, image in ((1, -4), (2, -3), (3, -1)):  # name, x, y, description, entry, room, state, image
        b.h(name, 0, 0, 0, 0, 1, 0, image)
    b.h(0, 3).h(0).h(0).h(0)  # room starts, room sound, no items, no graphics
    b.h(3, 1).h(*[0] * 8)  # room 1: 3 objects, 1 area
    b.h(*[0] * 12)  # 3 object boxes
    b.h(0).h(0)  # walk-offs, description sequences
    b.h(1).h(6, 2, 0, 0, 0, 0, 0, 1, 0, 0)  # one command: talk to object 2
    b.h(0, 0, 0, 0).h(0, 0, 0, 0).h(0, 0, 0, 0)  # no areas, objects, items (each still holds one record)
    b.h(1).h(1, 0, 0, 3)  # its game state: speak description 3 (the dialogue)
    b.h(1).h(0)  # entry object, no furniture
    b.h(2, 0, 2, 0).h(1, 1, 1, *[0] * 9).h(1, 2, 2, *[0] * 9)  # SPARKY-F is person 1, FAYE-H person 2
    b.h(0, 0, 0, 0)  # no graphic animations (one record)
    b.data += b"CEM10\0"
    strings = ["It's a rock.*02", 'There\'s a label:*14"Danger!" *14', "faye1.DOG", "Sparky", "Faye", "rock"]
    responses = ["It doesn't seem to open*03", *[""] * 20, "Do you want to RESTART (Y/N)?", *[""] * 18]
    strings += ["ROOM1", *["v"] * 12, *responses, "SPARKY-F", "FAYE-H"]
    return bytes(b.data), "\r\n".join(strings).encode("latin-1") + b"\r\n"


CLIPS = {  # clip: the label it must get (None: not in the manifest)
    "05SSSSJ1": ("hello i'm joe", "queen_joe"),
    "05SSSSJ2": ("who are you", "queen_joe"),
    "050006J1": ("nice hat", "queen_joe"),
    "050006P1": ("thanks", "queen_faye"),
    "050006P2": ("i", "queen_faye"),
    "050006P5": ("bye", "queen_faye"),
    "05XXXXP1": ("hi again joe", "queen_faye"),
    "JOE00011": ("it doesn't seem to open", "queen_joe"),
    "JOE00421": ("there's a label", "queen_joe"),
    "JOE00422": ("danger", "queen_joe"),
    "C1A__011": ("let's go", "queen_joe"),
    "C1A__031": ("hi joe it's you", "queen_sparky"),
    "C1A__041": ("joe we found you", "queen_c1a"),
    "BLANK000": None,  # a clip no string names
    "JOE00221": None,  # a journal text: shown, not said
}


def make_queen_tree(root: Path) -> Path:
    """What the Debian package unpacks to, in miniature: a queen.1c with MP3 clips, a sound effect, a broken clip."""
    import io

    import numpy as np
    import soundfile as sf

    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile cannot write MP3 (1.1.0 or later with LAME and mpg123 is needed)")
    tone = (0.3 * np.sin(np.arange(5513) * 0.2)).astype(np.float32)
    files = {}
    for name in [*CLIPS, "129SSSSS"]:
        buffer = io.BytesIO()
        sf.write(buffer, tone, 11025, format="MP3")
        files[f"{name}.SB"] = buffer.getvalue()
    files["DEBBIE_0.SB"] = b"\xff\xfbnot really MP3" * 4
    logic, strings = jas()
    header = bytes(20)
    files |= {"FAYE1.DOG": header + dog(), "C1A.CUT": header + cut(), "QUEEN.JAS": header + logic}
    files["QUEEN2.JAS"] = strings
    names = sorted(files)
    offset = 15 + 21 * len(names)
    table, body = bytearray(), bytearray()
    for name in names:
        table += name.encode().ljust(12, b"\0") + bytes([1]) + struct.pack(">II", offset + len(body), len(files[name]))
        body += files[name]
    game = root / GAME
    game.mkdir(parents=True)
    (game / "queen.1c").write_bytes(
        b"QTBL" + b"CEM10\0" + bytes(2) + bytes([1]) + struct.pack(">H", len(names)) + table + body
    )
    return root


def test_voice_files_and_segments():
    assert voice_file(f"{2:2d}{0x1E:4x}P", 0) == "02001EP1.SB"  # the engine prints "%2d%4xP"
    assert voice_file(f"{61:2d}SSSSJ", 10) == "61SSSSJB.SB"
    assert voice_file("C30E_10", 1) == "C30E_102.SB"
    # *XY00(237,112) is 13 characters; a segment ending in *GD is counted, not said
    assert segments("Hi*01there*XY00(237,112)you*GDno*02") == [(0, "Hi"), (1, "there"), (3, "no")]
    assert segments("*FLIt's you.") == [(0, ""), (1, "It's you.")]
    line = Line("JOE0042", 'There\'s a label:*14"Danger!" *14', "QUEEN2.JAS", "queen_joe")
    assert clip_texts(line) == [("JOE00421.SB", "There's a label:"), ("JOE00422.SB", '"Danger!" ')]
    assert clip_texts(Line("C1A__04", "Joe!*01We found you!", "C1A.CUT", "x", whole=True)) == [
        ("C1A__041.SB", "Joe! We found you!")
    ]
    assert spoken("&#($!!, he got away!") == "he got away"


def test_actor_chosen_by_the_file_or_object_name():
    assert person(["SPARKY", "SPARKY-F"], []) == "sparky"
    assert person(["HENRY", "DEATH"], ["DEATH1", "DEATH"]) == "death"
    assert person(["AMGUARD", "PRINCESS2"], ["Princess Azura"]) == "azura"
    assert person(["TMPD", "PRINCESS1"], ["PRIN4", "PRIN"]) == "azura"
    assert person(["HENRY", "DEATH"], ["ferryman"]) is None


def test_queen_speech_from_unpacked_package(tmp_path, capsys):
    from queen_speech import main

    root = make_queen_tree(tmp_path / "x")
    work = tmp_path / "work"
    assert main([str(work), "--extracted", str(root)]) == 0
    out = capsys.readouterr().out
    assert "queen_train: 13 clips" in out and "13 of 15 speech clips labelled" in out
    assert "2 unlabelled, 0 refused (none); 1 strings without a clip; 1 sound effects left out, 1 skipped" in out
    entries = [json.loads(line) for line in (work / "manifests" / "queen_train.jsonl").read_text().splitlines()]
    got = {e["id"].removeprefix("queen_"): (e["text"], e["speaker"]) for e in entries}
    assert got == {clip: want for clip, want in CLIPS.items() if want}
    audio = (work / "manifests" / entries[0]["audio"]).resolve()
    assert audio == (work / "games" / "queen" / "audio" / "050006J1.flac").resolve() and audio.is_file()
    assert 0.4 < entries[0]["duration"] < 0.7
    rows = [r.split("\t") for r in (work / "labels" / "queen.tsv").read_text().splitlines()]
    assert rows[0] == ["clip", "source", "speaker", "text", "label", "refused"] and len(rows) == 16
    assert ["050006P2", "FAYE1.DOG", "queen_faye", "I", "i", ""] in rows and ["BLANK000", "", "", "", "", ""] in rows

    assert main([str(work), "--extracted", str(root / GAME)]) == 0  # the game folder itself; clips kept
    assert "queen_train: 13 clips" in capsys.readouterr().out


@pytest.mark.parametrize(
    "text, why",
    [
        ("Nice talking to you, Mr. King.", ""),
        ("Hmm, that sounds like the dog star.", ""),
        ("This is the 1940's.", "digits"),  # "nineteen forties", not "one thousand nine hundred forty s"
        ("Grrrrr! Whoof!", "not a word"),
        ("Frt mmfrt gbbrlt.", "not a word"),
        ("G-S-R-H", ""),  # spelled letters are words
    ],
)
def test_script_lines_that_do_not_make_labels(text, why):
    assert refusal(text, spoken(text)) == why
