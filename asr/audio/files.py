"""Audio files and arrays to mono float32 at 16 kHz, whole (`load_audio`) or in bounded blocks (`audio_blocks`).

Imports neither torch nor soundfile until a file is read or a signal resampled (`asr.audio.resample`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asr.audio import SAMPLE_RATE, AudioError


def open_audio_file(path):
    """An open `soundfile.SoundFile` for `path`; a missing, directory or unreadable file is an AudioError."""
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    try:
        return sf.SoundFile(str(path))
    except Exception as exc:  # libsndfile's errors are plain RuntimeErrors
        raise AudioError(f"{path}: cannot read audio ({_first_line(exc)})") from None


def load_audio(source, sample_rate: int | None = None) -> np.ndarray:
    """Load audio as mono float32 at SAMPLE_RATE.

    `source` is a path (wav, flac, ogg, mp3: whatever libsndfile reads) or an
    array of samples; for an array, `sample_rate` gives its rate (default
    SAMPLE_RATE). Several channels are averaged.
    """
    if isinstance(source, (str, Path)):
        with open_audio_file(source) as f:
            try:
                data, sample_rate = f.read(dtype="float32", always_2d=True), f.samplerate
            except Exception as exc:
                raise AudioError(f"{source}: cannot read audio ({_first_line(exc)})") from None
        samples = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    else:
        samples = np.asarray(source)
        if samples.dtype == np.int16:
            samples = samples.astype(np.float32) / 32768.0
        samples = samples.astype(np.float32, copy=False)
        if samples.ndim == 2:  # (T, channels)
            samples = samples.mean(axis=1)
        if samples.ndim != 1:
            raise AudioError(f"audio array must be 1-D or (T, channels), got shape {samples.shape}")
        sample_rate = sample_rate or SAMPLE_RATE
    from asr.audio.resample import resample

    return resample(samples, int(sample_rate), SAMPLE_RATE)


def audio_blocks(source, sample_rate: int | None = None, seconds: float = 30.0):
    """(duration in seconds, an iterator of mono float32 SAMPLE_RATE blocks) of a file read `seconds` at a
    time, or of an array (one block); the blocks joined equal load_audio(source, sample_rate) and memory
    stays bounded by the block, however long the file. A file's duration is its header's (an MP3's is an
    estimate): the blocks are the truth."""
    if not isinstance(source, (str, Path)):
        samples = load_audio(source, sample_rate)
        return len(samples) / SAMPLE_RATE, iter([samples] if samples.size else [])
    from asr.audio.resample import StreamResampler

    f = open_audio_file(source)
    duration = f.frames / f.samplerate if f.samplerate else 0.0

    def blocks():
        with f:
            resampler = StreamResampler(f.samplerate)
            try:
                size = max(1, int(seconds * f.samplerate))
                while True:  # read() until it runs dry: an MP3 header's frame count is only an estimate
                    block = f.read(size, dtype="float32", always_2d=True)
                    if not len(block):
                        break
                    out = resampler.accept(block.mean(axis=1) if block.shape[1] > 1 else block[:, 0])
                    if out.size:
                        yield out
            except Exception as exc:
                raise AudioError(f"{source}: cannot read audio ({_first_line(exc)})") from None
            last = resampler.flush()
            if last.size:
                yield last

    return duration, blocks()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
