"""Vector quantization with an EMA codebook, k-means init, dead-code restart and low-dim (factorised) codes.

The codebook BandTok shares across Mel bands, and each level of :class:`~musictok.quantize.rvq.ResidualVQ`.

Method, per training step on inputs ``x (..., D)``:

1. project to code space ``z = W_in x`` (``(..., d)``; identity unless ``codebook_dim`` is set);
   with ``cosine=True`` both ``z`` and the codewords are L2-normalised, so nearest = most similar;
2. on the first training batch, set the codebook by k-means on ``z`` (k-means++ seeds, then a few
   Lloyd iterations); :meth:`VectorQuantizer.init_from_data` does the same from any set of inputs
   (the residual VQ gathers many batches for it), and with ``pca_init`` first sets ``W_in`` to the top
   ``d`` principal directions of the inputs and ``W_out`` to its inverse map;
3. code = nearest codeword; output ``W_out (z + sg(e - z))``: the value of the codeword with the
   gradient of the input (straight-through), plus a commitment loss ``beta ||z - sg(e)||^2``.
   ``lookup="l2norm"`` (DAC, after Improved VQGAN) picks the codeword most similar in *direction*
   (L2-normalised ``z`` against L2-normalised codewords) but passes on the codeword itself, not its
   unit-norm version, so a level's output keeps a magnitude and the residual can shrink. ``cosine=True``
   instead outputs the unit-norm codeword: a level's output then has a fixed norm, which a residual
   quantizer cannot use (``tokenizers/rvq_codec.py`` has the measurement);
4. codebook update, after quantizing with the current codebook: with ``use_ema`` an exponential moving
   average of per-code counts ``N_k`` and sums ``m_k`` (van den Oord et al., 2017), ``e_k = m_k / N~_k``
   with Laplace-smoothed counts ``N~_k = (N_k + eps) / (n + K eps) n``; otherwise ``e`` is a parameter
   trained by a codebook loss ``||sg(z) - e||^2``;
5. codes unused for ``dead_after_steps`` steps, or with EMA count below ``threshold_dead``, are
   re-seeded from random encoder outputs of the batch, so the codebook never wastes entries.

Under ``torch.distributed`` the counts and sums (EMA and k-means) are summed over ranks and random
picks (k-means seeds, restarts) come from rank 0, so every rank holds the same codebook. Eval-mode
quantization is deterministic and batch-invariant (see :func:`~musictok.quantize.base.blockwise`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrizations, parametrize

from musictok.quantize.base import (
    QuantizedResult,
    Quantizer,
    all_reduce_sum_,
    blockwise,
    broadcast_,
    code_stats,
    is_distributed,
    masked_mse,
    nearest_code,
)

__all__ = ["VQConfig", "VectorQuantizer"]

LOOKUPS = ("euclidean", "l2norm")

# k-means++ seeding is sequential in the number of codes; a random subset this large is plenty to seed
# from (the Lloyd iterations that follow use the whole batch).
_KMEANS_SEED_ROWS = 16384


@dataclass
class VQConfig:
    """Options of :class:`VectorQuantizer`; each is orthogonal to the others."""

    dim: int  # D, size of the input vectors (channels-last)
    codebook_size: int = 1024  # K
    codebook_dim: int | None = None  # d; low-dim codes with Linear projections when != dim
    use_ema: bool = True  # EMA codebook updates; False = learned by gradient with a codebook loss
    decay: float = 0.99  # EMA decay of counts and sums
    eps: float = 1e-5  # Laplace smoothing of EMA cluster sizes
    commitment_weight: float = 0.25  # beta
    codebook_weight: float = 1.0  # weight of ||sg(z) - e||^2 when use_ema is False
    kmeans_init: bool = True  # seed the codebook from the first training batch
    kmeans_iters: int = 10  # Lloyd iterations of that init
    dead_after_steps: int = 100  # restart codes unused for this many training steps (0: never)
    threshold_dead: float = 0.0  # restart codes whose EMA cluster size is below this (0: never)
    cosine: bool = False  # L2-normalise inputs and codewords (cosine-similarity codebook, unit-norm output)
    lookup: str = "euclidean"  # "l2norm": nearest by direction, the raw codeword passed on (DAC)
    weight_norm: bool = False  # weight-normalised W_in / W_out (DAC's 1x1 WNConv1d projections)
    pca_init: bool = False  # data init also sets W_in / W_out from the inputs' principal directions
    seed: int = 0  # codebook init, k-means seeds and restart picks

    def __post_init__(self) -> None:
        if self.dim < 1 or self.codebook_size < 1:
            raise ValueError(f"dim and codebook_size must be >= 1, got {self.dim}, {self.codebook_size}")
        if self.codebook_dim is not None and self.codebook_dim < 1:
            raise ValueError(f"codebook_dim must be None or >= 1, got {self.codebook_dim}")
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {self.decay}")
        if self.eps <= 0 or self.kmeans_iters < 0 or self.dead_after_steps < 0 or self.threshold_dead < 0:
            raise ValueError("eps must be > 0 and kmeans_iters, dead_after_steps, threshold_dead >= 0")
        if self.lookup not in LOOKUPS:
            raise ValueError(f"lookup must be one of {LOOKUPS}, got {self.lookup!r}")
        if self.cosine and self.lookup != "euclidean":
            raise ValueError("cosine=True already normalises the codewords it outputs; use it or "
                             "lookup='l2norm' (normalised only for the look-up), not both")
        low_dim = self.codebook_dim is not None and self.codebook_dim != self.dim
        if (self.pca_init or self.weight_norm) and not low_dim:
            raise ValueError("pca_init and weight_norm act on the projections of low-dim codes: set "
                             f"codebook_dim below dim ({self.dim})")
        if self.pca_init and self.codebook_dim > self.dim:
            raise ValueError(f"pca_init needs codebook_dim <= dim, got {self.codebook_dim} > {self.dim}")


def _set_linear(layer: nn.Module, weight: Tensor, bias: Tensor) -> None:
    """Set an ``nn.Linear``'s weight and bias in place, through its weight-norm parametrization if any
    (assigning the weight then stores the matching ``g`` and ``v``)."""
    if parametrize.is_parametrized(layer, "weight"):
        layer.weight = weight.contiguous()
    else:
        layer.weight.copy_(weight)
    layer.bias.copy_(bias)


class VectorQuantizer(Quantizer):
    """Nearest-codeword quantizer of ``(..., D)`` vectors (channels-last, any leading dims).

    Buffers: ``embed`` ``(K, d)`` (a parameter when ``use_ema=False``), ``cluster_size`` ``(K,)`` EMA
    counts, ``embed_avg`` ``(K, d)`` EMA sums, ``initted`` (k-means done), ``steps_unused`` ``(K,)``,
    ``step`` (training steps seen; seeds the restart picks so a resumed run repeats them).
    """

    embed: Tensor
    cluster_size: Tensor
    embed_avg: Tensor
    initted: Tensor
    steps_unused: Tensor
    step: Tensor

    def __init__(self, config: VQConfig) -> None:
        super().__init__()
        self.config = config
        self.dim = config.dim
        self.codebook_size = config.codebook_size
        self.code_dim = config.codebook_dim or config.dim
        low_dim = self.code_dim != self.dim
        self.project_in: nn.Module = nn.Linear(self.dim, self.code_dim) if low_dim else nn.Identity()
        self.project_out: nn.Module = nn.Linear(self.code_dim, self.dim) if low_dim else nn.Identity()
        if config.weight_norm:
            self.project_in = parametrizations.weight_norm(self.project_in)
            self.project_out = parametrizations.weight_norm(self.project_out)

        # Random start so the module quantizes sensibly even before (or without) k-means.
        generator = torch.Generator().manual_seed(config.seed)
        embed = torch.randn(config.codebook_size, self.code_dim, generator=generator)
        if config.cosine:
            embed = F.normalize(embed, dim=-1)
        if config.use_ema:
            self.register_buffer("embed", embed)
        else:
            self.embed = nn.Parameter(embed)
        # Counts start at 1 with sums = codewords, so embed == embed_avg / cluster_size from step 0:
        # an unused code then keeps its position instead of being divided by a near-zero count.
        self.register_buffer("cluster_size", torch.ones(config.codebook_size))
        self.register_buffer("embed_avg", embed.clone())
        self.register_buffer("initted", torch.tensor(not config.kmeans_init))
        self.register_buffer("steps_unused", torch.zeros(config.codebook_size, dtype=torch.long))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    # ---------------------------------------------------------------- public interface

    @property
    def codebook(self) -> Tensor:
        """Codewords in code space, ``(K, d)``: the values passed on (unit-norm when ``cosine``; raw with the
        ``l2norm`` look-up, which normalises them only to choose)."""
        return F.normalize(self.embed, dim=-1) if self.config.cosine else self.embed

    def forward(self, x: Tensor, mask: Tensor | None = None) -> QuantizedResult:
        """Quantize ``x (..., D)``; in training mode also init / update / restart the codebook.

        ``mask`` (``x.shape[:-1]``, bool) marks the vectors that count: only they enter the losses,
        the statistics and the codebook updates (residual quantizer dropout uses it). All vectors are
        quantized. Returns ``z_q (..., D)``, ``codes (...)``, losses ``commitment`` and ``codebook``
        (zero with EMA), stats ``perplexity`` and ``utilization`` of the batch.
        """
        lead = self._check_input(x)
        active = self._flat_mask(mask, lead)
        if self.training and not bool(self.initted):
            self.init_from_data(self._select(x.detach().reshape(-1, self.dim), active))
        z = self._to_code_space(x).reshape(-1, self.code_dim)

        codes = self._nearest(z, self.codebook)
        chosen = self.codebook[codes]  # (N, d); carries the gradient to `embed` when it is a parameter
        losses = {
            "commitment": self.config.commitment_weight * masked_mse(z, chosen.detach(), active),
            "codebook": (
                self.config.codebook_weight * masked_mse(z.detach(), chosen, active)
                if not self.config.use_ema
                else z.new_zeros(())
            ),
        }
        stats = code_stats(self._select(codes, active), self.codebook_size)
        if self.training:
            self._update(self._select(z.detach().float(), active), self._select(codes, active))

        z_q = z + (chosen - z).detach()  # straight-through: codeword value, identity gradient
        z_q = self._project_out(z_q).reshape(*lead, self.dim)
        return QuantizedResult(z_q=z_q, codes=codes.reshape(lead), losses=losses, stats=stats)

    def encode(self, x: Tensor) -> Tensor:
        """``(..., D)`` -> codes ``(...)`` long. Pure: no codebook change in any mode."""
        lead = self._check_input(x)
        with torch.no_grad():
            z = self._to_code_space(x).reshape(-1, self.code_dim)
            return self._nearest(z, self.codebook).reshape(lead)

    def lookup_vectors(self, x: Tensor) -> Tensor:
        """``(..., D)`` -> ``(..., d)``: what the look-up compares with the codewords (``W_in x``, L2-normalised
        under ``cosine`` or ``l2norm``), differentiable in ``x`` only — the projection's weights are
        detached, so a loss on these vectors (the MMD) moves the encoder, not the look-up."""
        lead = self._check_input(x)
        flat = x.reshape(-1, self.dim)
        if not isinstance(self.project_in, nn.Identity):
            weight, bias = self.project_in.weight.detach(), self.project_in.bias.detach()
            flat = blockwise(lambda rows: F.linear(rows, weight, bias), flat)
        if self.config.cosine or self.config.lookup == "l2norm":
            flat = F.normalize(flat, dim=-1)
        return flat.reshape(*lead, self.code_dim)

    @torch.no_grad()
    def init_from_data(self, x: Tensor) -> None:
        """Data-dependent init from inputs ``x (..., D)``: projections by PCA (``pca_init``), then the
        codebook by k-means in code space; marks the quantizer initialised. No-op on an empty ``x``
        outside ``torch.distributed`` (the next batch tries again)."""
        flat = x.detach().reshape(-1, self.dim).float()
        if flat.shape[0] == 0 and not is_distributed():
            return
        if self.config.pca_init:
            self._pca_projections(flat)
        self._kmeans_init(self._to_code_space(flat))

    def decode(self, codes: Tensor) -> Tensor:
        """codes ``(...)`` -> ``(..., D)``: codewords projected back up (the value of ``z_q``)."""
        vectors = self.codebook[self._checked_codes(codes).reshape(-1)]
        return self._project_out(vectors).reshape(*codes.shape, self.dim)

    def lookup_codewords(self, codes: Tensor) -> Tensor:
        """codes ``(...)`` -> ``(..., d)``: the codewords as the look-up compares them (L2-normalised under
        ``cosine`` or ``l2norm``), i.e. the code-space counterpart of :meth:`lookup_vectors` — the features
        in which a dependence between levels of factorised codes is measured (their projections back up to
        ``D`` dims put every pair of samples so far apart that fixed-width kernels see nothing)."""
        vectors = self.codebook[self._checked_codes(codes)]
        return F.normalize(vectors, dim=-1) if self.config.cosine or self.config.lookup == "l2norm" else vectors

    def _checked_codes(self, codes: Tensor) -> Tensor:
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise ValueError(f"codes must be an integer tensor, got {codes.dtype}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(
                f"codes must lie in [0, {self.codebook_size}), got [{int(codes.min())}, {int(codes.max())}]"
            )
        return codes.long()

    # ---------------------------------------------------------------- helpers

    def _check_input(self, x: Tensor) -> torch.Size:
        if x.dim() < 1 or x.shape[-1] != self.dim:
            raise ValueError(
                f"expected channels-last input (..., {self.dim}), got shape {tuple(x.shape)}; "
                "move the feature axis last (e.g. x.transpose(1, 2) for (B, D, T))"
            )
        return x.shape[:-1]

    def _nearest(self, z: Tensor, codebook: Tensor) -> Tensor:
        """Codes of ``z (N, d)`` against ``codebook (K, d)``: squared L2, or by direction (``l2norm``)."""
        if self.config.lookup == "l2norm":
            unit = F.normalize(codebook.detach().float(), dim=-1)
            return nearest_code(F.normalize(z.detach().float(), dim=-1), unit)
        return nearest_code(z, codebook)

    def _to_code_space(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, self.dim)
        z = flat if isinstance(self.project_in, nn.Identity) else blockwise(self.project_in, flat)
        return F.normalize(z, dim=-1) if self.config.cosine else z

    def _project_out(self, z: Tensor) -> Tensor:
        if isinstance(self.project_out, nn.Identity):
            return z
        return blockwise(self.project_out, z.reshape(-1, self.code_dim))

    @staticmethod
    def _flat_mask(mask: Tensor | None, lead: torch.Size) -> Tensor | None:
        if mask is None:
            return None
        if mask.shape != lead:
            raise ValueError(f"mask must have the leading shape {tuple(lead)}, got {tuple(mask.shape)}")
        return mask.reshape(-1).bool()

    @staticmethod
    def _select(rows: Tensor, active: Tensor | None) -> Tensor:
        return rows if active is None else rows[active]

    def _generator(self, salt: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.config.seed * 1_000_003 + salt)

    def _from_rank0(self, draw: Callable[[], Tensor], shape: tuple[int, int], device: torch.device) -> Tensor:
        """``draw()`` on rank 0 (or alone), copied to every rank, so all ranks share one codebook."""
        if is_distributed() and dist.get_rank() != 0:
            picked = torch.zeros(shape, device=device)
        else:
            picked = draw().float().to(device).contiguous()
        assert picked.shape == shape
        return broadcast_(picked)

    def _random_rows(self, z: Tensor, count: int, salt: int) -> Tensor:
        """``count`` rows of ``z (n, d)`` picked uniformly (without replacement when ``n >= count``)."""

        def draw() -> Tensor:
            if z.shape[0] == 0:  # no data on this rank: keep the current codewords
                return self.codebook.detach()[:count].clone()
            generator = self._generator(salt)
            if z.shape[0] >= count:
                index = torch.randperm(z.shape[0], generator=generator)[:count]
            else:
                index = torch.randint(0, z.shape[0], (count,), generator=generator)
            return z[index.to(z.device)]

        return self._from_rank0(draw, (count, self.code_dim), z.device)

    def _kmeans_plus_plus(self, z: Tensor) -> Tensor:
        """k-means++ seeds (Arthur & Vassilvitskii, 2007): each next seed is drawn with probability
        proportional to its squared distance to the seeds so far, so separated clusters each get one
        (plain random seeds often put two in one cluster and none in another, which Lloyd cannot fix).
        Runs on the CPU over at most ``_KMEANS_SEED_ROWS`` random rows. With the ``l2norm`` look-up the
        distances are between directions, and the seeds are the rows themselves (with their norms)."""
        size = self.codebook_size
        if z.shape[0] == 0:
            return self.codebook.detach()[:size].clone()
        generator = self._generator(0)
        rows = z.detach().float().cpu()
        if rows.shape[0] > _KMEANS_SEED_ROWS:
            rows = rows[torch.randperm(rows.shape[0], generator=generator)[:_KMEANS_SEED_ROWS]]
        points = F.normalize(rows, dim=-1) if self.config.lookup == "l2norm" else rows
        first = int(torch.randint(0, rows.shape[0], (1,), generator=generator))
        picked = [first]
        dist2 = (points - points[first]).pow(2).sum(1)
        for _ in range(1, size):
            total = float(dist2.sum())
            if total > 0:
                index = int(torch.multinomial(dist2 / total, 1, generator=generator))
            else:  # fewer distinct rows than codes: duplicates are unavoidable
                index = int(torch.randint(0, rows.shape[0], (1,), generator=generator))
            picked.append(index)
            dist2 = torch.minimum(dist2, (points - points[index]).pow(2).sum(1))
        return rows[torch.tensor(picked)]

    @torch.no_grad()
    def _pca_projections(self, x: Tensor) -> None:
        """``W_in`` = the top ``d`` principal directions of ``x (n, D)`` (centred by ``b_in = -W_in mean``),
        ``W_out = W_in^T``, ``b_out = mean``: ``W_out W_in`` is then the orthogonal projection onto the
        principal subspace around the mean, so ``x - out(in(x))`` is never longer than ``x - mean`` and a
        fresh level removes the most variance ``d`` dimensions can. Random projections (DAC's start) add a
        rank-``d`` map of the residual in an unrelated direction instead, which lengthens it until training
        aligns the two."""
        count = all_reduce_sum_(torch.tensor(float(x.shape[0]), device=x.device))
        if float(count) < 2:
            return
        mean = all_reduce_sum_(x.sum(0)) / count
        centred = x - mean
        cov = all_reduce_sum_(centred.t() @ centred) / (count - 1)
        _, vectors = torch.linalg.eigh(cov.double())  # ascending eigenvalues
        basis = vectors[:, -self.code_dim:].flip(-1).float()  # (D, d), strongest first
        _set_linear(self.project_in, basis.t(), -(basis.t() @ mean))
        _set_linear(self.project_out, basis, mean)

    @torch.no_grad()
    def _kmeans_init(self, z: Tensor) -> None:
        """k-means++ seeds, then a few Lloyd iterations on this batch's code-space vectors ``(n, d)``."""
        if z.shape[0] == 0 and not is_distributed():
            return  # nothing to learn from; try again on the next batch
        z = z.float()
        size = self.codebook_size
        centroids = self._from_rank0(lambda: self._kmeans_plus_plus(z), (size, self.code_dim), z.device)
        counts = torch.zeros(size, device=z.device)
        for _ in range(max(self.config.kmeans_iters, 1)):
            assign = self._nearest(z, centroids)  # l2norm: clusters by direction, centroids keep the mean norm
            counts = all_reduce_sum_(torch.bincount(assign, minlength=size).float())
            sums = all_reduce_sum_(torch.zeros_like(centroids).index_add_(0, assign, z))
            means = sums / counts.clamp_min(1.0).unsqueeze(1)
            if self.config.cosine:
                means = F.normalize(means, dim=-1)
            centroids = torch.where((counts > 0).unsqueeze(1), means, centroids)
        # Counts are per-batch usage, the same unit as the EMA counts; empty clusters count as 1 so
        # that embed == embed_avg / cluster_size holds for them too.
        sizes = counts.clamp_min(1.0)
        self.embed.data.copy_(centroids)
        self.cluster_size.copy_(sizes)
        self.embed_avg.copy_(centroids * sizes.unsqueeze(1))
        self.steps_unused.zero_()
        self.initted.fill_(True)

    @torch.no_grad()
    def _update(self, z: Tensor, codes: Tensor) -> None:
        """EMA statistics, codebook (when ``use_ema``) and dead-code restarts from ``z (n, d)``."""
        c = self.config
        counts = all_reduce_sum_(torch.bincount(codes, minlength=self.codebook_size).float())
        if float(counts.sum()) == 0.0:
            return  # no active vector on any rank: nothing was observed, so nothing ages
        sums = all_reduce_sum_(torch.zeros_like(self.embed_avg).index_add_(0, codes, z))
        self.step.add_(1)
        self.steps_unused.add_(1).masked_fill_(counts > 0, 0)
        self.cluster_size.mul_(c.decay).add_(counts, alpha=1.0 - c.decay)
        if c.use_ema:
            self.embed_avg.mul_(c.decay).add_(sums, alpha=1.0 - c.decay)
            total = self.cluster_size.sum()
            smoothed = (self.cluster_size + c.eps) / (total + self.codebook_size * c.eps) * total
            embed = self.embed_avg / smoothed.unsqueeze(1)
            self.embed.copy_(F.normalize(embed, dim=-1) if c.cosine else embed)
        self._restart_dead(z)

    @torch.no_grad()
    def _restart_dead(self, z: Tensor) -> None:
        c = self.config
        dead = torch.zeros_like(self.steps_unused, dtype=torch.bool)
        if c.dead_after_steps > 0:
            dead |= self.steps_unused >= c.dead_after_steps
        if c.threshold_dead > 0:
            dead |= self.cluster_size < c.threshold_dead
        n_dead = int(dead.sum())  # identical on every rank: the statistics were all-reduced
        if n_dead == 0:
            return
        samples = self._random_rows(z, n_dead, salt=int(self.step))
        if c.cosine:
            samples = F.normalize(samples, dim=-1)
        # A restarted code counts as one vector seen (at least the threshold), so it is not restarted at once.
        reset = max(c.threshold_dead, 1.0)
        self.embed.data[dead] = samples.to(self.embed.dtype)
        self.embed_avg[dead] = samples * reset
        self.cluster_size[dead] = reset
        self.steps_unused[dead] = 0
