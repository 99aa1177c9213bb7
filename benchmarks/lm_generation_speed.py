"""Token LM generation speed with and without the KV cache, at a given number of tokens, batch 1.

    .venv/bin/python benchmarks/lm_generation_speed.py --lm runs/lm-small-2d/export [--tokens 1500]

The model keeps the trained LM's size and pattern but is re-initialised with room for ``--tokens`` steps
(speed does not depend on the weights). Writes docs/results/lm-generation-speed.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from musictok import __version__
from musictok.lm.model import TokenLM, TokenLMConfig
from musictok.lm.patterns import make_pattern
from musictok.metrics.version import METRICS_VERSION
from musictok.train.lm import load_lm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lm", required=True)
    ap.add_argument("--tokens", type=int, default=1500)
    ap.add_argument("--out", default="docs/results")
    args = ap.parse_args()
    loaded = load_lm(args.lm)
    layout = loaded.pattern.layout
    slots = layout.streams[0].num_slots
    frames = math.ceil(args.tokens / slots)
    pattern = make_pattern(loaded.meta["pattern"], layout, frames, **loaded.meta.get("pattern_options", {}))
    cfg = TokenLMConfig.from_dict(loaded.meta["config"] | {"max_steps": pattern.num_steps})
    torch.manual_seed(0)
    model = TokenLM(cfg, loaded.model.vocab).eval()
    result = {"lm": args.lm, "pattern": loaded.meta["pattern"], "steps": pattern.num_steps,
              "parameters": sum(p.numel() for p in model.parameters()), "threads": torch.get_num_threads(),
              "musictok_version": __version__, "metrics_version": METRICS_VERSION,
              "date": time.strftime("%Y-%m-%d")}
    ids = {}
    for use_cache in (True, False):
        t0 = time.perf_counter()
        ids[use_cache] = model.generate(pattern, 1, temperature=0.0, use_cache=use_cache)
        dt = time.perf_counter() - t0
        key = "kv_cache" if use_cache else "no_cache"
        result[f"{key}_seconds"] = dt
        result[f"{key}_tokens_per_second"] = pattern.num_steps / dt
        print(key, f"{pattern.num_steps / dt:.1f} tokens/s", flush=True)
    result["speedup"] = result["kv_cache_tokens_per_second"] / result["no_cache_tokens_per_second"]
    result["identical_tokens"] = bool(torch.equal(ids[True], ids[False]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lm-generation-speed.json").write_text(json.dumps(result, indent=1))
    (out / "lm-generation-speed.md").write_text(
        f"# Token LM generation speed ({result['date']})\n\n"
        f"{args.lm} architecture ({result['parameters'] / 1e6:.1f} M parameters, {result['pattern']} pattern), "
        f"greedy, batch 1, {result['steps']} tokens, {result['threads']} threads.\n\n"
        "| | seconds | tokens/s |\n|---|---:|---:|\n"
        f"| KV cache | {result['kv_cache_seconds']:.1f} | {result['kv_cache_tokens_per_second']:.0f} |\n"
        f"| no cache | {result['no_cache_seconds']:.1f} | {result['no_cache_tokens_per_second']:.1f} |\n\n"
        f"Speed-up {result['speedup']:.1f}×; identical greedy tokens: {result['identical_tokens']}.\n\n"
        f"Command: `.venv/bin/python benchmarks/lm_generation_speed.py --lm {args.lm} --tokens {args.tokens}`\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
