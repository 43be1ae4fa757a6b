"""Transcribing a whole file or array with a streaming model: `asr.transcribe` (the `asr transcribe` command)."""

from __future__ import annotations

import numpy as np
import torch

from asr.audio import SAMPLE_RATE, TAIL_PADDING
from asr.audio.files import audio_blocks
from asr.audio.frontend import LogMel, MelStream
from asr.decode.config import DecodingConfig
from asr.decode.greedy import GreedyDecoder, clip_word_times, delay_word_times

TRANSCRIBE_CHUNK_FRAMES = 3000  # feature frames (30 s) per model step in `transcribe`: bounds memory on long files
TRANSCRIBE_BLOCK_SECONDS = 30.0  # audio `transcribe` reads, resamples and turns into features at a time


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
    estimate, blocks = audio_blocks(audio, sample_rate, TRANSCRIBE_BLOCK_SECONDS)  # estimate: for the bar
    device = model.device
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
