"""`asr serve --workers N`: N server processes on one listening socket, each with its own engine.

One process's event loop and engine thread share one GIL, which holds a server to about one core; N
processes use N. The parent binds the socket and loads the model, then forks the workers (before any
model computation, so no thread pool is copied); the kernel gives each new connection to one of them.
They share the connection limit (one counter per worker in shared memory) and /metrics (each writes a
snapshot of its counters to a folder every second; whichever answers /metrics sums them all).
SIGTERM/SIGINT to the parent go to every worker, which finish their streams as a single server does; the
parent exits 0 when they all did. A worker that dies is replaced, unless it died right after starting.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

from asr.util.atomic import atomic_open

log = logging.getLogger("asr.server")

SNAPSHOT_INTERVAL = 1.0  # seconds between a worker's metrics snapshots
MIN_UPTIME = 5.0  # seconds; a worker dying sooner is not replaced (it would die again): the server stops


class SharedState:
    """What the workers share: each one's admitted connections, and a folder of metrics snapshots."""

    def __init__(self, workers: int, folder: Path):
        self.counts = multiprocessing.Array("i", workers)  # in shared memory, inherited by fork
        self.folder = folder

    def admit(self, index: int, open_here: int, limit: int) -> bool:
        """Publish this worker's open count; True (and count one more) if all workers together are below limit."""
        with self.counts.get_lock():
            self.counts[index] = open_here
            if sum(self.counts[:]) >= limit:
                return False
            self.counts[index] = open_here + 1
            return True

    def publish_count(self, index: int, open_here: int) -> None:
        with self.counts.get_lock():
            self.counts[index] = open_here

    def total(self) -> int:
        return sum(self.counts[:])

    def write_snapshot(self, index: int, snapshot: dict) -> None:
        with atomic_open(self.folder / f"{index}.json") as f:
            f.write(json.dumps(snapshot))

    def peer_snapshots(self, index: int) -> list[dict]:
        """The latest snapshots of the other workers."""
        out = []
        for path in self.folder.glob("*.json"):
            if path.stem != str(index):
                try:
                    out.append(json.loads(path.read_text()))
                except (OSError, ValueError):  # being replaced right now: skip this once
                    pass
        return out


async def publish_metrics(shared: SharedState, index: int, metrics) -> None:
    """A worker's task: write its metrics snapshot every SNAPSHOT_INTERVAL seconds."""
    while True:
        shared.write_snapshot(index, metrics.snapshot())
        await asyncio.sleep(SNAPSHOT_INTERVAL)


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=4096)


def run_workers(workers: int, sock: socket.socket, serve_one) -> int:
    """Fork `workers` processes that each run `serve_one(index, shared)` (returns an exit code); supervise them."""
    shared = SharedState(workers, Path(tempfile.mkdtemp(prefix="asr-serve-")))
    children: dict[int, tuple[int, float]] = {}  # pid -> (worker index, start time)
    stopping = False

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                code = serve_one(index, shared)
            except BaseException:
                log.exception("event=worker_error worker=%d", index)
            finally:
                logging.shutdown()
                os._exit(code)
        children[pid] = (index, time.monotonic())

    def stop(signum=None, frame=None) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            sock.close()  # the workers keep their copies until they have stopped accepting
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    for index in range(workers):
        spawn(index)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("event=workers count=%d pids=%s", workers, ",".join(map(str, children)))
    failed = False
    try:
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            index, started = children.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            if stopping:
                failed = failed or code != 0
                continue
            log.error("event=worker_exit worker=%d pid=%d code=%d", index, pid, code)
            shared.publish_count(index, 0)
            if time.monotonic() - started < MIN_UPTIME:
                failed = True
                stop()
            else:
                spawn(index)
    finally:
        shutil.rmtree(shared.folder, ignore_errors=True)
    return 1 if failed else 0
