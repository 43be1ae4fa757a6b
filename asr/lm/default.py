"""The general-English word language model that final results are decoded with by default.

It is pocketsphinx's `en-us.lm.bin` (a pruned 3-gram: 72,547 words, 2,051,541 bigrams, 1,669,625 trigrams;
BSD-2-Clause, CMU), which comes with the `pocketsphinx` dependency. KenLM, which the beam search uses, reads
ARPA, so the first use converts it (`asr.lm.sphinx`, about 10 s) into the user's cache,
`$XDG_CACHE_HOME/gru-asr/` (default `~/.cache/gru-asr/`), with a progress bar; the file is written under a
temporary name and renamed into place, and a small JSON beside it records what it was built from, so a
truncated or stale file is rebuilt rather than used. `asr lm info` shows what is in use, `asr lm build`
builds it ahead of time (an installer or a container image would).

    asr lm info            # (asr.apps.lm_cli) source, cache file, n-gram counts, whether it is built
    asr lm build [--force]
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

from asr.util.atomic import atomic_open

FORMAT = 1  # bump when the conversion changes: older cache files are rebuilt
NAME = f"en-us-3gram-v{FORMAT}"
SOURCE = "pocketsphinx: model/en-us/en-us.lm.bin (CMU, BSD-2-Clause)"


class LMUnavailable(Exception):
    """The default language model cannot be had (pocketsphinx missing, its model unreadable, no cache)."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gru-asr"


def arpa_path() -> Path:
    return cache_dir() / f"{NAME}.arpa"


def _meta_path() -> Path:
    return cache_dir() / f"{NAME}.json"


def source_path() -> Path:
    """pocketsphinx's en-us.lm.bin, found without importing pocketsphinx (its C extension is not needed)."""
    spec = importlib.util.find_spec("pocketsphinx")
    if spec is None or not spec.submodule_search_locations:
        raise LMUnavailable(
            "the pocketsphinx package (which holds the English LM) is not installed: pip install pocketsphinx"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / "en-us" / "en-us.lm.bin"
    if not path.is_file():
        raise LMUnavailable(f"pocketsphinx is installed but has no {path.name} ({path})")
    return path


def _source_key(source: Path) -> dict:
    """What the cached file must have been built from (the path may change with the environment)."""
    return {"source_size": source.stat().st_size, "format": FORMAT}


def _read_meta() -> dict | None:
    try:
        return json.loads(_meta_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_built(source: Path | None = None) -> bool:
    """The cached ARPA exists, has the size recorded when it was written, and comes from this source."""
    meta = _read_meta()
    try:
        key = _source_key(source or source_path())
        return (
            meta is not None
            and all(meta.get(k) == v for k, v in key.items())
            and arpa_path().stat().st_size == meta.get("arpa_size")
        )
    except (OSError, LMUnavailable):
        return False


def build(force: bool = False, progress: bool = True) -> Path:
    """Convert pocketsphinx's model into the cache (unless it is there and sound); returns the ARPA path."""
    from asr.lm.sphinx import SphinxLM, SphinxLMError

    source = source_path()
    if not force and is_built(source):
        return arpa_path()
    out = arpa_path()
    print(f"asr: building the English language model (once) from {source.name} into {out} ...", file=sys.stderr)
    try:
        lm = SphinxLM(source)
        from tqdm import tqdm

        with tqdm(
            total=sum(lm.counts), unit="n-gram", unit_scale=True, disable=not progress or None, file=sys.stderr
        ) as bar:
            lm.write_arpa(out, progress=bar.update)
        meta = {"source": str(source), **_source_key(source), "arpa_size": out.stat().st_size, "counts": lm.counts}
        with atomic_open(_meta_path()) as f:
            f.write(json.dumps(meta, indent=1) + "\n")
    except SphinxLMError as e:
        raise LMUnavailable(str(e)) from None
    except OSError as e:
        raise LMUnavailable(f"cannot write the language model cache {out}: {e.strerror or e}") from None
    return out


def default_lm_path(progress: bool = True) -> Path:
    """The ARPA file of the default LM, built on first use. Raises LMUnavailable with a one-line reason."""
    return build(progress=progress)


def info() -> dict:
    result = {"name": NAME, "source": SOURCE, "cache": str(arpa_path()), "built": False}
    try:
        result["source_file"] = str(source_path())
    except LMUnavailable as e:
        result["error"] = str(e)
        return result
    result["built"] = is_built()
    meta = _read_meta()
    if result["built"] and meta:
        result["counts"] = meta.get("counts")
        result["size_mb"] = round(meta["arpa_size"] / 1e6, 1)
    return result
