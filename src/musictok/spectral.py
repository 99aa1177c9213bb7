"""Spectral front-end: Slaney Mel filterbank, log-Mel spectrogram, multi-resolution Mel, Griffin-Lim.

Everything here is plain torch so it runs on any device and inside training graphs; librosa is only a
reference in the tests. Conventions, shared by every model that reads Mels:

- waveforms are ``(B, T)`` (a lone ``(T,)`` is treated as ``B = 1``); outputs are always batched;
- a log-Mel is ``(B, n_mels, frames)`` and holds the *natural* log of ``max(mel, log_floor)``
  (divide by ``ln 10`` to get the log10 Mel that codec papers report);
- with ``center=True`` the signal is reflect-padded by ``n_fft // 2`` on each side, so
  ``frames = T // hop_length + 1`` (see :meth:`MelConfig.frames_for`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "DAC_MEL_RESOLUTIONS",
    "band_limit",
    "MelConfig",
    "MelSpectrogram",
    "MultiResolutionMel",
    "griffin_lim",
    "hz_to_mel",
    "mel_filterbank",
    "mel_to_hz",
    "multi_resolution_mel",
]

# Slaney's Auditory Toolbox scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above it with
# 27 mels per factor 6.4 in frequency. librosa's default (htk=False) is the same scale.
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0

# (n_fft, hop_length, n_mels) of the DAC / PyramidCodec multi-scale Mel distance: windows 32…2048,
# hop = window / 4, 5…320 Mel bins.
DAC_MEL_RESOLUTIONS: tuple[tuple[int, int, int], ...] = tuple(
    (w, w // 4, m) for w, m in zip((32, 64, 128, 256, 512, 1024, 2048), (5, 10, 20, 40, 80, 160, 320))
)


def hz_to_mel(freq: np.ndarray | float) -> np.ndarray:
    """Slaney mel of ``freq`` Hz (array in, float64 array out)."""
    f = np.asarray(freq, dtype=np.float64)
    linear = f / _F_SP
    # np.maximum keeps log() away from 0 Hz; the branch is discarded there anyway.
    logarithmic = _MIN_LOG_MEL + np.log(np.maximum(f, 1e-10) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(f >= _MIN_LOG_HZ, logarithmic, linear)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    m = np.asarray(mel, dtype=np.float64)
    linear = m * _F_SP
    logarithmic = _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL))
    return np.where(m >= _MIN_LOG_MEL, logarithmic, linear)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> Tensor:
    """Slaney-scale, Slaney-normalised triangular filters, ``(n_mels, n_fft // 2 + 1)`` float32.

    Equal to ``librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)``
    without needing librosa: triangles whose corners are ``n_mels + 2`` points evenly spaced in mel,
    each scaled by ``2 / bandwidth`` so every filter has the same area (constant energy per band).
    Computed in float64 and rounded once.
    """
    fmax = sample_rate / 2.0 if fmax is None else float(fmax)
    if n_fft < 2 or n_mels < 1:
        raise ValueError(f"need n_fft >= 2 and n_mels >= 1, got n_fft={n_fft}, n_mels={n_mels}")
    if not 0.0 <= fmin < fmax <= sample_rate / 2.0:
        raise ValueError(
            f"need 0 <= fmin < fmax <= sample_rate / 2 = {sample_rate / 2}, got fmin={fmin}, fmax={fmax}"
        )
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    corners = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(corners)  # (n_mels + 1,)
    offsets = corners[:, None] - fft_freqs[None, :]  # (n_mels + 2, n_freqs)
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (corners[2:] - corners[:-2]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


@dataclass
class MelConfig:
    """How a waveform becomes a log-Mel. Defaults: 24 kHz, 1024-point STFT, hop 256 (93.75 frames/s)."""

    sample_rate: int = 24000
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    power: float = 1.0  # 1 = magnitude, 2 = power, applied before the filterbank
    log_floor: float = 1e-5  # log(max(mel, floor)): keeps silence finite
    center: bool = True  # reflect-pad n_fft // 2 both sides (torch.stft's default pad mode)

    def __post_init__(self) -> None:
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must be <= n_fft ({self.n_fft})")
        if self.hop_length < 1 or self.power <= 0 or self.log_floor <= 0:
            raise ValueError("hop_length must be >= 1 and power, log_floor must be > 0")

    @property
    def frame_rate(self) -> float:
        """Mel frames per second."""
        return self.sample_rate / self.hop_length

    def frames_for(self, num_samples: int) -> int:
        """Number of frames for ``num_samples`` samples: ``T // hop + 1`` when centred."""
        if self.center:
            return num_samples // self.hop_length + 1
        if num_samples < self.n_fft:
            return 0
        return (num_samples - self.n_fft) // self.hop_length + 1

    def samples_for(self, num_frames: int) -> int:
        """Length of the signal whose centred STFT has exactly ``num_frames`` frames, hop-aligned."""
        if self.center:
            return (num_frames - 1) * self.hop_length
        return (num_frames - 1) * self.hop_length + self.n_fft


def _as_batch(wav: Tensor) -> Tensor:
    if wav.dim() == 1:
        return wav.unsqueeze(0)
    if wav.dim() != 2:
        raise ValueError(f"expected a waveform (T,) or (B, T), got shape {tuple(wav.shape)}")
    return wav


class MelSpectrogram(nn.Module):
    """Log-Mel spectrogram ``(B, T) -> (B, n_mels, frames)``; natural log of ``max(mel, log_floor)``.

    The Hann window and filterbank are buffers, so ``.to(device)`` moves them and the result does not
    depend on the device beyond float rounding. They are not saved in ``state_dict`` (they are pure
    functions of the config).
    """

    window: Tensor
    filterbank: Tensor

    def __init__(self, config: MelConfig | None = None) -> None:
        super().__init__()
        self.config = config or MelConfig()
        c = self.config
        self.register_buffer("window", torch.hann_window(c.win_length, periodic=True), persistent=False)
        self.register_buffer(
            "filterbank", mel_filterbank(c.sample_rate, c.n_fft, c.n_mels, c.fmin, c.fmax), persistent=False
        )

    def frames_for(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` samples (``T // hop + 1`` when centred)."""
        return self.config.frames_for(num_samples)

    def magnitude(self, wav: Tensor) -> Tensor:
        """Linear STFT magnitude raised to ``power``: ``(B, T) -> (B, n_fft // 2 + 1, frames)``."""
        c = self.config
        wav = _as_batch(wav)
        if c.center and wav.shape[-1] <= c.n_fft // 2:
            raise ValueError(
                f"waveform of {wav.shape[-1]} samples is too short for reflect padding with "
                f"n_fft={c.n_fft}; pad it to at least {c.n_fft // 2 + 1} samples"
            )
        # At least float32 whatever the caller's precision or autocast: log-Mels of quiet passages
        # are dominated by rounding in half precision.
        with torch.autocast(device_type=wav.device.type, enabled=False):
            spec = torch.stft(
                wav.to(self._dtype),
                n_fft=c.n_fft,
                hop_length=c.hop_length,
                win_length=c.win_length,
                window=self.window.to(self._dtype),
                center=c.center,
                pad_mode="reflect",
                return_complex=True,
            )
        mag = spec.abs()
        return mag if c.power == 1.0 else mag.pow(c.power)

    def mel(self, wav: Tensor) -> Tensor:
        """Linear (not logged) Mel spectrogram ``(B, n_mels, frames)``."""
        magnitude = self.magnitude(wav)
        with torch.autocast(device_type=magnitude.device.type, enabled=False):
            return torch.matmul(self.filterbank.to(self._dtype), magnitude)

    def forward(self, wav: Tensor) -> Tensor:
        """``(B, T)`` or ``(T,)`` -> log-Mel ``(B, n_mels, T // hop + 1)``."""
        return self.mel(wav).clamp_min(self.config.log_floor).log()

    @property
    def _dtype(self) -> torch.dtype:
        return torch.float64 if self.window.dtype == torch.float64 else torch.float32


class MultiResolutionMel(nn.Module):
    """Several log-Mels of one waveform at different (n_fft, hop, n_mels), for multi-scale Mel losses.

    A module (rather than a function) so the filterbanks are built once and follow the model's device.
    """

    def __init__(
        self,
        sample_rate: int = 24000,
        resolutions: Sequence[tuple[int, int, int]] = DAC_MEL_RESOLUTIONS,
        fmin: float = 0.0,
        fmax: float | None = None,
        power: float = 1.0,
        log_floor: float = 1e-5,
    ) -> None:
        super().__init__()
        self.mels = nn.ModuleList(
            MelSpectrogram(
                MelConfig(
                    sample_rate=sample_rate,
                    n_fft=n_fft,
                    hop_length=hop,
                    win_length=n_fft,
                    n_mels=n_mels,
                    fmin=fmin,
                    fmax=fmax,
                    power=power,
                    log_floor=log_floor,
                )
            )
            for n_fft, hop, n_mels in resolutions
        )

    def forward(self, wav: Tensor) -> list[Tensor]:
        """``(B, T)`` -> one ``(B, n_mels_i, frames_i)`` log-Mel per resolution."""
        return [mel(wav) for mel in self.mels]


def multi_resolution_mel(
    wav: Tensor,
    sample_rate: int = 24000,
    resolutions: Sequence[tuple[int, int, int]] = DAC_MEL_RESOLUTIONS,
    fmin: float = 0.0,
    fmax: float | None = None,
    power: float = 1.0,
    log_floor: float = 1e-5,
) -> list[Tensor]:
    """One-off :class:`MultiResolutionMel` on ``wav``'s device (build the module once inside a loss)."""
    module = MultiResolutionMel(sample_rate, resolutions, fmin, fmax, power, log_floor).to(wav.device)
    return module(wav)


def griffin_lim(
    log_mel: Tensor,
    mel_config: MelConfig,
    n_iter: int = 32,
    momentum: float = 0.99,
    seed: int = 0,
    length: int | None = None,
) -> Tensor:
    """Invert a natural-log Mel ``(B, n_mels, frames)`` (or ``(n_mels, frames)``) to audio ``(B, T)``.

    A model-free vocoder, for listening to tokens before a neural decoder exists and as a baseline.
    Steps: ``exp``; least-squares linear magnitude through the filterbank's pseudo-inverse, clamped
    at 0 and undoing ``power``; then fast Griffin-Lim (Perraudin et al., 2013), i.e. alternating
    projections with a momentum term ``momentum / (1 + momentum)`` on the previous estimate, from a
    random phase drawn on the CPU from ``seed`` so the result is device- and run-independent.
    ``n_iter = 0`` returns the random-phase inversion. ``length`` defaults to ``(frames - 1) * hop``.
    """
    c = mel_config
    if log_mel.dim() == 2:
        log_mel = log_mel.unsqueeze(0)
    if log_mel.dim() != 3 or log_mel.shape[1] != c.n_mels:
        raise ValueError(f"expected log-Mel (B, {c.n_mels}, frames), got shape {tuple(log_mel.shape)}")
    if n_iter < 0 or not 0.0 <= momentum < 1.0:
        raise ValueError(f"need n_iter >= 0 and 0 <= momentum < 1, got {n_iter}, {momentum}")
    device = log_mel.device
    fb = mel_filterbank(c.sample_rate, c.n_fft, c.n_mels, c.fmin, c.fmax).double()
    inverse = torch.linalg.pinv(fb).float().to(device)  # (n_freqs, n_mels)
    magnitude = torch.matmul(inverse, log_mel.float().exp()).clamp_min(0.0)
    if c.power != 1.0:
        magnitude = magnitude.pow(1.0 / c.power)
    frames = magnitude.shape[-1]
    if length is None:
        length = c.samples_for(frames)
    elif c.frames_for(length) != frames:
        raise ValueError(
            f"length={length} gives {c.frames_for(length)} frames, not {frames}; "
            f"use a length in [{c.samples_for(frames)}, {c.samples_for(frames + 1) - 1}]"
        )
    window = torch.hann_window(c.win_length, periodic=True, device=device)
    stft_args = dict(
        n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length, window=window, center=c.center
    )

    generator = torch.Generator().manual_seed(seed)
    phase = torch.rand(magnitude.shape, generator=generator).to(device) * (2.0 * math.pi)
    return griffin_lim_from(magnitude, torch.polar(torch.ones_like(magnitude), phase), n_iter, length,
                            stft_args, momentum)


def griffin_lim_from(magnitude: Tensor, angles: Tensor, n_iter: int, length: int, stft_args: dict,
                     momentum: float = 0.99) -> Tensor:
    """Fast Griffin-Lim from a given unit-modulus start ``angles`` (same shape as ``magnitude``): the
    iterations of :func:`griffin_lim`, also for starting from a model's phase. ``stft_args``: the
    ``torch.stft`` / ``torch.istft`` keywords of the spectrogram."""
    previous = torch.zeros_like(angles)
    alpha = momentum / (1.0 + momentum)
    for _ in range(n_iter):
        wav = torch.istft(magnitude * angles, length=length, **stft_args)
        rebuilt = torch.stft(wav, pad_mode="reflect", return_complex=True, **stft_args)
        angles = rebuilt - alpha * previous
        angles = angles / angles.abs().clamp_min(1e-16)
        previous = rebuilt
    return torch.istft(magnitude * angles, length=length, **stft_args)


def band_limit(wav: Tensor, factor: int, transition: float = 0.05) -> Tensor:
    """``wav (..., T)`` low-passed at ``1 / factor`` of its bandwidth: what resampling down by ``factor`` and
    back up leaves, with an ideal (FFT) filter and a short raised-cosine transition (``transition`` of the
    cut-off) so the result does not ring. Float32, same shape, differentiable, on ``wav``'s device."""
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    if factor == 1:
        return wav
    n = wav.shape[-1]
    spec = torch.fft.rfft(wav.float(), dim=-1)
    freqs = torch.linspace(0.0, 1.0, spec.shape[-1], device=wav.device)  # fraction of Nyquist
    cut = 1.0 / factor
    lo, hi = cut * (1 - transition), cut
    ramp = ((hi - freqs) / (hi - lo)).clamp(0, 1)
    gain = 0.5 - 0.5 * torch.cos(math.pi * ramp)
    return torch.fft.irfft(spec * gain, n=n, dim=-1)
