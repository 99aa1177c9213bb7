"""Turning a token LM's logits into tokens: temperature, top-k and nucleus (top-p) sampling.

Filters work on the last axis of logits of any shape and replace dropped entries by ``-inf``, so they
compose with other masks (e.g. a pattern's ``target_ranges``) and with each other: top-k first, then top-p
on what is left. Everything is computed in float32, whatever the logits' dtype (bf16 autocast).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["filter_logits", "sample"]


def filter_logits(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Keep the ``top_k`` highest logits, then the smallest set whose probability mass is ``>= top_p``.

    Args:
        logits: ``(..., V)``.
        top_k: keep exactly this many entries (ties broken by index); ``None`` keeps all.
        top_p: nucleus mass in ``(0, 1]``; the most probable entry is always kept. ``None`` or 1 keeps all.
    Returns:
        ``(..., V)`` float32 logits with dropped entries at ``-inf``.
    """
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 (or None for no limit), got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] (or None), got {top_p}")
    out = logits.float()
    if top_k is not None and top_k < out.shape[-1]:
        keep = torch.zeros_like(out, dtype=torch.bool).scatter_(-1, out.topk(top_k, dim=-1).indices, True)
        out = out.masked_fill(~keep, float("-inf"))
    if top_p is not None and top_p < 1.0:
        probs, order = out.softmax(dim=-1).sort(dim=-1, descending=True)
        mass_before = probs.cumsum(dim=-1) - probs  # mass of the strictly more probable entries
        keep_sorted = mass_before < top_p  # an entry is needed while the set so far is short of top_p
        keep_sorted[..., 0] = True
        keep = torch.zeros_like(keep_sorted).scatter_(-1, order, keep_sorted)
        out = out.masked_fill(~keep, float("-inf"))
    return out


def sample(logits: Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
           generator: torch.Generator | Sequence[torch.Generator] | None = None) -> Tensor:
    """Draw one id per row of ``logits (..., V)`` -> ``(...)`` long.

    ``temperature == 0`` is greedy decoding (argmax, no randomness); otherwise logits are divided by the
    temperature before top-k / top-p filtering. Pass a ``generator`` on the logits' device for
    reproducible draws, or one per item of the first axis (``logits (B, ..., V)``): item ``b`` then draws
    from ``generator[b]`` exactly what it would draw alone, so a batch of sequences samples what each
    sequence samples on its own.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if logits.ndim < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits need a vocabulary axis, got shape {tuple(logits.shape)}")
    if temperature == 0:
        return logits.float().argmax(dim=-1)
    if isinstance(generator, Sequence):
        if logits.ndim < 2 or len(generator) != logits.shape[0]:
            raise ValueError(f"one generator per item: {len(generator)} generators for logits of shape "
                             f"{tuple(logits.shape)}")
        return torch.stack([sample(row, temperature, top_k, top_p, g) for row, g in zip(logits, generator)])
    filtered = filter_logits(logits.float() / temperature, top_k, top_p)
    probs = filtered.softmax(dim=-1).reshape(-1, logits.shape[-1])
    ids = torch.multinomial(probs, 1, generator=generator)
    return ids.reshape(logits.shape[:-1])
