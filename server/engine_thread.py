"""The engine thread (EngineWorker): ONE thread owns the BatchEngine; the event loop talks to it through a queue.

A job is two functions of the engine: `before` (add a stream, push audio) and
`after` (compute the reply). The worker takes every queued job, applies each
`before`, steps the engine until no stream has a full chunk (so the streams of
all connections share each forward pass), applies each `after`, and resolves
the jobs' futures on their event loop with `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import threading
import time
from dataclasses import dataclass

from asr.stream import BatchEngine
from server.metrics import Metrics

log = logging.getLogger("asr.server")
MAX_ROUNDS = 4  # engine steps per batch: a real-time client's message needs 1-2; a 33 s one waits its turn


@dataclass
class Job:
    before: object  # engine -> value, applied before stepping
    after: object  # engine -> reply, computed after stepping
    future: asyncio.Future | None
    loop: asyncio.AbstractEventLoop | None
    flush: object = None  # a stream to end with a final result after stepping (flushed with the others)
    stream: object = None  # the stream whose audio the reply waits for (its backlog decoded first)
    value: object = None
    error: BaseException | None = None

    def run(self, fn, engine) -> None:
        if fn is None or self.error is not None:
            return
        try:
            self.value = fn(engine)
        except Exception as exc:  # one stream's failure is its own
            self.error = exc


class EngineWorker:
    """Owns the BatchEngine; one thread, fed through a queue."""

    def __init__(self, engine: BatchEngine, metrics: Metrics):
        self.engine = engine
        self.metrics = metrics
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.retired: collections.deque = collections.deque()  # removed streams, freed when idle
        self.waiting: list[Job] = []  # jobs whose stream still has audio queued: replied in a later batch
        self.thread = threading.Thread(target=self._loop, name="asr-engine", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.jobs.put(None)
        self.thread.join()

    def call(self, before=None, after=None, flush=None, stream=None) -> asyncio.Future:
        """Run `before(engine)` and `after(engine)` in the worker; the future gets after's value (else before's).

        `stream`: the reply waits until that stream's queued audio is decoded, which for a big message takes
        several batches (each stream gets at most MAX_ROUNDS chunks per batch, so one client's backlog does not
        hold the others' replies up). `flush`: a stream whose utterance ends before `after` (`BatchEngine.flush`),
        once its audio is decoded; the streams of all jobs ready together are flushed together.
        """
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.jobs.put(Job(before, after, future, loop, flush, stream if stream is not None else flush))
        return future

    def post(self, before) -> None:
        """Fire and forget."""
        self.jobs.put(Job(before, None, None, None))

    def retire(self, stream) -> None:
        """Remove a finished stream. Freeing its beam decoder's hypotheses takes about a millisecond, which
        the other streams need not wait for: the worker frees retired streams when it has nothing else to do."""

        def remove(engine):
            engine.remove_stream(stream)
            self.retired.append(stream)

        self.jobs.put(Job(remove, None, None, None))

    def _loop(self) -> None:
        while True:
            try:
                jobs = [self.jobs.get(block=not self.retired and not self.waiting)]
            except queue.Empty:
                if self.waiting:  # backlogs to decode: a batch without new jobs
                    self._process([])
                else:  # idle: free one retired stream, then look for work again
                    self.retired.popleft()
                continue
            while jobs[-1] is not None:
                try:
                    jobs.append(self.jobs.get_nowait())
                except queue.Empty:
                    break
            stop = jobs[-1] is None
            jobs = [j for j in jobs if j is not None]
            if jobs or self.waiting:
                self._process(jobs)
            if stop:
                while self.waiting:  # every stream gets its reply before the worker ends
                    self._process([])
                return

    def _process(self, new: list[Job]) -> None:
        """One batch: the new jobs' `before`s, at most MAX_ROUNDS engine steps, then the replies of the jobs
        whose stream has no full chunk left (flushed together where asked); the others wait for the next batch."""
        start = time.perf_counter()
        for job in new:
            job.run(job.before, self.engine)
        jobs, sizes = self.waiting + new, []
        try:
            for _ in range(MAX_ROUNDS):
                n = self.engine.step()
                if not n:
                    break
                sizes.append(n)
        except Exception as exc:
            log.exception("event=engine_failure")
            for job in jobs:
                job.error = job.error or exc
        chunk = self.engine.chunk_frames
        done = [
            j
            for j in jobs  # caught up, or gone (its connection dropped: nothing to wait for)
            if j.error is not None or j.stream is None or j.stream.ready < chunk or j.stream.slot < 0
        ]
        finished = {id(j) for j in done}
        self.waiting = [j for j in jobs if id(j) not in finished]
        jobs = done
        flushing = [j for j in jobs if j.flush is not None and j.error is None]
        if flushing:
            try:
                self.engine.flush(*(j.flush for j in flushing))
            except Exception:  # find whose stream it was: one at a time, each failure its own
                log.exception("event=flush_failure")
                for job in flushing:
                    job.run(lambda engine, s=job.flush: engine.flush(s), self.engine)
        for job in jobs:
            job.run(job.after, self.engine)
        self.metrics.processed(time.perf_counter() - start, sizes)
        by_loop: dict = {}
        for job in jobs:
            if job.future is not None:
                by_loop.setdefault(job.loop, []).append(job)
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, settled)
            except RuntimeError:  # the loop has closed
                pass


def _settle(jobs: list[Job]) -> None:
    for job in jobs:
        if job.future.done():  # cancelled: the connection went away
            continue
        if job.error is not None:
            job.future.set_exception(job.error)
        else:
            job.future.set_result(job.value)
