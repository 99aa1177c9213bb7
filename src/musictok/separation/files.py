"""Separating audio files: each input becomes a folder with one WAV per stem (what `musictok separate` runs).

A file is read a block at a time (downmixed to mono, resampled to the separator's rate), cut into the
separator's windows (:func:`musictok.separation.base.iter_windows`) and each window's stems are written as
they come, so memory stays flat in the length of the file. Each stem file is written to a temporary file
renamed at the end: an interrupted run leaves whole files or none. Folders of inputs are mirrored; no
output ever lands on an input, and an existing stem file is replaced only if `musictok separate` wrote it.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from ..audio import AUDIO_EXTENSIONS, AudioStream, open_output
from ..convert import ConvertError, plan
from ..errors import MusictokError
from .base import Separator

SEPARATED_BY = "musictok separate"  # written into every stem file, so a rerun knows it may replace it


@dataclass
class SeparationReport:
    written: list[Path] = field(default_factory=list)  # output folders
    skipped: list[Path] = field(default_factory=list)  # every stem file already there
    failed: list[tuple[Path, str]] = field(default_factory=list)
    audio_seconds: float = 0.0
    compute_seconds: float = 0.0

    @property
    def realtime_factor(self) -> float | None:
        return self.audio_seconds / self.compute_seconds if self.compute_seconds > 0 else None


def stem_files(folder: Path, stem_names: Iterable[str]) -> list[Path]:
    return [folder / f"{name}.wav" for name in stem_names]


def plan_separation(inputs: Iterable[str | Path], out_dir: str | Path, stem_names: list[str]) -> list[tuple[Path, Path]]:
    """``(input file, output folder)`` pairs (folders searched recursively and mirrored); refuses, before any
    work, inputs holding no audio and outputs that would land on an input."""
    pairs = plan(inputs, out_dir, AUDIO_EXTENSIONS, "")
    sources = {src.resolve(): src for src, _ in pairs}
    for src, folder in pairs:
        if folder.exists() and not folder.is_dir():
            raise ConvertError(src, f"its output folder {folder} is a file; choose another --out")
        for f in stem_files(folder, stem_names):
            if f.resolve() in sources:
                raise ConvertError(src, f"its stem file {f} would replace the input {sources[f.resolve()]}; "
                                        "choose another --out")
    return pairs


def _written_by_us(path: Path) -> bool:
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            return f.software.startswith(SEPARATED_BY)
    except Exception:  # not audio at all: certainly not ours
        return False


def separate_file(path: str | Path, separator: Separator, folder: str | Path, *,
                  on_samples: Callable[[int], None] | None = None, **options) -> tuple[list[Path], int]:
    """Separate one audio file into ``folder/<stem>.wav`` (one per stem, at the separator's rate), window
    by window: ``(stem files, samples per stem)``. ``on_samples(n)`` is called with each window's kept
    samples; ``options`` are the separator's decoding options."""
    folder = Path(folder)
    paths = stem_files(folder, separator.stem_names)
    stream = AudioStream(path, separator.sample_rate)
    if stream.read_frames == 0:
        raise ConvertError(path, "the audio is empty")
    blocks = (torch.from_numpy(b)[None] for b in stream)
    written = 0
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(open_output(p, separator.sample_rate, 1, software=SEPARATED_BY)) for p in paths]
        for piece in separator.separate_windows(blocks, **options):  # (1, S, n)
            x = piece[0].float().cpu().numpy()
            if not np.all(np.isfinite(x)):
                raise ConvertError(path, "the separator produced NaN/Inf samples")
            for f, stem in zip(files, x):
                f.write(stem)
            written += x.shape[-1]
            if on_samples is not None:
                on_samples(x.shape[-1])
    if written == 0:
        raise ConvertError(path, "the audio is empty")
    return paths, written


def separate_files(pairs: list[tuple[Path, Path]], separator: Separator, *, overwrite: bool = False,
                   on_file: Callable[[Path, str], None] | None = None,
                   on_samples: Callable[[int], None] | None = None, **options) -> SeparationReport:
    """Separate every ``(input, output folder)`` pair; a bad file fails alone and the others go on."""
    report = SeparationReport()
    for src, folder in pairs:
        status = "written"
        try:
            existing = [f for f in stem_files(folder, separator.stem_names) if f.exists()]
            foreign = [f for f in existing if not _written_by_us(f)]
            if foreign:
                raise ConvertError(src, f"would write over {foreign[0]}, which musictok did not write; choose another --out")
            if existing and len(existing) == len(separator.stem_names) and not overwrite:
                report.skipped.append(folder)
                status = "skipped"
            else:
                t0 = time.perf_counter()
                _, n = separate_file(src, separator, folder, on_samples=on_samples, **options)
                report.compute_seconds += time.perf_counter() - t0
                report.audio_seconds += n / separator.sample_rate
                report.written.append(folder)
        except MusictokError as e:
            report.failed.append((src, str(e).removeprefix(f"{src}: ")))
            status = "failed"
        if on_file:
            on_file(src, status)
    return report
