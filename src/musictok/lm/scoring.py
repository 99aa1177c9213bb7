"""Scoring codes with a token LM, cell by cell: the one pass every predictability number comes from.

:func:`cell_scores` runs a teacher-forced pass of a :class:`~musictok.lm.model.TokenLM` over codes laid out
by a :class:`~musictok.lm.patterns.SequencePattern` and maps the per-step losses and logits back to cells
(``pattern.revert_values`` / ``revert_logits``), with the pattern's ``loss_mask`` — so a track-conditioned
pattern's context (the source track, the target's prefix) is never counted. :func:`cnbpt_scorer` wraps it
into the ``scorer(codes, last=None) -> cnBPT`` that :mod:`musictok.metrics.diagnostics` expects.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..metrics.diagnostics import WindowBits
from ..metrics.predictability import mean_log2_codebook_size
from .model import TokenLM
from .patterns import SequencePattern

__all__ = ["CellScores", "cell_scores", "cnbpt_scorer"]


@dataclass
class CellScores:
    """Per stream: ``nll (B, F, S)`` in nats, ``scored (B, F, S)`` bool and ``logits (B, F, S, K_max)``
    (each cell's logits over its own codebook)."""

    nll: list[Tensor]
    scored: list[Tensor]
    logits: list[Tensor]


@torch.no_grad()
def cell_scores(model: TokenLM, pattern: SequencePattern, codes: Sequence[Tensor], batch_size: int = 8,
                logits: bool = True) -> CellScores:
    """Teacher-forced per-cell losses of ``codes`` (``[(B, F_s, S_s)]``) under ``pattern``, in batches;
    ``logits=False`` skips the per-cell logits (``CellScores.logits`` is then empty) and predicts the scored
    cells only (the others' NLL is 0): what a scorer that needs only the losses asks for, without a
    ``(B, F, S, V)`` tensor per stream."""
    device = next(model.parameters()).device
    nll: list[list[Tensor]] = [[] for _ in codes]
    scored: list[list[Tensor]] = [[] for _ in codes]
    kept: list[list[Tensor]] = [[] for _ in codes]
    mask_steps = pattern.loss_mask
    for i in range(0, codes[0].shape[0], batch_size):
        chunk = [c[i: i + batch_size].to(device) for c in codes]
        b = pattern.build(chunk)
        # without logits, only the scored cells are predicted (the heads skip the context's steps)
        targets = b.targets if logits else pattern.scored_targets(b.targets)
        out = model(b.inputs, b.positions, targets, keep_logits=logits)
        per_cell = pattern.revert_values(out.per_token_nll)
        masks = pattern.revert_values(mask_steps.to(device).expand(b.targets.shape).contiguous())
        cell_logits = pattern.revert_logits(out.logits) if logits else None
        for s in range(len(codes)):
            nll[s].append(per_cell[s].float().cpu())
            scored[s].append(masks[s].cpu())
            if logits:
                kept[s].append(cell_logits[s].float().cpu())
    return CellScores([torch.cat(x) for x in nll], [torch.cat(x) for x in scored],
                      [torch.cat(x) for x in kept] if logits else [])


def cnbpt_scorer(model: TokenLM, pattern_for: Callable[[int], SequencePattern], streams: Sequence[int],
                 batch_size: int = 8, per_window: bool = False) -> Callable[..., float | WindowBits]:
    """``scorer(codes, last=None) -> cnBPT`` of the scored cells of ``streams`` (pooled over them), for
    :mod:`musictok.metrics.diagnostics`. ``pattern_for(frames)`` builds the pattern of a window of that many
    frames; ``last`` keeps only the window's last frames. ``per_window``: return each window's bits and
    normaliser (:class:`WindowBits`, whose ``cnbpt`` is the same number) so that costs get intervals."""

    def scorer(codes: Sequence[Tensor], last: int | None = None) -> float | WindowBits:
        pattern = pattern_for(codes[0].shape[1])
        res = cell_scores(model, pattern, codes, batch_size, logits=False)
        batch = codes[0].shape[0]
        bits, norm = torch.zeros(batch, dtype=torch.float64), torch.zeros(batch, dtype=torch.float64)
        for s in streams:
            nll, keep = res.nll[s].double(), res.scored[s].clone()
            if last is not None:
                keep[:, : keep.shape[1] - last] = False
            bits += torch.where(keep, nll, 0.0).flatten(1).sum(1) / math.log(2)  # unscored cells may hold anything
            norm += mean_log2_codebook_size(list(pattern.layout.streams[s].codebook_sizes)) * keep.flatten(1).sum(1)
        if not bool((norm > 0).any()):
            raise ValueError("the scorer found no scored cell in these streams (and last frames)")
        scores = WindowBits(bits, norm)
        return scores if per_window else scores.cnbpt

    return scorer
