"""Fréchet distances between sets of audio windows, on embeddings defined here, with their noise floor.

The Fréchet distance between two sets of embeddings is the 2-Wasserstein distance between the Gaussians
fitted to them: ``|μ₁ − μ₂|² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}`` (FID's and FAD's formula).
It is only as meaningful as the embedding, so the names say which one:

- **Mel-statistics Fréchet distance**: each window's mean and standard deviation over time of every band of
  a log10 Mel spectrogram (:func:`mel_statistics`): timbre, loudness and how much each band moves;
- **tagger Fréchet distance**: the penultimate layer of a small audio tagger trained in this project on the
  corpora's attribute tags (``nn/tagger.py``). Neither is "FAD": FAD names the VGGish embedding (and its
  successors) trained on millions of clips, which cannot be loaded here.

The statistic is biased upwards at small sample sizes (the covariance of ``n`` windows in ``d`` dimensions
carries noise of order ``d/n``), so a value means little alone: every comparison is made at equal window
counts against the **floor** — the distance between two disjoint sets of real clips of the same size
(:func:`frechet_with_interval` on real sets) — and intervals come from half-sampling whole clips (windows of one clip are not
independent): :func:`frechet_with_interval`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from .reconstruction import log_mel_magnitude


# --------------------------------------------------------------------------- the distance
def gaussian_stats(x: np.ndarray | Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``(N, D)`` embeddings -> mean ``(D,)`` and unbiased covariance ``(D, D)``, in float64."""
    x = np.asarray(x.detach().cpu().numpy() if isinstance(x, Tensor) else x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need (N >= 2, D) embeddings for a mean and a covariance, got shape {x.shape}")
    return x.mean(0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix (negative rounding clipped)."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """The Fréchet (2-Wasserstein²) distance between N(mu1, cov1) and N(mu2, cov2).

    ``tr (Σ₁ Σ₂)^{1/2}`` is computed as ``tr (S Σ₂ S)^{1/2}`` with ``S = Σ₁^{1/2}``: the product inside is
    symmetric positive semi-definite, so symmetric eigendecompositions suffice — no complex ``sqrtm`` of a
    non-symmetric product and no ``eps`` added to near-singular covariances (rank-deficient ones, fewer
    windows than dimensions, are exact here)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shapes do not match: means {mu1.shape}, {mu2.shape}; covariances {cov1.shape}, {cov2.shape}")
    s = _psd_sqrt(cov1)
    cross = np.linalg.eigvalsh((s @ cov2 @ s + (s @ cov2 @ s).T) / 2)
    value = float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * np.sum(np.sqrt(np.clip(cross, 0, None))))
    return max(value, 0.0)  # rounding can leave −1e−12 for identical sets


def frechet_distance_of(x: np.ndarray | Tensor, y: np.ndarray | Tensor) -> float:
    """Fréchet distance between the Gaussians fitted to two sets of embeddings ``(N, D)``, ``(M, D)``."""
    return frechet_distance(*gaussian_stats(x), *gaussian_stats(y))


# --------------------------------------------------------------------------- intervals and the floor
@dataclass
class FrechetResult:
    """A Fréchet distance with its interval, and the sizes it was measured at."""

    value: float
    low: float
    high: float
    windows: tuple[int, int]
    clips: tuple[int, int]
    embedding: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "ci": [self.low, self.high], "windows": list(self.windows),
                "clips": list(self.clips), "embedding": self.embedding}


def _by_group(groups: Sequence) -> list[np.ndarray]:
    g = np.asarray(groups)
    return [np.flatnonzero(g == u) for u in dict.fromkeys(g.tolist())]


def frechet_with_interval(x: np.ndarray | Tensor, y: np.ndarray | Tensor, groups_x: Sequence, groups_y: Sequence, *,
                          resamples: int = 200, confidence: float = 0.95, seed: int = 0,
                          embedding: str = "") -> FrechetResult:
    """Fréchet distance of ``x`` to ``y`` with a half-sampling interval over clips.

    ``groups_*`` name each window's clip. Each resample keeps a random half of the clips of each set (without
    replacement: a duplicated window would shrink the covariance and move the statistic) and recomputes the
    distance; the spread of half-sample values estimates the full-sample spread (the delete-n/2 jackknife),
    so the interval is the value plus the centred ``(1 ± confidence) / 2`` percentiles of the half-sample
    values. Half samples are biased upwards (fewer windows), which centring removes.

    The noise floor of a comparison is this same function on two *real* sets of the sizes compared (e.g. the
    true continuations of the prompts against the reference clips): a generated set is indistinguishable from
    real music, by this embedding and at these sizes, when its distance falls inside the floor's interval."""
    x = np.asarray(x.detach().cpu().numpy() if isinstance(x, Tensor) else x, dtype=np.float64)
    y = np.asarray(y.detach().cpu().numpy() if isinstance(y, Tensor) else y, dtype=np.float64)
    value = frechet_distance_of(x, y)
    gx, gy = _by_group(groups_x), _by_group(groups_y)
    rng = np.random.default_rng(seed)
    halves = []
    for _ in range(resamples):
        ix = np.concatenate([gx[i] for i in rng.permutation(len(gx))[: max(len(gx) // 2, 1)]])
        iy = np.concatenate([gy[i] for i in rng.permutation(len(gy))[: max(len(gy) // 2, 1)]])
        if ix.size >= 2 and iy.size >= 2:
            halves.append(frechet_distance_of(x[ix], y[iy]))
    if len(halves) < 2:
        lo = hi = float("nan")
    else:
        h = np.asarray(halves)
        alpha = (1 - confidence) / 2
        d_lo, d_hi = np.quantile(h - h.mean(), [alpha, 1 - alpha])
        lo, hi = max(value + float(d_lo), 0.0), value + float(d_hi)
    return FrechetResult(value, lo, hi, (len(x), len(y)), (len(gx), len(gy)), embedding)


def split_halves(groups: Sequence, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Window indices of two disjoint halves of the clips (a clip's windows stay together)."""
    by = _by_group(groups)
    order = np.random.default_rng(seed).permutation(len(by))
    half = len(by) // 2
    return (np.concatenate([by[i] for i in order[:half]]) if half else np.array([], int),
            np.concatenate([by[i] for i in order[half:]]))


# --------------------------------------------------------------------------- the Mel-statistics embedding
MEL_STATS_WINDOW = 2048  # STFT window (samples at 24 kHz: 85 ms), hop a quarter of it, as in the Mel distance
MEL_STATS_BANDS = 32


def mel_statistics(wav: Tensor, sample_rate: int, *, window_seconds: float = 1.0, hop_seconds: float = 0.5,
                   n_mels: int = MEL_STATS_BANDS, stft_window: int = MEL_STATS_WINDOW) -> Tensor:
    """``(T,)`` audio -> ``(windows, 2 · n_mels)``: per window of ``window_seconds`` (every ``hop_seconds``),
    the mean and the standard deviation over time of each band of the log10 Mel magnitude (the Mel
    distance's spectrum, ``metrics/reconstruction.py: log_mel_magnitude``). A clip shorter than one window
    gives one window over the whole clip."""
    wav = wav.reshape(1, -1).float()
    mel = log_mel_magnitude(wav, sample_rate, stft_window, n_mels)[0]  # (n_mels, frames)
    frame_rate = sample_rate / (stft_window // 4)
    size = max(int(round(window_seconds * frame_rate)), 2)
    step = max(int(round(hop_seconds * frame_rate)), 1)
    if mel.shape[1] <= size:
        starts = [0]
        size = mel.shape[1]
    else:
        starts = list(range(0, mel.shape[1] - size + 1, step))
    win = torch.stack([mel[:, s: s + size] for s in starts])  # (W, n_mels, size)
    return torch.cat([win.mean(-1), win.std(-1, unbiased=False)], dim=-1)
