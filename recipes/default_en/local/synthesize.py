#!/usr/bin/env python3
"""Synthesise the text corpus with every offline English voice on this machine.

Voices: espeak-ng English dialects x voice variants (`en-us+f3`), MBROLA
voices through espeak-ng (`mb-us1` ...; Debian contrib/non-free packages, used
when installed) and flite voices ("robotic"), and the natural-sounding voices of
natural_voices.py (RHVoice, SVOX Pico, Festival HTS, Piper, hibari; used when
installed), each utterance with a random rate and pitch. `--voices` picks the
engines' shares: "natural" (default: most utterances from the natural voices)
or "robotic" (rounds 1-3: espeak-ng, flite and mbrola only).
Held out entirely from training (HELD_OUT): one flite voice, one espeak dialect
and one espeak variant; together they speak synth_unseen_voice.jsonl. One
natural voice (HELD_OUT_NATURAL, RHVoice clb) speaks synth_unseen_natural.jsonl
(the same sentences) and nothing else, when it is installed.

Audio: loaded at 16 kHz mono, leading/trailing silence trimmed to a random
50-300 ms, a faint noise floor added (40-70 dB below peak) and peak-normalised
to a random gain; written as 16-bit WAV to WORK/synth/wav/<id>.wav. Existing
wavs are kept, so an interrupted run resumes. All random choices are drawn up
front from --seed, so the output does not depend on --nj.

Manifests (WORK/manifests): synth_train.jsonl (first --num-train sentences of
train.txt, training voices), synth_test.jsonl (test.txt, training voices),
synth_unseen_voice.jsonl (first --num-unseen sentences of test.txt, held-out
voices).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import natural_voices
import numpy as np
import soundfile as sf
from tqdm import tqdm

from asr.audio import SAMPLE_RATE
from asr.audio.files import load_audio

HELD_OUT = {"flite": "rms", "dialect": "en-029", "variant": "f4"}
# Variants that are not speech-like enough to train on (whisper, effects, speed test).
BAD_VARIANTS = {
    "whisper",
    "whisperf",
    "Demonic",
    "announcer",
    "UniRobot",
    "anikaRobot",
    "fast",
    "Tweaky",
    "Mr serious",
    "croak",
}
FLITE_LIMITED = {"awb_time"}  # limited-domain voice: can only say the time
MBROLA = ["us1", "us2", "us3", "en1"]
HELD_OUT_NATURAL = ("rhvoice", "clb")
# each engine's share of the utterances (renormalised over the engines installed)
ENGINE_WEIGHTS = {
    "robotic": {"espeak": 0.5, "flite": 0.3, "mbrola": 0.2},
    "natural": {
        "espeak": 0.12,
        "flite": 0.08,
        "mbrola": 0.05,
        "rhvoice": 0.25,
        "pico": 0.12,
        "hts": 0.08,
        "piper": 0.15,
        "hibari": 0.15,
    },
}


def _run(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def find_voices() -> dict:
    """Voices on this machine: {'dialects': [...], 'variants': [...], 'mbrola': [...], 'flite': [...]} and
    the natural engines found (natural_voices.find(): {'rhvoice': [...], ...})."""
    if not shutil.which("espeak-ng"):
        sys.exit("error: espeak-ng not found (apt-get install espeak-ng)")
    rows = [ln.split() for ln in _run(["espeak-ng", "--voices=en"]).splitlines()[1:]]
    dialects = sorted({r[1] for r in rows if len(r) > 4 and r[4].startswith("gmw/")})
    variants = sorted(
        {
            ln[ln.index("!v/") + 3 :].split("  ")[0].strip()
            for ln in _run(["espeak-ng", "--voices=variant"]).splitlines()
            if "!v/" in ln
        }
    )
    variants = [v for v in variants if v not in BAD_VARIANTS]
    mbrola = [v for v in MBROLA if Path("/usr/share/mbrola", v, v).exists() and shutil.which("mbrola")]
    flite = []
    if shutil.which("flite"):
        flite = [v for v in _run(["flite", "-lv"]).split(":", 1)[1].split() if v not in FLITE_LIMITED]
    return {"dialects": dialects, "variants": variants, "mbrola": mbrola, "flite": flite, **natural_voices.find()}


def pick_voice(voices: dict, r: random.Random, held_out: bool | str, weights: dict | None = None) -> dict:
    """A random voice and its rate/pitch settings; `held_out` True picks only the held-out robotic voices,
    "natural" the held-out natural one; `weights` are the engines' shares (ENGINE_WEIGHTS["robotic"])."""
    weights = weights or ENGINE_WEIGHTS["robotic"]
    if held_out == "natural":
        engine, name = HELD_OUT_NATURAL
    elif held_out:
        engine = r.choice(["flite", "espeak"])
        name = HELD_OUT["flite"] if engine == "flite" else f"{HELD_OUT['dialect']}+{HELD_OUT['variant']}"
    else:
        engines = [e for e in weights if voices.get("dialects" if e == "espeak" else e)]
        engine = r.choices(engines, weights=[weights[e] for e in engines])[0]
        if engine == "espeak":
            name = f"{r.choice(voices['dialects'])}+{r.choice(voices['variants'])}"
        else:
            name = r.choice(voices[engine])
    return {
        "engine": engine,
        "voice": name,
        "rate": r.randint(110, 190),  # words per minute (espeak default 175)
        "pitch": r.randint(20, 80),
        "stretch": round(r.uniform(0.85, 1.4), 3),  # flite duration_stretch
        "pad": (r.uniform(0.05, 0.3), r.uniform(0.05, 0.3)),
        "noise_db": r.uniform(40, 70),
        "gain": r.uniform(0.2, 0.95),
        "seed": r.randrange(2**31),
    }


def synth_command(job: dict, out: str) -> list[str] | None:
    """The command line that writes job's raw audio to out (None: a natural voice rendered in-process)."""
    if job["engine"] in natural_voices.ENGINES:
        return natural_voices.command(job, out)
    if job["engine"] == "flite":
        return [
            "flite",
            "-voice",
            job["voice"],
            "--setf",
            f"duration_stretch={job['stretch']}",
            "-t",
            job["text"],
            "-o",
            out,
        ]
    voice, rate = job["voice"], job["rate"]
    if job["engine"] == "mbrola":
        voice, rate = "mb-" + voice, int(rate * 0.85)  # mbrola speaks about 20% faster at the same -s
    return ["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(job["pitch"]), "-w", out, job["text"]]


def postprocess(x: np.ndarray, job: dict) -> np.ndarray:
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak < 1e-4:
        raise ValueError("silent output")
    loud = np.flatnonzero(np.abs(x) > 0.02 * peak)
    x = x[loud[0] : loud[-1] + 1]
    pad = [np.zeros(int(p * SAMPLE_RATE), np.float32) for p in job["pad"]]
    x = np.concatenate([pad[0], x, pad[1]])
    rng = np.random.default_rng(job["seed"])
    x = x + rng.normal(0, peak * 10 ** (-job["noise_db"] / 20), x.size).astype(np.float32)
    return (x * (job["gain"] / np.abs(x).max())).astype(np.float32)


def synthesize(job: dict) -> dict | str:
    """Make one wav; returns its manifest row, or an error line."""
    wav = Path(job["wav"])
    try:
        if not wav.exists():
            with tempfile.TemporaryDirectory() as tmp:
                raw = os.path.join(tmp, "raw.wav")
                if job["engine"] in natural_voices.ENGINES:
                    natural_voices.render(job, raw)
                else:
                    subprocess.run(synth_command(job, raw), capture_output=True, check=True, timeout=60)
                x = postprocess(load_audio(raw), job)
            sf.write(str(wav) + ".tmp.wav", x, SAMPLE_RATE, subtype="PCM_16")
            os.replace(str(wav) + ".tmp.wav", wav)
        duration = sf.info(str(wav)).duration
    except Exception as exc:  # a failed voice is reported and skipped, not fatal
        return f"{job['id']} ({job['speaker']}): {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    return {
        "id": job["id"],
        "audio": os.path.relpath(wav, job["manifest_dir"]),
        "duration": round(duration, 3),
        "text": job["text"],
        "speaker": job["speaker"],
    }


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--text", type=Path, required=True, help="folder with train.txt and test.txt")
    ap.add_argument("--out", type=Path, required=True, help="WORK folder: writes synth/wav and manifests")
    ap.add_argument("--num-train", type=int, default=5000)
    ap.add_argument("--num-unseen", type=int, default=100)
    ap.add_argument("--num-test", type=int, default=0, help="test sentences to synthesise (0: all of test.txt)")
    ap.add_argument("--nj", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--voices", choices=sorted(ENGINE_WEIGHTS), default="natural", help="the engines' shares")
    args = ap.parse_args()

    voices = find_voices()
    if HELD_OUT["flite"] not in voices["flite"] or HELD_OUT["dialect"] not in voices["dialects"]:
        sys.exit(f"error: held-out voices {HELD_OUT} not all installed (flite, espeak-ng)")
    voices["flite"].remove(HELD_OUT["flite"])
    voices["dialects"].remove(HELD_OUT["dialect"])
    voices["variants"] = [v for v in voices["variants"] if v != HELD_OUT["variant"]]
    weights = ENGINE_WEIGHTS[args.voices]
    held_natural = HELD_OUT_NATURAL[1] in voices.get(HELD_OUT_NATURAL[0], [])
    if held_natural:
        voices[HELD_OUT_NATURAL[0]] = [v for v in voices[HELD_OUT_NATURAL[0]] if v != HELD_OUT_NATURAL[1]]
    natural = {e: voices[e] for e in natural_voices.ENGINES if voices.get(e) and weights.get(e)}
    print(
        f"training voices ({args.voices}): espeak {len(voices['dialects'])} dialects x {len(voices['variants'])} "
        f"variants, mbrola {voices['mbrola']}, flite {voices['flite']}, natural {natural or 'none'}; "
        f"held out: {HELD_OUT}{', ' + ':'.join(HELD_OUT_NATURAL) if held_natural else ''}"
    )
    if args.voices == "natural" and not natural:
        print("warning: no natural voice installed (install_voices.sh, pip install '.[voices]'): robotic voices only")

    train = (args.text / "train.txt").read_text().split("\n")
    test = [t for t in (args.text / "test.txt").read_text().split("\n") if t]
    test = test[: args.num_test] if args.num_test else test
    train = [t for t in train if t][: args.num_train]
    sets = {
        "synth_train": (train, False),
        "synth_test": (test, False),
        "synth_unseen_voice": (test[: args.num_unseen], True),
    }
    if held_natural:
        sets["synth_unseen_natural"] = (test[: args.num_unseen], "natural")

    manifests, wav_dir = args.out / "manifests", args.out / "synth" / "wav"
    manifests.mkdir(parents=True, exist_ok=True)
    wav_dir.mkdir(parents=True, exist_ok=True)
    r = random.Random(args.seed)
    jobs = []
    for name, (texts, held_out) in sets.items():
        for i, text in enumerate(texts):
            job = pick_voice(voices, r, held_out, weights)
            uid = f"{name}_{i:06d}"
            job.update(
                id=uid,
                set=name,
                text=text,
                wav=str(wav_dir / f"{uid}.wav"),
                manifest_dir=str(manifests),
                speaker=f"{job['engine']}:{job['voice']}",
            )
            jobs.append(job)

    rows: dict[str, list[dict]] = {name: [] for name in sets}
    errors = []
    with multiprocessing.Pool(args.nj, initializer=_init_worker) as pool:
        results = tqdm(pool.imap(synthesize, jobs, chunksize=4), total=len(jobs), desc="synth")
        for job, row in zip(jobs, results, strict=True):
            if isinstance(row, dict):
                rows[job["set"]].append(row)
            else:
                errors.append(row)
    for err in errors[:10]:
        print(f"failed: {err}", file=sys.stderr)
    if len(errors) > 0.02 * len(jobs):
        sys.exit(f"error: {len(errors)} of {len(jobs)} utterances failed")
    for name, items in rows.items():
        with open(manifests / f"{name}.jsonl", "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in items)
        hours = sum(row["duration"] for row in items) / 3600
        print(f"{name}: {len(items)} utterances, {hours:.2f} h, {len({x['speaker'] for x in items})} voices")


if __name__ == "__main__":
    main()
