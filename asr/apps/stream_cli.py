"""`asr stream FILE`: stream a file through a Recognizer as if it were live.

Partials are rewritten in place on a terminal; finals go on new lines with
their start and end times.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from asr.audio import SAMPLE_RATE
from asr.audio.files import open_audio_file
from asr.audio.resample import StreamResampler
from asr.decode.config import DecodingConfig
from asr.model.user_models import MODEL_HELP
from asr.util.threads import add_threads_argument, set_threads


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr stream", description="stream a file through the recognizer")
    p.add_argument("file")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--realtime", action="store_true", help="feed audio at real-time pace (default: as fast as possible)"
    )
    p.add_argument("--chunk", type=float, default=0.2, help="seconds of audio per accept_waveform call (default 0.2)")
    p.add_argument("--json", action="store_true", help="print every result as a JSON line")
    p.add_argument("--int8", action="store_true", help="int8 dynamic quantisation (CPU)")
    add_threads_argument(p)
    DecodingConfig.add_arguments(p)
    return p


def main(argv=None) -> int:
    import asr
    from asr.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
    from asr.stream import Recognizer

    args = build_parser().parse_args(argv)
    set_threads(args.threads)
    if args.chunk <= 0:
        raise ValueError(f"--chunk must be a positive number of seconds, not {args.chunk:g}")
    decoding = DecodingConfig.from_args(args)
    model = asr.load_model(args.model, device=args.device)
    if args.int8:
        from asr.model.export import quantize_int8

        model = quantize_int8(model)
    decoding = decoding.resolved()
    tty = sys.stdout.isatty() and not args.json
    with open_audio_file(args.file) as audio:
        rate = audio.samplerate
        # a file at a rate a live stream does not take (a 96 kHz recording): resampled to 16 kHz here first,
        # in streaming fashion, so `asr stream` takes every file `asr transcribe` takes
        outside = not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE
        pre = StreamResampler(rate) if outside else None
        rec = Recognizer(model, sample_rate=SAMPLE_RATE if outside else rate, decoding=decoding)
        block = max(1, int(args.chunk * rate))
        start = time.monotonic()
        fed = 0
        for chunk in audio.blocks(blocksize=block, dtype="float32", always_2d=True):
            mono = chunk.mean(axis=1)
            rec.accept_waveform(pre.accept(mono) if pre else mono)
            fed += len(chunk)
            if rec.stream.has_final():
                show_final(rec.result(), tty, args.json)
            elif tty or args.json:
                show_partial(rec.partial_result(), tty, args.json)
            if args.realtime:
                time.sleep(max(0.0, start + fed / rate - time.monotonic()))
    if pre:
        rec.accept_waveform(pre.flush())
    show_final(rec.final_result(), tty, args.json)
    return 0


def show_partial(result: dict, tty: bool, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result), flush=True)
    elif tty:
        print("\r\033[K" + result["partial"], end="", flush=True)


def show_final(result: dict, tty: bool, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result), flush=True)
        return
    text = result["alternatives"][0]["text"] if "alternatives" in result else result["text"]
    if not text:
        if tty:
            print("\r\033[K", end="", flush=True)
        return
    words = result.get("result") or []
    span = f"[{words[0]['start']:7.2f} - {words[-1]['end']:7.2f}] " if words else ""
    print(("\r\033[K" if tty else "") + span + text, flush=True)
