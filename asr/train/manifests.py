"""JSONL manifests and corpus importers.

A manifest holds one JSON object per line:
    {"id": "1089-134686-0000", "audio": "clips/a.flac", "duration": 10.4, "text": "he hoped ...", "speaker": "1089"}
Relative `audio` paths (and `teacher` target files: asr.train.teacher_targets) resolve against the manifest's
folder. Bad lines and unreadable audio are reported as warnings and skipped; they never stop a run. A file that is
no manifest at all (binary data such as an audio file, or text most of whose lines are not JSON objects) is one
DataError instead.

CLI: python -m asr.train.manifests {librispeech,commonvoice,folder,tsv} ROOT OUT.jsonl [--tsv TABLE]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import warnings
from pathlib import Path

from asr.model.tokenizer import normalize_text
from asr.train.teacher_targets import resolve
from asr.util.atomic import atomic_open

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus")
FIELDS = {"id": str, "audio": str, "duration": (int, float), "text": str}  # required fields and their types
# a file more of whose non-empty lines than this share are not JSON objects is not a manifest (one error, not a
# warning per line); a manifest with a few bad lines is read, with a warning for each
NOT_MANIFEST_SHARE = 0.5
SNIFF_BYTES = 4096  # the first bytes looked at for binary data
AUDIO_MAGIC = ((b"RIFF", "WAV audio"), (b"fLaC", "FLAC audio"), (b"OggS", "Ogg audio"), (b"ID3", "MP3 audio"))


class DataError(ValueError):
    """A manifest or corpus that cannot be used at all; the message names it."""


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


# -- manifests ---------------------------------------------------------------------------------------------


def _check_entry(obj, folder: Path) -> tuple[dict | None, str]:
    """Validate one parsed line: (entry with absolute audio path, "") or (None, problem)."""
    if not isinstance(obj, dict):
        return None, "not a JSON object"
    for name, kind in FIELDS.items():
        if name not in obj:
            return None, f"missing field '{name}'"
        value = obj[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            return None, f"field '{name}' should be {'a number' if name == 'duration' else 'a string'}"
    if not math.isfinite(obj["duration"]) or obj["duration"] <= 0:
        return None, f"non-positive duration {obj['duration']}"
    if not obj["text"].strip():
        return None, "empty text"
    if "speaker" in obj and not isinstance(obj["speaker"], (str, int)):
        return None, "field 'speaker' should be a string"
    audio = Path(obj["audio"])
    audio = audio if audio.is_absolute() else folder / audio
    if not audio.is_file():
        return None, f"audio file not found: {audio}"
    return resolve({**obj, "audio": str(audio.resolve())}, folder), ""


def _binary(head: bytes) -> str | None:
    """What the first bytes of a file say it is when it is not text ("WAV audio", "binary data"), or None."""
    for magic, kind in AUDIO_MAGIC:
        if head.startswith(magic):
            return kind
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # an MPEG audio frame's sync word
        return "MP3 audio"
    return "binary data" if b"\0" in head else None


def read_manifest(path) -> list[dict]:
    """Read a JSONL manifest; audio paths come back absolute. Bad lines are warned about and skipped; a file that
    is no manifest (binary, or mostly lines that are not JSON objects) is a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such manifest")
    hint = "a manifest has one JSON object per line, as `python -m asr.train.manifests` writes"
    with open(path, "rb") as f:
        kind = _binary(f.read(SNIFF_BYTES))
    if kind:
        raise DataError(f"{path}: not a JSONL manifest (it is {kind}; {hint})")
    folder = path.resolve().parent
    entries, problems, lines, not_objects, first = [], [], 0, 0, ""
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            lines += 1
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                obj, problem = None, f"invalid JSON ({exc.msg})"
            else:
                entry, problem = _check_entry(obj, folder)
            if not isinstance(obj, dict):
                not_objects, first = not_objects + 1, first or f"line {n}: {problem}"
                problems.append(f"{path}:{n}: skipped: {problem}")
            elif entry is None:
                problems.append(f"{path}:{n}: skipped: {problem}")
            else:
                entries.append(entry)
    if not_objects > NOT_MANIFEST_SHARE * lines:
        raise DataError(
            f"{path}: not a JSONL manifest ({not_objects} of its {lines} lines are not JSON objects, {first}; {hint})"
        )
    for problem in problems:
        _warn(problem)
    return entries


def write_manifest(path, entries) -> None:
    """Write entries atomically; audio paths are stored relative to the manifest's folder."""
    path = Path(path)
    with atomic_open(path) as f:
        folder = path.resolve().parent
        for e in entries:
            rel = os.path.relpath(Path(e["audio"]).resolve(), folder)
            f.write(json.dumps({**e, "audio": Path(rel).as_posix()}, ensure_ascii=False) + "\n")


# -- corpus importers ---------------------------------------------------------------------------------------


def _make_entry(uid: str, audio: Path, text: str, speaker=None) -> dict | None:
    import soundfile as sf

    text = normalize_text(text)
    if not text:
        _warn(f"{audio}: skipped: transcript is empty after normalisation")
        return None
    try:
        duration = sf.info(str(audio)).duration
    except Exception as exc:  # libsndfile raises plain RuntimeErrors
        _warn(f"{audio}: skipped: cannot read audio ({str(exc).strip().splitlines()[0] if str(exc) else exc})")
        return None
    entry = {"id": uid, "audio": str(audio.resolve()), "duration": round(float(duration), 3), "text": text}
    if speaker is not None:
        entry["speaker"] = str(speaker)
    return entry


def _root(root) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such directory")
    return root


def import_librispeech(root) -> list[dict]:
    """LibriSpeech layout: <speaker>/<chapter>/<speaker>-<chapter>.trans.txt + flac, anywhere under root."""
    entries = []
    for trans in sorted(_root(root).rglob("*.trans.txt")):
        for n, line in enumerate(trans.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            uid, _, text = line.strip().partition(" ")
            if not uid:
                continue
            audio = trans.parent / f"{uid}.flac"
            if not audio.is_file():
                _warn(f"{trans}:{n}: skipped: audio file not found: {audio}")
                continue
            entry = _make_entry(uid, audio, text, speaker=uid.split("-")[0])
            if entry:
                entries.append(entry)
    return entries


def import_commonvoice(root, tsv: str = "train.tsv") -> list[dict]:
    """Common Voice layout: <root>/<tsv> (columns path, sentence, client_id) and <root>/clips/<path>."""
    root = _root(root)
    table, _, rows = _read_table(root / tsv, [{"path", "sentence"}])
    entries = []
    for n, row in rows:
        audio = root / "clips" / (row.get("path") or "")
        if not row.get("path") or not audio.is_file():
            _warn(f"{table}:{n}: skipped: audio file not found: {audio}")
            continue
        entry = _make_entry(Path(row["path"]).stem, audio, row.get("sentence") or "", row.get("client_id"))
        if entry:
            entries.append(entry)
    return entries


def _read_table(table: Path, wanted: list[set[str]]) -> tuple[Path, set[str], list[tuple[int, dict]]]:
    """A tab-separated table with a header: (its path, its columns, [(line number, row)]); it must have all
    the columns of one of the `wanted` sets."""
    if not table.is_file():
        raise DataError(f"{table}: no such file")
    with open(table, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        rows = list(enumerate(reader, 2))
        columns = set(reader.fieldnames or [])
    if not any(want <= columns for want in wanted):
        missing = sorted(wanted[0] - columns)
        alternatives = " or ".join("+".join(sorted(w)) for w in wanted)
        raise DataError(f"{table}: missing columns {missing} (want {alternatives})")
    return table, columns, rows


def import_folder(root) -> list[dict]:
    """Audio files anywhere under root, each with a sidecar <stem>.txt transcript."""
    root = _root(root)
    entries = []
    for audio in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()):
        text_file = audio.with_suffix(".txt")
        if not text_file.is_file():
            _warn(f"{audio}: skipped: no transcript {text_file.name}")
            continue
        uid = audio.relative_to(root).with_suffix("").as_posix().replace("/", "-")
        entry = _make_entry(uid, audio, text_file.read_text(encoding="utf-8", errors="replace"))
        if entry:
            entries.append(entry)
    return entries


def import_tsv(root, tsv: str = "transcripts.tsv") -> list[dict]:
    """A folder with a table: <root>/<tsv>, tab-separated with a header, columns `file` (relative to root) and
    `reference` (or `text`), optionally `speaker` (as ../shared/data's sets and many small corpora)."""
    root = _root(root)
    table, columns, rows = _read_table(root / tsv, [{"file", "reference"}, {"file", "text"}])
    text_column = "reference" if "reference" in columns else "text"
    entries = []
    for n, row in rows:
        audio = root / (row.get("file") or "")
        if not row.get("file") or not audio.is_file():
            _warn(f"{table}:{n}: skipped: audio file not found: {audio}")
            continue
        uid = Path(row["file"]).with_suffix("").as_posix().replace("/", "-")
        entry = _make_entry(uid, audio, row.get(text_column) or "", row.get("speaker") or None)
        if entry:
            entries.append(entry)
    return entries


# -- CLI ---------------------------------------------------------------------------------------------------

IMPORTERS = {
    "librispeech": import_librispeech,
    "commonvoice": import_commonvoice,
    "folder": import_folder,
    "tsv": import_tsv,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m asr.train.manifests", description="Import a corpus into a JSONL manifest."
    )
    parser.add_argument("layout", choices=sorted(IMPORTERS))
    parser.add_argument("root", help="corpus folder")
    parser.add_argument("out", help="manifest to write (JSONL)")
    parser.add_argument(
        "--tsv", default=None, help="the table to read (commonvoice: default train.tsv; tsv: transcripts.tsv)"
    )
    args = parser.parse_args(argv)
    try:
        if args.layout in ("commonvoice", "tsv") and args.tsv:
            entries = IMPORTERS[args.layout](args.root, args.tsv)
        else:
            entries = IMPORTERS[args.layout](args.root)
        if not entries:
            raise DataError(f"{args.root}: no usable utterances found for the {args.layout} layout")
        write_manifest(args.out, entries)
    except (DataError, OSError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    hours = sum(e["duration"] for e in entries) / 3600
    print(f"wrote {len(entries)} utterances ({hours:.2f} h) to {args.out}")
    return 0


if __name__ == "__main__":
    warnings.formatwarning = lambda msg, *a, **k: f"warning: {msg}\n"
    sys.exit(main())
