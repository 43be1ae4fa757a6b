"""Shared fixtures: the real speech in ../shared/data and speech synthesized with espeak-ng."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
# AugmentConfig fields that turn every default-on augmentation off (a test turns on the ones it checks)
AUGMENT_OFF = dict(speed_prob=0.0, noise_prob=0.0, reverb_prob=0.0, bandlimit_prob=0.0, gain_prob=0.0, specaug_prob=0.0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout; tests that need it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real speech data not found at {SHARED_DATA} (clone ../shared beside the project)")
    return SHARED_DATA


def synthesize(text: str, path: Path, voice: str = "en-us", speed: int = 160) -> Path:
    """Speak `text` with espeak-ng into a WAV file (22.05 kHz mono, as espeak writes it)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
    return path


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> Path:
    """A short synthesized English sentence."""
    return synthesize("the quick brown fox jumps over the lazy dog", tmp_path_factory.mktemp("tts") / "fox.wav")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def default_model():
    """The embedded default model on the CPU; tests that need it skip where it is not installed."""
    import asr

    try:
        return asr.load_model(device="cpu")
    except asr.ModelNotFoundError:
        pytest.skip("the embedded default model is not installed")


def json_objects(text: str) -> list[dict]:
    """The JSON objects printed one after another (Vosk prints them indented, over several lines)."""
    decoder, out, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        obj, i = decoder.raw_decode(text, i)
        out.append(obj)
    return out


def random_model(seed: int, **config):
    """A small GRUCTC with seeded random weights, in eval mode (hidden 48, 2 layers, 32 conv channels unless
    `config` says otherwise): its output is gibberish, but gibberish that must not depend on how the audio is
    cut or which batch a stream ran in, which is what the stream and server tests check."""
    import torch

    from asr.model.network import GRUCTC, ModelConfig

    torch.manual_seed(seed)
    return GRUCTC(ModelConfig(**{"hidden_size": 48, "num_layers": 2, "conv_channels": 32, **config})).eval()


def make_asterisk_tree(root: Path) -> Path:
    """What Debian's asterisk-core-sounds-en(-wav) unpack to, in miniature: three 1 s recordings, one broken
    file, transcripts with a comment, a sound description, symbols and a missing recording."""
    import gzip

    import soundfile as sf

    sounds = root / "usr/share/asterisk/sounds/en_US_f_Allison"
    (sounds / "digits").mkdir(parents=True)
    for name in ("auth-thankyou", "digits/5", "vm-press"):
        sf.write(sounds / f"{name}.wav", np.zeros(8000, np.float32), 8000)
    (sounds / "broken.wav").write_bytes(b"RIFF not really")
    doc = root / "usr/share/doc/asterisk-core-sounds-en"
    doc.mkdir(parents=True)
    text = "; Core Asterisk Sounds in English\n\nauth-thankyou: Thank you.\ndigits/5: five\nbeep: [a beep tone]\n"
    text += "vm-press: Press * to cancel, or # to save.\nbroken: Broken.\nmissing: Not here.\n"
    with gzip.open(doc / "core-sounds-en.txt.gz", "wt") as f:
        f.write(text)
    return root


def make_self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A one-day self-signed certificate for 127.0.0.1 and localhost (openssl): (cert.pem, key.pem)."""
    import subprocess

    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"]
        + ["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key
