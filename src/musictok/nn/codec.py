"""Waveform encoder and latent decoder shared by the waveform codecs (RVQ codec, PyramidCodec).

- :class:`WaveEncoder` — a strided 1-D conv stack (SoundStream / DAC layout: residual units then a strided
  conv that doubles the width) from ``(B, T)`` samples to ``(B, D, T / stride)`` latents. The first stages
  may *patchify* (kernel = stride, no residual units): full-rate convolutions are what makes a waveform
  encoder slow on a CPU, and the deeper stages carry the modelling.
- :class:`LatentDecoder` — the Vocos recipe: a transposed conv lifts the latent rate to the STFT frame
  rate, a ConvNeXt backbone models the frames, an :class:`~musictok.nn.vocoder.ISTFTHead` returns samples.
  No transposed-conv stack at audio rate, hence fast on CPU. ``kind="transposed"`` swaps the head for a
  DAC-style transposed-conv generator, for users with GPUs who prefer it.

Frame alignment: a clip of ``T = n · stride`` samples gives exactly ``n`` latent frames, frame ``t``
centred on samples ``[t · stride, (t + 1) · stride)``, and the decoder returns exactly ``n · stride``
samples — what chunked encoding and decoding rely on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn
from torch.nn import functional as F

from .convnext import ConvNeXtBlock1d
from .vocoder import ISTFTHead

__all__ = ["LatentDecoder", "ResidualUnit1d", "WaveEncoder"]


class ResidualUnit1d(nn.Module):
    """``x + conv1x1(SiLU(conv_k,dilated(SiLU(x))))``: the residual unit of SoundStream / DAC."""

    def __init__(self, channels: int, dilation: int = 1, kernel: int = 7):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel, dilation=dilation, padding=dilation * (kernel // 2))
        self.proj = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.proj(F.silu(self.conv(F.silu(x))))


def _strided(c_in: int, c_out: int, stride: int) -> nn.Conv1d:
    """Kernel ``2 · stride`` (``stride`` when patchifying odd strides), output length ``T / stride`` exactly."""
    if stride == 1:
        return nn.Conv1d(c_in, c_out, 3, padding=1)
    if stride % 2:
        return nn.Conv1d(c_in, c_out, stride, stride=stride)
    return nn.Conv1d(c_in, c_out, 2 * stride, stride=stride, padding=stride // 2)


class WaveEncoder(nn.Module):
    """``(B, T)`` waveform, ``T % prod(strides) == 0`` -> ``(B, latent_dim, T / prod(strides))``."""

    def __init__(self, channels: Sequence[int], strides: Sequence[int], latent_dim: int,
                 res_units: int = 1, stem_stages: int = 1, dilations: Sequence[int] = (1, 3, 9),
                 head_blocks: int = 2):
        super().__init__()
        if len(channels) != len(strides) + 1:
            raise ValueError(f"channels needs one width per stage + 1, got {len(channels)} for {len(strides)} strides")
        self.stride = math.prod(strides)
        self.conv_in = nn.Conv1d(1, channels[0], 7, padding=3) if stem_stages == 0 else nn.Identity()
        stages: list[nn.Module] = []
        for i, s in enumerate(strides):
            c_in = 1 if (i == 0 and stem_stages > 0) else channels[i]
            if i < stem_stages:
                stages.append(nn.Conv1d(c_in, channels[i + 1], s, stride=s))  # patchify
                continue
            units = [ResidualUnit1d(c_in, dilations[k % len(dilations)]) for k in range(res_units)]
            stages.append(nn.Sequential(*units, nn.SiLU(), _strided(c_in, channels[i + 1], s)))
        self.stages = nn.Sequential(*stages)
        width = channels[-1]
        self.blocks = nn.ModuleList(ConvNeXtBlock1d(width, 3 * width, 1.0 / max(head_blocks, 1))
                                    for _ in range(head_blocks))
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.proj = nn.Conv1d(width, latent_dim, 1)

    def forward(self, wav: Tensor) -> Tensor:
        if wav.shape[-1] % self.stride:
            raise ValueError(f"input length {wav.shape[-1]} is not a multiple of the stride {self.stride}")
        h = self.stages(self.conv_in(wav.unsqueeze(1)))
        for block in self.blocks:
            h = block(h)
        return self.proj(self.norm(h.transpose(1, 2)).transpose(1, 2))


class LatentDecoder(nn.Module):
    """``(B, latent_dim, n)`` latents -> ``(B, n · stride)`` waveform.

    ``kind="istft"``: transposed conv to ``stride / hop`` × the latent rate, ConvNeXt backbone, iSTFT head
    (``n_fft``, ``hop``). ``kind="transposed"``: a mirrored stack of transposed convs and residual units
    down to one channel (``channels``, ``strides`` as in the encoder, applied in reverse).
    """

    def __init__(self, latent_dim: int, stride: int, *, kind: str = "istft", dim: int = 192,
                 intermediate_dim: int = 576, num_layers: int = 6, hop: int = 256, n_fft: int = 1024,
                 channels: Sequence[int] = (), strides: Sequence[int] = ()):
        super().__init__()
        if kind not in ("istft", "transposed"):
            raise ValueError(f"decoder kind must be istft or transposed, not {kind!r}")
        self.kind, self.stride = kind, stride
        if kind == "istft":
            if stride % hop:
                raise ValueError(f"the latent stride {stride} must be a multiple of the iSTFT hop {hop}")
            up = stride // hop
            self.hop = hop
            self.up = (nn.ConvTranspose1d(latent_dim, dim, 2 * up, stride=up, padding=up // 2) if up > 1
                       else nn.Conv1d(latent_dim, dim, 3, padding=1))
            self.blocks = nn.ModuleList(ConvNeXtBlock1d(dim, intermediate_dim, 1.0 / max(num_layers, 1))
                                        for _ in range(num_layers))
            self.norm = nn.LayerNorm(dim, eps=1e-6)
            self.head = ISTFTHead(dim, n_fft, hop)
        else:
            if math.prod(strides) != stride or len(channels) != len(strides) + 1:
                raise ValueError("a transposed decoder needs channels/strides mirroring the encoder")
            ch = list(channels)[::-1]
            layers: list[nn.Module] = [nn.Conv1d(latent_dim, ch[0], 7, padding=3)]
            for i, s in enumerate(reversed(list(strides))):
                layers += [nn.SiLU(), nn.ConvTranspose1d(ch[i], ch[i + 1], 2 * s, stride=s, padding=s // 2),
                           ResidualUnit1d(ch[i + 1], 1), ResidualUnit1d(ch[i + 1], 3)]
            layers += [nn.SiLU(), nn.Conv1d(ch[-1], 1, 7, padding=3), nn.Tanh()]
            self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        n = z.shape[-1]
        if self.kind == "transposed":
            return self.net(z)[:, 0, : n * self.stride]
        h = self.up(z)
        for block in self.blocks:
            h = block(h)
        h = self.norm(h.transpose(1, 2)).transpose(1, 2)
        # frames f·hop (f = 0..F-1) of a centred STFT; one more frame so istft covers n·stride samples
        h = F.pad(h, (0, 1), mode="replicate")
        return self.head(h, length=n * self.stride)

