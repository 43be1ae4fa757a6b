"""Word and character error rates of a model over manifests, with a per-utterance report.

    asr eval data/dev.jsonl data/test.jsonl --model exp/run1/best.pt --report errors.tsv

Each whole utterance, followed by the tail padding a stream's final result gets (`asr.audio.pad_tail`),
is decoded as `asr.DecodingConfig` says: by default beam search with the general English LM, or
`--decoding greedy`, or another `--lm` (KenLM/ARPA word model) and weights. Utterances are
batched by length: the model is causal, so padding after an utterance's end does not change its first
out_len output frames. With --streamed, each utterance is decoded instead as `asr transcribe` decodes a file
(and a live stream hears it): in chunks, cut at the endpoints with the model state restarted after each and in
quiet silence before speech, the utterances' texts joined; slower, and the figure users get.
The report is tab-separated: manifest, id, ref, hyp, errors (word substitutions + deletions +
insertions), words (reference length).
"""

from __future__ import annotations

import argparse
import csv
import sys
import warnings
from pathlib import Path

import torch

import asr
from asr.audio import AudioError, pad_tail
from asr.audio.files import load_audio
from asr.audio.frontend import LogMel
from asr.decode.config import DecodingConfig
from asr.decode.greedy import ctc_greedy
from asr.model.checkpoint import CheckpointError
from asr.model.tokenizer import normalize_text
from asr.model.user_models import MODEL_HELP
from asr.train.manifests import DataError, read_manifest
from asr.util.errors import fail

BATCH_SECONDS = 120.0  # padded audio seconds per forward pass


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr eval", description="WER/CER of a model over JSONL manifests.")
    p.add_argument("manifests", nargs="+", metavar="MANIFEST")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--report", help="write a per-utterance TSV report here")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-seconds", type=float, default=BATCH_SECONDS, help="padded audio seconds per batch")
    p.add_argument("--streamed", action="store_true", help="decode each utterance as asr transcribe does (endpoints)")
    DecodingConfig.add_arguments(p, hotwords=False)
    return p


def describe_decoding(decoding: DecodingConfig, streamed: bool) -> str:
    """How utterances are decoded, in words: the resolved decoding, and ", streamed" with --streamed."""
    return decoding.resolved().describe() + (", streamed" if streamed else "")


def _batches(entries, batch_seconds: float):
    """Entries sorted by duration, cut into batches of at most batch_seconds padded audio."""
    batch = []
    for e in sorted(entries, key=lambda e: e["duration"]):
        if batch and e["duration"] * (len(batch) + 1) > batch_seconds:
            yield batch
            batch = []
        batch.append(e)
    if batch:
        yield batch


@torch.inference_mode()
def transcribe_entries(model, entries, device="cpu", batch_seconds: float = BATCH_SECONDS, progress=None, beam=None):
    """[(entry, hypothesis text)] for the readable entries of a manifest; `beam`: a BeamSearchDecoder or None."""
    logmel = LogMel()
    results = []
    for batch in _batches(entries, batch_seconds):
        feats, kept = [], []
        for e in batch:
            try:
                feats.append(logmel(torch.from_numpy(pad_tail(load_audio(e["audio"])))))
                kept.append(e)
            except AudioError as exc:
                warnings.warn(f"skipped {e['id']}: {exc}", stacklevel=2)
        if progress is not None:
            progress.update(len(batch))
        if not kept:
            continue
        lens = torch.tensor([f.shape[0] for f in feats], device=device)
        padded = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True).to(device)
        log_probs, out_lens = model(padded, lens)
        for e, lp, n in zip(kept, log_probs.float().cpu(), out_lens.tolist(), strict=True):
            text = beam.decode(lp[:n])[0]["text"] if beam else ctc_greedy(lp[:n], model.tokens)[0]
            results.append((e, text))
    return results


def transcribe_streamed(model, entries, decoding: DecodingConfig, progress=None):
    """[(entry, hypothesis text)] for the readable entries of a manifest, each decoded by `asr.transcribe` with
    `decoding`: streamed, cut at its endpoints, the model state restarted as in a live stream."""
    from asr.stream.transcription import transcribe

    results = []
    for e in entries:
        try:
            samples = load_audio(e["audio"])
        except AudioError as exc:
            warnings.warn(f"skipped {e['id']}: {exc}", stacklevel=2)
        else:
            results.append((e, transcribe(model, samples, decoding=decoding)["text"]))
        if progress is not None:
            progress.update(1)
    return results


def score_manifest(
    model, path, entries, device="cpu", batch_seconds: float = BATCH_SECONDS, beam=None, streamed=None
) -> dict:
    """One manifest's WER and CER over its readable utterances, with their report rows (manifest, id, ref, hyp,
    errors, words): {"wer", "cer", "utterances", "rows"}; WER and CER are None when no utterance is usable.
    `streamed` (a DecodingConfig, used instead of `beam`): each utterance decoded by `transcribe_streamed`."""
    import jiwer
    from tqdm import tqdm

    with tqdm(total=len(entries), desc=Path(path).name, unit="utt", file=sys.stderr) as bar:
        if streamed is not None:
            results = transcribe_streamed(model, entries, streamed, bar)
        else:
            results = transcribe_entries(model, entries, device, batch_seconds, bar, beam)
    if not results:
        return {"wer": None, "cer": None, "utterances": 0, "rows": []}
    refs = [normalize_text(e["text"]) for e, _ in results]
    hyps = [h for _, h in results]
    rows = []
    for (e, hyp), ref in zip(results, refs, strict=True):
        out = jiwer.process_words(ref, hyp)
        errors = out.substitutions + out.deletions + out.insertions
        rows.append((path, e["id"], ref, hyp, errors, len(ref.split())))
    return {"wer": jiwer.wer(refs, hyps), "cer": jiwer.cer(refs, hyps), "utterances": len(results), "rows": rows}


def write_report(path, rows) -> None:
    """The per-utterance report: a TSV with a header."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["manifest", "id", "ref", "hyp", "errors", "words"])
        writer.writerows(rows)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    warnings.formatwarning = lambda message, *rest, **kw: f"warning: {message}\n"
    try:
        if args.batch_seconds <= 0:
            raise ValueError(f"--batch-seconds must be positive, not {args.batch_seconds:g}")
        decoding = DecodingConfig.from_args(args)
        sets = [(m, read_manifest(m)) for m in args.manifests]
        model = asr.load_model(args.model, device=args.device)
        factory = decoding.beam_factory(model.tokens)
        beam = factory() if factory else None
    except (CheckpointError, DataError, ValueError, FileNotFoundError) as exc:
        return fail(str(exc))
    print(f"decoding: {describe_decoding(decoding, args.streamed)}", file=sys.stderr)
    rows, failed = [], False
    streamed = decoding if args.streamed else None
    for path, entries in sets:
        score = score_manifest(model, path, entries, args.device, args.batch_seconds, beam, streamed)
        if not score["utterances"]:
            fail(f"{path}: no usable utterances")
            failed = True
            continue
        rows += score["rows"]
        print(f"{path}: WER {score['wer']:.2%} CER {score['cer']:.2%} ({score['utterances']} utterances)")
    if args.report:
        write_report(args.report, rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
