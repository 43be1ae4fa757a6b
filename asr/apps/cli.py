"""The `asr` command: transcribe | stream | mic | serve | train | eval | export | lm | adapt.

User mistakes (missing files, bad checkpoints, bad options) end in a one-line
`asr: error: ...` message and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from asr.decode.config import DecodingConfig
from asr.model.user_models import MODEL_HELP
from asr.util.errors import UserError, fail
from asr.util.threads import add_threads_argument, set_threads

# Subcommands implemented by their own module's `main(argv)`, with their own options.
DELEGATED = {
    "train": "asr.train.cli",
    "eval": "asr.apps.evaluate",
    "stream": "asr.apps.stream_cli",
    "mic": "asr.apps.mic",
    "serve": "server.cli",
    "export": "asr.model.export",
    "lm": "asr.apps.lm_cli",
    "adapt": "asr.apps.adapt",
}


FORMATS = ("txt", "json", "srt", "vtt")


def render(result: dict, path: str, fmt: str) -> str:
    """One file's transcription in a format: txt (the text), json (text, words, duration), srt or vtt."""
    from asr.apps import subtitles

    if fmt == "json":
        return json.dumps({"file": path, **result}) + "\n"
    if fmt in ("srt", "vtt"):
        cues = subtitles.cues(result["words"])
        return subtitles.to_srt(cues) if fmt == "srt" else subtitles.to_vtt(cues)
    return result["text"] + "\n"


def cmd_transcribe(args) -> int:
    from pathlib import Path

    import asr
    from asr.audio import AudioError

    fmt = "json" if args.json else args.format
    set_threads(args.threads)
    decoding = DecodingConfig.from_args(args)
    out_dir = Path(args.output_dir) if args.output_dir else None
    if out_dir is not None:
        if out_dir.exists() and not out_dir.is_dir():
            raise UserError(f"--output-dir {out_dir} is a file, not a folder")
        out_dir.mkdir(parents=True, exist_ok=True)
    model = asr.load_model(args.model, device=args.device)
    decoding = decoding.resolved()  # the LM is found (or built) once, not per file
    failures = 0
    for path in args.files:
        try:
            result = asr.transcribe(model, path, decoding=decoding, progress=sys.stderr.isatty())
        except AudioError as exc:
            fail(str(exc))
            failures += 1
            continue
        text = render(result, path, fmt)
        if out_dir is not None:
            target = out_dir / f"{Path(path).stem}.{fmt}"
            target.write_text(text, encoding="utf-8")
            print(target, flush=True)
        elif fmt == "txt" and len(args.files) > 1:
            print(f"{path}\t{result['text']}", flush=True)
        else:
            print(text, end="", flush=True)
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    from asr import __version__

    parser = argparse.ArgumentParser(prog="asr", description="gru-asr: streaming speech recognition")
    parser.add_argument("--version", action="version", version=f"gru-asr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    t = sub.add_parser("transcribe", help="transcribe audio files with a model")
    t.add_argument("files", nargs="+", metavar="FILE", help="wav, flac, ogg or mp3, any rate and channel count")
    t.add_argument("--model", default=None, help=MODEL_HELP)
    t.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    t.add_argument(
        "--format",
        choices=FORMATS,
        default="txt",
        help="txt (default), json (words with times and confidences), srt or vtt (subtitles from the word times)",
    )
    t.add_argument("--json", action="store_true", help="the same as --format json: one JSON object per file")
    t.add_argument("--output-dir", help="write FILE's stem + .FORMAT into this folder instead of printing")
    add_threads_argument(t)
    DecodingConfig.add_arguments(t)
    t.set_defaults(func=cmd_transcribe)
    for name in DELEGATED:
        sub.add_parser(name, help=f"see `asr {name} --help`", add_help=False)
    return parser


def main(argv=None) -> int:
    from asr.audio import AudioError
    from asr.model.checkpoint import CheckpointError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in DELEGATED:
            try:
                module = importlib.import_module(DELEGATED[argv[0]])
            except ModuleNotFoundError as exc:
                return fail(f"`asr {argv[0]}` is not available in this install ({exc})")
            return module.main(argv[1:]) or 0
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return args.func(args)
    except (UserError, CheckpointError, AudioError, FileNotFoundError, ValueError) as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
