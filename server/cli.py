"""`asr serve`: the command's options (`build_parser`, `config_from_args` -> ServerConfig) and `main`, which
loads the model and serves in one process, or in `--workers N` forked ones (server/process_pool.py)."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import sys

import torch

from asr.decode.config import DecodingConfig
from asr.model.user_models import MODEL_HELP
from asr.util.errors import fail
from server.config import ServerConfig, make_decoder_factory
from server.process_pool import listen, run_workers
from server.protocol import ProtocolError
from server.running import loop_factory, run_until_signalled
from server.service import AsrServer
from server.web import make_ssl_context


def build_parser() -> argparse.ArgumentParser:
    d = ServerConfig()
    p = argparse.ArgumentParser(prog="asr serve", description="Vosk-compatible websocket speech recognition server")
    p.add_argument("--host", default=d.host, help=f"address to listen on (default {d.host})")
    p.add_argument("--port", type=int, default=d.port, help=f"port (default {d.port}; 0 picks a free one)")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--max-connections", type=int, default=d.max_connections, help="beyond it, HTTP 503")
    p.add_argument(
        "--max-connections-per-address",
        type=int,
        default=d.max_connections_per_address,
        help="connections from one client address (with --trust-proxy, the one X-Forwarded-For names); beyond it"
        f" HTTP 429 (default {d.max_connections_per_address}; 0: no limit)",
    )
    p.add_argument("--max-message-bytes", type=int, default=d.max_message_bytes, help="larger messages: close 1009")
    p.add_argument("--idle-timeout", type=float, default=d.idle_timeout, help="seconds without a message")
    p.add_argument("--max-stream-seconds", type=float, default=d.max_stream_seconds, help="audio per connection")
    p.add_argument(
        "--sample-rate",
        type=int,
        default=d.sample_rate,
        help=f"Hz of a client's audio when its config does not say (default {d.sample_rate}, as vosk-server)",
    )
    p.add_argument("--token", default=os.environ.get("ASR_TOKEN"), help="require this bearer token (env ASR_TOKEN)")
    p.add_argument(
        "--metrics-public", action="store_true", help="serve /metrics without the token (/healthz never needs it)"
    )
    p.add_argument("--certfile", default=None, help="TLS certificate (PEM): serve wss://")
    p.add_argument("--keyfile", default=None, help="TLS private key (PEM), if not inside --certfile")
    p.add_argument(
        "--chunk-frames",
        type=int,
        default=d.chunk_frames,
        help="10 ms feature frames per model step (rounded up to a multiple of the model's subsampling)",
    )
    DecodingConfig.add_arguments(p, hotwords=False)
    p.add_argument(
        "--hotword-weight",
        type=float,
        default=DecodingConfig.hotword_weight,
        help=f"bonus per word of a client's phrase_list (default {DecodingConfig.hotword_weight:g})",
    )
    p.add_argument(
        "--loop", choices=("auto", "uvloop", "asyncio"), default="auto", help="event loop (auto: uvloop if installed)"
    )
    p.add_argument(
        "--workers", type=int, default=1, help="server processes on the one port, each with its own engine (default 1)"
    )
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads for the model (0: torch's default)")
    p.add_argument(
        "--drain-seconds",
        type=float,
        default=d.drain_seconds,
        help="on SIGTERM, refuse new streams (503, /healthz 503) this long while open ones finish, then end them"
        " with their final results (default 0: at once)",
    )
    p.add_argument(
        "--trust-proxy",
        action="store_true",
        help="the client address (logs, per-address limits) is X-Forwarded-For's (only behind a proxy that sets it)",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def config_from_args(args) -> ServerConfig:
    from server.protocol import check_sample_rate

    for name in ("max_connections", "max_message_bytes"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("idle_timeout", "max_stream_seconds"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    try:
        check_sample_rate(args.sample_rate)
    except ProtocolError as exc:
        raise ValueError(f"--sample-rate: {exc}") from None
    if args.max_connections_per_address < 0:
        raise ValueError("--max-connections-per-address must be 0 (no limit) or more")
    if args.workers < 1:
        raise ValueError("--workers must be at least 1")
    if args.workers > 1 and str(args.model or "").endswith(".onnx"):
        raise ValueError("--workers > 1 needs a PyTorch model (ONNX Runtime sessions do not survive fork)")
    if args.threads < 0:
        raise ValueError("--threads must be 0 (torch's default) or more")
    if not args.drain_seconds >= 0 or args.drain_seconds == float("inf"):
        raise ValueError(f"--drain-seconds must be a number of seconds >= 0, not {args.drain_seconds}")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port {args.port} is not a port number")
    make_ssl_context(args.certfile, args.keyfile)  # fail before loading the model
    return ServerConfig(
        host=args.host,
        port=args.port,
        max_connections=args.max_connections,
        max_connections_per_address=args.max_connections_per_address,
        max_message_bytes=args.max_message_bytes,
        idle_timeout=args.idle_timeout,
        max_stream_seconds=args.max_stream_seconds,
        sample_rate=args.sample_rate,
        token=args.token or None,
        metrics_public=args.metrics_public,
        certfile=args.certfile,
        keyfile=args.keyfile,
        chunk_frames=args.chunk_frames,
        drain_seconds=args.drain_seconds,
        trust_proxy=args.trust_proxy,
    )


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)
    logging.getLogger("websockets").setLevel(logging.WARNING)


def main(argv=None) -> int:
    import asr
    from asr.model.checkpoint import CheckpointError

    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = config_from_args(args)
        new_loop = loop_factory(args.loop)
        workers = args.workers
        # several processes: CPU only (CUDA does not survive fork); the model is loaded once, before forking
        if workers > 1 and args.device not in ("auto", "cpu"):
            raise ValueError("--workers > 1 serves on the CPU (--device cpu); one process batches best on a GPU")
        threads = args.threads or (max(1, (os.cpu_count() or 1) // workers) if workers > 1 else 0)
        model = asr.load_model(args.model, device=args.device if workers == 1 else "cpu")
        decoders = make_decoder_factory(model.tokens, DecodingConfig.from_args(args))

        def serve_one(index: int = 0, shared=None, sock=None) -> int:
            if threads:
                torch.set_num_threads(threads)
            app = AsrServer(model, config, decoders, sock=sock, shared=(shared, index) if shared else None)
            with asyncio.Runner(loop_factory=new_loop) as runner:
                runner.run(run_until_signalled(app))
            return 0

        if workers == 1:
            return serve_one()
        sock = listen(config.host, config.port)
        return run_workers(workers, sock, lambda index, shared: serve_one(index, shared, sock), config.max_connections)
    except (CheckpointError, asr.ModelNotFoundError, ValueError) as exc:
        return fail(str(exc))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return fail(f"cannot listen on {args.host}:{args.port}: address already in use")
        return fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
