"""HTTP beside the websocket: responses, static files (no path traversal), bearer tokens, TLS."""

from __future__ import annotations

import hmac
import ssl
import time
from collections import OrderedDict
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, unquote

from websockets.datastructures import Headers
from websockets.http11 import Request, Response


def authorized(request: Request, query: str, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else None
    if given is None:
        given = (parse_qs(query).get("token") or [None])[0]
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def static_file(root: Path, path: str) -> Path | None:
    """The file under `root` that a URL path names ("/" is index.html), or None; never outside root."""
    name = unquote(path).lstrip("/") or "index.html"
    parts = name.split("/")
    if any(p in ("", ".", "..") or "\\" in p or "\x00" in p for p in parts):
        return None
    try:
        root = root.resolve(strict=True)
        target = root.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return target if target.is_file() and target.is_relative_to(root) else None


def http_response(status: HTTPStatus, body, content_type: str) -> Response:
    body = body.encode() if isinstance(body, str) else body
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
        ]
    )
    return Response(status.value, status.phrase, headers, body)


def text_response(status: HTTPStatus, text: str) -> Response:
    return http_response(status, text, "text/plain; charset=utf-8")


def make_ssl_context(certfile: str | None, keyfile: str | None) -> ssl.SSLContext | None:
    if not certfile:
        if keyfile:
            raise ValueError("--keyfile needs --certfile")
        return None
    for name in (certfile, keyfile):
        if name and not Path(name).is_file():
            raise ValueError(f"{name}: no such file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"{certfile}: cannot load certificate/key ({exc.args[-1] if exc.args else exc})") from None
    return context


class AuthFailures:
    """Wrong tokens per client address: after `limit` within `window` seconds, that address gets HTTP 429 (with
    Retry-After) for its authenticated requests until the window has passed since its last failure, so a
    token cannot be guessed at network speed. Bounded: at most `max_addresses` are remembered (the oldest
    forgotten first)."""

    def __init__(self, limit: int = 10, window: float = 60.0, max_addresses: int = 10000, clock=None):
        self.limit, self.window, self.max_addresses = limit, window, max_addresses
        self.clock = clock or time.monotonic
        self.failures: OrderedDict[str, list[float]] = OrderedDict()

    def _recent(self, address: str) -> list[float]:
        now = self.clock()
        times = [t for t in self.failures.get(address, ()) if now - t < self.window]
        if times:
            self.failures[address] = times
        else:
            self.failures.pop(address, None)
        return times

    def retry_after(self, address: str) -> int:
        """Seconds until `address` may try again (0: it may now)."""
        times = self._recent(address)
        if len(times) < self.limit:
            return 0
        return max(1, int(self.window - (self.clock() - times[-1])) + 1)

    def failed(self, address: str) -> None:
        times = self._recent(address)
        times.append(self.clock())
        self.failures[address] = times[-self.limit :]
        self.failures.move_to_end(address)
        while len(self.failures) > self.max_addresses:
            self.failures.popitem(last=False)
