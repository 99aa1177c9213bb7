"""The Conformer block (Gulati et al., 2020): a Transformer layer with a convolution module, for frame sequences.

One block is two half-step feed-forward layers sandwiching self-attention and a convolution module
("macaron" style), then a final LayerNorm::

    x = x + ½ FFN(x);  x = x + MHSA(x);  x = x + Conv(x);  x = x + ½ FFN(x);  x = LayerNorm(x)

Attention sees global context, the depthwise convolution local patterns. Two departures from the paper,
both for locality and simplicity:

- positions enter attention through **RoPE** (rotary, relative by construction) instead of Transformer-XL's
  relative encoding: the same relative-offset behaviour with no learned table and no length limit;
- the convolution module normalises with a LayerNorm over channels at each frame instead of BatchNorm, so a
  frame's output depends neither on the other items of the batch nor on train/eval statistics.

Shapes are ``(B, T, dim)`` (frames last but one, channels last), like a Transformer's.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["Conformer", "ConformerBlock"]


def _rotary(x: Tensor, base: float = 10000.0) -> Tensor:
    """Rotate pairs ``(x[i], x[i + D/2])`` of ``x (B, H, T, D)`` by angles ``t · base^(-i / (D/2))``."""
    T, D = x.shape[-2], x.shape[-1]
    inv = base ** (-torch.arange(D // 2, device=x.device, dtype=torch.float32) / (D // 2))
    ang = torch.arange(T, device=x.device, dtype=torch.float32)[:, None] * inv  # (T, D/2)
    cos, sin = ang.cos(), ang.sin()
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


class _FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, mult * dim), nn.SiLU(), nn.Dropout(dropout),
                                 nn.Linear(mult * dim, dim), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class _SelfAttention(nn.Module):
    """Pre-norm bidirectional multi-head attention with RoPE."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads or (dim // heads) % 2:
            raise ValueError(f"dim ({dim}) must split into {heads} heads of an even size")
        self.heads, self.dropout = heads, dropout
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2)
                   for t in self.qkv(self.norm(x)).split(C, dim=2))
        y = F.scaled_dot_product_attention(_rotary(q), _rotary(k), v,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.drop(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class _ConvModule(nn.Module):
    """LayerNorm → pointwise conv (×2) → GLU → depthwise conv → LayerNorm → SiLU → pointwise conv."""

    def __init__(self, dim: int, kernel: int, dropout: float) -> None:
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"the conformer's conv kernel must be odd, got {kernel}")
        self.norm = nn.LayerNorm(dim)
        self.pw1 = nn.Conv1d(dim, 2 * dim, 1)
        self.dw = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.mid_norm = nn.LayerNorm(dim)
        self.pw2 = nn.Conv1d(dim, dim, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = F.glu(self.pw1(self.norm(x).transpose(1, 2)), dim=1)  # (B, dim, T)
        h = self.dw(h)
        h = F.silu(self.mid_norm(h.transpose(1, 2))).transpose(1, 2)
        return self.drop(self.pw2(h).transpose(1, 2))


class ConformerBlock(nn.Module):
    """One Conformer block ``(B, T, dim) -> (B, T, dim)`` (see the module docstring)."""

    def __init__(self, dim: int, heads: int = 4, ff_mult: int = 4, kernel: int = 15, dropout: float = 0.0) -> None:
        super().__init__()
        self.ff1 = _FeedForward(dim, ff_mult, dropout)
        self.attn = _SelfAttention(dim, heads, dropout)
        self.conv = _ConvModule(dim, kernel, dropout)
        self.ff2 = _FeedForward(dim, ff_mult, dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.attn(x)
        x = x + self.conv(x)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)


class Conformer(nn.Module):
    """A stack of :class:`ConformerBlock`; ``layers = 0`` is the identity."""

    def __init__(self, dim: int, layers: int, heads: int = 4, ff_mult: int = 4, kernel: int = 15,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if layers < 0:
            raise ValueError(f"layers must be >= 0, got {layers}")
        self.blocks = nn.ModuleList(ConformerBlock(dim, heads, ff_mult, kernel, dropout) for _ in range(layers))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, dim) -> (B, T, dim)``."""
        for block in self.blocks:
            x = block(x)
        return x
