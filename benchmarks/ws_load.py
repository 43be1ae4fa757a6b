"""Load test for `asr serve`: N concurrent real-time clients; latency, errors, server memory and CPU.

    python benchmarks/ws_load.py --clients 50,100,200,300                 # starts `asr serve` (default model)
    python benchmarks/ws_load.py --random-model --clients 50,100          # no trained model yet: same size, random
    python benchmarks/ws_load.py --url ws://host:2700 --pid 1234          # a server already running
    python benchmarks/ws_load.py --via nginx --clients 50,100              # also through nginx: its added latency
    python benchmarks/ws_load.py --clients 20 --hostile huge,phrases       # beside 2 hostile clients of each kind

Each client streams real speech (../shared/data/real_en, else synthesized) as
16 kHz int16 PCM in `--chunk` second messages at real-time pace, starting at a
random moment within the first chunk, and times each message from sending it to
receiving its reply (partials, and the replies that carry an endpoint's final
result, apart), then its eof to the final result. The started server decodes
finals as `--decoding` says (beam search with the default LM, or greedy). The clients run in this process (on uvloop when installed),
the server in another. Latency percentiles leave out each stream's first
--warmup seconds, while the other clients are still connecting (`p95 all`
counts them). Prints a table, writes JSON (--out), and names the largest N whose
p95 latency is at most --target-ms. With --via nginx, each level runs twice, straight
to the server and through nginx on loopback (deploy/nginx/gru-asr.conf, as
deploy/nginx/loopback.py renders it for one machine), and the proxy's added
p50/p95 latency is printed beside the direct figures. With --hostile, each level runs again with
--hostile-clients clients of each kind beside the real-time ones: "huge" sends its audio in
1 MiB messages (33 s each) back to back, "phrases" asks for the largest phrase_list allowed
(1,000 phrases of 200 characters, none an English word) and 20 alternatives and streams as fast
as it gets replies; the real-time clients' figures then show what the hostile ones cost them,
and each hostile client's time to its final result is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from common import portable
from websockets.asyncio.client import connect

from server.running import loop_factory

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "real_en" / "audio"
SAMPLE_RATE = 16000  # Hz sent to the server
TARGET_MS = 100.0  # p95 latency a load level must stay under


# -- audio ------------------------------------------------------------------------------


def load_speech(data_dir: Path, seconds: float) -> np.ndarray:
    """At least `seconds` of 16 kHz int16 speech: real clips joined, or espeak-ng sentences."""
    from asr.audio.files import load_audio

    clips = sorted(p for p in data_dir.glob("*") if p.suffix in (".wav", ".flac")) if data_dir.is_dir() else []
    if not clips:
        clips = synthesize(Path(tempfile.mkdtemp(prefix="ws_load_")))
    audio = np.concatenate([load_audio(p) for p in clips])
    audio = np.tile(audio, int(np.ceil(seconds * SAMPLE_RATE / len(audio))) + 1)
    return (np.clip(audio, -1, 1) * 32767).astype("<i2")


def synthesize(folder: Path) -> list[Path]:
    if shutil.which("espeak-ng") is None:
        sys.exit(f"ws_load: error: no clips in {DEFAULT_DATA} and espeak-ng is not installed (use --data)")
    texts = [
        "the quick brown fox jumps over the lazy dog",
        "she sells sea shells by the sea shore",
        "one two three four",
    ]
    paths = []
    for i, text in enumerate(texts):
        path = folder / f"s{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(path), text], check=True)
        paths.append(path)
    return paths


# -- the server -------------------------------------------------------------------------------


def start_server(args) -> tuple[subprocess.Popen, str]:
    model = args.model
    if args.random_model:
        import torch

        from asr.model.checkpoint import save_checkpoint
        from asr.model.network import GRUCTC, ModelConfig
        from asr.model.tokenizer import DEFAULT_TOKENS

        torch.manual_seed(0)
        model = str(Path(tempfile.mkdtemp(prefix="ws_load_")) / "random.pt")
        save_checkpoint(model, GRUCTC(ModelConfig()), DEFAULT_TOKENS)  # default size, random weights
    cmd = [sys.executable, "-m", "asr.apps.cli", "serve", "--port", "0", "--device", args.device]
    cmd += ["--max-connections", str(max(args.clients) + 10), "--log-level", "WARNING"]
    cmd += ["--max-connections-per-address", "0"]  # every client is on this machine: one address
    cmd += ["--model", model] if model else []
    cmd += ["--threads", str(args.server_threads)] if args.server_threads else []
    cmd += ["--workers", str(args.server_workers)]
    cmd += ["--decoding", args.decoding, "--beam-size", str(args.beam_size)]
    log = tempfile.NamedTemporaryFile("w+", prefix="ws_load_server_", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    # WARNING level hides the listening line; find the port from /proc instead.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"ws_load: error: the server exited:\n{Path(log.name).read_text()}")
        port = listening_port(proc.pid)
        if port:
            return proc, f"ws://127.0.0.1:{port}"
        time.sleep(0.2)
    proc.kill()
    sys.exit("ws_load: error: the server did not start in 120 s")


def listening_port(pid: int) -> int | None:
    """The TCP port a process listens on (Linux /proc), or None."""
    try:
        inodes = {os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] for fd in os.listdir(f"/proc/{pid}/fd")}
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        f = line.split()
        if f[3] == "0A" and f[9] in inodes:  # 0A = LISTEN
            return int(f[1].split(":")[1], 16)
    return None


def proc_stats(pid: int | None) -> dict:
    """Server RSS (MB), peak RSS (MB) and CPU seconds so far (Linux /proc), its worker processes included.

    With --workers, RSS is the sum over the processes (pages they share, like the model, counted in each).
    """
    if not pid:
        return {}
    total = {"rss_mb": 0.0, "peak_rss_mb": 0.0, "cpu_s": 0.0}
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for p in [pid, *map(int, children.read_text().split() if children.exists() else [])]:
        try:
            status = Path(f"/proc/{p}/status").read_text()
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        kb = {k: int(v) for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.M)}
        total["rss_mb"] += kb.get("VmRSS", 0) / 1024
        total["peak_rss_mb"] += kb.get("VmHWM", 0) / 1024
        total["cpu_s"] += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def server_metrics(url: str, token: str | None = None) -> dict:
    request = urllib.request.Request(url.replace("ws", "http", 1) + "/metrics")
    if token:  # a server with --token wants it for /metrics too
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return {}
    return {ln.split()[0]: float(ln.split()[1]) for ln in text.splitlines() if ln and not ln.startswith("#")}


# -- the clients ------------------------------------------------------------------------------------


async def client(url, pcm: np.ndarray, offset: int, seconds: float, chunk: float, delay: float, headers) -> dict:
    step = int(SAMPLE_RATE * chunk)
    latencies, errors, eof_latency = [], [], None
    await asyncio.sleep(delay)
    try:
        async with connect(url, additional_headers=headers, open_timeout=30, max_size=None) as ws:
            await ws.send(json.dumps({"config": {"sample_rate": SAMPLE_RATE}}))
            start = time.monotonic()
            for i in range(int(seconds / chunk)):
                await asyncio.sleep(max(0.0, start + i * chunk - time.monotonic()))
                data = pcm[offset + i * step : offset + (i + 1) * step].tobytes()
                sent = time.perf_counter()
                await ws.send(data)
                reply = json.loads(await ws.recv())
                # (audio time of the message, latency, whether the reply is a final result: an endpoint)
                latencies.append((i * chunk, time.perf_counter() - sent, "partial" not in reply))
                if "error" in reply:
                    errors.append(reply["error"])
                    break
            sent = time.perf_counter()
            await ws.send('{"eof" : 1}')
            json.loads(await ws.recv())
            eof_latency = time.perf_counter() - sent
    except Exception as exc:  # a refused or dropped connection is a result, not a crash
        errors.append(f"{type(exc).__name__}: {exc}")
    return {"latencies": latencies, "errors": errors, "eof_latency": eof_latency}


def largest_phrase_list(rng) -> list[str]:
    """The largest phrase_list the server takes, of made-up words (each outside the LM: the costliest kind)."""
    from server.protocol import MAX_PHRASE_CHARS, MAX_PHRASES

    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = lambda: ("".join(rng.choice(letters, int(rng.integers(3, 12)))) for _ in range(40))  # noqa: E731
    return [" ".join(words())[:MAX_PHRASE_CHARS].strip() for _ in range(MAX_PHRASES)]


async def hostile_client(url, pcm: np.ndarray, kind: str, seconds: float, headers, rng) -> dict:
    """One hostile client (see the module doc), starting 1 s into the level: its time to its final result."""
    errors, started = [], None
    await asyncio.sleep(1.0)
    if kind == "huge":
        config, size = {"sample_rate": SAMPLE_RATE}, (1 << 20) // 2  # samples per 1 MiB message
    else:
        config, size = (
            {"sample_rate": SAMPLE_RATE, "phrase_list": largest_phrase_list(rng), "max_alternatives": 20},
            3200,
        )
    audio = pcm[: int(max(seconds, 100.0) if kind == "huge" else seconds) * SAMPLE_RATE]
    try:
        async with connect(url, additional_headers=headers, open_timeout=30, max_size=None) as ws:
            started = time.perf_counter()
            await ws.send(json.dumps({"config": config}))
            for i in range(0, len(audio), size):
                await ws.send(audio[i : i + size].tobytes())
                reply = json.loads(await ws.recv())
                if "error" in reply:
                    errors.append(reply["error"])
                    break
            await ws.send('{"eof" : 1}')
            json.loads(await ws.recv())
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    return {"kind": kind, "seconds": time.perf_counter() - started if started else None, "errors": errors}


async def run_level(args, url, pcm, n: int, rng, hostile=()) -> tuple[list, list]:
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else None
    span = len(pcm) - int(SAMPLE_RATE * (args.seconds + 1))
    tasks = [
        client(
            url, pcm, int(rng.integers(0, span)), args.seconds, args.chunk, float(rng.uniform(0, args.chunk)), headers
        )
        for _ in range(n)
    ]
    others = [hostile_client(url, pcm, kind, args.seconds, headers, rng) for kind in hostile]
    results = await asyncio.gather(*tasks, *others)
    return results[:n], results[n:]


def measure(args, url, pid, pcm, n, rng, hostile=()) -> dict:
    before, stats0, t0, cpu0 = server_metrics(url, args.token), proc_stats(pid), time.monotonic(), time.process_time()
    with asyncio.Runner(loop_factory=loop_factory()) as runner:  # uvloop when installed: clients cost less CPU
        results, hostile_results = runner.run(run_level(args, url, pcm, n, rng, hostile))
    wall, client_cpu = time.monotonic() - t0, time.process_time() - cpu0
    after, stats1 = server_metrics(url, args.token), proc_stats(pid)
    all_lat = np.array([x for r in results for _, x, _ in r["latencies"]]) * 1000
    lat = np.array([x for r in results for t, x, _ in r["latencies"] if t >= args.warmup]) * 1000
    partial = np.array([x for r in results for t, x, final in r["latencies"] if t >= args.warmup and not final]) * 1000
    final = np.array([x for r in results for t, x, final in r["latencies"] if t >= args.warmup and final]) * 1000
    eof = np.array([r["eof_latency"] for r in results if r["eof_latency"] is not None]) * 1000
    errors = [e for r in results for e in r["errors"]]

    def pct(values, q):
        return float(np.percentile(values, q)) if values.size else None

    def delta(key):
        return after.get(key, 0.0) - before.get(key, 0.0)

    audio = delta("gru_asr_audio_seconds_total")
    batches = delta("gru_asr_batch_size_count")
    row = {
        "clients": n,
        "replies": int(lat.size),
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
        "p95_ms": float(np.percentile(lat, 95)) if lat.size else None,
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
        "max_ms": float(lat.max()) if lat.size else None,
        "p95_all_ms": float(np.percentile(all_lat, 95)) if all_lat.size else None,
        "p95_partial_ms": pct(partial, 95),
        "p95_endpoint_ms": pct(final, 95),  # replies that carried a final result (an endpoint fired)
        "endpoint_finals": int(final.size),
        "p50_eof_ms": pct(eof, 50),  # from sending eof to its final result
        "p95_eof_ms": pct(eof, 95),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:3],
        "rtf": delta("gru_asr_processing_seconds_total") / audio if audio else None,
        "mean_batch": delta("gru_asr_batch_size_sum") / batches if batches else None,
        "server_cpu_percent": 100 * (stats1["cpu_s"] - stats0["cpu_s"]) / wall if stats1 else None,
        "client_cpu_percent": 100 * client_cpu / wall,
        "server_rss_mb": stats1.get("rss_mb"),
        "server_peak_rss_mb": stats1.get("peak_rss_mb"),
        "wall_s": wall,
    }
    if hostile_results:
        row["hostile"] = hostile_results
        row["errors"] += sum(len(h["errors"]) for h in hostile_results)
    return row


COLUMNS = [  # key, title, format
    ("clients", "clients", "{}"),
    ("p50_ms", "p50 ms", "{:.1f}"),
    ("p95_ms", "p95 ms", "{:.1f}"),
    ("p99_ms", "p99 ms", "{:.1f}"),
    ("max_ms", "max ms", "{:.1f}"),
    ("p95_all_ms", "p95 all", "{:.1f}"),
    ("p95_partial_ms", "p95 partial", "{:.1f}"),
    ("p95_endpoint_ms", "p95 endpoint", "{:.1f}"),
    ("p95_eof_ms", "p95 eof", "{:.1f}"),
    ("errors", "errors", "{}"),
    ("rtf", "RTF", "{:.3f}"),
    ("mean_batch", "mean batch", "{:.1f}"),
    ("server_cpu_percent", "CPU %", "{:.0f}"),
    ("client_cpu_percent", "client CPU %", "{:.0f}"),
    ("server_rss_mb", "RSS MB", "{:.0f}"),
]
WIDTH = 13  # characters per column


def format_header() -> str:
    return "".join(title.rjust(WIDTH) for _, title, _ in COLUMNS)


def format_row(row: dict) -> str:
    return "".join((fmt.format(row[k]) if row.get(k) is not None else "-").rjust(WIDTH) for k, _, fmt in COLUMNS)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", default="50,100,200,300", help="comma-separated load levels (default 50,100,200,300)")
    p.add_argument("--seconds", type=float, default=20.0, help="audio each client streams per level (default 20)")
    p.add_argument("--chunk", type=float, default=0.2, help="seconds per message (default 0.2)")
    p.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="seconds of each stream left out of p50/p95/p99/max: while all clients connect (p95 all counts them)",
    )
    p.add_argument("--url", default=None, help="a running server; default: start `asr serve` here")
    p.add_argument("--pid", type=int, default=None, help="with --url: the server's pid, for RSS and CPU")
    p.add_argument("--model", default=None, help="model for the started server (default: the embedded one)")
    p.add_argument("--random-model", action="store_true", help="start the server with a random default-size model")
    p.add_argument("--device", default="auto")
    p.add_argument("--server-workers", type=int, default=1, help="the started server's --workers (default 1)")
    p.add_argument("--server-threads", type=int, default=0, help="the started server's --threads (0: its default)")
    p.add_argument("--decoding", choices=("beam", "greedy"), default="beam", help="the started server's --decoding")
    p.add_argument("--beam-size", type=int, default=32, help="the started server's --beam-size (default 32)")
    p.add_argument("--token", default=os.environ.get("ASR_TOKEN"))
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of clips (default ../shared/data/real_en)")
    p.add_argument("--target-ms", type=float, default=TARGET_MS, help="p95 latency limit (default 100)")
    p.add_argument("--out", type=Path, default=Path("ws_load.json"), help="JSON results (default ws_load.json)")
    p.add_argument("--via", choices=("direct", "nginx"), default="direct", help="nginx: each level also via nginx")
    p.add_argument(
        "--hostile", default="", help="comma-separated hostile kinds (huge, phrases): each level again beside them"
    )
    p.add_argument("--hostile-clients", type=int, default=2, help="hostile clients of each kind (default 2)")
    args = p.parse_args(argv)
    args.clients = [int(x) for x in args.clients.split(",") if x.strip()]
    kinds = [k.strip() for k in args.hostile.split(",") if k.strip()]
    if set(kinds) - {"huge", "phrases"}:
        p.error(f"--hostile: unknown kind(s) {sorted(set(kinds) - {'huge', 'phrases'})} (huge, phrases)")
    hostile = [k for k in kinds for _ in range(args.hostile_clients)]

    pcm = load_speech(args.data, args.seconds + 60)
    proc = None
    if args.url:
        url, pid = args.url.rstrip("/"), args.pid
    else:
        proc, url = start_server(args)
        pid = proc.pid
    rng = np.random.default_rng(0)
    rows, lb = [], None
    try:
        routes = {"direct": url}
        if args.via == "nginx":
            sys.path.insert(0, str(REPO / "deploy" / "nginx"))
            from loopback import Nginx

            lb = Nginx([int(url.rsplit(":", 1)[1])]).start()
            routes["nginx"] = lb.url
        print(format_header(), flush=True)
        for n in args.clients:
            for via, route in routes.items():
                rows.append({**measure(args, route, pid, pcm, n, rng), "via": via})
                print(format_row(rows[-1]) + (f"  ({via})" if lb else ""), flush=True)
            if lb:
                d, v = rows[-2], rows[-1]
                added = {q: round(v[q] - d[q], 1) if None not in (v[q], d[q]) else None for q in ("p50_ms", "p95_ms")}
                rows[-1]["added_by_proxy_ms"] = added
                print(f"nginx adds p50 {added['p50_ms']} ms, p95 {added['p95_ms']} ms at {n} clients", flush=True)
            if hostile:
                rows.append({**measure(args, url, pid, pcm, n, rng, hostile), "via": "direct", "beside": kinds})
                print(format_row(rows[-1]) + f"  (beside {len(hostile)} hostile: {', '.join(kinds)})", flush=True)
                for h in rows[-1]["hostile"]:
                    took = f"{h['seconds']:.1f} s" if h["seconds"] is not None else "-"
                    print(f"  hostile {h['kind']}: final result after {took}, errors {h['errors'] or 'none'}")
    finally:
        if lb:
            lb.stop()
        if proc:
            proc.terminate()
            proc.wait(timeout=30)
    ok = [
        r["clients"]
        for r in rows
        if r["via"] == "direct"
        and "beside" not in r
        and r["p95_ms"] is not None
        and r["p95_ms"] <= args.target_ms
        and not r["errors"]
    ]
    best = max(ok) if ok else None
    print(f"max clients with p95 <= {args.target_ms:g} ms and no errors: {best if best is not None else 'none'}")
    info = {
        "url": url,
        "seconds": args.seconds,
        "chunk": args.chunk,
        "warmup": args.warmup,
        "cpu_count": os.cpu_count(),
        "model": args.model,
    }
    info.update(random_model=args.random_model, server_workers=args.server_workers, server_threads=args.server_threads)
    info.update(decoding=args.decoding, beam_size=args.beam_size, via=args.via, hostile=kinds)
    info.update(hostile_clients=args.hostile_clients)
    args.out.write_text(
        json.dumps(portable({"config": info, "levels": rows, "max_clients_p95_ok": best}), indent=2) + "\n"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
