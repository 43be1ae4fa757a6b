#!/usr/bin/env python3
"""Flight of the Amazon Queen's speech clips as training speech: many voice actors, 11.025 kHz, exact text.

Debian `main` ships the freeware CD version (`flight-of-the-amazon-queen`, DFSG-free); the package is fetched
with `apt-get download` and unpacked with `dpkg -x` into WORK/debs/queen (the system is not changed). The game
keeps every file in `queen.1c`: "QTBL", a 6-byte version ("CEM10": CD, English), 2 bytes, the compression of its
sounds (1: MP3), a big-endian entry count, then entries of a 12-byte name, a bundle byte, offset and size. A
`.SB` entry is one clip; those named like `129SSSSS` are sound effects and are left out.

The text comes from the game's own resources (.DOG, .CUT and QUEEN.JAS behind a 20-byte header), and a clip's
name is the one the engine derives when it speaks the string (the printed name, spaces made zeros, upper case,
`.SB`):

- dialogues (`X.DOG`): a header (level count, key, talk key K, Joe's and the person's string counts, three
  pointers), the tree (96 bytes a level), then Joe's table and the person's table: entries of 2 bytes, an id and
  a string (a length byte, then the text, padded to 4 bytes). Joe says entry `id` as "%2d%4xJ" % (K, id), the
  person as "%2d%4xP"; Joe's opening line (id 0) is "%2dSSSSJ", the pair after the third pointer (said when
  they have met) "%2dXXXXP" and "%2dXXXXJ". The first entry of an id wins, as in the engine.
- cutaways (`X.CUT`): after the objects, one string for each object (the first string opens the file); object
  i (from 1) that a person speaks is voiced as the file's name padded with "_" (or cut) to 5 characters, then
  "%02d" % i; a text object's (-2, -3) whole string is that prefix + "1".
- the logic (`QUEEN.JAS`, its strings in `QUEEN2.JAS`, one a line): Joe's response n (1-40) is "JOE%04d" % n,
  object description n is "JOE%04d" % (n + 40); a description naming a .CUT or .DOG is not said. Responses
  22-23 and 30-40 are the journal's and the restart prompts' texts, shown, never said by the engine; their
  clips leave words out ("Music" for "Music Volume", no "(Y/N)"), so they are left unlabelled.

A string is said in segments cut at its `*` commands (two characters; `*XY00(237,112)` is 13): segment k (from
0) is the clip prefix + "%x" % (k + 1), and carries only that segment's text (`*GD` and `*GM` end a segment
that is counted but not said). A segment with no words, or whose clip is missing, gives no label; a clip with
no string stays unlabelled (kept in the table, not in the manifest). Lou's "Commander Rocket code" (GSRH RH Z
HVXIVG NVHHZTV) is read out letter by letter, so it is labelled as letters.

Speakers: Joe is `queen_joe`; a person is the game's actor for that object (its room and place among the
room's people; the object a dialogue is started from comes from the logic's command table, or the cutaway that
opens it), as a key like `queen_sparky` (talking heads and scene copies folded in); where the actor cannot be
told apart, the dialogue or cutaway file (`queen_c41b`).

Every speech clip is written as 16-bit FLAC at its native rate to WORK/games/queen/audio/NAME.flac (once:
WORK/games/queen/.done); WORK/labels/queen.tsv lists each clip (clip, source, speaker, raw text, label) and
OUT/queen_train.jsonl the labelled ones. Clips that cannot be read are counted and skipped.

    python recipes/default_en/local/queen_speech.py WORK [--extracted DIR] [--out WORK/manifests]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import struct
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from debs import extract

PACKAGES = ("flight-of-the-amazon-queen",)
GAME = "usr/share/scummvm/flight-of-the-amazon-queen"
RESOURCE = "queen.1c"
HEADER = 20  # every .DOG, .CUT and .JAS starts with 20 bytes the engine skips
JOE_RESPONSES = 40
UI_RESPONSES = frozenset({22, 23, *range(30, 41)})  # the journal's and the restart prompts' texts
SILENT = ("GD", "GM")  # grab commands: the segment before them is never said
SOUND_EFFECT = re.compile(r"\d+[A-Z]?S+")  # 129SSSSS, 116BSSSS: padded to 8 with S
COMPRESSIONS = {0: "none", 1: "MP3", 2: "Ogg Vorbis", 3: "FLAC"}
SB_HEADERS = {104: 110, 110: 122}  # uncompressed .SB: header size by version
ACTOR_ALIASES = {"ANDSON": "ANDERSON", "PRINCESS1": "AZURA", "PRINCESS2": "AZURA"}
SPELLED = frozenset({"330025P4.SB", "330025P5.SB", "330025P7.SB", "330025P8.SB"})


class BadFile(ValueError):
    pass


@dataclass(frozen=True)
class Entry:
    """One table entry of queen.1c."""

    name: str
    offset: int
    size: int


@dataclass(frozen=True)
class Line:
    """A string the game says: its clips are `prefix` + segment number (or `prefix` + "1" when `whole`)."""

    prefix: str
    text: str
    source: str
    speaker: str
    whole: bool = False


def read_table(path: Path) -> tuple[str, int, dict[str, Entry]]:
    """(version, compression, {name: entry}) of a queen.1c."""
    with open(path, "rb") as f:
        head = f.read(15)
        if len(head) < 15 or head[:4] != b"QTBL":
            raise BadFile(f"{path.name} is not a compressed Queen resource file (no QTBL table)")
        version = head[4:10].split(b"\0")[0].decode("latin-1")
        compression, count = head[12], struct.unpack(">H", head[13:15])[0]
        table = f.read(21 * count)
    if len(table) < 21 * count:
        raise BadFile(f"{path.name}: table cut short ({count} entries announced)")
    entries = {}
    for i in range(count):
        raw = table[21 * i : 21 * i + 21]
        name = raw[:12].split(b"\0")[0].decode("latin-1").upper()
        offset, size = struct.unpack(">II", raw[13:21])
        entries[name] = Entry(name, offset, size)
    return version, compression, entries


def voice_file(prefix: str, index: int) -> str:
    """The clip the engine plays for segment `index` (from 0) of a string voiced as `prefix`."""
    name = f"{prefix}{index + 1:x}"
    return (name[:8].replace(" ", "0") + name[8:]).upper() + ".SB"


def segments(sentence: str) -> list[tuple[int, str]]:
    """(index, text) of the segments said, cut at the `*` commands; the index counts every segment."""
    out, start, index, i = [], 0, 0, 0
    while i < len(sentence):
        if sentence[i] != "*":
            i += 1
            continue
        command = sentence[i + 1 : i + 3]
        if command not in SILENT:
            out.append((index, sentence[start:i]))
        i += 3 + (11 if command == "XY" else 0)  # *XY00(237,112): a walk to x, y
        index += 1
        start = i
    if start < len(sentence):
        out.append((index, sentence[start:]))
    return out


def clip_texts(line: Line) -> list[tuple[str, str]]:
    """(clip name, the words it says) for each segment of `line` that has words."""
    if line.whole:
        parts = [(0, " ".join(text for _, text in segments(line.text)))]
    else:
        parts = segments(line.text)
    return [(voice_file(line.prefix, i), text) for i, text in parts if any(c.isalnum() for c in text)]


NOT_VOWELLESS = {"mr", "mrs", "dr", "st", "ms", "hmm", "shh", "psst"}


def refusal(text: str, label: str) -> str:
    """Why a script line does not make a label ("" when it does): numbers written in digits ("13th July
    1922": the actor's reading is not the normaliser's) and sounds rather than words ("grrrrr", "mmmmft",
    "frt gbbrlt": a letter three times in a row, or a word of two letters or more without a vowel)."""
    if any(c.isdigit() for c in text):
        return "digits"
    for word in label.split():
        if re.search(r"(.)\1\1", word) or (
            len(word) > 1 and not re.search("[aeiouy]", word) and word not in NOT_VOWELLESS
        ):
            return "not a word"
    return ""


def spoken(text: str) -> str:
    """The label: normalize_text of the words ("&#($!!" is a bleeped oath, not "and")."""
    from asr.model.tokenizer import normalize_text

    words = [w for w in text.split() if w == "&" or any(c.isalnum() for c in w)]
    return normalize_text(" ".join(words))


class Reader:
    """Big-endian 16-bit values and length-prefixed strings from a resource (without its header)."""

    def __init__(self, data: bytes, name: str, offset: int = 0):
        self.data, self.name, self.offset = data, name, offset

    def values(self, n: int, signed: bool = True) -> tuple[int, ...]:
        try:
            out = struct.unpack_from(f">{n}{'h' if signed else 'H'}", self.data, self.offset)
        except struct.error:
            raise BadFile(f"{self.name}: cut short at byte {self.offset}") from None
        self.offset += 2 * n
        return out

    def value(self, signed: bool = True) -> int:
        return self.values(1, signed)[0]

    def skip(self, n: int) -> None:
        self.offset += n
        if self.offset > len(self.data):
            raise BadFile(f"{self.name}: cut short at byte {self.offset}")

    def string(self, align: int = 2) -> str:
        """A length byte and the text; a non-empty one is padded to `align` bytes (an empty one is not)."""
        if self.offset >= len(self.data):
            raise BadFile(f"{self.name}: cut short at byte {self.offset}")
        length = self.data[self.offset]
        start = self.offset + 1
        if start + length > len(self.data):
            raise BadFile(f"{self.name}: string at byte {self.offset} runs past the end")
        self.offset = (start + length + align - 1) & ~(align - 1) if length else start
        return self.data[start : start + length].decode("latin-1")


def actor_key(name: str) -> str:
    """SPARKY-F, X5_SPARKY -> sparky; PRINCESS1, AZURA-H -> azura; ANDSON-E -> anderson."""
    key = re.sub(r"^X\d+_", "", name.upper())
    key = re.sub(r"(-[A-Z]|_STAND|_SHOWER)$", "", key)
    return ACTOR_ALIASES.get(key, key).lower()


class Logic:
    """What the speaker and text derivations need from QUEEN.JAS and QUEEN2.JAS."""

    def __init__(self, jas: bytes, strings: list[str]):
        r = Reader(jas, "QUEEN.JAS")
        rooms, names, objects, descriptions = r.values(4, signed=False)
        # objects: name, x, y, description, entry object, room, state, image (-3, -4: a person)
        self.objects = [r.values(8) for _ in range(objects)]
        need = descriptions + names + rooms + 12 + JOE_RESPONSES
        if len(strings) < need:
            raise BadFile(f"QUEEN2.JAS: {len(strings)} lines, {need} expected")
        self.descriptions = strings[:descriptions]
        self.names = strings[descriptions : descriptions + names]
        at = descriptions + names + rooms + 12
        self.responses = strings[at : at + JOE_RESPONSES]
        self.actors: list[tuple[int, int, str]] = []  # room, bob, actor name
        self.dialogue_objects: dict[str, set[int]] = defaultdict(set)  # X.DOG -> the objects it is started from
        try:
            self._read_rest(r, rooms, objects, strings, at + JOE_RESPONSES)
        except BadFile as e:
            print(f"warning: {e}: speakers are the dialogue and cutaway files", file=sys.stderr)
            self.actors, self.dialogue_objects = [], defaultdict(set)

    def _read_rest(self, r: Reader, rooms: int, objects: int, strings: list[str], at: int) -> None:
        self.room_start = [0, *r.values(rooms + 1, signed=False)]  # objects of room n follow room_start[n]
        r.skip(2 * rooms)  # sound effect of each room
        r.skip(10 * r.value(signed=False))  # items
        r.skip(10 * r.value(signed=False))  # graphics
        for _ in range(rooms):  # walk areas: object and area counts, 16 bytes an area
            r.value()
            r.skip(16 * max(r.value(), 0))
        r.skip(8 * objects)  # object boxes
        r.skip(6 * r.value(signed=False))  # walk-off points
        r.skip(8 * r.value(signed=False))  # description sequences
        # commands: a count, then the records (an empty list still holds one)
        commands = [r.values(10) for _ in range(max(r.value(signed=False), 1))]
        for size in (6, 6, 6):  # areas, objects, items a command changes
            r.skip(size * max(r.value(signed=False), 1))
        states = [r.values(4) for _ in range(max(r.value(signed=False), 1))]  # command, slot, value, speak
        r.skip(2)  # entry object
        r.skip(4 * r.value(signed=False))  # furniture
        actors, anims, actor_names, _files = r.values(4, signed=False)
        records = [r.values(12) for _ in range(actors)]  # room, bob, name, ...
        r.skip(6 * max(r.value(signed=False), 1))  # graphic animations
        if not re.fullmatch(rb"[CPa][A-Z][A-Za-z0-9]{3}", r.data[r.offset : r.offset + 5]):
            raise BadFile("QUEEN.JAS: its version string is not where the tables end")
        start = at + anims
        names = strings[start : start + actor_names]
        for room, bob, name, *_ in records:
            if 1 <= name <= len(names):
                self.actors.append((room, bob, names[name - 1]))
        for command, _slot, _value, speak in states:
            if 1 <= speak <= len(self.descriptions) and 1 <= command <= len(commands):
                said = self.descriptions[speak - 1].strip().upper()
                if said.endswith(".DOG") and commands[command - 1][1] > 0:
                    self.dialogue_objects[said].add(commands[command - 1][1])

    def image(self, obj: int) -> int:
        return self.objects[obj - 1][7] if 1 <= obj <= len(self.objects) else 0

    def object_name(self, obj: int) -> str:
        name = abs(self.objects[obj - 1][0]) if 1 <= obj <= len(self.objects) else 0
        return self.names[name - 1] if 1 <= name <= len(self.names) else ""

    def actors_of(self, obj: int) -> list[str]:
        """The actors that can be person object `obj`: its room's, at its place among the room's people."""
        if not self.actors or not 1 <= obj <= len(self.objects):
            return []
        room = self.objects[obj - 1][5]
        if not 1 <= room < len(self.room_start):
            return []
        bob = sum(1 for i in range(self.room_start[room] + 1, obj + 1) if self.image(i) in (-3, -4))
        return [name for r, b, name in self.actors if r == room and b == bob]


def person(candidates: list[str], hints: list[str]) -> str | None:
    """The actor key among `candidates` (actor names), where `hints` (file stem, object name) tell them apart."""
    keys = list(dict.fromkeys(actor_key(c) for c in candidates))
    if len(keys) <= 1:
        return keys[0] if keys else None
    words = [w for h in hints for w in re.findall(r"[a-z0-9]+", h.lower()) if len(w) >= 3]
    for exact in (True, False):
        found = set()
        for c in candidates:
            raw = re.sub(r"^x\d+_", "", c.lower())
            for w in words:
                if (w in (raw, actor_key(c))) if exact else (raw[:4] == w[:4] or actor_key(c)[:4] == w[:4]):
                    found.add(actor_key(c))
        if len(found) == 1:
            return found.pop()
    return None


def dialogue_lines(name: str, data: bytes, speaker: str) -> list[Line]:
    """The strings of a .DOG (without its header): Joe's and the person's tables, and the two greetings."""
    r = Reader(data, name)
    levels, _unique, key, joe_count, person_count = r.values(5)
    r.skip(12)  # game states tested after the dialogue
    person_at, _cutaway_at, again_at = r.values(3, signed=False)

    def table(offset: int, count: int) -> list[tuple[int, str]]:
        t = Reader(data, name, offset)
        rows = []
        for _ in range(count):
            t.skip(2)
            ident = t.value()
            rows.append((ident, t.string(align=4)))
        return rows

    lines, seen = [], set()
    for ident, text in table(32 + abs(levels) * 96, joe_count):
        if ("J", ident) in seen:  # the engine finds the first entry of an id
            continue
        seen.add(("J", ident))
        if ident == 0:  # Joe's opening line; "0" means none
            if not text.startswith("0"):
                lines.append(Line(f"{key:2d}SSSSJ", text, name, "queen_joe"))
        elif text != "0":
            lines.append(Line(f"{key:2d}{ident:4x}J", text, name, "queen_joe"))
    for ident, text in table(person_at, person_count):
        if ident == 0 or ("P", ident) in seen or text == "0":  # slot 0 (a copy of a greeting) has no clip
            continue
        seen.add(("P", ident))
        lines.append(Line(f"{key:2d}{ident:4x}P", text, name, speaker))
    again = Reader(data, name, again_at)
    person_again, joe_again = again.string(), again.string()
    if not person_again.startswith("0"):
        lines.append(Line(f"{key:2d}XXXXP", person_again, name, speaker))
    if not joe_again.startswith("0"):
        lines.append(Line(f"{key:2d}XXXXJ", joe_again, name, "queen_joe"))
    return lines


def cutaway_lines(name: str, data: bytes, logic: Logic) -> tuple[list[Line], tuple[str, int] | None]:
    """The strings a .CUT (without its header) says, and the dialogue (file, person object) it opens after."""
    base = name.rsplit(".", 1)[0]
    file_speaker = "queen_" + re.sub(r"[^a-z0-9]+", "_", base.lower())
    r = Reader(data, name)
    _panel, count, _flags = r.values(3)
    _states_at, sentence_at, banks_at = r.values(3, signed=False)
    sentences = Reader(data, name, sentence_at)
    sentences.string()  # the entry string (Joe's facing)
    lines = []
    for i in range(1, abs(count) + 1):
        number, _x, _y, _bank, anims, execute, *_, from_object, _bx, _by, _room, _scale = r.values(17)
        r.skip(2 * max(r.value(), 0))  # people to turn on
        text = sentences.string()
        if number == -1:  # a room fade: Joe
            number = 0
        kind = "animation"
        if not anims and (number == 0 or number > 0 and logic.image(number) in (-3, -4)):
            kind = "person"
        if from_object > 0:
            kind = "none"
        if number in (-2, -3):
            kind = "text"
        elif number == -4:
            kind = "none"  # shown, not said
        if kind == "animation" and not execute:
            kind = "none"
        if kind == "animation":  # frames: a header, 9 values; -2 ends them
            while r.value() != -2:
                r.skip(18)
        prefix = (base + "_" * 5)[:5] + f"{i:02d}"[:2]
        if kind not in ("person", "text") or not text or text == "*" or text.startswith("#"):  # "#": credits
            continue
        if kind == "text":
            lines.append(Line(prefix, text, name, file_speaker, whole=True))
        elif number == 0:
            lines.append(Line(prefix, text, name, "queen_joe"))
        else:
            key = person(logic.actors_of(number), [logic.object_name(number)])
            lines.append(Line(prefix, text, name, f"queen_{key}" if key else file_speaker))
    banks = Reader(data, name, banks_at)
    for _ in range(banks.value(signed=False)):
        banks.string()
    talk = banks.string().strip().upper()
    talk_to = banks.value()
    return lines, ((talk, talk_to) if talk.endswith(".DOG") and talk_to > 0 else None)


def logic_lines(logic: Logic) -> list[Line]:
    """Joe's responses (but the journal's texts) and the object descriptions."""
    lines = [
        Line(f"JOE{n:04d}", text, "QUEEN2.JAS", "queen_joe")
        for n, text in enumerate(logic.responses, 1)
        if n not in UI_RESPONSES
    ]
    for n, text in enumerate(logic.descriptions, 1):
        if not text.strip().upper().endswith((".CUT", ".DOG")):
            lines.append(Line(f"JOE{n + JOE_RESPONSES:04d}", text, "QUEEN2.JAS", "queen_joe"))
    return lines


def decode(data: bytes, compression: int):
    """(float32 mono samples, rate) of one .SB entry."""
    import numpy as np
    import soundfile as sf

    if compression == 0:  # the original format: a header, then unsigned 8-bit samples at 11025 Hz
        version = struct.unpack("<H", data[2:4])[0] if len(data) >= 4 else None
        if version not in SB_HEADERS:
            raise BadFile("not an .SB clip")
        raw = np.frombuffer(data[SB_HEADERS[version] :], np.uint8)
        return (raw.astype(np.float32) - 128) / 128, 11025
    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    if not len(samples):
        raise BadFile("no samples")
    return samples.mean(axis=1), rate


def gather(resource: Path, entries: dict[str, Entry]) -> tuple[list[Line], int]:
    """Every string the game says, in the engine's order of precedence, and the resources that were unreadable."""
    skipped = 0
    with open(resource, "rb") as f:

        def load(name: str) -> bytes:
            entry = entries[name]
            f.seek(entry.offset)
            data = f.read(entry.size)
            if len(data) < entry.size or len(data) < HEADER:
                raise BadFile(f"{name}: cut short")
            return data[HEADER:]

        for name in ("QUEEN.JAS", "QUEEN2.JAS"):
            if name not in entries:
                sys.exit(f"error: {resource}: no {name}")
        try:
            logic = Logic(load("QUEEN.JAS"), load_text(f, entries["QUEEN2.JAS"]))
        except BadFile as e:
            sys.exit(f"error: {e}")
        lines = logic_lines(logic)
        cut_lines, talks = [], defaultdict(set)
        for name in sorted(n for n in entries if n.endswith(".CUT")):
            try:
                found, talk = cutaway_lines(name, load(name), logic)
            except BadFile as e:
                print(f"warning: {e}: skipped", file=sys.stderr)
                skipped += 1
                continue
            cut_lines += found
            if talk:
                talks[talk[0]].add(talk[1])
        for name in sorted(n for n in entries if n.endswith(".DOG")):
            stem = name.rsplit(".", 1)[0]
            objects = logic.dialogue_objects.get(name, set()) | talks.get(name, set())
            candidates = [a for obj in sorted(objects) for a in logic.actors_of(obj)]
            key = person(candidates, [stem, stem.rstrip("0123456789")])
            speaker = f"queen_{key}" if key else "queen_" + re.sub(r"[^a-z0-9]+", "_", stem.lower())
            try:
                lines += dialogue_lines(name, load(name), speaker)
            except BadFile as e:
                print(f"warning: {e}: skipped", file=sys.stderr)
                skipped += 1
        return lines + cut_lines, skipped


def load_text(f, entry: Entry) -> list[str]:
    """QUEEN2.JAS: text lines (it has no header)."""
    f.seek(entry.offset)
    return [s.rstrip("\r") for s in f.read(entry.size).decode("latin-1").split("\n")]


def label_clips(lines: list[Line], clips: set[str]) -> tuple[dict[str, tuple[Line, str]], int, int]:
    """{clip: (line, segment text)}, the strings (segments) without a clip, and clips claimed by two texts."""
    labels, missing, conflicts = {}, set(), 0
    for line in lines:
        for clip, text in clip_texts(line):
            if clip not in clips:
                missing.add(clip)
            elif clip not in labels:
                labels[clip] = (line, text)
            elif labels[clip][1].strip() != text.strip():
                conflicts += 1
                print(f"warning: {clip}: said by two strings, the first kept ({line.source})", file=sys.stderr)
    return labels, len(missing), conflicts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("work", type=Path, help="the recipe's WORK folder")
    ap.add_argument("--extracted", type=Path, default=None, help="the package already unpacked here (dpkg -x)")
    ap.add_argument("--out", type=Path, default=None, help="manifest folder (default WORK/manifests)")
    args = ap.parse_args(argv)
    import numpy as np
    import soundfile as sf
    from tqdm import tqdm

    root = args.extracted or extract(args.work / "debs" / "queen", PACKAGES)
    resource = next((p for p in (root / GAME / RESOURCE, root / RESOURCE) if p.is_file()), root / GAME / RESOURCE)
    if not resource.is_file():
        sys.exit(f"error: {resource} not found")
    try:
        version, compression, entries = read_table(resource)
    except (OSError, BadFile) as e:
        sys.exit(f"error: {e}")
    if not version.startswith("CE"):
        sys.exit(f"error: {resource} is version {version!r}, not the English CD version (CE...): no English speech")
    if compression not in COMPRESSIONS:
        sys.exit(f"error: {resource}: unknown sound compression {compression}")
    lines, skipped = gather(resource, entries)
    sounds = [e for e in entries.values() if e.name.endswith(".SB")]
    speech = sorted((e for e in sounds if not SOUND_EFFECT.fullmatch(e.name[:-3])), key=lambda e: e.offset)
    labels, missing, conflicts = label_clips(lines, {e.name for e in speech})

    games = (args.work / "games" / "queen").resolve()
    audio = games / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    done = (games / ".done").exists()
    out = (args.out or args.work / "manifests").resolve()
    out.mkdir(parents=True, exist_ok=True)
    label_dir = args.work / "labels"
    label_dir.mkdir(parents=True, exist_ok=True)
    manifest, rows, total, refused = [], [], 0.0, {}
    with open(resource, "rb") as f:
        for entry in tqdm(speech, desc="queen", unit="clip", file=sys.stderr):
            clip = entry.name[:-3]
            path = audio / f"{clip}.flac"
            try:
                if done and path.is_file():
                    duration = sf.info(str(path)).duration
                else:
                    f.seek(entry.offset)
                    samples, rate = decode(f.read(entry.size), compression)
                    pcm = (np.clip(samples, -1, 32767 / 32768) * 32768).astype(np.int16)
                    sf.write(str(path), pcm, rate, format="FLAC", subtype="PCM_16")
                    duration = len(samples) / rate
            except Exception as e:  # an undecodable clip is counted and skipped, never the end of the stage
                print(
                    f"warning: {entry.name}: skipped: {str(e).strip().splitlines()[0] if str(e) else e}",
                    file=sys.stderr,
                )
                skipped += 1
                continue
            total += duration
            line, text = labels.get(entry.name, (None, ""))
            label = spoken(" ".join(text) if entry.name in SPELLED else text) if line else ""
            why = refusal(text, label) if label else ""
            refused[why] = refused.get(why, 0) + bool(why)
            rows.append([clip, line.source if line else "", line.speaker if line else "", text.strip(), label, why])
            if label and not why:
                manifest.append(
                    {
                        "id": f"queen_{clip}",
                        "audio": os.path.relpath(path, out),
                        "duration": round(duration, 3),
                        "text": label,
                        "speaker": line.speaker,
                    }
                )
    (games / ".done").touch()
    with open(label_dir / "queen.tsv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["clip", "source", "speaker", "text", "label", "refused"])
        writer.writerows(rows)
    with open(out / "queen_train.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(e) + "\n" for e in manifest)
    hours = sum(e["duration"] for e in manifest) / 3600
    speakers = len({e["speaker"] for e in manifest})
    labelled = sum(1 for r in rows if r[4])
    share = 100 * labelled / max(len(rows), 1)
    refusals = ", ".join(f"{n} {why}" for why, n in sorted(refused.items()) if n)
    print(
        f"queen_train: {len(manifest)} clips, {hours:.2f} h, {speakers} speakers; {labelled} of {len(rows)} "
        f"speech clips labelled ({share:.1f}%, {total / 3600:.2f} h in all), {len(rows) - labelled} unlabelled, "
        f"{labelled - len(manifest)} refused ({refusals or 'none'}); "
        f"{missing} strings without a clip; {len(sounds) - len(speech)} sound effects left out, {skipped} skipped"
        + (f", {conflicts} clips said by two strings" if conflicts else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
