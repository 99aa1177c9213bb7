"""What every quantizer returns and the few operations they all share.

Convention for every quantizer in this package: vectors are **channels-last**, ``(..., D)`` with any
number of leading dims (a ``(B, D, T)`` encoder output is transposed by the caller); codes are
``(...)`` long (``(..., L)`` for residual quantizers).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "QuantizedResult",
    "Quantizer",
    "all_reduce_sum_",
    "blockwise",
    "broadcast_",
    "is_distributed",
    "code_stats",
    "masked_mse",
    "nearest_code",
]

# Rows per block in `blockwise`. Kernels choose their summation order from the matrix shape (and MKL
# even from memory alignment), so a vector's distances to the codewords could change in the last bit
# with the batch it travels in and flip a near-tie. Padding every block to this fixed shape in fresh
# memory removes that dependence.
_BLOCK_ROWS = 1024


@dataclass
class QuantizedResult:
    """Output of a quantizer's ``forward``.

    Attributes:
        z_q: ``(..., D)`` quantized vectors with straight-through gradients (value of the codewords,
            gradient of the input).
        codes: ``(...)`` long indices, ``(..., L)`` for residual quantizers.
        losses: already-weighted training losses (``"commitment"``, ``"codebook"``); add ``loss`` to
            the model's objective.
        stats: detached diagnostics of this batch (``"perplexity"``, ``"utilization"``; per level
            ``(L,)`` for residual quantizers).
        levels: residual quantizers only, ``(..., L, D)`` each level's quantized vector (straight-
            through), so ``z_q == levels.sum(-2)``; the MMD independence loss reads these streams.
    """

    z_q: Tensor
    codes: Tensor
    losses: dict[str, Tensor] = field(default_factory=dict)
    stats: dict[str, Tensor] = field(default_factory=dict)
    levels: Tensor | None = None

    @property
    def loss(self) -> Tensor:
        """Sum of ``losses`` (a zero scalar on ``z_q``'s device if there are none)."""
        total = torch.zeros((), device=self.z_q.device)
        for value in self.losses.values():
            total = total + value
        return total


class Quantizer(nn.Module, abc.ABC):
    """Contract shared by :class:`VectorQuantizer`, :class:`SimVQ` and :class:`ResidualVQ`."""

    dim: int
    codebook_size: int

    @abc.abstractmethod
    def forward(self, x: Tensor) -> QuantizedResult:
        """``(..., D)`` -> :class:`QuantizedResult`; updates codebook statistics in training mode."""

    @abc.abstractmethod
    def encode(self, x: Tensor) -> Tensor:
        """``(..., D)`` -> codes; never changes the module."""

    @abc.abstractmethod
    def decode(self, codes: Tensor) -> Tensor:
        """codes -> ``(..., D)`` vectors, the inverse of :meth:`encode` up to quantization."""


def blockwise(fn: Callable[[Tensor], Tensor], rows: Tensor) -> Tensor:
    """Apply a row-wise ``fn`` to ``(N, ...)`` in fixed-shape blocks: ``fn(block (_BLOCK_ROWS, ...))``.

    Each block is copied into a fresh tensor and zero-padded to ``_BLOCK_ROWS`` rows, so every row
    meets the same kernel, shape and memory alignment whatever the batch size and its position in
    it; this makes matrix products (codeword distances, projections) batch-invariant bit for bit.
    Differentiable.
    """
    if rows.shape[0] == 0:
        return fn(rows)
    outputs = []
    for start in range(0, rows.shape[0], _BLOCK_ROWS):
        block = rows[start : start + _BLOCK_ROWS]
        used = block.shape[0]
        pad = block.new_zeros((_BLOCK_ROWS - used, *block.shape[1:]))
        outputs.append(fn(torch.cat([block, pad]))[:used])
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def nearest_code(z: Tensor, codebook: Tensor) -> Tensor:
    """Index of the nearest codeword (squared L2) for every row: ``(N, d), (K, d) -> (N,)`` long.

    ``argmin_k ||z - e_k||^2 = argmin_k (||e_k||^2 - 2 z.e_k)``; the ``||z||^2`` term is constant per
    row and dropped. Computed with :func:`blockwise`, so a row's code never depends on which other
    rows share the batch. Ties go to the lowest index. Not differentiable (codes are integers).
    """
    if z.dim() != 2 or codebook.dim() != 2 or z.shape[1] != codebook.shape[1]:
        raise ValueError(f"expected (N, d) and (K, d), got {tuple(z.shape)} and {tuple(codebook.shape)}")
    codebook = codebook.detach().float()
    codebook_t = codebook.t().contiguous()
    sq_norms = codebook.pow(2).sum(1)

    def closest(block: Tensor) -> Tensor:
        return (sq_norms - 2.0 * torch.mm(block, codebook_t)).argmin(dim=1)

    return blockwise(closest, z.detach().float())


def masked_mse(a: Tensor, b: Tensor, active: Tensor | None) -> Tensor:
    """Mean squared error over the rows of ``(N, d)`` where ``active`` (``(N,)`` bool) is set; 0 if none."""
    per_row = (a - b).pow(2).mean(dim=-1)
    if active is None:
        return per_row.mean() if per_row.numel() else per_row.sum()
    return (per_row * active).sum() / active.sum().clamp_min(1)


def code_stats(codes: Tensor, codebook_size: int) -> dict[str, Tensor]:
    """Batch code usage: ``perplexity`` = exp(entropy of the code histogram), in ``[1, K]``, and
    ``utilization`` = fraction of the ``K`` codes used at least once. Both detached float scalars."""
    counts = torch.bincount(codes.detach().reshape(-1), minlength=codebook_size).float()
    probs = counts / counts.sum().clamp_min(1.0)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum()
    return {"perplexity": entropy.exp(), "utilization": (counts > 0).float().mean()}


def is_distributed() -> bool:
    """True when running under an initialised process group with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum_(tensor: Tensor) -> Tensor:
    """In-place sum over ranks when ``torch.distributed`` is initialised; a no-op otherwise."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_(tensor: Tensor, src: int = 0) -> Tensor:
    """In-place copy of rank ``src``'s tensor to every rank; a no-op when not distributed."""
    if is_distributed():
        dist.broadcast(tensor, src=src)
    return tensor
