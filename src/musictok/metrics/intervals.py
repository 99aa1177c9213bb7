"""Cluster bootstrap: confidence intervals that respect how the rows were drawn.

Clips cut from one piece are not independent draws (they share its key, its instruments, its composer), so an
interval that resamples clips is too narrow. Here whole **clusters** (pieces) are drawn with replacement and
all their rows come along; with one row per cluster it is the ordinary bootstrap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

__all__ = ["cluster_bootstrap", "cluster_resamples"]


def cluster_resamples(groups: Sequence, resamples: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Row indices of ``resamples`` bootstrap draws: as many clusters as there are, drawn with replacement,
    each bringing all its rows (``groups[i]`` names row ``i``'s cluster)."""
    groups = np.asarray(groups)
    if groups.ndim != 1 or groups.size == 0:
        raise ValueError(f"groups must name the cluster of each row (a non-empty 1-D sequence), got shape {groups.shape}")
    rng = np.random.default_rng(seed)
    unique = np.unique(groups)
    members = {g: np.flatnonzero(groups == g) for g in unique}
    for _ in range(resamples):
        yield np.concatenate([members[g] for g in rng.choice(unique, size=unique.size, replace=True)])


def cluster_bootstrap(statistic: Callable[[np.ndarray], float], groups: Sequence, *, resamples: int = 1000,
                      level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of ``statistic(rows)`` over cluster resamples (``rows``: an index array); NaN
    resamples are dropped, and ``(nan, nan)`` comes back when all are NaN or there is one cluster only."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if np.unique(np.asarray(groups)).size < 2:  # one cluster: nothing to resample, no interval
        return float("nan"), float("nan")
    values = np.array([statistic(idx) for idx in cluster_resamples(groups, resamples, seed)], dtype=np.float64)
    values = values[~np.isnan(values)]
    if not values.size:
        return float("nan"), float("nan")
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
