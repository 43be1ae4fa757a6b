"""Counters, gauges and histograms rendered in the Prometheus text format (no client library needed).

Updated from the event loop and from the engine's worker thread, hence the lock.
"""

from __future__ import annotations

import bisect
import threading

PREFIX = "gru_asr"
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)  # streams per model step
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)  # seconds


class Histogram:
    def __init__(self, buckets):
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def snapshot(self) -> dict:
        return {"counts": list(self.counts), "sum": self.sum, "count": self.count}

    def add(self, snapshot: dict) -> None:
        self.counts = [a + b for a, b in zip(self.counts, snapshot["counts"], strict=True)]
        self.sum += snapshot["sum"]
        self.count += snapshot["count"]

    def lines(self, name: str) -> list[str]:
        out, total = [], 0
        for bound, n in zip((*self.buckets, "+Inf"), self.counts, strict=True):
            total += n
            out.append(f'{name}_bucket{{le="{bound}"}} {total}')
        return [*out, f"{name}_sum {self.sum:.6f}", f"{name}_count {self.count}"]


class Metrics:
    def __init__(self):
        self.lock = threading.Lock()
        self.connections = 0
        self.connections_total = 0
        self.audio_seconds = 0.0
        self.processing_seconds = 0.0
        self.errors: dict[str, int] = {}
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.reply_latency = Histogram(LATENCY_BUCKETS)

    def opened(self) -> None:
        with self.lock:
            self.connections += 1
            self.connections_total += 1

    def closed(self) -> None:
        with self.lock:
            self.connections -= 1

    def error(self, kind: str) -> None:
        with self.lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1

    def audio(self, seconds: float) -> None:
        with self.lock:
            self.audio_seconds += seconds

    def processed(self, seconds: float, batch_sizes: list[int]) -> None:
        with self.lock:
            self.processing_seconds += seconds
            for n in batch_sizes:
                self.batch_size.observe(n)

    def replied(self, seconds: float) -> None:
        with self.lock:
            self.reply_latency.observe(seconds)

    COUNTERS = ("connections", "connections_total", "audio_seconds", "processing_seconds")

    def snapshot(self) -> dict:
        """Everything as plain data (JSON), for adding up the metrics of several server processes."""
        with self.lock:
            snap = {k: getattr(self, k) for k in self.COUNTERS}
            snap["errors"] = dict(self.errors)
            snap["batch_size"] = self.batch_size.snapshot()
            snap["reply_latency"] = self.reply_latency.snapshot()
        return snap

    def add(self, snapshot: dict) -> None:
        with self.lock:
            for k in self.COUNTERS:
                setattr(self, k, getattr(self, k) + snapshot[k])
            for kind, n in snapshot["errors"].items():
                self.errors[kind] = self.errors.get(kind, 0) + n
            self.batch_size.add(snapshot["batch_size"])
            self.reply_latency.add(snapshot["reply_latency"])

    def render(self, peers: list[dict] = ()) -> str:
        """Prometheus text; `peers`: snapshots of other server processes to add in."""
        if peers:
            total = Metrics()
            for snap in (self.snapshot(), *peers):
                total.add(snap)
            return total.render()
        p = PREFIX
        with self.lock:
            lines = [
                f"# HELP {p}_connections Open websocket connections.",
                f"# TYPE {p}_connections gauge",
                f"{p}_connections {self.connections}",
                f"# HELP {p}_connections_total Websocket connections accepted since start.",
                f"# TYPE {p}_connections_total counter",
                f"{p}_connections_total {self.connections_total}",
                f"# HELP {p}_audio_seconds_total Seconds of audio received.",
                f"# TYPE {p}_audio_seconds_total counter",
                f"{p}_audio_seconds_total {self.audio_seconds:.6f}",
                f"# HELP {p}_processing_seconds_total Seconds the engine worker spent (real-time factor = this / audio).",
                f"# TYPE {p}_processing_seconds_total counter",
                f"{p}_processing_seconds_total {self.processing_seconds:.6f}",
                f"# HELP {p}_batch_size Streams advanced by one model step.",
                f"# TYPE {p}_batch_size histogram",
                *self.batch_size.lines(f"{p}_batch_size"),
                f"# HELP {p}_reply_latency_seconds From receiving a client message to sending its reply.",
                f"# TYPE {p}_reply_latency_seconds histogram",
                *self.reply_latency.lines(f"{p}_reply_latency_seconds"),
                f"# HELP {p}_errors_total Client errors and failures, by kind.",
                f"# TYPE {p}_errors_total counter",
                *(f'{p}_errors_total{{kind="{k}"}} {n}' for k, n in sorted(self.errors.items())),
            ]
        return "\n".join(lines) + "\n"
