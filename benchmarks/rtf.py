"""Single-stream real-time factor and WER: ours (torch / ONNX Runtime, fp32 / int8, 1 / 2 threads) vs pocketsphinx.

    python benchmarks/rtf.py [--model PATH] [--max-clips N] [--out FILE]

Each clip is loaded and resampled to 16 kHz first (not timed); then the clock
covers frontend + model + decoding through asr.Recognizer fed 0.2 s chunks,
endpoints on, until final_result(): the default decoding (greedy partials,
finals by beam search with the default English LM, loaded before the clock
starts), and greedy finals for the "greedy" rows. RTF = processing time / audio
duration over all clips. WER is over the whole set (jiwer), both sides
normalised with asr.model.tokenizer.normalize_text. pocketsphinx (its bundled en-us
model) decodes the same 16 kHz int16 audio in the same 0.2 s chunks.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import common
import jiwer
import torch

from asr.decode.config import DecodingConfig
from asr.model.export import quantize_int8
from asr.model.tokenizer import normalize_text
from asr.stream import Recognizer

CHUNK_SECONDS = 0.2  # audio per accept_waveform call
CHUNK = int(CHUNK_SECONDS * common.SAMPLE_RATE)  # samples
GREEDY = DecodingConfig(method="greedy")


def decode_ours(model, samples, decoding=None) -> str:
    rec = Recognizer(model, decoding=decoding)
    texts = []
    for i in range(0, len(samples), CHUNK):
        if rec.accept_waveform(samples[i : i + CHUNK]):
            texts.append(rec.result()["text"])
    texts.append(rec.final_result()["text"])
    return " ".join(t for t in texts if t)


def make_pocketsphinx():
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=common.SAMPLE_RATE, loglevel="FATAL")

    def decode(samples) -> str:
        pcm = common.to_int16(samples)
        decoder.start_utt()
        for i in range(0, len(pcm), CHUNK):
            decoder.process_raw(pcm[i : i + CHUNK].tobytes(), False, False)
        decoder.end_utt()
        hyp = decoder.hyp()
        return hyp.hypstr if hyp else ""

    return decode


def run_config(name: str, decode, clips: list[dict], repeats: int = 1) -> dict:
    """Decode every clip `repeats` times; per clip, the fastest run counts (a busy machine only slows things down)."""
    decode(clips[0]["samples"][: 2 * common.SAMPLE_RATE])  # warm-up (allocations, thread pools)
    hyps, elapsed = [], 0.0
    for clip in clips:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            hyp = decode(clip["samples"])
            best = min(best, time.perf_counter() - start)
        hyps.append(hyp)
        elapsed += best
    audio = sum(c["duration"] for c in clips)
    refs = [normalize_text(c["reference"]) for c in clips]
    hyps = [normalize_text(h) for h in hyps]
    return {
        "config": name,
        "rtf": elapsed / audio,
        "x_realtime": audio / elapsed,
        "wer": jiwer.wer(refs, hyps),
        "seconds": elapsed,
        "audio_seconds": audio,
        "examples": [{"ref": r, "hyp": h} for r, h in list(zip(refs, hyps))[:3]],
    }


def our_configs(model, threads_list, onnx_dir: Path | None):
    """(name, threads, model) for every backend x precision x thread count."""
    models = {("torch", "fp32"): model, ("torch", "int8"): quantize_int8(model)}
    configs = []
    for (backend, precision), m in models.items():
        for n in threads_list:
            configs.append((f"ours {backend} {precision} {n}t", n, m))
    if onnx_dir is not None:
        from asr.model.backends import OnnxModel
        from asr.model.export import export_onnx

        for precision in ("fp32", "int8"):
            path = export_onnx(model, onnx_dir / f"model_{precision}.onnx", int8=precision == "int8")
            for n in threads_list:
                configs.append((f"ours onnx {precision} {n}t", n, OnnxModel(path, threads=n)))
    return configs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_model_argument(p)
    p.add_argument("--max-clips", type=int, default=0, help="use only the first N clips (0: all)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch / ORT thread counts (default 1 2)")
    p.add_argument("--repeats", type=int, default=1, help="decode each clip N times, keep the fastest (default 1)")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime configurations")
    p.add_argument("--no-pocketsphinx", action="store_true")
    args = p.parse_args(argv)

    model, model_name = common.load_model(args.model)
    clips, source = common.load_clips(args.max_clips)
    audio = sum(c["duration"] for c in clips)
    print(f"{len(clips)} clips, {audio:.1f} s of audio from {source}; model {model_name}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        onnx_dir = None
        if not args.no_onnx:
            try:
                import onnxruntime  # noqa: F401

                onnx_dir = Path(tmp)
            except ImportError:
                print("note: onnxruntime not installed; skipping ONNX configurations")
        default = DecodingConfig().resolved()  # the LM is built and loaded here, outside the clock
        configs = our_configs(model, args.threads, onnx_dir)
        configs = [(f"{name} greedy", threads, m, GREEDY) for name, threads, m in configs if "torch fp32" in name] + [
            (name, threads, m, default) for name, threads, m in configs
        ]
        for name, threads, m, decoding in configs:
            torch.set_num_threads(threads)
            with torch.inference_mode():
                decode = lambda s, m=m, d=decoding: decode_ours(m, s, d)  # noqa: E731
                rows.append(run_config(name, decode, clips, args.repeats))
            print(f"  {name}: RTF {rows[-1]['rtf']:.4f}, WER {rows[-1]['wer']:.2%}", flush=True)
    if not args.no_pocketsphinx:
        try:
            torch.set_num_threads(1)
            rows.append(run_config("pocketsphinx en-us", make_pocketsphinx(), clips, args.repeats))
        except ImportError:
            print("note: pocketsphinx not installed (pip install pocketsphinx); skipping it")

    print()
    common.print_table(rows, ["config", "rtf", "x_realtime", "wer", "seconds"])
    ratios = ratio_lines(rows)
    print("\n" + "\n".join(ratios))
    common.write_json(
        args.out,
        "rtf",
        {
            "machine": common.machine(),
            "model": model_name,
            "clips": source,
            "n_clips": len(clips),
            "audio_seconds": audio,
            "chunk_seconds": CHUNK_SECONDS,
            "repeats": args.repeats,
            "results": rows,
            "ratios": ratios,
        },
    )
    return 0


def ratio_lines(rows: list[dict]) -> list[str]:
    by_name = {r["config"]: r for r in rows}
    lines = []
    ps = by_name.get("pocketsphinx en-us")
    base = by_name.get("ours torch fp32 1t")
    for r in rows:
        if r is ps:
            continue
        if ps:
            lines.append(
                f"{r['config']} is {ps['rtf'] / r['rtf']:.1f}x faster than pocketsphinx (WER {r['wer']:.1%} vs {ps['wer']:.1%})"
            )
        if base and r is not base:
            lines.append(f"{r['config']} runs at {base['rtf'] / r['rtf']:.2f}x the speed of ours torch fp32 1t")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
