"""Many `asr serve` replicas behind nginx (deploy/nginx/gru-asr.conf on loopback ports), and a replica's drain.

The replicas are real `asr serve` processes with the embedded model (greedy finals: the routing is under test,
not the decoding), nginx is Debian's, the clients stream real speech from ../shared/data through it. Skips
where nginx is not installed (`.ci/run` installs it).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy" / "nginx"))

from conftest import make_self_signed_cert  # noqa: E402
from loopback import CONF, Nginx, free_port  # noqa: E402

pytestmark = pytest.mark.skipif(
    not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()),
    reason="nginx is not installed (apt-get install nginx)",
)
CHUNK = 3200  # bytes: 0.1 s of 16 kHz int16
BEARER = {"Authorization": "Bearer s3cret"}


@pytest.fixture(scope="module")
def clips(shared_data) -> list[bytes]:
    """Ten real read-English clips as 16 kHz int16 PCM."""
    from asr.audio.files import load_audio

    paths = sorted((shared_data / "real_en" / "audio").glob("*"))[:10]
    if not paths:
        pytest.skip("no clips in ../shared/data/real_en/audio")
    return [(np.clip(load_audio(p), -1, 1) * 32767).astype("<i2").tobytes() for p in paths]


class Replica:
    def __init__(self, folder: Path, name: str, *options: str):
        self.name, self.port = name, free_port()
        self.log_path = folder / f"replica_{name}.log"
        cmd = [sys.executable, "-m", "asr.apps.cli", "serve", "--port", str(self.port), "--decoding", "greedy"]
        cmd += ["--sample-rate", "16000", "--trust-proxy", "--threads", "1"]
        cmd += ["--max-connections-per-address", "0", *options]  # every test client is 127.0.0.1
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log, env=env)

    def wait_listening(self) -> None:
        deadline = time.monotonic() + 60
        while "event=listening" not in self.log_path.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"replica {self.name} did not start:\n{self.log_path.read_text()}")
            time.sleep(0.1)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def opened(self) -> int:
        return self.log_path.read_text().count("event=open ")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def cluster(tmp_path):
    """Three replicas behind nginx: (replicas, nginx). On SIGTERM a replica drains until its streams have ended, for
    at most 300 s: a bound no busy machine reaches (a drain that ran out would close the streams left 1001)."""
    replicas = [Replica(tmp_path, name, "--drain-seconds", "300") for name in "abc"]
    try:
        for r in replicas:
            r.wait_listening()
        with Nginx([r.port for r in replicas]) as lb:
            yield replicas, lb
    finally:
        for r in replicas:
            r.stop()


async def stream(url: str, pcm: bytes, pause: float = 0.0, **kw) -> dict:
    """Stream one clip (reply after each 0.1 s message), then eof: {'text', 'upstream', 'close'}."""
    async with connect(url, open_timeout=30, **kw) as ws:
        await ws.send(json.dumps({"config": {"sample_rate": 16000}}))
        texts = []
        for i in range(0, len(pcm), CHUNK):
            await ws.send(pcm[i : i + CHUNK])
            reply = json.loads(await ws.recv())
            texts.append(reply.get("text", ""))
            if pause:
                await asyncio.sleep(pause)
        await ws.send('{"eof" : 1}')
        texts.append(json.loads(await ws.recv())["text"])
        code = None
        try:
            await ws.recv()
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
        upstream = ws.response.headers.get("X-Upstream", "")
    return {"text": " ".join(t for t in texts if t), "upstream": upstream, "close": code}


async def slow_streams(lb, clips, replicas, n: int) -> list[asyncio.Task]:
    """n clients streaming at about twice real time through nginx, once all of them are open."""
    tasks = [asyncio.create_task(stream(lb.url, clips[i % len(clips)], pause=0.05)) for i in range(n)]
    deadline = time.monotonic() + 30
    while sum(r.opened() for r in replicas) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return tasks


def http_get(url: str, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url.replace("ws://", "http://") + path, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_150_clients_through_nginx_get_the_direct_transcripts_balanced(cluster, clips):
    replicas, lb = cluster
    direct = [asyncio.run(stream(f"ws://{replicas[0].address}", pcm))["text"] for pcm in clips]
    assert all(direct), direct
    before = [r.opened() for r in replicas]

    async def clients():
        return await asyncio.gather(*(stream(lb.url, clips[i % len(clips)], pause=0.02) for i in range(150)))

    results = asyncio.run(clients())
    assert [r["text"] for r in results] == [direct[i % len(clips)] for i in range(150)]
    assert all(r["close"] == 1000 for r in results)
    served = {r.address: sum(x["upstream"] == r.address for x in results) for r in replicas}
    assert sum(served.values()) == 150, served  # every connection names its replica
    for r, b in zip(replicas, before, strict=True):
        assert r.opened() - b == served[r.address]  # ... and the replica's log agrees
    assert all(abs(n - 50) <= 10 for n in served.values()), served  # least_conn: within 20% of a third
    # the replica's log names the client as nginx saw it (X-Forwarded-For, --trust-proxy) and nginx as `via`
    assert re.search(r"event=open peer=127\.0\.0\.1 via=127\.0\.0\.1:\d+", replicas[1].log_path.read_text())
    status, body = http_get(lb.url, "/replicas/b/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, body = http_get(lb.url, "/replicas/c/metrics")
    assert status == 200 and f"gru_asr_connections_total {served[replicas[2].address]}" in body


def test_a_draining_replica_finishes_its_streams_while_new_ones_go_elsewhere(cluster, clips):
    replicas, lb = cluster
    a = replicas[0]

    async def run():
        first = await slow_streams(lb, clips, replicas, 30)
        a.proc.send_signal(signal.SIGTERM)  # mid-stream: every clip takes >= 2 s at this pace
        deadline = time.monotonic() + 10
        while "event=drain" not in a.log_path.read_text() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        status, body = await asyncio.to_thread(http_get, f"ws://{a.address}", "/healthz")
        assert status == 503 and json.loads(body)["status"] == "draining"
        assert (await asyncio.to_thread(http_get, f"ws://{a.address}", "/readyz"))[0] == 503
        with pytest.raises(InvalidStatus) as refused:  # direct: refused, so that a balancer tries another
            await connect(f"ws://{a.address}")
        assert refused.value.response.status_code == 503
        later = [await stream(lb.url, clips[i % len(clips)]) for i in range(12)]  # one at a time: least_conn
        return await asyncio.gather(*first), later  # would send each to a, were it not for the 503

    first, later = asyncio.run(run())
    on_a = [r for r in first if r["upstream"] == a.address]
    assert on_a and all(r["text"] and r["close"] == 1000 for r in first)  # a's too: final results, normal close
    assert all(r["text"] and r["close"] == 1000 for r in later)
    assert not any(r["upstream"].endswith(a.address) for r in later), [r["upstream"] for r in later]
    assert a.proc.wait(timeout=30) == 0
    log = a.log_path.read_text()
    assert "event=drain" in log and "event=stopped" in log and "Traceback" not in log


def test_a_killed_replica_closes_its_streams_and_the_others_go_on(cluster, clips):
    replicas, lb = cluster
    b = replicas[1]

    async def run():
        tasks = await slow_streams(lb, clips, replicas, 30)
        b.proc.kill()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        later = [await stream(lb.url, clips[i % len(clips)]) for i in range(6)]
        return results, later

    results, later = asyncio.run(run())
    lost = [r for r in results if isinstance(r, BaseException)]
    kept = [r for r in results if not isinstance(r, BaseException)]
    assert lost and all(isinstance(e, ConnectionClosed) for e in lost)  # b's clients see a close...
    # ... nginx's, as b dies, not a hang ended by their own keepalive timeout (20 s of pings: close 1011)
    assert not [e for e in lost if e.sent and e.sent.code == 1011], [str(e) for e in lost]
    assert all(r["text"] and r["close"] == 1000 and r["upstream"] != b.address for r in kept)
    assert len(kept) + len(lost) == 30 and len(kept) >= 15
    assert all(r["text"] and b.address not in r["upstream"].split(", ")[-1] for r in later)


def test_tls_ends_at_nginx_and_the_token_passes_through(tmp_path, clips):
    """The documented production path: wss:// to nginx, plain ws:// to replicas that check the bearer token."""
    import ssl

    cert, key = make_self_signed_cert(tmp_path)
    replicas = [Replica(tmp_path, name, "--token", "s3cret") for name in "ab"]
    try:
        for r in replicas:
            r.wait_listening()
        direct = asyncio.run(stream(f"ws://{replicas[0].address}", clips[0], additional_headers=BEARER))["text"]
        with Nginx([r.port for r in replicas], cert=(str(cert), str(key))) as lb:
            assert lb.url.startswith("wss://")
            context = ssl.create_default_context(cafile=str(cert))
            via_header = asyncio.run(stream(lb.url, clips[0], ssl=context, additional_headers=BEARER))
            via_query = asyncio.run(stream(lb.url + "/?token=s3cret", clips[0], ssl=context))
            assert via_header["text"] == via_query["text"] == direct and via_header["close"] == 1000
            with pytest.raises(InvalidStatus) as refused:
                asyncio.run(stream(lb.url, clips[0], ssl=context))
            assert refused.value.response.status_code == 401  # the replica's answer, passed back
    finally:
        for r in replicas:
            r.stop()


def test_nginx_limits_open_streams_per_address(tmp_path, clips):
    """The shipped file's limit_conn (50 open streams from one address, rendered here as 3): a 4th stream from
    127.0.0.1 gets nginx's 429 while 127.0.0.2 (loopback too, on Linux) gets its transcript."""
    location = re.search(r"\n    location / \{\n(.*?)\n    \}", CONF.read_text(), re.S).group(1)
    assert re.search(r"^ +limit_conn gru_asr_per_address 50;$", location, re.M)
    replica = Replica(tmp_path, "a")
    try:
        replica.wait_listening()
        direct = asyncio.run(stream(f"ws://{replica.address}", clips[0]))["text"]
        with Nginx([replica.port], per_address=3) as lb:

            async def run():
                held = [await connect(lb.url) for _ in range(3)]
                with pytest.raises(InvalidStatus) as refused:
                    await connect(lb.url)
                other = await stream(lb.url, clips[0], local_addr=("127.0.0.2", 0))
                for ws in held:
                    await ws.close()
                return refused.value.response.status_code, other

            status, other = asyncio.run(run())
            assert status == 429 and other["text"] == direct and other["close"] == 1000
            assert "limiting connections by zone" in lb.error_log()
    finally:
        replica.stop()
    # the replica saw the other address through X-Forwarded-For (--trust-proxy)
    assert re.search(r"event=open peer=127\.0\.0\.2 via=127\.0\.0\.1:\d+", replica.log_path.read_text())
