"""GAN discriminators for spectrogram images and waveforms, and the losses that train against them.

One contract for every discriminator here: ``forward(x)`` returns a :class:`DiscriminatorOutput`
``(logits, features)``, a named pair of lists with **one entry per sub-discriminator** (scale,
period, resolution): ``logits[i]`` is that sub-discriminator's real/fake score map ``(B, ...)`` and
``features[i]`` the list of its hidden activations (for feature matching). It unpacks like a tuple,
so ``logits, feats = disc(x)`` works, and the loss functions below take these lists directly.

- :class:`MultiScalePatchGAN` — PatchGAN (Isola et al., 2017) on a spectrogram "image"
  ``(B, 1, F, T)`` at full, 1/2, 1/4 ... resolution (multi-scale as in pix2pixHD), for 2D codecs.
- :class:`MultiPeriodDiscriminator` — HiFi-GAN's MPD (Kong et al., 2020) on waveforms: samples
  ``p`` apart are stacked as columns so 2D convs with ``(k, 1)`` kernels see periodic structure.
- :class:`MultiResolutionDiscriminator` — the UnivNet / Vocos MRD: 2D convs on the compressed STFT
  magnitude at several (n_fft, hop, win) resolutions, where the MPD is blind to spectral detail; or, as
  DAC's, on the complex STFT (real and imaginary parts as two channels), which sees the phase too.

Widths default small (roughly 0.1M-1M parameters per discriminator) so CPU training is possible;
every width is a constructor argument.

Weight normalisation: all convs use ``weight_norm`` by default (``norm="weight"``). It is what the
audio GANs trained with feature matching use (HiFi-GAN, Vocos, DAC), it has no power-iteration state,
so a discriminator's output is the same in train and eval mode and costs nothing extra per step.
``norm="spectral"`` (Miyato et al., 2018) bounds each layer's Lipschitz constant instead, a stronger
stabiliser for hinge-loss image GANs, at the price of that state; ``norm="none"`` for plain convs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils import parametrizations

__all__ = [
    "REDUCTIONS",
    "SPECTRA",
    "DiscriminatorOutput",
    "MultiPeriodDiscriminator",
    "MultiResolutionDiscriminator",
    "MultiScalePatchGAN",
    "PatchGAN2d",
    "discriminator_loss",
    "feature_matching_loss",
    "generator_adversarial_loss",
]

LRELU_SLOPE = 0.2
_NORMS = ("weight", "spectral", "none")
_KINDS = ("hinge", "lsgan")
SPECTRA = ("magnitude", "complex")
# How the losses combine sub-discriminators and feature layers: "mean" keeps their scale independent of how
# many there are; "sum" is DAC's / HiFi-GAN's convention, under which DAC's weights (adv 1, feature 2) were set.
REDUCTIONS = ("mean", "sum")


class DiscriminatorOutput(NamedTuple):
    """What every multi-discriminator returns: one entry per sub-discriminator in each list."""

    logits: list[Tensor]
    features: list[list[Tensor]]


def _normed(conv: nn.Conv2d, norm: str) -> nn.Module:
    if norm == "weight":
        return parametrizations.weight_norm(conv)
    if norm == "spectral":
        return parametrizations.spectral_norm(conv)
    return conv


def _check_norm(norm: str) -> None:
    if norm not in _NORMS:
        raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")


class _ConvStack2d(nn.Module):
    """Conv2d layers each followed by LeakyReLU, then a 1-channel conv: ``x -> (logits, features)``."""

    def __init__(self, convs: Sequence[nn.Conv2d], post: nn.Conv2d, norm: str) -> None:
        super().__init__()
        _check_norm(norm)
        self.convs = nn.ModuleList(_normed(conv, norm) for conv in convs)
        self.post = _normed(post, norm)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``(B, C, H, W) -> (logits (B, 1, H', W'), [hidden activations])``."""
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            features.append(x)
        return self.post(x), features


def _as_waveform(wav: Tensor) -> Tensor:
    """``(B, T)`` or ``(B, 1, T)`` -> ``(B, 1, T)``."""
    if wav.dim() == 2:
        wav = wav.unsqueeze(1)
    if wav.dim() != 3 or wav.shape[1] != 1:
        raise ValueError(f"expected a mono waveform (B, T) or (B, 1, T), got shape {tuple(wav.shape)}")
    return wav


# ------------------------------------------------------------------------------------ PatchGAN
class PatchGAN2d(_ConvStack2d):
    """PatchGAN on an image ``(B, in_ch, H, W) -> (logits (B, 1, H / 2^n, W / 2^n), features)``.

    ``n_layers`` convs with kernel 4, stride 2 (each halves both axes; width ``channels * 2^i``
    capped at ``max_channels``), then a stride-1 3x3 conv and a 3x3 conv to one logit channel. Each
    logit judges one patch, so the loss asks every region of a spectrogram to look real. The stride-1
    layers use 3x3 "same" kernels (pix2pix uses 4x4 without padding) so short clips keep at least one
    logit per patch: the input needs only ``H, W >= 2^n_layers``.
    """

    def __init__(
        self,
        in_ch: int = 1,
        channels: int = 32,
        n_layers: int = 3,
        max_channels: int = 128,
        norm: str = "weight",
    ) -> None:
        if n_layers < 1 or channels < 1 or in_ch < 1:
            raise ValueError(f"need in_ch, channels, n_layers >= 1, got {in_ch}, {channels}, {n_layers}")
        widths = [min(channels * 2**i, max_channels) for i in range(n_layers + 1)]
        convs = [nn.Conv2d(in_ch, widths[0], 4, stride=2, padding=1)]
        convs += [nn.Conv2d(widths[i - 1], widths[i], 4, stride=2, padding=1) for i in range(1, n_layers)]
        convs.append(nn.Conv2d(widths[n_layers - 1], widths[n_layers], 3, padding=1))
        super().__init__(convs, nn.Conv2d(widths[n_layers], 1, 3, padding=1), norm)
        self.in_ch = in_ch
        self.n_layers = n_layers

    @property
    def min_size(self) -> int:
        """Smallest height and width accepted: every stride-2 layer needs at least 2 pixels."""
        return 2**self.n_layers

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``(B, in_ch, H, W) -> (logits (B, 1, H // 2^n, W // 2^n), [n_layers + 1 activations])``."""
        if x.dim() != 4 or x.shape[1] != self.in_ch:
            raise ValueError(f"expected an image (B, {self.in_ch}, H, W), got shape {tuple(x.shape)}")
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(
                f"PatchGAN2d with n_layers={self.n_layers} needs H, W >= {self.min_size}, got "
                f"{tuple(x.shape[-2:])}; use longer crops, fewer layers or (multi-scale) fewer scales"
            )
        return super().forward(x)


class MultiScalePatchGAN(nn.Module):
    """Independent :class:`PatchGAN2d` s on a spectrogram image at full, 1/2, 1/4 ... resolution.

    ``(B, 1, F, T)`` (or ``(B, F, T)``) -> :class:`DiscriminatorOutput` with ``scales`` entries. The
    coarser scales see larger structures (notes, phrases) with the same receptive field in pixels.
    Between scales the image is average-pooled (3x3, stride 2, padding not counted), which maps a
    size ``n`` to ``ceil(n / 2)``; the coarsest scale must still be ``>= 2^n_layers`` per axis.
    """

    def __init__(
        self,
        scales: int = 3,
        in_ch: int = 1,
        channels: int = 32,
        n_layers: int = 3,
        max_channels: int = 128,
        norm: str = "weight",
    ) -> None:
        super().__init__()
        if scales < 1:
            raise ValueError(f"scales must be >= 1, got {scales}")
        self.discriminators = nn.ModuleList(
            PatchGAN2d(in_ch, channels, n_layers, max_channels, norm) for _ in range(scales)
        )

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        """``(B, 1, F, T)`` or ``(B, F, T)`` -> one (logits, features) entry per scale."""
        if x.dim() == 3:
            x = x.unsqueeze(1)
        logits, features = [], []
        for i, disc in enumerate(self.discriminators):
            if i > 0:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            if min(x.shape[-2:]) < disc.min_size:
                raise ValueError(
                    f"scale 1/{2**i} of MultiScalePatchGAN has size {tuple(x.shape[-2:])}, below the "
                    f"{disc.min_size} its PatchGAN needs; use longer crops, fewer scales or fewer layers"
                )
            score, feats = disc(x)
            logits.append(score)
            features.append(feats)
        return DiscriminatorOutput(logits, features)


# ------------------------------------------------------------------------------ multi-period
class _PeriodDiscriminator(_ConvStack2d):
    """One MPD branch: waveform ``(B, 1, T)`` folded to ``(B, 1, ceil(T / p), p)``, then (k, 1) convs."""

    def __init__(self, period: int, channels: Sequence[int], kernel: int, stride: int, norm: str) -> None:
        pad = (kernel - 1) // 2
        widths = [1, *channels]
        convs = [
            nn.Conv2d(widths[i], widths[i + 1], (kernel, 1), stride=(stride, 1), padding=(pad, 0))
            for i in range(len(channels))
        ]
        convs.append(nn.Conv2d(widths[-1], widths[-1], (kernel, 1), padding=(pad, 0)))
        super().__init__(convs, nn.Conv2d(widths[-1], 1, (3, 1), padding=(1, 0)), norm)
        self.period = period

    def forward(self, wav: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``(B, 1, T) -> (logits (B, 1, T', p), features)``."""
        b, c, t = wav.shape
        if t % self.period:
            n_pad = self.period - t % self.period
            # Reflect keeps the padded tail signal-like; a signal shorter than the pad falls back to zeros.
            wav = F.pad(wav, (0, n_pad), mode="reflect" if t > n_pad else "constant")
            t += n_pad
        return super().forward(wav.reshape(b, c, t // self.period, self.period))


class _WaveformDiscriminators(nn.Module):
    """Sub-discriminators on one waveform ``(B, T)`` or ``(B, 1, T)``: one (logits, features) entry each."""

    discriminators: nn.ModuleList

    def forward(self, wav: Tensor) -> DiscriminatorOutput:
        wav = _as_waveform(wav)
        logits, features = [], []
        for disc in self.discriminators:
            score, feats = disc(wav)
            logits.append(score)
            features.append(feats)
        return DiscriminatorOutput(logits, features)


class MultiPeriodDiscriminator(_WaveformDiscriminators):
    """HiFi-GAN's multi-period discriminator on waveforms ``(B, 1, T)`` or ``(B, T)``.

    One branch per period ``p``: reshaping to ``(T / p, p)`` puts samples ``p`` apart in one column,
    and convs that stride only along the column judge the periodic (pitch-like) structure that a
    vocoder's output must reproduce. Periods are primes so the branches overlap little. Default widths
    ``(16, 32, 64, 128)`` give about 0.14M parameters per period (HiFi-GAN's 32...1024 gives 8M).
    """

    def __init__(
        self,
        periods: Sequence[int] = (2, 3, 5, 7, 11),
        channels: Sequence[int] = (16, 32, 64, 128),
        kernel: int = 5,
        stride: int = 3,
        norm: str = "weight",
    ) -> None:
        super().__init__()
        if not periods or min(periods) < 1:
            raise ValueError(f"periods must be a non-empty sequence of positive ints, got {periods!r}")
        if not channels or min(channels) < 1 or kernel < 1 or stride < 1:
            raise ValueError(
                f"need non-empty positive channels, kernel, stride; got {channels}, {kernel}, {stride}"
            )
        self.periods = tuple(int(p) for p in periods)
        self.discriminators = nn.ModuleList(
            _PeriodDiscriminator(p, channels, kernel, stride, norm) for p in self.periods
        )



# -------------------------------------------------------------------------- multi-resolution
class _ResolutionDiscriminator(_ConvStack2d):
    """One MRD branch: ``log1p |STFT|`` as ``(B, 1, F, frames)`` (or the complex STFT as ``(B, 2, F, frames)``),
    convs striding along frequency."""

    window: Tensor

    def __init__(self, n_fft: int, hop: int, win: int, channels: int, n_strided: int, norm: str,
                 spectrum: str = "magnitude") -> None:
        if not 0 < win <= n_fft or hop < 1:
            raise ValueError(f"resolution needs 0 < win <= n_fft and hop >= 1, got ({n_fft}, {hop}, {win})")
        if spectrum not in SPECTRA:
            raise ValueError(f"spectrum must be one of {SPECTRA}, got {spectrum!r}")
        # the first conv strides too: at full frequency resolution it would cost as much as all the rest
        inputs = 2 if spectrum == "complex" else 1
        convs = [nn.Conv2d(inputs, channels, (9, 3), stride=(2, 1), padding=(4, 1))]
        convs += [
            nn.Conv2d(channels, channels, (9, 3), stride=(2, 1), padding=(4, 1)) for _ in range(n_strided)
        ]
        convs.append(nn.Conv2d(channels, channels, 3, padding=1))
        super().__init__(convs, nn.Conv2d(channels, 1, 3, padding=1), norm)
        self.n_fft, self.hop, self.win, self.spectrum = n_fft, hop, win, spectrum
        self.register_buffer("window", torch.hann_window(win, periodic=True), persistent=False)

    def spectrogram(self, wav: Tensor) -> Tensor:
        """``(B, 1, T) -> (B, C, n_fft // 2 + 1, T // hop + 1)`` float32: the compressed magnitude (``C = 1``)
        or the real and imaginary parts (``C = 2``, uncompressed, as DAC).

        ``log1p`` compresses the loud bins by orders of magnitude while keeping silence at 0, unlike
        ``log`` whose floor would dominate quiet passages. The complex STFT keeps the phase, so feature
        matching on it asks the generator for the reference's phase, not only its spectrum.
        """
        if wav.shape[-1] <= self.n_fft // 2:
            raise ValueError(
                f"waveform of {wav.shape[-1]} samples is too short for the n_fft={self.n_fft} resolution "
                f"(reflect padding); use at least {self.n_fft // 2 + 1} samples"
            )
        with torch.autocast(device_type=wav.device.type, enabled=False):
            spec = torch.stft(
                wav[:, 0].float(), self.n_fft, self.hop, self.win, window=self.window,
                center=True, pad_mode="reflect", return_complex=True,
            )
            if self.spectrum == "complex":
                return torch.view_as_real(spec).permute(0, 3, 1, 2)
            return torch.log1p(spec.abs()).unsqueeze(1)

    def forward(self, wav: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``(B, 1, T) -> (logits (B, 1, F', frames), features)``."""
        return super().forward(self.spectrogram(wav))


class MultiResolutionDiscriminator(_WaveformDiscriminators):
    """Discriminators on STFT magnitudes of a waveform ``(B, 1, T)`` or ``(B, T)``.

    ``resolutions`` are ``(n_fft, hop, win_length)``; each branch sees ``log1p |STFT|`` as a one-channel
    image ``(frequency, frames)`` and strides ``n_strided`` times along frequency only (frames are few
    in short crops). Several resolutions keep the generator from trading time for frequency detail.
    Default width 32 gives about 0.1M parameters per resolution. ``spectrum="complex"`` feeds the real and
    imaginary parts instead (DAC's choice; DAC also splits each into 5 frequency bands, which this does not).
    """

    def __init__(
        self,
        resolutions: Sequence[tuple[int, int, int]] = ((1024, 256, 1024), (2048, 512, 2048), (512, 128, 512)),
        channels: int = 32,
        n_strided: int = 3,
        norm: str = "weight",
        spectrum: str = "magnitude",
    ) -> None:
        super().__init__()
        if not resolutions or channels < 1 or n_strided < 0:
            raise ValueError("need at least one resolution, channels >= 1 and n_strided >= 0")
        self.resolutions = tuple(tuple(int(v) for v in r) for r in resolutions)
        if any(len(r) != 3 for r in self.resolutions):
            raise ValueError(f"each resolution is (n_fft, hop, win_length), got {resolutions!r}")
        self.discriminators = nn.ModuleList(
            _ResolutionDiscriminator(n_fft, hop, win, channels, n_strided, norm, spectrum)
            for n_fft, hop, win in self.resolutions
        )



# ------------------------------------------------------------------------------------ losses
def _check_kind(kind: str, reduction: str = "mean") -> None:
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _reduce(total: Tensor, count: int, reduction: str) -> Tensor:
    return total / count if reduction == "mean" else total


def _as_list(logits: Tensor | Sequence[Tensor], name: str) -> list[Tensor]:
    items = [logits] if isinstance(logits, Tensor) else list(logits)
    if not items:
        raise ValueError(f"{name} is empty: pass one logits tensor per sub-discriminator")
    return items


def discriminator_loss(
    real_logits: Sequence[Tensor], fake_logits: Sequence[Tensor], kind: str = "hinge", reduction: str = "mean"
) -> Tensor:
    """Loss of the discriminator, averaged (``reduction="sum"``: summed) over sub-discriminators (a scalar).

    ``hinge``: ``mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))`` — zero once real scores are
    ``>= 1`` and fake ``<= -1``, so a confident discriminator stops pushing. ``lsgan``:
    ``mean((D(real) - 1)^2) + mean(D(fake)^2)`` (Mao et al., 2017). Averaging (not summing) over
    sub-discriminators keeps the loss scale independent of how many periods/scales/resolutions there
    are. Pass logits of a *detached* fake so this step does not reach the generator.
    """
    _check_kind(kind, reduction)
    real, fake = _as_list(real_logits, "real_logits"), _as_list(fake_logits, "fake_logits")
    if len(real) != len(fake):
        raise ValueError(f"got {len(real)} real and {len(fake)} fake logits; one each per sub-discriminator")
    total = real[0].new_zeros((), dtype=torch.float32)
    for r, f in zip(real, fake):
        r, f = r.float(), f.float()
        if kind == "hinge":
            total = total + F.relu(1.0 - r).mean() + F.relu(1.0 + f).mean()
        else:
            total = total + (r - 1.0).pow(2).mean() + f.pow(2).mean()
    return _reduce(total, len(real), reduction)


def generator_adversarial_loss(fake_logits: Sequence[Tensor], kind: str = "hinge", reduction: str = "mean") -> Tensor:
    """Adversarial loss of the generator, averaged (``reduction="sum"``: summed) over sub-discriminators.

    ``hinge``: ``mean(relu(1 - D(fake)))``, the clipped form used by Vocos rather than the unbounded
    ``-mean(D(fake))``: with weight-normalised (not Lipschitz-bounded) discriminators an unbounded
    target lets the generator chase ever larger logits. ``lsgan``: ``mean((D(fake) - 1)^2)``.
    """
    _check_kind(kind, reduction)
    fake = _as_list(fake_logits, "fake_logits")
    total = fake[0].new_zeros((), dtype=torch.float32)
    for f in fake:
        f = f.float()
        total = total + (F.relu(1.0 - f).mean() if kind == "hinge" else (f - 1.0).pow(2).mean())
    return _reduce(total, len(fake), reduction)


def feature_matching_loss(
    real_feats: Sequence[Sequence[Tensor]] | Sequence[Tensor],
    fake_feats: Sequence[Sequence[Tensor]] | Sequence[Tensor],
    reduction: str = "mean",
) -> Tensor:
    """Mean L1 between the discriminator's activations on real and fake input (a scalar).

    Takes the ``features`` of two :class:`DiscriminatorOutput` s (or one sub-discriminator's flat
    list); real activations are detached, so the gradient only moves the generator towards the real
    features. Averaged over layers, then over sub-discriminators, so its scale does not grow with depth;
    ``reduction="sum"`` sums both instead (DAC, HiFi-GAN).
    """
    _check_kind("hinge", reduction)
    real, fake = list(real_feats), list(fake_feats)
    if real and isinstance(real[0], Tensor):
        real, fake = [real], [fake]
    if not real or len(real) != len(fake):
        raise ValueError(
            f"got {len(real)} real and {len(fake)} fake feature lists; they must match and be non-empty"
        )
    total = None
    for r_layers, f_layers in zip(real, fake):
        if len(r_layers) != len(f_layers) or not r_layers:
            raise ValueError(f"sub-discriminator has {len(r_layers)} real and {len(f_layers)} fake layers")
        per_disc = _reduce(sum(F.l1_loss(f.float(), r.detach().float()) for r, f in zip(r_layers, f_layers)),
                           len(r_layers), reduction)
        total = per_disc if total is None else total + per_disc
    assert total is not None
    return _reduce(total, len(real), reduction)
