"""The websocket server on loopback with real clients: Vosk protocol, batching, limits, auth, TLS, shutdown, HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import wave

import numpy as np
import pytest
import soundfile as sf
import websockets
from conftest import REPO, make_self_signed_cert, random_model
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import asr
from asr.audio.files import load_audio
from asr.decode.config import DecodingConfig
from asr.model.checkpoint import save_checkpoint
from asr.stream import EndpointConfig, Recognizer
from server import protocol
from server.cli import main
from server.config import ServerConfig, make_decoder_factory
from server.running import BackgroundServer
from server.web import static_file

sys.path.insert(0, str(REPO / "benchmarks"))
import ws_load  # noqa: E402  (the load benchmark: its hostile clients' phrase_list)

# Short utterances, so that random weights still give finals in the middle of a stream.
ENDPOINT = EndpointConfig(silence_no_speech=0.8, silence_after_speech=0.4, max_utterance=1.2, max_utterance_grace=0.2)
# Seconds a wait may last before the test calls it a hang: a guard, not a speed limit (`asr serve` starting took
# 31 s on a 2-core machine with both cores busy). These tests check what the server does and in what order, never
# how fast: speed is measured by benchmarks/ws_load.py.
HANG_GUARD = 120.0


def wait_until(condition, what: str) -> None:
    """Poll `condition()` until it holds; fail saying `what` did not happen if that takes HANG_GUARD seconds."""
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        assert time.monotonic() < deadline, f"{what} (waited {HANG_GUARD:g} s)"
        time.sleep(0.02)


async def until(condition, what: str) -> None:
    """wait_until on an event loop."""
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        assert time.monotonic() < deadline, f"{what} (waited {HANG_GUARD:g} s)"
        await asyncio.sleep(0.01)


@pytest.fixture(scope="module")
def model():
    return random_model(7)


@pytest.fixture(scope="module")
def server(model):
    with BackgroundServer(model, ServerConfig(port=0, endpoint=ENDPOINT, sample_rate=16000)) as srv:
        yield srv  # 16 kHz for clients that send no rate (`asr serve --sample-rate 16000`; Vosk's default is 8000)


@pytest.fixture(scope="module")
def speech_pcm(speech_wav) -> bytes:
    return to_pcm(load_audio(speech_wav))


def to_pcm(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def offline(model, chunks, rate=16000, endpoint=ENDPOINT, **options) -> list[dict]:
    """What a Recognizer alone says after each chunk, then its final result: the server must say the same."""
    rec = Recognizer(model, rate, endpoint=endpoint, **options)
    replies = [rec.result() if rec.accept_waveform(c) else rec.partial_result() for c in chunks]
    return [*replies, rec.final_result()]


async def stream(url, chunks, config=None, end='{"eof" : 1}', pause=0.0, **kw) -> list[dict]:
    """Send config, then each chunk waiting for its reply, then eof; the replies in order."""
    async with connect(url, **kw) as ws:
        if config is not None:
            await ws.send(json.dumps({"config": config}))
        replies = []
        for chunk in chunks:
            await ws.send(chunk)
            replies.append(json.loads(await ws.recv()))
            if pause:
                await asyncio.sleep(pause)
        await ws.send(end)
        replies.append(json.loads(await ws.recv()))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd.code == 1000
        return replies


async def vosk_test_py(uri, path, frames=None):
    """alphacep/vosk-server websocket/test.py, as its users run it (prints replaced by a list).

    Its current version sends 0.2 s per message; older ones sent 8000 frames (`frames`).
    """
    out = []
    async with websockets.connect(uri) as websocket:
        wf = wave.open(str(path), "rb")
        await websocket.send('{ "config" : { "sample_rate" : %d } }' % (wf.getframerate()))  # noqa: UP031 (verbatim)
        buffer_size = frames or int(wf.getframerate() * 0.2)  # 0.2 seconds of audio
        while True:
            data = wf.readframes(buffer_size)
            if len(data) == 0:
                break
            await websocket.send(data)
            out.append(await websocket.recv())
        await websocket.send('{"eof" : 1}')
        out.append(await websocket.recv())
    return [json.loads(r) for r in out]


def http_get(url: str, path: str):
    try:
        with urllib.request.urlopen(url.replace("ws://", "http://") + path, timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type"), exc.read().decode()


# -- the protocol ----------------------------------------------------------------------


def test_round_trip_partials_endpoints_reset_eof(server, model, speech_pcm):
    chunks = split(speech_pcm, 3200)
    half = len(chunks) // 2

    async def client():
        async with connect(server.url) as ws:
            await ws.send('{"config" : {"sample_rate" : 16000.0, "words": true}}')  # no reply to a config
            first = []
            for c in chunks[:half]:
                await ws.send(c)
                first.append(json.loads(await ws.recv()))
            await ws.send('{ "reset" : 1 }')
            first.append(json.loads(await ws.recv()))
            second = []
            for c in chunks[half:]:
                await ws.send(c)
                second.append(json.loads(await ws.recv()))
            await ws.send('{"eof" : 1}')
            second.append(json.loads(await ws.recv()))
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return first, second

    first, second = asyncio.run(client())
    rec = Recognizer(model, 16000, endpoint=ENDPOINT)  # a reset is a final result; the stream goes on
    expected = [rec.result() if rec.accept_waveform(c) else rec.partial_result() for c in chunks[:half]]
    expected.append(rec.final_result())
    assert first == expected
    expected = [rec.result() if rec.accept_waveform(c) else rec.partial_result() for c in chunks[half:]]
    assert second == [*expected, rec.final_result()]
    replies = first + second
    assert any("partial" in r for r in replies) and sum("text" in r for r in replies) >= 3  # endpoints fired
    assert all("result" in r for r in replies if r.get("text"))
    word = next(w for r in replies for w in r.get("result", []))
    assert set(word) == {"word", "start", "end", "conf"} and word["start"] <= word["end"]


def test_alternatives_and_no_words(server, model, speech_pcm):
    chunks = split(speech_pcm, 8000)
    got = asyncio.run(stream(server.url, chunks, {"sample_rate": 16000, "max_alternatives": 2}))
    assert got == offline(model, chunks, max_alternatives=2)  # alternatives: n-best of the default beam search
    assert "alternatives" in got[-1] and got[-1]["alternatives"][0].keys() == {"text", "confidence"}
    assert len(got[-1]["alternatives"]) == 2
    got = asyncio.run(stream(server.url, chunks, {"words": False}))
    assert got == offline(model, chunks, words=False)
    assert all("result" not in r for r in got)


def test_phrase_list_boosts_hotwords_with_beam_search(server, model, speech_pcm):
    chunks = split(speech_pcm, 8000)
    plain = asyncio.run(stream(server.url, chunks, {"sample_rate": 16000}))[-1]["text"].split()
    phrases = ["Zebra crossing", plain[0][:3] + "x"]  # normalised like transcripts; the second is close to the output
    got = asyncio.run(stream(server.url, chunks, {"sample_rate": 16000, "phrase_list": phrases}))
    hotwords = (("zebra crossing", 2.0), (phrases[1].lower(), 2.0))
    assert got == offline(model, chunks, decoding=DecodingConfig(hotwords=hotwords))


def test_a_client_may_ask_for_greedy_finals(server, model, speech_pcm):
    chunks = split(speech_pcm, 8000)
    got = asyncio.run(stream(server.url, chunks, {"sample_rate": 16000, "decoding": "greedy"}))
    assert got == offline(model, chunks, decoding=DecodingConfig(method="greedy"))
    assert got != asyncio.run(stream(server.url, chunks, {"sample_rate": 16000}))  # the default: beam + LM
    # hotwords and alternatives still need the beam: then without the LM
    got = asyncio.run(stream(server.url, chunks, {"decoding": "greedy", "phrase_list": ["zebra"]}))
    assert got == offline(model, chunks, decoding=DecodingConfig(method="greedy", hotwords=(("zebra", 2.0),)))


def test_a_3x_subsampling_model_serves_its_own_frame_times(speech_pcm):
    """Word times and endpoints in 30 ms frames, greedy and beam search (a phrase list) alike."""
    m = random_model(7, subsampling=3)
    chunks = split(speech_pcm, 8000)
    with BackgroundServer(m, ServerConfig(port=0, endpoint=ENDPOINT)) as srv:
        got = asyncio.run(stream(srv.url, chunks, {"sample_rate": 16000}))
        boosted = asyncio.run(stream(srv.url, chunks, {"sample_rate": 16000, "phrase_list": ["zebra"]}))
    boost = DecodingConfig(hotwords=(("zebra", 2.0),))  # the stream sets the beam's frame shift
    assert got == offline(m, chunks) and boosted == offline(m, chunks, decoding=boost)
    for replies in (got, boosted):
        times = [t for r in replies for w in r.get("result", []) for t in (w["start"], w["end"])]
        end = round(len(speech_pcm) / 2 / 16000, 3)  # a final's last word may be clipped to the audio's end
        assert times and all(abs(t / 0.03 - round(t / 0.03)) < 1e-6 or t == end for t in times)


def test_vosk_test_py_on_real_8khz_clip(server, model, shared_data):
    path = shared_data / "fsdd" / "recordings" / "3_jackson_0.wav"
    got = asyncio.run(vosk_test_py(server.url, path))
    samples, rate = sf.read(path, dtype="int16")
    assert rate == 8000
    assert got == offline(model, split(samples.tobytes(), 3200), 8000)


def test_clients_that_send_no_rate_get_vosks_8_khz(model, shared_data):
    """vosk-server's default: PCM without a config (or a config without sample_rate) is 8 kHz."""
    samples, rate = sf.read(shared_data / "fsdd" / "recordings" / "7_george_3.wav", dtype="int16")
    assert rate == 8000
    chunks = split(samples.tobytes(), 1600)
    with BackgroundServer(model, ServerConfig(port=0, endpoint=ENDPOINT)) as srv:
        assert asyncio.run(stream(srv.url, chunks)) == offline(model, chunks, 8000)
        assert asyncio.run(stream(srv.url, chunks, {"words": False})) == offline(model, chunks, 8000, words=False)


def test_vosk_test_py_on_synthesized_clip(server, model, speech_wav):
    got = asyncio.run(vosk_test_py(server.url, speech_wav, frames=4000))  # 8000-byte messages
    samples, rate = sf.read(speech_wav, dtype="int16")  # espeak-ng writes 22.05 kHz
    assert got == offline(model, split(samples.tobytes(), 8000), rate)
    assert "text" in got[-1]


def test_50_concurrent_clients_equal_offline(server, model, shared_data, speech_wav):
    paths = sorted((shared_data / "fsdd" / "recordings").glob("*_theo_*.wav"))[:45]
    paths += sorted((shared_data / "real_en" / "audio").glob("*.wav"))[:4] + [speech_wav]
    assert len(paths) == 50
    rng = np.random.default_rng(0)
    jobs = []
    for path in paths:
        samples, rate = sf.read(path, dtype="int16")
        data = samples.tobytes()
        cuts = np.sort(rng.integers(0, len(data), size=max(1, len(data) // 4000)))  # random sizes, odd ones too
        jobs.append((rate, [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]))

    async def all_clients():
        return await asyncio.gather(*(stream(server.url, ch, {"sample_rate": rate}) for rate, ch in jobs))

    batches = server.app.metrics.batch_size
    before = batches.sum, batches.count
    results = asyncio.run(all_clients())
    for (rate, chunks), got in zip(jobs, results, strict=True):
        assert got == offline(model, chunks, rate)
    mean_batch = (batches.sum - before[0]) / (batches.count - before[1])
    assert mean_batch > 2  # streams of different connections shared forward passes


def test_pipelined_messages_get_one_reply_each_in_order(server, model, speech_pcm):
    """A client that does not wait: the server reads on only after replying, so replies stay in order."""
    chunks = split(speech_pcm, 1000)

    async def client():
        async with connect(server.url) as ws:
            for chunk in chunks:
                await ws.send(chunk)
            await ws.send('{"eof" : 1}')
            return [json.loads(await ws.recv()) for _ in range(len(chunks) + 1)]

    assert asyncio.run(client()) == offline(model, chunks)


# -- limits ------------------------------------------------------------------------------


def test_max_connections_refused_with_503(model, speech_pcm):
    async def client(url):
        async with connect(url) as a, connect(url) as b:
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url):
                    pass
            assert refused.value.response.status_code == 503
            for ws in (a, b):  # the admitted ones still work
                await ws.send(speech_pcm[:3200])
                assert "partial" in json.loads(await ws.recv())
        async with connect(url) as c:  # a slot is free again
            await c.send('{"eof": 1}')
            assert json.loads(await c.recv()) == {"text": ""}

    with BackgroundServer(model, ServerConfig(port=0, max_connections=2)) as srv:
        asyncio.run(client(srv.url))


async def refused_status(url, **kw) -> int | dict:
    """The HTTP status of a refused upgrade, or the final result of an admitted connection that sends eof."""
    try:
        async with connect(url, **kw) as ws:
            await ws.send('{"eof": 1}')
            return json.loads(await ws.recv())
    except InvalidStatus as refused:
        return refused.response.status_code


def failed_handshake(url, **kw) -> bytes:
    """An upgrade request that passes admission but that websockets then refuses (400: no Sec-WebSocket-Key),
    so that the connection's handler never runs; the response's status line."""
    host, port = url.removeprefix("ws://").split(":")
    with socket.create_connection((host, int(port)), **kw) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        return s.makefile("rb").readline()


def test_one_address_at_its_limit_does_not_keep_another_out(model, speech_pcm, caplog):
    """Issue 29: one address holding connections must not lock every other client out. With room for 5 and 3
    per address, 127.0.0.1 holds 3 and is refused a 4th (429, while the server has room); 127.0.0.2 (loopback
    too, on Linux) still streams and gets its transcript. A closed connection, and a failed handshake, give
    their place back."""
    chunks = split(speech_pcm, 3200)
    other = {"local_addr": ("127.0.0.2", 0)}
    config = ServerConfig(
        port=0, endpoint=ENDPOINT, sample_rate=16000, max_connections=5, max_connections_per_address=3
    )

    async def run(url):
        held = [await connect(url) for _ in range(3)]
        with pytest.raises(InvalidStatus) as refused:
            await connect(url)
        response = refused.value.response
        assert response.status_code == 429 and b"too many connections from your address" in response.body
        assert await stream(url, chunks, **other) == offline(model, chunks)  # the other address is served
        await held.pop().close()
        for _ in range(4):  # admitted (the third place), then refused by websockets: the place is free again
            assert (await asyncio.to_thread(failed_handshake, url)).startswith(b"HTTP/1.1 400")
        held.append(await connect(url))  # the third place once more
        assert await refused_status(url) == 429
        assert await refused_status(url, **other) == {"text": ""}
        for ws in held:
            await ws.close()

    with BackgroundServer(model, config) as srv:
        asyncio.run(run(srv.url))
        assert 'gru_asr_errors_total{kind="too_many_from_address"} 2' in http_get(srv.url, "/metrics")[2]
    assert "event=error kind=too_many_from_address peer=127.0.0.1:" in caplog.text
    assert "client=127.0.0.1 limit=3" in caplog.text


def test_the_per_address_limit_counts_the_proxys_client_with_trust_proxy(model):
    """Behind a proxy (--trust-proxy) the address is the one the proxy puts last in X-Forwarded-For; without
    --trust-proxy that header is anyone's to write and the peer's address counts."""

    def as_client(address):
        return {"additional_headers": {"X-Forwarded-For": address}}

    async def run(url):
        held = [await connect(url, **as_client("203.0.113.7")) for _ in range(2)]
        outcome = {a: await refused_status(url, **as_client(a)) for a in ("203.0.113.7", "198.51.100.2")}
        for ws in held:
            await ws.close()
        return outcome

    for trust_proxy, outcome in ((True, {"text": ""}), (False, 429)):
        config = ServerConfig(port=0, trust_proxy=trust_proxy, max_connections_per_address=2)
        with BackgroundServer(model, config) as srv:
            assert asyncio.run(run(srv.url)) == {"203.0.113.7": 429, "198.51.100.2": outcome}


def test_message_too_big_closes_1009(model):
    async def client(url):
        async with connect(url) as ws:
            await ws.send(b"\x00" * 2000)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            return closed.value

    with BackgroundServer(model, ServerConfig(port=0, max_message_bytes=1000)) as srv:
        closed = asyncio.run(client(srv.url))
        assert closed.rcvd.code == 1009
        assert 'gru_asr_errors_total{kind="too_big"} 1' in http_get(srv.url, "/metrics")[2]


def test_idle_timeout_and_max_stream_duration(model, speech_pcm):
    async def idle(url):
        async with connect(url) as ws:
            await ws.send(speech_pcm[:3200])
            await ws.recv()
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()  # nothing sent: the server gives up
            return closed.value.rcvd

    async def too_long(url):
        async with connect(url) as ws:
            replies = []
            with pytest.raises(ConnectionClosed) as closed:
                for chunk in split(speech_pcm, 6400):  # 0.2 s each
                    await ws.send(chunk)
                    replies.append(json.loads(await ws.recv()))
            return replies, closed.value.rcvd

    with BackgroundServer(
        model, ServerConfig(port=0, idle_timeout=1.0, max_stream_seconds=1.0, sample_rate=16000)
    ) as srv:
        rcvd = asyncio.run(idle(srv.url))
        assert (rcvd.code, rcvd.reason) == (1000, "idle timeout")
        replies, rcvd = asyncio.run(too_long(srv.url))
        assert rcvd.code == 1008 and "longer than 1 s" in rcvd.reason
        assert len(replies) == 6 and all("partial" in r for r in replies[:5]) and "text" in replies[5]


# -- auth and TLS ----------------------------------------------------------------------------


async def attempt(url, **kw):
    """Connect and end the stream at once: its final result, or (HTTP status, Retry-After) when refused."""
    try:
        async with connect(url, **kw) as ws:
            await ws.send('{"eof" : 1}')
            return json.loads(await ws.recv())
    except InvalidStatus as exc:
        return exc.response.status_code, exc.response.headers.get("Retry-After")


def test_bearer_token(model):
    with BackgroundServer(model, ServerConfig(port=0, token="s3cret")) as srv:
        assert asyncio.run(attempt(srv.url)) == (401, None)
        assert asyncio.run(attempt(srv.url, additional_headers={"Authorization": "Bearer wrong"})) == (401, None)
        assert asyncio.run(attempt(srv.url + "/?token=wrong")) == (401, None)
        assert asyncio.run(attempt(srv.url, additional_headers={"Authorization": "Bearer s3cret"})) == {"text": ""}
        assert asyncio.run(attempt(srv.url + "/?token=s3cret")) == {"text": ""}  # browsers cannot set headers
        assert http_get(srv.url, "/healthz")[0] == 200  # probes need no token
        assert http_get(srv.url, "/metrics")[0] == 401  # metrics do
        assert http_get(srv.url, "/metrics?token=s3cret")[0] == 200
        request = urllib.request.Request(srv.url.replace("ws://", "http://") + "/metrics")
        request.add_header("Authorization", "Bearer s3cret")
        with urllib.request.urlopen(request, timeout=10) as r:
            assert r.status == 200 and "gru_asr_" in r.read().decode()
    with BackgroundServer(model, ServerConfig(port=0, token="s3cret", metrics_public=True)) as srv:
        assert http_get(srv.url, "/metrics")[0] == 200  # --metrics-public: scrapers on a private network
        assert asyncio.run(attempt(srv.url)) == (401, None)


def test_repeated_wrong_tokens_from_one_address_are_refused_for_a_while(model):
    """After 10 wrong tokens in 60 s an address gets 429 (Retry-After), even with the right token, until 60 s
    have passed since its last failure; other addresses (X-Forwarded-For behind a proxy, --trust-proxy) not."""

    now = [1000.0]
    with BackgroundServer(model, ServerConfig(port=0, token="s3cret", trust_proxy=True)) as srv:
        srv.app.auth_failures.clock = lambda: now[0]

        def as_client(address, token):
            headers = {"X-Forwarded-For": address, "Authorization": f"Bearer {token}"}
            return asyncio.run(attempt(srv.url, additional_headers=headers))

        for _ in range(10):
            assert as_client("203.0.113.7", "guess") == (401, None)
        assert as_client("203.0.113.7", "s3cret") == (429, "61")
        assert http_get(srv.url, "/metrics?token=s3cret")[0] == 200  # the scraper's own address is not blocked
        assert as_client("198.51.100.2", "s3cret") == {"text": ""}
        now[0] += 30
        assert as_client("203.0.113.7", "s3cret") == (429, "31")
        now[0] += 31
        assert as_client("203.0.113.7", "s3cret") == {"text": ""}
        assert 'errors_total{kind="too_many_wrong_tokens"} 2' in http_get(srv.url, "/metrics?token=s3cret")[2]


def test_wrong_token_memory_is_bounded():
    from server.web import AuthFailures

    failures = AuthFailures(limit=3, window=60, max_addresses=100, clock=lambda: 5.0)
    for i in range(1000):
        failures.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(failures.failures) == 100 and failures.retry_after("10.0.0.0") == 0  # the oldest forgotten
    for _ in range(3):
        failures.failed("10.0.3.231")
    assert failures.retry_after("10.0.3.231") == 61 and len(failures.failures["10.0.3.231"]) == 3


def test_tls_with_self_signed_certificate(model, speech_pcm, tmp_path):
    cert, key = make_self_signed_cert(tmp_path)
    config = ServerConfig(port=0, certfile=str(cert), keyfile=str(key), endpoint=ENDPOINT, sample_rate=16000)
    with BackgroundServer(model, config) as srv:
        assert srv.url.startswith("wss://127.0.0.1:")
        chunks = split(speech_pcm, 6400)
        context = ssl.create_default_context(cafile=str(cert))
        assert asyncio.run(stream(srv.url, chunks, ssl=context)) == offline(model, chunks)
        with pytest.raises(ssl.SSLCertVerificationError):  # an untrusted certificate is refused by the client
            asyncio.run(stream(srv.url, chunks))


# -- HTTP ------------------------------------------------------------------------------------------


def test_healthz_and_metrics(server, speech_pcm):
    asyncio.run(stream(server.url, split(speech_pcm, 6400)))
    wait_until(lambda: not server.app.metrics.connections, "the handler did not end after the close")
    status, kind, body = http_get(server.url, "/healthz")
    assert status == 200 and kind == "application/json"
    health = json.loads(body)
    assert health["status"] == "ok" and health["connections"] == 0 and health["model"] == "in-memory"
    assert health["version"] == asr.__version__
    status, kind, body = http_get(server.url, "/metrics")
    assert status == 200 and kind.startswith("text/plain; version=0.0.4")
    values = {line.split()[0]: float(line.split()[1]) for line in body.splitlines() if not line.startswith("#")}
    assert values["gru_asr_connections"] == 0 and values["gru_asr_connections_total"] >= 1
    assert values["gru_asr_audio_seconds_total"] >= len(speech_pcm) / 32000 - 1e-6
    assert 0 < values["gru_asr_processing_seconds_total"]
    assert values['gru_asr_batch_size_bucket{le="+Inf"}'] == values["gru_asr_batch_size_count"] > 0
    assert values["gru_asr_reply_latency_seconds_count"] >= len(speech_pcm) // 6400
    assert "# TYPE gru_asr_reply_latency_seconds histogram" in body and "# TYPE gru_asr_connections gauge" in body


def test_static_files_without_path_traversal(model, tmp_path):
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "index.html").write_text("<h1>hi</h1>")
    (tmp_path / "secret.txt").write_text("no")
    with BackgroundServer(model, ServerConfig(port=0, static_dir=tmp_path / "static")) as srv:
        assert http_get(srv.url, "/")[:2] == (200, "text/html")
        assert http_get(srv.url, "/index.html")[2] == "<h1>hi</h1>"
        assert http_get(srv.url, "/nope.js")[0] == 404
        assert http_get(srv.url, "/%2e%2e/secret.txt")[0] == 404
    root = tmp_path / "static"
    for bad in ("/../secret.txt", "/..%2fsecret.txt", "/%2e%2e/secret.txt", "//etc/passwd", "/a/../../secret.txt"):
        assert static_file(root, bad) is None, bad
    assert static_file(root, "/") == (root / "index.html").resolve()


# -- the command: errors and graceful shutdown ------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, model, model.tokens)
    return path


def test_command_errors_are_one_line(checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("server.cli.setup_logging", lambda level: None)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    assert main(["--model", str(bad), "--port", "0"]) == 2
    assert capsys.readouterr().err.strip().startswith(f"asr: error: {bad}:")
    assert main(["--model", str(checkpoint), "--certfile", str(tmp_path / "none.pem")]) == 2
    assert capsys.readouterr().err.strip() == f"asr: error: {tmp_path / 'none.pem'}: no such file"
    assert main(["--model", str(checkpoint), "--threads", "-1"]) == 2
    assert capsys.readouterr().err.strip() == "asr: error: --threads must be 0 (torch's default) or more"
    assert main(["--model", str(checkpoint), "--workers", "0"]) == 2
    assert capsys.readouterr().err.strip() == "asr: error: --workers must be at least 1"
    for bad in ("-1", "nan", "inf"):
        assert main(["--model", str(checkpoint), "--drain-seconds", bad]) == 2
        assert "--drain-seconds must be a number of seconds >= 0" in capsys.readouterr().err
    assert main(["--model", str(checkpoint), "--workers", "2", "--device", "cuda"]) == 2
    assert "--workers > 1 serves on the CPU" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--model", str(checkpoint), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"asr: error: cannot listen on 127.0.0.1:{port}: address already in use"


def start_subprocess_server(checkpoint, log, log_path, *options):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "asr.apps.cli",
        "serve",
        "--model",
        str(checkpoint),
        "--port",
        "0",
        "--sample-rate",
        "16000",
    ]
    cmd += options
    proc = subprocess.Popen(cmd, stderr=log, stdout=log, env=env)
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        text = log_path.read_text()
        if "event=listening" in text:
            return proc, text.split("event=listening url=")[1].split()[0]
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}:\n{text}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not start")


def test_shutdown_does_not_wait_for_a_connection_that_never_finished_its_handshake(model, monkeypatch):
    """A TCP connection whose HTTP upgrade request never comes: shutdown closes it instead of waiting for it. Nothing
    else would end it here (no handshake timeout, an hour's shutdown_timeout), so a shutdown that waited would
    never return."""
    from server import service

    monkeypatch.setattr(service, "serve", functools.partial(service.serve, open_timeout=None))
    srv = BackgroundServer(model, ServerConfig(port=0, shutdown_timeout=3600.0)).__enter__()
    host, port = srv.url.removeprefix("ws://").split(":")
    half_open = socket.create_connection((host, int(port)))  # TCP only: no HTTP upgrade request ever comes
    try:
        wait_until(lambda: len(srv.app.opening) == 1, "the server did not take the connection")
        stopping = threading.Thread(target=srv.stop, daemon=True)
        stopping.start()
        stopping.join(HANG_GUARD)
        assert not stopping.is_alive(), "shutdown is waiting for a connection that never finished its handshake"
        half_open.settimeout(HANG_GUARD)
        try:
            assert half_open.recv(1) == b"", "the half-open connection was not closed"
        except ConnectionResetError:  # closed with a reset: as good
            pass
    finally:
        half_open.close()


def test_sigterm_finishes_open_streams(checkpoint, speech_pcm, tmp_path):
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        proc, url = start_subprocess_server(checkpoint, log, log_path, "--threads", "1")

    async def client():
        async with connect(url) as ws:
            await ws.send('{"config": {"sample_rate": 16000}}')
            for chunk in split(speech_pcm, 6400)[:4]:
                await ws.send(chunk)
                assert "partial" in json.loads(await ws.recv())
            proc.send_signal(signal.SIGTERM)  # mid-stream
            final = json.loads(await asyncio.wait_for(ws.recv(), HANG_GUARD))
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            return final, closed.value.rcvd

    try:
        final, rcvd = asyncio.run(client())
        assert "text" in final and rcvd.code == 1001
        assert proc.wait(timeout=HANG_GUARD) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "server.log").read_text()
    assert "event=shutdown" in log and "event=stopped" in log and "Traceback" not in log
    assert "conn=1 event=open" in log and "conn=1 event=close code=1001" in log


def test_drain_refuses_new_streams_while_open_ones_finish(model, speech_pcm):
    """What a replica does behind a load balancer on SIGTERM with --drain-seconds (AsrServer.drain)."""
    chunks = split(speech_pcm, 3200)
    config = ServerConfig(port=0, endpoint=ENDPOINT, sample_rate=16000, max_connections=2)
    with BackgroundServer(model, config) as srv:
        assert http_get(srv.url, "/readyz")[0] == 200

        async def run():
            async with connect(srv.url) as ws:
                await ws.send('{"config": {"sample_rate": 16000}}')
                for chunk in chunks[:5]:
                    await ws.send(chunk)
                    await ws.recv()
                async with connect(srv.url):  # full: /readyz says so, /healthz does not
                    assert http_get(srv.url, "/readyz")[0] == 503 and http_get(srv.url, "/healthz")[0] == 200
                # an hour: only the last stream's end can end this drain within the test
                drained = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(srv.app.drain(3600), srv.loop))
                await until(lambda: srv.app.draining, "the drain did not start")
                status, _, body = await asyncio.to_thread(http_get, srv.url, "/healthz")
                assert status == 503 and json.loads(body)["status"] == "draining"
                with pytest.raises(InvalidStatus) as refused:
                    await connect(srv.url)
                assert refused.value.response.status_code == 503
                for chunk in chunks[5:]:  # the open stream goes on as before
                    await ws.send(chunk)
                    reply = json.loads(await ws.recv())
                    assert "partial" in reply or "text" in reply
                await ws.send('{"eof" : 1}')
                final = json.loads(await ws.recv())
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
            try:  # the last stream has ended: the drain ends, without waiting out its hour
                await asyncio.wait_for(drained, HANG_GUARD)
            except TimeoutError:
                raise AssertionError("the drain went on after the last stream had ended") from None
            return final, closed.value.rcvd.code

        final, code = asyncio.run(run())
        assert "text" in final and code == 1000
        assert srv.app.stopping.done()  # ... and the server shut down


def test_forwarded_for_is_the_address_the_proxy_saw():
    from websockets.datastructures import Headers
    from websockets.http11 import Request

    from server.service import forwarded_for

    def request(*values):
        return Request("/", Headers([("X-Forwarded-For", v) for v in values]))

    assert forwarded_for(request("203.0.113.7")) == "203.0.113.7"
    assert forwarded_for(request("1.2.3.4, 203.0.113.7")) == "203.0.113.7"  # the client's own claim comes first
    assert forwarded_for(request("1.2.3.4", "2001:db8::1")) == "2001:db8::1"
    assert forwarded_for(request("evil=1 x")) == "" and forwarded_for(Request("/", Headers())) == ""


def test_workers_share_the_port_the_limit_and_the_metrics(model, checkpoint, speech_pcm, tmp_path):
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        proc, url = start_subprocess_server(checkpoint, log, log_path, "--workers", "2", "--max-connections", "3")
    chunks = split(speech_pcm, 3200)
    expected = offline(model, chunks, endpoint=EndpointConfig())

    async def clients():
        held = [await connect(url) for _ in range(3)]  # the limit is for both workers together
        with pytest.raises(InvalidStatus) as refused:
            await connect(url)
        assert refused.value.response.status_code == 503
        for ws in held:
            await ws.close()
        # the workers have counted the closes (/healthz gives their shared count) before three more connect
        await until(lambda: json.loads(http_get(url, "/healthz")[2])["connections"] == 0, "the closes not counted")
        return await _streams(url, chunks, 3)

    def summed() -> bool:
        metrics = http_get(url, "/metrics")[2]
        return "gru_asr_connections_total 6" in metrics and 'errors_total{kind="over_capacity"} 1' in metrics

    try:
        assert asyncio.run(clients()) == [expected] * 3
        # once each worker has published its snapshot (every second), whichever worker answers gives the sum
        wait_until(lambda: all(summed() for _ in range(4)), "the workers' /metrics did not add up to the sum")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=HANG_GUARD) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    log = log_path.read_text()
    assert "event=workers count=2" in log and log.count("event=stopped") == 2 and "Traceback" not in log


def test_workers_count_each_address_together(tmp_path):
    """The per-address count in shared memory (server/process_pool.py): what worker 1, a forked process, admits
    from an address counts in worker 0 too; a release or a dead worker gives the places back."""
    import multiprocessing

    from server.process_pool import SharedState

    shared = SharedState(2, tmp_path, address_slots=4)  # 4: the server's max_connections
    attacker, other = "203.0.113.7", "198.51.100.2"

    def as_worker_1(job):
        process = multiprocessing.get_context("fork").Process(target=job)
        process.start()
        process.join()
        assert process.exitcode == 0

    def admit_two():  # as worker 1, with 0 and then 1 connections open there
        os._exit(0 if [shared.admit(1, n, 4, attacker, 2) for n in (0, 1)] == [None, None] else 1)

    as_worker_1(admit_two)
    assert shared.from_address(attacker) == 2 and shared.total() == 2
    assert shared.admit(0, 0, 4, attacker, 2) == "address"  # at its limit in worker 1: refused in worker 0
    assert shared.admit(0, 0, 4, other, 2) is None
    assert shared.admit(0, 1, 4, attacker, 0) is None  # 0: no per-address limit (but counted)
    assert shared.admit(0, 2, 4, other, 2) == "over_capacity"  # 4 open in all
    shared.release(0, 1, attacker)
    as_worker_1(lambda: (shared.release(1, 1, attacker), os._exit(0)))
    assert shared.from_address(attacker) == 1 and shared.admit(0, 1, 4, attacker, 2) is None
    shared.forget_worker(1)  # worker 1 died with its other connection from the attacker
    assert shared.from_address(attacker) == 1 and shared.from_address(other) == 1 and shared.total() == 2
    shared.release(0, 1, attacker)
    shared.release(0, 0, other)
    assert shared.keys.raw == bytes(len(shared.keys)) and shared.total() == 0  # every slot free again


def test_workers_share_the_per_address_limit(model, checkpoint, speech_pcm, tmp_path):
    """`asr serve --workers 2 --max-connections-per-address 2`: an address holding 2 connections, on either
    worker, is refused a third by both (429); another address gets its transcript."""
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        proc, url = start_subprocess_server(
            checkpoint, log, log_path, "--workers", "2", "--max-connections-per-address", "2"
        )
    chunks = split(speech_pcm, 3200)
    expected = offline(model, chunks, endpoint=EndpointConfig())

    async def clients():
        held = [await connect(url) for _ in range(2)]
        refused = [await refused_status(url) for _ in range(4)]  # whichever worker takes each
        served = await stream(url, chunks, local_addr=("127.0.0.2", 0))
        await held.pop().close()
        await asyncio.sleep(0.3)
        again = await refused_status(url)
        for ws in held:
            await ws.close()
        return refused, served, again

    try:
        refused, served, again = asyncio.run(clients())
        assert refused == [429] * 4 and served == expected and again == {"text": ""}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    log = log_path.read_text()
    assert log.count("kind=too_many_from_address") == 4 and "Traceback" not in log


@pytest.mark.slow
def test_a_killed_worker_is_replaced(model, checkpoint, speech_pcm, tmp_path):
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        proc, url = start_subprocess_server(checkpoint, log, log_path, "--workers", "2")
    try:
        # the parent logs its workers' pids after the first one listens
        wait_until(lambda: "event=workers" in log_path.read_text(), "the parent did not name its workers")
        line = next(ln for ln in log_path.read_text().splitlines() if "event=workers" in ln)
        victim = int(line.split("pids=")[1].split(",")[0])
        time.sleep(5.5)  # workers dying sooner after their start stop the server instead
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: log_path.read_text().count("event=listening") >= 3, "no worker took the killed one's place")
        assert f"event=worker_exit worker=0 pid={victim} code=-9" in log_path.read_text()
        chunks = split(speech_pcm, 3200)
        results = asyncio.run(_streams(url, chunks, 4))
        assert results == [offline(model, chunks, endpoint=EndpointConfig())] * 4
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=HANG_GUARD) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


async def _streams(url, chunks, n):
    return await asyncio.gather(*(stream(url, chunks) for _ in range(n)))


async def _realtime(url, live):
    """A client sending 0.2 s messages in real time: its replies."""
    async with connect(url) as ws:
        await ws.send(json.dumps({"config": {"sample_rate": 16000}}))
        replies, start = [], time.monotonic()
        for i, chunk in enumerate(live):
            await asyncio.sleep(max(0.0, start + i * 0.2 - time.monotonic()))
            await ws.send(chunk)
            replies.append(json.loads(await ws.recv()))
        await ws.send('{"eof" : 1}')
        replies.append(json.loads(await ws.recv()))
    return replies


def _beside_real_time_clients(server, model, speech_pcm, hostile, n=20):
    """n real-time clients and two `hostile(url)` ones together: the hostile ones' results, after checking every
    real-time transcript."""
    live = split(speech_pcm, 6400)

    async def run():
        return await asyncio.gather(*[_realtime(server.url, live) for _ in range(n)], hostile(), hostile())

    results = asyncio.run(run())
    assert results[:n] == [offline(model, live)] * n
    return results[n:]


@contextlib.contextmanager
def _engine_held(srv):
    """The server's engine thread kept in a job until the block ends: the jobs of the messages that arrive
    meanwhile queue up (srv.app.worker.jobs), and the engine takes them all into its next batch."""
    holding, release = threading.Event(), threading.Event()

    def hold(engine):
        holding.set()
        release.wait(HANG_GUARD)

    srv.app.worker.post(hold)
    try:
        assert holding.wait(HANG_GUARD), "the engine thread did not take the job"
        yield
    finally:
        release.set()


async def _streams_made(first: bytes, *clients) -> None:
    """Each (client, config): the config and a `first` message sent and answered: its stream made."""
    for ws, config in clients:
        await ws.send(json.dumps({"config": config}))
        await ws.send(first)
        assert "partial" in json.loads(await ws.recv())


def test_a_client_sending_huge_messages_does_not_hold_up_real_time_clients(server, model, speech_pcm):
    """2 clients send 1 MiB messages (33 s of audio each) back to back beside 20 real-time clients: every transcript
    is right. And a reply does not wait for another stream's backlog: each stream gets at most a few chunks per
    batch, so while a 1 MiB message is decoded (about 50 batches), a client sending 0.2 s messages, each after the
    last one's reply, gets reply after reply. Before the fix one batch decoded the whole 1 MiB message, and the
    0.2 s message that came with it got its reply with it. (How fast: `benchmarks/ws_load.py --hostile huge`,
    results/ws_load_hostile.json: the real-time clients' p95 25 ms beside two such clients, 12 ms alone.)"""
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(16000 * 100) * 300).astype("<i2").tobytes()
    huge = split((speech_pcm + noise)[: 3 * (1 << 20)], 1 << 20)  # 3 messages of 1 MiB

    async def hostile():
        await asyncio.sleep(0.3)  # while the real-time clients stream
        return await stream(server.url, huge, {"sample_rate": 16000})

    assert _beside_real_time_clients(server, model, speech_pcm, hostile) == [offline(model, huge)] * 2

    chunks = split(speech_pcm, 6400)
    with BackgroundServer(model, ServerConfig(port=0, endpoint=ENDPOINT, sample_rate=16000)) as srv:
        jobs = srv.app.worker.jobs

        async def run():
            async with connect(srv.url) as rt, connect(srv.url) as hog:
                await _streams_made(chunks[0], (rt, {"sample_rate": 16000}), (hog, {"sample_rate": 16000}))
                with _engine_held(srv):  # the huge message, then a 0.2 s one: the next batch takes both
                    await hog.send(huge[0])
                    await until(lambda: jobs.qsize() == 1, "the huge message did not reach the engine's queue")
                    await rt.send(chunks[1])
                    await until(lambda: jobs.qsize() == 2, "the 0.2 s message did not reach the engine's queue")
                hog_reply, got = asyncio.ensure_future(hog.recv()), 0
                for chunk in itertools.cycle(chunks[2:]):  # until the huge message's reply comes
                    rt_reply = asyncio.ensure_future(rt.recv())
                    await asyncio.wait({hog_reply, rt_reply}, timeout=HANG_GUARD, return_when=asyncio.FIRST_COMPLETED)
                    assert hog_reply.done() or rt_reply.done(), f"no reply (waited {HANG_GUARD:g} s)"
                    if hog_reply.done():
                        await rt_reply
                        return got, json.loads(hog_reply.result())
                    got += 1
                    await rt.send(chunk)

        got, reply = asyncio.run(run())
    assert "partial" in reply or "text" in reply
    # 25 in every run so far, with or without two busy processes beside; 0 before the fix
    assert got >= 3, f"{got} replies to the 0.2 s messages while the 1 MiB one was decoded: they waited for it"


def test_a_client_with_the_largest_phrase_list_does_not_hold_up_real_time_clients(server, model, speech_pcm):
    """2 clients with the largest phrase_list allowed (1,000 phrases of 200 characters, none an English word) and 20
    alternatives beside 20 real-time clients: every transcript is right. And such a client's decoder is built off
    the engine's thread: while it is being built, the engine goes on answering the other streams. Here the build
    is held until another client has had three replies; before the fix the engine's thread built it, and no reply
    came. (How fast: `benchmarks/ws_load.py --hostile phrases`, results/ws_load_hostile.json: the real-time
    clients' p95 28 ms beside two such clients, with the real model.)"""
    phrases = ws_load.largest_phrase_list(np.random.default_rng(1))
    assert len(phrases) == protocol.MAX_PHRASES and max(map(len, phrases)) == protocol.MAX_PHRASE_CHARS
    chunks = split(speech_pcm, 6400)
    config = {"sample_rate": 16000, "phrase_list": phrases, "max_alternatives": 20}

    async def hostile():
        await asyncio.sleep(0.3)
        return await stream(server.url, chunks, config)

    hostile_results = _beside_real_time_clients(server, model, speech_pcm, hostile)
    decoding = DecodingConfig(hotwords=tuple((p, DecodingConfig.hotword_weight) for p in phrases), nbest=20)
    assert hostile_results == [offline(model, chunks, decoding=decoding, max_alternatives=20)] * 2

    building, release = threading.Event(), threading.Event()
    real_factory = make_decoder_factory(model.tokens)

    def factory(options):
        per_stream = real_factory(options)
        if not getattr(per_stream, "costly", False):
            return per_stream

        def build():  # the real build, once the test lets it begin: a build as slow as can be
            building.set()
            release.wait(2 * HANG_GUARD)
            return per_stream()

        build.costly = per_stream.costly
        return build

    config_16k = ServerConfig(port=0, endpoint=ENDPOINT, sample_rate=16000)
    with BackgroundServer(model, config_16k, decoder_factory=factory) as srv, contextlib.ExitStack() as cleanup:
        cleanup.callback(release.set)  # whatever happens, the build thread is not left waiting

        async def run():
            async with connect(srv.url) as rt, connect(srv.url) as hog:
                await _streams_made(chunks[0], (rt, {"sample_rate": 16000}))
                await hog.send(json.dumps({"config": config}))
                await hog.send(chunks[0])  # its stream, and so its decoder, is made now
                await until(building.is_set, "the phrase_list's decoder was not built")
                got = 0
                try:
                    for chunk in chunks[1:4]:
                        await rt.send(chunk)
                        await asyncio.wait_for(rt.recv(), HANG_GUARD)
                        got += 1
                except TimeoutError:
                    pass
                finally:
                    release.set()
                return got, json.loads(await hog.recv())

        got, reply = asyncio.run(run())
    assert got == 3, f"{got} of 3 replies while a phrase_list's decoder was being built: the engine waited for it"
    assert "partial" in reply


def test_head_gets_headers_only_and_other_methods_405(server):
    base = server.url.replace("ws://", "http://")
    with urllib.request.urlopen(urllib.request.Request(base + "/healthz", method="HEAD"), timeout=10) as r:
        assert r.status == 200 and int(r.headers["Content-Length"]) > 0 and r.read() == b""
    for method in ("POST", "PUT", "DELETE"):  # without a body: websockets' parser closes on request bodies
        request = urllib.request.Request(base + "/healthz", method=method)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=10)
        assert err.value.code == 405 and err.value.headers["Allow"] == "GET, HEAD"
