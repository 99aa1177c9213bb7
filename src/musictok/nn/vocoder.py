"""A Vocos-style neural vocoder: log-Mel -> waveform, in three swappable parts.

``features`` (a :class:`~musictok.spectral.MelSpectrogram`, waveform -> log-Mel) -> ``backbone`` (a
:class:`~musictok.nn.convnext.ConvNeXtBackbone` at the Mel frame rate) -> ``head`` (an
:class:`ISTFTHead` that predicts each frame's STFT magnitude and phase and inverts it). As in Vocos
(Siuzdenko et al., 2023), the network never upsamples in time: the inverse STFT does, which is why
such a vocoder is small and fast compared with a transposed-conv generator (HiFi-GAN).

Frame arithmetic follows :mod:`musictok.spectral`: a clip of ``T`` samples has ``F = T // hop + 1``
Mel frames, and ``F`` frames are turned back into ``(F - 1) * hop`` samples, or into any ``length``
with ``length // hop + 1 == F`` (pass the original length to get it back exactly).

Precision: the backbone may run under ``torch.autocast`` (bf16); the head always runs in float32,
because ``exp`` of a bf16 log-magnitude is off by up to 0.4 % and ``torch.istft`` wants float32.

Training helpers (the trainer lives elsewhere): :class:`MultiResolutionMelLoss`,
:func:`vocoder_generator_losses` and :func:`vocoder_discriminator_loss`, meant for use with
:class:`~musictok.nn.discriminators.MultiPeriodDiscriminator` and
:class:`~musictok.nn.discriminators.MultiResolutionDiscriminator`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..metrics.reconstruction import MEL_WINDOWS, mel_l1
from ..settings import build_checked
from ..spectral import MelConfig, MelSpectrogram, mel_filterbank
from ..tokens import Fingerprint, config_hash, weights_hash
from .convnext import ConvNeXtBackbone
from .discriminators import (
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)

__all__ = [
    "ISTFTHead",
    "adversarial_losses",
    "MultiResolutionMelLoss",
    "Vocoder",
    "VocoderConfig",
    "VocoderLossWeights",
    "vocoder_discriminator_loss",
    "vocoder_generator_losses",
]


@dataclass
class VocoderConfig:
    """Sizes of a :class:`Vocoder`. Presets: :meth:`tiny` (tests), :meth:`small` (CPU), :meth:`base` (paper).

    Attributes:
        mel: the input log-Mel; the head's hop is ``mel.hop_length`` so one Mel frame is one STFT frame.
        dim, intermediate_dim, num_layers, kernel: ConvNeXt backbone width, MLP width, depth, conv kernel.
        layer_scale_init: initial layer scale of every block; ``None`` means ``1 / num_layers``.
        n_fft: FFT size of the iSTFT head (``n_fft // 2 + 1`` magnitudes and phases per frame).
        max_magnitude: predicted linear magnitudes are clipped here, so an over-confident head cannot
            emit huge (or infinite) samples. A pure tone of amplitude ``a`` peaks at ``a * n_fft / 4``
            (Hann), so with ``n_fft = 1024`` the default 100 caps tones above amplitude 0.39; music
            spreads its energy over many bins and stays well below (Vocos uses the same cap).
        mel_mean, mel_std: fixed normalisation ``(log_mel - mean) / std`` of the input; the defaults
            (0, 1) leave it unchanged. Set them from training data once and they travel with the config.
        magnitude_prior: ``"pinv"`` makes the head predict the log-magnitude as a correction to the
            pseudo-inverse of the Mel filterbank applied to the input Mel (FreeV, Lv et al., 2024), with
            the correction initialised at zero: the model starts from the magnitude Griffin-Lim would
            use and spends its training on phase and detail. ``None`` (default): plain Vocos head.
    """

    mel: MelConfig = field(default_factory=MelConfig)
    dim: int = 256
    intermediate_dim: int = 768
    num_layers: int = 8
    kernel: int = 7
    layer_scale_init: float | None = None
    n_fft: int = 1024
    max_magnitude: float = 1e2
    mel_mean: float = 0.0
    mel_std: float = 1.0
    magnitude_prior: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.mel, dict):
            self.mel = MelConfig(**self.mel)
        if self.magnitude_prior not in (None, "pinv"):
            raise ValueError(f"magnitude_prior must be null or 'pinv', got {self.magnitude_prior!r}")
        if self.magnitude_prior == "pinv" and self.mel.n_fft != self.n_fft:
            raise ValueError(
                f"magnitude_prior 'pinv' needs the head's n_fft ({self.n_fft}) equal to the Mel's "
                f"({self.mel.n_fft}): the prior lives on the Mel's STFT bins"
            )
        if self.dim < 1 or self.intermediate_dim < 1 or self.num_layers < 0:
            raise ValueError(
                f"need dim, intermediate_dim >= 1 and num_layers >= 0, got "
                f"{self.dim}, {self.intermediate_dim}, {self.num_layers}"
            )
        if not 0 < self.mel.hop_length < self.n_fft:
            raise ValueError(
                f"head n_fft ({self.n_fft}) must exceed the Mel hop ({self.mel.hop_length}) for the "
                "overlap-add to be invertible"
            )
        if not self.mel.center:
            raise ValueError("the vocoder assumes centred Mel frames (MelConfig(center=True))")
        if self.max_magnitude <= 0 or self.mel_std <= 0:
            raise ValueError(
                f"max_magnitude and mel_std must be > 0, got {self.max_magnitude}, {self.mel_std}"
            )

    @property
    def hop_length(self) -> int:
        """Samples per frame, shared by the Mel input and the iSTFT output."""
        return self.mel.hop_length

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (``mel`` nested)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VocoderConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error, not silently dropped."""
        data = dict(data)
        if isinstance(data.get("mel"), dict):
            data["mel"] = build_checked(MelConfig, data["mel"])
        return build_checked(cls, data)

    @classmethod
    def tiny(cls, **overrides: Any) -> VocoderConfig:
        """For tests: overfits a clip in seconds (about 72k parameters)."""
        return cls(**{"dim": 32, "intermediate_dim": 64, "num_layers": 2, **overrides})

    @classmethod
    def small(cls, **overrides: Any) -> VocoderConfig:
        """Trainable on a CPU, a few MB on disk (about 0.85M parameters; the bare defaults are 3.7M)."""
        return cls(**{"dim": 128, "intermediate_dim": 384, "num_layers": 6, **overrides})

    @classmethod
    def base(cls, **overrides: Any) -> VocoderConfig:
        """The Vocos paper's scale (dim 512, MLP 1536, 8 layers; about 13.6M parameters), for GPUs."""
        return cls(**{"dim": 512, "intermediate_dim": 1536, "num_layers": 8, **overrides})


class ISTFTHead(nn.Module):
    """Frame features ``(B, dim, F)`` -> waveform ``(B, (F - 1) * hop)`` through a predicted STFT.

    A linear layer predicts, per frame, ``n_fft // 2 + 1`` log-magnitudes and as many phase angles.
    The magnitude is ``exp`` of the first, clipped at ``max_magnitude``; the phase enters only through
    ``cos`` and ``sin`` of the second, so the network never has to model the angle's wrap-around.
    ``torch.istft`` (Hann window, centred) then overlap-adds the frames.
    """

    window: Tensor

    def __init__(self, dim: int, n_fft: int, hop: int, max_magnitude: float = 1e2) -> None:
        super().__init__()
        if not 0 < hop < n_fft:
            raise ValueError(
                f"need 0 < hop < n_fft for an invertible overlap-add, got hop={hop}, n_fft={n_fft}"
            )
        if max_magnitude <= 0:
            raise ValueError(f"max_magnitude must be > 0, got {max_magnitude}")
        self.n_fft, self.hop, self.max_magnitude = n_fft, hop, float(max_magnitude)
        self.n_freqs = n_fft // 2 + 1
        self.proj = nn.Linear(dim, 2 * self.n_freqs)
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)

    def forward(self, x: Tensor, length: int | None = None, log_magnitude_prior: Tensor | None = None,
                return_phase: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """``(B, dim, F) -> (B, (F - 1) * hop)``, or ``(B, length)``; float32 whatever the autocast.

        ``log_magnitude_prior`` ``(B, n_fft // 2 + 1, F)``: when given, the predicted log-magnitude is a
        correction added to it. ``return_phase``: also the predicted angles ``(B, n_fft // 2 + 1, F)``, for a
        loss on the phase itself (:func:`phase_losses`).
        """
        with torch.autocast(device_type=x.device.type, enabled=False):
            out = self.proj(x.float().transpose(1, 2)).transpose(1, 2)  # (B, 2 * n_freqs, F)
            log_mag, angle = out.chunk(2, dim=1)
            if log_magnitude_prior is not None:
                log_mag = log_mag + log_magnitude_prior.float()
            wav = self.synthesize(log_mag, angle, length)
            return (wav, angle) if return_phase else wav

    def zero_magnitude(self) -> None:
        """Zero the log-magnitude rows of the projection, so a prior passes through unchanged."""
        with torch.no_grad():
            self.proj.weight[: self.n_freqs].zero_()
            self.proj.bias[: self.n_freqs].zero_()

    def synthesize(self, log_magnitude: Tensor, phase: Tensor, length: int | None = None) -> Tensor:
        """Inverse STFT of ``clip(exp(log_magnitude)) * exp(i phase)``, both ``(B, n_fft // 2 + 1, F)``.

        Clamping the log-magnitude at ``log(max_magnitude)`` *before* ``exp`` gives the same value as
        clipping after it, but a huge input never becomes ``inf`` (whose gradient through the clip
        would be ``inf * 0 = nan``).
        """
        shape = log_magnitude.shape
        if shape != phase.shape or len(shape) != 3 or shape[1] != self.n_freqs:
            raise ValueError(
                f"expected log_magnitude and phase of shape (B, {self.n_freqs}, F), got "
                f"{tuple(log_magnitude.shape)} and {tuple(phase.shape)}"
            )
        frames = log_magnitude.shape[-1]
        if length is not None and length // self.hop + 1 != frames:
            raise ValueError(
                f"length={length} gives {length // self.hop + 1} frames, not {frames}; use a length in "
                f"[{(frames - 1) * self.hop}, {frames * self.hop - 1}]"
            )
        with torch.autocast(device_type=log_magnitude.device.type, enabled=False):
            magnitude = log_magnitude.float().clamp(max=math.log(self.max_magnitude)).exp()
            phase = phase.float()
            spec = torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))
            return torch.istft(
                spec, self.n_fft, self.hop, self.n_fft, window=self.window.float(), center=True, length=length
            )


class Vocoder(nn.Module):
    """Log-Mel ``(B, n_mels, F)`` -> waveform ``(B, (F - 1) * hop)``: features / backbone / head.

    ``features`` computes the log-Mel this vocoder expects (same :class:`MelConfig`); it has no
    parameters and its buffers are not saved, so ``state_dict`` holds only backbone and head.
    """

    def __init__(self, config: VocoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or VocoderConfig()
        c = self.config
        self.features = MelSpectrogram(c.mel)
        self.backbone = ConvNeXtBackbone(
            c.mel.n_mels, c.dim, c.intermediate_dim, c.num_layers, c.layer_scale_init, c.kernel
        )
        self.head = ISTFTHead(c.dim, c.n_fft, c.hop_length, c.max_magnitude)
        if c.magnitude_prior == "pinv":
            fb = mel_filterbank(c.mel.sample_rate, c.mel.n_fft, c.mel.n_mels, c.mel.fmin, c.mel.fmax).double()
            self.register_buffer("mel_pinv", torch.linalg.pinv(fb).float(), persistent=False)
            self.head.zero_magnitude()

    def magnitude_prior(self, log_mel: Tensor) -> Tensor:
        """``(B, n_mels, F)`` natural-log Mel -> ``(B, n_fft // 2 + 1, F)`` log-magnitude from the
        filterbank's pseudo-inverse (negative values clamped to the Mel's floor), undoing ``mel.power``."""
        c = self.config.mel
        with torch.autocast(device_type=log_mel.device.type, enabled=False):
            linear = torch.matmul(self.mel_pinv, log_mel.float().exp()).clamp_min(c.log_floor)
            return linear.log() / c.power

    def forward(self, log_mel: Tensor, length: int | None = None,
                return_phase: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """``(B, n_mels, F)`` (or ``(n_mels, F)``) natural-log Mel -> ``(B, (F - 1) * hop)`` float32.

        ``length``: output samples, any value with ``length // hop + 1 == F`` (the original length).
        ``return_phase``: also the head's predicted phase ``(B, n_fft // 2 + 1, F)`` (training).
        """
        if log_mel.dim() == 2:
            log_mel = log_mel.unsqueeze(0)
        n_mels = self.config.mel.n_mels
        if log_mel.dim() != 3 or log_mel.shape[1] != n_mels:
            raise ValueError(f"expected a log-Mel (B, {n_mels}, frames), got shape {tuple(log_mel.shape)}")
        x = (log_mel - self.config.mel_mean) / self.config.mel_std
        prior = self.magnitude_prior(log_mel) if self.config.magnitude_prior else None
        return self.head(self.backbone(x), length=length, log_magnitude_prior=prior, return_phase=return_phase)

    def wav_to_mel(self, wav: Tensor) -> Tensor:
        """``(B, T)`` or ``(T,)`` -> the log-Mel ``(B, n_mels, T // hop + 1)`` this vocoder inverts."""
        return self.features(wav)

    def resynthesize(self, wav: Tensor) -> Tensor:
        """``(B, T)`` -> ``(B, T)``: Mel analysis then synthesis at the original length (copy synthesis)."""
        if wav.dim() == 1:
            wav = wav.unsqueeze(0)
        return self(self.wav_to_mel(wav), length=wav.shape[-1])


# ------------------------------------------------------------------------------------ training
def _as_mono(wav: Tensor, name: str) -> Tensor:
    if wav.dim() == 3 and wav.shape[1] == 1:
        wav = wav[:, 0]
    if wav.dim() == 1:
        wav = wav.unsqueeze(0)
    if wav.dim() != 2:
        raise ValueError(f"{name} must be (T,), (B, T) or (B, 1, T), got shape {tuple(wav.shape)}")
    return wav


class MultiResolutionMelLoss(nn.Module):
    """The evaluation Mel distance as a loss: batch mean of
    :func:`musictok.metrics.reconstruction.mel_l1`, ``(real, fake) -> scalar``.

    The reconstruction term of GAN vocoders and codecs: several (n_fft, hop, n_mels) trade time for
    frequency resolution so neither smearing nor pre-echo goes unpunished. It is the DAC / PyramidCodec
    definition of :func:`~musictok.metrics.reconstruction.mel_distance` (log10 magnitudes floored at 1e-5,
    L1 summed over the resolutions), restricted to ``windows`` when a CPU budget leaves the shortest ones
    out, so a training log's Mel term reads in the metric's units. (Until issue 12 this loss used natural
    logs averaged over the resolutions: with all 7 resolutions, the new value is ``7 / ln 10 ≈ 3.04``
    times the old, and the vocoder's default ``mel`` weight was divided by that factor.) The reference
    is treated as constant.
    """

    def __init__(self, sample_rate: int = 24000, windows: Sequence[int] = MEL_WINDOWS) -> None:
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.windows = tuple(int(w) for w in windows)
        if not self.windows or set(self.windows) - set(MEL_WINDOWS):
            raise ValueError(f"windows must be a non-empty subset of {list(MEL_WINDOWS)}, got {list(windows)}")

    def forward(self, wav_real: Tensor, wav_fake: Tensor) -> Tensor:
        """``(B, T)`` (or ``(T,)``, ``(B, 1, T)``) pair of equal shape -> 0-d tensor."""
        real, fake = _as_mono(wav_real, "wav_real"), _as_mono(wav_fake, "wav_fake")
        if real.shape != fake.shape:
            raise ValueError(
                f"wav_real {tuple(real.shape)} and wav_fake {tuple(fake.shape)} differ; "
                "trim or pass length= to the vocoder so they match"
            )
        return mel_l1(real.detach(), fake, self.sample_rate, self.windows).mean()


@dataclass
class VocoderLossWeights:
    """Weights of the generator's loss terms; HiFi-GAN's / Vocos' ratios as a starting point.

    ``fm`` multiplies a *layer-averaged* feature-matching loss (see
    :func:`~musictok.nn.discriminators.feature_matching_loss`), so it is smaller per unit of weight
    than HiFi-GAN's layer sum.
    """

    mel: float = 45.0 * math.log(10) / 7  # ≈ 14.8: Vocos' 45 on the old natural-log mean, in DAC's units
    adv: float = 1.0
    fm: float = 2.0
    phase: float = 0.0  # APNet's anti-wrapping phase losses (:func:`phase_losses`); APNet weighs them 100


def anti_wrapping(x: Tensor) -> Tensor:
    """``|x − 2π · round(x / 2π)|``: the distance of an angle difference to the nearest whole turn, so a phase
    error of 2π − ε costs ε, not 2π − ε (APNet, Ai & Ling, 2023)."""
    return (x - 2 * math.pi * torch.round(x / (2 * math.pi))).abs()


def phase_losses(phase: Tensor, wav: Tensor, n_fft: int, hop: int) -> dict[str, Tensor]:
    """APNet's three phase losses between predicted angles ``(B, n_fft // 2 + 1, F)`` and the phase of
    ``wav``'s centred Hann STFT (the head's framing): instantaneous phase, group delay (its difference along
    frequency) and instantaneous angular frequency (along time), each the mean anti-wrapped error.

    Why: the Mel loss and the discriminators judge the phase only through the overlap-added waveform, and on
    real music the head's phase is what loses to Griffin-Lim (``benchmarks/vocoder_phase.py``); these
    supervise it directly, frame by frame. Float32 whatever the autocast."""
    with torch.autocast(device_type=wav.device.type, enabled=False):
        window = torch.hann_window(n_fft, periodic=True, device=wav.device)
        true = torch.angle(torch.stft(_as_mono(wav, "wav").float(), n_fft, hop, n_fft, window=window,
                                      center=True, return_complex=True))
        pred = phase.float()
        if pred.shape != true.shape:
            raise ValueError(f"predicted phase {tuple(pred.shape)} does not match the STFT's {tuple(true.shape)}")
        return {"ip": anti_wrapping(pred - true).mean(),
                "gd": anti_wrapping(pred.diff(dim=1) - true.diff(dim=1)).mean(),
                "iaf": anti_wrapping(pred.diff(dim=2) - true.diff(dim=2)).mean()}


def vocoder_generator_losses(
    wav_real: Tensor,
    wav_fake: Tensor,
    discriminators: Sequence[nn.Module],
    mel_loss: MultiResolutionMelLoss,
    weights: VocoderLossWeights | None = None,
    kind: str = "hinge",
    reduction: str = "mean",
) -> dict[str, Tensor]:
    """Generator step: ``{"mel", "adv", "fm", "total"}`` scalars, ``total`` the weighted sum to backprop.

    ``adv`` and ``fm`` are summed over ``discriminators`` (e.g. ``[mpd, mrd]``), each of which returns a
    :class:`~musictok.nn.discriminators.DiscriminatorOutput`. Real activations are detached inside the
    feature-matching loss; gradients reach the generator through ``wav_fake``.
    """
    weights = weights or VocoderLossWeights()
    real, fake = _as_mono(wav_real, "wav_real"), _as_mono(wav_fake, "wav_fake")
    losses = {"mel": mel_loss(real, fake)}
    adv, fm = adversarial_losses(real, fake, discriminators, kind, reduction)
    losses["adv"], losses["fm"] = adv, fm
    losses["total"] = weights.mel * losses["mel"] + weights.adv * adv + weights.fm * fm
    return losses


def adversarial_losses(wav_real: Tensor, wav_fake: Tensor, discriminators: Sequence[nn.Module],
                       kind: str = "hinge", reduction: str = "mean") -> tuple[Tensor, Tensor]:
    """Generator side of the GAN: adversarial and feature-matching losses summed over ``discriminators``
    (real activations without gradient; gradients reach the generator through ``wav_fake``); within one,
    sub-discriminators and layers are combined by ``reduction`` (``"sum"``: DAC's convention)."""
    real, fake = _as_mono(wav_real, "wav_real"), _as_mono(wav_fake, "wav_fake")
    adv = fm = real.new_zeros((), dtype=torch.float32)
    for disc in discriminators:
        with torch.no_grad():
            real_out = disc(real)
        fake_out = disc(fake)
        adv = adv + generator_adversarial_loss(fake_out.logits, kind, reduction)
        fm = fm + feature_matching_loss(real_out.features, fake_out.features, reduction)
    return adv, fm


def vocoder_discriminator_loss(
    wav_real: Tensor, wav_fake: Tensor, discriminators: Sequence[nn.Module], kind: str = "hinge",
    reduction: str = "mean",
) -> Tensor:
    """Discriminator step: sum over ``discriminators`` of :func:`discriminator_loss` (a scalar).

    ``wav_fake`` is detached here, so this step never reaches the generator.
    """
    real, fake = _as_mono(wav_real, "wav_real"), _as_mono(wav_fake, "wav_fake").detach()
    total = real.new_zeros((), dtype=torch.float32)
    for disc in discriminators:
        total = total + discriminator_loss(disc(real).logits, disc(fake).logits, kind, reduction)
    return total


def vocoder_fingerprint(vocoder: Vocoder, state: dict[str, Tensor] | None = None) -> Fingerprint:
    """Name + config hash + weights hash, as tokenizers have: which vocoder a result or a fine-tune came from.
    ``state``: hash these weights instead of the vocoder's own (its weights as a saved folder loads them)."""
    return Fingerprint("vocoder", config_hash(vocoder.config.to_dict()),
                       weights_hash(vocoder.state_dict() if state is None else state))


def save_vocoder(vocoder: Vocoder, directory: str | Path, extra: dict | None = None, *,
                 storage_dtype: torch.dtype | None = None) -> Path:
    """Write a vocoder folder (``config.json`` + ``model.safetensors``, atomically), with its fingerprint.
    ``storage_dtype=torch.float16`` halves the file; the fingerprint is then that of the rounded weights."""
    from .. import pretrained

    weights = pretrained.for_storage(vocoder.state_dict(), storage_dtype)
    meta = {"model": "vocoder", "config": vocoder.config.to_dict(),
            "fingerprint": asdict(vocoder_fingerprint(vocoder, weights.loaded)), "storage_dtype": weights.dtype}
    return pretrained.write(directory, weights.stored, meta | (extra or {}))


def load_vocoder(name_or_dir: str | Path, map_location: str | torch.device = "cpu") -> Vocoder:
    """Load a vocoder folder written by :func:`save_vocoder` (by path or bundled name)."""
    from .. import pretrained

    d, meta, state = pretrained.read(name_or_dir, map_location)
    if meta.get("model") != "vocoder":
        raise pretrained.PretrainedError(f"{d}: not a vocoder folder")
    vocoder = Vocoder(VocoderConfig.from_dict(meta["config"]))
    vocoder.load_state_dict(state)
    return vocoder.to(map_location).eval()
