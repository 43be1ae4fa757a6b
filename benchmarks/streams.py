"""How many concurrent real-time streams one BatchEngine sustains here, the GRU's achieved FLOP/s, and where time goes.

    python benchmarks/streams.py [--model PATH] [--threads 2] [--int8] [--source speech|silence|noise] [--out FILE]

A round pushes ROUND_SECONDS of 16 kHz int16 PCM into each of N streams
(`Stream.push`: PCM conversion + log-mel frontend) and then calls
`engine.run()` (batched model steps + per-stream greedy decoding and endpoint
rules). N streams are real time while the mean round takes less than
ROUND_SECONDS. N doubles until a round is too slow, then a bisection finds the
largest N that keeps up. --source: what the streams hear: the clips end to end
(speech, the default), digital silence, or white noise at -50 dBFS (quiet silence: the
model state restarts at the first sound after it, `EndpointConfig.idle_restart`).

GRU FLOPs are counted analytically: per output frame (40 ms) and layer l, a GRU
computes 3 gates, each an (H x I_l) and an (H x H) matrix-vector product:
3 * H * (I_l + H) multiply-adds = 6 * H * (I_l + H) FLOPs (I_0 = conv channels,
I_l = H above; biases and the element-wise gate arithmetic, about 10 H per
frame, are left out). This is set against the best torch.mm FLOP/s of large
square fp32 matrices measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import common
import numpy as np
import torch

from asr.model.export import quantize_int8
from asr.stream import BatchEngine, Stream

ROUND_SECONDS = 0.16  # audio pushed into every stream per round
ROUND_SAMPLES = int(ROUND_SECONDS * common.SAMPLE_RATE)
WARMUP_ROUNDS = 3
MAX_STREAMS = 8192


def gru_flops_per_frame(config) -> int:
    """FLOPs of the stacked GRU for one output frame of one stream (see the module docstring)."""
    h = config.hidden_size
    gates = 3 if config.cell == "gru" else 4
    inputs = [config.conv_channels] + [h] * (config.num_layers - 1)
    return sum(2 * gates * h * (i + h) for i in inputs)


def model_flops_per_frame(config) -> int:
    """FLOPs of the whole model per output frame: 2 conv1 outputs + 1 conv2 output + GRU + output layer."""
    c, f, k = config.conv_channels, config.n_mels, 3
    return (
        2 * (2 * c * f * k) + 2 * c * c * k + gru_flops_per_frame(config) + 2 * config.hidden_size * config.vocab_size
    )


def pcm_source(clips: list[dict]) -> bytes:
    """All clips end to end as int16 bytes: every stream reads it from its own offset, looping."""
    return np.concatenate([common.to_int16(c["samples"]) for c in clips]).tobytes()


class Feeder:
    """Cheap pushes: stream i reads `ROUND_SAMPLES` samples per round from its own offset of a shared buffer."""

    def __init__(self, pcm: bytes, n: int):
        self.view = memoryview(pcm)
        total = len(pcm) // 2
        self.limit = total - ROUND_SAMPLES
        self.offsets = [(i * 7919 * ROUND_SAMPLES // 13) % self.limit for i in range(n)]  # spread, distinct

    def chunk(self, i: int, round_index: int) -> memoryview:
        start = (self.offsets[i] + round_index * ROUND_SAMPLES) % self.limit
        return self.view[2 * start : 2 * (start + ROUND_SAMPLES)]


def run_rounds(model, n: int, pcm: bytes, rounds: int, profile: bool = False) -> dict:
    """Time `rounds` rounds of N streams; with `profile`, also split the time into its parts."""
    engine = BatchEngine(model, capacity=n)
    streams = [engine.add_stream() for _ in range(n)]
    feeder = Feeder(pcm, n)
    timers = Timers(engine) if profile else None
    push_times, run_times = [], []
    try:
        for r in range(WARMUP_ROUNDS + rounds):
            t0 = time.perf_counter()
            for i, stream in enumerate(streams):
                stream.push(feeder.chunk(i, r))
            t1 = time.perf_counter()
            engine.run()
            t2 = time.perf_counter()
            if r == WARMUP_ROUNDS - 1 and timers:
                timers.reset()
            if r >= WARMUP_ROUNDS:
                push_times.append(t1 - t0)
                run_times.append(t2 - t1)
    finally:
        if timers:
            timers.remove()
    rounds_total = [p + q for p, q in zip(push_times, run_times)]
    result = {
        "streams": n,
        "round_mean": statistics.fmean(rounds_total),
        "round_p90": sorted(rounds_total)[int(0.9 * (len(rounds_total) - 1))],
        "push_mean": statistics.fmean(push_times),
        "run_mean": statistics.fmean(run_times),
    }
    result["realtime"] = result["round_mean"] < ROUND_SECONDS
    result["load"] = result["round_mean"] / ROUND_SECONDS
    if timers:
        result["profile"] = timers.summary(rounds, push_times, run_times)
    return result


class Timers:
    """Wall time of model.step, of the GRU inside it, and of Stream.consume (decoding), accumulated."""

    def __init__(self, engine: BatchEngine):
        self.model = engine.model
        self.reset()
        original_step = self.model.step

        def timed_step(feats, state):
            t = time.perf_counter()
            out = original_step(feats, state)
            self.step += time.perf_counter() - t
            self.frames += out[0].shape[0] * out[0].shape[1]
            return out

        self.model.step = timed_step
        self.original_consume = Stream.consume

        def timed_consume(
            stream, log_probs, best=None, until_restart=False, quiet=None, _consume=self.original_consume
        ):
            t = time.perf_counter()
            used = _consume(stream, log_probs, best, until_restart, quiet)
            self.decode += time.perf_counter() - t
            return used

        Stream.consume = timed_consume
        rnn = getattr(self.model, "rnn", None)
        self.hooks = []
        if rnn is not None:
            self.hooks.append(rnn.register_forward_pre_hook(lambda *_: setattr(self, "_t", time.perf_counter())))
            self.hooks.append(rnn.register_forward_hook(lambda *_: self._add_gru()))

    def _add_gru(self):
        self.gru += time.perf_counter() - self._t

    def reset(self):
        self.step = self.decode = self.gru = 0.0
        self.frames = 0

    def remove(self):
        del self.model.step  # back to the class's method
        Stream.consume = self.original_consume
        for h in self.hooks:
            h.remove()

    def summary(self, rounds: int, push_times: list[float], run_times: list[float]) -> dict:
        push, run = sum(push_times), sum(run_times)
        total = push + run
        other = run - self.step - self.decode
        parts = {
            "frontend (push: PCM + log-mel)": push,
            "model.step (GRU)": self.gru,
            "model.step (conv, head, rest)": self.step - self.gru,
            "decode (greedy + endpoints)": self.decode,
            "engine overhead (take/stack/state scatter)": other,
        }
        return {
            "per_round_ms": {k: 1000 * v / rounds for k, v in parts.items()},
            "share": {k: v / total for k, v in parts.items()},
            "gru_seconds": self.gru,
            "output_frames": self.frames,
        }


def find_max_streams(model, pcm: bytes, rounds: int, limit: int) -> tuple[int, list[dict]]:
    rows, n, best, worst = [], 1, 0, None
    while n <= limit:
        row = run_rounds(model, n, pcm, rounds)
        rows.append(row)
        print(
            f"  N={n:5d}: round {1000 * row['round_mean']:7.1f} ms (p90 {1000 * row['round_p90']:.1f}), load {row['load']:.2f}",
            flush=True,
        )
        if not row["realtime"]:
            worst = n
            break
        best, n = n, n * 2
    while worst is not None and worst - best > max(1, best // 20):  # bisect to within 5%
        n = (best + worst) // 2
        row = run_rounds(model, n, pcm, rounds)
        rows.append(row)
        print(
            f"  N={n:5d}: round {1000 * row['round_mean']:7.1f} ms (p90 {1000 * row['round_p90']:.1f}), load {row['load']:.2f}",
            flush=True,
        )
        best, worst = (n, worst) if row["realtime"] else (best, n)
    return best, sorted(rows, key=lambda r: r["streams"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_model_argument(p)
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--int8", action="store_true", help="int8 dynamic quantisation (GRU FLOP/s then compares int8 work)")
    p.add_argument("--rounds", type=int, default=12, help="timed rounds per N (default 12, after 3 warm-up rounds)")
    p.add_argument("--max-streams", type=int, default=MAX_STREAMS)
    p.add_argument("--source", choices=("speech", "silence", "noise"), default="speech", help="what streams hear")
    p.add_argument(
        "--profile-streams", type=int, nargs="*", default=None, help="N for the time profile (default: 1 and the max)"
    )
    args = p.parse_args(argv)

    model, model_name = common.load_model(args.model)
    if args.int8:
        model = quantize_int8(model)
    clips, _ = common.load_clips()
    pcm = pcm_source(clips)
    if args.source != "speech":  # as long as the clips, so the streams' offsets work alike
        n = len(pcm) // 2
        quiet = np.zeros(n) if args.source == "silence" else np.random.default_rng(0).standard_normal(n) * 10**-2.5
        pcm = common.to_int16(quiet.astype(np.float32)).tobytes()
    torch.set_num_threads(args.threads)
    peak = {t: common.peak_gemm_flops(t) for t in sorted({1, 2, args.threads})}
    torch.set_num_threads(args.threads)
    print("peak torch.mm fp32 FLOP/s: " + ", ".join(f"{t} thread(s) {v / 1e9:.1f} G" for t, v in peak.items()))
    print(f"sweep: {args.threads} thread(s), {'int8' if args.int8 else 'fp32'}, {ROUND_SECONDS} s per round")
    with torch.inference_mode():
        best, rows = find_max_streams(model, pcm, args.rounds, args.max_streams)
        profile_ns = args.profile_streams if args.profile_streams is not None else sorted({1, max(best, 1)})
        profiles = [run_rounds(model, n, pcm, args.rounds, profile=True) for n in profile_ns]

    print()
    common.print_table(
        [{**r, "round_ms": 1000 * r["round_mean"], "p90_ms": 1000 * r["round_p90"]} for r in rows],
        ["streams", "round_ms", "p90_ms", "load", "realtime"],
    )
    print(
        f"\nmax real-time streams: {best} ({args.threads} thread(s), {'int8' if args.int8 else 'fp32'}, {args.source}, "
        f"model {model_name})"
    )
    frame_flops = gru_flops_per_frame(model.config)
    print(
        f"GRU FLOPs per output frame (40 ms) per stream: {frame_flops / 1e6:.2f} M (whole model {model_flops_per_frame(model.config) / 1e6:.2f} M)"
    )
    for prof in profiles:
        report_profile(prof, frame_flops, peak[args.threads])
    common.write_json(
        args.out,
        "streams",
        {
            "machine": common.machine(),
            "model": model_name,
            "threads": args.threads,
            "int8": args.int8,
            "source": args.source,
            "round_seconds": ROUND_SECONDS,
            "max_realtime_streams": best,
            "sweep": rows,
            "peak_mm_flops": {str(k): v for k, v in peak.items()},
            "gru_flops_per_frame": frame_flops,
            "profiles": profiles,
        },
    )
    return 0


def report_profile(row: dict, frame_flops: int, peak: float) -> None:
    prof = row["profile"]
    gru_rate = prof["output_frames"] * frame_flops / prof["gru_seconds"] if prof["gru_seconds"] else 0.0
    row["gru_flops_per_second"] = gru_rate
    row["gru_fraction_of_peak"] = gru_rate / peak
    print(
        f"\nN={row['streams']}: round {1000 * row['round_mean']:.1f} ms; GRU at {gru_rate / 1e9:.2f} GFLOP/s = {gru_rate / peak:.1%} of peak torch.mm"
    )
    for part, ms in prof["per_round_ms"].items():
        print(f"  {part:45s} {ms:8.2f} ms/round  {prof['share'][part]:6.1%}")


if __name__ == "__main__":
    raise SystemExit(main())
