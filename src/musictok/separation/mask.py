"""The discriminative baseline: a mask-estimating U-Net on the mixture's STFT, trained from scratch here.

**Our own implementation, not a published checkpoint or package.** The well-kept separation packages
(``demucs`` for HTDemucs, ``openunmix`` for Open-Unmix) both require ``torchaudio``, whose wheels pin
another torch than the project's 2.13, so neither installs cleanly next to it. This model follows the
spectrogram U-Net of Jansson et al. (2017) and Spleeter (Hennequin et al., 2020) — encoder / decoder over
the (frequency × time) magnitude image with skip connections, one mask per stem — at a size a CPU trains:

1. ``X = STFT(mix)`` (Hann, ``n_fft``, hop ``hop_length``); the input image is ``|X|^compress`` (power-law
   compression, as Open-Unmix and many others do), without the Nyquist bin so frequency halves evenly;
2. a U-Net over that image, whose first layer folds each ``patch`` neighbouring bins into one row (a
   strided convolution: a uniform band split, as band-split RNNs do, so the network runs at a quarter of
   the frequency resolution) and whose last layer unfolds them back to one mask per bin (sub-pixel); per level a :class:`~musictok.nn.convnext.ResBlock2d` and a stride-2 downsampling *in
   frequency only*; at the bottom, dilated convolutions along time for context; back up with nearest
   upsampling, skip concatenation and residual blocks. Every normalisation is per position
   (:class:`~musictok.nn.convnext.ChannelNorm2d`) and nothing is strided in time, so the model is *local*:
   an output frame depends on a bounded window of input frames (``receptive_frames``), and separating a long
   file in chunks with that much context equals separating it whole (tested);
3. the logits of all stems go through a **softmax over stems**, so the masks sum to 1 in every
   time-frequency bin; ``Y_s = M_s · X``, ``y_s = iSTFT(Y_s)``. Since the iSTFT is linear, ``Σ_s y_s`` is the
   iSTFT of ``X``, i.e. the mixture up to the STFT round trip (~1e-7), and the last float residual is shared
   out equally: **the estimates sum to the mixture by construction**, so this model's mixture consistency
   is perfect and says nothing about its quality — a property of the architecture, not a result.

Loss: L1 on the waveforms of the stems plus the multi-resolution log-STFT distance of
:mod:`musictok.metrics.reconstruction` (the metric's one definition), both averaged over stems.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..metrics.reconstruction import stft_distance
from ..nn.convnext import ChannelNorm2d, Downsample2d, ResBlock2d, Upsample2d
from ..settings import build_checked
from .base import Separator, register_separator

__all__ = ["MaskSeparator", "MaskSeparatorConfig"]


@dataclass
class MaskSeparatorConfig:
    sample_rate: int = 24000
    stems: tuple[str, ...] = ("vocals", "drums", "bass", "other")
    n_fft: int = 1024
    hop_length: int = 256
    patch: int = 4  # frequency bins folded into one input row (and unfolded from the output: sub-pixel masks)
    channels: tuple[int, ...] = (16, 32, 64, 128)  # width of each U-Net level; frequency halves between levels
    bottleneck_dilations: tuple[int, ...] = (1, 2, 4, 8)  # dilated convolutions along time at the bottom
    compress: float = 0.3  # input image = |X| ** compress
    l1_weight: float = 10.0
    stft_weight: float = 1.0
    stft_windows: tuple[int, ...] = (2048, 512, 128)
    chunk_seconds: float = 8.0  # long inputs are separated in chunks of this length (plus context)

    def __post_init__(self) -> None:
        self.stems = tuple(str(s) for s in self.stems)
        self.channels = tuple(int(c) for c in self.channels)
        self.bottleneck_dilations = tuple(int(d) for d in self.bottleneck_dilations)
        self.stft_windows = tuple(int(w) for w in self.stft_windows)
        if len(self.stems) < 2 or len(set(self.stems)) != len(self.stems):
            raise ValueError(f"stems must be at least two distinct names, got {list(self.stems)}")
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"channels must be a non-empty list of widths >= 1, got {list(self.channels)}")
        bins = self.n_fft // 2
        if self.n_fft % 2 or self.patch < 1 or bins % (self.patch * 2 ** (len(self.channels) - 1)):
            raise ValueError(f"n_fft / 2 = {bins} must be divisible by patch × 2^{len(self.channels) - 1} = "
                             f"{self.patch * 2 ** (len(self.channels) - 1)} (one halving per level after the first)")
        if self.hop_length < 1 or self.n_fft % self.hop_length:
            raise ValueError(f"hop_length must divide n_fft, got {self.hop_length} and {self.n_fft}")
        if min(self.bottleneck_dilations, default=1) < 1:
            raise ValueError(f"bottleneck dilations must be >= 1, got {list(self.bottleneck_dilations)}")
        if not 0 < self.compress <= 1:
            raise ValueError(f"compress must be in (0, 1], got {self.compress}")
        if self.chunk_seconds <= 0:
            raise ValueError(f"chunk_seconds must be > 0, got {self.chunk_seconds}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> MaskSeparatorConfig:
        return build_checked(cls, d, "mask separator config")

    @classmethod
    def tiny(cls, **kw) -> MaskSeparatorConfig:
        """For tests: seconds on a CPU."""
        return cls(**({"n_fft": 512, "hop_length": 128, "patch": 2, "channels": (4, 8), "bottleneck_dilations": (1, 2),
                       "stft_windows": (512, 128), "chunk_seconds": 2.0} | kw))

    @classmethod
    def small(cls, **kw) -> MaskSeparatorConfig:
        """Trained on CPU here (≈ 0.9 M parameters)."""
        return cls(**kw)

    @classmethod
    def base(cls, **kw) -> MaskSeparatorConfig:
        """GPU scale."""
        return cls(**({"n_fft": 2048, "hop_length": 512, "channels": (32, 64, 128, 256, 512),
                       "bottleneck_dilations": (1, 2, 4, 8, 16)} | kw))


class _TimeBlock(nn.Module):
    """``x + conv_t(GELU(norm(x)))`` with a dilated kernel of 3 frames along time only."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.norm = ChannelNorm2d(channels)
        self.conv = nn.Conv2d(channels, channels, (1, 3), padding=(0, dilation), dilation=(1, dilation))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(F.gelu(self.norm(x)))


@register_separator("mask")
class MaskSeparator(Separator):
    """Softmax-mask U-Net on the STFT (see the module docstring)."""

    config_class = MaskSeparatorConfig

    def __init__(self, config: MaskSeparatorConfig | None = None):
        super().__init__(config or MaskSeparatorConfig())
        c = self.config
        ch = c.channels
        self.inp = nn.Conv2d(1, ch[0], (c.patch, 3), stride=(c.patch, 1), padding=(0, 1))
        self.down_blocks = nn.ModuleList(ResBlock2d(ch[i]) for i in range(len(ch) - 1))
        self.downs = nn.ModuleList(Downsample2d(ch[i], ch[i + 1], (2, 1)) for i in range(len(ch) - 1))
        self.bottom = nn.Sequential(ResBlock2d(ch[-1]), *(_TimeBlock(ch[-1], d) for d in c.bottleneck_dilations))
        self.ups = nn.ModuleList(Upsample2d(ch[i + 1], ch[i], (2, 1)) for i in range(len(ch) - 1))
        self.merges = nn.ModuleList(nn.Conv2d(2 * ch[i], ch[i], 1) for i in range(len(ch) - 1))
        self.up_blocks = nn.ModuleList(ResBlock2d(ch[i]) for i in range(len(ch) - 1))
        self.out = nn.Sequential(ChannelNorm2d(ch[0]), nn.GELU(), nn.Conv2d(ch[0], len(c.stems) * c.patch, 1))
        self.register_buffer("window", torch.hann_window(c.n_fft), persistent=False)
        self.hop_samples = c.hop_length
        self.context_units = self.receptive_frames + c.n_fft // c.hop_length + 2
        self.chunk_units = max(1, round(c.chunk_seconds * c.sample_rate / c.hop_length))
        self.min_units = c.n_fft // c.hop_length

    @property
    def receptive_frames(self) -> int:
        """STFT frames either side of a frame that can change its mask (an upper bound)."""
        levels = len(self.config.channels) - 1
        # input conv 1; per level: down block 2 + downsample 1 + upsample 1 + up block 2; bottom: block 2 + Σ dilations
        return 1 + 6 * levels + 2 + sum(self.config.bottleneck_dilations)

    def _stft(self, wav: Tensor) -> Tensor:
        c = self.config
        return torch.stft(wav.float(), c.n_fft, c.hop_length, window=self.window, center=True,
                          return_complex=True)

    def masks(self, spec: Tensor) -> Tensor:
        """Complex mixture STFT ``(B, F, N)`` -> masks ``(B, n_stems, F, N)`` summing to 1 over stems."""
        x = spec[:, :-1].abs().pow(self.config.compress).unsqueeze(1)  # (B, 1, F - 1, N): no Nyquist bin
        h = self.inp(x)
        skips = []
        for block, down in zip(self.down_blocks, self.downs):
            h = block(h)
            skips.append(h)
            h = down(h)
        h = self.bottom(h)
        for up, merge, block, skip in zip(reversed(self.ups), reversed(self.merges), reversed(self.up_blocks),
                                          reversed(skips)):
            h = block(merge(torch.cat([up(h), skip], dim=1)))
        logits = self.out(h)  # (B, S · patch, (F - 1) / patch, N): each row holds `patch` bins per stem
        B, _, rows, N = logits.shape
        logits = logits.reshape(B, -1, self.config.patch, rows, N).transpose(2, 3).reshape(B, -1, rows * self.config.patch, N)
        logits = torch.cat([logits, logits[:, :, -1:]], dim=2)  # the Nyquist bin takes its neighbour's mask
        return logits.float().softmax(dim=1)

    def _separate(self, mix: Tensor) -> Tensor:
        c = self.config
        T = mix.shape[-1]
        spec = self._stft(mix)  # (B, F, N)
        stems = spec.unsqueeze(1) * self.masks(spec)  # (B, S, F, N)
        B, S = stems.shape[:2]
        wav = torch.istft(stems.reshape(B * S, *stems.shape[2:]), c.n_fft, c.hop_length, window=self.window,
                          center=True, length=T).reshape(B, S, T)
        return wav + (mix.float() - wav.sum(dim=1)).unsqueeze(1) / S  # share out the STFT round trip's residual

    def _separate_window(self, mix: Tensor, **options) -> Tensor:
        return self._separate(mix)

    def forward(self, mix: Tensor, stems: Tensor) -> dict[str, Tensor]:
        c = self.config
        est = self._separate(mix)
        T = est.shape[-1]
        l1 = (est - stems).abs().mean()
        stft = stft_distance(stems.reshape(-1, T).float(), est.reshape(-1, T), windows=c.stft_windows).mean()
        return {"loss": c.l1_weight * l1 + c.stft_weight * stft, "l1": l1.detach(), "stft": stft.detach()}

