"""How well a separator recovered each stem: per-stem fidelity, mixture consistency, leakage, intervals.

Every function takes tensors shaped ``(B, S, T)`` (clips × stems × samples; references and estimates in
the same stem order) and returns per-clip, per-stem values ``(B, S)`` (or ``(B,)`` for whole-mixture
quantities), so a benchmark averages over clips and puts an interval on the mean.

- **SI-SDR, plain SDR, Mel distance** per stem: the reconstruction metrics of
  :mod:`musictok.metrics.reconstruction`, applied stem by stem (one definition each). In
  :func:`stem_metrics` all three are NaN where the reference stem is silent (a stem that does not play in
  the clip): against silence a Mel distance only says how quiet the estimate is, not how well it was
  separated. What a separator writes into such a stem is reported apart, as its level
  (:func:`silent_stem_level_db`).
- **BSS-eval SDR** (:func:`bss_sdr`): the SDR of BSS Eval (Vincent et al., 2006; the ``sdr`` of museval /
  fast_bss_eval): the target part of an estimate is its projection on the reference passed through the
  best causal filter of ``filter_length`` taps (512 by default), so short filtering is forgiven and only
  what no such filter explains counts as distortion. Cross-checked against ``fast_bss_eval`` in the tests.
- **Mixture consistency** (:func:`mixture_consistency`): ``‖Σ_s est_s − mix‖ / ‖mix‖``; 0 when the
  estimates add up to the mixture.
- **Mel consistency** (:func:`spectral_consistency`): the same question in magnitudes, for estimates decoded
  with a made-up phase — the Mel distance between the mixture and the stems' power sum
  ``sqrt(Σ_s Mel(est_s)²)`` (independent phases add in power). Waveform consistency rewards quiet
  candidates there (silence scores 1, bandtok-small's tokenizer ceiling 1.3–1.6); this one scores
  too-quiet and too-loud candidates alike worse than the true stems.
- **Leakage** (:func:`leakage_matrix`, :func:`leakage_db`): each estimate is written, by least squares, as
  a combination of the true stems, ``est_i ≈ Σ_j a_ij ref_j``; the energy of ``a_ij ref_j`` says how much
  of true stem ``j`` estimate ``i`` carries. ``leakage_db`` is the interference-to-target ratio
  ``10 log10(Σ_{j≠i} ‖a_ij ref_j‖² / ‖a_ii ref_i‖²)`` (lower is better).
- **Leakage without references** (:func:`cross_leakage`): for recordings with no stems, the share of each
  estimate's energy that the *other estimates* explain (least squares) — an upper bound on what they share.
- **Leakage in Mel magnitudes** (:func:`mel_leakage_db`, :func:`mel_cross_leakage`): the same two questions
  for estimates decoded with a made-up phase, where a waveform projection finds nothing: each estimate's
  Mel magnitude is fitted as a non-negative combination of the true stems' (or of the other estimates'),
  ``|est_i| ≈ Σ_j a_ij |ref_j|`` with ``a ≥ 0``. Magnitudes of stems that sound at once overlap, so the split
  between own and other stems is an estimate, but one every system gets alike.
- **Intervals** (:func:`mean_interval`): mean and Student-t interval across clips — or across pieces, when
  several clips come from one piece (``groups``: each piece's clips averaged first) — NaNs (undefined values:
  silent references) left out; :func:`paired_interval` for two systems scored on the same clips (the
  interval of the per-clip differences, which the clips' own spread does not widen).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .reconstruction import (MEL_BANDS, MEL_WINDOWS, SILENT_POWER, _as_batch, _pair, _undefined_where_silent,
                             log_floored, mel_distance, mel_magnitude, sdr, si_sdr)

__all__ = [
    "Interval",
    "bss_sdr",
    "cross_leakage",
    "leakage_db",
    "leakage_matrix",
    "least_squares_gains",
    "mel_cross_leakage",
    "mel_leakage_db",
    "mean_interval",
    "mixture_consistency",
    "paired_interval",
    "per_stem",
    "silent_stem_level_db",
    "spectral_consistency",
    "stem_metrics",
]

EPS = 1e-12


def _stems(x: Tensor, name: str) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim != 3:
        raise ValueError(f"{name} must be a (clips, stems, samples) tensor, got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf samples")
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _stem_pair(refs: Tensor, ests: Tensor) -> tuple[Tensor, Tensor]:
    r, e = _stems(refs, "refs"), _stems(ests, "ests")
    if r.shape != e.shape:
        raise ValueError(f"refs {tuple(r.shape)} and ests {tuple(e.shape)} must have the same shape")
    dtype = torch.promote_types(r.dtype, e.dtype)
    return r.to(dtype), e.to(dtype)


def per_stem(metric, refs: Tensor, ests: Tensor, **kw) -> Tensor:
    """Apply a pairwise metric ``metric(ref (N, T), est (N, T)) -> (N,)`` to every stem: ``(B, S)``."""
    r, e = _stem_pair(refs, ests)
    B, S, T = r.shape
    return metric(r.reshape(B * S, T), e.reshape(B * S, T), **kw).reshape(B, S)


# ------------------------------------------------------------------------------------------------ BSS-eval SDR
def bss_sdr(ref: Tensor, est: Tensor, *, filter_length: int = 512, align: bool = False) -> Tensor:
    """BSS-eval SDR in dB for ``(T,)`` / ``(B, T)`` pairs (see the module docstring); higher is better.

    With ``r`` and ``e`` scaled to unit norm, the best ``L``-tap filter ``h`` solves the Toeplitz system
    ``R h = c`` (``R``: autocorrelation of ``r`` up to lag ``L − 1``; ``c``: cross-correlation of ``r`` with
    ``e``); the target's share of ``e``'s energy is ``ρ = cᵀh`` and ``SDR = 10 log10(ρ / (1 − ρ))``.
    Computed in float64. NaN where the reference is silent (a stem that does not play in the clip).
    """
    if filter_length < 1:
        raise ValueError(f"filter_length must be >= 1, got {filter_length}")
    r, e, squeeze = _pair(ref, est, align)
    r64, e64 = r.double(), e.double()
    r64 = r64 / r64.norm(dim=-1, keepdim=True).clamp_min(EPS)
    e64 = e64 / e64.norm(dim=-1, keepdim=True).clamp_min(EPS)
    n = r64.shape[-1]
    L = min(filter_length, n)
    n_fft = 2 ** math.ceil(math.log2(2 * n - 1))
    R, E = torch.fft.rfft(r64, n=n_fft), torch.fft.rfft(e64, n=n_fft)
    acf = torch.fft.irfft(R.real ** 2 + R.imag ** 2, n=n_fft)[..., :L]
    xcorr = torch.fft.irfft(R.conj() * E, n=n_fft)[..., :L]  # c[l] = Σ_t r[t] e[t + l]
    lags = torch.arange(L, device=r.device)
    toeplitz = acf[..., (lags[:, None] - lags[None, :]).abs()]  # (B, L, L)
    # An all-zero reference (its unit-norm version stays 0) makes the system singular; solve the identity
    # instead, its SDR is NaN below anyway, and the rest of the batch is still scored.
    dead = acf[..., 0] < 0.5
    toeplitz = torch.where(dead[..., None, None], torch.eye(L, dtype=toeplitz.dtype, device=toeplitz.device), toeplitz)
    h = torch.linalg.solve(toeplitz, xcorr.unsqueeze(-1)).squeeze(-1)
    coh = (xcorr * h).sum(-1).clamp(EPS, 1 - 1e-15)
    values = (10 * torch.log10(coh / (1 - coh))).to(r.dtype)
    values = _undefined_where_silent(r, values)
    return values[0] if squeeze else values


# ------------------------------------------------------------------------------------------------ consistency
def _mix_and_stems(mix: Tensor, ests: Tensor) -> tuple[Tensor, Tensor]:
    """``mix (B, T)`` and ``ests (B, S, T)`` checked against each other, in one dtype."""
    e = _stems(ests, "ests")
    m, _ = _as_batch(mix, "mix")
    if m.shape != (e.shape[0], e.shape[2]):
        raise ValueError(f"mix {tuple(m.shape)} must be (clips, samples) = {(e.shape[0], e.shape[2])}")
    return m.to(e.dtype), e


def mixture_consistency(mix: Tensor, ests: Tensor) -> Tensor:
    """``‖Σ_s est_s − mix‖ / ‖mix‖`` per clip: ``mix (B, T)``, ``ests (B, S, T)`` -> ``(B,)`` (0 = consistent)."""
    m, e = _mix_and_stems(mix, ests)
    return (e.sum(dim=1) - m).norm(dim=-1) / m.norm(dim=-1).clamp_min(EPS)


def spectral_consistency(mix: Tensor, ests: Tensor, sample_rate: int) -> Tensor:
    """Mel consistency per clip, ``(B,)`` (0 = consistent; lower is better): at each resolution of the Mel
    distance, the log-Mel L1 between the mixture and the stems' power sum ``sqrt(Σ_s Mel(est_s)²)``, summed
    over the resolutions as :func:`~musictok.metrics.reconstruction.mel_distance` is.

    For stems whose phases are made up by their decoder, waveforms cannot add up to the mixture, but their
    Mel magnitudes still can: independent phases add in power. With one stem it is the Mel distance between
    mixture and estimate. True stems score near 0 (not exactly: within a Mel band the stems' cross terms do
    not cancel completely; ≈ 0.2 for a toy mix of tones and noises), all stems at half or twice their level
    ≈ 7 log10 2 ≈ 2.1, silence far more (≈ 20 for that toy mix).
    """
    m, e = _mix_and_stems(mix, ests)
    short = max(MEL_WINDOWS) // 2 + 1 - m.shape[-1]  # what the coarsest resolution needs (a one-frame window)
    if short > 0:  # the same silence after the mix and every stem
        m, e = torch.nn.functional.pad(m, (0, short)), torch.nn.functional.pad(e, (0, short))
    B, S, T = e.shape
    total = torch.zeros(B, dtype=e.dtype, device=e.device)
    for window, bands in zip(MEL_WINDOWS, MEL_BANDS):
        target = log_floored(mel_magnitude(m, sample_rate, window, bands))
        stems = mel_magnitude(e.reshape(B * S, T), sample_rate, window, bands)
        power_sum = stems.reshape(B, S, *stems.shape[1:]).pow(2).sum(dim=1).sqrt()
        total = total + (target - log_floored(power_sum)).abs().mean(dim=(-2, -1))
    return total


# ------------------------------------------------------------------------------------------------ leakage
def least_squares_gains(basis: Tensor, signals: Tensor, ridge: float = 1e-9) -> Tensor:
    """Gains ``a (B, E, S)`` with ``signals[:, e] ≈ Σ_s a[:, e, s] basis[:, s]`` in the least-squares sense.

    ``basis (B, S, T)``, ``signals (B, E, T)``; a ridge of ``ridge × trace / S`` keeps silent basis signals
    (a stem that does not play in a clip) from making the system singular: their gains come out ≈ 0.
    """
    b, s = _stems(basis, "basis").double(), _stems(signals, "signals").double()
    gram = b @ b.transpose(1, 2)  # (B, S, S)
    load = ridge * gram.diagonal(dim1=1, dim2=2).sum(-1).clamp_min(EPS) / gram.shape[-1]
    gram = gram + load[:, None, None] * torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    cross = s @ b.transpose(1, 2)  # (B, E, S)
    return torch.linalg.solve(gram, cross.transpose(1, 2)).transpose(1, 2)


def leakage_matrix(refs: Tensor, ests: Tensor) -> Tensor:
    """``(B, S, S)``: entry ``[b, i, j]`` is the share of estimate ``i``'s energy carried by true stem ``j``,
    ``‖a_ij ref_j‖² / ‖est_i‖²`` with ``a`` from :func:`least_squares_gains` (rows need not sum to 1: the
    stems are not orthogonal, and what no stem explains is artefact)."""
    r, e = _stem_pair(refs, ests)
    a = least_squares_gains(r, e)  # (B, S_est, S_ref)
    energy = r.double().pow(2).sum(-1)  # (B, S_ref)
    part = a.pow(2) * energy[:, None, :]
    return (part / e.double().pow(2).sum(-1, keepdim=True).clamp_min(EPS)).to(r.dtype)


def leakage_db(refs: Tensor, ests: Tensor) -> Tensor:
    """Interference-to-target ratio per stem in dB, ``(B, S)``: the energy of the other true stems in
    estimate ``i`` over that of its own stem (lower is better; NaN where the stem is silent)."""
    r, _ = _stem_pair(refs, ests)
    m = leakage_matrix(refs, ests).double()  # shares of est_i's energy; the ratio cancels ‖est_i‖²
    own = m.diagonal(dim1=1, dim2=2)
    others = m.sum(-1) - own
    values = 10 * torch.log10(others.clamp_min(EPS) / own.clamp_min(EPS))
    return _undefined_where_silent(r, values.to(r.dtype))


def silent_stem_level_db(refs: Tensor, ests: Tensor) -> Tensor:
    """``(B, S)``: the estimate's RMS level in dBFS where the reference stem is silent, NaN elsewhere.

    Where a stem does not play, no fidelity metric is defined (there is nothing to compare with), but what a
    separator writes there is still audible: this is what it wrote (-120 dBFS and below read as -120)."""
    r, e = _stem_pair(refs, ests)
    level = 10 * torch.log10(e.pow(2).mean(-1).clamp_min(SILENT_POWER))
    silent = r.pow(2).mean(-1) < SILENT_POWER
    return torch.where(silent, level, torch.full_like(level, float("nan")))


def cross_leakage(ests: Tensor) -> Tensor:
    """``(B, S)``: the share of each estimate's energy that the other estimates explain by least squares
    (0 = orthogonal to them, 1 = a combination of them). Needs no references: for real recordings."""
    e = _stems(ests, "ests").double()
    S = e.shape[1]
    if S < 2:
        raise ValueError("cross_leakage needs at least two estimated stems")
    out = []
    for i in range(S):
        others = torch.cat([e[:, :i], e[:, i + 1:]], dim=1)
        a = least_squares_gains(others, e[:, i: i + 1])  # (B, 1, S-1)
        fit = (a @ others)[:, 0]
        out.append(fit.pow(2).sum(-1) / e[:, i].pow(2).sum(-1).clamp_min(EPS))
    return torch.stack(out, dim=1).to(ests.dtype if ests.dtype.is_floating_point else torch.float32)


LEAKAGE_MEL = (2048, 320)  # window and bands of the Mel magnitudes the magnitude leakage fits (finest in frequency
# of the Mel distance's resolutions: overlapping stems are told apart by frequency first)


def _mel_rows(x: Tensor, sample_rate: int) -> Tensor:
    """``(B, S, T)`` -> ``(B, S, bins × frames)`` float64 Mel magnitudes at :data:`LEAKAGE_MEL`."""
    B, S, T = x.shape
    window, bands = LEAKAGE_MEL
    return mel_magnitude(x.reshape(B * S, T), sample_rate, window, bands).reshape(B, S, -1).double()


def _nonnegative_fit(basis: Tensor, target: Tensor) -> Tensor:
    """Gains ``a >= 0`` (``(K,)``) with ``target (N,) ≈ Σ_k a_k basis[k]`` (``(K, N)``) in least squares."""
    from scipy.optimize import nnls

    if float(basis.pow(2).sum()) == 0.0:
        return torch.zeros(basis.shape[0], dtype=torch.float64)
    gains, _ = nnls(basis.T.numpy(), target.numpy())
    return torch.from_numpy(gains)


def mel_leakage_db(refs: Tensor, ests: Tensor, sample_rate: int) -> Tensor:
    """Interference-to-target ratio per stem in dB from Mel magnitudes, ``(B, S)`` (lower is better; NaN
    where the reference stem is silent): estimate ``i``'s magnitude is fitted as ``Σ_j a_ij |ref_j|`` with
    ``a ≥ 0``, and the ratio is ``Σ_{j≠i} ‖a_ij ref_j‖² / ‖a_ii ref_i‖²`` in those magnitudes. Defined for
    any decoder, including those that make up their phase (see the module docstring)."""
    r, e = _stem_pair(refs, ests)
    R, E = _mel_rows(r, sample_rate), _mel_rows(e, sample_rate)
    B, S, _ = R.shape
    out = torch.empty(B, S, dtype=torch.float64)
    for b in range(B):
        energy = R[b].pow(2).sum(-1)  # (S,)
        for i in range(S):
            part = _nonnegative_fit(R[b], E[b, i]).pow(2) * energy
            out[b, i] = 10 * torch.log10((part.sum() - part[i]).clamp_min(EPS) / part[i].clamp_min(EPS))
    return _undefined_where_silent(r, out.to(r.dtype))


def mel_cross_leakage(ests: Tensor, sample_rate: int) -> Tensor:
    """``(B, S)``: the share of each estimate's Mel-magnitude energy that a non-negative combination of the
    other estimates' magnitudes explains (0 = nothing shared, 1 = all of it) — :func:`cross_leakage` for
    estimates whose phase is made up. No references needed: for real recordings."""
    e = _stems(ests, "ests")
    if e.shape[1] < 2:
        raise ValueError("mel_cross_leakage needs at least two estimated stems")
    E = _mel_rows(e, sample_rate)
    B, S, _ = E.shape
    out = torch.zeros(B, S, dtype=torch.float64)
    for b in range(B):
        for i in range(S):
            others = torch.cat([E[b, :i], E[b, i + 1:]])
            own = E[b, i].pow(2).sum()
            if float(own) > 0:
                out[b, i] = (_nonnegative_fit(others, E[b, i]) @ others).pow(2).sum() / own
    return out.to(e.dtype)


# ------------------------------------------------------------------------------------------------ all at once
def stem_metrics(mix: Tensor, refs: Tensor, ests: Tensor, sample_rate: int, *, bss: bool = True,
                 waveform: bool = True) -> dict[str, Tensor]:
    """Every per-stem metric of one batch: ``{name: (B, S)}`` for ``si_sdr``, ``sdr`` (plain),
    ``bss_sdr`` (when ``bss``), ``mel_distance``, ``leakage_db``, ``mel_leakage_db``,
    ``silent_stem_level_db``, and per clip ``{consistency: (B,), mel_consistency: (B,)}``.

    ``waveform=False`` leaves out the metrics that compare waveforms sample by sample (SI-SDR, both SDRs,
    leakage by projection): for estimates decoded with a made-up phase they measure the phase, not the
    separation. Mel distance, Mel-magnitude leakage, the silent stems' level and both consistencies remain.
    Every fidelity metric is NaN where the reference stem is silent."""
    out = {}
    if waveform:
        out |= {"si_sdr": per_stem(si_sdr, refs, ests), "sdr": per_stem(sdr, refs, ests)}
        if bss:
            out["bss_sdr"] = per_stem(bss_sdr, refs, ests)
    r, _ = _stem_pair(refs, ests)
    out["mel_distance"] = _undefined_where_silent(r, per_stem(mel_distance, refs, ests, sample_rate=sample_rate))
    if waveform:
        out["leakage_db"] = leakage_db(refs, ests)
    out["mel_leakage_db"] = mel_leakage_db(refs, ests, sample_rate)
    out["silent_stem_level_db"] = silent_stem_level_db(refs, ests)
    out["consistency"] = mixture_consistency(mix, ests)
    out["mel_consistency"] = spectral_consistency(mix, ests, sample_rate)
    return out


# ------------------------------------------------------------------------------------------------ intervals
@dataclass(frozen=True)
class Interval:
    """The mean of ``n`` values and its two-sided Student-t interval at ``level`` (NaN bounds when n < 2)."""

    mean: float
    low: float
    high: float
    n: int
    level: float = 0.95

    def to_dict(self) -> dict:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n, "level": self.level}


def mean_interval(values, level: float = 0.95, groups=None) -> Interval:
    """Mean and t-interval of the finite entries of ``values`` (any shape: clips are independent draws).

    ``groups`` (one label per value of a 1-D ``values``, e.g. the piece each clip was cut from): clips of one
    piece are not independent draws, so each group's finite values are averaged first and the interval is
    taken over the groups (``n`` counts groups)."""
    from scipy.stats import t as student_t

    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    x = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if groups is not None:
        x = _group_means(x, list(groups))
    x = x[torch.isfinite(x)]
    n = int(x.numel())
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, level)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, float("nan"), float("nan"), 1, level)
    half = float(student_t.ppf((1 + level) / 2, n - 1)) * float(x.std(unbiased=True)) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, level)


def _group_means(x: Tensor, groups: list) -> Tensor:
    """The mean of each group's finite entries of ``x`` (NaN for a group with none), in first-seen order."""
    if len(groups) != x.numel():
        raise ValueError(f"groups: one label per value ({x.numel()}), got {len(groups)}")
    order = list(dict.fromkeys(groups))
    means = []
    for g in order:
        part = x[[i for i, label in enumerate(groups) if label == g]]
        part = part[torch.isfinite(part)]
        means.append(float(part.mean()) if part.numel() else float("nan"))
    return torch.tensor(means, dtype=torch.float64)


def paired_interval(a, b, level: float = 0.95, groups=None) -> Interval:
    """Mean and t-interval of the per-clip differences ``a − b`` (same shape: the same clips scored twice;
    ``groups`` as in :func:`mean_interval`).

    The difference of two systems scored on the same clips varies far less from clip to clip than either
    score does; comparing their two unpaired intervals would count the clips' spread twice. Pairs where
    either value is NaN (undefined: a silent reference) are left out."""
    x, y = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if x.shape != y.shape:
        raise ValueError(f"paired values must have one shape (the same clips), got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    return mean_interval(x - y, level, groups)
