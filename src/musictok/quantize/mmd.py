"""The independence-promoting loss: MMD between the joint of a codec's level streams and the product of
their marginals — the one MMD of musictok, used by the training loss and by the dependence metric.

A multi-codebook codec emits ``L`` streams per frame (RVQ levels). A token LM that predicts them in
parallel (the ``parallel`` or ``delay`` pattern) models the *product* of per-codebook marginals; that is
exact only if the levels are independent. This module measures how far they are from it, differentiably,
so the codec can be trained to make them independent (Lemercier et al., "An Independence-promoting Loss
for Music Generation with Language Models", ICML 2024, ``../shared/papers/002``).

What the statistic reads
    For training, the **pre-quantisation residual streams** ``r_k = x - Σ_{j<k} sg(q_j)`` of a residual
    VQ (:meth:`musictok.quantize.rvq.ResidualVQ.residual_streams`): ``r_k`` is what level ``k``
    quantizes, its code is a function of it, and every ``r_k`` carries gradient to the encoder through
    ``x`` (the quantized vectors are detached). The straight-through quantized levels do not: with
    ``q_1 = x + sg(e_1 - x)``, ``r_2 = x - q_1`` is a constant, so levels 2..L would receive no gradient.
    For evaluation, any per-level vectors, e.g. the codewords of each token.

Samples
    ``streams (B, T, L, D)``: ``B`` clips of ``T`` frames. After the optional delay alignment, every
    feature is standardised over all ``B·T`` frames (with gradient, so no level can lower the loss by
    shrinking). The clips are split at random into two disjoint halves. **Joint** samples: the frames of
    the first half, levels concatenated (``L·D`` dims). **Product-of-marginals** samples: built from the
    second half, each level taken from its own random permutation of the clips and of the frames, so the
    levels of one sample come from unrelated frames while each level keeps its marginal.

Estimator
    The unbiased squared MMD (U-statistic) with a sum of Gaussian kernels
    ``k(a, b) = Σ_σ² exp(-|a - b|² / (2 σ²))``. Pairs of samples from the same clip are left out of the
    within-sample means: frames of one clip are alike in every level at once, which the joint keeps and the
    product breaks, so a frame-level estimate reads the clips' own temporal coherence as dependence between
    levels (+7e-3 on average for independent AR(1) streams with ρ = 0.9 at rvq-small's batch, where the
    clip-level estimate scatters around 0 by 3e-6; ``tests/quantize/test_mmd.py``). With the joint and product built from disjoint clips and same-clip pairs
    excluded, independent levels give 0 in expectation (either sign) at any batch size. With fewer than
    four clips (no two clips per half) every frame is its own unit, which assumes independent frames.

Taken from AudioCraft's EnCodec-MMD code (pull request facebookresearch/audiocraft#465, files
``audiocraft/losses/mmd.py``, ``audiocraft/solvers/compression.py``, ``audiocraft/quantization/core_vq.py``
and ``config/solver/compression/encodec_musicgen_mmd_32khz.yaml``):

- the kernel ``exp(-d² / (2 a))`` with the **fixed** variances ``a ∈ {0.1, 1, 5, 10, 20, 50}`` on
  standardised features, **summed** over ``a``;
- per-feature standardisation over the frames, with gradient;
- the product of marginals by **independent shuffles of every level**;
- the **delay** alignment (level ``k`` shifted by ``k`` frames, the first frames cropped) and
  ``delay: True`` in their config;
- **pooling**: the statistic is computed once every ``num_batches_mmd = 32`` training batches, on the
  encoder's outputs for all 32 stored batches re-encoded with the current weights (one checkpointed
  encoder pass per batch), and its gradient (weight ``1000``) is added outside their loss balancer — here
  ``pool_batches``, the pool kept by the trainer (:mod:`musictok.train.codec`) and the term added by
  ``WaveformCodec._independence_term`` (:mod:`musictok.tokenizers.rvq_codec`) — from the first pool after the
  codebooks' k-means init (a buffered init leaves them random for the first steps; the term waits for it).

Where this module differs from it, and why:

- **disjoint joint and product samples** and **same-clip pairs left out** (above). AudioCraft's product
  rows are shuffles of the joint rows themselves, and every frame is a unit.
- **normalisation**: AudioCraft divides the kernel sums over ``N = B·T`` frames by ``B(B - 1)`` and
  ``B²`` (``B`` = clips) and subtracts ``B`` for the diagonal, so its value is ``≈ T² · MMD²`` plus
  ``T(T - 1)/(B - 1)`` times the mean within-sample kernel (a term that rewards spreading the frames
  apart) plus a constant ``2(N - B)/(B(B - 1))`` per kernel; it is then clipped at 0. This module returns
  the plain U-statistic, so ``weight`` here is not AudioCraft's 1000 in the same units: the MMD part of
  their value is ``T²`` × this one (≈ 2,100 at their ``T ≈ 46`` frames, 1 s at 50 Hz after the delay;
  256 for rvq-small's 1 s clips), and on rvq-small's pooled streams the constant dominates their value
  (0.75, of which ``T² · MMD² ≈ 0.07``). Measured instead: at the bundled rvq-small / rvq-mmd-small
  weights, ``1000 ×`` this statistic on a 32-batch pool gives the encoder a gradient 1.5–2× that of the
  Mel term (15 × the Mel distance of one batch) — the scale of ``configs/rvq-mmd-small.yaml``.
- **streams**: AudioCraft's ``get_streams_pre_quantization`` returns the residual *after* each level,
  ``x - Σ_{j≤k} sg(q_j)`` for ``k = 1..L`` (the last one is never quantized, and level 1's input ``x`` is
  not among them); ``streams="inputs"`` (default) uses the inputs ``r_1..r_L`` of the ``L`` quantizers,
  ``streams="remainders"`` AudioCraft's choice; ``streams="lookup"`` each input as its level's look-up
  sees it (``W_in r_k``, normalised for an ``l2norm`` look-up), for factorised codes: the ``L · d``
  numbers the codes are a function of, where the kernels still separate samples (see
  :meth:`~musictok.quantize.rvq.ResidualVQ.residual_streams`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

__all__ = ["AUDIOCRAFT_BANDWIDTHS", "MMDConfig", "align_delays", "independence_mmd", "joint_and_product",
           "mmd_squared"]

AUDIOCRAFT_BANDWIDTHS: tuple[float, ...] = (0.1, 1.0, 5.0, 10.0, 20.0, 50.0)  # kernel variances σ²
STREAMS = ("inputs", "remainders", "lookup")


@dataclass
class MMDConfig:
    """Options of the independence-promoting loss (the ``mmd`` block of a codec config)."""

    weight: float = 0.0  # 0 disables the loss term (the statistic is still computed and logged)
    bandwidths: tuple[float, ...] = AUDIOCRAFT_BANDWIDTHS  # variances σ² of the summed Gaussian kernels
    pool_batches: int = 32  # training batches re-encoded together per statistic (AudioCraft: 32)
    delay: bool = True  # align level l by l frames: the tuples the delay pattern predicts together
    streams: str = "inputs"  # "inputs": r_k = x - Σ_{j<k} sg(q_j); "remainders": x - Σ_{j<=k} sg(q_j);
    # "lookup": each r_k as its level's look-up sees it (factorised codes: d dims, see ResidualVQ.residual_streams)
    max_samples: int | None = 8192  # frames per statistic at most (whole clips drawn at random beyond)

    def __post_init__(self) -> None:
        self.bandwidths = tuple(float(b) for b in self.bandwidths)
        if self.weight < 0 or not self.bandwidths or min(self.bandwidths) <= 0:
            raise ValueError("mmd: need weight >= 0 and positive bandwidths")
        if self.pool_batches < 1:
            raise ValueError(f"mmd.pool_batches must be >= 1, got {self.pool_batches}")
        if self.streams not in STREAMS:
            raise ValueError(f"mmd.streams must be one of {STREAMS}, got {self.streams!r}")
        if self.max_samples is not None and self.max_samples < 8:
            raise ValueError(f"mmd.max_samples must be >= 8 (or null), got {self.max_samples}")


def align_delays(streams: Tensor) -> Tensor:
    """``(B, T, L, D)`` -> ``(B, T - L + 1, L, D)`` whose frame ``t`` holds level ``l`` of frame
    ``t + L - 1 - l``: level 0 at ``t'`` with level ``l`` at ``t' - l``, the cells the delay pattern
    predicts in one step. The first ``L - 1`` frames, where some level has no partner, are dropped."""
    if streams.dim() != 4:
        raise ValueError(f"expected streams (B, T, L, D), got shape {tuple(streams.shape)}")
    _, t, n_levels, _ = streams.shape
    if t < n_levels:
        raise ValueError(f"{t} frames cannot be delay-aligned over {n_levels} levels")
    span = n_levels - 1
    return torch.stack([streams[:, span - lv: t - lv, lv] for lv in range(n_levels)], dim=2)


def _gram_d2(a: Tensor, b: Tensor) -> Tensor:
    return (a.pow(2).sum(-1)[:, None] + b.pow(2).sum(-1)[None, :] - 2 * a @ b.T).clamp_min(0)


def _kernel_sums(d2: Tensor, variances: Tensor, clips: int) -> Tensor:
    """``(2, len(variances))``: per variance, the kernel sum over all entries of ``d2`` and over its
    ``clips`` diagonal blocks (0 when ``clips`` is 0: a cross term has no same-clip pairs)."""
    sums = []
    for a in variances:
        k = torch.exp(d2 * (-0.5 / a))
        if clips:
            rows = d2.shape[0] // clips
            same = k.view(clips, rows, clips, rows).diagonal(dim1=0, dim2=2).sum()
        else:
            same = k.new_zeros(())
        sums.append(torch.stack([k.sum(), same]))
    return torch.stack(sums, dim=1)


def mmd_squared(x: Tensor, y: Tensor, bandwidths: Sequence[float] = AUDIOCRAFT_BANDWIDTHS, *,
                clips_x: int | None = None, clips_y: int | None = None) -> Tensor:
    """Unbiased squared MMD between samples ``x (n, F)`` and ``y (m, F)``; a 0-d tensor.

    Kernel ``Σ_a exp(-|u - v|² / (2 a))`` over the variances ``a`` in ``bandwidths`` (absolute: the
    features are expected standardised). ``clips_x``: the rows of ``x`` are ``clips_x`` equal consecutive
    blocks (clips) and within-``x`` pairs of one block are left out of its mean (default: one row per block,
    i.e. only the diagonal); likewise ``clips_y``. Can be slightly negative when ``x`` and ``y`` come from
    one distribution. The kernel matrices are recomputed in the backward pass rather than stored.
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"expected (n, F) and (m, F) samples, got {tuple(x.shape)} and {tuple(y.shape)}")
    n, m = x.shape[0], y.shape[0]
    cx, cy = clips_x or n, clips_y or m
    if n % cx or m % cy:
        raise ValueError(f"{n} and {m} rows do not split into {cx} and {cy} equal clips")
    if cx < 2 or cy < 2:
        raise ValueError("need samples from at least two clips on each side")
    with torch.autocast(x.device.type, enabled=False):
        x, y = x.float(), y.float()
        variances = torch.tensor([float(b) for b in bandwidths], device=x.device)
        if not len(variances) or float(variances.min()) <= 0:
            raise ValueError(f"bandwidths must be positive, got {list(bandwidths)}")
        grad = torch.is_grad_enabled() and (x.requires_grad or y.requires_grad)

        def sums(a: Tensor, b: Tensor, clips: int) -> Tensor:
            d2 = _gram_d2(a, b)
            if grad:
                return checkpoint(_kernel_sums, d2, variances, clips, use_reentrant=False)
            return _kernel_sums(d2, variances, clips)

        sxx, syy, sxy = sums(x, x, cx), sums(y, y, cy), sums(x, y, 0)
        kxx = (sxx[0] - sxx[1]) / (n * n - n * (n // cx))  # all pairs minus the same-clip blocks
        kyy = (syy[0] - syy[1]) / (m * m - m * (m // cy))
        kxy = sxy[0] / (n * m)
        return (kxx + kyy - 2 * kxy).sum()


def joint_and_product(streams: Tensor, *, max_samples: int | None = None,
                      generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, int]:
    """``streams (B, T, L, D)`` -> joint samples ``(c·T, L·D)``, product samples ``(c·T, L·D)`` and the
    number of clips ``c`` on each side (see the module docstring). With fewer than 4 clips, every frame is
    one clip of one frame. At most ``max_samples`` frames are used (whole clips drawn at random)."""
    if streams.dim() != 4:
        raise ValueError(f"expected streams (B, T, L, D), got shape {tuple(streams.shape)}")
    b, t, n_levels, d = streams.shape
    if b < 4:
        streams, b, t = streams.reshape(b * t, 1, n_levels, d), b * t, 1
    if b < 4:
        raise ValueError(f"need at least 4 frames for the MMD statistic, got {b}")
    dev = streams.device

    def perm(k: int) -> Tensor:
        return torch.randperm(k, generator=generator).to(dev)

    if max_samples is not None and b * t > max_samples:
        if max_samples // t < 4:  # clips too long to keep whole: fall back to frames
            streams, b, t = streams.reshape(b * t, 1, n_levels, d), b * t, 1
        keep = max_samples // t
        streams, b = streams[perm(b)[:keep]], keep
    z = streams.float()
    flat = z.reshape(b * t, n_levels, d)
    z = ((flat - flat.mean(0)) / torch.sqrt(flat.var(0) + 1e-8)).view(b, t, n_levels, d)
    order = perm(b)
    half = b // 2
    joint, other = z[order[:half]], z[order[half: 2 * half]]
    product = torch.stack([other[perm(half)][:, perm(t), lv] for lv in range(n_levels)], dim=2)
    return joint.reshape(half * t, n_levels * d), product.reshape(half * t, n_levels * d), half


def independence_mmd(streams: Tensor, config: MMDConfig | None = None,
                     generator: torch.Generator | None = None) -> Tensor:
    """The statistic: squared MMD between the joint of ``streams (B, T, L, D)``'s levels and the product
    of their marginals (a 0-d tensor, differentiable with respect to ``streams``)."""
    cfg = config or MMDConfig()
    if streams.dim() != 4 or streams.shape[2] < 2:
        raise ValueError(f"expected streams (B, T, L >= 2, D), got shape {tuple(streams.shape)}")
    if cfg.delay:
        streams = align_delays(streams)
    joint, product, clips = joint_and_product(streams, max_samples=cfg.max_samples, generator=generator)
    return mmd_squared(joint, product, cfg.bandwidths, clips_x=clips, clips_y=clips)
