"""`asr mic`: transcribe the microphone live, with the local model or against an `asr serve` server.

    asr mic                                  # default input device, embedded model
    asr mic --list-devices
    asr mic --device pulse --seconds 10 --json
    asr mic --server ws://127.0.0.1:2700     # same protocol as examples/ws_client.py

Audio is captured with sounddevice (PortAudio) as 16-bit mono at the device's
own default rate; the Recognizer (or the server) resamples it to 16 kHz.
Partials are rewritten in place on a terminal, finals go on new lines.
Ctrl-C ends the stream: the final result is printed and the exit code is 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import signal
import sys
import threading
import time
import wave

from websockets.exceptions import WebSocketException

from asr.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from asr.decode.config import DecodingConfig
from asr.model.user_models import MODEL_HELP
from asr.util.errors import UserError
from asr.util.threads import add_threads_argument, set_threads

BLOCK_SECONDS = 0.1  # seconds of audio per capture block (and per websocket message)
STALL_SECONDS = 5.0  # seconds without audio from the device before giving up
POLL_SECONDS = 0.1  # seconds between checks for Ctrl-C while waiting for audio
SAMPLE_WIDTH = 2  # bytes per sample (int16)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr mic", description="transcribe the microphone live")
    p.add_argument("--list-devices", action="store_true", help="list the input devices and exit")
    p.add_argument("--device", default=None, help="input device: index or (part of) its name (default: the system's)")
    p.add_argument("--samplerate", type=int, default=None, help="capture rate in Hz (default: the device's own)")
    p.add_argument("--seconds", type=float, default=None, help="stop after this many seconds of audio")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--cpu", action="store_true", help="run the local model on the CPU even if there is a GPU")
    p.add_argument("--server", default=None, metavar="URL", help="recognise on an `asr serve` server (ws:// or wss://)")
    p.add_argument("--token", default=os.environ.get("ASR_TOKEN"), help="bearer token for --server (env ASR_TOKEN)")
    p.add_argument("--cafile", default=None, help="certificate to trust for a wss:// server")
    p.add_argument("--save", default=None, metavar="WAV", help="also write the captured audio to this WAV file")
    p.add_argument("--json", action="store_true", help="print results as JSON lines (partials when they change)")
    add_threads_argument(p)
    DecodingConfig.add_arguments(p)  # for the local model; a server decodes as it was started (--grammar goes to it)
    return p


# -- the device ------------------------------------------------------------------------------


def import_sounddevice():
    """sounddevice, or a UserError saying what to install when PortAudio is missing."""
    try:
        import sounddevice
    except OSError as exc:  # sounddevice raises OSError when libportaudio is absent
        raise UserError(f"PortAudio is not installed ({exc}): apt-get install libportaudio2") from None
    return sounddevice


def list_devices(sd) -> None:
    default = sd.default.device[0]
    inputs = [(i, dev) for i, dev in enumerate(sd.query_devices()) if dev["max_input_channels"] > 0]
    for i, dev in inputs:
        mark = "*" if i == default else " "
        print(f"{mark} {i:3d}  {dev['name']}  ({dev['max_input_channels']} ch, {dev['default_samplerate']:g} Hz)")
    if not inputs:
        print("no input devices found (PortAudio sees none: connect a microphone, or check the sound server)")


def find_device(sd, spec: str | None) -> dict:
    """The input device named by an index or (part of) a name; the default one when spec is None."""
    if spec is None:
        index = sd.default.device[0]
        if index is None or index < 0:
            raise UserError("no input device found: connect a microphone, or choose one from `asr mic --list-devices`")
        return sd.query_devices(index)
    try:
        return sd.query_devices(int(spec) if spec.strip().isdigit() else spec, "input")
    except ValueError as exc:
        raise UserError(f"input device {spec!r}: {exc} (see `asr mic --list-devices`)") from None


def capture_rate(device: dict, requested: int | None) -> int:
    rate = requested or int(device["default_samplerate"])
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        if requested:
            raise UserError(f"--samplerate {rate} not supported (from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz)")
        rate = MAX_SAMPLE_RATE  # the device's own rate is too high: let PortAudio convert
    return rate


# -- where the audio goes --------------------------------------------------------------------


class LocalSink:
    """The embedded (or a given) model in this process."""

    def __init__(self, model_path: str | None, rate: int, device: str, decoding: DecodingConfig | None = None):
        import asr
        from asr.stream import Recognizer

        self.rec = Recognizer(asr.load_model(model_path, device=device), sample_rate=rate, decoding=decoding)

    def feed(self, pcm: bytes) -> dict:
        return self.rec.result() if self.rec.accept_waveform(pcm) else self.rec.partial_result()

    def finish(self) -> dict:
        return self.rec.final_result()


class ServerSink:
    """A Vosk-compatible server: config, one binary message per block with one reply each, eof."""

    def __init__(self, ws, rate: int, grammar: tuple[str, ...] | None = None):
        self.ws = ws
        config = {"sample_rate": rate, "words": True} | ({"grammar": list(grammar)} if grammar else {})
        self.ws.send(json.dumps({"config": config}))

    def feed(self, pcm: bytes) -> dict:
        self.ws.send(pcm)
        return self._reply()

    def finish(self) -> dict:
        self.ws.send('{"eof" : 1}')
        return self._reply()

    def _reply(self) -> dict:
        reply = json.loads(self.ws.recv())
        if "error" in reply:
            raise UserError(f"server: {reply['error']}")
        return reply


@contextlib.contextmanager
def server_sink(url: str, rate: int, token: str | None, cafile: str | None, grammar: tuple[str, ...] | None = None):
    import ssl

    from websockets.sync.client import connect

    headers = {"Authorization": f"Bearer {token}"} if token else None
    context = ssl.create_default_context(cafile=cafile) if url.startswith("wss://") else None
    with contextlib.ExitStack() as stack:
        try:
            ws = stack.enter_context(connect(url, additional_headers=headers, ssl=context, open_timeout=10))
        except (OSError, WebSocketException, TimeoutError) as exc:
            raise UserError(f"cannot connect to {url}: {exc}") from None
        yield ServerSink(ws, rate, grammar)


def open_sink(args, rate: int):
    """A context manager giving the sink that --server or --model asks for."""
    decoding = DecodingConfig.from_args(args)
    if args.server:  # the server decodes as it was started; a grammar goes with the config
        return server_sink(args.server, rate, args.token, args.cafile, decoding.grammar)
    return contextlib.nullcontext(LocalSink(args.model, rate, "cpu" if args.cpu else "auto", decoding))


# -- output ----------------------------------------------------------------------------------


class Printer:
    """Partials in place on a terminal (or as JSON lines when they change); finals on their own lines."""

    def __init__(self, as_json: bool, tty: bool):
        self.json, self.tty = as_json, tty and not as_json
        self.last_partial = ""

    def show(self, reply: dict) -> None:
        if "partial" in reply:
            if reply["partial"] != self.last_partial:
                self.last_partial = reply["partial"]
                if self.json:
                    print(json.dumps(reply), flush=True)
                elif self.tty:
                    print("\r\033[K" + reply["partial"], end="", flush=True)
            return
        self.last_partial = ""
        if self.json:
            print(json.dumps(reply), flush=True)
            return
        text = reply["alternatives"][0]["text"] if "alternatives" in reply else reply.get("text", "")
        if self.tty:
            print("\r\033[K", end="")
        if text:
            print(text, flush=True)


# -- the loop ----------------------------------------------------------------------------------


def record(sd, device: dict, rate: int, sink, printer: Printer, seconds: float | None, save) -> None:
    """Capture blocks until `seconds` of audio (or Ctrl-C), feeding each to the sink; then the final result."""
    blocks: queue.Queue[bytes] = queue.Queue()
    limit = None if seconds is None else int(seconds * rate)  # samples
    taken = 0
    with (
        stop_on_sigint() as stop,
        sd.RawInputStream(
            device=device["index"],
            samplerate=rate,
            channels=1,
            dtype="int16",
            blocksize=max(1, int(rate * BLOCK_SECONDS)),
            callback=lambda indata, frames, time_info, status: blocks.put(bytes(indata)),
        ),
    ):
        print(f"listening on {device['name']!r} at {rate} Hz (Ctrl-C to stop)", file=sys.stderr, flush=True)
        last_audio = time.monotonic()
        while not stop.is_set() and (limit is None or taken < limit):
            try:
                pcm = blocks.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if time.monotonic() - last_audio > STALL_SECONDS:
                    raise UserError(f"no audio from input device {device['name']!r} for {STALL_SECONDS:g} s") from None
                continue
            last_audio = time.monotonic()
            if limit is not None:
                pcm = pcm[: (limit - taken) * SAMPLE_WIDTH]
            taken += len(pcm) // SAMPLE_WIDTH
            if save:
                save.writeframes(pcm)
            printer.show(sink.feed(pcm))
    printer.show(sink.finish())


@contextlib.contextmanager
def stop_on_sigint():
    """An Event set by Ctrl-C (SIGINT), so that a reply in flight is never cut off; restores the old handler."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def open_wav(path, rate: int):
    """A 16-bit mono wave writer on `path` (a file name or a binary file object)."""
    out = wave.open(path, "wb")
    out.setnchannels(1)
    out.setsampwidth(SAMPLE_WIDTH)
    out.setframerate(rate)
    return out


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    set_threads(args.threads)
    if args.seconds is not None and args.seconds <= 0:
        raise UserError("--seconds must be positive")
    sd = import_sounddevice()
    if args.list_devices:
        list_devices(sd)
        return 0
    device = find_device(sd, args.device)
    rate = capture_rate(device, args.samplerate)
    printer = Printer(args.json, sys.stdout.isatty())
    save = open_wav(args.save, rate) if args.save else None
    started = time.monotonic()
    try:
        with open_sink(args, rate) as sink:
            record(sd, device, rate, sink, printer, args.seconds, save)
    except sd.PortAudioError as exc:
        raise UserError(f"cannot record from {device['name']!r}: {exc}") from None
    except (OSError, WebSocketException) as exc:
        if not args.server:
            raise
        raise UserError(f"server {args.server}: {exc}") from None  # it went away mid-stream
    finally:
        if save:
            save.close()
    print(f"stopped after {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    from asr.apps.cli import main as cli_main

    sys.exit(cli_main(["mic", *sys.argv[1:]]))
