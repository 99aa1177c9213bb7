"""Audio in and out: load, resample, downmix, normalise, save.

Every expected failure (missing file, not audio, truncated, empty, NaN/Inf samples, absurd sample rate)
raises one exception type, :class:`AudioError`, whose message names the file and the cause, so the CLI
can print one line and exit non-zero instead of a traceback.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from .atomic import atomic_path
from .errors import MusictokError

# Sample rates outside this range are almost certainly a corrupt header, not real audio.
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".w64")
# What `save` can write: extension -> libsndfile format (and the subtype it writes by default).
WRITABLE = {".wav": ("WAV", "FLOAT"), ".flac": ("FLAC", "PCM_24"), ".ogg": ("OGG", "VORBIS"),
            ".oga": ("OGG", "VORBIS"), ".mp3": ("MP3", None), ".aiff": ("AIFF", "PCM_24"),
            ".aif": ("AIFF", "PCM_24"), ".au": ("AU", "PCM_24"), ".w64": ("W64", "FLOAT")}
BLOCK_FRAMES = 1 << 16  # frames per read when streaming (1.4 s at 48 kHz)
SILENCE_RMS = 1e-6  # -120 dBFS: a clip this quiet is left at its level by level-normalising tokenizers


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


def _check_file(p: Path) -> None:
    if not p.exists():
        raise AudioError(p, "file not found")
    if p.is_dir():
        raise AudioError(p, "is a directory, not an audio file")
    if p.stat().st_size == 0:
        raise AudioError(p, "file is empty (0 bytes)")


@contextlib.contextmanager
def _open(p: Path) -> Iterator[sf.SoundFile]:
    """An open, checked file: readable by libsndfile, a sane rate, some frames, not cut short. Errors while
    it is open (decoding) become an :class:`AudioError` naming the file."""
    _check_file(p)
    try:
        with sf.SoundFile(str(p)) as f:
            _check_rate(p, f.samplerate)
            cut = _truncation(p, f)
            if cut:
                raise AudioError(p, cut)
            if f.frames <= 0:
                raise AudioError(p, "audio has zero length")
            yield f
    except AudioError:
        raise
    except sf.LibsndfileError as e:  # not audio, truncated header, unsupported codec
        raise AudioError(p, _cut_riff(p) or f"cannot be decoded as audio ({_clean(e)})") from None
    except (RuntimeError, ValueError, OSError) as e:
        raise AudioError(p, f"cannot be read ({_clean(e)})") from None


def _cut_riff(p: Path) -> str | None:
    """A WAV cut inside its header: the RIFF size says how long the file should be."""
    with open(p, "rb") as fh:
        head = fh.read(12)
    size = p.stat().st_size
    if len(head) == 12 and head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        promised = int.from_bytes(head[4:8], "little") + 8
        if promised > size:
            return f"truncated: the WAV header promises {promised} bytes, the file has {size}"
    return None


def _truncation(p: Path, f: sf.SoundFile) -> str | None:
    """Why a file whose header libsndfile accepted is cut short, or ``None``. libsndfile itself reads a
    WAV whose data chunk is cut as a shorter file, and an Ogg stream without its last page likewise."""
    size = p.stat().st_size
    if f.format in ("WAV", "WAVEX"):
        with open(p, "rb") as fh:
            head = fh.read(12)
            if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            pos, align = 12, 0
            while pos + 8 <= size:
                fh.seek(pos)
                chunk = fh.read(8)
                cid, n = chunk[:4], int.from_bytes(chunk[4:8], "little")
                if cid == b"fmt ":
                    align = int.from_bytes(fh.read(14)[12:14], "little")
                if cid == b"data":
                    if n in (0, 0xFFFFFFFF) or not align:  # streaming writers leave the size open
                        return None
                    if pos + 8 + n > size:
                        have = (size - pos - 8) // align
                        return (f"truncated: the header promises {n // align / f.samplerate:.2f} s, "
                                f"the file holds {have / f.samplerate:.2f} s")
                    return None
                pos += 8 + n + (n & 1)
        return None
    if f.format == "OGG":  # a whole Ogg stream ends with a complete page flagged end-of-stream
        with open(p, "rb") as fh:
            fh.seek(max(0, size - 70_000))  # an Ogg page is at most 65,307 bytes
            tail = fh.read()
        at = tail.rfind(b"OggS")
        if at < 0 or at + 27 > len(tail):
            return "truncated: no complete Ogg page at the end"
        nseg = tail[at + 26]
        end = at + 27 + nseg + sum(tail[at + 27: at + 27 + nseg])
        if end > len(tail) or not tail[at + 5] & 0x04:
            readable = f" (only {f.frames / f.samplerate:.2f} s can be read)" if f.frames > 0 else ""
            return f"truncated: the Ogg stream ends without its end-of-stream page{readable}"
    return None


def _check_read(p: Path, f: sf.SoundFile, got: int, expected: int) -> None:
    """A decoder that stops well before the frames its header declares means a cut or damaged file
    (MP3 frame counts are estimates, hence the tolerance)."""
    if got < expected - max(4096, expected // 200):
        raise AudioError(p, f"truncated or damaged: decoded {got / f.samplerate:.2f} s of the "
                            f"{expected / f.samplerate:.2f} s its header declares")


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
    Use :class:`AudioStream` for files too long to hold in memory.
    """
    p = Path(path)
    with _open(p) as f:
        sr = int(f.samplerate)
        start = min(max(int(round(offset * sr)), 0), f.frames)
        if start:
            f.seek(start)
        n = -1 if duration is None else int(round(duration * sr))
        try:
            data = f.read(frames=n, dtype="float32", always_2d=True)
        except sf.LibsndfileError as e:
            raise AudioError(p, f"cannot be decoded as audio ({_clean(e)})") from None
        _check_read(p, f, len(data), f.frames - start if n < 0 else min(n, f.frames - start))
    wav = data.T  # (C, T)
    _check_samples(p, wav)
    if mono:
        wav = to_mono(wav)
    if sample_rate is not None and sample_rate != sr:
        wav = resample(wav, sr, sample_rate)
        sr = sample_rate
    return np.ascontiguousarray(wav, dtype=np.float32), sr


class AudioStream:
    """A file read a block at a time, downmixed and resampled on the fly: memory stays flat in its length.

    Opening checks the file (so a bad file fails before any work); iterating yields float32 blocks,
    ``(T_i,)`` when ``mono`` else ``(C, T_i)``, whose concatenation equals :func:`load` of the same file
    (soxr's streaming resampler gives the same samples as its one-shot one). ``peak`` is the largest
    absolute sample of any channel read so far, before downmixing; ``frames_read`` counts the frames read
    so far at the file's own rate (a header's count is only an estimate for some formats, e.g. MP3).
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int | None = None, mono: bool = True, *,
                 duration: float | None = None, block_frames: int = BLOCK_FRAMES):
        self.path = Path(path)
        with _open(self.path) as f:
            self.source_rate, self.channels, self.frames = int(f.samplerate), int(f.channels), int(f.frames)
            self.format, self.subtype = f.format, f.subtype
        self.sample_rate = sample_rate or self.source_rate
        _check_rate(None, self.sample_rate)
        self.mono, self.block_frames = mono, block_frames
        self.read_frames = self.frames if duration is None else min(self.frames, int(round(duration * self.source_rate)))
        self.peak, self.frames_read = 0.0, 0

    @property
    def duration(self) -> float:
        """Seconds this stream will yield (of the source's frames)."""
        return self.read_frames / self.source_rate

    def __iter__(self) -> Iterator[np.ndarray]:
        import soxr

        p, rs = self.path, None
        if self.sample_rate != self.source_rate:
            rs = soxr.ResampleStream(self.source_rate, self.sample_rate, 1 if self.mono else self.channels,
                                     dtype="float32", quality="VHQ")
        got = 0
        with _open(p) as f:
            while got < self.read_frames:
                try:
                    block = f.read(frames=min(self.block_frames, self.read_frames - got), dtype="float32",
                                   always_2d=True)
                except sf.LibsndfileError as e:
                    raise AudioError(p, f"cannot be decoded as audio ({_clean(e)})") from None
                if not len(block):
                    break
                got += len(block)
                self.frames_read = got
                if not np.all(np.isfinite(block)):
                    raise AudioError(p, f"audio contains NaN/Inf samples (near {got / self.source_rate:.1f} s)")
                self.peak = max(self.peak, float(np.max(np.abs(block))))
                x = block.mean(axis=1) if self.mono else block  # (T,) or (T, C), as load() downmixes
                if rs is not None:
                    x = rs.resample_chunk(x, last=got >= self.read_frames)
                if len(x):
                    yield np.ascontiguousarray(x.T, dtype=np.float32)
            _check_read(p, f, got, self.read_frames)
        if rs is not None and got < self.read_frames:  # a header that overestimated (MP3): flush the tail
            x = rs.resample_chunk(np.zeros((0,) if self.mono else (0, self.channels), np.float32), last=True)
            if len(x):
                yield np.ascontiguousarray(x.T, dtype=np.float32)


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


MAX_LOUDNESS_CHANNELS = 5  # BS.1770 weights L, R, C, Ls, Rs; beyond that the channel layout is unknown


def loudness(wav: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4); ``-inf`` for silence or clips under 0.4 s, ``nan``
    for more than five channels (BS.1770 weights only L, R, C, Ls, Rs)."""
    x = np.asarray(wav, dtype=np.float64)
    x = x[None] if x.ndim == 1 else x
    meter = LoudnessMeter(sample_rate, x.shape[0], x.shape[-1])
    meter.add(x)
    return meter.result()


class LoudnessMeter:
    """BS.1770-4 integrated loudness fed a block at a time, so a 3-hour file needs no 3-hour array.

    Gives pyloudnorm's numbers (same K-weighting filters, 400 ms blocks every 100 ms, -70 LUFS and -10 LU
    gates): the filters carry their state across blocks, and each gating block's energy is summed from
    the energies of the stretches between consecutive block boundaries."""

    def __init__(self, sample_rate: int, channels: int, frames: int):
        self.rate, self.channels, self.frames, self.pos = sample_rate, channels, frames, 0
        self.defined = channels <= MAX_LOUDNESS_CHANNELS and frames >= int(0.4 * sample_rate)
        if not self.defined:
            return
        import pyloudnorm

        meter = pyloudnorm.Meter(sample_rate)
        self.filters = [(f.passband_gain, f.b, f.a) for f in meter._filters.values()]
        self.state = [np.zeros((channels, 2)) for _ in self.filters]
        t_g, step = meter.block_size, meter.block_size * (1 - meter.overlap)
        n_blocks = int(np.round((frames / sample_rate - t_g) / step)) + 1
        j = np.arange(n_blocks)
        lo = np.array([int(t_g * (k * (1 - meter.overlap)) * sample_rate) for k in j])  # pyloudnorm's rounding
        hi = np.array([int(t_g * (k * (1 - meter.overlap) + 1) * sample_rate) for k in j])
        self.bounds = np.unique(np.concatenate([[0, frames], np.minimum(lo, frames), np.minimum(hi, frames)]))
        self.lo, self.hi = np.searchsorted(self.bounds, np.minimum(lo, frames)), np.searchsorted(self.bounds, np.minimum(hi, frames))
        self.energy = np.zeros((len(self.bounds), channels))  # row k: Σ x² over [bounds[k], bounds[k+1])
        self.block_len = t_g * sample_rate

    def add(self, block: np.ndarray) -> None:
        """``(C, T)`` samples following the previous block."""
        if not self.defined or not block.shape[-1]:
            return
        from scipy.signal import lfilter

        y = np.asarray(block, dtype=np.float64)
        for k, (gain, b, a) in enumerate(self.filters):
            y, self.state[k] = lfilter(b, a, y, axis=-1, zi=self.state[k])
            y = gain * y
        n = y.shape[-1]
        first = int(np.searchsorted(self.bounds, self.pos, side="right")) - 1
        inner = self.bounds[(self.bounds > self.pos) & (self.bounds < self.pos + n)] - self.pos
        starts = np.concatenate([[0], inner]).astype(np.intp)
        self.energy[first: first + len(starts)] += np.add.reduceat(np.square(y), starts, axis=-1).T
        self.pos += n

    def result(self) -> float:
        if self.channels > MAX_LOUDNESS_CHANNELS:
            return float("nan")
        if not self.defined:
            return float("-inf")
        cum = np.concatenate([np.zeros((1, self.channels)), np.cumsum(self.energy, axis=0)])
        z = (cum[self.hi] - cum[self.lo]) / self.block_len  # (blocks, C) mean square per gating block
        g = np.array([1.0, 1.0, 1.0, 1.41, 1.41][: self.channels])
        with np.errstate(divide="ignore", invalid="ignore"):
            block_lufs = -0.691 + 10 * np.log10(z @ g)
            above = block_lufs >= -70.0
            if not above.any():
                return float("-inf")
            gamma_r = -0.691 + 10 * np.log10(z[above].mean(axis=0) @ g) - 10.0
            gated = (block_lufs > gamma_r) & above
            if not gated.any():
                return float("-inf")
            return float(-0.691 + 10 * np.log10(z[gated].mean(axis=0) @ g))


def loudness_normalize(wav: np.ndarray, sample_rate: int, target_lufs: float = -23.0) -> np.ndarray:
    """Scale to ``target_lufs`` integrated loudness; returns input unchanged when loudness is undefined."""
    lufs = loudness(wav, sample_rate)
    if not math.isfinite(lufs):
        return wav
    return (wav * 10 ** ((target_lufs - lufs) / 20)).astype(np.float32)


def check_output(path: str | os.PathLike) -> Path:
    """Refuse, before any work, an audio output path that :func:`save` could not write."""
    p = Path(path)
    if p.is_dir():
        raise AudioError(p, "is a folder; give a file name, e.g. " + str(p / "out.wav"))
    if p.suffix.lower() not in WRITABLE or WRITABLE[p.suffix.lower()][0] not in sf.available_formats():
        what = f"extension {p.suffix!r}" if p.suffix else "no extension"
        raise AudioError(p, f"cannot write audio with {what}; use one of "
                            + ", ".join(sorted({k for k, v in WRITABLE.items() if v[0] in sf.available_formats()})))
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise AudioError(p, f"{parent} is a file, not a folder")
            break
    return p


def save(
    path: str | os.PathLike, wav: np.ndarray, sample_rate: int, *, subtype: str | None = None,
    software: str | None = None,
) -> Path:
    """Write atomically (temp file in the same folder, then rename): a killed process leaves no half file.

    ``wav`` is ``(T,)`` or ``(C, T)``. The format follows the extension; ``subtype`` defaults to FLOAT for
    WAV and PCM_24 for FLAC. ``software`` is stored in the file's metadata (WAV INFO / FLAC comment).
    """
    p = check_output(path)
    _check_rate(p, sample_rate)
    x = np.asarray(wav, dtype=np.float32)
    if x.ndim == 2:
        x = x.T
    _check_samples(p, x)
    with open_output(p, sample_rate, 1 if x.ndim == 1 else x.shape[1], subtype=subtype, software=software) as f:
        f.write(x)
    return p


@contextlib.contextmanager
def open_output(path: str | os.PathLike, sample_rate: int, channels: int = 1, *, subtype: str | None = None,
                software: str | None = None) -> Iterator[sf.SoundFile]:
    """A :class:`soundfile.SoundFile` open for writing a temporary file beside ``path``, renamed onto
    ``path`` when the block ends without an error (removed otherwise): write long audio as it is made."""
    p = check_output(path)
    _check_rate(p, sample_rate)
    fmt, default_subtype = WRITABLE[p.suffix.lower()]
    with atomic_path(p) as tmp:
        with sf.SoundFile(str(tmp), "w", sample_rate, channels, subtype=subtype or default_subtype,
                          format=fmt) as f:
            if software:
                f.software = software
            yield f


def info(path: str | os.PathLike) -> AudioInfo:
    """Duration, rate, channels, peak and loudness of one file, read a block at a time."""
    stream = AudioStream(path, mono=False)
    meter = LoudnessMeter(stream.source_rate, stream.channels, stream.frames)
    frames = 0
    for block in stream:
        meter.add(block)
        frames += block.shape[-1]
    peak = stream.peak
    return AudioInfo(
        path=str(stream.path),
        duration=frames / stream.source_rate,
        sample_rate=stream.source_rate,
        channels=stream.channels,
        frames=frames,
        format=stream.format,
        subtype=stream.subtype,
        peak_dbfs=20 * math.log10(peak) if peak > 0 else float("-inf"),
        loudness_lufs=meter.result(),
    )


def find_audio(root: str | os.PathLike) -> list[Path]:
    """All audio files under ``root`` (recursively, sorted), or ``[root]`` if it is a file."""
    r = Path(root)
    if r.is_file():
        return [r]
    if not r.exists():
        raise AudioError(r, "folder not found")
    return sorted(p for p in r.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
