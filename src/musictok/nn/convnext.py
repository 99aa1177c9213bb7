"""Convolutional building blocks: a 1D ConvNeXt backbone and small 2D residual blocks.

The 1D ConvNeXt (Liu et al., 2022, adapted to audio frames by Vocos, Siuzdenko et al., 2023) keeps
the time resolution fixed: every layer maps ``(B, C, T) -> (B, C, T)`` for any ``T >= 1``, so a
backbone can sit between a frame-rate feature extractor and a frame-rate head (a Fourier head, a
quantizer) without up- or down-sampling. All 1D modules here are **channels-first** ``(B, C, T)``,
like ``nn.Conv1d``; LayerNorm is applied over the channel axis by moving it last and back.

The 2D blocks (:class:`ResBlock2d`, :class:`Downsample2d`, :class:`Upsample2d`) are the pieces of a
convolutional image codec for spectrogram "images" ``(B, C, F, T)``; their down/up-sampling factors
are per axis because frequency and time usually deserve different rates.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "ChannelNorm2d",
    "ConvNeXtBackbone",
    "ConvNeXtBlock1d",
    "Downsample2d",
    "ResBlock2d",
    "Upsample2d",
]

def _check_odd_kernel(kernel: int) -> None:
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel must be a positive odd number so padding keeps the length, got {kernel}")

class ConvNeXtBlock1d(nn.Module):
    """One ConvNeXt block, ``(B, dim, T) -> (B, dim, T)``.

    depthwise conv (mixes time, per channel) -> LayerNorm over channels -> pointwise MLP
    ``dim -> intermediate_dim -> dim`` with GELU (mixes channels, per frame) -> layer scale -> residual.

    Layer scale multiplies the branch by a learned per-channel ``gamma`` initialised at
    ``layer_scale_init``; a small value (``1 / num_layers`` in :class:`ConvNeXtBackbone`) makes a deep
    stack start close to the identity, which keeps early training stable. ``None`` disables it.
    """

    def __init__(
        self,
        dim: int,
        intermediate_dim: int,
        layer_scale_init: float | None = 1.0,
        kernel: int = 7,
    ) -> None:
        super().__init__()
        _check_odd_kernel(kernel)
        if dim < 1 or intermediate_dim < 1:
            raise ValueError(f"dim and intermediate_dim must be >= 1, got {dim}, {intermediate_dim}")
        self.dwconv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma: nn.Parameter | None = None
        if layer_scale_init is not None:
            self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale_init)))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, dim, T) -> (B, dim, T)``."""
        residual = x
        x = self.dwconv(x).transpose(1, 2)  # (B, T, dim): Linear and LayerNorm act on the last axis
        x = self.pwconv2(self.act(self.pwconv1(self.norm(x))))
        if self.gamma is not None:
            x = self.gamma * x
        return residual + x.transpose(1, 2)

class ConvNeXtBackbone(nn.Module):
    """Input conv + LayerNorm + ``num_layers`` ConvNeXt blocks + final LayerNorm.

    ``(B, in_dim, T) -> (B, dim, T)``. The input conv (kernel ``kernel``, default 7) lifts features
    such as a log-Mel to the model width and already sees a few neighbouring frames; the final
    LayerNorm hands the head features of a fixed scale whatever the depth.

    Weights follow ConvNeXt's truncated-normal init (std 0.02, zero biases), so a fresh backbone's
    output does not depend on PyTorch's default fan-in init.
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        intermediate_dim: int,
        num_layers: int,
        layer_scale_init: float | None = None,
        kernel: int = 7,
    ) -> None:
        super().__init__()
        _check_odd_kernel(kernel)
        if in_dim < 1 or num_layers < 0:
            raise ValueError(f"need in_dim >= 1 and num_layers >= 0, got {in_dim}, {num_layers}")
        if layer_scale_init is None:
            layer_scale_init = 1.0 / max(num_layers, 1)
        self.in_dim = in_dim
        self.dim = dim
        self.embed = nn.Conv1d(in_dim, dim, kernel, padding=kernel // 2)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock1d(dim, intermediate_dim, layer_scale_init, kernel) for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(dim, eps=1e-6)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Conv1d, nn.Linear)):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_dim, T) -> (B, dim, T)``."""
        if x.dim() != 3 or x.shape[1] != self.in_dim:
            raise ValueError(f"expected (B, {self.in_dim}, T) channels-first input, got {tuple(x.shape)}")
        x = self.norm(self.embed(x).transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x.transpose(1, 2)).transpose(1, 2)

# --------------------------------------------------------------------------------------------- 2D
class ChannelNorm2d(nn.Module):
    """LayerNorm over channels at every ``(H, W)`` position of ``(B, C, H, W)``.

    Unlike GroupNorm, whose statistics span the whole time axis, this keeps a block *local*: an output
    frame depends only on the input frames in its receptive field. That is what lets a tokenizer encode a
    long file in chunks and get the same tokens as whole-file encoding away from the seams.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"{name} must be a positive int or a pair of positive ints, got {value!r}")
    return int(pair[0]), int(pair[1])

class ResBlock2d(nn.Module):
    """Pre-activation residual block ``(B, C_in, H, W) -> (B, C_out, H, W)``.

    ``x + conv(SiLU(norm(conv(SiLU(norm(x))))))``, the block of VQGAN-style image codecs, with
    :class:`ChannelNorm2d` instead of GroupNorm so that outputs depend neither on other batch items nor
    on frames outside the receptive field. When ``out_channels`` differs, the skip is a 1x1 conv.
    """

    def __init__(self, channels: int, kernel: int = 3, out_channels: int | None = None) -> None:
        super().__init__()
        _check_odd_kernel(kernel)
        out_channels = channels if out_channels is None else out_channels
        if channels < 1 or out_channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels} -> {out_channels}")
        self.norm1 = ChannelNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, out_channels, kernel, padding=kernel // 2)
        self.norm2 = ChannelNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel, padding=kernel // 2)
        self.skip = nn.Identity() if channels == out_channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, H, W) -> (B, C_out, H, W)``; any ``H, W >= 1``."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h

class Downsample2d(nn.Module):
    """Strided conv ``(B, C_in, H, W) -> (B, C_out, H // fh, W // fw)`` with ``factor = (fh, fw)``.

    A learned downsampler (kernel ``2 f``, stride ``f`` per axis; kernel 3, stride 1 on an axis with
    factor 1), so sizes divide exactly when ``H`` and ``W`` are multiples of the factors.
    """

    def __init__(
        self, channels: int, out_channels: int | None = None, factor: int | tuple[int, int] = 2
    ) -> None:
        super().__init__()
        self.factor = _pair(factor, "factor")
        kernel = tuple(2 * f if f > 1 else 3 for f in self.factor)
        padding = tuple(f // 2 if f > 1 else 1 for f in self.factor)
        out_channels = channels if out_channels is None else out_channels
        self.conv = nn.Conv2d(channels, out_channels, kernel, stride=self.factor, padding=padding)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, H, W) -> (B, C_out, H // fh, W // fw)``."""
        return self.conv(x)

class Upsample2d(nn.Module):
    """Nearest-neighbour upsampling then a 3x3 conv: ``(B, C_in, H, W) -> (B, C_out, H fh, W fw)``.

    Nearest + conv instead of a transposed conv avoids the checkerboard artefacts of overlapping
    strided kernels (Odena et al., 2016). Inverts the sizes of :class:`Downsample2d` with the same factor.
    """

    def __init__(
        self, channels: int, out_channels: int | None = None, factor: int | tuple[int, int] = 2
    ) -> None:
        super().__init__()
        self.factor = _pair(factor, "factor")
        out_channels = channels if out_channels is None else out_channels
        self.conv = nn.Conv2d(channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, H, W) -> (B, C_out, H fh, W fw)``."""
        return self.conv(F.interpolate(x, scale_factor=self.factor, mode="nearest"))
