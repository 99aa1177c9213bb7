"""Dual-track diagnostics (DuoTok §6): does an LM lean on the other track, and on long context?

Plain functions on codes. The LM enters as a **scorer**: ``scorer(codes, last=None) -> float`` takes one
window of per-stream codes ``[(B, frames, slots)]`` and returns the cnBPT of the cells it scores — under the
track-to-track protocol, the target track after its prefix — restricted to the last ``last`` frames when
``last`` is given. Everything here is built on that one number:

- **Cross-track corruption** (Fig. 3): the relative predictability cost of corrupting the *conditioning*
  track, ``ΔcnBPT = (cnBPT(corrupted) − cnBPT(clean)) / cnBPT(clean)`` (Eq. 8), for three corruptions:
  a temporal **shift** by a number of frames (circular, so the track's own statistics are untouched and only
  its alignment is lost), random **masking** of a share of its frames (each replaced by a frame drawn from
  elsewhere in the same track: information removed, marginals kept), and **mismatch** with an unrelated
  piece (the track of another clip of the batch). A model that uses the other track pays for each.
- **Context scaling** (Fig. 4): cnBPT of the same final frames given longer and longer history
  (``context_scaling``): a model that uses non-local structure keeps gaining.

``codes`` is a list with one tensor per stream; ``track`` (the corrupted, conditioning track) is an index
into it. A scorer may return :class:`WindowBits` (each window's bits and normaliser) instead of a float;
then every corruption cost also gets a paired bootstrap interval over the windows (clustered by piece when
``groups`` names each window's piece): the noise floor a claim about the curves must clear.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import Tensor

from .intervals import cluster_bootstrap

__all__ = [
    "CorruptionResult",
    "Scorer",
    "WindowBits",
    "context_gain",
    "context_gain_interval",
    "context_scaling",
    "context_scores",
    "corruption_curves",
    "mask_track",
    "mismatch_track",
    "paired_cost_interval",
    "relative_cost",
    "shift_track",
]



@dataclass
class WindowBits:
    """Each window's bits over its scored cells and their normaliser ``Σ log2 K``: cnBPT pools them."""

    bits: Tensor  # (B,)
    norm: Tensor  # (B,)

    @property
    def cnbpt(self) -> float:
        return float(self.bits.double().sum() / self.norm.double().sum())


Scorer = Callable[..., "float | WindowBits"]  # scorer(codes: list[Tensor], last: int | None = None)


def _cnbpt(score: float | WindowBits) -> float:
    return score.cnbpt if isinstance(score, WindowBits) else float(score)


def relative_cost(clean: float, corrupted: float) -> float:
    """``(corrupted − clean) / clean``: the relative predictability cost (DuoTok Eq. 8)."""
    if not clean > 0:
        raise ValueError(f"the clean cnBPT must be > 0 to measure a relative cost, got {clean}")
    return (corrupted - clean) / clean


def _check(codes: Sequence[Tensor], track: int) -> None:
    if not 0 <= track < len(codes):
        raise ValueError(f"track {track} is not one of the {len(codes)} streams")
    if codes[track].ndim != 3:
        raise ValueError(f"codes must be (batch, frames, slots), got {tuple(codes[track].shape)}")


def _replace(codes: Sequence[Tensor], track: int, new: Tensor) -> list[Tensor]:
    return [new if s == track else c for s, c in enumerate(codes)]


def shift_track(codes: Sequence[Tensor], track: int, offset: int) -> list[Tensor]:
    """The ``track``'s frames moved ``offset`` frames later (circularly); the other streams untouched."""
    _check(codes, track)
    return _replace(codes, track, torch.roll(codes[track], shifts=int(offset), dims=1))


def mask_track(codes: Sequence[Tensor], track: int, ratio: float,
               generator: torch.Generator | None = None) -> list[Tensor]:
    """A ``ratio`` share of the ``track``'s frames (exactly ``round(ratio × frames)`` per clip, chosen at
    random) replaced by frames drawn at random from the rest of the same clip's track."""
    _check(codes, track)
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"the mask ratio must be in [0, 1], got {ratio}")
    c = codes[track]
    B, Fr, _ = c.shape
    k = round(ratio * Fr)
    out = c.clone()
    for b in range(B):
        masked = torch.randperm(Fr, generator=generator)[:k]
        donors = torch.randint(0, Fr, (k,), generator=generator)
        out[b, masked.to(c.device)] = c[b, donors.to(c.device)]
    return _replace(codes, track, out)


def mismatch_track(codes: Sequence[Tensor], track: int, donors: Tensor | None = None) -> list[Tensor]:
    """The ``track`` of every clip replaced by another clip's (an unrelated piece): ``donors`` holds the
    clip each one takes (default: the next clip of the batch, so no clip keeps its own). Build the batch
    from different pieces."""
    _check(codes, track)
    c = codes[track]
    B = c.shape[0]
    if donors is None:
        if B < 2:
            raise ValueError("a mismatch needs at least two clips (each takes another's track)")
        donors = (torch.arange(B) + 1) % B
    if donors.shape != (B,) or bool((donors == torch.arange(B)).any()):
        raise ValueError("donors must give every clip another clip's index")
    return _replace(codes, track, c[donors.to(c.device)])


@dataclass
class CorruptionResult:
    """cnBPT of the clean windows and the relative cost of each corruption of the conditioning track."""

    clean: float
    shift: dict[int, float] = field(default_factory=dict)  # offset (frames) -> ΔcnBPT
    mask: dict[float, float] = field(default_factory=dict)  # ratio -> ΔcnBPT
    mismatch: float | None = None
    # "shift 4", "mask 0.5", "mismatch" -> [low, high] (only when the scorer gave per-window bits)
    intervals: dict[str, list[float]] = field(default_factory=dict)
    windows: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shift"] = {str(k): v for k, v in self.shift.items()}
        d["mask"] = {str(k): v for k, v in self.mask.items()}
        return d


def corruption_curves(scorer: Scorer, codes: Sequence[Tensor], track: int, *,
                      shifts: Sequence[int] = (1, 2, 4, 8, 16, 32),
                      mask_ratios: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
                      mismatch: bool = True, seed: int = 0, groups: Sequence | None = None,
                      resamples: int = 1000, level: float = 0.95) -> CorruptionResult:
    """Score the clean windows, then each corruption of the conditioning ``track``; the random draws of the
    masking (and of the bootstrap) come from ``seed``, so a rerun gives the same numbers. With a per-window
    scorer, each cost gets a ``level`` interval from resampling windows (or the pieces ``groups`` names)
    with the clean and corrupted scores paired."""
    clean = scorer(list(codes))
    out = CorruptionResult(_cnbpt(clean), windows=int(codes[track].shape[0]))

    def cost(key: str, corrupted: float | WindowBits) -> float:
        if isinstance(clean, WindowBits) and isinstance(corrupted, WindowBits):
            out.intervals[key] = list(paired_cost_interval(clean, corrupted, groups, resamples=resamples,
                                                           level=level, seed=seed))
        return relative_cost(out.clean, _cnbpt(corrupted))

    for k in shifts:
        out.shift[int(k)] = cost(f"shift {int(k)}", scorer(shift_track(codes, track, k)))
    g = torch.Generator().manual_seed(seed)
    for r in mask_ratios:
        out.mask[float(r)] = cost(f"mask {float(r):g}", scorer(mask_track(codes, track, r, g)))
    if mismatch:
        out.mismatch = cost("mismatch", scorer(mismatch_track(codes, track)))
    return out


def paired_cost_interval(clean: WindowBits, corrupted: WindowBits, groups: Sequence | None = None, *,
                         resamples: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of the relative cost, the same windows resampled on both sides."""
    b0, n0 = clean.bits.double().numpy(), clean.norm.double().numpy()
    b1, n1 = corrupted.bits.double().numpy(), corrupted.norm.double().numpy()
    if not b0.shape == b1.shape:
        raise ValueError(f"clean and corrupted scores cover different windows: {b0.shape} vs {b1.shape}")
    if groups is not None and len(groups) != b0.size:
        raise ValueError(f"groups names {len(groups)} windows, the scores cover {b0.size}")

    def stat(idx: np.ndarray) -> float:
        c = b0[idx].sum() / n0[idx].sum()
        return float((b1[idx].sum() / n1[idx].sum() - c) / c)

    return cluster_bootstrap(stat, np.arange(b0.size) if groups is None else groups, resamples=resamples,
                             level=level, seed=seed)


def context_scaling(scorer: Scorer, codes: Sequence[Tensor], contexts: Sequence[int], eval_frames: int
                    ) -> dict[int, float]:
    """cnBPT of the **same** final ``eval_frames`` frames given ``c`` frames of window for each ``c`` in
    ``contexts``: the scorer sees ``codes[:, F - c:]`` (every stream, ``F`` the frames of ``codes``) and
    scores only its last ``eval_frames`` frames. Streams must share one frame rate."""
    return {c: _cnbpt(v) for c, v in context_scores(scorer, codes, contexts, eval_frames).items()}


def context_scores(scorer: Scorer, codes: Sequence[Tensor], contexts: Sequence[int], eval_frames: int
                   ) -> dict[int, float | WindowBits]:
    """:func:`context_scaling` with the scorer's own results: a per-window scorer's :class:`WindowBits`
    give :func:`context_gain_interval` its windows."""
    frames = {c.shape[1] for c in codes}
    if len(frames) != 1:
        raise ValueError(f"context scaling needs streams of equal frames, got {sorted(frames)}")
    total = frames.pop()
    out = {}
    for c in sorted(int(x) for x in contexts):
        if not eval_frames <= c <= total:
            raise ValueError(f"a context of {c} frames must hold the {eval_frames} scored frames and fit in {total}")
        out[c] = scorer([x[:, total - c:] for x in codes], last=eval_frames)
    return out


def context_gain(curve: dict) -> float:
    """Relative cnBPT drop ``(short − long) / short`` of a :func:`context_scaling` curve (keys: contexts in
    frames or seconds, as numbers or strings), from its shortest to its longest context."""
    pts = sorted((float(k), v) for k, v in curve.items())
    return (pts[0][1] - pts[-1][1]) / pts[0][1] if pts and pts[0][1] else float("nan")


def context_gain_interval(shortest: WindowBits, longest: WindowBits, groups: Sequence | None = None, *,
                          resamples: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of the relative cnBPT gain ``(short − long) / short`` of the same scored frames,
    the windows (or the pieces ``groups`` names) resampled with both contexts paired."""
    lo, hi = paired_cost_interval(shortest, longest, groups, resamples=resamples, level=level, seed=seed)
    return -hi, -lo
