"""SimVQ: a frozen random codebook made learnable through one shared linear map.

Zhu et al. (2024) observe that a plain gradient-trained codebook collapses because each step only
moves the few codewords that were selected. SimVQ keeps a random basis ``C (K, D)`` frozen and learns
a linear map ``W``: the codebook is ``C W``, so every step updates the *whole* codebook through ``W``
and all codes stay reachable. DuoTok uses it for its dual-track quantizers.

Training: nearest codeword in ``C W``; straight-through output; commitment loss
``beta ||z - sg(q)||^2`` plus codebook loss ``||sg(z) - q||^2`` (which is what trains ``W``).
No EMA, no k-means, no restarts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from musictok.quantize.base import QuantizedResult, Quantizer, code_stats, masked_mse, nearest_code

__all__ = ["SimVQ", "SimVQConfig"]


@dataclass
class SimVQConfig:
    """Options of :class:`SimVQ`."""

    dim: int  # D, size of the input vectors (channels-last)
    codebook_size: int = 1024  # K
    commitment_weight: float = 0.25  # beta, pulls the encoder towards its codewords
    codebook_weight: float = 1.0  # pulls the codewords (through W) towards the encoder
    codebook_std: float | None = None  # std of the frozen basis; None = D ** -0.5 (unit-norm rows)
    seed: int = 0  # the frozen basis

    def __post_init__(self) -> None:
        if self.dim < 1 or self.codebook_size < 1:
            raise ValueError(f"dim and codebook_size must be >= 1, got {self.dim}, {self.codebook_size}")
        if self.codebook_std is not None and self.codebook_std <= 0:
            raise ValueError(f"codebook_std must be > 0, got {self.codebook_std}")


class SimVQ(Quantizer):
    """Quantizer of ``(..., D)`` vectors with codebook ``basis @ W^T`` (``basis`` frozen buffer).

    ``W`` (``self.transform``, no bias) starts as the identity, so the initial codebook is the random
    basis itself and training only ever has to learn a change of basis.
    """

    basis: Tensor
    derived_buffers = ("basis",)  # rebuilt from config.seed by the constructor: saved checkpoints leave it out

    def __init__(self, config: SimVQConfig) -> None:
        super().__init__()
        self.config = config
        self.dim = config.dim
        self.codebook_size = config.codebook_size
        std = config.codebook_std if config.codebook_std is not None else config.dim**-0.5
        generator = torch.Generator().manual_seed(config.seed)
        # A buffer, not a parameter: saved with the model (the codes depend on it), never optimized.
        basis = torch.randn(config.codebook_size, config.dim, generator=generator) * std
        self.register_buffer("basis", basis)
        self.transform = nn.Linear(config.dim, config.dim, bias=False)
        with torch.no_grad():
            self.transform.weight.copy_(torch.eye(config.dim))

    @property
    def codebook(self) -> Tensor:
        """Effective codewords ``(K, D)``, differentiable w.r.t. ``W``."""
        return self.transform(self.basis)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> QuantizedResult:
        """Quantize ``x (..., D)``; ``mask`` (``x.shape[:-1]``) limits losses and stats to some vectors.

        Returns ``z_q (..., D)`` (straight-through), ``codes (...)``, losses ``commitment`` and
        ``codebook``, stats ``perplexity`` and ``utilization``.
        """
        lead = self._check_input(x)
        z = x.reshape(-1, self.dim)
        active = None
        if mask is not None:
            if mask.shape != lead:
                raise ValueError(f"mask must have shape {tuple(lead)}, got {tuple(mask.shape)}")
            active = mask.reshape(-1).bool()
        codebook = self.codebook
        codes = nearest_code(z, codebook)
        chosen = codebook[codes]
        losses = {
            "commitment": self.config.commitment_weight * masked_mse(z, chosen.detach(), active),
            "codebook": self.config.codebook_weight * masked_mse(z.detach(), chosen, active),
        }
        stats = code_stats(codes if active is None else codes[active], self.codebook_size)
        z_q = (z + (chosen - z).detach()).reshape(*lead, self.dim)
        return QuantizedResult(z_q=z_q, codes=codes.reshape(lead), losses=losses, stats=stats)

    def encode(self, x: Tensor) -> Tensor:
        """``(..., D)`` -> codes ``(...)`` long."""
        lead = self._check_input(x)
        with torch.no_grad():
            return nearest_code(x.reshape(-1, self.dim), self.codebook).reshape(lead)

    def decode(self, codes: Tensor) -> Tensor:
        """codes ``(...)`` -> codewords ``(..., D)``."""
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise ValueError(f"codes must be an integer tensor, got {codes.dtype}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(
                f"codes must lie in [0, {self.codebook_size}), got [{int(codes.min())}, {int(codes.max())}]"
            )
        return self.codebook[codes.long()]

    def _check_input(self, x: Tensor) -> torch.Size:
        if x.dim() < 1 or x.shape[-1] != self.dim:
            raise ValueError(
                f"expected channels-last input (..., {self.dim}), got shape {tuple(x.shape)}; "
                "move the feature axis last"
            )
        return x.shape[:-1]
