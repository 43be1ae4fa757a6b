"""`asr lm info|build`: what the default English language model is, where it is cached; build the cache now."""

from __future__ import annotations

import argparse
import sys

from asr.decode.config import DecodingConfig
from asr.lm.default import LMUnavailable, build, info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asr lm", description="the default English language model")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("info", help="what the default LM is, where it is cached, whether it is built")
    b = sub.add_parser("build", help="build the cached ARPA file now")
    b.add_argument("--force", action="store_true", help="rebuild even if the cache looks sound")
    args = parser.parse_args(argv)
    if args.action == "build":
        try:
            path = build(force=args.force)
        except LMUnavailable as e:
            print(f"asr: error: {e}", file=sys.stderr)
            return 1
        print(path)
        return 0
    d = info()
    default = DecodingConfig()
    print(f"default decoding: {default.describe()}")
    print(f"language model:   {d['source']}")
    if "error" in d:
        print(f"  unavailable: {d['error']} (finals are decoded greedily)")
        return 1
    print(f"  source file:    {d['source_file']}")
    print(f"  cache:          {d['cache']} ({'built' if d['built'] else 'not built yet: built on first use'})")
    if d.get("counts"):
        counts = ", ".join(f"{c:,} {n}-grams" for n, c in enumerate(d["counts"], 1))
        print(f"  n-grams:        {counts} ({d['size_mb']} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
