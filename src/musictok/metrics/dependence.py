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
  positive bias of the plug-in MI of independent codes when ``N`` is large
  compared to ``K_x * K_y``, and little of it otherwise;
- **shuffle-corrected MI** (what :func:`dependence_metrics`, ``musictok eval
  tokens`` and the bench report): the plug-in estimate minus the same estimate on
  shuffled pairs at the same ``N``, with a half-sampling interval
  (:func:`shuffle_corrected_mi`). At ``K = 1024`` and ``N ≈ 5,600`` the plug-in MI
  of *independent* codes with a codec's marginals is ≈ 5.6 bits; the corrected one
  is 0 ± 0.01.

The continuous counterpart (Independence-promoting loss paper) compares, with a
maximum mean discrepancy in a Gaussian RKHS, samples of the joint
distribution of the per-level embeddings with samples of the product of their
marginals: zero iff the levels are independent (for a characteristic kernel).
The statistic is the codec's training loss, :mod:`musictok.quantize.mmd`.

Codes are ``(N, frames, slots)`` integers; ``codebook_sizes`` is an ``int`` for a
shared codebook or one size per slot (see ``musictok.metrics.codebook``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from musictok.metrics.codebook import _check_codes, _check_slotted, _slot_sizes
from musictok.metrics.entropy import entropy_bits_from_counts
from musictok.quantize.mmd import MMDConfig, independence_mmd

__all__ = [
    "mutual_information",
    "normalized_mutual_information",
    "InterCodebookMI",
    "inter_codebook_mi",
    "neighbour_mi",
    "conditional_entropy_left",
    "DependenceEstimate",
    "shuffle_corrected_mi",
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


# --------------------------------------------------------------------------- the estimator's bias removed
@dataclass
class DependenceEstimate:
    """A dependence statistic with its estimator's bias at this sample size taken out.

    ``value = raw - shuffled``: ``raw`` is the plug-in estimate on the real pairs, ``shuffled`` the mean of
    the same estimator on ``shuffles`` re-pairings of them (one variable permuted across all pairs), which
    keep both marginals and the number of pairs but have no dependence. ``[low, high]`` is the
    ``confidence`` interval of ``value`` (half-sampling, see :func:`shuffle_corrected_mi`); ``unit`` is
    what the half-samples draw (``"clip"`` or ``"frame"``), ``pairs`` the pairs per term.
    """

    value: float
    low: float
    high: float
    raw: float
    shuffled: float
    pairs: int
    unit: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _sum_c_log2_c(values: np.ndarray) -> float:
    """``Σ c log2 c`` over the counts ``c`` of the distinct entries of ``values`` (sparse: sorts, no bins)."""
    v = np.sort(values)
    cuts = np.flatnonzero(v[1:] != v[:-1]) + 1
    counts = np.diff(np.concatenate(([0], cuts, [v.size]))).astype(np.float64)
    return float(np.sum(counts * np.log2(counts)))


def _marginal_term(values: np.ndarray) -> float:
    counts = np.bincount(values).astype(np.float64)
    counts = counts[counts > 0]
    return float(np.sum(counts * np.log2(counts)))


def _mi_raw_and_shuffled(x: np.ndarray, y: np.ndarray, ky: int, perms: Sequence[np.ndarray]) -> tuple[float, float]:
    """Plug-in MI (bits) of the pairs ``(x_i, y_i)`` and its mean over the re-pairings ``(x_i, y_perm[i])``;
    ``I = log2 n - (S_x + S_y - S_xy) / n`` with ``S = Σ c log2 c``, so a re-pairing only changes ``S_xy``."""
    n = x.size
    margins = _marginal_term(x) + _marginal_term(y)
    raw = math.log2(n) - (margins - _sum_c_log2_c(x * ky + y)) / n
    shuffled = [math.log2(n) - (margins - _sum_c_log2_c(x * ky + y[p])) / n for p in perms]
    return raw, float(np.mean(shuffled))


def _entropy_mm(values: np.ndarray) -> float:
    """Miller-Madow entropy (bits), the normaliser of the NMIs."""
    counts = np.bincount(values)
    counts = counts[counts > 0].astype(np.float64)
    n = counts.sum()
    h = float(math.log2(n) - np.sum(counts * np.log2(counts)) / n)
    return h + (counts.size - 1) / (2.0 * n * math.log(2.0))


def shuffle_corrected_mi(
    pairs: Sequence[tuple[Tensor, Tensor, int, int]],
    *,
    normalized: bool = False,
    shuffles: int = 8,
    resamples: int = 200,
    confidence: float = 0.95,
    min_clips: int = 8,
    seed: int = 0,
) -> DependenceEstimate:
    """Mean over ``pairs`` of the mutual information (bits), minus the same estimate on shuffled pairs.

    Each term ``(x, y, kx, ky)`` holds paired codes ``x``, ``y`` of one shape ``(clips, frames)`` (or any
    shape: a leading axis of clips is assumed) with codebook sizes ``kx``, ``ky``. With
    ``normalized=True`` every term is divided by ``min(H(x), H(y))`` (Miller-Madow entropies): the NMI.

    Why: the plug-in MI of ``n`` pairs of ``K``-code variables is biased upwards — by about
    ``(K - 1)² / (2 n ln 2)`` when ``n ≫ K²``, by several bits when not: at ``K = 1024`` and
    ``n ≈ 5,600`` independent codes with a codec's marginals read 5.6–6.5 bits (Miller-Madow removes
    a fraction of a bit of it). Shuffling one variable keeps both marginals and ``n`` and
    destroys the dependence, so the mean over ``shuffles`` re-pairings is that bias, measured; the
    difference is ≈ 0 for independent codes (either sign) and positive for dependent ones. When
    ``K² ≫ n`` it is also well below the true MI of dependent codes (the plug-in saturates near
    ``log2 n``): read it as a detector and a ranking, not as the MI.

    Interval: half-sampling. ``resamples`` times, half of the clips are drawn without replacement (of
    the frames when there are fewer than ``min_clips`` clips; frames of one clip are not independent, so
    clips are the honest unit), and the corrected estimate is recomputed on them with one re-pairing drawn
    inside the half. The spread of a half-sample statistic around its mean estimates the spread of the
    full-sample statistic (the delete-``n/2`` jackknife), so the interval is ``value`` plus the
    ``(1 ± confidence) / 2`` percentiles of the centred half-sample values. Resampling *with*
    replacement is not an option: a duplicated pair lands twice in one joint cell, which the plug-in reads
    as dependence (+0.8 bits for independent codes at ``K = 1024``, ``n = 5,600``).

    All draws come from ``seed``. Fast enough for ``n ≈ 6,000``, ``K = 1024`` and tens of terms: counts of
    the joint come from sorting combined indices, never from ``K²`` bins.
    """
    if not pairs:
        raise ValueError("need at least one (x, y, kx, ky) pair of codes")
    if shuffles < 1 or resamples < 2 or not 0.0 < confidence < 1.0:
        raise ValueError("need shuffles >= 1, resamples >= 2 and 0 < confidence < 1")
    terms = []
    for x, y, kx, ky in pairs:
        if x.shape != y.shape:
            raise ValueError(f"x {tuple(x.shape)} and y {tuple(y.shape)} must be paired element by element")
        fx = _check_codes(x, kx, "x").cpu().numpy()
        fy = _check_codes(y, ky, "y").cpu().numpy()
        clips = int(x.shape[0]) if x.dim() > 1 else 1
        terms.append((fx, fy, int(ky), clips))
    n = terms[0][0].size
    clips = terms[0][3]
    if any(t[0].size != n or t[3] != clips for t in terms):
        raise ValueError("every pair of codes must have the same number of clips and pairs")
    if n < 4:
        raise ValueError(f"need at least 4 pairs, got {n}")
    rng = np.random.default_rng(seed)
    scale = []  # 1, or 1 / min(H_x, H_y) for the NMI (0 for a constant code: it shares nothing)
    for fx, fy, _, _ in terms:
        h = min(_entropy_mm(fx), _entropy_mm(fy)) if normalized else 1.0
        scale.append(1.0 / h if h > 1e-12 else 0.0)

    raw, shuffled = 0.0, 0.0
    for (fx, fy, ky, _), w in zip(terms, scale):
        r, sh = _mi_raw_and_shuffled(fx, fy, ky, [rng.permutation(n) for _ in range(shuffles)])
        raw, shuffled = raw + w * r / len(terms), shuffled + w * sh / len(terms)

    by_clip = clips >= min_clips
    unit = "clip" if by_clip else "frame"
    per_clip = n // clips
    half_values = np.empty(resamples)
    for b in range(resamples):
        if by_clip:
            chosen = rng.permutation(clips)[: clips // 2]
            idx = (chosen[:, None] * per_clip + np.arange(per_clip)[None, :]).reshape(-1)
        else:
            idx = rng.permutation(n)[: n // 2]
        perm = rng.permutation(idx.size)
        total = 0.0
        for (fx, fy, ky, _), w in zip(terms, scale):
            r, sh = _mi_raw_and_shuffled(fx[idx], fy[idx], ky, [perm])
            total += w * (r - sh)
        half_values[b] = total / len(terms)
    alpha = (1.0 - confidence) / 2
    lo, hi = np.quantile(half_values - half_values.mean(), [alpha, 1.0 - alpha])
    value = float(raw - shuffled)
    return DependenceEstimate(value=value, low=value + float(lo), high=value + float(hi), raw=float(raw),
                              shuffled=float(shuffled), pairs=int(n), unit=unit)


def _slot_pairs(codes: Tensor, sizes: list[int]) -> list[tuple[Tensor, Tensor, int, int]]:
    s = codes.shape[-1]
    return [(codes[..., i], codes[..., j], sizes[i], sizes[j]) for i in range(s) for j in range(i + 1, s)]


def _neighbour_pairs(codes: Tensor, sizes: list[int], axis: str) -> list[tuple[Tensor, Tensor, int, int]]:
    if axis == "time":
        return [(codes[:, :-1, s], codes[:, 1:, s], sizes[s], sizes[s]) for s in range(codes.shape[-1])]
    return [(codes[..., s], codes[..., s + 1], sizes[s], sizes[s + 1]) for s in range(codes.shape[-1] - 1)]


# --------------------------------------------------------------------------- continuous: MMD
def mmd_joint_vs_product(
    embeddings: Tensor,
    *,
    delay: bool = False,
    config: MMDConfig | None = None,
    seed: int = 0,
) -> float:
    """Squared MMD between the joint law of the levels and the product of their marginals.

    The same statistic as the codec's training loss (:func:`musictok.quantize.mmd.independence_mmd`: fixed
    Gaussian kernels on standardised features, product samples from independent shuffles of every level,
    joint and product samples from disjoint clips, same-clip pairs left out), here on any per-level
    vectors, e.g. the codewords of each token (``Tokenizer.code_embeddings``). Unbiased: independent
    levels scatter around 0 with either sign.

    Args:
        embeddings: ``(clips, frames, L, D)`` float, or ``(N, L, D)`` (every row its own clip, i.e.
            independent frames assumed).
        delay: align level ``l`` by ``l`` frames (the tuples the delay pattern predicts together);
            default: the frame's own tuple (the parallel pattern).
        config: bandwidths, ``max_samples`` etc. (:class:`~musictok.quantize.mmd.MMDConfig`); ``delay``
            overrides its ``delay``.
        seed: seeds the split and the shuffles, so the value is reproducible.
    Returns:
        ``MMD²`` as a float.
    """
    if embeddings.ndim == 3:
        embeddings = embeddings.unsqueeze(1)
    if embeddings.ndim != 4:
        raise ValueError(
            f"embeddings must be shaped (clips, frames, levels, dims) or (N, levels, dims), got "
            f"{tuple(embeddings.shape)}; for one vector per level use embeddings.unsqueeze(-1)"
        )
    if embeddings.shape[2] < 2:
        raise ValueError(f"need at least 2 levels to measure their dependence, got {embeddings.shape[2]}")
    if not embeddings.is_floating_point():
        raise ValueError(f"embeddings must be floating point, got {embeddings.dtype}")
    cfg = dataclasses.replace(config or MMDConfig(), delay=delay)
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        return float(independence_mmd(embeddings.detach(), cfg, gen))


# --------------------------------------------------------------------------- summary
@dataclass
class DependenceResult:
    """Dependence summary of one token stream.

    The mutual informations are :class:`DependenceEstimate` s: the plug-in estimate minus the same estimate
    on shuffled pairs, with an interval (bits; NMIs are fractions of ``min(H_x, H_y)``). Slot-pair fields are
    ``None`` for a single-slot stream, time-neighbour ones for a single frame; ``mmd_joint_vs_product`` is
    ``None`` unless embeddings were given. :meth:`to_dict` flattens an estimate ``name`` into ``name``
    (the corrected value), ``name_ci`` ([low, high]), ``name_raw`` and ``name_shuffled``.
    """

    entropy: float  # mean over slots of H(slot), Miller-Madow, bits
    mutual_information: DependenceEstimate | None  # mean I(slot_i; slot_j), i < j, same frame
    normalized_mutual_information: DependenceEstimate | None  # mean of I / min(H_i, H_j)
    mutual_information_matrix: list[list[float]] | None  # (S, S) corrected, diagonal = H(slot)
    neighbour_mutual_information_time: DependenceEstimate | None  # mean I(x_t; x_t+1), same slot
    neighbour_normalized_mutual_information_time: DependenceEstimate | None  # mean I(x_t; x_t+1) / H(x)
    neighbour_mutual_information_slot: DependenceEstimate | None  # mean I(x_s; x_s+1), same frame
    conditional_entropy_left: float | None  # mean H(x_t | x_t-1), Miller-Madow, bits
    mmd_joint_vs_product: float | None  # unbiased MMD^2 between the slots' embeddings
    bias_correction: str = "shuffle"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if isinstance(value, DependenceEstimate):
                out |= {key: value.value, f"{key}_ci": [value.low, value.high], f"{key}_raw": value.raw,
                        f"{key}_shuffled": value.shuffled, f"{key}_pairs": value.pairs}
            elif value is None and key in _ESTIMATES:
                out |= {key: None, f"{key}_ci": None, f"{key}_raw": None, f"{key}_shuffled": None,
                        f"{key}_pairs": None}
            else:
                out[key] = value
        return out


_ESTIMATES = {f.name for f in dataclasses.fields(DependenceResult) if "DependenceEstimate" in str(f.type)}


def dependence_metrics(
    codes: Tensor,
    codebook_sizes: int | Sequence[int],
    *,
    embeddings: Tensor | None = None,
    shuffles: int = 8,
    resamples: int = 200,
    seed: int = 0,
) -> DependenceResult:
    """All dependence metrics of one stream, the mutual informations corrected for the estimator's bias
    (:func:`shuffle_corrected_mi`).

    Args:
        codes: ``(N, frames, slots)`` integer codes (``N`` clips: the half-sampling unit when ``N >= 8``).
        codebook_sizes: shared ``int`` or one size per slot.
        embeddings: optional per-level embeddings for the MMD, ``(N, frames, L, D)`` or ``(N', L, D)``.
    """
    codes = _check_slotted(codes)
    _, frames, num_slots = codes.shape
    sizes, _ = _slot_sizes(codebook_sizes, num_slots)
    multi = num_slots > 1
    kw: dict[str, Any] = {"shuffles": shuffles, "resamples": resamples, "seed": seed}
    entropies = [_entropy_mm(_check_codes(codes[..., s], sizes[s]).cpu().numpy()) for s in range(num_slots)]
    matrix = None
    if multi:
        rng = np.random.default_rng(seed)
        m = np.diag(entropies).astype(np.float64)
        for i in range(num_slots):
            for j in range(i + 1, num_slots):
                fx = codes[..., i].reshape(-1).long().cpu().numpy()
                fy = codes[..., j].reshape(-1).long().cpu().numpy()
                raw, sh = _mi_raw_and_shuffled(fx, fy, sizes[j], [rng.permutation(fx.size) for _ in range(shuffles)])
                m[i, j] = m[j, i] = raw - sh
        matrix = m.tolist()
    time = frames > 1
    return DependenceResult(
        entropy=float(np.mean(entropies)),
        mutual_information=shuffle_corrected_mi(_slot_pairs(codes, sizes), **kw) if multi else None,
        normalized_mutual_information=(
            shuffle_corrected_mi(_slot_pairs(codes, sizes), normalized=True, **kw) if multi else None
        ),
        mutual_information_matrix=matrix,
        neighbour_mutual_information_time=(
            shuffle_corrected_mi(_neighbour_pairs(codes, sizes, "time"), **kw) if time else None
        ),
        neighbour_normalized_mutual_information_time=(
            shuffle_corrected_mi(_neighbour_pairs(codes, sizes, "time"), normalized=True, **kw) if time else None
        ),
        neighbour_mutual_information_slot=(
            shuffle_corrected_mi(_neighbour_pairs(codes, sizes, "slot"), **kw) if multi else None
        ),
        conditional_entropy_left=conditional_entropy_left(codes, codebook_sizes) if time else None,
        mmd_joint_vs_product=None if embeddings is None else mmd_joint_vs_product(embeddings, seed=seed),
    )
