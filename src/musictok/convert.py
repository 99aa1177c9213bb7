"""Folders of audio → folders of ``.mtok`` token files and back (what `musictok encode/decode` run).

Inputs may be files or folders; a folder's tree is mirrored under the output folder. Every output is
written atomically, so an interrupted run leaves whole files only, and a rerun skips finished outputs
unless asked to overwrite.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch

from .audio import AUDIO_EXTENSIONS, find_audio, load, save
from .errors import MusictokError
from .tokens import Tokens

MTOK = ".mtok"


@dataclass
class ConvertReport:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # outputs that already existed
    failed: list[tuple[Path, str]] = field(default_factory=list)
    audio_seconds: float = 0.0
    compute_seconds: float = 0.0

    @property
    def realtime_factor(self) -> float:
        return self.audio_seconds / self.compute_seconds if self.compute_seconds else float("inf")


def plan(inputs: Iterable[str | Path], out_dir: str | Path, suffixes: tuple[str, ...], new_suffix: str
         ) -> list[tuple[Path, Path]]:
    """``(input file, output file)`` pairs; folders are searched recursively and mirrored."""
    out = Path(out_dir)
    pairs: list[tuple[Path, Path]] = []
    for item in inputs:
        p = Path(item)
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file or folder")
        if p.is_dir():
            files = find_audio(p) if suffixes == AUDIO_EXTENSIONS else sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in suffixes)
            pairs += [(f, (out / f.relative_to(p)).with_suffix(new_suffix)) for f in files]
        else:
            pairs.append((p, (out / p.name).with_suffix(new_suffix)))
    targets = [t for _, t in pairs]
    dupes = {t for t in targets if targets.count(t) > 1}
    if dupes:
        raise ValueError(f"two inputs would write the same output {sorted(dupes)[0]}; encode them separately")
    return pairs


def _convert(pairs: list[tuple[Path, Path]], work: Callable[[Path, Path, ConvertReport], None], *,
             overwrite: bool, on_file: Callable[[Path, str], None] | None) -> ConvertReport:
    """The bookkeeping both directions share: skip finished outputs, record failures, report progress.

    ``work(src, dst, report)`` converts one file and adds its written files and timings to ``report``;
    a :class:`MusictokError` (bad audio, damaged tokens, a tokenizer that must refuse them) fails that file
    only."""
    report = ConvertReport()
    for src, dst in pairs:
        if dst.exists() and not overwrite:
            report.skipped.append(dst)
            status = "skipped"
        else:
            try:
                work(src, dst, report)
                status = "written"
            except MusictokError as e:
                report.failed.append((src, str(e).removeprefix(f"{src}: ")))
                status = "failed"
        if on_file:
            on_file(src, status)
    return report


def encode_files(pairs: list[tuple[Path, Path]], tokenizer, *, overwrite: bool = False,
                 on_file: Callable[[Path, str], None] | None = None) -> ConvertReport:
    """Encode each audio file (resampled to the tokenizer's rate, mono) into a ``.mtok`` file."""

    def work(src: Path, dst: Path, report: ConvertReport) -> None:
        wav, sr = load(src, tokenizer.sample_rate)
        t0 = time.perf_counter()
        tokens = tokenizer.encode(torch.from_numpy(wav))
        report.compute_seconds += time.perf_counter() - t0
        report.audio_seconds += len(wav) / sr
        tokens.extra["source_file"] = src.name
        report.written.append(tokens.save(dst))

    return _convert(pairs, work, overwrite=overwrite, on_file=on_file)


def decode_files(pairs: list[tuple[Path, Path]], load_tokenizer: Callable[[Tokens], object], *,
                 overwrite: bool = False, on_file: Callable[[Path, str], None] | None = None) -> ConvertReport:
    """Decode each ``.mtok`` file to audio with the tokenizer that made it (see ``load_tokenizer``)."""

    def work(src: Path, dst: Path, report: ConvertReport) -> None:
        tokens = Tokens.load(src)
        tokenizer = load_tokenizer(tokens)
        t0 = time.perf_counter()
        wavs = tokenizer.decode(tokens).cpu().numpy()
        report.compute_seconds += time.perf_counter() - t0
        for i, n in enumerate(tokens.lengths):  # a file holding several clips gives name-0.wav, name-1.wav …
            target = dst if tokens.batch_size == 1 else dst.with_name(f"{dst.stem}-{i}{dst.suffix}")
            report.written.append(save(target, wavs[i, :n], tokens.sample_rate))
            report.audio_seconds += n / tokens.sample_rate

    return _convert(pairs, work, overwrite=overwrite, on_file=on_file)
