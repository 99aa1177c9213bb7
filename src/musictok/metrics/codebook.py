"""Codebook health: how much of a discrete vocabulary a tokenizer actually uses.

A codebook that collapses onto a few entries wastes bitrate and makes every
downstream normalisation (cnBPT, enBPT) misleading, so the same statistics are
reported for every tokenizer (DuoTok, Appendix E.1):

- utilization: the fraction of the ``K`` entries that occur at least once;
- normalized entropy: the empirical unigram entropy ``H`` (bits) divided by
  ``log2 K`` -- 1 for perfectly uniform use, 0 for a single repeated code;
- perplexity: ``2**H``, the "effective number" of codes in use.

Code tensors follow the layout of ``musictok.tokens``: ``(N, frames, slots)``
integers, where a slot is a residual codebook, a Mel band, a level or a track.

Convention used throughout ``musictok.metrics``: ``codebook_sizes`` given as a
single ``int`` means *one codebook shared by every slot* (BandTok: 8 bands, one
1024-entry codebook); a sequence means *one codebook per slot* (RVQ: pass
``[1024] * 8`` even though the sizes are equal, because the codebooks differ).

The entropy is the NSB estimate (:mod:`musictok.metrics.entropy`), not the
plug-in: a 32768-entry codebook read from ~15,000 tokens would otherwise look
a tenth less healthy than it is. The plug-in values stay beside it as
``entropy_bits_raw`` / ``normalized_entropy_raw``, and ``uniform_utilization``
is the utilization a perfectly uniform codebook would show at the same number
of tokens (utilization cannot reach 1 before ``N`` is a few times ``K``).

This module also holds the small counting helpers that ``predictability`` and
``dependence`` reuse.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from musictok.metrics.entropy import entropy_bits_from_counts, nsb_entropy_bits

__all__ = [
    "CodebookUsage",
    "CodebookHealth",
    "code_counts",
    "entropy_bits_from_counts",
    "codebook_usage",
    "codebook_health",
]


# --------------------------------------------------------------------------- helpers
def _check_codes(codes: Tensor, codebook_size: int, name: str = "codes") -> Tensor:
    """Validate integer codes in ``[0, codebook_size)`` and return them flattened as int64."""
    if not isinstance(codes, Tensor):
        codes = torch.as_tensor(codes)
    if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor of code indices, got dtype {codes.dtype}")
    if int(codebook_size) < 1:
        raise ValueError(f"codebook_size must be >= 1, got {codebook_size}")
    flat = codes.reshape(-1).to(torch.int64)
    if flat.numel() == 0:
        raise ValueError(f"{name} is empty; need at least one code to compute statistics")
    lo, hi = int(flat.min()), int(flat.max())
    if lo < 0 or hi >= codebook_size:
        raise ValueError(
            f"{name} contain values in [{lo}, {hi}] but codebook_size is {codebook_size}; "
            f"codes must lie in [0, {codebook_size}) -- is this the right codebook size or slot?"
        )
    return flat


def _check_slotted(codes: Tensor, name: str = "codes") -> Tensor:
    """Require the ``(N, frames, slots)`` layout so that slot and time axes are unambiguous."""
    if not isinstance(codes, Tensor):
        codes = torch.as_tensor(codes)
    if codes.ndim != 3:
        raise ValueError(
            f"{name} must be shaped (N, frames, slots), got shape {tuple(codes.shape)}; "
            "for a single-codebook stream add a slot axis with codes.unsqueeze(-1)"
        )
    return codes


def _slot_sizes(codebook_sizes: int | Sequence[int], num_slots: int) -> tuple[list[int], bool]:
    """Expand ``codebook_sizes`` to one size per slot; also return whether the codebook is shared."""
    if isinstance(codebook_sizes, int):
        return [int(codebook_sizes)] * num_slots, True
    sizes = [int(k) for k in codebook_sizes]
    if len(sizes) != num_slots:
        raise ValueError(
            f"got {len(sizes)} codebook sizes for {num_slots} slots; pass one size per slot, "
            "or a single int for a codebook shared by all slots"
        )
    return sizes, False


def code_counts(codes: Tensor, codebook_size: int) -> Tensor:
    """Histogram of code indices.

    Args:
        codes: integer tensor of any shape, values in ``[0, codebook_size)``.
        codebook_size: ``K``.
    Returns:
        ``(K,)`` int64 counts (on the device of ``codes``).
    """
    flat = _check_codes(codes, codebook_size)
    return torch.bincount(flat, minlength=int(codebook_size))


# --------------------------------------------------------------------------- usage of one codebook
@dataclass
class CodebookUsage:
    """Usage statistics of one codebook (or of one shared codebook pooled over slots)."""

    codebook_size: int
    num_tokens: int
    used: int  # entries that occur at least once
    utilization: float  # used / K
    entropy_bits: float  # unigram entropy H, the NSB estimate (metrics/entropy.py)
    normalized_entropy: float  # H / log2 K  (1.0 when K == 1)
    perplexity: float  # 2 ** H
    entropy_bits_raw: float  # the plug-in entropy of the observed frequencies (biased low for N < ~10 K)
    normalized_entropy_raw: float  # its H / log2 K
    uniform_utilization: float  # 1 - (1 - 1/K)^N: the utilization of uniformly used codes at this N
    counts: Tensor = field(repr=False)  # (K,) int64 histogram

    def to_dict(self, include_counts: bool = False) -> dict[str, Any]:
        """JSON-ready view; the histogram is left out unless asked for (it can be 32k long)."""
        out: dict[str, Any] = {
            "codebook_size": self.codebook_size,
            "num_tokens": self.num_tokens,
            "used": self.used,
            "utilization": self.utilization,
            "entropy_bits": self.entropy_bits,
            "normalized_entropy": self.normalized_entropy,
            "perplexity": self.perplexity,
            "entropy_bits_raw": self.entropy_bits_raw,
            "normalized_entropy_raw": self.normalized_entropy_raw,
            "uniform_utilization": self.uniform_utilization,
        }
        if include_counts:
            out["counts"] = self.counts.tolist()
        return out


def codebook_usage(codes: Tensor, codebook_size: int) -> CodebookUsage:
    """Utilization, normalized entropy and perplexity of codes drawn from one codebook.

    Args:
        codes: integer tensor of any shape, values in ``[0, codebook_size)``.
        codebook_size: ``K``.
    """
    counts = code_counts(codes, codebook_size)
    k = int(codebook_size)
    n = int(counts.sum())
    used = int((counts > 0).sum())
    h = nsb_entropy_bits(counts, k)
    raw = entropy_bits_from_counts(counts)
    # A one-entry codebook carries no information either way; call it "fully used".
    log2k = math.log2(k) if k > 1 else None
    return CodebookUsage(
        codebook_size=k,
        num_tokens=n,
        used=used,
        utilization=used / k,
        entropy_bits=h,
        normalized_entropy=h / log2k if log2k else 1.0,
        perplexity=2.0**h,
        entropy_bits_raw=raw,
        normalized_entropy_raw=raw / log2k if log2k else 1.0,
        uniform_utilization=-math.expm1(n * math.log1p(-1.0 / k)) if k > 1 else 1.0,
        counts=counts.cpu(),
    )


# --------------------------------------------------------------------------- all slots of a stream
@dataclass
class CodebookHealth:
    """Per-slot usage of a stream plus its summaries.

    ``pooled`` is the usage of the shared codebook over all slots (``None`` when
    each slot has its own codebook, where pooling indices of different
    codebooks would be meaningless). The means are unweighted over slots.
    """

    slots: dict[str, CodebookUsage]
    pooled: CodebookUsage | None
    mean_utilization: float
    mean_normalized_entropy: float

    def to_dict(self, include_counts: bool = False) -> dict[str, Any]:
        return {
            "slots": {name: u.to_dict(include_counts) for name, u in self.slots.items()},
            "pooled": None if self.pooled is None else self.pooled.to_dict(include_counts),
            "mean_utilization": self.mean_utilization,
            "mean_normalized_entropy": self.mean_normalized_entropy,
        }


def codebook_health(
    codes: Tensor,
    codebook_sizes: int | Sequence[int],
    *,
    slot_names: str | Sequence[str] = "slot",
) -> CodebookHealth:
    """Codebook usage per slot (codebook / band / level) and pooled for a shared codebook.

    Args:
        codes: ``(N, frames, slots)`` integer codes.
        codebook_sizes: one ``int`` for a codebook shared by all slots, or one
            size per slot for separate codebooks (see the module docstring).
        slot_names: a prefix (``"band"`` gives ``band0, band1, ...``) or one
            name per slot; used as keys of ``CodebookHealth.slots``.
    """
    codes = _check_slotted(codes)
    num_slots = codes.shape[-1]
    sizes, shared = _slot_sizes(codebook_sizes, num_slots)
    if isinstance(slot_names, str):
        names = [f"{slot_names}{i}" for i in range(num_slots)]
    else:
        names = [str(n) for n in slot_names]
        if len(names) != num_slots or len(set(names)) != num_slots:
            raise ValueError(f"slot_names must be {num_slots} distinct names, got {names}")
    slots = {names[s]: codebook_usage(codes[..., s], sizes[s]) for s in range(num_slots)}
    pooled = codebook_usage(codes, sizes[0]) if shared else None
    return CodebookHealth(
        slots=slots,
        pooled=pooled,
        mean_utilization=sum(u.utilization for u in slots.values()) / num_slots,
        mean_normalized_entropy=sum(u.normalized_entropy for u in slots.values()) / num_slots,
    )
