"""Waveform encoder and latent decoder shared by the waveform codecs (RVQ codec, PyramidCodec).

- :class:`WaveEncoder` — a strided 1-D conv stack (SoundStream / DAC layout: residual units then a strided
  conv that doubles the width) from ``(B, T)`` samples to ``(B, D, T / stride)`` latents. The first stages
  may *patchify* (kernel = stride, no residual units): full-rate convolutions are what makes a waveform
  encoder slow on a CPU, and the deeper stages carry the modelling. DAC's own choices are options:
  :class:`Snake1d` activations (``activation="snake"``), weight-normalised convs (``weight_norm=True``),
  three residual units per stage with dilations 1, 3, 9 (``res_units=3``), and its output layer, an
  activation then a kernel-3 conv to the latent (``output="conv"``), instead of ConvNeXt blocks + LayerNorm.
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

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils import parametrizations

from .convnext import ConvNeXtBlock1d
from .vocoder import ISTFTHead

__all__ = ["ACTIVATIONS", "ENCODER_OUTPUTS", "LatentDecoder", "ResidualUnit1d", "Snake1d", "WaveEncoder"]

ACTIVATIONS = ("silu", "snake")
ENCODER_OUTPUTS = ("layernorm", "conv")


class Snake1d(nn.Module):
    """``x + sin²(α x) / α`` with one learned ``α`` per channel, on ``(B, C, T)`` (Ziyin et al., 2020).

    DAC's activation: a periodic inductive bias for audio, where ReLU-like units have to build every
    oscillation out of pieces. Monotone (its slope ``1 + sin 2αx`` is never negative) and close to the
    identity near 0, so deep stacks start near linear.
    ``α`` starts at 1 as in DAC; the ``1e-9`` keeps ``1 / α`` finite if ``α`` reaches 0.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)


def _activation(kind: str, channels: int) -> nn.Module:
    if kind not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, not {kind!r}")
    return Snake1d(channels) if kind == "snake" else nn.SiLU()


def _conv(*args, weight_norm: bool = False, **kwargs) -> nn.Conv1d:
    """``nn.Conv1d``, weight-normalised (``w = g v / |v|`` per output channel) when asked, as in DAC: it
    decouples each filter's scale from its direction, which steadies GAN training at little cost (one
    norm per filter per step)."""
    conv = nn.Conv1d(*args, **kwargs)
    return parametrizations.weight_norm(conv) if weight_norm else conv


class ResidualUnit1d(nn.Module):
    """``x + conv1x1(act(conv_k,dilated(act(x))))``: the residual unit of SoundStream / DAC.

    ``activation="silu"`` (the default, what the bundled codecs were trained with) applies SiLU without
    parameters; ``"snake"`` gives each of the two activations its own per-channel ``α`` (DAC).
    """

    def __init__(self, channels: int, dilation: int = 1, kernel: int = 7, *, activation: str = "silu",
                 weight_norm: bool = False):
        super().__init__()
        self.conv = _conv(channels, channels, kernel, dilation=dilation, padding=dilation * (kernel // 2),
                          weight_norm=weight_norm)
        self.proj = _conv(channels, channels, 1, weight_norm=weight_norm)
        self.act1 = _activation(activation, channels)
        self.act2 = _activation(activation, channels)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.proj(self.act2(self.conv(self.act1(x))))


def _strided(c_in: int, c_out: int, stride: int, weight_norm: bool = False) -> nn.Conv1d:
    """Kernel ``2 · stride`` (``stride`` when patchifying odd strides), output length ``T / stride`` exactly."""
    if stride == 1:
        return _conv(c_in, c_out, 3, padding=1, weight_norm=weight_norm)
    if stride % 2:
        return _conv(c_in, c_out, stride, stride=stride, weight_norm=weight_norm)
    return _conv(c_in, c_out, 2 * stride, stride=stride, padding=stride // 2, weight_norm=weight_norm)


def _encoder_reach(strides: Sequence[int], stem_stages: int, res_units: int, dilations: Sequence[int],
                   head_blocks: int, output: str, kernel: int = 7) -> int:
    """How many input samples either side of a latent frame's span can change it (an upper bound): each
    conv adds ``(k - 1) / 2 · dilation`` of its input steps (a strided conv at most ``k - 1``), in samples."""
    scale, reach = 1, 0 if stem_stages else 3  # conv_in: kernel 7
    for i, s in enumerate(strides):
        if i >= stem_stages:
            reach += sum((kernel // 2) * dilations[k % len(dilations)] for k in range(res_units)) * scale
        if s == 1:
            span = 1  # kernel 3
        elif i < stem_stages or s % 2:
            span = s - 1  # kernel = stride
        else:
            span = 2 * s - 1  # kernel 2 · stride
        reach += span * scale
        scale *= s
    reach += 3 * head_blocks * scale  # ConvNeXt depthwise kernel 7
    reach += scale if output == "conv" else 0  # kernel 3
    return reach


class WaveEncoder(nn.Module):
    """``(B, T)`` waveform, ``T % prod(strides) == 0`` -> ``(B, latent_dim, T / prod(strides))``.

    Stage ``i``: ``res_units`` residual units (dilations cycling through ``dilations``), the activation,
    a strided conv from ``channels[i]`` to ``channels[i + 1]``; the first ``stem_stages`` stages patchify
    instead. Then ``head_blocks`` ConvNeXt blocks at the latent rate and the output layer: ``"layernorm"``
    (LayerNorm + 1x1 conv, the bundled codecs) or ``"conv"`` (activation + kernel-3 conv, DAC's).
    ``reach``: input samples either side of a frame's own span that can change it (an upper bound; three
    dilated units per stage reach far: ≈ 10 frames for the last stride-4 stage of a 1024× encoder).
    """

    def __init__(self, channels: Sequence[int], strides: Sequence[int], latent_dim: int,
                 res_units: int = 1, stem_stages: int = 1, dilations: Sequence[int] = (1, 3, 9),
                 head_blocks: int = 2, *, activation: str = "silu", weight_norm: bool = False,
                 output: str = "layernorm"):
        super().__init__()
        if len(channels) != len(strides) + 1:
            raise ValueError(f"channels needs one width per stage + 1, got {len(channels)} for {len(strides)} strides")
        if output not in ENCODER_OUTPUTS:
            raise ValueError(f"encoder output must be one of {ENCODER_OUTPUTS}, not {output!r}")
        _activation(activation, 1)  # refuse an unknown name before building anything
        wn = weight_norm
        self.stride = math.prod(strides)
        self.reach = _encoder_reach(strides, stem_stages, res_units, dilations, head_blocks, output)
        self.conv_in = _conv(1, channels[0], 7, padding=3, weight_norm=wn) if stem_stages == 0 else nn.Identity()
        stages: list[nn.Module] = []
        for i, s in enumerate(strides):
            c_in = 1 if (i == 0 and stem_stages > 0) else channels[i]
            if i < stem_stages:
                stages.append(_conv(c_in, channels[i + 1], s, stride=s, weight_norm=wn))  # patchify
                continue
            units = [ResidualUnit1d(c_in, dilations[k % len(dilations)], activation=activation, weight_norm=wn)
                     for k in range(res_units)]
            stages.append(nn.Sequential(*units, _activation(activation, c_in),
                                        _strided(c_in, channels[i + 1], s, weight_norm=wn)))
        self.stages = nn.Sequential(*stages)
        width = channels[-1]
        self.blocks = nn.ModuleList(ConvNeXtBlock1d(width, 3 * width, 1.0 / max(head_blocks, 1))
                                    for _ in range(head_blocks))
        self.output = output
        if output == "layernorm":
            self.norm = nn.LayerNorm(width, eps=1e-6)
            self.proj = nn.Conv1d(width, latent_dim, 1)
        else:
            self.out_act = _activation(activation, width)
            self.proj = _conv(width, latent_dim, 3, padding=1, weight_norm=wn)

    def forward(self, wav: Tensor) -> Tensor:
        if wav.shape[-1] % self.stride:
            raise ValueError(f"input length {wav.shape[-1]} is not a multiple of the stride {self.stride}")
        h = self.stages(self.conv_in(wav.unsqueeze(1)))
        for block in self.blocks:
            h = block(h)
        if self.output == "conv":
            return self.proj(self.out_act(h))
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

