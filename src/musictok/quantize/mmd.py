"""The independence-promoting loss: MMD between the joint of a codec's level streams and the product of
their marginals.

A multi-codebook codec emits ``L`` quantized streams per frame (RVQ levels). A token LM that predicts them
in parallel (the ``parallel`` or ``delay`` pattern) models the *product* of per-codebook marginals; that is
exact only if the levels are independent. This module measures how far they are from it, differentiably,
so the codec can be trained to make them independent (Independence-promoting loss, see
``../shared/papers/002``).

Samples of the joint are the per-frame tuples ``(q_1[t], ..., q_L[t])`` of a batch. Samples of the product
of the marginals come from the same tuples with every level but the first shuffled *independently* across
all frames of the batch: each level keeps its marginal, and any dependence between levels is destroyed.
The squared MMD between the two sample sets (Gaussian kernels at several bandwidths, unbiased estimator)
is ≈ 0 when the levels are independent and grows with their dependence; it is a kernel proxy for the
mutual information between levels.

Two details matter in practice:

- **Per-dimension normalisation.** Features are standardised with the batch's own mean and standard
  deviation (with gradient), so the loss cannot be lowered by shrinking or inflating a level.
- **Delay alignment.** Under the delay pattern, the LM predicts level ``l`` of frame ``t - l`` together
  with level 0 of frame ``t``; the tuples that must be independent are then ``(q_1[t], q_2[t-1], ...)``.
  ``delays`` shifts each level before the tuples are formed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["MMDConfig", "independence_mmd", "joint_and_product", "mmd_squared"]


@dataclass
class MMDConfig:
    """Options of the independence-promoting loss (the ``mmd`` block of a codec config)."""

    weight: float = 0.0  # 0 disables the loss term (the statistic is still logged)
    bandwidths: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)  # × the mean squared distance, see mmd_squared
    max_samples: int = 512  # frames drawn per batch: the kernel matrices are (n × n)
    delay: bool = False  # align level l by l frames (the delay pattern's tuples)

    def __post_init__(self) -> None:
        self.bandwidths = tuple(float(b) for b in self.bandwidths)
        if self.weight < 0 or not self.bandwidths or min(self.bandwidths) <= 0 or self.max_samples < 4:
            raise ValueError("mmd: need weight >= 0, positive bandwidths and max_samples >= 4")


def mmd_squared(x: Tensor, y: Tensor, bandwidths: Sequence[float] = MMDConfig.bandwidths) -> Tensor:
    """Unbiased squared MMD between samples ``x (n, D)`` and ``y (m, D)`` with a sum of Gaussian kernels.

    Kernel ``k(a, b) = mean_s exp(-|a - b|² / (s · h))`` where ``h`` is the mean squared distance of
    ``x``'s rows (detached; ``2 D`` for standardised features), so the bandwidths are relative and the
    statistic does not depend on the feature scale. Can be slightly negative when ``x`` and ``y`` come from
    one distribution.
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"expected (n, D) and (m, D) samples, got {tuple(x.shape)} and {tuple(y.shape)}")
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError("need at least two samples on each side")
    with torch.autocast(x.device.type, enabled=False):
        x, y = x.float(), y.float()
        xy = torch.cat([x, y])
        sq = xy.pow(2).sum(-1)
        d2 = (sq[:, None] + sq[None, :] - 2 * xy @ xy.T).clamp_min(0)
        h = d2[:n, :n].sum().detach() / (n * (n - 1))
        k = sum(torch.exp(-d2 / (s * h.clamp_min(1e-12))) for s in bandwidths) / len(bandwidths)
        kxx = (k[:n, :n].sum() - k[:n, :n].diagonal().sum()) / (n * (n - 1))
        kyy = (k[n:, n:].sum() - k[n:, n:].diagonal().sum()) / (m * (m - 1))
        kxy = k[:n, n:].mean()
        return kxx + kyy - 2 * kxy


def joint_and_product(levels: Tensor, *, max_samples: int = 512, delays: Sequence[int] | None = None,
                      generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``levels (B, T, L, D)`` -> standardised joint samples and product-of-marginals samples, both ``(n, L·D)``.

    ``delays[l]`` frames are dropped from the start of level ``l`` (and from the end of the others) so that
    tuple ``t`` holds ``q_l[t - delays[l]]``. At most ``max_samples`` frames are drawn (without
    replacement) from the batch; the product samples shuffle levels ``1..L-1`` independently.
    """
    if levels.dim() != 4:
        raise ValueError(f"expected levels (B, T, L, D), got shape {tuple(levels.shape)}")
    b, t, n_levels, d = levels.shape
    if delays is not None:
        delays = [int(v) for v in delays]
        if len(delays) != n_levels or min(delays) < 0:
            raise ValueError(f"need {n_levels} non-negative delays, got {delays}")
        span = max(delays)
        if t <= span:
            raise ValueError(f"{t} frames cannot be aligned with delays up to {span}")
        levels = torch.stack([levels[:, span - dl: t - dl, i] for i, dl in enumerate(delays)], dim=2)
        t = t - span
    flat = levels.reshape(b * t, n_levels, d).float()
    n = flat.shape[0]
    if n < 4:
        raise ValueError(f"need at least 4 frames in the batch for the MMD statistic, got {n}")
    dev = flat.device
    if n > max_samples:
        pick = torch.randperm(n, generator=generator, device="cpu")[:max_samples].to(dev)
        flat = flat[pick]
        n = max_samples
    flat = (flat - flat.mean(0)) / (flat.std(0) + 1e-5)  # per level and dimension
    shuffled = [flat[:, 0]] + [flat[torch.randperm(n, generator=generator, device="cpu").to(dev), i]
                               for i in range(1, n_levels)]
    return flat.reshape(n, n_levels * d), torch.stack(shuffled, dim=1).reshape(n, n_levels * d)


def independence_mmd(levels: Tensor, config: MMDConfig | None = None,
                     generator: torch.Generator | None = None) -> Tensor:
    """The loss: squared MMD between the levels' joint and the product of their marginals (a 0-d tensor)."""
    cfg = config or MMDConfig()
    delays = list(range(levels.shape[2])) if cfg.delay else None
    joint, product = joint_and_product(levels, max_samples=cfg.max_samples, delays=delays, generator=generator)
    return mmd_squared(joint, product, cfg.bandwidths)
