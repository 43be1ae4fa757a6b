"""Transcribing a whole file or array: `asr.transcribe` (the `asr transcribe` command), through the streaming path.

A file goes through the same `BatchEngine` and `Stream` as a live stream, with the same endpoints and restarts
of the model state, so `asr transcribe` and streaming the file give the same text; the utterances' results are
joined.
"""

from __future__ import annotations

import torch

from asr.audio import SAMPLE_RATE
from asr.audio.files import audio_blocks
from asr.decode.config import DecodingConfig
from asr.stream.endpoint import EndpointConfig
from asr.stream.engine import BatchEngine

TRANSCRIBE_CHUNK_FRAMES = 64  # feature frames per model step (a restart computes the rest of one again)
TRANSCRIBE_BLOCK_SECONDS = 30.0  # audio `transcribe` reads, resamples and turns into features at a time


@torch.inference_mode()
def transcribe(
    model, audio, sample_rate: int | None = None, decoding=None, progress: bool = False, endpoint=None
) -> dict:
    """Transcribe a file path or an array of samples (at `sample_rate`, default 16 kHz).

    Returns {"text", "words": [{"word", "start", "end", "conf"}], "duration"}. The audio is decoded as a stream
    is: cut into utterances at the endpoints `endpoint` gives (default `EndpointConfig()`; `enabled=False`: one
    utterance, one model state throughout), each ending with `asr.audio.TAIL_PADDING` seconds of silence where
    the audio ends; `decoding` (an `asr.DecodingConfig`; default beam search with the general English LM) says
    how. A file is read, resampled and turned into features TRANSCRIBE_BLOCK_SECONDS at a time, so memory does
    not grow with its length; `progress` shows a progress bar (on stderr) over its audio.
    """
    estimate, blocks = audio_blocks(audio, sample_rate, TRANSCRIBE_BLOCK_SECONDS)  # estimate: for the bar
    factory = (decoding or DecodingConfig()).beam_factory(model.tokens)
    engine = BatchEngine(model, chunk_frames=TRANSCRIBE_CHUNK_FRAMES, capacity=1)
    stream = engine.add_stream(SAMPLE_RATE, endpoint=endpoint or EndpointConfig(), beam_factory=factory)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=round(estimate, 1), unit="s", desc="transcribe", leave=False, delay=1.0)
    texts, words, seen = [], [], 0
    for block in blocks:
        stream.push(block)
        engine.run()
        _collect(stream, texts, words)
        seen += len(block)
        if bar is not None:
            bar.update(round(min(seen / SAMPLE_RATE, estimate) - bar.n, 1))
    if seen:  # as a stream without audio, nothing to finish
        engine.flush(stream)
        _collect(stream, texts, words)
    if bar is not None:
        bar.close()
    duration = seen / SAMPLE_RATE  # decoded, not the header's count (an MP3's is an estimate)
    return {"text": " ".join(texts), "words": words, "duration": duration}


def _collect(stream, texts: list[str], words: list[dict]) -> None:
    """The stream's finished utterances (`Stream.pop_final` merges them): their text and words appended."""
    final = stream.pop_final()
    if final["text"]:
        texts.append(final["text"])
    words += [
        {"word": w["word"], "start": w["start"], "end": w["end"], "conf": w["conf"]} for w in final.get("result", [])
    ]
