"""Bad clients get an error and a fitting close code, and never disturb a good stream running beside them."""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from conftest import random_model
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from asr.stream import EndpointConfig, Recognizer
from server import protocol
from server.config import ServerConfig
from server.protocol import Config, Eof, ProtocolError, Reset
from server.running import BackgroundServer

ENDPOINT = EndpointConfig(silence_no_speech=0.8, silence_after_speech=0.4, max_utterance=1.2, max_utterance_grace=0.2)
MAX_MESSAGE_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def model():
    return random_model(11)


@pytest.fixture(scope="module")
def server(model):
    config = ServerConfig(port=0, endpoint=ENDPOINT, max_message_bytes=MAX_MESSAGE_BYTES, sample_rate=16000)
    with BackgroundServer(model, config) as srv:
        yield srv


@pytest.fixture(scope="module")
def clip(shared_data):
    samples, rate = sf.read(shared_data / "real_en" / "audio" / "ds_LDC93S1.wav", dtype="int16")
    return samples.tobytes(), rate


def wav_header(rate=16000, channels=1, bits=16, tag=1, data_size=0) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_size)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", data_size)
    )


def offline(model, chunks, rate):
    rec = Recognizer(model, rate, endpoint=ENDPOINT)
    replies = [rec.result() if rec.accept_waveform(c) else rec.partial_result() for c in chunks]
    return [*replies, rec.final_result()]


async def good_client(url, chunks, rate, pause):
    async with connect(url) as ws:
        await ws.send(json.dumps({"config": {"sample_rate": rate}}))
        replies = []
        for chunk in chunks:
            await ws.send(chunk)
            replies.append(json.loads(await ws.recv()))
            await asyncio.sleep(pause)
        await ws.send('{"eof" : 1}')
        replies.append(json.loads(await ws.recv()))
        return replies


async def bad_client(url, messages):
    """Send messages one by one, awaiting a reply after each but a config; then read until the close.

    Returns (replies, close code).
    """
    replies = []
    async with connect(url) as ws:
        try:
            for message in messages:
                await ws.send(message)
                if not (isinstance(message, str) and '"config"' in message):  # Vosk: no reply to a config
                    replies.append(json.loads(await ws.recv()))
            while True:
                replies.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        except ConnectionClosed as exc:
            return replies, exc.rcvd.code if exc.rcvd else None


AUDIO = b"\x01\x00" * 1600  # 0.1 s at 16 kHz
BAD_CLIENTS = {
    # name: (messages, close code, error kind)
    "invalid_json": (["{eof: 1}"], 1003, "bad_json"),
    "text_instead_of_audio": ([AUDIO, "\x01\x00\x02\x00 not audio"], 1003, "bad_json"),
    "unknown_command": (['{"stop": 1}'], 1003, "bad_command"),
    "two_commands": (['{"eof": 1, "reset": 1}'], 1003, "bad_command"),
    "eof_not_one": (['{"eof": "yes"}'], 1003, "bad_command"),
    "unknown_config_key": (['{"config": {"sample_rate": 16000, "beam": 5}}'], 1003, "bad_config"),
    "wrong_type_words": (['{"config": {"words": "yes"}}'], 1003, "bad_config"),
    "wrong_type_alternatives": (['{"config": {"max_alternatives": 1.5}}'], 1003, "bad_config"),
    "wrong_type_phrases": (['{"config": {"phrase_list": "one two"}}'], 1003, "bad_config"),
    "config_not_object": (['{"config": [16000]}'], 1003, "bad_config"),
    "rate_too_low": (['{"config": {"sample_rate": 4000}}'], 1003, "bad_sample_rate"),
    "rate_too_high": (['{"config": {"sample_rate": 96000}}'], 1003, "bad_sample_rate"),
    "rate_fraction": (['{"config": {"sample_rate": 16000.5}}'], 1003, "bad_sample_rate"),
    "rate_string": (['{"config": {"sample_rate": "16000"}}'], 1003, "bad_sample_rate"),
    "config_after_audio": ([AUDIO, '{"config": {"sample_rate": 8000}}'], 1008, "config_after_audio"),
    "wav_stereo": ([wav_header(channels=2) + AUDIO], 1003, "bad_wav"),
    "wav_8bit": ([wav_header(bits=8) + AUDIO], 1003, "bad_wav"),
    "wav_float": ([wav_header(tag=3, bits=32) + AUDIO], 1003, "bad_wav"),
    "wav_rate": ([wav_header(rate=96000) + AUDIO], 1003, "bad_sample_rate"),
    "wav_cut_short": ([wav_header()[:30]], 1003, "bad_wav"),
    "wav_rate_differs_from_config": (['{"config": {"sample_rate": 8000}}', wav_header(16000) + AUDIO], 1003, "bad_wav"),
    "too_big": ([b"\x00" * (MAX_MESSAGE_BYTES + 2)], 1009, "too_big"),
}


def test_bad_inputs_beside_a_good_stream(server, model, clip):
    data, rate = clip
    chunks = [data[i : i + 3201] for i in range(0, len(data), 3201)]  # odd sizes: a byte is carried over
    expected = offline(model, chunks, rate)

    async def abrupt(url):
        async with connect(url) as ws:
            await ws.send(AUDIO)
            await ws.recv()
            await ws.send(AUDIO * 3)
            ws.transport.abort()  # no close frame: the stream must leave the engine

    async def everything():
        good = asyncio.create_task(good_client(server.url, chunks, rate, pause=0.02))
        bad = await asyncio.gather(*(bad_client(server.url, m) for m, _, _ in BAD_CLIENTS.values()), abrupt(server.url))
        return await good, bad[:-1]

    before = dict(server.app.metrics.errors)
    good, bad = asyncio.run(everything())
    assert good == expected
    for (name, (_, code, kind)), (replies, closed) in zip(BAD_CLIENTS.items(), bad, strict=True):
        assert closed == code, name
        if kind != "too_big":  # websockets closes 1009 itself, before the message exists
            assert "error" in replies[-1], name
            assert all("error" not in r for r in replies[:-1]), name
    errors = server.app.metrics.errors
    for kind in {k for _, _, k in BAD_CLIENTS.values()}:
        expected_count = sum(k == kind for _, _, k in BAD_CLIENTS.values())
        assert errors.get(kind, 0) - before.get(kind, 0) == expected_count, kind
    deadline = time.monotonic() + 5
    while server.app.worker.engine.streams and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not server.app.worker.engine.streams  # every stream, the abrupt one included, has left


def test_wav_header_in_first_message_is_skipped(server, model, clip):
    data, rate = clip
    header = wav_header(rate, data_size=len(data))
    chunks = [header + data[:6400], *(data[i : i + 6400] for i in range(6400, len(data), 6400))]
    got = asyncio.run(bad_client(server.url, [*chunks, '{"eof": 1}']))  # no config: the header gives the rate
    replies, closed = got
    assert closed == 1000
    assert replies == offline(model, [data[:6400], *chunks[1:]], rate)


def test_empty_and_odd_messages_are_fine(server, model):
    rng = np.random.default_rng(3)
    data = (rng.standard_normal(16000) * 3000).astype("<i2").tobytes()
    chunks = [b"", data[:1], data[1:3], b"", data[3:5001], data[5001:]]
    replies, closed = asyncio.run(bad_client(server.url, [*chunks, '{"eof": 1}']))
    assert closed == 1000 and replies == offline(model, chunks, 16000)


# -- the parser alone ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, parsed",
    [
        ('{"eof" : 1}', Eof()),
        ('{ "eof" : 1 }', Eof()),
        ('{"eof":true}', Eof()),
        ('{"reset" : 1}', Reset()),
        ('{ "config" : { "sample_rate" : 8000 } }', Config(sample_rate=8000)),
        ('{"config": {"sample_rate": 16000.0, "words": 0}}', Config(sample_rate=16000, words=False)),
        (
            '{"config": {"max_alternatives": 3, "phrase_list": ["one two", "[unk]"]}}',
            Config(max_alternatives=3, phrase_list=("one two", "[unk]")),
        ),
        ('{"config": {}}', Config()),
    ],
)
def test_parse_text(text, parsed):
    assert protocol.parse_text(text) == parsed


@pytest.mark.parametrize("name", [n for n, (m, _, _) in BAD_CLIENTS.items() if len(m) == 1 and isinstance(m[0], str)])
def test_parse_text_errors(name):
    messages, code, kind = BAD_CLIENTS[name]
    with pytest.raises(ProtocolError) as err:
        protocol.parse_text(messages[0])
    assert (err.value.kind, err.value.code) == (kind, code)


def test_the_protocol_parses_without_torch():
    """A client or proxy that only parses the protocol (and `import asr`) does not load torch."""
    code = (
        'import sys, asr, server.protocol as p; p.parse_text(\'{"config": {"sample_rate": 8000}}\');'
        " print(sorted(m for m in ('torch', 'torchaudio', 'soundfile') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_parse_wav_header():
    assert protocol.parse_wav_header(wav_header(22050) + b"\x00\x00") == (22050, 44)
    extra = b"LIST" + struct.pack("<I", 3) + b"abc\x00"  # an odd-sized chunk is padded
    header = wav_header(8000)
    header = header[:36] + extra + header[36:]
    assert protocol.parse_wav_header(header) == (8000, 44 + len(extra))
    extensible = struct.pack("<HHIIHHHHI", 0xFFFE, 1, 16000, 32000, 2, 16, 22, 16, 4) + struct.pack("<H", 1)
    extensible += protocol.PCM_SUBFORMAT_TAIL
    wav = b"RIFF\x00\x00\x00\x00WAVEfmt " + struct.pack("<I", len(extensible)) + extensible + b"data\xff\xff\xff\xff"
    assert protocol.parse_wav_header(wav) == (16000, len(wav))
    assert protocol.is_riff(wav) and not protocol.is_riff(b"RIFF") and not protocol.is_riff(b"\x00" * 64)
