"""The Vosk Python API on gru-asr: a Vosk program runs by changing its import.

    from asr.compat.vosk import Model, KaldiRecognizer, SetLogLevel   # instead of: from vosk import ...

    model = Model()                          # the embedded model; or Model("my_model.pt")
    rec = KaldiRecognizer(model, 16000)      # or KaldiRecognizer(model, 8000, '["yes", "no"]')
    rec.SetWords(True)
    while data := wf.readframes(4000):
        if rec.AcceptWaveform(data):
            print(rec.Result())
        else:
            print(rec.PartialResult())
    print(rec.FinalResult())

Results are Vosk's JSON strings: `{"text": ...}` (with `"result": [{"conf", "end", "start", "word"}]` after
SetWords(True)), `{"partial": ...}` (with `"partial_result"` after SetPartialWords(True)), or
`{"alternatives": [{"confidence", "text"}]}` after SetMaxAlternatives(n > 0). A grammar (a JSON list of
phrases, as Vosk takes: `'["yes", "no", "call mom", "[unk]"]'`) closes the vocabulary, as in Vosk: results are
those phrases only, or "[unk]" for speech that fits none where the grammar lists it (`asr.decode.grammar`; partial
results are then the best phrase's words so far). Options may be set at any time. As in Vosk, SetWords, SetPartialWords and SetMaxAlternatives apply to the results
that follow, the utterance in progress included (a result decoded at an endpoint before the call keeps the
options it was decoded with); a grammar set while audio is in applies after the next Reset() or FinalResult().
After FinalResult() the recognizer starts afresh, as Vosk's does: the next audio is a new stream (no features,
model state or queued samples carried over) whose times go on from the end of the audio before.
"""

from __future__ import annotations

import json

__all__ = ["Model", "KaldiRecognizer", "SetLogLevel", "GpuInit", "GpuThreadInit"]


def SetLogLevel(level: int) -> None:  # the names and signatures are Vosk's
    """Vosk's log level switch; gru-asr logs nothing while recognising."""


def GpuInit() -> None:
    pass


def GpuThreadInit() -> None:
    pass


class Model:
    """A model: a gru-asr bundle path (or .onnx/.ts export), or None for the embedded one. Vosk's `model_name`
    and `lang` are accepted for compatibility; only English ("en", "en-us") is here."""

    def __init__(self, model_path: str | None = None, model_name: str | None = None, lang: str | None = None):
        import asr

        if lang is not None and not str(lang).lower().startswith("en"):
            raise ValueError(f"no model for language {lang!r}: gru-asr ships English only")
        self.model = asr.load_model(model_path, device="cpu")


class KaldiRecognizer:
    def __init__(self, model: Model, sample_rate: float, grammar: str | None = None):
        self._model = model
        self._rate = float(sample_rate)
        self._words = False
        self._partial_words = False
        self._alternatives = 0
        self._grammar: tuple[str, ...] | None = None
        self._pending = False  # decoding options changed while audio was in: new decoders after Reset/FinalResult
        if grammar is not None:
            self._grammar = _grammar(grammar)
        self._rec = self._new()

    def _new(self):
        from asr.decode.config import DecodingConfig
        from asr.stream import Recognizer

        decoding = DecodingConfig(grammar=self._grammar, nbest=max(1, self._alternatives))
        return Recognizer(self._model.model, self._rate, decoding=decoding, max_alternatives=self._alternatives)

    def _reconfigure(self) -> None:
        """New decoding options: at once before any audio, else after the next Reset() or FinalResult()."""
        if self._rec.stream.received:
            self._pending = True
        else:
            self._rec = self._new()
            self._pending = False

    # -- options (Vosk's setters) ----------------------------------------------------------
    def SetWords(self, enable: bool) -> None:
        self._words = bool(enable)

    def SetPartialWords(self, enable: bool) -> None:
        self._partial_words = bool(enable)

    def SetMaxAlternatives(self, n: int) -> None:
        """From the next result on, the utterance in progress included (Vosk reads it when it makes a result)."""
        if int(n) < 0:
            raise ValueError("max alternatives must be >= 0")
        self._alternatives = int(n)
        stream = self._rec.stream
        if not stream.received:
            self._reconfigure()
            return
        stream.max_alternatives = self._alternatives  # the stream in progress: its next results
        if stream.beam is not None:
            stream.beam.nbest = max(1, self._alternatives)
        self._pending = True  # the streams after a Reset() or FinalResult(): decoders made for them

    def SetGrammar(self, grammar: str) -> None:
        self._grammar = _grammar(grammar)
        self._reconfigure()

    def SetNLSML(self, enable: bool) -> None:
        if enable:
            raise NotImplementedError("NLSML output is not supported by gru-asr")

    # -- audio and results -------------------------------------------------------------------
    def AcceptWaveform(self, data) -> int:
        """Feed int16 PCM bytes; 1 when an utterance has ended (then call Result()), else 0."""
        return 1 if self._rec.accept_waveform(bytes(data)) else 0

    def Result(self) -> str:
        return self._format(self._rec.result())

    def FinalResult(self) -> str:
        """The rest of the audio decoded; then, as in Vosk, the next audio starts a fresh stream (its times go on)."""
        result = self._format(self._rec.final_result())
        stream = self._rec.stream
        self._restart(round(stream.end_time / stream.frame_shift))
        return result

    def PartialResult(self) -> str:
        partial = self._rec.partial_result()
        if self._partial_words:
            stream = self._rec.stream
            if getattr(stream.beam, "closed", False):  # a grammar: the words of its best phrase so far
                words = stream.beam.partial_words(stream.greedy.start_frame * stream.frame_shift)
            else:
                words = stream.greedy.words()
            partial["partial_result"] = [{k: w[k] for k in ("conf", "end", "start", "word")} for w in words]
        return _dumps(partial)

    def Reset(self) -> None:
        self._rec.reset()
        self._apply_pending()

    def _apply_pending(self) -> None:
        if self._pending:  # a stream that goes on where this one is, as Recognizer.reset() does
            self._restart(self._rec.stream.frame + self._rec.stream.ready // self._rec.engine.subsampling)

    def _restart(self, frame: int) -> None:
        """A new stream whose times begin at output frame `frame` (with new decoders if options changed)."""
        rec = self._new() if self._pending else self._rec
        self._pending = False
        rec.engine.remove_stream(rec.stream)
        rec.stream = rec.engine.add_stream(rec.sample_rate, frame=frame, **rec.options)
        self._rec = rec

    def _format(self, result: dict) -> str:
        if "alternatives" in result or self._words:
            return _dumps(result)
        return _dumps({"text": result.get("text", "")})


def _grammar(grammar: str) -> tuple[str, ...]:
    """Vosk's grammar (a JSON list of phrases, "[unk]" among them where wanted) -> the phrases; ValueError (one
    line) for a grammar that is not one."""
    from asr.decode.grammar import parse_json_grammar

    return parse_json_grammar(grammar)


def _dumps(obj: dict) -> str:
    """Vosk's layout: indented JSON, key order as Vosk writes it."""
    return json.dumps(obj, indent=2)
