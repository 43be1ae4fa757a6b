"""Shared helpers of the benchmark scripts: model and clip loading, machine facts, tables, JSON results.

Scripts run as `python benchmarks/<name>.py`; importing this module puts the repository on sys.path.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import asr  # noqa: E402
from asr.audio import SAMPLE_RATE  # noqa: E402
from asr.audio.files import load_audio  # noqa: E402

REAL_EN = REPO.parent / "shared" / "data" / "real_en"
RESULTS = REPO / "benchmarks" / "results"
SYNTH_SENTENCES = (
    "the quick brown fox jumps over the lazy dog",
    "she sells sea shells by the sea shore",
    "please call me back in ten minutes",
    "the weather is nice today so we will walk to the station",
)


def add_model_argument(parser) -> None:
    parser.add_argument("--model", default=None, help="model bundle (default: the embedded model)")
    parser.add_argument("--out", default=None, help="JSON results file (default: benchmarks/results/<name>.json)")


def load_model(path=None):
    """The model at `path` (default: the embedded one); random weights, with a warning, when there is none."""
    try:
        return asr.load_model(path, device="cpu"), str(path or asr.default_model_path())
    except asr.ModelNotFoundError:
        from asr.model.network import GRUCTC, ModelConfig

        print(
            "note: no trained model installed; using RANDOM weights (speed figures hold, WER does not)", file=sys.stderr
        )
        torch.manual_seed(0)
        model = GRUCTC(ModelConfig()).eval()
        return model, "random"


def save_random_bundle(model, directory) -> Path:
    from asr.model.checkpoint import save_checkpoint

    path = Path(directory) / "model.pt"
    save_checkpoint(path, model, model.tokens)
    return path


def load_clips(max_clips: int = 0) -> tuple[list[dict], str]:
    """[{name, samples (16 kHz float32), reference, duration}] of the real English clips; synthesized ones if absent."""
    table = REAL_EN / "transcripts.tsv"
    clips = []
    if table.exists():
        with open(table, encoding="utf-8") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                samples = load_audio(REAL_EN / row["file"])
                clips.append({"name": row["file"], "samples": samples, "reference": row["reference"]})
        source = str(table)
    else:
        clips, source = synthesize_clips(), "espeak-ng (../shared/data/real_en not found)"
    clips = clips[:max_clips] if max_clips else clips
    for c in clips:
        c["duration"] = len(c["samples"]) / SAMPLE_RATE
    return clips, source


def synthesize_clips() -> list[dict]:
    if shutil.which("espeak-ng") is None:
        raise SystemExit("no real clips (../shared/data/real_en) and no espeak-ng to synthesize some")
    clips = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(SYNTH_SENTENCES):
            wav = Path(tmp) / f"{i}.wav"
            subprocess.run(["espeak-ng", "-w", str(wav), text], check=True)
            clips.append({"name": f"synth_{i}", "samples": load_audio(wav), "reference": text})
    return clips


def machine() -> dict:
    """Facts that make a figure comparable: CPU, cores, versions, load at the start."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__,
        "python": platform.python_version(),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def print_table(rows: list[dict], columns: list[str]) -> None:
    """Rows of dicts as an aligned text table (floats with 4 significant digits)."""

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def portable(value):
    """`value` (JSON data) with this machine's paths written as another machine can read them: the repository's
    files relative to it, ../shared for the shared data beside it, ~ for the home folder."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [portable(v) for v in value]
    if isinstance(value, str):
        value = value.replace(f"{REPO.parent / 'shared'}", "../shared").replace(f"{REPO}/", "")
        return value.replace(f"{Path.home()}/", "~/")
    return value


def write_json(out, name: str, data: dict) -> Path:
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(portable(data), indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {path}")
    return path


def peak_gemm_flops(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """Best FLOP/s of an n x n fp32 torch.mm at `threads` threads (2 n^3 FLOPs per product)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    torch.set_num_threads(old)
    return 2 * n**3 / best


def to_int16(samples: np.ndarray) -> np.ndarray:
    return (np.clip(samples, -1, 1) * 32767).astype(np.int16)


def add_training_arguments(p, steps: int, minutes: float, warmup_steps: int, parallel: int) -> None:
    """The options `train_and_score` reads: data, budget, schedule, seed, threads, extra asr.train options."""
    p.add_argument("--threads", type=int, default=1, help="torch threads for timing and each training (default 1)")
    p.add_argument("--train", nargs="+", help="training manifest(s), MANIFEST[:WEIGHT]")
    p.add_argument("--valid", nargs="+", help="validation manifest(s)")
    p.add_argument("--no-train", action="store_true", help="skip the trainings")
    p.add_argument("--steps", type=int, default=steps, help=f"optimizer steps per training (default {steps})")
    p.add_argument("--minutes", type=float, default=minutes, help=f"wall-clock cap per training (default {minutes:g})")
    p.add_argument("--warmup-steps", type=int, default=warmup_steps)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-args", default="", help='more options for asr.train, e.g. "--max-batch-seconds 120"')
    p.add_argument("--work-dir", default=None, help="where trainings write (default: a temporary folder)")
    p.add_argument("--parallel", type=int, default=parallel, help="trainings run at once (after the step timings)")


def train_and_score(name: str, model_options: list[str], args, out: Path) -> dict:
    """Run `python -m asr.train` with the benchmark's shared options (args.train, valid, steps, minutes,
    warmup_steps, seed, threads, train_args) and `model_options`; the final validation's CER/WER per
    manifest, the steps reached and the minutes it took."""
    cmd = [
        sys.executable, "-m", "asr.train",
        "--train", *args.train, "--valid", *args.valid, "--out", str(out), *model_options,
        "--max-steps", str(args.steps), "--max-minutes", str(args.minutes),
        "--warmup-steps", str(args.warmup_steps), "--valid-every", "0", "--seed", str(args.seed),
        "--threads", str(args.threads), "--device", "cpu",
        *shlex.split(args.train_args),
    ]  # fmt: skip
    print("  $ " + shlex.join(cmd), flush=True)
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    minutes = (time.monotonic() - start) / 60
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        print(f"  training {name} failed: {' | '.join(tail)}", file=sys.stderr)
        return {"train_error": " | ".join(tail), "train_minutes": minutes}
    return {**read_train_log(out / "log.jsonl"), "train_minutes": minutes}


def read_train_log(path: Path) -> dict:
    """Steps reached, mean audio seconds trained per wall second (audio_s_per_s), and the last validation's CER
    and WER on each --valid manifest (keys cer_STEM, wer_STEM)."""
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    steps = max((r.get("step", 0) for r in records), default=0)
    rates = [r["audio_seconds_per_second"] for r in records if r.get("audio_seconds_per_second")]
    result = {"steps": steps, "audio_s_per_s": sum(rates) / len(rates) if rates else None}
    for r in records:
        if "cer" in r:  # later validations overwrite earlier ones
            stem = Path(r["valid"]).stem
            result.update({f"cer_{stem}": r["cer"], f"wer_{stem}": r["wer"]})
    return result


def step_time(model, batch: int, chunk_frames: int, steps: int = 30) -> float:
    """Fastest seconds of one `model.step` on a `chunk_frames` chunk at `batch`, state carried (after 5 warm-up
    steps); the least disturbed run, as other processes only add time. Seeds torch for the random input."""
    torch.manual_seed(0)
    model = model.eval()
    feats = torch.randn(batch, chunk_frames, model.config.n_mels)
    times = []
    with torch.inference_mode():
        state = model.init_state(batch)
        for i in range(steps + 5):
            t = time.perf_counter()
            _, state = model.step(feats, state)
            if i >= 5:
                times.append(time.perf_counter() - t)
    return min(times)
