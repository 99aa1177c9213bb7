"""Residual vector quantization (SoundStream / EnCodec / DAC) with quantizer dropout.

Level ``i`` quantizes what the levels before it left over: ``r_1 = x``, ``q_i = VQ_i(r_i)``,
``r_{i+1} = r_i - q_i``, output ``sum_i q_i``. Codes are ``(..., L)``, coarse to fine; any prefix of
the levels decodes to a coarser approximation, which is what quantizer dropout trains for: a batch item
chosen for dropout uses only its first ``n ~ U{1..L}`` levels (DAC's per-item variant of SoundStream's
"quantizer dropout"), so one model serves every bitrate. ``dropout_mode="bernoulli"`` chooses each item
with probability ``quantizer_dropout``; ``"share"`` chooses exactly ``floor(quantizer_dropout · B)`` items
of the batch, as DAC does.

Codebooks start from data. By default each level runs k-means on its own first training batch (the
residuals the levels before it leave). With ``kmeans_vectors > 0`` the RVQ first gathers that many input
vectors over several training steps, passing its input through unquantized meanwhile (the encoder and
decoder train as an autoencoder for those steps), then initialises the levels in turn on the whole
buffer: level ``i`` on the residuals the initialised levels ``1..i-1`` leave. One batch of a CPU run holds
fewer vectors than a codebook has entries (8 clips × 23 frames = 184 for 1024 codes), so first-batch
k-means leaves most codewords duplicates and the deep levels a zero residual to start from.

The residual is *not* detached between levels (as in DAC): with straight-through levels,
``d(sum q_i)/dx`` is the identity, and the deeper levels' projections still receive gradient.
Every level's quantized stream is returned in ``QuantizedResult.levels``. Those straight-through levels
carry no gradient to ``x`` beyond level 1 (``x - q_1`` is a constant), so a loss on the levels
themselves, like the MMD independence loss, reads :meth:`ResidualVQ.residual_streams` instead: the
pre-quantisation residuals ``r_k = x - sum_{j<k} sg(q_j)``, each of which passes gradient to ``x``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F

from musictok.quantize.base import QuantizedResult, Quantizer, is_distributed
from musictok.quantize.vq import VectorQuantizer, VQConfig

__all__ = ["DROPOUT_MODES", "RVQConfig", "ResidualVQ"]

DROPOUT_MODES = ("bernoulli", "share")
_GATHERED = "kmeans_gathered"  # state-dict key of the k-means buffer, present only while it fills


@dataclass
class RVQConfig:
    """Options of :class:`ResidualVQ`. ``quantizer`` is shared by all levels; level ``i`` gets
    ``seed = quantizer.seed + i`` so the levels start differently. A dict is accepted (from JSON)."""

    quantizer: VQConfig
    num_quantizers: int = 8  # L
    quantizer_dropout: float = 0.0  # share of batch items that train on a random prefix of levels
    dropout_mode: str = "bernoulli"  # "bernoulli": each item with that probability; "share": floor(p B) items (DAC)
    kmeans_vectors: int = 0  # > 0: gather this many inputs over training steps, then k-means every level on them
    seed: int = 0  # dropout draws

    def __post_init__(self) -> None:
        if isinstance(self.quantizer, dict):
            self.quantizer = VQConfig(**self.quantizer)
        if self.num_quantizers < 1:
            raise ValueError(f"num_quantizers must be >= 1, got {self.num_quantizers}")
        if not 0.0 <= self.quantizer_dropout <= 1.0:
            raise ValueError(f"quantizer_dropout must be in [0, 1], got {self.quantizer_dropout}")
        if self.dropout_mode not in DROPOUT_MODES:
            raise ValueError(f"dropout_mode must be one of {DROPOUT_MODES}, got {self.dropout_mode!r}")
        if self.kmeans_vectors < 0:
            raise ValueError(f"kmeans_vectors must be >= 0, got {self.kmeans_vectors}")
        if self.kmeans_vectors and not self.quantizer.kmeans_init:
            raise ValueError("kmeans_vectors gathers data for the k-means init: it needs quantizer.kmeans_init")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RVQConfig:
        return cls(**data)


class ResidualVQ(Quantizer):
    """``L`` :class:`VectorQuantizer` levels on successive residuals of ``(..., D)`` vectors.

    With ``kmeans_vectors > 0`` the vectors gathered so far travel in the state dict under
    ``kmeans_gathered`` while the buffer fills (so a run resumed from a checkpoint initialises from the
    same vectors), and are absent from it afterwards (an exported model does not carry them).
    """

    step: Tensor

    def __init__(self, config: RVQConfig) -> None:
        super().__init__()
        self.config = config
        self.dim = config.quantizer.dim
        self.codebook_size = config.quantizer.codebook_size
        self.num_quantizers = config.num_quantizers
        self.layers = nn.ModuleList(
            VectorQuantizer(replace(config.quantizer, seed=config.quantizer.seed + i))
            for i in range(config.num_quantizers)
        )
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self._gathered: list[Tensor] = []  # (n_i, D) float32 chunks of the k-means buffer

    def forward(self, x: Tensor, n_quantizers: int | None = None) -> QuantizedResult:
        """Quantize ``x (..., D)`` with ``n_quantizers`` levels (default: all).

        Without ``n_quantizers``, in training mode with ``quantizer_dropout > 0``, each item along the
        first axis keeps a random prefix of levels; its dropped levels add nothing to ``z_q``, are zero
        in ``levels``, and are left out of losses and codebook updates (their codes are still
        computed). Returns ``z_q (..., D)``, ``codes (..., n)``, ``levels (..., n, D)``, losses
        summed over levels, stats ``perplexity`` / ``utilization`` per level ``(n,)`` and
        ``active_levels`` (mean number of levels used per item).
        """
        if x.dim() < 1 or x.shape[-1] != self.dim:
            raise ValueError(f"expected channels-last input (..., {self.dim}), got shape {tuple(x.shape)}")
        n_levels = self._check_levels(n_quantizers)
        if self.gathering:
            self._gather(x)
            if self.gathering:
                return self._pass_through(x, n_levels)
        keep = self._dropout_levels(x) if n_quantizers is None else None  # (B,) levels per item or None

        residual = x
        levels, codes = [], []
        losses: dict[str, Tensor] = {}
        perplexity, utilization = [], []
        for i, layer in enumerate(self.layers[:n_levels]):
            mask = None
            if keep is not None:
                mask = (keep > i).view(-1, *([1] * (x.dim() - 2))).expand(x.shape[:-1])
            result = layer(residual, mask=mask)
            q = result.z_q if mask is None else result.z_q * mask.unsqueeze(-1).to(result.z_q.dtype)
            residual = residual - q
            levels.append(q)
            codes.append(result.codes)
            for name, value in result.losses.items():
                losses[name] = losses[name] + value if name in losses else value
            perplexity.append(result.stats["perplexity"])
            utilization.append(result.stats["utilization"])

        stacked = torch.stack(levels, dim=-2)  # (..., n, D)
        active = keep.float().mean() if keep is not None else torch.tensor(float(n_levels))
        stats = {
            "perplexity": torch.stack(perplexity),
            "utilization": torch.stack(utilization),
            "active_levels": active.to(x.device),
        }
        return QuantizedResult(
            z_q=stacked.sum(dim=-2),
            codes=torch.stack(codes, dim=-1),
            losses=losses,
            stats=stats,
            levels=stacked,
        )

    @property
    def initialised(self) -> bool:
        """True once every level's codebook has been set from data (always, without ``kmeans_init``): before,
        codewords and projections are random and the codes say nothing about the input."""
        return all(bool(layer.initted) for layer in self.layers)

    @property
    def gathering(self) -> bool:
        """True while training vectors are being gathered for the k-means init (training mode only)."""
        return self.training and self.config.kmeans_vectors > 0 and not self.initialised

    def _gather(self, x: Tensor) -> None:
        """Add ``x``'s vectors to the k-means buffer; once it holds ``kmeans_vectors``, initialise every
        level on it (level ``i`` on the residuals of levels ``1..i-1``) and drop the buffer."""
        wanted = self.config.kmeans_vectors - sum(g.shape[0] for g in self._gathered)
        rows = x.detach().reshape(-1, self.dim).float()[:wanted]
        self._gathered.append(rows.clone())
        if rows.shape[0] < wanted:
            return
        residual = torch.cat(self._gathered)
        self._gathered = []
        with torch.no_grad():
            for layer in self.layers:
                layer.init_from_data(residual)
                residual = residual - layer.decode(layer.encode(residual))

    def _pass_through(self, x: Tensor, n_levels: int) -> QuantizedResult:
        """The result while the k-means buffer fills: ``z_q = x`` (all of it in level 1, the other levels
        zero), codes 0, zero losses; the stats say no codebook is in use yet."""
        levels = F.pad(x.unsqueeze(-2), (0, 0, 0, n_levels - 1))  # (..., n, D): x, then zeros
        zero = x.new_zeros(())
        return QuantizedResult(
            z_q=x,
            codes=torch.zeros(*x.shape[:-1], n_levels, dtype=torch.long, device=x.device),
            losses={"commitment": zero, "codebook": zero},
            stats={"perplexity": torch.ones(n_levels, device=x.device),
                   "utilization": torch.zeros(n_levels, device=x.device),
                   "active_levels": torch.tensor(0.0, device=x.device)},
            levels=levels,
        )

    def _save_to_state_dict(self, destination: dict[str, Tensor], prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self._gathered:
            destination[prefix + _GATHERED] = torch.cat(self._gathered)

    def _load_from_state_dict(self, state_dict: dict[str, Tensor], prefix: str, local_metadata: dict, strict: bool,
                              missing_keys: list[str], unexpected_keys: list[str], error_msgs: list[str]) -> None:
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        key = prefix + _GATHERED
        if key in unexpected_keys:
            unexpected_keys.remove(key)
        gathered = state_dict.get(key)
        self._gathered = [gathered.detach().float().clone()] if gathered is not None and gathered.numel() else []

    def residual_streams(self, x: Tensor, *, remainders: bool = False, lookup: bool = False) -> Tensor:
        """The pre-quantisation residual streams of ``x (..., D)``, ``(..., L, D)``, for the MMD loss.

        Stream ``k`` is ``r_k = x - sum_{j<k} sg(q_j)``, what level ``k`` quantizes (``r_1 = x``); with
        ``remainders=True`` it is ``x - sum_{j<=k} sg(q_j)``, the residual left *after* level ``k`` (what
        AudioCraft's ``get_streams_pre_quantization`` returns). The quantized vectors come from
        :meth:`encode` / :meth:`decode` — every level, no dropout, no codebook update — and are detached,
        so each stream's gradient with respect to ``x`` is the identity.

        ``lookup=True`` returns each ``r_k`` as level ``k``'s look-up sees it, ``(..., L, d)``
        (:meth:`VectorQuantizer.lookup_vectors`): with factorised codes the code of level ``k`` is a
        function of these ``d`` numbers, and an MMD over ``L · d`` features keeps its Gaussian kernels
        informative where ``L · D`` standardised features (2,048 for 8 × 256) put every pair of samples
        ``≈ 2 L D`` apart, far in the kernels' flat tails.
        """
        if x.dim() < 1 or x.shape[-1] != self.dim:
            raise ValueError(f"expected channels-last input (..., {self.dim}), got shape {tuple(x.shape)}")
        if lookup and remainders:
            raise ValueError("lookup streams are the levels' inputs; remainders are not looked up")
        with torch.no_grad():
            codes = self.encode(x.detach())
            quantized = torch.stack([layer.decode(codes[..., i]) for i, layer in enumerate(self.layers)], dim=-2)
            offsets = quantized.cumsum(dim=-2)
            if not remainders:
                offsets = torch.cat([torch.zeros_like(offsets[..., :1, :]), offsets[..., :-1, :]], dim=-2)
        streams = x.unsqueeze(-2) - offsets.to(x.dtype)
        if lookup:
            return torch.stack([layer.lookup_vectors(streams[..., k, :]) for k, layer in enumerate(self.layers)],
                               dim=-2)
        return streams

    def encode(self, x: Tensor, n_quantizers: int | None = None) -> Tensor:
        """``(..., D)`` -> codes ``(..., n)`` long, coarse to fine. Pure: no codebook change."""
        if x.dim() < 1 or x.shape[-1] != self.dim:
            raise ValueError(f"expected channels-last input (..., {self.dim}), got shape {tuple(x.shape)}")
        n_levels = self._check_levels(n_quantizers)
        codes = []
        with torch.no_grad():
            residual = x
            for layer in self.layers[:n_levels]:
                level_codes = layer.encode(residual)
                residual = residual - layer.decode(level_codes)
                codes.append(level_codes)
        return torch.stack(codes, dim=-1)

    def decode(self, codes: Tensor) -> Tensor:
        """codes ``(..., L')`` with ``1 <= L' <= L`` -> ``(..., D)``: the sum of the first ``L'`` levels."""
        if codes.dim() < 1 or not 1 <= codes.shape[-1] <= self.num_quantizers:
            raise ValueError(
                f"expected codes (..., L') with 1 <= L' <= {self.num_quantizers}, "
                f"got shape {tuple(codes.shape)}"
            )
        out = self.layers[0].decode(codes[..., 0])
        for i in range(1, codes.shape[-1]):
            out = out + self.layers[i].decode(codes[..., i])
        return out

    @property
    def codebooks(self) -> Tensor:
        """All levels' code-space codewords, ``(L, K, d)``."""
        return torch.stack([layer.codebook for layer in self.layers])

    def _check_levels(self, n_quantizers: int | None) -> int:
        if n_quantizers is None:
            return self.num_quantizers
        if not 1 <= n_quantizers <= self.num_quantizers:
            raise ValueError(f"n_quantizers must be in [1, {self.num_quantizers}], got {n_quantizers}")
        return n_quantizers

    def _dropout_levels(self, x: Tensor) -> Tensor | None:
        """Levels kept per item ``(B,)`` long on ``x``'s device, or None when every level is used."""
        if not self.training or self.config.quantizer_dropout == 0.0 or x.dim() < 2:
            return None
        self.step.add_(1)
        rank = dist.get_rank() if is_distributed() else 0
        salt = (self.config.seed * 1_000_003 + int(self.step)) * 1009 + rank  # distinct per step and rank
        generator = torch.Generator().manual_seed(salt)
        batch = x.shape[0]
        if self.config.dropout_mode == "share":
            dropped = torch.zeros(batch, dtype=torch.bool)
            share = int(self.config.quantizer_dropout * batch + 1e-9)  # DAC: int(B * p)
            dropped[torch.randperm(batch, generator=generator)[:share]] = True
        else:
            dropped = torch.rand(batch, generator=generator) < self.config.quantizer_dropout
        prefix = torch.randint(1, self.num_quantizers + 1, (batch,), generator=generator)
        keep = torch.where(dropped, prefix, torch.full_like(prefix, self.num_quantizers))
        return keep.to(x.device)
