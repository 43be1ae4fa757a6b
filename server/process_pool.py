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
import hashlib
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
KEY = 16  # bytes: a client address's slot in the shared table is named by this much of its BLAKE2b digest
FREE = bytes(KEY)


class SharedState:
    """What the workers share: each one's admitted connections, its admitted connections per client address,
    and a folder of metrics snapshots.

    The address table has `address_slots` slots (at least --max-connections: an address holds a slot only
    while some worker counts a connection from it, and all workers together admit at most --max-connections,
    so it never fills). Slot s is named by keys[KEY*s : KEY*(s+1)] (FREE: unused) and holds each worker's count
    of its connections from that address, per_address[s*workers + worker]; a slot whose counts are all 0 is
    freed. Per worker, so that a worker that dies takes its counts with it (forget_worker). One lock, the
    counters', guards both tables: the limits are checked and counted in one step for all workers."""

    def __init__(self, workers: int, folder: Path, address_slots: int = 512):
        self.workers = workers
        self.counts = multiprocessing.Array("i", workers)  # in shared memory, inherited by fork
        self.keys = multiprocessing.RawArray("c", address_slots * KEY)
        self.per_address = multiprocessing.RawArray("i", address_slots * workers)
        self.folder = folder

    def admit(self, index: int, open_here: int, limit: int, address: str = "?", per_address: int = 0) -> str | None:
        """Publish this worker's open count; count one more connection, from `address`, unless all workers
        together have `limit` connections ("over_capacity") or `per_address` (> 0) from that address
        ("address"). None when counted."""
        key = address_key(address)
        with self.counts.get_lock():
            self.counts[index] = open_here
            if sum(self.counts[:]) >= limit:
                return "over_capacity"
            slot = self._slot(key)
            if slot is None:
                slot = self._slot(FREE)
                if slot is None:  # cannot happen while address_slots >= limit; refuse rather than not count
                    return "over_capacity"
                self.keys[KEY * slot : KEY * (slot + 1)] = key
            if per_address and self._from(slot) >= per_address:
                return "address"  # (a slot claimed just now has 0 < per_address: never left claimed and empty)
            self.counts[index] = open_here + 1
            self.per_address[slot * self.workers + index] += 1
            return None

    def release(self, index: int, open_here: int, address: str) -> None:
        """Publish this worker's open count after one of its connections, from `address`, has closed."""
        key = address_key(address)
        with self.counts.get_lock():
            self.counts[index] = open_here
            slot = self._slot(key)
            if slot is not None and self.per_address[slot * self.workers + index] > 0:
                self.per_address[slot * self.workers + index] -= 1
                if self._from(slot) == 0:
                    self.keys[KEY * slot : KEY * (slot + 1)] = FREE

    def forget_worker(self, index: int) -> None:
        """A worker has died: its connections are gone, from every address."""
        with self.counts.get_lock():
            self.counts[index] = 0
            for slot in range(len(self.keys) // KEY):
                if self.per_address[slot * self.workers + index]:
                    self.per_address[slot * self.workers + index] = 0
                    if self._from(slot) == 0:
                        self.keys[KEY * slot : KEY * (slot + 1)] = FREE

    def from_address(self, address: str) -> int:
        """Connections from `address`, all workers together."""
        with self.counts.get_lock():
            slot = self._slot(address_key(address))
            return 0 if slot is None else self._from(slot)

    def _slot(self, key: bytes) -> int | None:
        """The slot named `key` (the lock held)."""
        raw = self.keys.raw
        at = raw.find(key)
        while at > 0 and at % KEY:  # a match across two slots' keys: look further
            at = raw.find(key, at + 1)
        return None if at < 0 else at // KEY

    def _from(self, slot: int) -> int:
        return sum(self.per_address[slot * self.workers : (slot + 1) * self.workers])

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


def address_key(address: str) -> bytes:
    digest = hashlib.blake2b(address.encode(), digest_size=KEY).digest()
    return digest if digest != FREE else b"\1" + digest[1:]


async def publish_metrics(shared: SharedState, index: int, metrics) -> None:
    """A worker's task: write its metrics snapshot every SNAPSHOT_INTERVAL seconds."""
    while True:
        shared.write_snapshot(index, metrics.snapshot())
        await asyncio.sleep(SNAPSHOT_INTERVAL)


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=4096)


def run_workers(workers: int, sock: socket.socket, serve_one, max_connections: int = 512) -> int:
    """Fork `workers` processes that each run `serve_one(index, shared)` (returns an exit code); supervise them.
    `max_connections`: all workers' limit together (the size of the shared table of client addresses)."""
    shared = SharedState(workers, Path(tempfile.mkdtemp(prefix="asr-serve-")), address_slots=max_connections)
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
            shared.forget_worker(index)
            if time.monotonic() - started < MIN_UPTIME:
                failed = True
                stop()
            else:
                spawn(index)
    finally:
        shutil.rmtree(shared.folder, ignore_errors=True)
    return 1 if failed else 0
