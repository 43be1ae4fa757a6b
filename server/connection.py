"""One websocket connection of `asr serve`: the per-connection state machine of the Vosk protocol.

A connection gets an optional config (before any audio), then audio (PCM, or a WAV whose header gives the
rate), each answered with a partial or a result, and ends with eof (the final result, close 1000); reset
returns the final result and goes on. Its stream joins the server's engine (server/engine_thread.py) when
first needed; the server (server/service.py) admits connections and hands each one to `Connection.serve`.

Each connection reads its next message only after replying to the previous
one, so at most one job per connection is in flight; websockets' `max_queue`
then pauses the socket, and TCP pushes back on a client that runs ahead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from server import protocol
from server.protocol import CLOSE_GOING_AWAY, CLOSE_NORMAL, CLOSE_POLICY, ProtocolError

log = logging.getLogger("asr.server")


def _reply(stream) -> dict:
    return stream.pop_final() if stream.has_final() else stream.partial()


class Closing(Exception):
    """End the connection: optionally send a last message, then close with `code`."""

    def __init__(self, code: int, reason: str, message: str | None = None):
        super().__init__(reason)
        self.code, self.reason, self.message = code, reason, message


class Connection:
    def __init__(self, app, ws: ServerConnection, cid: int | str):
        """`app`: the `server.service.AsrServer` that admitted `ws` (its config, metrics, engine worker and decoders)."""
        self.app, self.ws, self.id = app, ws, cid
        self.options = {
            "sample_rate": app.config.sample_rate,
            "words": True,
            "max_alternatives": 0,
            "phrase_list": None,
            "grammar": None,
            "decoding": None,
        }
        self.stream = None
        self.binary_seen = False
        self.samples = 0  # samples received (at self.rate)
        self.rate = app.config.sample_rate
        self.rate_configured = False  # a config message set the rate
        self.task: asyncio.Task | None = None  # the task serving this connection
        self.receiving = False  # waiting in next_message

    def log(self, event: str, level: int = logging.INFO, **fields) -> None:
        extra = "".join(f" {k}={v}" for k, v in fields.items())
        log.log(level, "conn=%s event=%s%s", self.id, event, extra)

    async def serve(self) -> None:
        self.task = asyncio.current_task()
        try:
            while True:
                message = await self.next_message()
                received = time.perf_counter()
                reply = await self.handle(message)
                if reply is not None:
                    await self.ws.send(protocol.dumps(reply))
                    self.app.metrics.replied(time.perf_counter() - received)
        except Closing as c:
            await self.close(c)
        except ConnectionClosed as exc:
            sent = exc.sent.code if exc.sent else None
            if sent == protocol.CLOSE_TOO_BIG:
                self.app.metrics.error("too_big")
                self.log("error", logging.WARNING, kind="too_big", limit=self.app.config.max_message_bytes)
            elif exc.rcvd is None and sent is None:
                self.log("disconnect", detail="abrupt")
            else:
                self.log("disconnect", code=exc.rcvd.code if exc.rcvd else sent)
        finally:
            if self.stream is not None:
                stream, self.stream = self.stream, None
                self.app.worker.retire(stream)

    async def close(self, c: Closing) -> None:
        try:
            if c.message is not None:
                await self.ws.send(c.message)
            await self.ws.close(c.code, c.reason)
            self.log("close", code=c.code, reason=json.dumps(c.reason))
        except ConnectionClosed:
            self.log("disconnect", detail="before_close")

    async def next_message(self):
        """The client's next message; raises Closing on shutdown or idle timeout.

        No task or asyncio.wait per message (py-spy at 300 clients: a fifth of the event loop's time went to
        them): shutdown cancels the receive of connections waiting for a message (`interrupt`), which
        websockets makes safe.
        """
        if self.app.stopping.done():
            await self._close_for_shutdown()
        self.receiving = True
        try:
            async with asyncio.timeout(self.app.config.idle_timeout):
                return await self.ws.recv()
        except TimeoutError:
            raise Closing(CLOSE_NORMAL, "idle timeout") from None
        except asyncio.CancelledError:
            self.receiving = False
            if not self.app.stopping.done():
                raise
            asyncio.current_task().uncancel()
            await self._close_for_shutdown()
        finally:
            self.receiving = False

    def interrupt(self) -> None:
        """Shutdown: wake the connection if it is waiting for a message (else it sees `stopping` next time)."""
        if self.receiving and self.task is not None:
            self.task.cancel()

    async def _close_for_shutdown(self):
        reply = await self.final()
        raise Closing(CLOSE_GOING_AWAY, "server shutting down", protocol.dumps(reply))

    async def handle(self, message) -> dict | None:
        """The reply to one message (None for config); raises Closing to end the connection."""
        try:
            if isinstance(message, str):
                return await self.handle_text(message)
            return await self.handle_audio(message)
        except ProtocolError as exc:
            self.app.metrics.error(exc.kind)
            self.log("error", logging.WARNING, kind=exc.kind, detail=json.dumps(str(exc)))
            raise Closing(exc.code, exc.kind, protocol.error(str(exc))) from None

    async def handle_text(self, text: str) -> dict | None:
        command = protocol.parse_text(text)
        if isinstance(command, protocol.Config):
            if self.binary_seen:
                raise ProtocolError("config must come before the audio", "config_after_audio", CLOSE_POLICY)
            if command.grammar is not None:  # compiled off the event loop (10,000 phrases take a fraction of a second)
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self.app.decoder_builder, protocol.check_grammar, command.grammar)
            self.options = command.merged_into(self.options)
            self.rate = self.options["sample_rate"]
            self.rate_configured = self.rate_configured or command.sample_rate is not None
            shown = {k: f"{len(v)} phrases" if k == "grammar" and v else v for k, v in self.options.items()}
            self.log("config", **{k: json.dumps(v) for k, v in shown.items() if v is not None})
            return None  # Vosk's server sends nothing back for a config
        reply = await self.final()
        if isinstance(command, protocol.Eof):
            raise Closing(CLOSE_NORMAL, "eof", protocol.dumps(reply))
        return reply

    async def handle_audio(self, data: bytes) -> dict:
        if not self.binary_seen:
            self.binary_seen = True
            if protocol.is_riff(data):
                rate, offset = protocol.parse_wav_header(data)
                if self.rate_configured and rate != self.rate:
                    raise ProtocolError(f"WAV header says {rate} Hz but the config said {self.rate} Hz", "bad_wav")
                self.rate = self.options["sample_rate"] = rate
                data = data[offset:]
        stream = await self.ensure_stream()
        self.samples += len(data) // 2
        self.app.metrics.audio(len(data) / 2 / self.rate)
        if self.samples > self.app.config.max_stream_seconds * self.rate:
            reply = await self.app.worker.call(lambda e: stream.push(data), lambda e: stream.pop_final(), flush=stream)
            self.app.metrics.error("too_long")
            reason = f"stream longer than {self.app.config.max_stream_seconds:g} s"
            self.log("error", logging.WARNING, kind="too_long", detail=json.dumps(reason))
            raise Closing(CLOSE_POLICY, reason, protocol.dumps(reply))
        return await self.app.worker.call(lambda e: stream.push(data), lambda e: _reply(stream), stream=stream)

    async def ensure_stream(self):
        if self.stream is None:
            options = dict(
                endpoint=self.app.config.endpoint,
                words=self.options["words"],
                max_alternatives=self.options["max_alternatives"],
                beam_factory=self.app.decoder_factory(self.options),
            )
            factory = options["beam_factory"]
            if getattr(factory, "costly", False):  # a phrase_list: its decoder is built off the engine thread
                beam = await asyncio.get_running_loop().run_in_executor(self.app.decoder_builder, factory)
                options["beam_factory"] = lambda: beam
            rate = self.rate
            self.stream = await self.app.worker.call(lambda e: e.add_stream(rate, **options))
        return self.stream

    async def final(self) -> dict:
        stream = await self.ensure_stream()
        return await self.app.worker.call(after=lambda e: stream.pop_final(), flush=stream)
