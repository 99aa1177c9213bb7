"""Repetition and structure of a piece from the self-similarity of its Mel spectrum (long-form generation).

A piece is cut into short segments (``segment_seconds``); each segment's mean log10-Mel vector, minus the
piece's mean vector (so a constant timbre does not read as repetition), is compared with every other by
cosine similarity: the self-similarity matrix ``S`` of music-structure analysis. Two summaries, measured the
same way on generated and on real pieces so that one is read against the other:

- the **lag profile**: the mean of ``S`` along each diagonal — how alike the music is to itself ``lag``
  seconds apart. Real music stays similar over a bar or a phrase and decays slowly; a sampler stuck in a loop
  shows peaks at its period; one that wanders off shows a profile that drops to zero at once;
- the **recurrence**: for each segment, its highest similarity to any segment at least ``min_lag_seconds``
  earlier, averaged over the piece — does the music come back to earlier material (a chorale's repeated
  first phrase; a loop's every bar) or never.

Neither says whether the music is good; they say whether its large-scale shape looks like that of the real
pieces, and they catch the two failures of long generation (collapse into a loop, drift into noise or
silence).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .reconstruction import log_mel_magnitude


def segment_features(wav: Tensor, sample_rate: int, *, segment_seconds: float = 0.5, n_mels: int = 64,
                     stft_window: int = 2048) -> Tensor:
    """``(T,)`` -> ``(segments, n_mels)``: mean log10-Mel of each segment, the piece's mean removed."""
    mel = log_mel_magnitude(wav.reshape(1, -1).float(), sample_rate, stft_window, n_mels)[0]  # (n_mels, frames)
    # segment k holds the frames centred in [k, k + 1) × segment_seconds: no drift when a frame count per
    # segment is not whole
    which = (torch.arange(mel.shape[1]) * (stft_window // 4) / sample_rate / segment_seconds).floor().long()
    n = int(wav.numel() / sample_rate / segment_seconds)
    if n < 2:
        raise ValueError(f"{wav.numel() / sample_rate:.2f} s is too short for two {segment_seconds:g}-s segments")
    keep = which < n
    sums = torch.zeros(n, mel.shape[0], dtype=mel.dtype).index_add_(0, which[keep], mel[:, keep].T)
    seg = sums / torch.bincount(which[keep], minlength=n).clamp_min(1)[:, None].to(mel.dtype)
    return seg - seg.mean(0, keepdim=True)


def self_similarity(features: Tensor) -> Tensor:
    """``(segments, D)`` -> ``(segments, segments)`` cosine similarities."""
    f = torch.nn.functional.normalize(features.double(), dim=-1, eps=1e-9)
    return f @ f.T


def lag_profile(sim: Tensor, max_lag: int) -> np.ndarray:
    """Mean similarity on each diagonal ``1 … max_lag`` (segments apart); NaN past the piece's length."""
    n = sim.shape[0]
    return np.array([float(torch.diagonal(sim, lag).mean()) if lag < n else float("nan") for lag in range(1, max_lag + 1)])


def recurrence(sim: Tensor, min_lag: int) -> float:
    """Mean over segments ``t ≥ min_lag`` of ``max_{s ≤ t − min_lag} S[t, s]``: return to earlier material."""
    n = sim.shape[0]
    if n <= min_lag:
        return float("nan")
    return float(np.mean([float(sim[t, : t - min_lag + 1].max()) for t in range(min_lag, n)]))


@dataclass
class StructureStats:
    """A piece's lag profile (one value per ``segment_seconds`` of lag) and recurrence."""

    lag_profile: list[float]
    recurrence: float
    segment_seconds: float
    min_lag_seconds: float
    seconds: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def structure_stats(wav: Tensor, sample_rate: int, *, segment_seconds: float = 0.5, max_lag_seconds: float = 20.0,
                    min_lag_seconds: float = 4.0) -> StructureStats:
    """The lag profile up to ``max_lag_seconds`` and the recurrence beyond ``min_lag_seconds`` of one piece."""
    sim = self_similarity(segment_features(wav, sample_rate, segment_seconds=segment_seconds))
    return StructureStats(lag_profile(sim, int(round(max_lag_seconds / segment_seconds))).tolist(),
                          recurrence(sim, max(int(round(min_lag_seconds / segment_seconds)), 1)), segment_seconds,
                          min_lag_seconds, wav.numel() / sample_rate)
