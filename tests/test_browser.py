"""The browser page of `asr serve`, driven in headless Chromium through the DevTools protocol.

Chromium's fake microphone plays a WAV file (`--use-file-for-fake-audio-capture`)
into getUserMedia; the page's AudioWorklet sends it to the server; the transcript
shown on the page must match the offline transcript of the same file by the same
model. The server records what it receives: that must be the file nearly
unchanged (SNR), and the reference is the offline transcript of the file placed
as the page sent it (the first moments are lost while the page wires the
microphone to the worklet, and a random-weight model's gibberish changes when
the speech moves by a fraction of a frame). Not exactly: the live path resamples
block by block and ends utterances at endpoints, and where the AudioContext
does not run at the file's rate Chromium resamples it; hence a tolerance on the
character error rate. Chromium loops the file: it carries silence after the
speech, and the test clicks Stop inside that silence.

Set ASR_SCREENSHOT=path.png to keep a screenshot of the page (docs/browser.png).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from audio_env import cer, model_path, padded_clip, reference_transcript, stop_process
from conftest import random_model
from websockets.sync.client import connect

import asr
from server.config import ServerConfig
from server.running import BackgroundServer

LEAD, TRAIL = 0.5, 4.0  # seconds of silence around the speech in the fake microphone's file
STOP_AFTER_SPEECH = 1.5  # seconds after the speech ends to click Stop (well inside TRAIL)
MAX_CER = 0.2  # live vs offline transcript (see the module docstring)
MIN_SNR = 20.0  # dB: what the page sent must be the file nearly unchanged
TIMEOUT = 60.0  # seconds for any one step on a slow machine
TOKEN = "page-token"


def find_chromium() -> str:
    for name in (os.environ.get("ASR_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    pytest.skip("Chromium is not installed (apt-get install chromium)")


class Page:
    """A minimal DevTools protocol client for one page: evaluate, click, screenshot."""

    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)

    def call(self, method: str, **params) -> dict:
        cid = next(self.ids)
        self.ws.send(json.dumps({"id": cid, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=TIMEOUT))
            if message.get("id") == cid:  # events (no id) are ignored
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def eval(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = TIMEOUT):
        deadline = time.monotonic() + timeout
        while not (value := self.eval(expression)):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {expression} (status: {self.text('status')!r})")
            time.sleep(0.1)
        return value

    def text(self, element_id: str) -> str:
        return self.eval(f"document.getElementById({element_id!r}).innerText")

    def click(self, element_id: str) -> None:
        """A real mouse click (a user gesture, as getUserMedia and AudioContext like)."""
        box = self.eval(f"JSON.stringify(document.getElementById({element_id!r}).getBoundingClientRect())")
        rect = json.loads(box)
        x, y = rect["x"] + rect["width"] / 2, rect["y"] + rect["height"] / 2
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def screenshot(self, *paths: Path) -> None:
        import base64

        png = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        for path in paths:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(png)


def start_chromium(binary: str, clip: Path, profile: Path):
    """Headless Chromium with a fake microphone playing `clip`; (process, DevTools port)."""
    cmd = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={clip}",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=800,520",
        "about:blank",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    found, lines = [], []

    def read_stderr():
        for line in proc.stderr:
            lines.append(line)
            match = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if match:
                found.append(int(match.group(1)))

    threading.Thread(target=read_stderr, daemon=True).start()
    deadline = time.monotonic() + TIMEOUT
    while not found:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"Chromium did not start:\n{''.join(lines)[-2000:]}")
        time.sleep(0.1)
    return proc, found[0]


def page_target(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=TIMEOUT) as r:
        targets = json.load(r)
    return next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")


@pytest.fixture
def received(monkeypatch) -> list:
    """(sample rate, PCM bytes) of every audio message the server gets: what the page captured."""
    from server.connection import Connection

    messages, handle_audio = [], Connection.handle_audio

    async def recording(self, data):
        messages.append((self.rate, bytes(data)))
        return await handle_audio(self, data)

    monkeypatch.setattr(Connection, "handle_audio", recording)
    return messages


@pytest.mark.slow
def test_page_transcribes_fake_microphone(speech_wav, tmp_path, received):
    chromium = find_chromium()
    model = asr.load_model(model_path(tmp_path), device="cpu")
    # 44.1 kHz: the AudioContext's rate where there is no sound card, so Chromium need not resample the file
    clip = padded_clip(speech_wav, tmp_path / "mic.wav", LEAD, TRAIL, rate=44100)
    speech_end = sf.info(clip).duration - TRAIL
    shots = [tmp_path / "browser.png", *filter(None, [os.environ.get("ASR_SCREENSHOT")])]
    with BackgroundServer(model, ServerConfig(port=0, token=TOKEN)) as srv:
        proc, port = start_chromium(chromium, clip, tmp_path / "profile")
        try:
            with connect(page_target(port), max_size=None, open_timeout=TIMEOUT) as devtools:
                page = Page(devtools)
                url = f"{srv.url.replace('ws://', 'http://')}/?token={TOKEN}"  # the page passes the token on
                live = run_page(page, url, speech_end, shots)
        finally:
            stop_process(proc)
    assert received and len({rate for rate, _ in received}) == 1
    rate = received[0][0]
    captured = np.frombuffer(b"".join(data for _, data in received), "<i2").astype(np.float32) / 32768
    # What the page shows is what the recognizer makes of the audio the page sent ...
    sent = asr.transcribe(model, captured, sample_rate=rate)["text"]
    assert cer(sent, live) <= MAX_CER, (sent, live)
    # ... and that audio is the clip: faithfully on a quiet machine; on a loaded one Chromium's real-time
    # capture drops blocks, so there only a clearly positive SNR is required.
    offline, snr = reference_transcript(model, captured, rate, clip)
    assert snr > 0.5, f"the page did not send the clip (SNR {snr:.1f} dB at {rate} Hz)"
    if snr > MIN_SNR:
        assert cer(offline, live) <= MAX_CER, (offline, live)


def run_page(page: Page, url: str, speech_end: float, shots: list) -> str:
    """Start, wait for the speech to pass, stop: the transcript the page shows; screenshots to `shots`."""
    page.call("Page.navigate", url=url)
    page.wait_for("document.readyState === 'complete' && !!document.getElementById('toggle')")
    page.click("toggle")
    page.wait_for("document.getElementById('status').innerText.startsWith('listening')")
    time.sleep(speech_end + STOP_AFTER_SPEECH)  # the file loops: stop inside its trailing silence
    page.click("toggle")
    page.wait_for("document.getElementById('status').innerText === 'stopped'")
    page.screenshot(*shots)
    assert page.text("toggle") == "Start"
    return " ".join(page.text("final").split())


def test_page_and_scripts_are_served_with_their_types(tmp_path):
    model = random_model(0, hidden_size=16, num_layers=1, conv_channels=8)
    with BackgroundServer(model, ServerConfig(port=0)) as srv:
        base = srv.url.replace("ws://", "http://")
        for path, kind in (("/", "text/html"), ("/app.js", "javascript"), ("/capture-worklet.js", "javascript")):
            with urllib.request.urlopen(base + path, timeout=TIMEOUT) as r:
                assert r.status == 200 and kind in r.headers["Content-Type"], (path, r.headers["Content-Type"])
                body = r.read().decode()
        assert "registerProcessor" in body
