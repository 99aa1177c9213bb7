"""Token LM generation speed: tokens per second and times real time, batch 1 and a batch, with the KV cache.

    .venv/bin/python benchmarks/lm_generation_speed.py --lm pretrained/bandtok-small-lm [--tokens 1500]
        [--batch 8] [--threads 1 2] [--no-cache-row] [--write]

The model keeps the trained LM's size and pattern but is re-initialised with room for ``--tokens`` steps
(speed does not depend on the weights). Greedy decoding, so every row generates the same work. For each
thread count: batch 1 and ``--batch`` sequences with the KV cache (tokens/s counts the tokens of all
sequences), optionally batch 1 without the cache (slow: it reruns the prefix every step). "× real time"
divides by the tokenizer's token rate (bandtok-small: 187.5 tokens per second of audio).

Also printed: the time of one pass of the model's matrix-vector products alone (its weights streamed
once, what every batch-1 step must do) — the floor of a batch-1 step on this machine. On a shared machine
the numbers say little (the load average is printed). ``--write`` writes docs/results/lm-generation-speed.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from musictok.atomic import write_json
from musictok.lm.model import TokenLM, TokenLMConfig
from musictok.lm.patterns import make_pattern
from musictok.report import provenance
from musictok.train.lm import load_lm


def weight_pass_seconds(model: nn.Module, repeats: int = 50) -> float:
    """Seconds of one matrix-vector product with every linear layer of ``model`` (batch 1, the model's dtype)."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    xs = {m: torch.randn(1, 1, m.in_features, dtype=m.weight.dtype) for m in layers}
    with torch.no_grad():
        for m in layers:
            F.linear(xs[m], m.weight)
        t0 = time.perf_counter()
        for _ in range(repeats):
            for m in layers:
                F.linear(xs[m], m.weight)
    return (time.perf_counter() - t0) / repeats


def timed_generate(model: TokenLM, pattern, batch: int, use_cache: bool) -> tuple[float, torch.Tensor]:
    t0 = time.perf_counter()
    ids = model.generate(pattern, batch, temperature=0.0, use_cache=use_cache)
    return time.perf_counter() - t0, ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lm", required=True)
    ap.add_argument("--tokens", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--no-cache-row", action="store_true", help="also time batch 1 without the KV cache")
    ap.add_argument("--write", action="store_true", help="write docs/results/lm-generation-speed.{md,json}")
    ap.add_argument("--out", default="docs/results")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    loaded = load_lm(args.lm)
    layout = loaded.pattern.layout
    slots = layout.streams[0].num_slots
    frames = math.ceil(args.tokens / slots)
    pattern = make_pattern(loaded.meta["pattern"], layout, frames, **loaded.meta.get("pattern_options", {}))
    cfg = TokenLMConfig.from_dict(loaded.meta["config"] | {"max_steps": pattern.num_steps})
    torch.manual_seed(0)
    model = TokenLM(cfg, loaded.model.vocab).eval()
    real_time = layout.tokens_per_second
    result: dict = {"lm": args.lm, "pattern": loaded.meta["pattern"], "steps": pattern.num_steps,
                    "parameters": sum(p.numel() for p in model.parameters()), "audio_tokens_per_second": real_time,
                    "batch": args.batch, "rows": []}
    model.generate(make_pattern(loaded.meta["pattern"], layout, 4, **loaded.meta.get("pattern_options", {})), 1,
                   temperature=0.0)  # warm-up
    for threads in args.threads:
        torch.set_num_threads(threads)
        floor = weight_pass_seconds(model)
        print(f"{threads} thread(s): one pass over the weights (batch-1 matrix-vector products) {1e3 * floor:.2f} ms "
              f"-> at most {1 / floor:.0f} tokens/s at batch 1", flush=True)
        runs = [(1, True), (args.batch, True)] + ([(1, False)] if args.no_cache_row else [])
        ids = {}
        for batch, use_cache in runs:
            dt, ids[(batch, use_cache)] = timed_generate(model, pattern, batch, use_cache)
            tps = batch * pattern.num_steps / dt
            row = {"threads": threads, "batch": batch, "kv_cache": use_cache, "seconds": dt, "tokens_per_second": tps,
                   "times_real_time": tps / real_time, "weight_pass_ms": 1e3 * floor}
            result["rows"].append(row)
            print(f"  batch {batch:2d} {'KV cache' if use_cache else 'no cache'}: {tps:7.0f} tokens/s = "
                  f"{tps / real_time:5.1f}× real time ({dt:.1f} s)", flush=True)
        b1 = ids[(1, True)]
        result.setdefault("batch_rows_equal_batch_1", []).append(
            all(torch.equal(row, b1[0]) for row in ids[(args.batch, True)]))
        if (1, False) in ids:
            result.setdefault("cache_equals_no_cache", []).append(bool(torch.equal(ids[(1, False)], b1)))
    load_after = os.getloadavg()[0]
    result |= {"load_average_before": load_before, "load_average_after": load_after,
               **provenance()}
    busy = max(load_before, load_after) > 0.5
    if busy:
        print(f"warning: load average {max(load_before, load_after):.2f}: another job shares the CPU, so these "
              "numbers are distorted")
    if not args.write:
        print(json.dumps(result, indent=1))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "lm-generation-speed.json", result)
    lines = [f"| {r['threads']} | {r['batch']} | {'yes' if r['kv_cache'] else 'no'} | {r['tokens_per_second']:.0f} | "
             f"{r['times_real_time']:.1f}× | {r['weight_pass_ms']:.2f} ms |" for r in result["rows"]]
    (out / "lm-generation-speed.md").write_text(
        f"# Token LM generation speed ({result['date']})\n\n"
        f"{args.lm} architecture ({result['parameters'] / 1e6:.1f} M parameters, {result['pattern']} pattern), "
        f"greedy, {result['steps']} tokens per sequence; {result['machine']}; load average {load_before:.2f} before, "
        f"{load_after:.2f} after{' — **another job shared the CPU: numbers distorted**' if busy else ''}. "
        f"Real time = {real_time:g} tokens per second of audio; tokens/s counts all sequences of a batch.\n\n"
        "| threads | batch | KV cache | tokens/s | × real time | one pass over the weights |\n"
        "|---:|---:|---|---:|---:|---:|\n" + "\n".join(lines) + "\n\n"
        f"Batch rows equal to batch 1: {result['batch_rows_equal_batch_1']}.\n\n"
        f"Command: `.venv/bin/python benchmarks/lm_generation_speed.py --lm {args.lm} --tokens {args.tokens} "
        f"--batch {args.batch} --write`\n")


if __name__ == "__main__":
    main()
