"""gru-asr: streaming speech recognition with a unidirectional GRU and CTC.

import asr
model = asr.load_model()                 # the embedded default model, or a path
result = asr.transcribe(model, "a.wav")  # {"text", "words": [{word, start, end, conf}], "duration"}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from asr.audio import SAMPLE_RATE, LogMel
from asr.checkpoint import CheckpointError, load_checkpoint
from asr.decoding import GreedyDecoder, clip_word_times, delay_word_times

__all__ = [
    "load_model",
    "transcribe",
    "default_model_path",
    "ModelNotFoundError",
    "CheckpointError",
    "Recognizer",
    "DecodingConfig",
]
__version__ = "0.1.0"

DEFAULT_MODEL = Path(__file__).parent / "assets" / "default_en.pt"
TRANSCRIBE_CHUNK_FRAMES = 3000  # feature frames (30 s) per model step in `transcribe`: bounds memory on long files
TRANSCRIBE_BLOCK_SECONDS = 30.0  # audio `transcribe` reads, resamples and turns into features at a time


class ModelNotFoundError(FileNotFoundError):
    pass


def default_model_path() -> Path:
    return DEFAULT_MODEL


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r} (want auto, cpu, cuda or cuda:N)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was asked for but torch sees no GPU (use --device cpu)")
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not supported (want auto, cpu, cuda or cuda:N)")
    return resolved


def load_model(path=None, device: str = "auto"):
    """Load a model (default: the embedded bundle) onto `device` ("auto", "cpu", "cuda").

    A `.onnx` file runs on ONNX Runtime (CPU) and a `.ts` file is an exported TorchScript step
    (`asr export`); both behave like the bundle for `transcribe`, `Recognizer` and the server.
    A name (`asr adapt --name NAME`) is a model in `asr.user_models.models_dir()`; "default" the embedded one.
    """
    from asr import user_models

    path = user_models.resolve(path)
    if path is not None and str(path).endswith((".onnx", ".ts", ".torchscript", ".jit")):
        from asr.export import load_any

        return load_any(path)
    if path is None:
        path = DEFAULT_MODEL
        if not path.exists():
            raise ModelNotFoundError(
                "no model installed: the embedded default model is missing from asr/assets "
                "(train one with recipes/default_en/prepare.sh, or pass --model PATH)"
            )
    return load_checkpoint(path, device=resolve_device(device))


@torch.inference_mode()
def transcribe(model, audio, sample_rate: int | None = None, decoding=None, progress: bool = False) -> dict:
    """Transcribe a file path or an array of samples (at `sample_rate`, default 16 kHz).

    Returns {"text", "words": [{"word", "start", "end", "conf"}], "duration"}. The audio is decoded with
    `asr.audio.TAIL_PADDING` seconds of silence after it, as a stream's final result is, as one utterance;
    `decoding` (an `asr.DecodingConfig`; default beam search with the general English LM) says how. A file is
    read, resampled and turned into features TRANSCRIBE_BLOCK_SECONDS at a time (the streaming frontend: the
    same features as over the whole signal), so memory does not grow with its length; `progress` shows a
    progress bar (on stderr) over its audio.
    """
    from asr.audio import TAIL_PADDING, MelStream, audio_blocks
    from asr.decoding_config import DecodingConfig

    estimate, blocks = audio_blocks(audio, sample_rate, TRANSCRIBE_BLOCK_SECONDS)  # estimate: for the bar
    device = next(model.parameters()).device
    factory = (decoding or DecodingConfig()).beam_factory(model.tokens)
    beam = factory() if factory else None
    if beam:
        beam.frame_shift = model.config.frame_shift
        beam.begin()
    mel = MelStream(LogMel().to(device))
    decoder = GreedyDecoder(model.tokens, model.config.frame_shift)
    state = model.init_state(1, device)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=round(estimate, 1), unit="s", desc="transcribe", leave=False, delay=1.0)

    def run(samples: np.ndarray) -> None:
        nonlocal state
        feats = mel.accept(torch.from_numpy(samples).to(device))
        for start in range(0, feats.shape[0], TRANSCRIBE_CHUNK_FRAMES):
            log_probs, state = model.step(feats[None, start : start + TRANSCRIBE_CHUNK_FRAMES], state)
            log_probs = log_probs[0].float().cpu()
            if beam:
                beam.step(log_probs)
            else:
                decoder.accept(log_probs)

    seen = 0
    for block in blocks:
        run(block)
        seen += len(block)
        if bar is not None:
            bar.update(round(min(seen / SAMPLE_RATE, estimate) - bar.n, 1))
    if seen:  # as a stream without audio, nothing to finish
        run(np.zeros(int(TAIL_PADDING * SAMPLE_RATE), np.float32))
    if bar is not None:
        bar.close()
    duration = seen / SAMPLE_RATE  # decoded, not the header's count (an MP3's is an estimate)
    words = beam.end()[0]["words"] if beam else decoder.words()
    words = clip_word_times(delay_word_times(words, model.config.output_delay), duration)
    return {"text": " ".join(w["word"] for w in words), "words": words, "duration": duration}


def __getattr__(name):
    if name == "Recognizer":  # imported lazily: the streaming module is heavier
        from asr.stream import Recognizer

        return Recognizer
    if name == "DecodingConfig":
        from asr.decoding_config import DecodingConfig

        return DecodingConfig
    raise AttributeError(name)
