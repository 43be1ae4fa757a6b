"""Subtitles from word times: SubRip (.srt) and WebVTT (.vtt).

Words (`{"word", "start", "end"}`, seconds, as `asr.transcribe` returns them) are grouped into cues: a new
cue starts at a pause of `max_gap` seconds or more, and before a cue would pass `max_chars` characters or
`max_duration` seconds; a cue's text is broken into two lines of at most `line_chars` characters where it
is longer than one.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_GAP = 0.6  # s of silence between two words that start a new cue
MAX_CHARS = 84  # characters in a cue: two lines of 42, the common subtitle limit
LINE_CHARS = 42
MAX_DURATION = 6.0  # s a cue stays on screen at most


@dataclass
class Cue:
    start: float
    end: float
    text: str


def cues(
    words: list[dict],
    max_gap: float = MAX_GAP,
    max_chars: int = MAX_CHARS,
    max_duration: float = MAX_DURATION,
) -> list[Cue]:
    out, current = [], []
    for w in words:
        if current:
            text = " ".join(x["word"] for x in current + [w])
            pause = w["start"] - current[-1]["end"]
            if pause >= max_gap or len(text) > max_chars or w["end"] - current[0]["start"] > max_duration:
                out.append(_cue(current))
                current = []
        current.append(w)
    if current:
        out.append(_cue(current))
    return out


def _cue(words: list[dict]) -> Cue:
    return Cue(words[0]["start"], max(words[-1]["end"], words[0]["start"]), " ".join(w["word"] for w in words))


def lines(text: str, line_chars: int = LINE_CHARS) -> str:
    """The cue's text in one line, or two broken at the space nearest the middle (the first at most
    `line_chars` characters where a space allows)."""
    if len(text) <= line_chars or " " not in text:
        return text
    spaces = [i for i, c in enumerate(text) if c == " "]
    fitting = [i for i in spaces if i <= line_chars] or spaces
    cut = min(fitting, key=lambda i: abs(i - len(text) / 2))
    return text[:cut] + "\n" + text[cut + 1 :]


def _timestamp(seconds: float, separator: str) -> str:
    ms = round(max(seconds, 0.0) * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{separator}{ms:03d}"


def to_srt(cue_list: list[Cue]) -> str:
    blocks = [
        f"{i}\n{_timestamp(c.start, ',')} --> {_timestamp(c.end, ',')}\n{lines(c.text)}\n"
        for i, c in enumerate(cue_list, 1)
    ]
    return "\n".join(blocks)


def to_vtt(cue_list: list[Cue]) -> str:
    blocks = [f"{_timestamp(c.start, '.')} --> {_timestamp(c.end, '.')}\n{lines(c.text)}\n" for c in cue_list]
    return "WEBVTT\n\n" + "\n".join(blocks)
