"""Helpers for the live-audio tests: a private PulseAudio with a null sink, the model to compare with, clips.

PulseAudio runs as a child of the test (its own runtime directory, no D-Bus, no
config files), with one null sink `asrtest` whose monitor is the default source:
what `paplay --device=asrtest` plays is what a program recording from the ALSA
device "pulse" hears. `norewinds=1` matters: with rewinds, the start of a new
playback is rewritten in the sink after the monitor has already passed it on,
and the recording loses pieces of the clip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import asr
from asr.audio.files import load_audio
from asr.audio.resample import resample
from asr.model.checkpoint import save_checkpoint
from asr.model.network import GRUCTC, ModelConfig
from asr.model.tokenizer import DEFAULT_TOKENS

SINK = "asrtest"  # the null sink the tests play into; its monitor is the microphone
SINK_RATE = 44100  # Hz of the sink (and of the clips played into it, so that PulseAudio need not resample)
START_TIMEOUT = 20.0  # seconds PulseAudio gets to come up


def model_path(tmp_dir: Path) -> Path:
    """The embedded default model when installed; else random weights (gibberish, but the same gibberish live)."""
    if asr.default_model_path().exists():
        return asr.default_model_path()
    torch.manual_seed(3)  # a seed whose gibberish is varied (some seeds say one letter for everything)
    path = tmp_dir / "random.pt"
    save_checkpoint(path, GRUCTC(ModelConfig(hidden_size=64, num_layers=2, conv_channels=32)), DEFAULT_TOKENS)
    return path


def padded_clip(speech: Path, out: Path, lead: float, trail: float, rate: int) -> Path:
    """`speech` at `rate` Hz with `lead` and `trail` seconds of silence, as a 16-bit WAV."""
    samples = resample(load_audio(speech), asr.audio.SAMPLE_RATE, rate)
    silence = [np.zeros(int(s * rate), np.float32) for s in (lead, trail)]
    sf.write(out, np.concatenate([silence[0], samples, silence[1]]), rate, subtype="PCM_16")
    return out


def place_like(captured: np.ndarray, clip: np.ndarray) -> tuple[np.ndarray, float]:
    """`clip` placed where it lies in `captured` (silence elsewhere), and how faithfully it was captured (dB SNR).

    Both at the same rate. The offline transcript of the placed clip is the reference for a live one: the
    model then hears the same leading silence as it did live, down to the sample. That matters for a
    random-weight model, whose gibberish changes when the speech moves by a fraction of a feature frame.
    """
    n = len(captured) + len(clip)
    corr = np.fft.irfft(np.fft.rfft(captured, n) * np.conj(np.fft.rfft(clip, n)), n)
    lag = int(np.argmax(corr))
    lag = lag - n if lag >= len(captured) else lag  # negative: the capture began after the clip did
    src = clip[max(0, -lag) :][: len(captured) - max(0, lag)]
    placed = np.zeros_like(captured)
    placed[max(0, lag) : max(0, lag) + len(src)] = src
    diff = captured - placed
    return placed, float(10 * np.log10((src @ src) / max(diff @ diff, 1e-12)))


def reference_transcript(model, captured: np.ndarray, rate: int, clip: Path) -> tuple[str, float]:
    """The offline transcript of `clip` placed as in `captured` (at `rate` Hz), and the capture's SNR in dB."""
    samples, clip_rate = sf.read(clip, dtype="float32")
    placed, snr = place_like(captured, resample(samples, clip_rate, rate))
    return asr.transcribe(model, placed, sample_rate=rate)["text"], snr


def cer(reference: str, hypothesis: str) -> float:
    import jiwer

    return jiwer.cer(reference, hypothesis) if reference else float(bool(hypothesis))


@contextlib.contextmanager
def pulseaudio(tmp_dir: Path):
    """A private PulseAudio with the null sink `asrtest`; yields the environment for its clients."""
    missing = [tool for tool in ("pulseaudio", "pactl", "paplay") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install pulseaudio pulseaudio-utils)")
    if not any(Path(d).joinpath("libasound_module_pcm_pulse.so").exists() for d in _alsa_plugin_dirs()):
        pytest.skip("ALSA's pulse plugin is not installed (apt-get install libasound2-plugins)")
    runtime = tmp_dir / "pulse-runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    socket = runtime / "native"
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "HOME": str(runtime), "PULSE_SERVER": f"unix:{socket}"}
    cmd = [
        "pulseaudio",
        "--daemonize=no",
        "-n",  # no default.pa: only the modules below
        "--exit-idle-time=-1",
        "--use-pid-file=no",
        "--log-target=stderr",
        f"--load=module-native-protocol-unix socket={socket} auth-anonymous=1",
        f"--load=module-null-sink sink_name={SINK} norewinds=1 rate={SINK_RATE} channels=1",
    ]
    log = runtime / "pulseaudio.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"PulseAudio did not start: {log.read_text().strip().splitlines()[-1:]}")
            time.sleep(0.2)
        subprocess.run(["pactl", "set-default-source", f"{SINK}.monitor"], env=env, check=True)
        yield env
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Terminate a helper process, killing it if it does not exit within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _alsa_plugin_dirs() -> list[str]:
    return [str(p) for p in Path("/usr/lib").glob("*/alsa-lib")] + ["/usr/lib/alsa-lib", "/usr/lib64/alsa-lib"]
