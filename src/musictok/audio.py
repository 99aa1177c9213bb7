"""Audio in and out: load, resample, downmix, normalise, save.

Every expected failure (missing file, not audio, truncated, empty, NaN/Inf samples, absurd sample rate)
raises one exception type, :class:`AudioError`, whose message names the file and the cause, so the CLI
can print one line and exit non-zero instead of a traceback.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from .atomic import atomic_path
from .errors import MusictokError

# Sample rates outside this range are almost certainly a corrupt header, not real audio.
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".w64")


class AudioError(MusictokError):
    """A file that cannot be used as audio; the message says which file and why."""


@dataclass
class AudioInfo:
    """What `musictok info` prints for one file."""

    path: str
    duration: float
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str
    peak_dbfs: float
    loudness_lufs: float

    def to_dict(self) -> dict:
        return asdict(self)


def _check_rate(path: str | os.PathLike | None, sample_rate: int) -> None:
    if not (MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE):
        raise AudioError(
            path, f"sample rate {sample_rate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz"
        )


def _check_samples(path: str | os.PathLike | None, wav: np.ndarray) -> None:
    if wav.size == 0:
        raise AudioError(path, "audio has zero length")
    if not np.all(np.isfinite(wav)):
        bad = int(np.size(wav) - np.count_nonzero(np.isfinite(wav)))
        raise AudioError(path, f"audio contains {bad} NaN/Inf samples")


def load(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    mono: bool = True,
    *,
    offset: float = 0.0,
    duration: float | None = None,
) -> tuple[np.ndarray, int]:
    """Read any file libsndfile understands (WAV, FLAC, OGG/Vorbis, Opus, MP3, ...).

    Returns ``(wav, sr)`` with ``wav`` float32 shaped ``(T,)`` when ``mono`` else ``(C, T)``; resampled to
    ``sample_rate`` when given. ``offset``/``duration`` (seconds) read a window without decoding the rest.
    """
    p = Path(path)
    if not p.exists():
        raise AudioError(p, "file not found")
    if p.is_dir():
        raise AudioError(p, "is a directory, not an audio file")
    if p.stat().st_size == 0:
        raise AudioError(p, "file is empty (0 bytes)")
    try:
        with sf.SoundFile(str(p)) as f:
            _check_rate(p, f.samplerate)
            sr = int(f.samplerate)
            if f.frames == 0:
                raise AudioError(p, "audio has zero length")
            start = int(round(offset * sr))
            if start:
                f.seek(min(start, f.frames))
            n = -1 if duration is None else int(round(duration * sr))
            data = f.read(frames=n, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except sf.LibsndfileError as e:  # not audio, truncated header, unsupported codec
        raise AudioError(p, f"cannot be decoded as audio ({_clean(e)})") from None
    except (RuntimeError, ValueError, OSError) as e:
        raise AudioError(p, f"cannot be read ({_clean(e)})") from None
    wav = data.T  # (C, T)
    _check_samples(p, wav)
    if mono:
        wav = to_mono(wav)
    if sample_rate is not None and sample_rate != sr:
        wav = resample(wav, sr, sample_rate)
        sr = sample_rate
    return np.ascontiguousarray(wav, dtype=np.float32), sr


def _clean(e: Exception) -> str:
    """libsndfile's own reason, without the path it repeats."""
    msg = getattr(e, "error_string", None) or str(e).strip() or type(e).__name__
    return msg.splitlines()[-1].strip().rstrip(".")


def to_mono(wav: np.ndarray) -> np.ndarray:
    """Average the channels: ``(C, T) -> (T,)``; a 1-D input is returned unchanged."""
    return wav if wav.ndim == 1 else wav.mean(axis=0)


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling with soxr (VHQ), along the last axis."""
    _check_rate(None, orig_sr)
    _check_rate(None, target_sr)
    if orig_sr == target_sr:
        return wav
    import soxr

    x = np.asarray(wav, dtype=np.float32)
    if x.ndim == 1:
        return soxr.resample(x, orig_sr, target_sr, quality="VHQ").astype(np.float32)
    # soxr takes (T, C)
    return soxr.resample(x.T, orig_sr, target_sr, quality="VHQ").T.astype(np.float32)


def peak_normalize(wav: np.ndarray, peak_db: float = -1.0) -> np.ndarray:
    """Scale so the absolute peak sits at ``peak_db`` dBFS; silence is returned unchanged."""
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    if peak == 0.0:
        return wav
    return (wav * (10 ** (peak_db / 20) / peak)).astype(np.float32)


def loudness(wav: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4); ``-inf`` for silence or clips under 0.4 s."""
    import pyloudnorm

    x = np.asarray(wav, dtype=np.float64)
    if x.ndim == 2:
        x = x.T
    if x.shape[0] < int(0.4 * sample_rate) or not np.any(x):
        return float("-inf")
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(x))


def loudness_normalize(wav: np.ndarray, sample_rate: int, target_lufs: float = -23.0) -> np.ndarray:
    """Scale to ``target_lufs`` integrated loudness; returns input unchanged when loudness is undefined."""
    lufs = loudness(wav, sample_rate)
    if not math.isfinite(lufs):
        return wav
    return (wav * 10 ** ((target_lufs - lufs) / 20)).astype(np.float32)


def save(
    path: str | os.PathLike, wav: np.ndarray, sample_rate: int, *, subtype: str | None = None
) -> Path:
    """Write atomically (temp file in the same folder, then rename): a killed process leaves no half file.

    ``wav`` is ``(T,)`` or ``(C, T)``. The format follows the extension; ``subtype`` defaults to FLOAT for
    WAV and PCM_24 for FLAC.
    """
    p = Path(path)
    _check_rate(p, sample_rate)
    x = np.asarray(wav, dtype=np.float32)
    if x.ndim == 2:
        x = x.T
    _check_samples(p, x)
    fmt = p.suffix.lower().lstrip(".")
    if subtype is None:
        subtype = {"wav": "FLOAT", "flac": "PCM_24", "ogg": "VORBIS"}.get(fmt)
    with atomic_path(p) as tmp:
        sf.write(tmp, x, sample_rate, subtype=subtype, format=fmt.upper() if fmt != "oga" else "OGG")
    return p


def info(path: str | os.PathLike) -> AudioInfo:
    """Duration, rate, channels, peak and loudness of one file (decodes it once)."""
    p = Path(path)
    wav, sr = load(p, mono=False)
    with sf.SoundFile(str(p)) as f:
        fmt, subtype = f.format, f.subtype
    peak = float(np.max(np.abs(wav)))
    return AudioInfo(
        path=str(p),
        duration=wav.shape[-1] / sr,
        sample_rate=sr,
        channels=wav.shape[0],
        frames=wav.shape[-1],
        format=fmt,
        subtype=subtype,
        peak_dbfs=20 * math.log10(peak) if peak > 0 else float("-inf"),
        loudness_lufs=loudness(wav, sr),
    )


def find_audio(root: str | os.PathLike) -> list[Path]:
    """All audio files under ``root`` (recursively, sorted), or ``[root]`` if it is a file."""
    r = Path(root)
    if r.is_file():
        return [r]
    if not r.exists():
        raise AudioError(r, "folder not found")
    return sorted(p for p in r.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
