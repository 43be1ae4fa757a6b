"""Where a clip falls on the model's frame grid, against the one-stream rows: what a stream of utterances costs.

    python benchmarks/frame_phase.py                                   # real_en_16k, 8 positions (a few minutes)
    python benchmarks/frame_phase.py --sets real_en_16k so762_dev --shifts 4

The model hears 10 ms feature frames, four to an output frame (40 ms), from the first sample it is given. A clip
decoded alone starts on that grid at its first sample; in a stream of utterances each one falls wherever the audio
before it puts it. Per set, default decoding (`asr.transcribe`, as `benchmarks/accuracy.py`'s `default`), WER of:
  alone +N ms    the clips one by one, each after N ms of digital silence: --shifts positions spread evenly over
                 one output frame (0, 5, ..., 35 ms for 8), then their mean, lowest and highest
  stream-silence / stream-noise   benchmarks/accuracy.py's one-stream systems (1.5 s of digital silence, or 3 s of
                 -50 dBFS noise, before each clip; one Recognizer)
  stream's places, alone   the clips one by one, each after the lead it has in the silence stream (1.2 s of digital
                 silence plus its position on the grid) and 1.5 s of silence after it: equal, clip for clip, to
                 stream-silence where the stream carries nothing from one utterance into the next
Writes every figure, each clip's hypotheses and the command line to --out (default
benchmarks/results/frame_phase.json).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

import accuracy
import common
import numpy as np
import torch

import asr
from asr.audio import SAMPLE_RATE
from asr.audio.frontend import HOP_LENGTH
from asr.decode.config import DecodingConfig
from asr.model.tokenizer import normalize_text

STREAM_GAP = accuracy.STREAM_GAPS["stream-silence"][0]  # seconds of digital silence before each clip there
PLACE_LEAD = 1.2  # seconds of digital silence before a clip in "stream's places, alone" (then its grid offset)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_model_argument(p)
    p.add_argument("--sets", nargs="+", default=["real_en_16k"], metavar="SET", help="default: real_en_16k")
    p.add_argument("--shifts", type=int, default=8, help="positions over one output frame (default 8)")
    p.add_argument(
        "--manifests", type=Path, default=None, help="folder of <set>.jsonl (default: made from shared data)"
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--limit", type=int, default=0, help="the first N clips of each set (default 0: all)")
    args = p.parse_args(argv)
    args.synth_manifests = None
    if args.shifts < 1:
        sys.exit("error: --shifts must be at least 1")
    if args.limit < 0:
        sys.exit("error: --limit must be >= 0")
    for name in args.sets:
        if name not in accuracy.REAL_SETS and name not in accuracy.DERIVED_SETS:
            sys.exit(f"error: unknown set {name!r} (sets: {', '.join([*accuracy.REAL_SETS, *accuracy.DERIVED_SETS])})")
    return args


def stream_places(clips: list[np.ndarray]) -> list[int]:
    """The sample at which each clip starts in accuracy.py's silence stream."""
    starts, t = [], 0
    for samples in clips:
        t += int(STREAM_GAP * SAMPLE_RATE)
        starts.append(t)
        t += len(samples)
    return starts


def wer(refs: list[str], hyps: list[str]) -> float:
    return round(100 * accuracy.score(refs, [normalize_text(h) for h in hyps])["wer"], 2)


def measure_set(model, config, entries: list[dict], audio: dict, shifts: int) -> dict:
    from tqdm import tqdm

    frame = model.config.subsampling * HOP_LENGTH  # samples of one output frame (the grid)

    clips = [audio[e["audio"]] for e in entries]
    refs = [normalize_text(e["text"]) for e in entries]

    def alone(leads, desc, tail=0):
        return [
            asr.transcribe(
                model, np.concatenate([np.zeros(lead, np.float32), c, np.zeros(tail, np.float32)]), decoding=config
            )["text"]
            for lead, c in tqdm(list(zip(leads, clips)), desc=desc, unit="utt", file=sys.stderr, leave=False)
        ]

    rows, hyps = {}, {}
    for k in range(shifts):
        shift = k * frame // shifts
        name = f"alone +{1000 * shift / SAMPLE_RATE:g} ms"
        hyps[name] = alone([shift] * len(clips), name)
        rows[name] = wer(refs, hyps[name])
    positions = list(rows.values())
    rows["alone, mean of the positions"] = round(sum(positions) / len(positions), 2)
    rows["alone, lowest"], rows["alone, highest"] = min(positions), max(positions)
    for name in accuracy.STREAM_GAPS:
        decode, _ = accuracy.one_stream_system(name, model)
        hyps[name] = decode(clips)
        rows[name] = wer(refs, hyps[name])
    lead = round(PLACE_LEAD * SAMPLE_RATE) // frame * frame
    leads = [lead + start % frame for start in stream_places(clips)]
    name = "stream's places, alone"
    hyps[name] = alone(leads, name, tail=int(STREAM_GAP * SAMPLE_RATE))
    rows[name] = wer(refs, hyps[name])
    same = sum(normalize_text(a) == normalize_text(b) for a, b in zip(hyps[name], hyps["stream-silence"]))
    return {
        "wer": rows,
        "stream_silence_equals_places_alone": f"{same} of {len(clips)} clips",
        "clips": [
            {"id": e["id"], "ref": r, **{n: h[i] for n, h in hyps.items()}}
            for i, (e, r) in enumerate(zip(entries, refs))
        ],
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model, model_path = common.load_model(args.model)
    config = DecodingConfig().resolved()
    notes, results = [], {}
    with tempfile.TemporaryDirectory(prefix="frame_phase_") as tmp:
        folder = args.manifests
        if folder is None:
            if not accuracy.DATA.is_dir():
                sys.exit(f"error: shared data not found at {accuracy.DATA} (clone ../shared beside the project)")
            folder = Path(tmp) / "manifests"
            accuracy.make_manifests(folder)
        sets, audio = accuracy.load_sets(accuracy.manifest_paths(args, folder, notes, Path(tmp)), args.limit, notes)
        for set_name, entries in sets.items():
            results[set_name] = measure_set(model, config, entries, audio, args.shifts)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if not results:
        sys.exit("error: none of the sets asked for could be read")
    names = list(next(iter(results.values()))["wer"])
    print(f"\nDefault decoding WER %, {config.describe()}\n")
    print("| | " + " | ".join(results) + " |\n|---|" + "---|" * len(results))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{r['wer'][name]:.1f}" for r in results.values()) + " |")
    for set_name, r in results.items():
        print(
            f"{set_name}: stream-silence equals the stream's places alone for {r['stream_silence_equals_places_alone']}"
        )
    command = "python benchmarks/frame_phase.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    data = {"command": command.strip(), "machine": common.machine(), "model": model_path}
    data.update(decoding=config.describe(), shifts=args.shifts, notes=notes, sets=results)
    common.write_json(args.out, "frame_phase", data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
