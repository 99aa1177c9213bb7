"""Reconstruction fidelity of a decoded waveform against its reference.

The definitions follow the codec literature so numbers are comparable with
published tables (DAC; PyramidCodec, Sec. 4.2.2):

- Mel distance: 7 resolutions with windows 32, 64, ..., 2048 samples, hop =
  window / 4, 5, 10, ..., 320 Mel bands (Slaney filterbank from 0 Hz to Nyquist),
  Mel of the STFT *magnitude*; per resolution the mean absolute difference of
  ``log10(max(mel, 1e-5))``, **summed** over the 7 resolutions.
- STFT distance: the same log-magnitude L1 on the linear STFT with windows
  2048 and 512, **averaged** over the windows (so it reads as one L1 value).
- Waveform L1, SI-SDR (scale-invariant SDR, Le Roux et al. 2019) and a plain SDR.

Signals are ``(T,)``, ``(B, T)`` or ``(B, 1, T)`` (mono); per-item metrics
return ``(B,)`` tensors, or a 0-d tensor for a ``(T,)`` input. Everything runs
with ``torch.stft`` on whatever device the signals live on.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from .. import spectral

__all__ = [
    "MEL_WINDOWS",
    "MEL_BANDS",
    "STFT_WINDOWS",
    "mel_filterbank",
    "log_floored",
    "log_mel_magnitude",
    "mel_magnitude",
    "mel_distance",
    "mel_l1",
    "stft_distance",
    "waveform_l1",
    "si_sdr",
    "sdr",
    "ReconstructionResult",
    "reconstruction_metrics",
]

MEL_WINDOWS: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048)
MEL_BANDS: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320)
STFT_WINDOWS: tuple[int, ...] = (2048, 512)
LOG_FLOOR = 1e-5  # the floor of DAC's log-Mel loss; silence maps to -5 in log10 units


# --------------------------------------------------------------------------- input handling
def _as_batch(x: Tensor, name: str) -> tuple[Tensor, bool]:
    """``(T,) | (B, T) | (B, 1, T)`` -> ``(B, T)`` float, plus whether the input was 1-D."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 3:
        if x.shape[1] != 1:
            raise ValueError(
                f"{name} has shape {tuple(x.shape)}: only mono (B, 1, T) is supported; "
                "mix down or fold channels into the batch first"
            )
        x = x[:, 0]
    elif x.ndim not in (1, 2):
        raise ValueError(f"{name} must be shaped (T,), (B, T) or (B, 1, T), got {tuple(x.shape)}")
    squeeze = x.ndim == 1
    if squeeze:
        x = x.unsqueeze(0)
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()  # half precision FFTs are not available on CPU and too coarse for metrics
    return x, squeeze


def _pair(ref: Tensor, est: Tensor, align: bool) -> tuple[Tensor, Tensor, bool]:
    """Validate a (reference, estimate) pair and return them as ``(B, T)`` of one dtype/length."""
    r, squeeze_r = _as_batch(ref, "ref")
    e, squeeze_e = _as_batch(est, "est")
    if r.shape[0] != e.shape[0]:
        raise ValueError(f"ref has batch size {r.shape[0]}, est has {e.shape[0]}; they must match")
    if r.device != e.device:
        raise ValueError(f"ref is on {r.device}, est on {e.device}; move them to the same device")
    tr, te = r.shape[-1], e.shape[-1]
    if tr != te:
        if not align:
            raise ValueError(
                f"ref has {tr} samples, est has {te}; pass align=True to trim to the shorter"
            )
        t = min(tr, te)
        r, e = r[..., :t], e[..., :t]
    if r.shape[-1] == 0:
        raise ValueError("signals are empty")
    for name, x in (("ref", r), ("est", e)):
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains NaN or Inf samples; metrics would be meaningless")
    dtype = torch.promote_types(r.dtype, e.dtype)
    return r.to(dtype), e.to(dtype), squeeze_r and squeeze_e


def _check_rates(sample_rate: int, est_sample_rate: int | None) -> None:
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if est_sample_rate is not None and int(est_sample_rate) != int(sample_rate):
        raise ValueError(
            f"ref is at {sample_rate} Hz but est is at {est_sample_rate} Hz; "
            "resample the estimate to the reference rate first (musictok.audio)"
        )


def _out(values: Tensor, squeeze: bool) -> Tensor:
    return values[0] if squeeze else values


# --------------------------------------------------------------------------- spectra
@functools.lru_cache(maxsize=64)
def _cached_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> Tensor:
    return spectral.mel_filterbank(sample_rate, n_fft, n_mels)  # librosa's Slaney filters, 0 Hz to Nyquist


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """``(n_mels, n_fft // 2 + 1)`` Slaney-style Mel filterbank (librosa's default), 0 Hz to Nyquist.

    Built once per ``(sample_rate, n_fft, n_mels)``; only the device copy is made per call.
    """
    fb = _cached_filterbank(int(sample_rate), int(n_fft), int(n_mels))
    return fb.to(device=device, dtype=dtype)


def _stft_magnitude(x: Tensor, window: int) -> Tensor:
    """``(B, T)`` -> ``(B, window // 2 + 1, frames)`` magnitude; Hann window, hop window/4, centred."""
    if x.shape[-1] <= window // 2:
        raise ValueError(
            f"signal has {x.shape[-1]} samples but a {window}-sample window needs more than "
            f"{window // 2} (reflect padding); use longer clips"
        )
    spec = torch.stft(
        x,
        n_fft=window,
        hop_length=window // 4,
        win_length=window,
        window=torch.hann_window(window, periodic=True, dtype=x.dtype, device=x.device),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    return spec.abs()


def mel_magnitude(x: Tensor, sample_rate: int, window: int, n_mels: int) -> Tensor:
    """``Mel(|STFT|)`` of a ``(B, T)`` signal at one resolution of the Mel distance, before the log (for
    magnitudes that are combined first, e.g. summed in power over stems): ``(B, n_mels, frames)``."""
    with torch.autocast(x.device.type, enabled=False):  # quiet passages drown in bf16 rounding
        x = x if x.dtype in (torch.float32, torch.float64) else x.float()
        mag = _stft_magnitude(x, window)
        fb = mel_filterbank(sample_rate, window, n_mels, device=x.device, dtype=x.dtype)
        return fb @ mag


def log_floored(magnitude: Tensor) -> Tensor:
    """``log10(max(magnitude, 1e-5))``: the log domain every distance of this module compares in."""
    return torch.log10(torch.clamp(magnitude, min=LOG_FLOOR))


def log_mel_magnitude(x: Tensor, sample_rate: int, window: int, n_mels: int) -> Tensor:
    """``log10(max(Mel(|STFT|), 1e-5))`` of a ``(B, T)`` signal at one resolution.

    Returns:
        ``(B, n_mels, frames)``.
    """
    return log_floored(mel_magnitude(x, sample_rate, window, n_mels))


# --------------------------------------------------------------------------- distances
def mel_l1(ref: Tensor, est: Tensor, sample_rate: int, windows: Sequence[int] = MEL_WINDOWS) -> Tensor:
    """The Mel distance's sum over resolutions for ``(B, T)`` pairs -> ``(B,)``: the one definition that
    :func:`mel_distance` (the metric) and :class:`musictok.nn.vocoder.MultiResolutionMelLoss` (the
    training loss) share, so a training log's Mel term and the evaluation's are in the same units.

    ``windows`` is a subset of ``MEL_WINDOWS``, each with its DAC band count (``MEL_BANDS``). No input
    checks; differentiable with respect to both signals (the clamp at the floor passes no gradient).
    """
    bands = dict(zip(MEL_WINDOWS, MEL_BANDS))
    unknown = [w for w in windows if w not in bands]
    if unknown or not windows:
        raise ValueError(f"windows must be a non-empty subset of {list(MEL_WINDOWS)}, got {list(windows)}")
    total = torch.zeros((), device=ref.device)
    for window in windows:
        log_r = log_mel_magnitude(ref, sample_rate, window, bands[window])
        log_e = log_mel_magnitude(est, sample_rate, window, bands[window])
        total = total + (log_r - log_e).abs().mean(dim=(-2, -1))
    return total


def mel_distance(
    ref: Tensor,
    est: Tensor,
    sample_rate: int,
    *,
    align: bool = False,
    est_sample_rate: int | None = None,
) -> Tensor:
    """Multi-resolution log-Mel L1 distance (DAC / PyramidCodec definition; lower is better).

    ``sum_r mean |log10 max(M_r ref, 1e-5) - log10 max(M_r est, 1e-5)|`` over the
    7 resolutions ``r`` of ``MEL_WINDOWS`` x ``MEL_BANDS``; the mean runs over
    bands and frames of each item. The codec and vocoder training losses are the
    same quantity (:func:`mel_l1`), averaged over the batch.

    Args:
        ref, est: ``(T,)``, ``(B, T)`` or ``(B, 1, T)``; ``T > 1024`` samples.
        sample_rate: Hz, sets the Mel scale up to Nyquist.
        align: trim both to the shorter length instead of raising on a mismatch.
        est_sample_rate: if given, must equal ``sample_rate`` (guards against
            comparing a 24 kHz reference with a 16 kHz decode).
    Returns:
        ``(B,)`` distances, or a 0-d tensor for ``(T,)`` inputs.

    At 48 kHz the lowest band of the two coarsest resolutions has no FFT bin
    (the filterbank row is zero); it then contributes 0 but still counts in the
    mean, exactly as in DAC's implementation. At 16-44.1 kHz every band is non-empty.
    """
    _check_rates(sample_rate, est_sample_rate)
    r, e, squeeze = _pair(ref, est, align)
    return _out(mel_l1(r, e, sample_rate), squeeze)


def stft_distance(
    ref: Tensor,
    est: Tensor,
    *,
    windows: Sequence[int] = STFT_WINDOWS,
    align: bool = False,
) -> Tensor:
    """Log-magnitude STFT L1 distance, **mean** over ``windows`` (lower is better).

    Per window: Hann, hop = window / 4, centred; mean over bins and frames of
    ``|log10 max(|S ref|, 1e-5) - log10 max(|S est|, 1e-5)|``. Unlike the Mel
    distance (a sum over its 7 resolutions), the windows are averaged, so the
    value does not grow with the number of windows.

    Args:
        ref, est: ``(T,)``, ``(B, T)`` or ``(B, 1, T)``; ``T > max(windows) / 2``.
    Returns:
        ``(B,)`` distances, or a 0-d tensor for ``(T,)`` inputs.
    """
    windows = [int(w) for w in windows]
    if not windows or min(windows) < 2:
        raise ValueError(f"windows must be STFT sizes >= 2, got {windows}")
    r, e, squeeze = _pair(ref, est, align)
    total = torch.zeros(r.shape[0], dtype=r.dtype, device=r.device)
    for window in windows:
        lr, le = log_floored(_stft_magnitude(r, window)), log_floored(_stft_magnitude(e, window))
        total = total + (lr - le).abs().mean(dim=(-2, -1))
    return _out(total / len(windows), squeeze)


def waveform_l1(ref: Tensor, est: Tensor, *, align: bool = False) -> Tensor:
    """Mean absolute sample difference per item: ``(B,)`` or 0-d for ``(T,)`` inputs."""
    r, e, squeeze = _pair(ref, est, align)
    return _out((r - e).abs().mean(dim=-1), squeeze)


def si_sdr(ref: Tensor, est: Tensor, *, align: bool = False, eps: float = 1e-8) -> Tensor:
    """Scale-invariant SDR in dB (Le Roux et al., 2019); higher is better.

    Both signals are made zero-mean; the target is the projection of the
    estimate on the reference, ``s_t = (<est, ref> / ||ref||^2) ref``, and
    ``SI-SDR = 10 log10(||s_t||^2 / ||est - s_t||^2)``. ``eps`` is added to each
    energy so a silent estimate gives a finite number. Insensitive to gain,
    sensitive to phase, which spectral distances are not.

    Returns:
        ``(B,)`` in dB, or 0-d for ``(T,)`` inputs; NaN (undefined) where the
        reference is silent (mean power under ``SILENT_POWER``): there is no
        target to project on, and any number would only measure ``eps``.
    """
    r, e, squeeze = _pair(ref, est, align)
    r = r - r.mean(dim=-1, keepdim=True)
    e = e - e.mean(dim=-1, keepdim=True)
    scale = (e * r).sum(dim=-1, keepdim=True) / ((r * r).sum(dim=-1, keepdim=True) + eps)
    target = scale * r
    noise = e - target
    ratio = (target.pow(2).sum(dim=-1) + eps) / (noise.pow(2).sum(dim=-1) + eps)
    return _out(_undefined_where_silent(r, 10.0 * torch.log10(ratio)), squeeze)


SILENT_POWER = 1e-12  # mean square of -120 dBFS: a reference this quiet has no signal to compare with


def _undefined_where_silent(ref: Tensor, values: Tensor) -> Tensor:
    silent = ref.pow(2).mean(dim=-1) < SILENT_POWER
    return torch.where(silent, torch.full_like(values, float("nan")), values)


def sdr(ref: Tensor, est: Tensor, *, align: bool = False, eps: float = 1e-8) -> Tensor:
    """Plain SDR in dB: ``10 log10(||ref||^2 / ||ref - est||^2)``, no rescaling, no mean removal.

    This is *not* BSS-eval's SDR (which first projects the estimate on
    filtered versions of the reference and so forgives short filters); a gain
    error counts fully here. ``eps`` keeps a perfect estimate finite.

    Returns:
        ``(B,)`` in dB, or 0-d for ``(T,)`` inputs; NaN (undefined) where the
        reference is silent.
    """
    r, e, squeeze = _pair(ref, est, align)
    ratio = (r.pow(2).sum(dim=-1) + eps) / ((r - e).pow(2).sum(dim=-1) + eps)
    return _out(_undefined_where_silent(r, 10.0 * torch.log10(ratio)), squeeze)


# --------------------------------------------------------------------------- summary
@dataclass
class ReconstructionResult:
    """Batch-averaged reconstruction metrics (see the module docstring for definitions)."""

    mel_distance: float
    stft_distance: float
    waveform_l1: float
    si_sdr: float  # dB
    sdr: float  # dB, plain (not BSS-eval)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def reconstruction_metrics(
    ref: Tensor,
    est: Tensor,
    sample_rate: int,
    *,
    align: bool = False,
    est_sample_rate: int | None = None,
) -> ReconstructionResult:
    """All reconstruction metrics, each averaged over the batch items where it is defined (NaN when it
    is defined for none, e.g. SI-SDR of silent references).

    Args:
        ref, est: ``(T,)``, ``(B, T)`` or ``(B, 1, T)`` mono waveforms at ``sample_rate``.
    """
    _check_rates(sample_rate, est_sample_rate)
    r, e, _ = _pair(ref, est, align)  # validate and align once; the rest sees equal lengths

    def mean(x: Tensor) -> float:
        x = x.double().reshape(-1)
        x = x[~torch.isnan(x)]
        return float(x.mean()) if x.numel() else float("nan")

    return ReconstructionResult(
        mel_distance=mean(mel_distance(r, e, sample_rate)),
        stft_distance=mean(stft_distance(r, e)),
        waveform_l1=mean(waveform_l1(r, e)),
        si_sdr=mean(si_sdr(r, e)),
        sdr=mean(sdr(r, e)),
    )
