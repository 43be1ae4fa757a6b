#!/usr/bin/env python3
"""Beneath a Steel Sky's speech as training audio: British voice actors, 11.025 kHz, labels to come from the teacher.

Debian `main` ships the freeware CD version (`beneath-a-steel-sky` 0.0372); the package is fetched with
`apt-get download` and unpacked with `dpkg -x` into WORK/debs/sky (the system is not changed). The game keeps its
files in `sky.dsk`, indexed by `sky.dnr` (a 32-bit count, then 8 bytes a file: number, 24-bit offset, 24-bit size
and flags); every speech file is RNC (method 1) packed behind the game's 22-byte file header, which is stripped,
and holds unsigned 8-bit mono samples at 11025 Hz. In-game text `text` (section `text >> 12`, line
`text & 0xFFF`) is spoken by file 50000 + SECTION_START[section] + line, so each clip's text number is listed: it
pairs the clip with its subtitle line, not decoded here (the game's text is Huffman packed with a tree kept in
the interpreter, not in the data). The CD intro's voice-overs (88 of the files 59500-59672; the rest are
pictures, palettes and noises) have no text number. 0.0372 holds 3491 in-game clips and the 88 intro lines,
1.99 h. Files that cannot be unpacked are counted and skipped.

Each clip is written as 16-bit FLAC at its native rate to WORK/games/sky/audio/FILE.flac and listed in
WORK/games/sky/clips.tsv (id, file, text, duration, audio relative to the list), once (WORK/games/sky/.done).

    python recipes/default_en/local/sky_speech.py WORK [--extracted DIR]
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from debs import extract

PACKAGES = ("beneath-a-steel-sky",)
GAME = "usr/share/scummvm/beneath-a-steel-sky"
RATE = 11025
HEADER = 22  # the game's file header: 11 little-endian words; `flag` first, `s_tot_size` the 7th
SPEECH_BASE = 50000
# where each text section's lines start among the speech files (section 7 runs on to the end of the range)
SECTION_START = (0, 600, 1100, 2430, 3380, 4530, 5080, 5230)
SPEECH_FILES = range(SPEECH_BASE, SPEECH_BASE + 6000)
# the CD intro's voice-overs, one file per line; the files between them are pictures, palettes and noises
INTRO_VOICES = (
    59500, 59504, 59505, 59507, 59508, 59510, 59511, 59513, 59514, 59515, 59518, 59520, 59523, 59525, 59527,
    59528, 59531, 59534, 59535, 59536, 59539, 59541, 59545, 59546, 59551, 59554, 59556, 59558, 59561, 59562,
    59563, 59565, 59566, 59567, 59568, 59570, 59574, 59576, 59579, 59581, 59583, 59587, 59588, 59590, 59594,
    59596, 59600, 59602, 59606, 59610, 59612, 59613, 59614, 59615, 59616, 59618, 59621, 59622, 59624, 59627,
    59628, 59629, 59630, 59631, 59632, 59633, 59635, 59639, 59642, 59644, 59647, 59648, 59649, 59654, 59655,
    59656, 59659, 59660, 59663, 59664, 59665, 59666, 59667, 59668, 59669, 59670, 59671, 59672,
)  # fmt: skip


class BadFile(ValueError):
    pass


@dataclass(frozen=True)
class Entry:
    """One sky.dnr entry: where a file lies in sky.dsk and how it is stored."""

    number: int
    offset: int  # bytes into sky.dsk
    size: int  # bytes stored there
    uncompressed: bool  # stored as is: no RNC data behind the header
    headerless: bool  # packed without its header: the unpacked bytes are the file


def read_dnr(path: Path) -> dict[int, Entry]:
    """{file number: Entry} of sky.dnr (little-endian: a 32-bit count, then 8 bytes a file)."""
    data = Path(path).read_bytes()
    if len(data) < 4:
        raise BadFile(f"{path}: too short")
    (count,) = struct.unpack_from("<I", data)
    if count == 0 or len(data) < 4 + 8 * count:
        raise BadFile(f"{path}: {count} entries announced, {(len(data) - 4) // 8} present")
    entries = {}
    for i in range(count):
        number, place, flags = struct.unpack_from("<H3s3s", data, 4 + 8 * i)
        place, flags = int.from_bytes(place, "little"), int.from_bytes(flags, "little")
        offset = place & 0x7FFFFF
        if place & 0x800000:  # offsets of the CD version count 16-byte units
            offset <<= 4
        entries[number] = Entry(number, offset, flags & 0x3FFFFF, bool(flags & 0x800000), bool(flags & 0x400000))
    return entries


def _crc16(data: bytes) -> int:
    """CRC-16/ARC (reflected polynomial 0xA001, initial 0), as RNC files carry it."""
    crc = 0
    table = _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


class _Bits:
    """RNC's bit reader: little-endian 16-bit words, least significant bit first, always >= 16 bits ahead.

    The word loaded last is read ahead; literal bytes start where it lies, so `resync` drops it."""

    def __init__(self, data: bytes, pos: int):
        self.data, self.pos = data, pos
        self.buf, self.count = self._word(pos), 16
        self.pos += 2

    def _word(self, pos: int) -> int:
        if pos + 2 <= len(self.data):
            return self.data[pos] | self.data[pos + 1] << 8
        if pos > len(self.data) + 4:  # read ahead past the end is zeros; further is a broken stream
            raise BadFile("RNC data ends early")
        return self.data[pos] if pos < len(self.data) else 0

    def read(self, n: int) -> int:
        value = self.buf & ((1 << n) - 1)
        self.buf >>= n
        self.count -= n
        if self.count < 16:
            self.buf |= self._word(self.pos) << self.count
            self.pos += 2
            self.count += 16
        return value

    def literal(self, n: int) -> bytes:
        start = self.pos - 2
        if start + n > len(self.data):
            raise BadFile("RNC literal runs past the data")
        self.count -= 16
        self.buf &= (1 << self.count) - 1
        self.pos = start + n
        self.buf |= self._word(self.pos) << self.count
        self.pos += 2
        self.count += 16
        return self.data[start : start + n]


def _huffman_table(bits: _Bits, old: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """[(mask, code, length, symbol)] of one table: 5 bits of count, 4 bits of length a symbol; codes are
    canonical, shortest first, stored bit-reversed. A count of 0 keeps the previous table."""
    count = bits.read(5)
    if not count:
        return old
    lengths = [bits.read(4) for _ in range(count)]
    table, code = [], 0
    for length in range(1, 17):
        for symbol, n in enumerate(lengths):
            if n == length:
                top = code >> (16 - length)
                reversed_code = int(f"{top:0{length}b}"[::-1], 2)
                table.append(((1 << length) - 1, reversed_code, length, symbol))
                code += 1 << (16 - length)
    return table


def _value(bits: _Bits, table: list[tuple[int, int, int, int]]) -> int:
    peek = bits.buf & 0xFFFF
    for mask, code, length, symbol in table:
        if peek & mask == code:
            bits.read(length)
            if symbol < 2:
                return symbol
            return bits.read(symbol - 1) | 1 << (symbol - 1)
    raise BadFile("RNC: no Huffman code matches")


RNC_SIGNATURE = b"RNC\x01"


def rnc_unpack(data: bytes) -> bytes:
    """Unpack RNC method 1 data ("RNC\\x01", BE32 unpacked size, BE32 packed size, BE16 unpacked CRC, BE16 packed
    CRC, leeway byte, chunk count byte; then the bit stream); BadFile where a size or CRC does not match."""
    if data[:4] != RNC_SIGNATURE or len(data) < 18:
        raise BadFile("not RNC method 1 data")
    unpacked_size, packed_size, unpacked_crc, packed_crc = struct.unpack_from(">IIHH", data, 4)
    chunks = data[17]
    if 18 + packed_size > len(data):
        raise BadFile(f"RNC: {packed_size} packed bytes announced, {len(data) - 18} present")
    if _crc16(data[18 : 18 + packed_size]) != packed_crc:
        raise BadFile("RNC: packed CRC mismatch")
    stream = data[: 18 + packed_size]
    bits = _Bits(stream, 18)
    bits.read(2)  # lock and key flags
    out = bytearray()
    raw = dist = length = []
    for _ in range(chunks):
        raw = _huffman_table(bits, raw)
        dist = _huffman_table(bits, dist)
        length = _huffman_table(bits, length)
        for left in range(bits.read(16), 0, -1):
            n = _value(bits, raw)
            if n:
                out += bits.literal(n)
            if left > 1:  # the chunk's last piece is literals only
                back = _value(bits, dist) + 1
                n = _value(bits, length) + 2
                if back > len(out):
                    raise BadFile("RNC: a match reaches before the start")
                start = len(out) - back
                if back >= n:
                    out += out[start : start + n]
                else:  # overlapping: repeats the last `back` bytes
                    out += (out[start:] * (n // back + 1))[:n]
            if len(out) > unpacked_size:
                raise BadFile("RNC: unpacks past the announced size")
    if len(out) != unpacked_size:
        raise BadFile(f"RNC: {len(out)} bytes unpacked, {unpacked_size} announced")
    if _crc16(out) != unpacked_crc:
        raise BadFile("RNC: unpacked CRC mismatch")
    return bytes(out)


def load_file(dsk, entry: Entry) -> bytes:
    """A file of sky.dsk as the game sees it: header and contents, RNC data unpacked (the header kept unless
    the entry says it was packed without it)."""
    dsk.seek(entry.offset)
    data = dsk.read(entry.size)
    if len(data) != entry.size:
        raise BadFile(f"{entry.size} bytes at {entry.offset} announced, {len(data)} present")
    if entry.uncompressed or len(data) < HEADER or not data[0] & 0x80:  # header flag bit 7: packed
        return data
    body = data[HEADER:]
    if body[:4] != RNC_SIGNATURE:  # flagged but not packed: the game plays it as stored
        return data
    unpacked = rnc_unpack(body)
    return unpacked if entry.headerless else data[:HEADER] + unpacked


def text_number(file_number: int) -> int | None:
    """The in-game text number spoken by a speech file (section << 12 | line); None outside the speech files."""
    if file_number not in SPEECH_FILES:
        return None
    index = file_number - SPEECH_BASE
    section = max(s for s, start in enumerate(SECTION_START) if start <= index)
    return section << 12 | (index - SECTION_START[section])


def speech_file(text: int) -> int:
    """The speech file number of in-game text `text`."""
    return SPEECH_BASE + SECTION_START[text >> 12] + (text & 0xFFF)


def clip_samples(data: bytes):
    """The clip's samples (float32 in [-1, 1)) from a loaded speech file: the 22-byte header stripped, the
    unsigned 8-bit samples centred on 128."""
    import numpy as np

    if len(data) <= HEADER:
        raise BadFile(f"{len(data)} bytes: no samples")
    return (np.frombuffer(data, np.uint8, offset=HEADER).astype(np.float32) - 128.0) / 128.0


def speech_entries(entries: dict[int, Entry]) -> list[Entry]:
    """The entries of in-game speech and intro voice-overs, by file number."""
    return [e for n, e in sorted(entries.items()) if n in SPEECH_FILES or n in INTRO_VOICES]


def summary(clips: list[tuple[str, int, int | None, float, str]], skipped: int) -> str:
    hours = sum(c[3] for c in clips) / 3600
    return f"sky_speech: {len(clips)} clips, {hours:.2f} h ({skipped} skipped)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("work", type=Path, help="the recipe's WORK folder")
    ap.add_argument("--extracted", type=Path, default=None, help="the package already unpacked here (dpkg -x)")
    args = ap.parse_args(argv)
    import numpy as np
    import soundfile as sf
    from tqdm import tqdm

    out = (args.work / "games" / "sky").resolve()
    listing = out / "clips.tsv"
    if (out / ".done").exists() and listing.is_file():
        rows = [line.split("\t") for line in listing.read_text().splitlines()[1:]]
        print(f"sky_speech: done already ({len(rows)} clips in {listing})")
        return 0
    root = args.extracted or extract(args.work / "debs" / "sky", PACKAGES)
    game = root / GAME if (root / GAME).is_dir() else root  # the package tree, or the game folder itself
    for name in ("sky.dnr", "sky.dsk"):
        if not (game / name).is_file():
            sys.exit(f"error: {game / name} not found")
    try:
        entries = read_dnr(game / "sky.dnr")
    except BadFile as e:
        sys.exit(f"error: {e}")
    audio = out / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    clips, skipped = [], 0
    with open(game / "sky.dsk", "rb") as dsk:
        for entry in tqdm(speech_entries(entries), desc="sky", unit="clip", file=sys.stderr):
            try:
                samples = clip_samples(load_file(dsk, entry))
            except BadFile as e:  # counted, never the end of the stage
                print(f"warning: file {entry.number}: skipped: {e}", file=sys.stderr)
                skipped += 1
                continue
            path = audio / f"{entry.number}.flac"
            sf.write(str(path), (samples * 32768).astype(np.int16), RATE, format="FLAC", subtype="PCM_16")
            text = text_number(entry.number)
            duration = round(len(samples) / RATE, 3)
            clips.append((f"sky_{entry.number}", entry.number, text, duration, os.path.relpath(path, out)))
    with open(listing, "w", encoding="utf-8") as f:
        f.write("id\tfile\ttext\tduration\taudio\n")
        f.writelines(f"{i}\t{n}\t{'' if t is None else t}\t{d}\t{a}\n" for i, n, t, d, a in clips)
    (out / ".done").touch()
    print(summary(clips, skipped))
    return 0


if __name__ == "__main__":
    sys.exit(main())
