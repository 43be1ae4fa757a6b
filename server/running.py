"""Running an `AsrServer`: until SIGTERM/SIGINT (then drained), on uvloop where it is installed, or on its own
event loop in a thread (`BackgroundServer`: tests, benchmarks, embedding)."""

from __future__ import annotations

import asyncio
import signal
import threading

from server.config import ServerConfig
from server.service import AsrServer


async def run_until_signalled(app: AsrServer) -> None:
    await app.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await app.drain()


def loop_factory(kind: str = "auto"):
    """uvloop's event loop factory (libuv: cheaper socket I/O per message) when installed or asked for, else asyncio's."""
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise ValueError("--loop uvloop: uvloop is not installed (pip install uvloop)") from None
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


class BackgroundServer:
    """An AsrServer on its own event loop in a thread (tests, benchmarks, embedding).

    with BackgroundServer(model, ServerConfig(port=0)) as srv:
        connect(srv.url)
    """

    def __init__(self, model, config: ServerConfig | None = None, **kwargs):
        self.app = AsrServer(model, config or ServerConfig(port=0), **kwargs)
        self.loop = loop_factory()()
        self.thread = threading.Thread(target=self._run, name="asr-server", daemon=True)
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.app.start())
        except BaseException as exc:
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        self.loop.run_forever()
        self.loop.close()

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        self.ready.wait()
        if self.error:
            raise self.error
        return self

    def stop(self) -> None:
        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.app.shutdown(), self.loop).result()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self.app.url
