"""Stream an audio file to `asr serve` (or any Vosk websocket server) as a microphone would.

    python examples/ws_client.py speech.wav [--url ws://127.0.0.1:2700] [--chunk 0.2] [--fast]

Sends the file's 16-bit PCM at its own rate (config sample_rate) in `--chunk`
second messages, at real-time pace unless --fast, and prints the partial
results on one line and each final result on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time

import numpy as np
import soundfile as sf
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

MIN_RATE, MAX_RATE = 8000, 48000  # Hz the server accepts; other files are resampled to 16 kHz


def read_pcm(path: str) -> tuple[bytes, int]:
    """The file as mono int16 PCM bytes and its rate."""
    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    samples = samples.mean(axis=1)
    if not MIN_RATE <= rate <= MAX_RATE:
        from asr.audio import SAMPLE_RATE
        from asr.audio.resample import resample

        samples, rate = resample(samples, rate, SAMPLE_RATE), SAMPLE_RATE
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes(), rate


def show(reply: dict) -> None:
    if "partial" in reply:
        print(f"\r\033[K... {reply['partial']}", end="", file=sys.stderr, flush=True)
    elif "error" in reply:
        print(f"\r\033[Kerror: {reply['error']}", file=sys.stderr, flush=True)
    else:
        text = reply["alternatives"][0]["text"] if "alternatives" in reply else reply.get("text", "")
        print("\r\033[K", end="", file=sys.stderr, flush=True)
        if text:
            print(text, flush=True)


async def run(args) -> int:
    pcm, rate = read_pcm(args.file)
    step = int(rate * args.chunk) * 2  # bytes per message
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else None
    context = ssl.create_default_context(cafile=args.cafile) if args.url.startswith("wss://") else None
    async with connect(args.url, additional_headers=headers, ssl=context) as ws:
        await ws.send(json.dumps({"config": {"sample_rate": rate, "words": True}}))
        start = time.monotonic()
        for i, offset in enumerate(range(0, len(pcm), step)):
            if not args.fast:  # real-time pace: chunk i is sent once its audio would have been spoken
                await asyncio.sleep(max(0.0, start + i * args.chunk - time.monotonic()))
            await ws.send(pcm[offset : offset + step])
            show(json.loads(await ws.recv()))
        await ws.send('{"eof" : 1}')
        reply = json.loads(await ws.recv())
        show(reply)
        if args.json:
            print(json.dumps(reply))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("file", help="wav, flac, ogg, mp3: anything libsndfile reads")
    p.add_argument("--url", default="ws://127.0.0.1:2700")
    p.add_argument("--chunk", type=float, default=0.2, help="seconds of audio per message (default 0.2)")
    p.add_argument("--fast", action="store_true", help="send as fast as the server replies")
    p.add_argument("--token", default=None, help="bearer token, if the server wants one")
    p.add_argument("--cafile", default=None, help="CA or self-signed certificate to trust for wss://")
    p.add_argument("--json", action="store_true", help="also print the last final result as JSON")
    args = p.parse_args(argv)
    if args.chunk <= 0:
        p.error("--chunk must be positive")
    try:
        return asyncio.run(run(args))
    except (OSError, sf.LibsndfileError, WebSocketException) as exc:
        print(f"ws_client: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
