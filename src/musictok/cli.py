"""The `musictok` command line: thin wrappers that parse, show progress and call the Python API."""

from __future__ import annotations

import json
import math
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from . import __version__

app = typer.Typer(help="musictok: discrete music tokenization and token language models.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Render and inspect the multi-stem training corpus.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # one error, one line


class UserError(Exception):
    """An expected failure: printed as one line, exit code 1, no traceback."""


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), console=console, transient=False)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    if version:
        console.print(f"musictok {__version__}")
        raise typer.Exit()


@data_app.command("build")
def data_build(
    out: Path = typer.Option(Path("data/chorales"), "--out", "-o", help="Output folder."),
    corpus: str = typer.Option("chorales", help="chorales | palestrina | madrigals | quartets | all"),
    limit: Optional[int] = typer.Option(None, help="Render only the first N works."),
    seed: int = typer.Option(0, help="Seed for instruments, jitter and drums: same seed, same bytes."),
    sample_rate: int = typer.Option(24000, "--sample-rate", help="Output sample rate (Hz)."),
    workers: int = typer.Option(os.cpu_count() or 1, help="Parallel worker processes (default: all cores)."),
    soundfont: Optional[Path] = typer.Option(None, help="A .sf2/.sf3 SoundFont; default: Debian's if installed, else the embedded TimGM6mb."),
    tempo_jitter: float = typer.Option(0.0, help="Random tempo change per piece, ± this fraction (e.g. 0.1)."),
    transpose_jitter: int = typer.Option(0, help="Random transposition per piece, ± this many semitones."),
    musdb: bool = typer.Option(True, help="Also render the musdb group (voice patch, bass, other, drums)."),
    audio_format: str = typer.Option("flac", "--format", help="flac (24-bit, lossless) or wav (32-bit float)."),
) -> None:
    """Render a multi-stem corpus from the scores that ship with music21 (resumable)."""
    from .data.build import BuildConfig, build_corpus
    from .data.render import SoundFontError

    try:
        cfg = BuildConfig(out=out, corpus=corpus, limit=limit, seed=seed, sample_rate=sample_rate,
                          workers=workers, soundfont=soundfont, tempo_jitter=tempo_jitter,
                          transpose_jitter=transpose_jitter, musdb=musdb, audio_format=audio_format)
        with _progress() as progress:
            task = progress.add_task("rendering", total=None, status="")
            counts: Counter = Counter()

            def on_start(n: int) -> None:
                progress.update(task, total=n)

            def on_piece(r) -> None:
                counts[r.status] += 1
                if r.status == "failed":
                    progress.console.print(f"[yellow]skipped[/] {r.id}: {r.reason}")
                progress.update(task, advance=1, status=", ".join(f"{k} {v}" for k, v in sorted(counts.items())))

            report = build_corpus(cfg, on_piece=on_piece, on_start=on_start)
    except (ValueError, SoundFontError) as e:
        raise UserError(str(e)) from None

    table = Table(title=f"corpus {report.corpus} → {report.out}", show_header=False)
    table.add_row("pieces in folder", str(report.pieces))
    table.add_row("rendered now / already there", f"{report.rendered} / {report.existing}")
    table.add_row("failed", str(len(report.failed)))
    table.add_row("hours of audio", f"{report.hours:.2f}")
    table.add_row("splits", ", ".join(f"{k} {v}" for k, v in sorted(report.splits.items())))
    table.add_row("SoundFont", f"{Path(report.soundfont).name} ({report.soundfont_origin})")
    table.add_row("wall time", f"{report.wall_seconds:.1f} s")
    console.print(table)
    if report.failed:
        reasons = ", ".join(f"{n} × {why}" for why, n in report.failure_reasons().most_common())
        console.print(f"[yellow]{len(report.failed)} piece(s) failed:[/] {reasons}")


@data_app.command("stats")
def data_stats(
    root: Path = typer.Argument(..., help="A corpus folder written by `musictok data build`."),
    verify: bool = typer.Option(False, help="Also check that every mix equals the sum of its stems."),
) -> None:
    """Summarise a rendered corpus: pieces, hours per split, parts, instruments."""
    from .data.datasets import CorpusIndex
    from .data.verify import check_piece

    try:
        index = CorpusIndex(root)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    rows = index.pieces
    table = Table(title=f"{root}")
    table.add_column("split")
    table.add_column("pieces", justify="right")
    table.add_column("hours", justify="right")
    for split in ("train", "valid", "test"):
        sel = [r for r in rows if r["split"] == split]
        table.add_row(split, str(len(sel)), f"{sum(r['duration_seconds'] for r in sel) / 3600:.2f}")
    table.add_row("all", str(len(rows)), f"{index.hours:.2f}")
    console.print(table)
    parts = Counter(len(r["parts"]) for r in rows)
    programs = Counter(p["program_name"] for r in rows for p in r["parts"])
    composers = Counter(r["composer"] for r in rows)
    console.print("parts per piece: " + ", ".join(f"{k}: {v}" for k, v in sorted(parts.items())))
    console.print("composers: " + ", ".join(f"{k} ({v})" for k, v in composers.most_common(8)))
    console.print("instruments: " + ", ".join(f"{k} ({v})" for k, v in programs.most_common(12)))
    if verify:
        worst = 0.0
        with _progress() as progress:
            task = progress.add_task("verifying", total=len(rows), status="")
            for r in rows:
                for c in check_piece(index.folder(r)):
                    worst = max(worst, c.max_abs_error)
                progress.update(task, advance=1, status=f"max error {worst:.2e}")
        console.print(f"max |mix − Σ stems| over {len(rows)} pieces: {worst:.3e}")


@app.command("info")
def info_cmd(
    files: list[Path] = typer.Argument(..., help="Audio files (anything libsndfile reads)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines instead of a table."),
) -> None:
    """Duration, sample rate, channels, peak and loudness of audio files."""
    from .audio import AudioError, info

    table = Table()
    for col in ("file", "duration", "rate", "ch", "peak dBFS", "LUFS", "format"):
        table.add_column(col)
    failed = 0
    for f in files:
        try:
            i = info(f)
        except AudioError as e:
            err_console.print(f"[red]error:[/] {e}")
            failed += 1
            continue
        if as_json:
            print(json.dumps(i.to_dict()))
        else:
            table.add_row(str(f), f"{i.duration:.2f} s", str(i.sample_rate), str(i.channels),
                          _fmt_db(i.peak_dbfs), _fmt_db(i.loudness_lufs), f"{i.format}/{i.subtype}")
    if not as_json and table.row_count:
        console.print(table)
    if failed:
        raise typer.Exit(1)


def _fmt_db(x: float) -> str:
    return "-inf" if not math.isfinite(x) else f"{x:.1f}"


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("demo_out"), help="Where the demo writes its pictures and audio."),
    data: Path = typer.Option(Path("data/demo"), help="Where the small default corpus is rendered."),
    pieces: int = typer.Option(8, help="How many chorales to render."),
) -> None:
    """Render a handful of Bach chorales and draw a mix and its stems."""
    from .demo import run_demo

    run_demo(out=out, data=data, pieces=pieces, console=console)


def main() -> None:
    """Entry point: expected failures become one red line and exit code 1."""
    from .audio import AudioError

    try:
        app()
    except (UserError, AudioError) as e:
        err_console.print(f"[red]error:[/] {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
