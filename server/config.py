"""What a server runs with: its settings (`ServerConfig`) and the per-stream decoders a client's options give
(`make_decoder_factory`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from asr.decode.config import DecodingConfig
from asr.stream import DEFAULT_CHUNK_FRAMES, EndpointConfig

STATIC_DIR = Path(__file__).parent / "static"


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 2700  # 0 picks a free port
    max_connections: int = 500
    # connections from one client address (0: no limit; beyond it HTTP 429). A tenth of the default
    # max_connections: it takes ten addresses to fill the server, while the clients behind one NAT (an
    # office, a carrier's) still get 50 streams at once. Behind a proxy it needs trust_proxy, else the
    # proxy's address is every client's.
    max_connections_per_address: int = 50
    max_message_bytes: int = 1 << 20  # larger messages close the socket with 1009
    idle_timeout: float = 60.0  # seconds without a message before the server closes the socket
    max_stream_seconds: float = 4 * 3600.0  # audio per connection, then a final result and close 1008
    sample_rate: int = 8000  # Hz when the client's config does not say (as vosk-server: its browser samples rely on it)
    token: str | None = None  # bearer token clients must present (and /metrics scrapers); None: no auth
    metrics_public: bool = False  # /metrics without the token (scrapers on a private network); /healthz always
    certfile: str | None = None
    keyfile: str | None = None
    chunk_frames: int = DEFAULT_CHUNK_FRAMES  # feature frames per model step
    ping_interval: float | None = 20.0  # seconds
    ping_timeout: float | None = 20.0  # seconds
    max_queue: int = 4  # messages websockets buffers per connection before pausing the socket
    shutdown_timeout: float = 10.0  # seconds open streams get to finish on SIGTERM
    drain_seconds: float = 0.0  # on SIGTERM, first refuse new streams (503, /healthz 503) this long while open
    # ones go on; then the rest get their final results (behind a load balancer: it moves new connections away)
    trust_proxy: bool = False  # the client address is the one a proxy puts in X-Forwarded-For (only behind one)
    static_dir: Path = STATIC_DIR
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)  # when utterances end


def make_decoder_factory(tokens, decoding: DecodingConfig | None = None):
    """Per-stream decoding from the server's `decoding` (default `DecodingConfig()`: beam search with the
    general English LM) and a client's options: "decoding" ("beam" | "greedy"), phrase_list (boosted
    hotwords), grammar (a closed list of phrases, as Vosk's; it takes the place of the server's) and
    max_alternatives (n-best, beam search).
    The LM is loaded here, once per process, so a mistake fails start-up and no connection waits for it."""
    from asr.model.tokenizer import normalize_text

    base = (decoding or DecodingConfig()).resolved()
    base.beam_factory(tokens)

    def factory(options: dict):
        phrases = [p for p in (normalize_text(p) for p in options.get("phrase_list") or ()) if p]
        grammar = options.get("grammar")
        config = base.replace(
            method=options.get("decoding") or base.method,
            hotwords=tuple((p, base.hotword_weight) for p in phrases),
            nbest=max(1, options.get("max_alternatives") or 0),
        )
        if not config.uses_beam and not grammar:
            return None
        made = []

        def per_stream():  # not called by the event loop: by the engine's thread, or with a phrase_list or a
            if not made:  # grammar by the server's decoder builder (the largest phrase_list takes 0.3-0.8 s to
                # build; a grammar is compiled when its config arrives, and again here only if 16 others came since)
                made.append((config.replace(grammar=tuple(grammar)) if grammar else config).beam_factory(tokens))
            return made[0]()

        per_stream.costly = bool(phrases or grammar)
        return per_stream

    return factory
