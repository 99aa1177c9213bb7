"""Statistical dependence between tokens: across codebooks, along time, across bands.

Why it matters: an LM that predicts the codebooks of a frame in parallel fits
the *product of the marginals*; that is exact only when the codebooks are
independent given the past. The mutual information (MI) between slots of the
same frame measures what parallel decoding throws away, and the MI between
neighbours in time or frequency measures the structure an LM can exploit.

Discrete estimates (bits) come from joint histograms of code pairs:

- plug-in MI: ``I = H(X) + H(Y) - H(X, Y)`` with empirical probabilities;
- Miller-Madow correction: each plug-in entropy is low by about
  ``(B - 1) / (2 N ln 2)`` bits (``B`` = non-empty bins, ``N`` = pairs), so
  ``I_MM = I_plugin - (B_xy - B_x - B_y + 1) / (2 N ln 2)``. It removes most of the
  positive bias of the plug-in MI of independent codes, but estimates are
  still only trustworthy when ``N`` is large compared to ``K_x * K_y``.

The continuous counterpart (Independence-promoting loss paper) compares, with a
maximum mean discrepancy in a Gaussian RKHS, samples of the joint
distribution of the per-level embeddings with samples of the product of their
marginals: zero iff the levels are independent (for a characteristic kernel).

Codes are ``(N, frames, slots)`` integers; ``codebook_sizes`` is an ``int`` for a
shared codebook or one size per slot (see ``musictok.metrics.codebook``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from musictok.metrics.codebook import (
    _check_codes,
    _check_slotted,
    _slot_sizes,
    entropy_bits_from_counts,
)

__all__ = [
    "mutual_information",
    "normalized_mutual_information",
    "InterCodebookMI",
    "inter_codebook_mi",
    "neighbour_mi",
    "conditional_entropy_left",
    "mmd_joint_vs_product",
    "DependenceResult",
    "dependence_metrics",
]

BiasCorrection = Literal["miller-madow", "none"] | None


# --------------------------------------------------------------------------- discrete entropies
def _use_miller_madow(bias_correction: BiasCorrection) -> bool:
    if bias_correction in (None, "none"):
        return False
    if bias_correction == "miller-madow":
        return True
    raise ValueError(f"bias_correction must be 'miller-madow' or None, got {bias_correction!r}")


def _sparse_counts(index: Tensor) -> Tensor:
    """Counts of the distinct values of ``index`` (only non-empty bins, so K^2 joint bins stay cheap)."""
    return torch.unique(index, return_counts=True)[1]


def _pair_entropies(
    x: Tensor, y: Tensor, kx: int, ky: int, miller_madow: bool
) -> tuple[float, float, float]:
    """``H(X), H(Y), H(X, Y)`` in bits of paired codes ``x``, ``y`` (same shape)."""
    if x.shape != y.shape:
        raise ValueError(f"x {tuple(x.shape)} and y {tuple(y.shape)} must be paired element by element")
    fx = _check_codes(x, kx, "x")
    fy = _check_codes(y, ky, "y")
    joint = fx * int(ky) + fy
    hx = entropy_bits_from_counts(_sparse_counts(fx), miller_madow=miller_madow)
    hy = entropy_bits_from_counts(_sparse_counts(fy), miller_madow=miller_madow)
    hxy = entropy_bits_from_counts(_sparse_counts(joint), miller_madow=miller_madow)
    return hx, hy, hxy


def mutual_information(
    x: Tensor,
    y: Tensor,
    kx: int,
    ky: int,
    *,
    bias_correction: BiasCorrection = "miller-madow",
    clamp: bool = True,
) -> float:
    """MI in bits between paired codes ``x`` and ``y`` from their joint counts.

    Args:
        x, y: integer tensors of the same shape; element ``i`` of each forms a pair.
        kx, ky: codebook sizes of ``x`` and ``y``.
        bias_correction: ``"miller-madow"`` (default) applies the Miller-Madow
            correction to every entropy, i.e. subtracts
            ``(B_xy - B_x - B_y + 1) / (2 N ln 2)`` from the plug-in MI; ``None``
            gives the plug-in estimate.
        clamp: clip the (corrected) estimate at 0; a corrected MI of independent
            codes scatters around 0, so turn this off to see the sign.
    """
    hx, hy, hxy = _pair_entropies(x, y, kx, ky, _use_miller_madow(bias_correction))
    mi = hx + hy - hxy
    return max(mi, 0.0) if clamp else mi


def _nmi_from_entropies(hx: float, hy: float, hxy: float) -> float:
    denom = min(hx, hy)
    if denom <= 0:
        return 0.0  # a constant variable shares no information with anything
    return min(max((hx + hy - hxy) / denom, 0.0), 1.0)


def normalized_mutual_information(
    x: Tensor,
    y: Tensor,
    kx: int,
    ky: int,
    *,
    bias_correction: BiasCorrection = "miller-madow",
) -> float:
    """``I(X; Y) / min(H(X), H(Y))``, in ``[0, 1]``.

    The ``min`` normalisation reads as "the fraction of the less informative
    code that the other one determines": it is 1 whenever one code is a
    function of the other (a copied or merely relabelled codebook), which is
    the redundancy this metric is meant to flag. Entropies and MI use the same
    bias correction; 0 when either code is constant.
    """
    hx, hy, hxy = _pair_entropies(x, y, kx, ky, _use_miller_madow(bias_correction))
    return _nmi_from_entropies(hx, hy, hxy)


# --------------------------------------------------------------------------- token layouts
@dataclass
class InterCodebookMI:
    """MI between the slots of the same frame.

    ``mutual_information[i, j]`` is ``I(slot_i; slot_j)`` in bits (the diagonal
    holds each slot's entropy ``H(slot_i)``); ``normalized_mutual_information``
    is the same with the ``min``-entropy normalisation (diagonal 1). Means are
    over the ``S * (S - 1)`` off-diagonal entries (``nan`` for a single slot).
    """

    mutual_information: Tensor  # (S, S) float64
    normalized_mutual_information: Tensor  # (S, S) float64
    mean_off_diagonal: float
    mean_normalized_off_diagonal: float


def inter_codebook_mi(
    codes: Tensor,
    codebook_sizes: int | Sequence[int],
    *,
    bias_correction: BiasCorrection = "miller-madow",
    clamp: bool = True,
) -> InterCodebookMI:
    """Pairwise MI between slots (codebooks / bands / levels) at the same frame.

    Args:
        codes: ``(N, frames, slots)``; every (item, frame) is one sample of the slot tuple.
        codebook_sizes: shared ``int`` or one size per slot.
    """
    codes = _check_slotted(codes)
    num_slots = codes.shape[-1]
    sizes, _ = _slot_sizes(codebook_sizes, num_slots)
    mm = _use_miller_madow(bias_correction)
    mi = torch.zeros(num_slots, num_slots, dtype=torch.float64)
    nmi = torch.zeros(num_slots, num_slots, dtype=torch.float64)
    for i in range(num_slots):
        for j in range(i, num_slots):
            hx, hy, hxy = _pair_entropies(codes[..., i], codes[..., j], sizes[i], sizes[j], mm)
            value = hx + hy - hxy
            mi[i, j] = mi[j, i] = max(value, 0.0) if clamp else value
            nmi[i, j] = nmi[j, i] = _nmi_from_entropies(hx, hy, hxy)
    off = ~torch.eye(num_slots, dtype=torch.bool)
    mean_mi = float(mi[off].mean()) if num_slots > 1 else math.nan
    mean_nmi = float(nmi[off].mean()) if num_slots > 1 else math.nan
    return InterCodebookMI(mi, nmi, mean_mi, mean_nmi)


def neighbour_mi(
    codes: Tensor,
    codebook_sizes: int | Sequence[int],
    axis: Literal["time", "slot"] = "time",
    *,
    bias_correction: BiasCorrection = "miller-madow",
    clamp: bool = True,
) -> float:
    """Mean MI (bits) between a token and its next neighbour.

    ``axis="time"``: ``I(x[t, s]; x[t+1, s])`` per slot, averaged over slots.
    ``axis="slot"``: ``I(x[t, s]; x[t, s+1])`` (adjacent codebooks or bands of the
    same frame), averaged over the ``S - 1`` adjacent pairs.

    Args:
        codes: ``(N, frames, slots)``.
    """
    codes = _check_slotted(codes)
    _, frames, num_slots = codes.shape
    sizes, _ = _slot_sizes(codebook_sizes, num_slots)
    kw: dict[str, Any] = {"bias_correction": bias_correction, "clamp": clamp}
    if axis == "time":
        if frames < 2:
            raise ValueError(f"neighbour MI along time needs at least 2 frames, got {frames}")
        values = [
            mutual_information(codes[:, :-1, s], codes[:, 1:, s], sizes[s], sizes[s], **kw)
            for s in range(num_slots)
        ]
    elif axis == "slot":
        if num_slots < 2:
            raise ValueError(f"neighbour MI across slots needs at least 2 slots, got {num_slots}")
        values = [
            mutual_information(codes[..., s], codes[..., s + 1], sizes[s], sizes[s + 1], **kw)
            for s in range(num_slots - 1)
        ]
    else:
        raise ValueError(f"axis must be 'time' or 'slot', got {axis!r}")
    return sum(values) / len(values)


def conditional_entropy_left(
    codes: Tensor,
    codebook_sizes: int | Sequence[int],
    *,
    bias_correction: BiasCorrection = "miller-madow",
) -> float:
    """``H(x_t | x_{t-1}) = H(x_t, x_{t-1}) - H(x_{t-1})`` in bits, per slot, averaged over slots.

    What a bigram model with perfect statistics would still pay per token: a
    lower bound-ish reference for the LM's BPT (it ignores longer context).

    Args:
        codes: ``(N, frames, slots)`` with ``frames >= 2``.
    """
    codes = _check_slotted(codes)
    _, frames, num_slots = codes.shape
    if frames < 2:
        raise ValueError(f"conditional entropy on the left neighbour needs at least 2 frames, got {frames}")
    sizes, _ = _slot_sizes(codebook_sizes, num_slots)
    mm = _use_miller_madow(bias_correction)
    values = []
    for s in range(num_slots):
        h_prev, _, h_joint = _pair_entropies(codes[:, :-1, s], codes[:, 1:, s], sizes[s], sizes[s], mm)
        values.append(max(h_joint - h_prev, 0.0))
    return sum(values) / len(values)


# --------------------------------------------------------------------------- continuous: MMD
def mmd_joint_vs_product(
    embeddings: Tensor,
    *,
    bandwidth_scales: Sequence[float] = (0.5, 1.0, 2.0),
    bandwidths: Sequence[float] | None = None,
    seed: int = 0,
    max_samples: int | None = 2048,
) -> float:
    """Unbiased MMD^2 between the joint law of the levels and the product of their marginals.

    Procedure:
      1. each of the ``L * D`` features is standardised over the ``N`` samples,
         so no level dominates the kernel by scale;
      2. the rows are split at random into two disjoint halves: the first
         half, concatenated over levels, gives joint samples; in the second half
         every level after the first is shuffled across rows independently,
         which gives samples of the product of the marginals. Disjoint halves
         keep the two samples from sharing rows, so the estimate is centred on 0
         for independent levels;
      3. ``MMD^2_u`` (the unbiased U-statistic: within-sample kernel means
         without the diagonal, minus twice the cross mean) with a Gaussian
         kernel ``exp(-d^2 / (2 sigma^2))`` averaged over several bandwidths:
         ``bandwidths`` if given, else the median pairwise distance of the
         pooled samples times ``bandwidth_scales``.

    Being unbiased, the value can be slightly negative for independent levels.

    Args:
        embeddings: ``(N, L, D)`` float: N samples (frames), L levels/codebooks,
            D dims per level (e.g. the post-quantisation vectors of each RVQ level).
        seed: seeds the split and the shuffles (a local ``torch.Generator``),
            so the value is reproducible.
        max_samples: rows used at most (random subset), which bounds the
            ``O(N^2)`` kernel memory; ``None`` uses all rows.
    Returns:
        ``MMD^2`` as a float (dimensionless, at most 2).
    """
    if embeddings.ndim != 3:
        raise ValueError(
            f"embeddings must be shaped (N, levels, dims), got {tuple(embeddings.shape)}; "
            "for one vector per level use embeddings.unsqueeze(-1)"
        )
    n, num_levels, _ = embeddings.shape
    if num_levels < 2:
        raise ValueError(f"need at least 2 levels to measure their dependence, got {num_levels}")
    if n < 8:
        raise ValueError(f"need at least 8 samples for an MMD estimate, got {n}")
    if not embeddings.is_floating_point():
        raise ValueError(f"embeddings must be floating point, got {embeddings.dtype}")
    device = embeddings.device
    gen = torch.Generator(device="cpu").manual_seed(int(seed))

    x = embeddings.detach().to(torch.float64)
    if max_samples is not None and n > max_samples:
        x = x[torch.randperm(n, generator=gen)[:max_samples].to(device)]
        n = max_samples
    x = (x - x.mean(dim=0, keepdim=True)) / (x.std(dim=0, keepdim=True) + 1e-8)

    order = torch.randperm(n, generator=gen).to(device)
    half = n // 2
    joint = x[order[:half]]
    product = x[order[half : 2 * half]].clone()
    for level in range(1, num_levels):
        shuffle = torch.randperm(half, generator=gen).to(device)
        product[:, level] = product[shuffle, level]
    joint = joint.reshape(half, -1)
    product = product.reshape(half, -1)

    pooled = torch.cat([joint, product], dim=0)
    d2 = torch.cdist(pooled, pooled).pow(2)
    if bandwidths is None:
        off = ~torch.eye(2 * half, dtype=torch.bool, device=device)
        median = float(d2[off].sqrt().median())
        if median <= 0:
            raise ValueError("all embeddings are identical; the MMD is undefined")
        sigmas = [median * float(s) for s in bandwidth_scales]
    else:
        sigmas = [float(s) for s in bandwidths]
    if not sigmas or min(sigmas) <= 0:
        raise ValueError(f"bandwidths must be positive, got {sigmas}")
    kernel = sum(torch.exp(-d2 / (2.0 * s * s)) for s in sigmas) / len(sigmas)

    kxx = kernel[:half, :half]
    kyy = kernel[half:, half:]
    kxy = kernel[:half, half:]
    pairs = half * (half - 1)
    mmd2 = (
        (kxx.sum() - kxx.diagonal().sum()) / pairs
        + (kyy.sum() - kyy.diagonal().sum()) / pairs
        - 2.0 * kxy.mean()
    )
    return float(mmd2)


# --------------------------------------------------------------------------- summary
@dataclass
class DependenceResult:
    """Dependence summary of one token stream (bits unless stated).

    Slot-pair fields are ``None`` for a single-slot stream; ``mmd_joint_vs_product``
    is ``None`` unless embeddings were given.
    """

    entropy: float  # mean over slots of H(slot)
    mutual_information: float | None  # mean I(slot_i; slot_j), i != j, same frame
    normalized_mutual_information: float | None  # mean of I / min(H_i, H_j), i != j
    mutual_information_matrix: list[list[float]] | None  # (S, S), diagonal = H(slot)
    neighbour_mutual_information_time: float | None  # mean I(x_t; x_t+1), same slot
    neighbour_mutual_information_slot: float | None  # mean I(x_s; x_s+1), same frame
    conditional_entropy_left: float | None  # mean H(x_t | x_t-1)
    mmd_joint_vs_product: float | None  # unbiased MMD^2, dimensionless
    bias_correction: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def dependence_metrics(
    codes: Tensor,
    codebook_sizes: int | Sequence[int],
    *,
    embeddings: Tensor | None = None,
    bias_correction: BiasCorrection = "miller-madow",
    seed: int = 0,
) -> DependenceResult:
    """All dependence metrics of one stream.

    Args:
        codes: ``(N, frames, slots)`` integer codes.
        codebook_sizes: shared ``int`` or one size per slot.
        embeddings: optional ``(N', L, D)`` per-level embeddings for the MMD.
    """
    codes = _check_slotted(codes)
    _, frames, num_slots = codes.shape
    pairwise = inter_codebook_mi(codes, codebook_sizes, bias_correction=bias_correction)
    multi = num_slots > 1
    return DependenceResult(
        entropy=float(pairwise.mutual_information.diagonal().mean()),
        mutual_information=pairwise.mean_off_diagonal if multi else None,
        normalized_mutual_information=pairwise.mean_normalized_off_diagonal if multi else None,
        mutual_information_matrix=pairwise.mutual_information.tolist() if multi else None,
        neighbour_mutual_information_time=(
            neighbour_mi(codes, codebook_sizes, "time", bias_correction=bias_correction) if frames > 1 else None
        ),
        neighbour_mutual_information_slot=(
            neighbour_mi(codes, codebook_sizes, "slot", bias_correction=bias_correction) if multi else None
        ),
        conditional_entropy_left=(
            conditional_entropy_left(codes, codebook_sizes, bias_correction=bias_correction)
            if frames > 1
            else None
        ),
        mmd_joint_vs_product=None if embeddings is None else mmd_joint_vs_product(embeddings, seed=seed),
        bias_correction="none" if bias_correction in (None, "none") else str(bias_correction),
    )
