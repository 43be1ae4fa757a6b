"""Streaming: Recognizer equals offline decoding over any chunking; endpoints; BatchEngine equals single streams."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_model

import asr
from asr.audio import SAMPLE_RATE, TAIL_PADDING, pad_tail
from asr.audio.files import load_audio
from asr.audio.frontend import HOP_LENGTH, LogMel, num_frames
from asr.audio.resample import resample
from asr.decode.config import DecodingConfig
from asr.decode.greedy import BLANK, ctc_greedy
from asr.model.network import GRUCTC, ModelConfig
from asr.model.tokenizer import DEFAULT_TOKENS
from asr.stream import BatchEngine, EndpointConfig, Recognizer, Stream

NO_ENDPOINTS = EndpointConfig(enabled=False)
GREEDY = DecodingConfig(method="greedy")


@pytest.fixture(scope="module")
def model():
    return random_model(3, hidden_size=64)


@pytest.fixture(scope="module")
def clip(speech_wav):
    return load_audio(speech_wav)


def to_pcm(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def feed_randomly(rec, data, rng, max_size=7001):
    i = 0
    while i < len(data):
        n = int(rng.integers(0, max_size))
        rec.accept_waveform(data[i : i + n])
        i += n


def test_recognizer_equals_offline_over_random_byte_chunkings(model, clip, rng):
    offline = asr.transcribe(model, to_pcm_float(clip), endpoint=NO_ENDPOINTS)
    for _ in range(3):
        rec = Recognizer(model, endpoint=NO_ENDPOINTS)
        feed_randomly(rec, to_pcm(clip), rng)  # odd sizes split samples between calls
        final = rec.final_result()
        assert final["text"] == offline["text"] and final["text"]
        assert final["result"] == [{k: w[k] for k in ("conf", "end", "start", "word")} for w in offline["words"]]


def test_models_with_other_subsampling_stream_like_offline(clip, rng):
    """A 2x or 3x model: chunks rounded up to whole output frames, word times in its own frame shift."""
    for subsampling in (2, 3):
        m = random_model(3, hidden_size=64, subsampling=subsampling)
        offline = asr.transcribe(m, to_pcm_float(clip), endpoint=NO_ENDPOINTS)
        rec = Recognizer(m, endpoint=NO_ENDPOINTS, chunk_frames=16)
        assert rec.engine.chunk_frames == 18 if subsampling == 3 else 16
        feed_randomly(rec, to_pcm(clip), rng)
        final = rec.final_result()
        assert final["text"] == offline["text"] and final["text"]
        assert final["result"] == [{k: w[k] for k in ("conf", "end", "start", "word")} for w in offline["words"]]
        for w in final["result"]:
            frames = w["start"] / m.config.frame_shift
            assert abs(frames - round(frames)) < 1e-6, w
        assert final["result"][-1]["end"] <= len(clip) / 16000 + m.config.frame_shift


def test_lookahead_model_streams_like_offline_with_times_of_the_audio(model, clip, rng):
    """A lookahead model streams like offline; its word times are those of the audio, not of its late outputs: as a
    pass-through of `model` (the same model, two frames late) it gives `model`'s words and times."""
    late = GRUCTC(ModelConfig(hidden_size=64, num_layers=2, conv_channels=32, lookahead=2)).eval()
    late.load_state_dict(model.state_dict(), strict=False)
    base = asr.transcribe(model, to_pcm_float(clip), decoding=GREEDY, endpoint=NO_ENDPOINTS)
    offline = asr.transcribe(late, to_pcm_float(clip), decoding=GREEDY, endpoint=NO_ENDPOINTS)
    assert offline["words"] == base["words"] and offline["text"]
    torch.nn.init.normal_(late.lookahead.weight, std=0.5)
    offline = asr.transcribe(late, to_pcm_float(clip), decoding=GREEDY, endpoint=NO_ENDPOINTS)
    rec = Recognizer(late, endpoint=NO_ENDPOINTS, decoding=GREEDY)
    feed_randomly(rec, to_pcm(clip), rng)
    final = rec.final_result()
    assert final["text"] == offline["text"] and final["text"]
    assert final["result"] == [{k: w[k] for k in ("conf", "end", "start", "word")} for w in offline["words"]]


def to_pcm_float(samples):
    """The float signal that int16 quantisation leaves."""
    return np.frombuffer(to_pcm(samples), "<i2").astype(np.float32) / 32768


def test_real_clips_at_their_own_rate(model, shared_data, rng):
    for path in [
        next((shared_data / "fsdd" / "recordings").glob("*_theo_*.wav")),
        shared_data / "real_en" / "audio" / "ls_1089-134686-0001.flac",
    ]:
        import soundfile as sf

        native, rate = sf.read(path, dtype="float32")
        resampled = resample(native, rate, SAMPLE_RATE)
        offline = asr.transcribe(model, resampled, endpoint=NO_ENDPOINTS)
        rec = Recognizer(model, sample_rate=float(rate), endpoint=NO_ENDPOINTS)
        feed_randomly(rec, native, rng, max_size=3000)  # float arrays, resampled in streaming fashion
        assert rec.final_result()["text"] == offline["text"]
        assert rec.stream.received == len(resampled)  # the resampler's last samples are decoded too


def test_input_types_and_bad_input_do_not_corrupt_state(model, clip):
    pcm = to_pcm(clip)
    reference = Recognizer(model, endpoint=NO_ENDPOINTS)
    reference.accept_waveform(pcm)
    expected = reference.final_result()

    rec = Recognizer(model, endpoint=NO_ENDPOINTS)
    rec.accept_waveform(b"")
    rec.accept_waveform(np.zeros(0, np.float32))
    rec.accept_waveform(pcm[:1001])
    for bad, error in [
        (np.zeros(10, np.int32), TypeError),
        ("text", TypeError),
        (np.zeros((4, 2), np.int16), ValueError),
    ]:
        with pytest.raises(error):
            rec.accept_waveform(bad)
    rec.accept_waveform(pcm[1001:1002])  # completes the odd sample
    rec.accept_waveform(np.frombuffer(pcm[1002:2002], "<i2"))  # an int16 array
    rec.accept_waveform(pcm[2002:])
    assert rec.final_result() == expected


def test_sample_rates_outside_range_are_refused(model):
    for rate in (4000, 96000, 16000.5):
        with pytest.raises(ValueError, match="sample rate"):
            Recognizer(model, sample_rate=rate)
    Recognizer(model, sample_rate=8000.0)  # Vosk's microphone client sends floats


# -- endpoints (constructed log-probs, so the rules are tested exactly) --------


def log_probs(path: str) -> torch.Tensor:
    """'_' blank, ' ' space, letters: one output frame each, probability 0.9."""
    lp = torch.full((len(path), len(DEFAULT_TOKENS)), 0.1 / 28).log()
    for t, ch in enumerate(path):
        lp[t, BLANK if ch == "_" else DEFAULT_TOKENS.index(ch)] = np.log(0.9)
    return lp


def run_stream(path: str, cuts, endpoint=None) -> list[dict]:
    stream = Stream(DEFAULT_TOKENS, endpoint=endpoint or EndpointConfig())
    lp = log_probs(path)
    edges = [0, *cuts, len(path)]
    finals = []
    for a, b in zip(edges, edges[1:]):
        stream.consume(lp[a:b])
        finals += stream.finals  # each utterance, unmerged
        stream.finals = []
    return finals


def test_endpoint_after_silence_following_speech_is_frame_exact():
    silence = "_" * 25  # 25 frames x 40 ms = 1.0 s: rule 2
    path = "_hi_" + silence + "_there_" + "_" * 10
    for cuts in ([], [3], [17, 29], list(range(1, len(path)))):
        finals = run_stream(path, cuts)
        assert [f["text"] for f in finals] == ["hi"], cuts
        assert finals[0]["result"][0]["start"] == pytest.approx(0.04)


def test_endpoint_times_are_absolute_after_an_endpoint():
    stream = Stream(DEFAULT_TOKENS)
    stream.consume(log_probs("_hi_" + "_" * 25 + "__yo_"))
    assert stream.pop_final()["text"] == "hi"
    stream.finish_utterance()
    (word,) = stream.pop_final()["result"]
    assert word["word"] == "yo" and word["start"] == pytest.approx(31 * 0.04)


def test_silence_without_speech_and_maximum_length():
    finals = run_stream("_" * 130, [50])
    assert [f["text"] for f in finals] == ["", ""]  # rule 1 at 2.4 s (60 frames), twice
    ep = EndpointConfig(max_utterance=1.0, max_utterance_grace=0.4)
    finals = run_stream("ab" * 40, [7], endpoint=ep)
    assert len(finals) == 2 and all(f["text"] for f in finals)  # rule 3, no word boundary: 80 -> 35 + 35 (+10)


def test_maximum_length_cuts_at_a_word_boundary():
    """Rule 3 waits for the word it falls in to end (a space, or 3 frames of silence), within a grace time."""
    ep = EndpointConfig(max_utterance=1.0)  # 25 frames: frame 24 is in "hello" (frames 22-27)
    path = "_" * 22 + "hel_lo" + "_" * 4 + "world" + "_" * 10
    for cuts in ([], [24], [23, 27, 30], list(range(1, len(path)))):
        finals = run_stream(path, cuts, endpoint=ep)
        assert [f["text"] for f in finals] == ["hello"], cuts  # cut at frame 30, 3 blanks after the "o"
    finals = run_stream("_" * 22 + "hel lo" + "_" * 10, [], endpoint=ep)
    assert [f["text"] for f in finals] == ["hel"]  # a space is a boundary at once


def test_endpoint_with_a_real_model_on_speech_separated_by_silence(speech_wav, default_model):
    model = default_model
    one = load_audio(speech_wav)
    gap = np.zeros(int(1.6 * SAMPLE_RATE), np.float32)
    rec = Recognizer(model)
    finals = []
    for samples in (one, gap, one, gap):
        for i in range(0, len(samples), 3200):
            if rec.accept_waveform(samples[i : i + 3200]):
                finals.append(rec.result())
    assert len(finals) == 2 and all(f["text"] for f in finals)  # one endpoint per pause, each with words
    assert finals[0]["text"] == asr.transcribe(model, one)["text"]  # the silence after it adds nothing
    assert finals[1]["result"][0]["start"] > len(one) / SAMPLE_RATE + 1.0  # times count from the stream start


# -- a fresh model state per utterance ------------------------------------------


def quiet_noise(seconds: float, rng) -> np.ndarray:
    """White noise at -50 dBFS (RMS), a quiet room through a cheap microphone."""
    return (rng.standard_normal(int(seconds * SAMPLE_RATE)) * 10 ** (-50 / 20)).astype(np.float32)


def texts(finals: list[dict]) -> list[str]:
    return [f["text"] for f in finals if f["text"]]


def stream_finals(model, samples, rng=None, decoding=GREEDY, endpoint=None) -> list[dict]:
    """The finals of one Recognizer fed `samples` (in random pieces with `rng`), the last by final_result()."""
    rec = Recognizer(model, decoding=decoding, endpoint=endpoint)
    finals, i = [], 0
    while i < len(samples):
        n = int(rng.integers(1, 9000)) if rng is not None else 3200  # pieces shorter than any utterance
        if rec.accept_waveform(samples[i : i + n]):
            finals.append(rec.result())
        i += n
    return [*finals, rec.final_result()]


def test_restarts_of_the_state_fall_on_the_same_frames_whatever_the_chunking(default_model, clip, rng):
    """Utterances separated by silence and by quiet noise: each chunking, and asr.transcribe, give the same
    results (texts, words, times), the state restarting at endpoints and in the silence before speech."""
    audio = np.concatenate([clip, np.zeros(int(1.6 * SAMPLE_RATE), np.float32), clip, quiet_noise(3.0, rng), clip])
    whole = stream_finals(default_model, audio)
    assert len(texts(whole)) == 3
    for _ in range(2):
        assert stream_finals(default_model, audio, rng) == whole
    offline = asr.transcribe(default_model, audio, decoding=GREEDY)
    assert offline["text"] == " ".join(texts(whole))
    assert [w["start"] for w in offline["words"]] == [w["start"] for f in whole for w in f.get("result", [])]


def quiet_lead(kind: str, seconds: float) -> np.ndarray:
    """`seconds` of digital silence, or the last `seconds` of one fixed stretch of quiet noise."""
    if kind == "silence":
        return np.zeros(round(seconds * SAMPLE_RATE), np.float32)
    return quiet_noise(4.0, np.random.default_rng(7))[-round(seconds * SAMPLE_RATE) :]


def first_sound(audio: np.ndarray, quiet_level: float) -> int:
    """The first output frame (4 x 10 ms from the first sample) whose audio is at or above `quiet_level` dBFS."""
    frame = 4 * HOP_LENGTH
    hops = audio[: len(audio) // frame * frame].reshape(-1, frame).astype(np.float64)
    return int(np.argmax(10 * np.log10(np.maximum((hops**2).mean(1), 1e-12)) >= quiet_level))


def words_from(finals: list[dict], origin: float) -> list[tuple[str, float, float]]:
    return [
        (w["word"], round(w["start"] - origin, 3), round(w["end"] - origin, 3))
        for f in finals
        for w in f.get("result", [])
    ]


@pytest.mark.parametrize("kind", ["silence", "noise"])
def test_speech_is_heard_alike_after_any_length_of_quiet(default_model, clip, kind):
    """However long the silence or quiet noise before speech in one stream (here 0.8, 1.6 and 3.2 s, and one that
    ends two frames after a no-speech endpoint restarted the state in it), the state that hears the speech starts
    from zero `onset_lead` before its first sound: the same words at the same times from the speech's start.
    (Restarting every `idle_restart` instead left the state with anything from `warmup` to `warmup` +
    `idle_restart` of the quiet, whichever the lead's length gave.)"""
    ep, frame = EndpointConfig(), 4 * HOP_LENGTH
    # and a lead that ends two frames after a no-speech endpoint (rule 1) restarted the state in it
    onset = first_sound(clip, ep.quiet_level) * frame / SAMPLE_RATE
    just_after_rule_1 = round((ep.silence_no_speech + 0.08 - onset) / 0.04) * 0.04
    heard = []
    for seconds in (0.8, 1.6, 3.2, just_after_rule_1):  # whole output frames (40 ms), so the clip's frames fall alike
        heard.append(
            words_from(stream_finals(default_model, np.concatenate([quiet_lead(kind, seconds), clip])), seconds)
        )
    assert heard[0] and heard[0] == heard[1] == heard[2] == heard[3], heard


def test_the_state_that_hears_speech_has_heard_onset_lead_of_the_quiet_before_it(default_model, clip):
    """The fresh state starts `onset_lead` before the first output frame whose audio is above `quiet_level`: the
    stream's words are those of a stream without restarts in the quiet (idle_restart=0) given the audio from there."""
    ep, frame = EndpointConfig(), 4 * HOP_LENGTH  # samples per output frame
    audio = np.concatenate([quiet_lead("silence", 2.0), clip])
    onset = first_sound(audio, ep.quiet_level)
    start = (onset - ep.frames(ep.onset_lead)) * frame
    alone = stream_finals(default_model, audio[start:], endpoint=EndpointConfig(idle_restart=0))
    assert words_from(stream_finals(default_model, audio), 0.0) == words_from(alone, -start / SAMPLE_RATE)


def test_no_speech_endpoint_counts_from_the_sound_that_restarted_the_state(default_model, clip):
    """Rule 1 (`silence_no_speech` with nothing recognised) counts from the first sound after quiet silence, not
    from the utterance's start: set to fire one frame after the speech began when counted from the start of 0.8 s
    of silence, before the first letter, it changes nothing. (Counted from the start it ended an empty utterance
    there and restarted the state in the first word, moving the confidences here; in speechocean762_000700151 it
    turned "it will come" into "most will come" in one stream.)"""
    ep, lead = EndpointConfig(), 0.8
    audio = np.concatenate([quiet_lead("silence", lead), clip])
    onset = first_sound(audio, ep.quiet_level)  # output frame of the first sound
    early = EndpointConfig(silence_no_speech=(onset + 2) * 0.04)  # from the start it fires at frame onset + 1
    expected = stream_finals(default_model, audio)
    assert round(expected[0]["result"][0]["start"] / 0.04) > onset + 1  # the first letter comes after that
    assert stream_finals(default_model, audio, endpoint=early) == expected


# -- BatchEngine ---------------------------------------------------------------


def test_batch_engine_equals_single_streams(model, clip, shared_data, rng):
    import soundfile as sf

    clips = [(clip, SAMPLE_RATE)]
    clips += [
        sf.read(p, dtype="float32") for p in sorted((shared_data / "fsdd" / "recordings").glob("*_lucas_1*.wav"))[:3]
    ]
    clips += [sf.read(shared_data / "real_en" / "audio" / "ls_1089-134686-0001.flac", dtype="float32")]
    expected = []
    beam = DecodingConfig().beam_factory(DEFAULT_TOKENS)  # finals by the default beam search + LM, per stream
    for samples, rate in clips:
        rec = Recognizer(model, sample_rate=rate)
        rec.accept_waveform(samples)
        expected.append(rec.final_result())

    engine = BatchEngine(model, capacity=2)  # has to grow
    pending = {i: 0 for i in range(len(clips))}
    streams, results = {}, {}
    start_at = {i: i * 2 for i in pending}  # streams join at different rounds
    rounds = 0
    while pending:
        for i in list(pending):
            if rounds < start_at[i]:
                continue
            samples, rate = clips[i]
            stream = streams.get(i) or streams.setdefault(i, engine.add_stream(rate, beam_factory=beam))
            n = int(rng.integers(1, rate // 3))
            stream.push(samples[pending[i] : pending[i] + n])
            pending[i] += n
            if pending[i] >= len(samples):
                del pending[i]
                engine.flush(stream)
                results[i] = stream.pop_final()
                engine.remove_stream(stream)  # and leave
        engine.step()
        rounds += 1
    assert [results[i] for i in range(len(clips))] == expected
    assert not engine.streams and sorted(engine.free) == list(range(engine.state.ctx1.shape[0]))  # every slot back


def test_streams_flushed_together_get_what_each_gets_alone(model, clip, rng):
    """One flush of many streams (shared forward passes, grouped by what is left) = each flushed alone."""
    beam = DecodingConfig().beam_factory(DEFAULT_TOKENS)
    cuts = [int(n) for n in rng.integers(SAMPLE_RATE // 2, len(clip), 6)] + [0]  # one stream gets no audio
    expected = []
    for n in cuts:
        rec = Recognizer(model, endpoint=NO_ENDPOINTS, beam_factory=beam)
        rec.accept_waveform(clip[:n])
        expected.append(rec.final_result())
    engine = BatchEngine(model)
    streams = [engine.add_stream(endpoint=NO_ENDPOINTS, beam_factory=beam) for _ in cuts]
    for stream, n in zip(streams, cuts, strict=True):
        stream.push(clip[:n])
    engine.flush(*streams, streams[0])  # a stream named twice is flushed once
    assert [s.pop_final() for s in streams] == expected
    assert any(e["text"] for e in expected)


def test_long_stream_keeps_buffers_bounded(model, rng):
    rec = Recognizer(model)
    noise = (rng.standard_normal(SAMPLE_RATE * 60) * 0.05).astype(np.float32)
    for i in range(0, len(noise), 3200):
        rec.accept_waveform(noise[i : i + 3200])
        if rec.stream.has_final():
            rec.result()
        s = rec.stream
        assert s.ready < 16 and s.samples.size < 400 + 16 * 160
        assert s.frame - s.greedy.start_frame <= 550  # rule 3 bounds an utterance to 20 s + 2 s of grace
    assert rec.stream.frame == 60 * 25 - 1 or rec.stream.frame >= 60 * 25 - 4


def test_final_result_decodes_tail_padding_outside_the_time_line(model, clip):
    rec = Recognizer(model, endpoint=NO_ENDPOINTS, decoding=GREEDY)
    rec.accept_waveform(clip)
    first = rec.final_result()
    with torch.inference_mode():  # the final result is the model's output over the clip and the padding
        feats = LogMel()(torch.from_numpy(pad_tail(clip)))
        log_probs, _ = model(feats[None], torch.tensor([feats.shape[0]]))
    assert len(pad_tail(clip)) == len(clip) + TAIL_PADDING * SAMPLE_RATE
    assert first["text"] == ctc_greedy(log_probs[0], DEFAULT_TOKENS)[0] and first["text"]
    duration = len(clip) / SAMPLE_RATE
    assert all(w["start"] <= w["end"] <= duration for w in first["result"])
    real_frames = num_frames(len(clip)) // 4
    assert rec.stream.frame == real_frames  # the padding's frames are not on the time line
    assert rec.stream.samples.size == len(clip) - real_frames * 4 * HOP_LENGTH  # the rest waits for more audio
    rec.accept_waveform(clip)  # the stream goes on after a final result
    second = rec.final_result()
    assert second["text"] and second["result"][0]["start"] >= real_frames * 0.04  # times go on from the real end
    assert second["result"][-1]["end"] <= 2 * duration


def test_reset_forgets_the_utterance(model, clip):
    rec = Recognizer(model, endpoint=NO_ENDPOINTS)
    rec.accept_waveform(clip)
    rec.reset()
    assert rec.partial_result() == {"partial": ""}
    rec.accept_waveform(clip)
    fresh = Recognizer(model, endpoint=NO_ENDPOINTS)
    fresh.accept_waveform(clip)
    assert rec.final_result()["text"] == fresh.final_result()["text"]


def test_beam_search_in_the_recognizer_equals_whole_utterance_beam(model, clip, rng):
    from asr.decode.beam import BeamSearchDecoder, beam_factory_from_options

    with torch.inference_mode():
        feats = LogMel()(torch.from_numpy(pad_tail(to_pcm_float(clip))))  # a final result decodes the padding too
        log_probs, _ = model(feats[None], torch.tensor([feats.shape[0]]))
    whole = BeamSearchDecoder(DEFAULT_TOKENS, beam_size=8, nbest=3).decode(log_probs[0])
    factory = beam_factory_from_options(DEFAULT_TOKENS, beam_size=8, nbest=3)
    rec = Recognizer(model, endpoint=NO_ENDPOINTS, beam_factory=factory, max_alternatives=3)
    feed_randomly(rec, to_pcm(clip), rng)
    final = rec.final_result()
    assert [a["text"] for a in final["alternatives"]] == [h["text"] for h in whole]
    assert final["alternatives"][0]["confidence"] == pytest.approx(whole[0]["confidence"], abs=1e-3)
    rec = Recognizer(model, endpoint=NO_ENDPOINTS, beam_factory=factory)
    rec.accept_waveform(to_pcm(clip))
    final = rec.final_result()
    assert final["text"] == whole[0]["text"] and [w["word"] for w in final["result"]] == final["text"].split()
