"""A bank of simulated room impulse responses for training-time reverberation (issue 31, item 3): shoebox rooms by
pyroomacoustics' image-source method, so `asr train --rooms BANK` reverberates with responses of real geometry
(early reflections, walls of one absorption, the talker 0.3-4 m from the microphone) rather than asr.audio.augment's
synthetic_rir (an exponentially decaying noise tail).

    python recipes/default_en/local/make_rooms.py OUT.npz [--count 400] [--rt60 0.15 0.9] [--seed 0]

Each room: width 3-10 m, depth 3-8 m, height 2.4-4 m, a reverberation time (RT60) drawn uniformly from --rt60, the
walls' absorption from Sabine's formula for it (pyroomacoustics.inverse_sabine); a source and a microphone at least
0.5 m from every wall, 0.3-4 m apart. Each response starts at its direct path (so reverberated speech keeps its
transcript's and the teacher targets' timing), is cut at MAX_SECONDS and scaled to unit energy. OUT holds `rirs`
(N, L) float32 zero-padded, `lengths`, `rt60` (the room's, seconds) and `distance` (metres). Needs pyroomacoustics
(pip install pyroomacoustics==0.10.1; a recipe tool, never used by asr/ or server/ at run time).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

RATE = 16000
MAX_SECONDS = 1.0  # of each response (RT60 up to 0.9 s: by then the tail is 60 dB down)
MAX_ORDER = 25  # image-source reflections; beyond it the tail is (inaudibly) truncated
WALL_MARGIN = 0.5  # metres between the source or microphone and any wall
DISTANCE = (0.3, 4.0)  # metres between source and microphone


def _position(dims: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(WALL_MARGIN, dims - WALL_MARGIN)


def room_response(rt60: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """(response from the direct path on, unit energy; source-microphone distance) of one random room."""
    import pyroomacoustics as pra

    while True:
        dims = np.array([rng.uniform(3, 10), rng.uniform(3, 8), rng.uniform(2.4, 4)])
        try:
            absorption, order = pra.inverse_sabine(rt60, dims)
        except ValueError:  # a room too large for so short a reverberation time: another room
            continue
        source, mic = _position(dims, rng), _position(dims, rng)
        distance = float(np.linalg.norm(source - mic))
        if not DISTANCE[0] <= distance <= DISTANCE[1]:
            continue
        room = pra.ShoeBox(dims, fs=RATE, materials=pra.Material(absorption), max_order=min(order, MAX_ORDER))
        room.add_source(source)
        room.add_microphone(mic)
        room.compute_rir()
        rir = np.asarray(room.rir[0][0], dtype=np.float64)
        start = int(np.argmax(np.abs(rir)))  # the direct path: the shortest and loudest arrival
        rir = rir[start : start + int(MAX_SECONDS * RATE)]
        return (rir / np.sqrt(np.sum(rir**2))).astype(np.float32), distance


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="the bank to write (.npz)")
    p.add_argument("--count", type=int, default=400, help="rooms (default 400)")
    p.add_argument("--rt60", type=float, nargs=2, default=(0.15, 0.9), help="RT60 range, seconds (default 0.15 0.9)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        import pyroomacoustics  # noqa: F401
    except ImportError:
        print("make_rooms.py: needs pyroomacoustics (pip install pyroomacoustics==0.10.1)", file=sys.stderr)
        return 2
    if args.count < 1 or not 0 < args.rt60[0] <= args.rt60[1]:
        p.error("--count must be >= 1 and --rt60 LOW HIGH with 0 < LOW <= HIGH")
    rng = np.random.default_rng(args.seed)
    rirs, rt60s, distances = [], [], []
    for _ in tqdm(range(args.count), desc="rooms", unit="room"):
        rt60 = float(rng.uniform(*args.rt60))
        rir, distance = room_response(rt60, rng)
        rirs.append(rir)
        rt60s.append(rt60)
        distances.append(distance)
    lengths = np.array([len(r) for r in rirs])
    bank = np.zeros((len(rirs), lengths.max()), np.float32)
    for row, rir in zip(bank, rirs, strict=True):
        row[: len(rir)] = rir
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp.npz")
    np.savez_compressed(tmp, rirs=bank, lengths=lengths, rt60=np.array(rt60s), distance=np.array(distances))
    tmp.replace(args.out)
    print(
        f"{args.out}: {len(rirs)} rooms, RT60 {min(rt60s):.2f}-{max(rt60s):.2f} s, {min(distances):.1f}-"
        f"{max(distances):.1f} m",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
