"""Final-result decoding with the default English LM: WER/CER per real-speech set, greedy beside beam + LM.

    python benchmarks/lm_decoding.py                          # the default decoding and greedy, every set
    python benchmarks/lm_decoding.py --grid lm_weight=0.75,1,1.25,1.5 word_score=-1,0,1 --sets so762_dev

The model's log-probs of each utterance (with the tail padding finals get) are computed once, then decoded
with each setting, so settings are compared on the same acoustics. Tune on so762_dev only; cv_dev, fsdd
yweweler and real_en are evaluation sets. Manifests come from recipes/default_en/local/real_manifests.py
(written into a temporary folder from ../shared/data unless --manifests is given). Also reports the LM's
load time and the process's RSS after loading it, and the decoding time per audio second (1 thread).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jiwer
import torch
from common import portable

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SETS = ["so762_dev", "cv_dev", "fsdd_test", "real_en", "real_en_no_ps"]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def manifests(folder: Path | None) -> Path:
    if folder:
        return folder
    out = Path(tempfile.mkdtemp(prefix="lm_decoding_"))
    script = REPO / "recipes" / "default_en" / "local" / "real_manifests.py"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, str(script), str(DATA), str(out)], check=True, env=env, stdout=subprocess.DEVNULL)
    return out


@torch.inference_mode()
def log_probs(model, path: Path) -> list[tuple[str, torch.Tensor, float]]:
    from asr.audio import pad_tail
    from asr.audio.files import load_audio
    from asr.audio.frontend import LogMel
    from asr.model.tokenizer import normalize_text
    from asr.train.manifests import read_manifest

    logmel, out = LogMel(), []
    for e in read_manifest(path):
        feats = logmel(torch.from_numpy(pad_tail(load_audio(e["audio"]))))
        lp, n = model(feats[None], torch.tensor([feats.shape[0]]))
        out.append((normalize_text(e["text"]), lp[0, : n[0]].float().clone(), e["duration"]))
    return out


def parse_grid(items: list[str]) -> dict[str, list]:
    grid = {}
    for item in items:
        key, _, values = item.partition("=")
        grid[key] = [json.loads(v) for v in values.split(",")]
    return grid


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model bundle (default: the embedded model)")
    p.add_argument(
        "--manifests", type=Path, default=None, help="folder of <set>.jsonl (default: made from shared data)"
    )
    p.add_argument("--sets", nargs="+", default=SETS)
    p.add_argument("--grid", nargs="*", default=[], metavar="FIELD=V1,V2", help="DecodingConfig fields to sweep")
    p.add_argument("--no-greedy", action="store_true", help="leave out the greedy row")
    p.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    import asr
    from asr.decode.config import DecodingConfig
    from asr.decode.greedy import ctc_greedy

    model = asr.load_model(args.model, device="cpu")
    folder = manifests(args.manifests)
    data = {
        name: log_probs(model, folder / f"{name}.jsonl") for name in args.sets if (folder / f"{name}.jsonl").exists()
    }
    rss_model = rss_mb()
    t = time.perf_counter()
    DecodingConfig().beam_factory(model.tokens)  # the default LM: built if needed, loaded, its trie made
    load_s, rss_lm = time.perf_counter() - t, rss_mb()
    print(f"default LM: loaded in {load_s:.1f} s; RSS {rss_model:.0f} MB with the model, {rss_lm:.0f} MB with the LM")

    grid = parse_grid(args.grid)
    configs = [None] if not args.no_greedy else []
    configs += [DecodingConfig(**dict(zip(grid, values, strict=True))) for values in itertools.product(*grid.values())]
    rows = []
    print(f"{'decoding':48}" + "".join(f"{name:>22}" for name in data) + "   decode RTF")
    for config in configs:
        beam = config.beam_factory(model.tokens)() if config else None
        row = {"decoding": config.describe() if config else "greedy", "config": None, "sets": {}}
        if config:
            row["config"] = {k: v for k, v in config.__dict__.items() if k != "hotwords"}
        decode_s = audio_s = 0.0
        for name, utterances in data.items():
            t = time.perf_counter()
            hyps = [beam.decode(lp)[0]["text"] if beam else ctc_greedy(lp, model.tokens)[0] for _, lp, _ in utterances]
            decode_s += time.perf_counter() - t
            audio_s += sum(d for *_, d in utterances)
            refs = [r for r, *_ in utterances]
            row["sets"][name] = {"wer": jiwer.wer(refs, hyps), "cer": jiwer.cer(refs, hyps), "utterances": len(refs)}
        row["decode_rtf"] = decode_s / audio_s
        rows.append(row)
        cells = "".join(f"{100 * s['wer']:>9.1f}% ({100 * s['cer']:4.1f}% CER)" for s in row["sets"].values())
        print(f"{row['decoding']:48}{cells}   {row['decode_rtf']:.4f}", flush=True)
    if args.out:
        info = {"lm_load_s": load_s, "rss_mb_model": rss_model, "rss_mb_model_and_lm": rss_lm}
        args.out.write_text(json.dumps(portable({"info": info, "rows": rows}), indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
