"""Beneath a Steel Sky's speech extraction on a game made here: an RNC packer in miniature, sky.dnr and sky.dsk."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest

LOCAL = Path(__file__).resolve().parents[1] / "recipes" / "default_en" / "local"
sys.path.insert(0, str(LOCAL))

import sky_speech  # noqa: E402

RATE = 11025


def crc16_arc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


class BitWriter:
    """RNC's bit stream: bits LSB first into little-endian 16-bit words; literal bytes go after the word being
    filled, whose free bits the following codes still fill."""

    def __init__(self):
        self.out, self.word, self.fill = bytearray(), None, 0

    def bits(self, value: int, n: int):
        for i in range(n):
            if self.word is None:
                self.word, self.fill = len(self.out), 0
                self.out += b"\0\0"
            if value >> i & 1:
                self.out[self.word + self.fill // 8] |= 1 << self.fill % 8
            self.fill += 1
            if self.fill == 16:
                self.word = None

    def flat_table(self):
        """16 symbols, all 4 bits long: symbol s has the canonical code s, stored bit-reversed."""
        self.bits(16, 5)
        for _ in range(16):
            self.bits(4, 4)

    def value(self, v: int):
        symbol = v.bit_length()
        self.bits(int(f"{symbol:04b}"[::-1], 2), 4)
        if symbol >= 2:
            self.bits(v - (1 << (symbol - 1)), symbol - 1)


def rnc_pack(pieces: list[tuple[bytes, tuple[int, int] | None]]) -> tuple[bytes, bytes]:
    """(RNC method 1 data, what it unpacks to) of one chunk: each piece literal bytes, then (distance, length)
    of a match except the last."""
    w, expected = BitWriter(), bytearray()
    w.bits(0, 2)
    for _ in range(3):
        w.flat_table()
    w.bits(len(pieces), 16)
    for literal, match in pieces:
        w.value(len(literal))
        w.out += literal
        expected += literal
        if match is not None:
            back, n = match
            w.value(back - 1)
            w.value(n - 2)
            for _ in range(n):
                expected.append(expected[-back])
    packed = bytes(w.out)
    head = b"RNC\x01" + struct.pack(">IIHHBB", len(expected), len(packed), crc16_arc(expected), crc16_arc(packed), 0, 1)
    return head + packed, bytes(expected)


def speech_samples(n: int, hz: float, seed: int) -> bytes:
    t = np.arange(n) / RATE
    noise = np.random.default_rng(seed).integers(-3, 4, n)
    return (128 + np.round(90 * np.sin(2 * np.pi * hz * t)) + noise).clip(0, 255).astype(np.uint8).tobytes()


def header(total: int) -> bytes:
    return struct.pack("<11H", 0x81, 0, 0, 0, 0, 0, total & 0xFFFF, 0, 0, 0, 0)


def make_sky_tree(root: Path) -> dict[int, bytes]:
    """The package tree in miniature; {file number: the samples it should give}: packed in-game speech (file
    50007, text 7), stored speech (54530: section 5, line 0), a packed intro voice-over, a packed file whose
    CRC is wrong, and two files that are not speech."""
    a, b, c = speech_samples(1103, 220, 1), speech_samples(2205, 330, 2), speech_samples(4410, 150, 3)
    files, flags, want = {}, {}, {}
    body, unpacked = rnc_pack([(a[:300], (300, 200)), (a[500:], None)])  # a match that repeats the start
    want[50007] = a[:300] + a[:200] + a[500:]
    assert unpacked == want[50007]
    files[50007] = header(22 + len(unpacked)) + body
    files[54530], flags[54530], want[54530] = header(22 + len(b)) + b, 0x800000, b  # stored: dnr says so
    body, want[59500] = rnc_pack([(c, None)])
    files[59500] = header(22 + len(c)) + body
    broken = bytearray(rnc_pack([(a, None)])[0])
    broken[40] ^= 0xFF
    files[50008] = header(22 + len(a)) + bytes(broken)
    files[59501] = bytes(range(256)) * 3  # a palette
    files[60150] = b"\x10" * 100  # a font
    game = root / sky_speech.GAME
    game.mkdir(parents=True)
    dsk, dnr = bytearray(), bytearray(struct.pack("<I", len(files)))
    for number, data in files.items():
        dsk += b"\0" * (-len(dsk) % 16)  # the CD version's offsets count 16-byte units
        place = len(dsk) >> 4 | 0x800000
        dnr += (
            struct.pack("<H", number)
            + place.to_bytes(3, "little")
            + (len(data) | flags.get(number, 0)).to_bytes(3, "little")
        )
        dsk += data
    (game / "sky.dnr").write_bytes(bytes(dnr))
    (game / "sky.dsk").write_bytes(bytes(dsk))
    return want


def test_crc_is_crc16_arc():
    assert sky_speech._crc16(b"123456789") == crc16_arc(b"123456789") == 0xBB3D


def test_rnc_unpack_overlapping_matches_and_empty_literals():
    data, expected = rnc_pack([(b"ab", (2, 7)), (b"", (3, 4)), (b"xyz", None)])
    assert expected == b"ababababa" + b"abaa" + b"xyz"
    assert sky_speech.rnc_unpack(data) == expected
    bad = bytearray(data)
    bad[-1] ^= 1
    with pytest.raises(sky_speech.BadFile, match="CRC"):
        sky_speech.rnc_unpack(bytes(bad))


def test_text_numbers_and_speech_files():
    assert sky_speech.text_number(50007) == 7
    assert sky_speech.text_number(54530) == 5 << 12
    assert sky_speech.text_number(55272) == 7 << 12 | 42
    assert sky_speech.text_number(59500) is None
    for text in (7, 1 << 12 | 484, 2 << 12 | 1303, 6 << 12 | 91, 7 << 12 | 47):
        assert sky_speech.text_number(sky_speech.speech_file(text)) == text


def test_sky_speech_from_an_unpacked_package(tmp_path, capsys):
    import soundfile as sf

    want = make_sky_tree(tmp_path / "x")
    work = tmp_path / "work"
    assert sky_speech.main([str(work), "--extracted", str(tmp_path / "x")]) == 0
    out = capsys.readouterr()
    assert "sky_speech: 3 clips, 0.00 h (1 skipped)" in out.out and "file 50008: skipped" in out.err
    lines = (work / "games" / "sky" / "clips.tsv").read_text().splitlines()
    assert lines[0] == "id\tfile\ttext\tduration\taudio"
    rows = [line.split("\t") for line in lines[1:]]
    assert [r[:3] for r in rows] == [
        ["sky_50007", "50007", "7"],
        ["sky_54530", "54530", "20480"],
        ["sky_59500", "59500", ""],
    ]
    for (_, number, _, duration, audio), samples in zip(rows, want.values()):
        x, rate = sf.read(work / "games" / "sky" / audio, dtype="int16")
        assert rate == RATE and float(duration) == round(len(samples) / RATE, 3)
        assert np.array_equal(x, (np.frombuffer(samples, np.uint8).astype(np.int16) - 128) * 256), number
    assert sky_speech.main([str(work), "--extracted", str(tmp_path / "x")]) == 0  # marked done
    assert "done already" in capsys.readouterr().out


def test_sky_speech_missing_game(tmp_path):
    with pytest.raises(SystemExit, match="sky.dnr not found"):
        sky_speech.main([str(tmp_path / "work"), "--extracted", str(tmp_path)])
