"""A run's log (OUT/log.jsonl, one JSON object per line), the window of steps each line sums up, and its curve
(OUT/curve.png)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from asr.util.atomic import atomic_open


def append_log(out: Path, record: dict) -> None:
    with open(out / "log.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def plot_curve(out: Path) -> None:
    """OUT/curve.png from OUT/log.jsonl: training loss and valid WER against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, valid = [], {}
    log = out / "log.jsonl"
    for line in log.read_text().splitlines() if log.exists() else []:
        r = json.loads(line)
        if "valid" in r:
            valid.setdefault(r["valid"], []).append((r["step"], r["wer"]))
        else:
            train.append((r["step"], r["loss"]))
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train, strict=True), color="tab:blue", label="train loss")
    ax.set_xlabel("step")
    ax.set_ylabel("CTC loss", color="tab:blue")
    if valid:
        ax2 = ax.twinx()
        for name, points in valid.items():
            ax2.plot(*zip(*points, strict=True), "o-", label=f"WER {Path(name).stem}")
        ax2.set_ylabel("valid WER")
        ax2.legend(loc="upper right")
    fig.tight_layout()
    with atomic_open(out / "curve.png", "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


class LogWindow:
    """The training steps since the last log line: their mean loss and audio seconds per second."""

    def __init__(self):
        self.start = time.monotonic()
        self.loss, self.steps, self.audio_seconds, self.aux = 0.0, 0, 0.0, None

    def add(self, loss: float, audio_seconds: float, aux: float | None = None) -> None:
        self.loss, self.steps = self.loss + loss, self.steps + 1
        self.audio_seconds += audio_seconds
        if aux is not None:
            self.aux = (self.aux or 0.0) + aux

    def restart(self) -> None:
        self.audio_seconds, self.start = 0.0, time.monotonic()

    def take(self, started: float) -> dict:
        """The window's figures for a log line (elapsed: seconds since `started`); the next window begins."""
        now = time.monotonic()
        record = {
            "loss": self.loss / self.steps,
            "audio_seconds_per_second": self.audio_seconds / (now - self.start),
            "elapsed": round(now - started, 1),
        }
        if self.aux is not None:  # the auxiliary loss alone (unweighted; "loss" holds it weighted)
            record["aux_loss"] = self.aux / self.steps
        self.loss, self.steps, self.audio_seconds, self.start, self.aux = 0.0, 0, 0.0, now, None
        return record
