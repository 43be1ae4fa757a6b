"""`asr mic`: one-line errors, and live capture through a real PulseAudio null sink (local model and server).

The live tests play a speech clip into the null sink while `asr mic` records its
monitor through PortAudio -> ALSA "pulse" -> PulseAudio. The `--save`d
recording must hold the clip nearly unchanged (SNR), and the live transcript must
match the offline transcript of the clip made by the same model, with the clip
placed where the recording has it (capture starts a moment before playback: the
live model hears that silence first, and a random-weight model's gibberish
changes when the speech moves by a fraction of a frame). Not exactly: the live
path resamples block by block and ends utterances at endpoints, and a busy
machine may shift a block; hence a tolerance on the character error rate.
"""

from __future__ import annotations

import builtins
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import soundfile as sf
from audio_env import SINK, SINK_RATE, cer, model_path, padded_clip, pulseaudio, reference_transcript

import asr
from asr.apps.cli import main

MAX_CER = 0.2  # live vs offline transcript of the same clip (see the module docstring)
MIN_SNR = 20.0  # dB: the recording must carry the clip nearly unchanged
START_TIMEOUT = 90.0  # seconds for `asr mic` to load the model and open the device on a slow machine


def test_missing_portaudio_is_one_line(monkeypatch, capsys):
    real_import = builtins.__import__

    def no_portaudio(name, *args, **kwargs):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_portaudio)
    assert main(["mic", "--list-devices"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("asr: error: PortAudio is not installed") and err.endswith("apt-get install libportaudio2")


def test_no_input_device_is_one_line(monkeypatch, capsys):
    from asr.apps import mic

    class NoDevices:
        class default:
            device = (-1, -1)

    monkeypatch.setattr(mic, "import_sounddevice", lambda: NoDevices)
    assert main(["mic", "--seconds", "1"]) == 2
    assert capsys.readouterr().err.strip() == (
        "asr: error: no input device found: connect a microphone, or choose one from `asr mic --list-devices`"
    )
    NoDevices.query_devices = staticmethod(lambda: [{"name": "speakers", "max_input_channels": 0}])
    assert main(["mic", "--list-devices"]) == 0
    assert capsys.readouterr().out.startswith("no input devices found")


def test_unknown_device_is_one_line(capsys):
    pytest.importorskip("sounddevice", exc_type=OSError, reason="PortAudio is not installed")
    assert main(["mic", "--device", "no-such-device-here"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("asr: error: input device 'no-such-device-here':") and "asr mic --list-devices" in err
    assert len(err.splitlines()) == 1


# -- live, through PulseAudio ------------------------------------------------------------------


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    with pulseaudio(tmp_path_factory.mktemp("pulse")) as env:
        yield env


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return model_path(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def clip(speech_wav, tmp_path_factory):
    """The speech at the sink's rate: PulseAudio plays it without resampling."""
    return padded_clip(speech_wav, tmp_path_factory.mktemp("clip") / "clip.wav", 0.0, 0.0, SINK_RATE)


def run_mic(env, clip, *args, sigint_after: float | None = None) -> tuple[list[dict], str]:
    """Start `asr mic --device pulse --json ARGS`, play `clip` into the sink once it listens; its replies, stderr.

    With `sigint_after`, Ctrl-C it that many seconds after the clip ended.
    """
    cmd = [sys.executable, "-m", "asr.apps.cli", "mic", "--device", "pulse", "--json", *map(str, args)]
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.PIPE, text=True)
        listening, err = threading.Event(), []

        def read_stderr():
            for line in proc.stderr:
                err.append(line)
                if line.startswith("listening on"):
                    listening.set()

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        try:
            assert listening.wait(START_TIMEOUT), f"asr mic did not start listening: {''.join(err)}"
            subprocess.run(["paplay", f"--device={SINK}", str(clip)], env=env, check=True, timeout=60)
            if sigint_after is not None:
                time.sleep(sigint_after)
                proc.send_signal(signal.SIGINT)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        reader.join(5)
        assert proc.returncode == 0, "".join(err)
        out.seek(0)
        return [json.loads(line) for line in out.read().splitlines()], "".join(err)


def live_text(replies: list[dict]) -> str:
    assert replies and "text" in replies[-1], replies  # the last line is the final result
    return " ".join(r["text"] for r in replies if r.get("text"))


@pytest.mark.slow
def test_live_mic_with_local_model_matches_offline(pulse, model_file, clip, tmp_path):
    model = asr.load_model(model_file, device="cpu")  # the same model makes the offline reference
    captured = tmp_path / "captured.wav"
    seconds = sf.info(clip).duration + 3.0  # the clip, with time for paplay to start on a busy machine
    replies, err = run_mic(pulse, clip, "--model", model_file, "--cpu", "--seconds", seconds, "--save", captured)
    check_transcript(model, live_text(replies), captured, clip)
    assert any("partial" in r for r in replies)  # partials came while it listened
    assert "stopped after" in err


@pytest.mark.slow
def test_live_mic_against_server_until_ctrl_c(pulse, model_file, clip, tmp_path):
    from server.config import ServerConfig
    from server.running import BackgroundServer

    model = asr.load_model(model_file, device="cpu")
    captured = tmp_path / "captured.wav"
    with BackgroundServer(model, ServerConfig(port=0)) as srv:
        replies, err = run_mic(pulse, clip, "--server", srv.url, "--save", captured, sigint_after=1.5)
    check_transcript(model, live_text(replies), captured, clip)  # Ctrl-C still gave the final result, exit 0
    assert "Traceback" not in err


def check_transcript(model, live: str, captured: Path, clip: Path) -> None:
    samples, rate = sf.read(captured, dtype="float32")
    offline, snr = reference_transcript(model, samples, rate, clip)
    assert snr > MIN_SNR, f"the capture does not hold the clip faithfully (SNR {snr:.1f} dB)"
    assert cer(offline, live) <= MAX_CER, (offline, live)
