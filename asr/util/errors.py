"""User mistakes: `UserError`, and `fail`, which reports one as the `asr` command does (one line, no traceback)."""

from __future__ import annotations

import sys


class UserError(Exception):
    """A mistake by the user: reported in one line, without a traceback."""


def fail(message: str, code: int = 2) -> int:
    print(f"asr: error: {message}", file=sys.stderr)
    return code
