"""The `asr serve` server: a Vosk-compatible websocket server over one shared BatchEngine.

Threads: the asyncio event loop runs every connection (websockets) and never
touches the model; ONE worker thread owns the `BatchEngine` (server/engine_thread.py)
and batches the streams of all connections into each forward pass.
Processes: one by default; `--workers N` forks N of them onto one listening
socket (server/process_pool.py), since one process's event loop and engine share a GIL.
Modules: connection.py (one connection), protocol.py (messages), web.py (HTTP, auth, TLS), metrics.py,
config.py (settings, per-stream decoders), running.py (signals, a server in a thread), cli.py (the `asr
serve` command). This one: admission (max_connections, max_connections_per_address), the HTTP routes
(/healthz, /readyz, /metrics, the browser page), wrong-token rate limiting, start / drain / shutdown, signals.

Decoding: `AsrServer(decoder_factory=...)` gets each stream's options
(sample_rate, words, max_alternatives, phrase_list, decoding) and returns a Stream
`beam_factory` (or None for greedy). `make_decoder_factory` (the default of
`asr serve`) decodes finals by CTC prefix beam search with the general English
LM (loaded once per process, before any worker is forked), unless the server runs
with --decoding greedy or the client asks for {"decoding": "greedy"}; hotwords
(phrase_list: boosted, not a closed grammar as in Vosk's small models) and
alternatives always use the beam. Partials are greedy. A factory marked `costly` (a
phrase_list's: up to about a second for the largest) is called on the server's decoder-builder
thread before the stream joins the engine, so that the engine's other streams do not
wait for it.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import itertools
import json
import logging
import mimetypes
import re
import weakref
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response
from websockets.protocol import State

from asr import __version__ as asr_version
from asr.stream import BatchEngine
from server.config import ServerConfig, make_decoder_factory
from server.connection import Connection
from server.engine_thread import EngineWorker
from server.metrics import Metrics
from server.process_pool import publish_metrics
from server.protocol import CLOSE_GOING_AWAY, CLOSE_INTERNAL
from server.web import AuthFailures, authorized, http_response, make_ssl_context, static_file, text_response

log = logging.getLogger("asr.server")


class AsrServer:
    """`sock`: an already listening socket to serve on (instead of config.host/port); `shared`: (SharedState,
    worker index) when this is one of several worker processes (server/process_pool.py)."""

    def __init__(self, model, config: ServerConfig | None = None, decoder_factory=None, sock=None, shared=None):
        self.model = model
        self.sock = sock
        self.shared, self.worker_index = shared or (None, 0)
        self.publisher: asyncio.Task | None = None
        self.config = config or ServerConfig()
        self.decoder_factory = decoder_factory or make_decoder_factory(model.tokens)
        self.metrics = Metrics()
        self.ids = itertools.count(1)
        # upgrades let through, counted against the limits until they close: connection -> client address
        self.admitted: dict[ServerConnection, str] = {}
        self.per_address: Counter[str] = Counter()  # admitted ones by client address (one process; else shared)
        self.connections: set[Connection] = set()  # open ones, for shutdown
        self.opening: weakref.WeakSet = weakref.WeakSet()  # every websockets connection, handshaking ones too
        self.server = None
        self.worker = None
        # decoders with a phrase_list (hotword tries): one at a time, beside the engine's thread, not on it
        self.decoder_builder = ThreadPoolExecutor(1, thread_name_prefix="decoder-builder")
        self.stopping: asyncio.Future | None = None
        self.draining = False  # refusing new streams, open ones going on (drain())
        self.auth_failures = AuthFailures()  # wrong tokens per client address (HTTP 429 after too many)

    # -- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        c = self.config
        self.stopping = asyncio.get_running_loop().create_future()
        # the model, the LM's lexicon and tables (~0.5 M Python objects) live as long as the process: out of the
        # collector's sight, a full collection no longer stops every stream for 100-200 ms (one in the middle of
        # building a phrase_list's decoder held the real-time clients' replies up by that much)
        gc.freeze()
        self.worker = EngineWorker(BatchEngine(self.model, chunk_frames=c.chunk_frames, capacity=16), self.metrics)
        self.worker.start()
        try:
            where = {"sock": self.sock} if self.sock is not None else {"host": c.host, "port": c.port}
            self.server = await serve(
                self.handler,
                **where,
                process_request=self.process_request,
                ssl=make_ssl_context(c.certfile, c.keyfile),
                max_size=c.max_message_bytes,
                max_queue=c.max_queue,
                ping_interval=c.ping_interval,
                ping_timeout=c.ping_timeout,
                compression=None,  # PCM does not compress; deflate would cost CPU per connection
                server_header="gru-asr",
                create_connection=self._connection_class(),
            )
        except BaseException:
            self.worker.stop()
            raise
        if self.shared is not None:
            self.publisher = asyncio.create_task(publish_metrics(self.shared, self.worker_index, self.metrics))
        log.info("event=listening url=%s model=%s", self.url, self.model.source or "in-memory")

    @property
    def port(self) -> int:
        return self.server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        scheme = "wss" if self.config.certfile else "ws"
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"{scheme}://{host}:{self.port}"

    async def drain(self, seconds: float | None = None) -> None:
        """Refuse new streams (HTTP 503; /healthz and /readyz answer 503) while the open ones go on, until they
        have all ended or `seconds` (default config.drain_seconds) have passed; then shut down."""
        seconds = self.config.drain_seconds if seconds is None else seconds
        if seconds > 0 and not self.stopping.done():
            self.draining = True
            log.info("event=drain connections=%d seconds=%g", self.metrics.connections, seconds)
            deadline = asyncio.get_running_loop().time() + seconds
            while self.connections and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stop accepting; every open stream gets its final result and close 1001; stop the worker."""
        if self.stopping.done():
            return
        log.info("event=shutdown connections=%d", self.metrics.connections)
        self.stopping.set_result(None)
        self.server.close(close_connections=False)
        for conn in list(self.connections):
            conn.interrupt()
        # connections still in the opening handshake have no stream to finish: they must not hold shutdown up
        # until their open timeout (websockets tracks connections only once they are open)
        for ws in list(self.opening):
            if ws.state is State.CONNECTING and ws.transport is not None:
                ws.transport.abort()
        try:
            await asyncio.wait_for(self.server.wait_closed(), self.config.shutdown_timeout)
        except TimeoutError:
            for conn in list(self.server.connections):
                await conn.close(CLOSE_GOING_AWAY, "server shutting down")
            await self.server.wait_closed()
        await asyncio.to_thread(self.worker.stop)
        self.decoder_builder.shutdown(wait=False, cancel_futures=True)
        if self.publisher is not None:
            self.publisher.cancel()
        log.info("event=stopped")

    # -- websocket connections ------------------------------------------------------
    def _connection_class(self):
        """websockets' connection class, made to note every connection from its first byte (`self.opening`) and
        to give back its place under the limits when it closes, however it closes (a failed handshake, whose
        handler never runs, too)."""
        opening, release = self.opening, self._release

        class NotedConnection(ServerConnection):
            def connection_made(self, transport) -> None:
                super().connection_made(transport)
                opening.add(self)

            def connection_lost(self, exc) -> None:
                super().connection_lost(exc)
                release(self)

        return NotedConnection

    async def handler(self, ws: ServerConnection) -> None:
        n = next(self.ids)
        conn = Connection(self, ws, n if self.shared is None else f"{self.worker_index}.{n}")  # worker.connection
        self.metrics.opened()
        client = forwarded_for(ws.request) if self.config.trust_proxy else ""
        via = {"via": _peer(ws)} if client else {}
        conn.log("open", peer=client or _peer(ws), **via, path=json.dumps(ws.request.path.split("?")[0]))
        self.connections.add(conn)
        try:
            await conn.serve()
        except Exception:
            self.metrics.error("internal")
            log.exception("conn=%s event=error kind=internal", conn.id)
            if ws.state is State.OPEN:
                await ws.close(CLOSE_INTERNAL, "internal error")
        finally:
            self.connections.discard(conn)
            self._release(ws)
            self.metrics.closed()

    # -- HTTP ------------------------------------------------------------------------------
    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        method = getattr(request, "method", "GET")
        if method == "HEAD":  # the headers a GET would get, no body
            response = self.http_get(path)
            response.headers["Content-Length"] = str(len(response.body))
            response.body = b""
            return response
        if method != "GET":
            response = text_response(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not supported here\n")
            response.headers["Allow"] = "GET, HEAD"
            return response
        if "websocket" not in request.headers.get("Upgrade", "").lower():
            if path == "/metrics" and self.config.token and not self.config.metrics_public:
                refused = self._check_token(connection, request, query)
                if refused is not None:
                    return refused
            return self.http_get(path)
        if self.stopping.done() or self.draining:
            return text_response(HTTPStatus.SERVICE_UNAVAILABLE, "server shutting down\n")
        if self.config.token:
            refused = self._check_token(connection, request, query)
            if refused is not None:
                return refused
        client = self._client_address(connection, request)
        refused = self._admit(connection, client)
        if refused == "over_capacity":
            self.metrics.error("over_capacity")
            log.warning(
                "event=error kind=over_capacity peer=%s limit=%d", _peer(connection), self.config.max_connections
            )
            return text_response(HTTPStatus.SERVICE_UNAVAILABLE, "too many connections, try again later\n")
        if refused == "address":
            # 429, not 503: the limit is this client's, not the server's (and a balancer that tries the next
            # replica on 503, as deploy/nginx/gru-asr.conf does, must not multiply it by the replicas)
            limit = self.config.max_connections_per_address
            self.metrics.error("too_many_from_address")
            log.warning(
                "event=error kind=too_many_from_address peer=%s client=%s limit=%d", _peer(connection), client, limit
            )
            body = f"too many connections from your address (at most {limit}), close one and try again\n"
            return text_response(HTTPStatus.TOO_MANY_REQUESTS, body)
        return None

    def _check_token(self, connection: ServerConnection, request: Request, query: str) -> Response | None:
        """None when the request has the token; else 401, or 429 for an address with too many wrong ones."""
        client = self._client_address(connection, request)
        wait = self.auth_failures.retry_after(client)
        if wait:
            self.metrics.error("too_many_wrong_tokens")
            response = text_response(HTTPStatus.TOO_MANY_REQUESTS, "too many wrong tokens, try again later\n")
            response.headers["Retry-After"] = str(wait)
            return response
        if authorized(request, query, self.config.token):
            return None
        self.auth_failures.failed(client)
        self.metrics.error("unauthorized")
        log.warning("event=error kind=unauthorized peer=%s", _peer(connection))
        response = text_response(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token\n")
        response.headers["WWW-Authenticate"] = 'Bearer realm="gru-asr"'
        return response

    def _client_address(self, connection: ServerConnection, request: Request) -> str:
        """The client's IP: the proxy's X-Forwarded-For entry with --trust-proxy, else the peer's (one spelling
        per address: an IPv4 client of a dual-stack socket, ::ffff:a.b.c.d, is a.b.c.d)."""
        client = forwarded_for(request) if self.config.trust_proxy else ""
        if not client:
            addr = connection.remote_address
            client = str(addr[0]) if addr else "?"
        try:
            ip = ipaddress.ip_address(client.strip("[]"))
        except ValueError:
            return client
        return str(getattr(ip, "ipv4_mapped", None) or ip)

    def _admit(self, connection: ServerConnection, client: str) -> str | None:
        """Count `connection`, from `client`, against max_connections and max_connections_per_address (each of
        all worker processes together) if there is room: None; else the limit it is at, "over_capacity" or
        "address"."""
        for closed in [c for c in self.admitted if c.state is State.CLOSED]:  # closed, connection_lost to come
            self._release(closed)
        c = self.config
        if self.shared is not None:
            refused = self.shared.admit(
                self.worker_index, len(self.admitted), c.max_connections, client, c.max_connections_per_address
            )
        elif len(self.admitted) >= c.max_connections:
            refused = "over_capacity"
        elif c.max_connections_per_address and self.per_address[client] >= c.max_connections_per_address:
            refused = "address"
        else:
            refused = None
            self.per_address[client] += 1
        if refused is None:
            self.admitted[connection] = client
        return refused

    def _release(self, connection: ServerConnection) -> None:
        """`connection` has closed (or its handler ended): its place under the limits is free (once)."""
        client = self.admitted.pop(connection, None)
        if client is None:
            return
        if self.shared is not None:
            self.shared.release(self.worker_index, len(self.admitted), client)
        else:
            self.per_address[client] -= 1
            if self.per_address[client] <= 0:
                del self.per_address[client]

    def http_get(self, path: str) -> Response:
        if path in ("/healthz", "/readyz"):
            connections = self.metrics.connections if self.shared is None else self.shared.total()
            status = "stopping" if self.stopping.done() else "draining" if self.draining else "ok"
            body = {
                "status": status,
                "connections": connections,
                "max_connections": self.config.max_connections,
                "max_connections_per_address": self.config.max_connections_per_address,
                "model": Path(str(self.model.source or "in-memory")).name,  # not this machine's paths
                "version": asr_version,
            }
            # /healthz: alive and taking streams (503 while draining or stopping: a balancer moves new ones
            # away); /readyz: also has room for one more (503 at --max-connections)
            ok = status == "ok" and (path == "/healthz" or connections < self.config.max_connections)
            code = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
            return http_response(code, json.dumps(body) + "\n", "application/json")
        if path == "/metrics":
            peers = self.shared.peer_snapshots(self.worker_index) if self.shared is not None else ()
            body = self.metrics.render(peers)
            return http_response(HTTPStatus.OK, body, "text/plain; version=0.0.4; charset=utf-8")
        file = static_file(self.config.static_dir, path)
        if file is None:
            return text_response(HTTPStatus.NOT_FOUND, "not found\n")
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        return http_response(HTTPStatus.OK, file.read_bytes(), kind)


def _peer(ws: ServerConnection) -> str:
    addr = ws.remote_address
    return f"{addr[0]}:{addr[1]}" if addr else "?"


def forwarded_for(request: Request) -> str:
    """The client's address as the nearest proxy saw it: the last entry of X-Forwarded-For ("" without one).
    Earlier entries are whatever the client claimed; only the proxy's own is worth logging."""
    header = ",".join(request.headers.get_all("X-Forwarded-For"))
    last = header.rsplit(",", 1)[-1].strip()
    return last if re.fullmatch(r"[0-9A-Fa-f:.\[\]]{2,64}", last) else ""
