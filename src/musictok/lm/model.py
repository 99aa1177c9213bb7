"""TokenLM: one decoder-only transformer for every tokenizer and sequence pattern.

The model reads the steps a :class:`~musictok.lm.patterns.SequencePattern` builds. A step's input is the
*sum* of the embeddings of its ``K`` input cells (one table per column, since a sum from one table could not
tell which column held which token), and ``K`` linear heads predict the step's ``K`` cells. In between sits a
plain pre-norm transformer in the LLaMA style:

- RMSNorm instead of LayerNorm, no biases anywhere: fewer parameters and no mean to track;
- SwiGLU MLP, hidden width ``8/3 * n_embd`` so it costs what a 4x GELU MLP costs;
- causal attention through ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels when the
  device has them);
- RoPE with positions from the pattern, not from the step index: in 1-D every rotary pair follows time; in
  2-D the first half of each head's pairs follows time and the second half follows band, so attention sees
  relative offsets in both (BandTok's grid);
- a KV cache for incremental decoding: ``forward(..., cache=cache)`` appends the new steps' keys and values.

Numerics: norms, RoPE, logits and the loss are computed in float32, so ``torch.autocast(dtype=bfloat16)``
may wrap the whole forward. Nothing here assumes a device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..settings import build_checked
from .head_loss import linear_cross_entropy
from .patterns import IGNORE_INDEX, LMVocab, SequencePattern
from .sampling import sample

__all__ = ["TOKEN_LM_PRESETS", "KVCache", "LMOutput", "TokenLM", "TokenLMConfig"]

ROPE_DIMS = {"1d": 1, "2d": 2}


@dataclass
class TokenLMConfig:
    """Size and options of a :class:`TokenLM`. ``mlp_hidden=None`` means ``8/3 * n_embd``, rounded up to 32."""

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    dropout: float = 0.0
    max_steps: int = 2048  # longest sequence (and default KV-cache capacity); RoPE itself has no limit
    rope: str = "1d"  # "1d" or "2d": must match the pattern's position_dims
    rope_base: float = 10000.0
    tie_embeddings: bool = False  # heads reuse the input tables (rows of the real ids)
    mlp_hidden: int | None = None

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_head", "n_embd", "max_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TokenLMConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.rope not in ROPE_DIMS:
            raise ValueError(f"TokenLMConfig.rope must be one of {sorted(ROPE_DIMS)}, got {self.rope!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        pairs_per_axis = 2 * ROPE_DIMS[self.rope]
        if self.head_dim % pairs_per_axis:
            raise ValueError(f"{self.rope} RoPE needs a head size divisible by {pairs_per_axis}, got "
                             f"{self.head_dim} (n_embd {self.n_embd} / n_head {self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.rope_base <= 1.0:
            raise ValueError(f"rope_base must be > 1, got {self.rope_base}")
        if self.mlp_hidden is not None and self.mlp_hidden < 1:
            raise ValueError(f"mlp_hidden must be >= 1 or None, got {self.mlp_hidden}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def hidden_dim(self) -> int:
        if self.mlp_hidden is not None:
            return self.mlp_hidden
        return 32 * math.ceil(8 * self.n_embd / 3 / 32)

    @classmethod
    def preset(cls, name: str, **overrides) -> TokenLMConfig:
        """``tiny`` (tests, seconds), ``small`` (CPU training) or ``base`` (GPU, paper scale), with overrides."""
        if name not in TOKEN_LM_PRESETS:
            raise ValueError(f"unknown TokenLM preset {name!r}; choose one of {sorted(TOKEN_LM_PRESETS)}")
        return cls(**(TOKEN_LM_PRESETS[name] | overrides))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TokenLMConfig:
        return build_checked(cls, d)


TOKEN_LM_PRESETS: dict[str, dict] = {
    "tiny": {"n_layer": 2, "n_head": 2, "n_embd": 64, "max_steps": 1024},  # ~0.1 M parameters + tables
    "small": {"n_layer": 6, "n_head": 8, "n_embd": 256, "max_steps": 2048},  # ~5 M: trains on a CPU
    "base": {"n_layer": 12, "n_head": 12, "n_embd": 768, "max_steps": 4096, "dropout": 0.1},  # ~85 M: GPU
}


@dataclass
class LMOutput:
    """What :meth:`TokenLM.forward` returns.

    Attributes:
        logits: ``(B, T, K, V)`` float32, ``V = max(vocab_sizes)``; ids beyond a column's vocabulary are
            ``-inf``, so softmax, sampling and cross-entropy ignore them.
        loss: mean cross-entropy (nats) over the targets that are not ``IGNORE_INDEX``; ``None`` without targets.
        per_token_nll: ``(B, T, K)`` float32 cross-entropy per target in nats, 0 where ignored; what every
            predictability metric is computed from (``pattern.revert_values`` maps it back to cells).
    """

    logits: Tensor | None
    loss: Tensor | None = None
    per_token_nll: Tensor | None = None


@dataclass
class KVCache:
    """Keys and values of the steps seen so far, per layer, for incremental decoding.

    Buffers ``(B, n_head, capacity, head_dim)`` are allocated on first use with the keys' dtype and device
    (so a cache filled under autocast holds bf16). ``length`` steps are filled; a forward with ``T`` new
    steps writes ``[length, length + T)`` in every layer and then advances ``length``.
    """

    capacity: int
    length: int = 0
    keys: list[Tensor] = field(default_factory=list, repr=False)
    values: list[Tensor] = field(default_factory=list, repr=False)

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store ``k, v (B, H, T, D)`` after the cached steps; return all keys and values so far."""
        end = self.length + k.shape[2]
        if layer == len(self.keys):  # first call of this layer: layers run in order
            shape = (k.shape[0], k.shape[1], self.capacity, k.shape[3])
            self.keys.append(k.new_empty(shape))
            self.values.append(v.new_empty(shape))
        assert layer < len(self.keys), "layers must fill the cache in order"
        self.keys[layer][:, :, self.length: end] = k
        self.values[layer][:, :, self.length: end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


# ------------------------------------------------------------------------------------------------ blocks
class RMSNorm(nn.Module):
    """``x / rms(x) * weight`` over the last axis, accumulated in float32 (bf16 squares lose precision).

    ``F.rms_norm`` upcasts to float32 inside one kernel: the numbers of upcasting by hand, in a third of
    the passes over the residual stream (it runs nine times per step of a 4-layer model)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype != self.weight.dtype:  # e.g. bf16 activations into a float32 model: upcast both first
            return F.rms_norm(x.float(), (x.shape[-1],), self.weight.float(), self.eps).to(x.dtype)
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def rope_angles(positions: Tensor, head_dim: int, base: float) -> Tensor:
    """Rotation angles ``(..., T, head_dim / 2)`` for positions ``(..., T, P)``, ``P`` = 1 or 2.

    With ``P = 2`` the first half of the rotary pairs turns with ``positions[..., 0]`` (time) and the
    second half with ``positions[..., 1]`` (band), each half with its own geometric frequency ladder.
    """
    dims = positions.shape[-1]
    pairs = head_dim // 2 // dims
    inv_freq = base ** (-torch.arange(pairs, device=positions.device, dtype=torch.float32) / pairs)
    pos = positions.float()
    return torch.cat([pos[..., a: a + 1] * inv_freq for a in range(dims)], dim=-1)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs ``(x[i], x[i + D/2])`` of ``x (B, H, T, D)`` by the angles behind ``cos, sin``."""
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


ATTENTION_BLOCK = 256  # rows per query block of PyTorch's CPU flash attention from 768 steps up (64 below)


def causal_padding(steps: int) -> int:
    """Steps to append to a causal attention of ``steps`` steps so its length is a whole number of
    ``ATTENTION_BLOCK`` s, when that adds at most 1/16 more: the bench's 4 s band-grid windows (752 steps)
    run forward + backward in bf16 1.5× faster padded to 768 on a CPU (measured, 2 threads). Exact: the
    padded steps come last, so no real step sees them, and their outputs are dropped."""
    pad = -steps % ATTENTION_BLOCK
    return pad if steps > ATTENTION_BLOCK and 16 * pad <= steps else 0


class CausalSelfAttention(nn.Module):
    def __init__(self, config: TokenLMConfig, layer: int) -> None:
        super().__init__()
        self.n_head, self.layer, self.dropout = config.n_head, layer, config.dropout
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.resid_drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache | None = None) -> Tensor:
        """``(B, T, C) -> (B, T, C)``; with a cache, the ``T`` new steps follow ``cache.length`` old ones."""
        B, T, C = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head)
        # q and k rotated in one call (a view of both, heads side by side): half the small kernels per step
        q, k = apply_rope(qkv[:, :, :2].flatten(2, 3).transpose(1, 2), cos, sin).split(self.n_head, dim=1)
        v = qkv[:, :, 2].transpose(1, 2)
        start = 0
        if cache is not None:
            start = cache.length
            k, v = cache.update(self.layer, k, v)
        drop = self.dropout if self.training else 0.0
        if start == 0:  # square and causal
            pad = causal_padding(T)  # steps appended after the last: causality keeps them out of every real step
            if pad:
                q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)[:, :, :T]
        elif T == 1:  # one new step may see every cached step
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        else:  # new step i sits at start + i; SDPA's is_causal would align the mask to the top-left instead
            allowed = (torch.arange(start + T, device=x.device)[None, :]
                       <= start + torch.arange(T, device=x.device)[:, None])
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=drop)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class SwiGLU(nn.Module):
    """``down(silu(gate(x)) * up(x))``: the gated MLP of PaLM / LLaMA."""

    def __init__(self, config: TokenLMConfig) -> None:
        super().__init__()
        self.gate = nn.Linear(config.n_embd, config.hidden_dim, bias=False)
        self.up = nn.Linear(config.n_embd, config.hidden_dim, bias=False)
        self.down = nn.Linear(config.hidden_dim, config.n_embd, bias=False)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.down(F.silu(self.gate(x)) * self.up(x)))


class Block(nn.Module):
    """Pre-norm residual block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(self, config: TokenLMConfig, layer: int) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.n_embd)
        self.attn = CausalSelfAttention(config, layer)
        self.mlp_norm = RMSNorm(config.n_embd)
        self.mlp = SwiGLU(config)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache | None = None) -> Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, cache)
        return x + self.mlp(self.mlp_norm(x))


# ------------------------------------------------------------------------------------------------ the model
class TokenLM(nn.Module):
    """Decoder-only transformer over pattern steps: ``inputs (B, T, K)`` -> logits ``(B, T, K, V)``.

    Args:
        config: sizes and options.
        vocab: the pattern's vocabulary (``pattern.vocab``): one head per column with ``vocab_sizes[k]``
            outputs, input tables with ``input_vocab_size`` rows (real ids, then ``pad_id``, ``bos_id``).

    When ``vocab.shared`` (one codebook behind every column, e.g. BandTok bands) the columns share one input
    table, and a learned per-column gain multiplies each column's embedding before the sum, so the sum still
    knows which band held which token. Otherwise each column has its own table.
    """

    def __init__(self, config: TokenLMConfig, vocab: LMVocab) -> None:
        super().__init__()
        self.config, self.vocab = config, vocab
        K, d = vocab.num_columns, config.n_embd
        self.embeddings = nn.ModuleList(nn.Embedding(vocab.input_vocab_size, d)
                                        for _ in range(1 if vocab.shared else K))
        gains = vocab.shared and K > 1
        self.column_gain = nn.Parameter(torch.ones(K, d)) if gains else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.norm = RMSNorm(d)
        self.heads = None
        self.head_gain = None
        if config.tie_embeddings:
            # A tied head reads the same rows as the inputs; with one shared table every column would
            # predict the same distribution, so tied shared heads get their own per-column gain.
            self.head_gain = nn.Parameter(torch.ones(K, d)) if gains else None
        else:
            self.heads = nn.ModuleList(nn.Linear(d, v, bias=False) for v in vocab.vocab_sizes)
        self.apply(self._init_weights)
        # GPT-2's scaled init: each block adds two residual branches, so shrink their output projections to
        # keep the residual stream's variance independent of depth.
        for name, p in self.named_parameters():
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    @classmethod
    def from_pattern(cls, config: TokenLMConfig, pattern: SequencePattern) -> TokenLM:
        """A model for ``pattern``'s vocabulary; checks its RoPE matches the pattern's positions."""
        if ROPE_DIMS[config.rope] != pattern.position_dims:
            want = {v: k for k, v in ROPE_DIMS.items()}[pattern.position_dims]
            raise ValueError(f"pattern {pattern.name!r} gives {pattern.position_dims}-D positions but the config "
                             f"uses rope={config.rope!r}; set rope={want!r}")
        return cls(config, pattern.vocab)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """Parameter groups for AdamW: decay matrices and tables, not norms and gains (nanoGPT's habit)."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 and not name.endswith("_gain") else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def new_cache(self, capacity: int | None = None) -> KVCache:
        """An empty KV cache for up to ``capacity`` steps (default ``config.max_steps``)."""
        capacity = self.config.max_steps if capacity is None else int(capacity)
        if not 1 <= capacity <= self.config.max_steps:
            raise ValueError(f"cache capacity must be in [1, max_steps={self.config.max_steps}], got {capacity}")
        return KVCache(capacity)

    # ---------------------------------------------------------------- forward
    def _check(self, inputs: Tensor, positions: Tensor, cache: KVCache | None) -> None:
        K = self.vocab.num_columns
        if inputs.ndim != 3 or inputs.shape[2] != K:
            raise ValueError(f"inputs must be (batch, steps, {K}) ids, got {tuple(inputs.shape)}")
        if inputs.dtype.is_floating_point:
            raise ValueError(f"inputs must be integer ids, got {inputs.dtype}")
        if inputs.numel() and (int(inputs.min()) < 0 or int(inputs.max()) >= self.vocab.input_vocab_size):
            raise ValueError(f"input ids must be in [0, {self.vocab.input_vocab_size}) (real ids, pad_id, bos_id); "
                             "build inputs with SequencePattern.build")
        dims = ROPE_DIMS[self.config.rope]
        T = inputs.shape[1]
        if positions.ndim not in (2, 3) or positions.shape[-2:] != (T, dims):
            raise ValueError(f"positions must be ({T}, {dims}) or (batch, {T}, {dims}) for rope={self.config.rope!r}, "
                             f"got {tuple(positions.shape)}")
        past = 0 if cache is None else cache.length
        if cache is not None and cache.keys and cache.keys[0].shape[0] != inputs.shape[0]:
            raise ValueError(f"the KV cache was filled for batch {cache.keys[0].shape[0]}, got {inputs.shape[0]}")
        if past + T > self.config.max_steps:
            raise ValueError(f"{past + T} steps exceed max_steps={self.config.max_steps}; use a shorter context "
                             "or raise TokenLMConfig.max_steps")
        if cache is not None and past + T > cache.capacity:
            raise ValueError(f"the KV cache holds {cache.capacity} steps, {past + T} needed; make a larger one")

    def embed(self, inputs: Tensor) -> Tensor:
        """``(B, T, K)`` ids -> ``(B, T, n_embd)``: the sum of the columns' embeddings."""
        if self.vocab.shared:
            e = self.embeddings[0](inputs)  # (B, T, K, d)
            if self.column_gain is not None:
                e = e * self.column_gain
            return e.sum(dim=2)
        return sum(table(inputs[..., k]) for k, table in enumerate(self.embeddings))

    def _logits(self, h: Tensor) -> Tensor:
        """``(B, T, d)`` -> ``(B, T, K, V)`` float32, ``-inf`` beyond each column's vocabulary."""
        sizes = self.vocab.vocab_sizes
        vmax = max(sizes)
        cols = []
        for k, v in enumerate(sizes):
            if self.heads is not None:
                logit = self.heads[k](h)
            else:
                table = self.embeddings[0 if self.vocab.shared else k]
                hk = h * self.head_gain[k] if self.head_gain is not None else h
                logit = F.linear(hk, table.weight[:v])
            logit = logit.float()
            cols.append(logit if v == vmax else F.pad(logit, (0, vmax - v), value=float("-inf")))
        return cols[0].unsqueeze(2) if len(cols) == 1 else torch.stack(cols, dim=2)  # one column: no copy

    def forward(self, inputs: Tensor, positions: Tensor, targets: Tensor | None = None,
                cache: KVCache | None = None, embeds: Tensor | None = None, keep_logits: bool = True) -> LMOutput:
        """Score or extend a sequence of steps.

        Args:
            inputs: ``(B, T, K)`` ids from ``pattern.build`` (teacher forcing: step t holds step t-1's cells).
            positions: ``(T, P)`` or ``(B, T, P)`` RoPE positions, ``P`` = 1 ("1d") or 2 ("2d").
            targets: optional ``(B, T, K)`` ids, ``IGNORE_INDEX`` where a column predicts nothing.
            cache: optional :class:`KVCache`; the ``T`` steps then continue the cached ones (their positions
                are absolute, from the pattern) and the cache is extended in place.
            embeds: optional ``(B, T, n_embd)`` vectors added to the steps' input embeddings: a condition
                (separation feeds a mixture encoding as prefix steps whose ids are ``pad_id``, and a learned
                embedding of the stem each step belongs to).
            keep_logits: with targets, ``False`` computes the heads only at steps that predict something and
                returns no logits: the same loss and NLL, without the ``(B, T, K, V)`` tensor. A context that
                is not scored (a conditioning track, a mixture prefix) then costs no head at all — with a
                32,768-code vocabulary the heads are most of a small LM's work — and untied heads form
                their logits a chunk of rows at a time (:func:`~musictok.lm.head_loss.linear_cross_entropy`).
        Returns:
            :class:`LMOutput` with logits ``(B, T, K, V)`` (``None`` when not kept) and, given targets, the
            loss and per-token NLL.
        """
        self._check(inputs, positions, cache)
        x = self.embed(inputs)
        if embeds is not None:
            if embeds.shape != x.shape:
                raise ValueError(f"embeds must be {tuple(x.shape)} (batch, steps, n_embd), got {tuple(embeds.shape)}")
            x = x + embeds.to(x.dtype)
        cos, sin = self.rope(positions.to(x.device))
        h = self._trunk(self.drop(x), cos, sin, cache)
        if targets is None:
            return LMOutput(self._logits(h))
        if targets.shape != inputs.shape:
            raise ValueError(f"targets {tuple(targets.shape)} must have the inputs' shape {tuple(inputs.shape)}")
        count = (targets != IGNORE_INDEX).sum()
        if int(count) == 0:
            raise ValueError("targets hold no token to predict (all IGNORE_INDEX)")
        if keep_logits:
            logits = self._logits(h)
            nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long(),
                                  ignore_index=IGNORE_INDEX, reduction="none").reshape(targets.shape)
            return LMOutput(logits, nll.sum() / count, nll)
        scored = (targets != IGNORE_INDEX).any(-1)  # (B, T): steps with something to predict
        if self.heads is not None:  # each head's loss in row chunks: no logits tensor at all (head_loss.py)
            rows_h, rows_t = h[scored], targets[scored]
            rows = torch.stack([linear_cross_entropy(rows_h, head.weight, rows_t[:, k])
                                for k, head in enumerate(self.heads)], dim=-1)
        else:
            logits = self._logits(h[scored][None])[0]  # (N, K, V)
            rows = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets[scored].reshape(-1).long(),
                                   ignore_index=IGNORE_INDEX, reduction="none").reshape(targets[scored].shape)
        nll = torch.zeros(targets.shape, dtype=rows.dtype, device=rows.device).index_put((scored,), rows)
        return LMOutput(None, nll.sum() / count, nll)

    def rope(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """``cos, sin`` of the rotary angles for positions ``(T, P)`` -> ``(T, D/2)``, or ``(B, T, P)`` ->
        ``(B, 1, T, D/2)`` (with the head axis): what the blocks take."""
        angles = rope_angles(positions, self.config.head_dim, self.config.rope_base)
        if angles.ndim == 3:  # (B, T, D/2): add the head axis
            angles = angles.unsqueeze(1)
        return angles.cos(), angles.sin()

    def _trunk(self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache | None) -> Tensor:
        """Embedded steps ``(B, T, d)`` through the blocks and the final norm (advancing the cache)."""
        for block in self.blocks:
            x = block(x, cos, sin, cache)
        if cache is not None:
            cache.length += x.shape[1]
        return self.norm(x)

    # ---------------------------------------------------------------- generation
    @torch.no_grad()
    def generate_step(self, inputs: Tensor, positions: Tensor, cache: KVCache) -> Tensor:
        """Feed ``inputs (B, T, K)`` after the cached steps; return the last step's logits ``(B, K, V)``."""
        self._check(inputs, positions, cache)
        cos, sin = self.rope(positions.to(inputs.device))
        return self._logits(self._trunk(self.embed(inputs), cos, sin, cache)[:, -1:])[:, 0]

    @torch.no_grad()
    def generate(self, pattern: SequencePattern, batch_size: int = 1, *, prefix: Tensor | None = None,
                 forced: Tensor | None = None, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 generator: torch.Generator | Sequence[torch.Generator] | None = None, use_cache: bool = True
                 ) -> Tensor:
        """Sample every step of ``pattern``; ``pattern.revert(ids)`` turns the result into codes.

        Each step's ids are drawn within the codebook of the cell it predicts (``pattern.target_ranges``)
        and fed back as the next step's inputs, exactly as :meth:`SequencePattern.build` would. Call
        ``.eval()`` first to disable dropout.

        Args:
            pattern: the pattern to fill (its vocabulary must be this model's).
            batch_size: number of sequences when there is no prefix.
            prefix: optional ``(B, n, K)`` ids for the first ``n`` steps (e.g. ``pattern.build(codes)
                .targets[:, :n]``); they are kept instead of sampled — a continuation.
            forced: optional ``(B, steps, K)`` ids fixed anywhere in the sequence (``IGNORE_INDEX`` where the
                model samples): a prompt under a pattern that is not frame-major (coarse-to-fine puts the
                prompt's coarse and fine cells far apart). Its leading fully fixed steps run as a prefix.
            temperature, top_k, top_p, generator: see :func:`musictok.lm.sampling.sample` (0 = greedy); a
                list of generators, one per sequence, makes each sequence of the batch the one it would be
                alone (up to the float rounding of batched matrix products).
            use_cache: decode incrementally with a KV cache (``False`` re-runs the whole prefix every step;
                the same tokens, slower — kept for testing).
        Returns:
            ``(B, steps, K)`` long ids, ``IGNORE_INDEX`` where the pattern predicts nothing.
        """
        if pattern.vocab != self.vocab:
            raise ValueError(f"pattern {pattern.name!r} has vocabulary {pattern.vocab} but the model was built "
                             f"for {self.vocab}")
        steps, K = pattern.num_steps, pattern.num_columns
        device = next(self.parameters()).device
        if forced is not None:
            if prefix is not None or forced.ndim != 3 or forced.shape[1:] != (steps, K):
                raise ValueError(f"forced must be (batch, {steps}, {K}) ids and excludes prefix, got {tuple(forced.shape)}")
            forced = forced.to(device).long()
            fixed = (forced != IGNORE_INDEX) | (pattern.cells.to(device) < 0)  # (B, steps, K)
            free = (~fixed.all(-1)).any(0).nonzero()
            lead = int(free[0]) if len(free) else steps
            prefix, batch_size = forced[:, :lead], forced.shape[0]
        n = 0
        if prefix is not None:
            if prefix.ndim != 3 or prefix.shape[1] > steps or prefix.shape[2] != K:
                raise ValueError(f"prefix must be (batch, n <= {steps}, {K}) ids, got {tuple(prefix.shape)}")
            batch_size, n = prefix.shape[0], prefix.shape[1]
        cells = pattern.cells.to(device)
        valid = cells >= 0
        ranges = pattern.target_ranges.to(device)  # (steps, K, 2)
        vocab = torch.arange(max(self.vocab.vocab_sizes), device=device)
        banned = (vocab < ranges[..., :1]) | (vocab >= ranges[..., 1:])  # (steps, K, V): outside each cell's codebook
        positions = pattern.positions.to(device)
        cos, sin = self.rope(positions)  # every step's rotation, once
        out = torch.full((batch_size, steps, K), IGNORE_INDEX, dtype=torch.long, device=device)
        inputs = torch.full((batch_size, steps, K), self.vocab.pad_id, dtype=torch.long, device=device)
        inputs[:, 0] = self.vocab.bos_id
        if n:
            kept = torch.where(valid[:n], prefix.to(device).long(), torch.full_like(out[:, :n], IGNORE_INDEX))
            out[:, :n] = kept
            inputs[:, 1: n + 1] = torch.where(valid[:n], kept, self.vocab.pad_id)[:, : steps - 1]
        self._check(inputs, positions, None)  # once: the loop only feeds ids it built itself
        cache = self.new_cache(steps) if use_cache else None
        fed = 0
        for t in range(n, steps):
            # With the cache, only the new steps run (the prefix at once, then one step at a time), without
            # the per-call input checks and rotary angles of forward(); without it, the whole prefix reruns.
            lo = fed if cache is not None else 0
            h = self._trunk(self.embed(inputs[:, lo: t + 1]), cos[lo: t + 1], sin[lo: t + 1], cache)
            logits = self._logits(h[:, -1:])[:, 0]  # (B, K, V): the last step's only
            fed = t + 1
            logits = logits.masked_fill(banned[t], float("-inf"))
            ids = sample(logits, temperature, top_k, top_p, generator)  # (B, K)
            if forced is not None:
                ids = torch.where(forced[:, t] != IGNORE_INDEX, forced[:, t], ids)
            out[:, t] = torch.where(valid[t], ids, IGNORE_INDEX)
            if t + 1 < steps:
                inputs[:, t + 1] = torch.where(valid[t], ids, self.vocab.pad_id)
        return out
