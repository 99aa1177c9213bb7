"""Token LM training efficiency on this machine: the project's LM against a plain model and the matmul peak.

    .venv/bin/python benchmarks/lm_efficiency.py [--steps 6] [--threads 2] [--write]

In one run, with the same thread count:

- the matmul peak: the best of a few 2048 x 2048 matmuls, float32 and bfloat16 (GFLOP/s);
- the bench's LM (musictok.bench defaults: 4 layers x 256, 8 heads, band-grid over bandtok-small's layout,
  4 s windows = 752 steps, batch 8, AdamW, gradient clipping) training under bf16 autocast, as
  ``musictok train lm`` / ``bench`` run it;
- a plain float32 nanoGPT-style model of the same size and sequence (LayerNorm, GELU MLP 4x, learned
  positions, causal SDPA, one 1024-way head), trained the same way without autocast.

Both models are timed in alternation (after a warm-up step each), so a neighbour's load hits both alike;
the medians are printed with tokens/s, model FLOP utilisation (6 N + 12 L d T FLOPs per token, against the
peak of the precision the model runs in) and the ratio of the two. Issue 16 aims at >= 2x the plain model.
On a shared machine the numbers say little (the load average is printed): run it on a quiet one.
``--write`` writes docs/results/lm-efficiency.{md,json}.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from musictok.atomic import write_json
from musictok.lm.model import TokenLM, TokenLMConfig
from musictok.lm.patterns import make_pattern
from musictok.report import provenance
from musictok.tokens import StreamSpec, TokenLayout

FRAMES = 94  # bench context: 4 s at 23.4375 frames/s
BANDS, CODES = 8, 1024


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of the fastest of ``repeats`` ``n x n`` matmuls."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


# ---------------------------------------------------------------- the plain model (nanoGPT's shape)
@dataclass
class PlainConfig:
    n_layer: int = 4
    n_head: int = 8
    n_embd: int = 256
    block_size: int = BANDS * FRAMES
    vocab_size: int = CODES


class PlainBlock(nn.Module):
    def __init__(self, c: PlainConfig):
        super().__init__()
        self.n_head = c.n_head
        self.ln_1, self.ln_2 = nn.LayerNorm(c.n_embd), nn.LayerNorm(c.n_embd)
        self.c_attn = nn.Linear(c.n_embd, 3 * c.n_embd)
        self.c_proj = nn.Linear(c.n_embd, c.n_embd)
        self.mlp = nn.Sequential(nn.Linear(c.n_embd, 4 * c.n_embd), nn.GELU(), nn.Linear(4 * c.n_embd, c.n_embd))

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for t in self.c_attn(self.ln_1(x)).split(C, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.c_proj(y)
        return x + self.mlp(self.ln_2(x))


class PlainGPT(nn.Module):
    """nanoGPT's model: token + learned position embeddings, pre-LN blocks, a tied head."""

    def __init__(self, c: PlainConfig):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(c.vocab_size, c.n_embd), nn.Embedding(c.block_size, c.n_embd)
        self.blocks = nn.ModuleList(PlainBlock(c) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd)
        self.head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, idx: Tensor, targets: Tensor) -> Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for b in self.blocks:
            x = b(x)
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


# ---------------------------------------------------------------- training steps
def matmul_params(model: nn.Module) -> int:
    """Parameters that sit in matmuls (linear layers and untied heads; not embeddings, norms, gains)."""
    seen, n = set(), 0
    for m in model.modules():
        if isinstance(m, nn.Linear) and id(m.weight) not in seen:
            seen.add(id(m.weight))
            n += m.weight.numel()
    return n


def flops_per_token(model: nn.Module, n_layer: int, d: int, T: int) -> float:
    """PaLM / nanoGPT estimate: 6 N for the weights, 12 L d T for attention scores and values."""
    return 6 * matmul_params(model) + 12 * n_layer * d * T


def lm_step(batch: int, config: TokenLMConfig):
    """The project's LM and a closure that runs one ``LMTask.train_step`` on random codes."""
    layout = TokenLayout((StreamSpec("bands", 23.4375, (CODES,) * BANDS, slot_axis="band", shared_codebook=True),))
    pattern = make_pattern("band-grid", layout, FRAMES)
    model = TokenLM.from_pattern(config, pattern)
    opt = torch.optim.AdamW(model.optimizer_groups(0.1), lr=1e-3, betas=(0.9, 0.95))
    g = torch.Generator().manual_seed(0)

    def step() -> None:
        codes = torch.randint(0, CODES, (batch, FRAMES, BANDS), generator=g)
        b = pattern.build([codes])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(b.inputs, b.positions, pattern.scored_targets(b.targets), keep_logits=False)  # as LMTask
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return model, step, pattern.num_steps


def plain_step(batch: int, config: PlainConfig):
    model = PlainGPT(config)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95))
    g = torch.Generator().manual_seed(0)

    def step() -> None:
        idx = torch.randint(0, config.vocab_size, (batch, config.block_size + 1), generator=g)
        loss = model(idx[:, :-1], idx[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return model, step


def timed(step) -> float:
    t0 = time.perf_counter()
    step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per model (after one warm-up)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--write", action="store_true", help="write docs/results/lm-efficiency.{md,json}")
    ap.add_argument("--out", default="docs/results")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    torch.manual_seed(0)
    lm_cfg = TokenLMConfig.preset("small", n_layer=4, n_embd=256, n_head=8, rope="2d", max_steps=1024)
    lm, lm_train, T = lm_step(args.batch, lm_cfg)
    plain, plain_train = plain_step(args.batch, PlainConfig())
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    print(f"threads {torch.get_num_threads()}, load average {load_before:.2f}; matmul peak (2048²): "
          f"fp32 {peak32:.0f}, bf16 {peak16:.0f} GFLOP/s", flush=True)
    lm_train(), plain_train()  # warm-up: allocations, kernel selection
    times: dict[str, list[float]] = {"lm": [], "plain": []}
    for i in range(args.steps):
        times["lm"].append(timed(lm_train))
        times["plain"].append(timed(plain_train))
        print(f"step {i + 1}: musictok LM {times['lm'][-1]:.3f} s, plain fp32 {times['plain'][-1]:.3f} s", flush=True)
    tokens = args.batch * T
    result: dict = {"batch": args.batch, "steps_per_window": T, "threads": torch.get_num_threads(),
                    "matmul_peak_gflops": {"float32": peak32, "bfloat16": peak16}}
    for name, model, cfg, peak in (("lm", lm, lm_cfg, peak16), ("plain", plain, PlainConfig(), peak32)):
        sec = statistics.median(times[name])
        fpt = flops_per_token(model, cfg.n_layer, cfg.n_embd, T)
        result[name] = {"seconds_per_step": sec, "tokens_per_second": tokens / sec, "flops_per_token": fpt,
                        "parameters": sum(p.numel() for p in model.parameters()),
                        "gflops": fpt * tokens / sec / 1e9, "mfu": fpt * tokens / sec / 1e9 / peak}
    result["lm"]["precision"], result["plain"]["precision"] = "bf16 autocast", "float32"
    result["speedup"] = result["lm"]["tokens_per_second"] / result["plain"]["tokens_per_second"]
    load_after = os.getloadavg()[0]
    result |= {"load_average_before": load_before, "load_average_after": load_after,
               **provenance()}
    for name, label in (("lm", "musictok LM (bf16 autocast)"), ("plain", "plain nanoGPT-style (fp32)")):
        r = result[name]
        print(f"{label}: {r['tokens_per_second']:.0f} tokens/s, {r['gflops']:.0f} GFLOP/s, MFU {100 * r['mfu']:.0f} %")
    print(f"speed-up over the plain fp32 model: {result['speedup']:.2f}×")
    busy = max(load_before, load_after) > 0.5
    if busy:
        print(f"warning: load average {max(load_before, load_after):.2f}: another job shares the CPU, so these "
              "numbers are distorted")
    if not args.write:
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "lm-efficiency.json", result)
    lm_r, pl = result["lm"], result["plain"]
    (out / "lm-efficiency.md").write_text(
        f"# Token LM training efficiency ({result['date']})\n\n"
        f"{result['machine']}, {result['threads']} threads, load average {load_before:.2f} before, "
        f"{load_after:.2f} after{' — **another job shared the CPU: numbers distorted**' if busy else ''}. "
        f"Batch {args.batch} × {T} steps, median of {args.steps} steps after a warm-up, the two models in "
        f"alternation. Matmul peak (2048²): fp32 {peak32:.0f}, bf16 {peak16:.0f} GFLOP/s.\n\n"
        "| model | precision | tokens/s | GFLOP/s | MFU |\n|---|---|---:|---:|---:|\n"
        f"| musictok TokenLM (4 × 256, band-grid, 2-D RoPE) | bf16 autocast | {lm_r['tokens_per_second']:.0f} | "
        f"{lm_r['gflops']:.0f} | {100 * lm_r['mfu']:.0f} % of bf16 |\n"
        f"| plain nanoGPT-style, same size | fp32 | {pl['tokens_per_second']:.0f} | {pl['gflops']:.0f} | "
        f"{100 * pl['mfu']:.0f} % of fp32 |\n\n"
        f"Speed-up over the plain fp32 model: **{result['speedup']:.2f}×**. FLOPs per token: 6 N + 12 L d T.\n\n"
        "Command: `.venv/bin/python benchmarks/lm_efficiency.py --write`\n")


if __name__ == "__main__":
    main()
