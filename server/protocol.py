"""The Vosk-compatible websocket protocol: parsing and formatting only, no sockets.

Client -> server text messages (JSON, any spacing):
    {"config": {"sample_rate": 16000, "words": true, "max_alternatives": 0, "phrase_list": ["..."],
                "grammar": ["yes", "no", "[unk]"], "decoding": "beam" | "greedy"}}
                (phrase_list: boosted hotwords; grammar: only those phrases, as Vosk's; decoding is ours)
    {"eof" : 1}      final result, then the server closes
    {"reset" : 1}    final result, the stream goes on
Client -> server binary messages: 16-bit little-endian mono PCM; the first one may
start with a WAV (RIFF) header, which is parsed and skipped.

Server -> client: one JSON object per client message (none for config, as Vosk):
    {"partial": "..."} | {"text": "...", "result": [...]} | {"alternatives": [...]} | {"error": "..."}
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, fields

from asr.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

# WebSocket close codes (RFC 6455 section 7.4.1)
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED = 1003  # data the server cannot accept
CLOSE_POLICY = 1008  # a rule of the server was broken
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011

MAX_ALTERNATIVES = 20  # most alternatives a client may ask for
DECODINGS = ("beam", "greedy")  # asr.decode.config.METHODS, repeated so that parsing needs no torch
MAX_PHRASES = 1000  # most entries in a phrase_list
MAX_PHRASE_CHARS = 200  # longest phrase_list entry, in characters
MAX_GRAMMAR_PHRASES = 10_000  # most phrases in a grammar (each at most MAX_PHRASE_CHARS)

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
PCM_SUBFORMAT_TAIL = (
    b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"  # KSDATAFORMAT_SUBTYPE_PCM after its tag
)


class ProtocolError(ValueError):
    """A message the server cannot accept. `kind` names it for logs and metrics; `code` closes the socket."""

    def __init__(self, message: str, kind: str, code: int = CLOSE_UNSUPPORTED):
        super().__init__(message)
        self.kind = kind
        self.code = code


@dataclass(frozen=True)
class Config:
    """The fields a config message set; None where it did not mention them."""

    sample_rate: int | None = None
    words: bool | None = None
    max_alternatives: int | None = None
    phrase_list: tuple[str, ...] | None = None
    grammar: tuple[str, ...] | None = None
    decoding: str | None = None

    def merged_into(self, options: dict) -> dict:
        """`options` updated with the fields this message set."""
        out = dict(options)
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = value
        return out


@dataclass(frozen=True)
class Eof:
    pass


@dataclass(frozen=True)
class Reset:
    pass


Command = Config | Eof | Reset


def parse_text(text: str) -> Command:
    """A client's text message -> Config, Eof or Reset; anything else raises ProtocolError."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("text messages must be JSON commands (audio goes in binary messages)", "bad_json") from None
    if not isinstance(obj, dict) or len(obj) != 1:
        raise ProtocolError('expected one of {"config": {...}}, {"eof": 1}, {"reset": 1}', "bad_command")
    ((key, value),) = obj.items()
    if key in ("eof", "reset"):
        if value is not True and not (type(value) is int and value == 1):
            raise ProtocolError(f'"{key}" must be 1', "bad_command")
        return Eof() if key == "eof" else Reset()
    if key == "config":
        return parse_config(value)
    raise ProtocolError(f'unknown command "{_short(key)}" (expected config, eof or reset)', "bad_command")


def parse_config(cfg) -> Config:
    if not isinstance(cfg, dict):
        raise ProtocolError('"config" must be an object', "bad_config")
    unknown = sorted(set(cfg) - {f.name for f in fields(Config)})
    if unknown:
        raise ProtocolError(f"unknown config key {_short(unknown[0])!r}", "bad_config")
    out = {}
    if "sample_rate" in cfg:
        out["sample_rate"] = check_sample_rate(cfg["sample_rate"])
    if "words" in cfg:
        words = cfg["words"]
        if not isinstance(words, bool) and words not in (0, 1):
            raise ProtocolError('"words" must be true or false', "bad_config")
        out["words"] = bool(words)
    if "max_alternatives" in cfg:
        n = cfg["max_alternatives"]
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_ALTERNATIVES:
            raise ProtocolError(f'"max_alternatives" must be a whole number from 0 to {MAX_ALTERNATIVES}', "bad_config")
        out["max_alternatives"] = n
    if "decoding" in cfg:
        if cfg["decoding"] not in DECODINGS:
            raise ProtocolError(f'"decoding" must be one of {", ".join(map(repr, DECODINGS))}', "bad_config")
        out["decoding"] = cfg["decoding"]
    if "phrase_list" in cfg:
        phrases = cfg["phrase_list"]
        if (
            not isinstance(phrases, list)
            or len(phrases) > MAX_PHRASES
            or not all(isinstance(p, str) and len(p) <= MAX_PHRASE_CHARS for p in phrases)
        ):
            raise ProtocolError(
                f'"phrase_list" must be a list of at most {MAX_PHRASES} strings of at most {MAX_PHRASE_CHARS} characters',
                "bad_config",
            )
        out["phrase_list"] = tuple(phrases)
    if "grammar" in cfg:
        grammar = cfg["grammar"]
        if (
            not isinstance(grammar, list)
            or not 1 <= len(grammar) <= MAX_GRAMMAR_PHRASES
            or not all(isinstance(p, str) and len(p) <= MAX_PHRASE_CHARS for p in grammar)
        ):
            raise ProtocolError(
                f'"grammar" must be a list of 1 to {MAX_GRAMMAR_PHRASES} strings of at most {MAX_PHRASE_CHARS} characters',
                "bad_config",
            )
        out["grammar"] = tuple(grammar)  # its phrases are checked off the event loop: `check_grammar`
    return Config(**out)


def check_grammar(grammar: tuple[str, ...]) -> None:
    """A client's grammar compiled (and kept, for its decoders) or a ProtocolError saying what is wrong with it.
    A large one takes a fraction of a second: servers call this on a thread of its own, not the event loop."""
    from asr.decode.grammar import GrammarError, check_phrases

    try:
        check_phrases(grammar)
    except GrammarError as exc:
        raise ProtocolError(f"bad grammar: {exc}", "bad_config") from None


def check_sample_rate(rate) -> int:
    """A sample rate from a client (int, or a whole float such as 16000.0) -> int, or ProtocolError."""
    if (
        isinstance(rate, bool)
        or not isinstance(rate, (int, float))
        or rate != rate
        or rate in (float("inf"), -float("inf"))
    ):
        raise ProtocolError('"sample_rate" must be a number', "bad_sample_rate")
    if not float(rate).is_integer() or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ProtocolError(
            f"sample rate {rate} not supported (whole Hz from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE})",
            "bad_sample_rate",
        )
    return int(rate)


# -- WAV headers ------------------------------------------------------------------


def is_riff(data: bytes) -> bool:
    return len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WAVE"


def parse_wav_header(data: bytes) -> tuple[int, int]:
    """A message starting with a RIFF/WAVE header -> (sample_rate, offset of the first PCM byte).

    The header must be whole in this message and describe 16-bit mono PCM at a
    supported rate; the data chunk's size is ignored (streams often write 0 or 0xFFFFFFFF).
    """
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if chunk_id == b"data":
            if fmt is None:
                raise ProtocolError("WAV header has no fmt chunk before its data", "bad_wav")
            return _check_wav_format(fmt), body
        if chunk_id == b"fmt ":
            fmt = data[body : body + size]
            if len(fmt) < 16:
                raise ProtocolError("WAV header is cut short (send the whole header in the first message)", "bad_wav")
        pos = body + size + (size & 1)  # chunks are padded to an even size
    raise ProtocolError("WAV header is cut short (send the whole header in the first message)", "bad_wav")


def _check_wav_format(fmt: bytes) -> int:
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == WAVE_FORMAT_EXTENSIBLE and len(fmt) >= 40 and fmt[26:40] == PCM_SUBFORMAT_TAIL:
        tag = struct.unpack_from("<H", fmt, 24)[0]
    if tag != WAVE_FORMAT_PCM or bits != 16 or channels != 1:
        raise ProtocolError(
            f"WAV audio must be 16-bit mono PCM (got format {tag:#x}, {bits} bits, {channels} channels)", "bad_wav"
        )
    return check_sample_rate(rate)


# -- replies -----------------------------------------------------------------------


def dumps(reply: dict) -> str:
    return json.dumps(reply, ensure_ascii=False)


def error(message: str) -> str:
    return dumps({"error": message})


def is_final(reply: dict) -> bool:
    return "text" in reply or "alternatives" in reply


def final_text(reply: dict) -> str:
    """The best text of a final reply (plain or alternatives form)."""
    if "alternatives" in reply:
        alts = reply["alternatives"]
        return alts[0]["text"] if alts else ""
    return reply.get("text", "")


def _short(value, limit: int = 40) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."
