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
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from . import __version__

app = typer.Typer(help="musictok: discrete music tokenization and token language models.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Render and inspect the multi-stem training corpus.", no_args_is_help=True)
app.add_typer(data_app, name="data")
eval_app = typer.Typer(help="Judge a tokenizer: reconstruction, codebook health, dependence, stability.",
                       no_args_is_help=True)
app.add_typer(eval_app, name="eval")
train_app = typer.Typer(help="Train tokenizers, vocoders, token LMs and separators (checkpoints, exact --resume, DDP).",
                        no_args_is_help=True)
app.add_typer(train_app, name="train")
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # one error, one line


# The held-out real-music test set (`make data-hedgewars`): 26 OGG tracks, never trained on.
HEDGEWARS_MUSIC = Path("data/debian/hedgewars-data/usr/share/games/hedgewars/Data/Music")


class UserError(Exception):
    """An expected failure: printed as one line, exit code 1, no traceback."""


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), console=console, transient=False)


def _print_version(value: bool) -> None:
    if value:
        console.print(f"musictok {__version__}")
        raise typer.Exit()


def _tally(progress: Progress, label: str, name_of):
    """``(on_start, on_item)`` callbacks for a resumable folder job: a bar, a count per status, and one
    line per failed item (its name and why)."""
    task = progress.add_task(label, total=None, status="")
    counts: Counter = Counter()

    def on_start(n: int) -> None:
        progress.update(task, total=n)

    def on_item(r) -> None:
        counts[r.status] += 1
        if r.status == "failed":
            progress.console.print(f"[yellow]skipped[/] {name_of(r)}: {r.reason}")
        progress.update(task, advance=1, status=", ".join(f"{k} {v}" for k, v in sorted(counts.items())))

    return on_start, on_item


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True,
                                       callback=_print_version)) -> None:
    """musictok: discrete music tokenization and token language models."""


@data_app.command("build")
def data_build(
    out: Path = typer.Option(Path("data/chorales"), "--out", "-o", help="Output folder."),
    corpus: str = typer.Option("chorales", help="chorales | palestrina | madrigals | quartets | all"),
    limit: Optional[int] = typer.Option(None, help="Render only the first N works."),
    split: Optional[str] = typer.Option(None, help="Render only the works of this split (train, valid, test)."),
    seed: int = typer.Option(0, help="Seed for instruments, jitter and drums: same seed, same bytes."),
    sample_rate: int = typer.Option(24000, "--sample-rate", help="Output sample rate (Hz)."),
    workers: int = typer.Option(os.cpu_count() or 1, help="Parallel worker processes (default: all cores)."),
    soundfont: Optional[Path] = typer.Option(None, help="A .sf2/.sf3 SoundFont; default: Debian's if installed, else the embedded TimGM6mb."),
    soundfont_pool: Optional[str] = typer.Option(
        None, "--soundfont-pool", "--soundfonts",
        help="SoundFonts each stem draws from: PATH[,PATH...] and/or auto (the embedded TimGM6mb + those under "
             "data/debian/*/usr/share/sounds and /usr/share/sounds)."),
    palette: str = typer.Option("classic", help="Programme pools: classic (orchestral) or wide (keyboards, organ, "
                                "guitars, strings, brass, reeds, pipes, synth leads/pads)."),
    drums_share: float = typer.Option(0.0, "--drums-share", help="Fraction of pieces whose parts group gets a "
                                      "generated drum stem (mixed in), e.g. 0.3."),
    level_stems: bool = typer.Option(False, help="Bring every stem to one loudness before mixing (SoundFonts "
                                     "differ by up to 20 dB)."),
    tempo_jitter: float = typer.Option(0.0, help="Random tempo change per piece, ± this fraction (e.g. 0.1)."),
    transpose_jitter: int = typer.Option(0, help="Random transposition per piece, ± this many semitones."),
    musdb: bool = typer.Option(True, help="Also render the musdb group (voice patch, bass, other, drums)."),
    audio_format: str = typer.Option("flac", "--format", help="flac (24-bit, lossless) or wav (32-bit float)."),
) -> None:
    """Render a multi-stem corpus from the scores that ship with music21 (resumable)."""
    from .data.build import BuildConfig, build_corpus
    from .data.render import SoundFontError

    try:
        cfg = BuildConfig(out=out, corpus=corpus, limit=limit, split=split, seed=seed, sample_rate=sample_rate,
                          workers=workers, soundfont=soundfont, soundfont_pool=soundfont_pool, palette=palette,
                          drums_share=drums_share, level_stems=level_stems, tempo_jitter=tempo_jitter,
                          transpose_jitter=transpose_jitter, musdb=musdb, audio_format=audio_format)
        with _progress() as progress:
            on_start, on_piece = _tally(progress, "rendering", lambda r: r.id)
            report = build_corpus(cfg, on_piece=on_piece, on_start=on_start)
    except (ValueError, SoundFontError) as e:
        raise UserError(str(e)) from None

    table = Table(title=f"corpus {report.corpus} → {report.out}", show_header=False)
    table.add_row("pieces in folder", str(report.pieces))
    table.add_row("rendered now / already there", f"{report.rendered} / {report.existing}")
    table.add_row("failed", str(len(report.failed)))
    table.add_row("hours of audio", f"{report.hours:.2f}")
    table.add_row("splits", ", ".join(f"{k} {v}" for k, v in sorted(report.splits.items())))
    if len(report.soundfonts) == 1:
        table.add_row("SoundFont", f"{Path(report.soundfont).name} ({report.soundfont_origin})")
    else:
        for sf in report.soundfonts:
            table.add_row(f"  {sf['name']}", f"{report.hours_by_soundfont.get(sf['name'], 0.0):.2f} h "
                          f"({report.stem_hours_by_soundfont.get(sf['name'], 0.0):.2f} stem-h, {sf['origin']})")
    table.add_row("wall time", f"{report.wall_seconds:.1f} s")
    console.print(table)
    if report.failed:
        reasons = ", ".join(f"{n} × {why}" for why, n in report.failure_reasons().most_common())
        console.print(f"[yellow]{len(report.failed)} piece(s) failed:[/] {reasons}")


@data_app.command("import")
def data_import(
    inputs: list[Path] = typer.Argument(..., help="Folders (searched recursively) or files of audio."),
    out: Path = typer.Option(Path("data/real"), "--out", "-o", help="Output corpus folder."),
    segment_seconds: float = typer.Option(30.0, "--segment-seconds", help="Length of each FLAC segment."),
    sample_rate: int = typer.Option(24000, "--sample-rate", help="Output sample rate (Hz), mono."),
    licence: Optional[str] = typer.Option(None, help="Licence of every file; default: read each file's Debian copyright file."),
    split: Optional[str] = typer.Option(None, help="Put every file in this split (e.g. test for a held-out set); default: by content hash."),
    exclude: list[str] = typer.Option([], help="Skip paths matching this glob (repeatable)."),
) -> None:
    """Import recordings: 24 kHz mono FLAC segments + metadata.jsonl, split by a hash of each file (resumable)."""
    from .data.importer import ImportConfig, import_audio

    try:
        cfg = ImportConfig(inputs=list(inputs), out=out, segment_seconds=segment_seconds, sample_rate=sample_rate,
                           licence=licence, split=split, exclude=list(exclude))
        with _progress() as progress:
            on_start, on_source = _tally(progress, "importing", lambda r: r.path)
            report = import_audio(cfg, on_source=on_source, on_start=on_start)
    except ValueError as e:
        raise UserError(str(e)) from None
    if not report.sources:
        raise UserError(f"{', '.join(map(str, inputs))}: no audio files found")
    table = Table(title=f"imported → {report.out}", show_header=False)
    table.add_row("source files", str(report.sources))
    table.add_row("imported now / already there", f"{report.imported} / {report.existing}")
    table.add_row("duplicates (same bytes as another file)", str(report.duplicates))
    table.add_row("failed", str(len(report.failed)))
    table.add_row("hours of audio", f"{report.hours:.2f}")
    table.add_row("segments per split", ", ".join(f"{k} {v}" for k, v in sorted(report.splits.items())))
    for pkg, h in sorted(report.hours_by_package.items()):
        table.add_row(f"  {pkg}", f"{h:.2f} h")
    table.add_row("wall time", f"{report.wall_seconds:.1f} s")
    console.print(table)


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
    composers = _composers(r["composer"] for r in rows)
    console.print("parts per piece: " + ", ".join(f"{k}: {v}" for k, v in sorted(parts.items())))
    console.print("composers: " + ", ".join(f"{k} ({v})" for k, v in composers.most_common(8)))
    console.print("instruments: " + ", ".join(f"{k} ({v})" for k, v in programs.most_common(12)))
    fonts = Counter(p.get("soundfont", r.get("soundfont", "?")) for r in rows for p in r["parts"] if "stem" in p)
    if fonts:
        console.print("SoundFonts (stems): " + ", ".join(f"{k} ({v})" for k, v in fonts.most_common()))
    if verify:
        worst = 0.0
        with _progress() as progress:
            task = progress.add_task("verifying", total=len(rows), status="")
            for r in rows:
                for c in check_piece(index.folder(r)):
                    worst = max(worst, c.max_abs_error)
                progress.update(task, advance=1, status=f"max error {worst:.2e}")
        console.print(f"max |mix − Σ stems| over {len(rows)} pieces: {worst:.3e}")


def _composers(names) -> Counter:
    """Pieces per composer, one entry per person: scores name "J.S. Bach" where a folder says "bach", so
    names are grouped by surname (the last word, or what precedes a comma; case and punctuation ignored)
    and shown in their longest form."""
    import re

    groups: dict[str, Counter] = {}
    for name in names:
        words = re.findall(r"[^\W\d_]+", name.lower().split(",")[0])  # "Monteverdi, Claudio": the surname
        groups.setdefault(words[-1] if words else name, Counter())[name] += 1
    return Counter({max(forms, key=lambda f: (len(f), forms[f])): sum(forms.values()) for forms in groups.values()})


@app.command("info")
def info_cmd(
    files: list[Path] = typer.Argument(..., help="Audio files (anything libsndfile reads) or .mtok token files."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines instead of a table."),
) -> None:
    """Duration, sample rate, channels, peak and loudness of audio files (read a block at a time); duration,
    channel layout, tokenizer and the input's rate of token files.

    peak dBFS: the largest sample, in dB below full scale (above 0: the file clips in fixed point);
    LUFS: integrated loudness (ITU-R BS.1770-4), defined for at most five channels."""
    from .audio import AudioError, info
    from .convert import MTOK

    tokens = [f for f in files if f.suffix.lower() == MTOK]
    failed = _token_info(tokens, as_json) if tokens else 0
    files = [f for f in files if f.suffix.lower() != MTOK]
    table = Table()
    table.add_column("file", overflow="fold", ratio=1)  # the name first, then its folder, wrapped
    for col in ("duration", "rate", "ch", "peak dBFS", "LUFS", "format"):
        table.add_column(col, no_wrap=True)
    notes = set()
    for f in files:
        try:
            i = info(f)
        except AudioError as e:
            err_console.print(f"[red]error:[/] {escape(str(e))}")
            failed += 1
            continue
        if as_json:
            print(json.dumps(_json_ready(i.to_dict())))  # silence (-inf dB) and undefined LUFS become null
            continue
        peak = _fmt_db(i.peak_dbfs)
        if i.peak_dbfs > 0:
            peak = f"[red]+{peak}[/]"
            notes.add("peak above 0 dBFS: the file clips when stored as fixed point")
        if math.isnan(i.loudness_lufs):
            notes.add("LUFS –: BS.1770 loudness is defined for at most five channels")
        folder = str(f.parent) if str(f.parent) != "." else ""
        table.add_row(escape(f.name) + (f"\n[dim]{escape(folder)}[/]" if folder else ""), f"{i.duration:.2f} s",
                      str(i.sample_rate), str(i.channels), peak, _fmt_db(i.loudness_lufs), f"{i.format}/{i.subtype}")
    if not as_json and table.row_count:
        console.print(table)
        for note in sorted(notes):
            console.print(note)
    if failed:
        raise typer.Exit(1)


def _token_info(files: list[Path], as_json: bool) -> int:
    """`info` of .mtok files: a table (or JSON lines); returns how many could not be read."""
    from .convert import token_file_info
    from .errors import MusictokError

    table = Table()
    table.add_column("token file", overflow="fold", ratio=1)
    for col in ("duration", "rate", "channels", "input", "tokens/s", "tokenizer"):
        table.add_column(col, no_wrap=col != "tokenizer")
    failed = 0
    for f in files:
        try:
            i = token_file_info(f)
        except MusictokError as e:
            err_console.print(f"[red]error:[/] {escape(str(e))}")
            failed += 1
            continue
        if as_json:
            print(json.dumps(i.to_dict()))
            continue
        channels = i.channels if i.channels == "mono" else f"{i.channels} ({', '.join(i.channel_names)})"
        source = "–" if i.source_sample_rate is None else f"{i.source_sample_rate} Hz, {i.source_channels} ch"
        table.add_row(escape(str(f)), f"{i.duration:.2f} s", str(i.sample_rate), channels, source,
                      f"{i.tokens_per_second:g}", escape(i.tokenizer))
    if not as_json and table.row_count:
        console.print(table)
    return failed


def _fmt_db(x: float) -> str:
    if math.isnan(x):
        return "–"
    return "-inf" if not math.isfinite(x) else f"{x:.1f}"


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("demo_out"), help="Where the demo writes its pictures and audio."),
    data: Path = typer.Option(Path("data/demo"), help="Where the small default corpus is rendered."),
    pieces: int = typer.Option(4, help="How many held-out chorales to render."),
    tokenizer: str = typer.Option("bandtok-small", help="Tokenizer to demonstrate (bundled name or folder)."),
    lm: str = typer.Option("bandtok-small-lm", help="Token LM for the continuation (bundled name or folder)."),
    separator: str = typer.Option("sep-lm-small", help="Separator for the four-stem mix (bundled name or folder)."),
) -> None:
    """Render held-out Bach chorales, draw a mix and its stems, tokenize one with BandTok, continue it with the
    token LM and separate its four-stem mix."""
    from .demo import run_demo

    run_demo(out=out, data=data, pieces=pieces, console=console, tokenizer=tokenizer, lm=lm, separator=separator)


@app.command("encode")
def encode_cmd(
    inputs: list[Path] = typer.Argument(..., help="Audio files or folders (folders are mirrored)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for .mtok files."),
    tokenizer: str = typer.Option("bandtok-small", help="A bundled tokenizer name or a saved tokenizer folder."),
    overwrite: bool = typer.Option(False, help="Re-encode files whose .mtok already exists."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:1 …"),
    stems: bool = typer.Option(False, "--stems", help="Two-track tokenizers (duotok): the inputs are pairs of "
                               "stem files, lead then accompaniment; one .mtok per pair holds both tracks. "
                               "Without it a duotok separates each input mix into the two tracks itself."),
    channels: str = typer.Option("keep", help="keep (a stereo file stays stereo, anything else is mono), mono "
                                 "(downmix), stereo (left, right) or mid-side (mid, side); each channel becomes "
                                 "its own token streams. A mono file stays mono."),
    workers: Optional[int] = typer.Option(None, min=0, help="Processes decoding and resampling while this one "
                                          "encodes (default: a quarter of the cores on a CPU, all but one with a "
                                          "GPU); 0 decodes and encodes one file after the other."),
    precision: str = typer.Option("fp32", help="fp32, or bf16: the networks in bfloat16 autocast, about twice as "
                                  "fast where bf16 matrix units exist; a percent or two of the codes (near-ties) "
                                  "differ from fp32's. The .mtok files record it."),
) -> None:
    """Turn audio into token files (.mtok), one per input file (or per pair of stems)."""
    from .audio import AUDIO_EXTENSIONS
    from .convert import MTOK, channels_warning, check_channels, encode_files, encode_stem_files, plan, plan_stem_pairs
    from .corpus_encode import default_workers
    from .tokenizers.base import ENCODE_PRECISIONS, Tokenizer, TokenizerError

    _check_device(device)
    try:
        pairs = plan_stem_pairs(inputs, out) if stems else plan(inputs, out, AUDIO_EXTENSIONS, MTOK)
        if precision not in ENCODE_PRECISIONS:
            raise ValueError(f"--precision {precision}: not one of {', '.join(ENCODE_PRECISIONS)}")
        model = Tokenizer.from_pretrained(tokenizer, map_location=device).set_encode_precision(precision)
        if stems and model.stem_inputs != 2:
            raise ValueError(f"--stems: {tokenizer} encodes one signal; stems need a two-track tokenizer (duotok)")
        check_channels(model, channels)
    except (FileNotFoundError, ValueError, TokenizerError) as e:
        raise UserError(str(e)) from None
    caution = channels_warning(model, channels)
    if caution:
        err_console.print(f"[yellow]warning:[/] {escape(caution)}")
    if stems:
        report = _run_files("encoding", pairs, lambda cb: encode_stem_files(pairs, model, overwrite=overwrite,
                                                                            on_file=cb))
    else:
        n = min(default_workers(device) if workers is None else workers, len(pairs))
        report = _run_files("encoding", pairs, lambda cb: encode_files(pairs, model, overwrite=overwrite,
                                                                       on_file=cb, channels=channels, workers=n))
    console.print(f"{len(report.written)} encoded, {len(report.skipped)} already there, {len(report.failed)} failed"
                  f"{_speed(report)} ({model.layout.tokens_per_second:g} tokens/s, "
                  f"{model.layout.bitrate / 1000:.3g} kbps per channel)")
    if report.failed:
        raise typer.Exit(1)


def _speed(report) -> str:
    """The "; 12.0 s of audio at 85× real time" of a summary, or nothing when nothing was converted."""
    if report.realtime_factor is None:
        return ""
    x = report.realtime_factor
    return f"; {report.audio_seconds:.1f} s of audio at {x:.0f}× real time" if x >= 10 else \
        f"; {report.audio_seconds:.1f} s of audio at {x:.2g}× real time"


def _check_device(device: str) -> None:
    from .pretrained import PretrainedError, check_device

    try:
        check_device(device)
    except PretrainedError as e:
        raise UserError(f"--device {device}: {e.reason}") from None


@app.command("decode")
def decode_cmd(
    inputs: list[Path] = typer.Argument(..., help=".mtok files or folders of them."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for audio (WAV)."),
    tokenizer: Optional[str] = typer.Option(None, help="Tokenizer to decode with (default: the one named in each file)."),
    overwrite: bool = typer.Option(False, help="Re-decode files whose output already exists (only files musictok decoded are ever replaced)."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:1 …"),
    levels: Optional[int] = typer.Option(None, help="Decode with only the first N levels: RVQ codebooks, or PyramidCodec levels (coarsest first)."),
    sample_rate: str = typer.Option("model", "--sample-rate", help="model (the tokenizer's rate), original "
                                    "(the encoded file's rate, at its exact length) or a rate in Hz."),
) -> None:
    """Turn token files back into audio with the tokenizer that made them (written as they are decoded), every
    channel in order."""
    from .convert import MTOK, decode_files, parse_sample_rate, plan
    from .tokenizers.base import Tokenizer, TokenizerError

    cache: dict[str, Tokenizer | TokenizerError] = {}  # failures too: a missing tokenizer is looked up once

    def load_for(tokens) -> Tokenizer:
        source = tokenizer or (tokens.extra.get("tokenizer_source") if tokens is not None else None)
        if not source:
            raise TokenizerError(f"the file does not say which tokenizer made it ({tokens.fingerprint.short()}); "
                                 "pass --tokenizer")
        if source not in cache:
            try:
                cache[source] = Tokenizer.from_pretrained(source, map_location=device)
            except TokenizerError as e:
                cache[source] = e
        if isinstance(cache[source], TokenizerError):
            raise cache[source]
        return cache[source]

    _check_device(device)
    if levels is not None and levels < 1:
        raise UserError(f"--levels: must be >= 1, got {levels}")
    rate = parse_sample_rate(sample_rate)
    try:
        pairs = plan(inputs, out, (MTOK,), ".wav")
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    if tokenizer is not None:  # a tokenizer named on the command line must load, and take --levels, before any work
        from .convert import check_levels

        check_levels(load_for(None), levels)
    report = _run_files("decoding", pairs, lambda cb: decode_files(pairs, load_for, overwrite=overwrite, on_file=cb,
                                                                   levels=levels, sample_rate=rate))
    console.print(f"{len(report.written)} decoded, {len(report.skipped)} already there, {len(report.failed)} failed"
                  f"{_speed(report)}")
    if report.failed:
        raise typer.Exit(1)


def _run_files(label: str, pairs: list, work):
    with _progress() as progress:
        task = progress.add_task(label, total=len(pairs), status="")

        def on_file(src: Path, status: str) -> None:
            progress.update(task, advance=1, status=src.name)

        report = work(on_file)
    for src, why in report.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(f'{src}: {why}')}")
    for src, why in report.failed:
        err_console.print(f"[red]error:[/] {escape(f'{src}: {why}')}")
    return report


def _eval_setup(tokenizer: str, audio: Optional[Path], corpus: Optional[Path], split: str, seconds: float,
                max_clips: Optional[int], device: str):
    """The tokenizer and the clips. Unreadable files of --audio are printed as errors and left out (the
    command then exits 1 after scoring the rest, as encode does); files too short to score, as warnings."""
    from .evaluate import load_clips
    from .tokenizers.base import Tokenizer, TokenizerError

    _check_device(device)
    skipped: list[tuple[Path, str, bool]] = []
    try:
        model = Tokenizer.from_pretrained(tokenizer, map_location=device)
        clips = load_clips(model.sample_rate, audio_dir=audio, corpus=corpus, split=split, seconds=seconds,
                           max_clips=max_clips, on_skip=lambda p, why, bad: skipped.append((p, why, bad)))
    except (TokenizerError, ValueError, FileNotFoundError) as e:
        raise UserError(str(e)) from None
    finally:
        for p, why, bad in skipped:
            label = "[red]error:[/]" if bad else "[yellow]warning:[/]"
            err_console.print(f"{label} {escape(f'{p}: {why}')}")
    clips.skipped = skipped
    return model, clips


def _exit_if_skipped(clips) -> None:
    """Exit 1 after the results when unreadable files were left out (the rule encode and decode follow)."""
    if any(bad for _, _, bad in clips.skipped):
        raise typer.Exit(1)


def _write_json(path: Optional[Path], result: dict) -> None:
    if path is None:
        return
    from .atomic import write_json

    write_json(path, _json_ready(result))
    console.print(f"wrote {path}")


def _json_ready(x):
    """NaN / ±inf (undefined metrics) become null: JSON has no such numbers, and other tools reject them."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_ready(v) for v in x]
    return x


def _with_progress(label: str, total: int, work):
    with _progress() as progress:
        task = progress.add_task(label, total=total, status="")
        return work(lambda: progress.update(task, advance=1))


@eval_app.command("recon")
def eval_recon(
    tokenizer: str = typer.Option("bandtok-small", help="Bundled name or saved tokenizer folder."),
    audio: Optional[Path] = typer.Option(None, help="A folder of audio files (any format libsndfile reads)."),
    corpus: Optional[Path] = typer.Option(None, help="A rendered corpus folder (musictok data build)."),
    split: str = typer.Option("test", help="Corpus split: train, valid or test."),
    seconds: float = typer.Option(10.0, help="Clip length."),
    max_clips: Optional[int] = typer.Option(None, help="At most this many clips."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the result as JSON."),
    device: str = typer.Option("cpu"),
) -> None:
    """Reconstruction quality of encode → decode (and the tokenizer's other paths) on fixed clips, + speed.

    \b
    Mel dist ↓    log10-Mel L1 over 7 resolutions (DAC's); the main figure
    STFT dist ↓   log-magnitude STFT L1, windows 2048 and 512
    wave L1 ↓     mean absolute sample difference
    SI-SDR dB ↑   scale-invariant signal-to-distortion ratio; – if silent
    SDR dB ↑      signal-to-distortion ratio; gain errors count too
    †             compares phase, which a spectra-trained decoder makes up
    """
    from .evaluate import evaluate_reconstruction, fmt

    model, clips = _eval_setup(tokenizer, audio, corpus, split, seconds, max_clips, device)
    result = _with_progress("reconstructing", len(clips.audio),
                            lambda tick: evaluate_reconstruction(model, clips, on_clip=tick))
    table = Table(title=f"{model.fingerprint().short()} on {clips.source.get('audio') or clips.source['corpus']} "
                        f"({len(clips.audio)} × {seconds:g} s)")
    mark = " †" if result["phase_free"] else ""
    for col in ("path", "Mel dist ↓", "STFT dist ↓", f"wave L1 ↓{mark}", f"SI-SDR dB ↑{mark}", f"SDR dB ↑{mark}"):
        table.add_column(col, justify="right" if col != "path" else "left")
    for name, r in result["reconstruction"].items():
        table.add_row(name, fmt(r["mel_distance"]), fmt(r["stft_distance"]), fmt(r["waveform_l1"], 4),
                      fmt(r["si_sdr"], 2), fmt(r["sdr"], 2))
    console.print(table)
    if mark:
        console.print("† phase-sensitive: this tokenizer's decoders are trained on spectra and pick their own "
                      "phase, so these figures say little (−40 dB SI-SDR is normal); judge by Mel / STFT distance")
    if any(r["si_sdr"] is None for r in result["reconstruction"].values()):
        console.print("–: undefined (every reference clip is silent)")
    sp, lay = result["speed"], result["layout"]
    console.print(f"{lay['tokens_per_second']:g} tokens/s, {lay['kbps']:.3g} kbps; encode "
                  f"{sp['encode_realtime_factor']:.0f}× and decode {sp['decode_realtime_factor']:.0f}× real time")
    _write_json(json_out, result)
    _exit_if_skipped(clips)


@eval_app.command("tokens")
def eval_tokens(
    tokenizer: str = typer.Option("bandtok-small", help="Bundled name or saved tokenizer folder."),
    audio: Optional[Path] = typer.Option(None, help="A folder of audio files."),
    corpus: Optional[Path] = typer.Option(None, help="A rendered corpus folder."),
    split: str = typer.Option("test", help="Corpus split: train, valid or test."),
    seconds: float = typer.Option(10.0, help="Clip length."),
    max_clips: Optional[int] = typer.Option(None, help="At most this many clips."),
    stability: bool = typer.Option(True, help="Also measure token stability (noise, gain, shift)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the result as JSON."),
    device: str = typer.Option("cpu"),
) -> None:
    """Token statistics: codebook health, mutual information, MMD dependence, stability."""
    from .evaluate import evaluate_tokens, fmt

    model, clips = _eval_setup(tokenizer, audio, corpus, split, seconds, max_clips, device)
    result = _with_progress("encoding", len(clips.audio),
                            lambda tick: evaluate_tokens(model, clips, stability=stability, on_clip=tick))
    table = Table(title=f"{model.fingerprint().short()}: token statistics ({len(clips.audio)} clips)")
    table.add_column("stream")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, st in result["streams"].items():
        cb, dep = st["codebook"], st["dependence"]
        pooled = cb["pooled"] or {"utilization": cb["mean_utilization"], "perplexity": None,
                                  "normalized_entropy": cb["mean_normalized_entropy"]}
        rows = [("codebook utilization", pooled["utilization"]),
                ("codebook normalized entropy", pooled["normalized_entropy"]),
                ("codebook perplexity", pooled["perplexity"]),
                ("entropy per token, bits", dep["entropy"]),
                ("mutual information between slots, bits", dep["mutual_information"]),
                ("normalized mutual information between slots", dep["normalized_mutual_information"]),
                ("neighbour MI in time, bits", dep["neighbour_mutual_information_time"]),
                ("neighbour MI across slots, bits", dep["neighbour_mutual_information_slot"]),
                ("conditional entropy given left neighbour, bits", dep["conditional_entropy_left"]),
                ("MMD joint vs product of marginals", dep["mmd_joint_vs_product"])]
        for metric, value in rows:
            table.add_row(name, metric, fmt(value, 4) if isinstance(value, float) else str(value))
    for k, v in result.get("stability", {}).items():
        table.add_row("all", f"unchanged tokens: {k.replace('_', ' ')}", fmt(v, 4))
    console.print(table)
    _write_json(json_out, result)
    _exit_if_skipped(clips)


@eval_app.command("lm")
def eval_lm(
    lm: Path = typer.Option(..., help="A trained token LM folder (e.g. runs/lm-small-2d/export)."),
    corpus: Path = typer.Option(Path("data/chorales"), help="A rendered corpus folder."),
    split: str = typer.Option("test", help="Corpus split to score."),
    max_windows: int = typer.Option(64, help="At most this many context windows."),
    cache_dir: Path = typer.Option(Path("data/token-cache"), help="Where tokens of the corpus are cached."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the result as JSON."),
    plot: Optional[Path] = typer.Option(None, help="Write the loss-by-position curve as a PNG."),
) -> None:
    """Predictability of a token LM under teacher forcing: BPT, cnBPT, enBPT, cnBPS, Acc@k vs a unigram."""
    from .evaluate import evaluate_lm, fmt
    from .tokenizers.base import TokenizerError

    try:
        if max_windows < 1:
            raise UserError(f"--max-windows: must be >= 1, got {max_windows}")
        with _progress() as progress:  # the number of batches is known once the windows are cut
            task = progress.add_task("scoring", total=None, status="")
            result = evaluate_lm(lm, corpus, split, max_windows=max_windows, cache_dir=cache_dir,
                                 on_start=lambda n: progress.update(task, total=n),
                                 on_batch=lambda: progress.update(task, advance=1))
    except (TokenizerError, ValueError, FileNotFoundError) as e:
        raise UserError(str(e)) from None
    table = Table(title=f"{lm} on {corpus} ({split}, {result['windows']} windows of {result['context_frames']} frames)")
    for col in ("model", "BPT", "cnBPT", "enBPT", "cnBPS", "Acc@1", "Acc@5", "Acc@10"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for name, r in (("LM", result["lm"]), ("unigram", result["unigram_baseline"])):
        s = next(iter(r["streams"].values()))
        acc = s["topk_accuracy"] or {}
        table.add_row(name, fmt(r["bpt"]), fmt(r["cnbpt"], 4), fmt(r["enbpt"], 4), fmt(r["cnbps"], 1),
                      fmt(acc.get("1")), fmt(acc.get("5")), fmt(acc.get("10")))
    console.print(table)
    if plot is not None:
        from .plots import plot_curve

        console.print(f"wrote {plot_curve(result['loss_by_position_bits'], plot, xlabel='step in the context', ylabel='bits per token', title=str(lm))}")
    _write_json(json_out, result)


@app.command("generate")
def generate_cmd(
    lm: Path = typer.Option(..., help="A trained token LM folder."),
    out: Path = typer.Option(..., "-o", "--out", help="Output audio file (.wav, .flac …); its .mtok and .png are written beside it."),
    prompt: Optional[Path] = typer.Option(None, help="Audio to continue (omit for unconditional generation); only its first --prompt-seconds are read."),
    prompt_seconds: float = typer.Option(10.0, help="How much of the prompt to keep (less than --seconds)."),
    seconds: float = typer.Option(30.0, help="Total length, prompt included."),
    greedy: bool = typer.Option(False, help="Always take the most likely token."),
    temperature: float = typer.Option(1.0, help="Sampling temperature (>= 0)."),
    top_k: Optional[int] = typer.Option(None, help="Sample among the k most likely tokens."),
    top_p: Optional[float] = typer.Option(None, help="Sample from the smallest set of tokens with probability >= p."),
    seed: int = typer.Option(0),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute the whole context every step (slow; for comparison)."),
) -> None:
    """Continue a prompt with a token LM (or generate from nothing) and decode the result."""
    import numpy as np
    import torch

    from .audio import AudioError, check_output, load, save
    from .generate import GenerateError, check_settings, generate
    from .plots import mel_power, plot_reconstruction
    from .pretrained import PretrainedError
    from .tokenizers.base import TokenizerError

    try:  # every setting and output is checked before the model is loaded or a token is sampled
        check_settings(seconds=seconds, prompt_seconds=prompt_seconds, has_prompt=prompt is not None,
                       temperature=temperature, top_k=top_k, top_p=top_p)
    except GenerateError as e:
        raise UserError(f"--{e.path.replace('_', '-')}: {e.reason}") from None
    outputs = [out, out.with_suffix(".mtok"), out.with_suffix(".png")]
    try:
        check_output(out)
    except AudioError as e:
        raise UserError(f"--out {e}") from None
    if prompt is not None:
        for o in outputs:
            if o.exists() and prompt.exists() and o.samefile(prompt) or o.resolve() == prompt.resolve():
                raise UserError(f"--out {o}: is the prompt (--prompt {prompt}); writing it would destroy the prompt, "
                                "choose another output name")
    try:
        # a second past the kept part lets the resampler see beyond the cut, as if the whole file were read
        wav, sr = (None, None) if prompt is None else load(prompt, duration=prompt_seconds + 1.0)
        with _progress() as progress:
            task = progress.add_task("generating", total=None, status="")
            result = generate(lm, prompt=None if wav is None else torch.from_numpy(wav), prompt_sample_rate=sr,
                              prompt_seconds=prompt_seconds if prompt else 0.0, seconds=seconds,
                              temperature=0.0 if greedy else temperature, top_k=top_k, top_p=top_p, seed=seed,
                              use_cache=not no_cache,
                              on_frames=lambda k, n: progress.update(task, total=n, completed=k, status="frames"))
    except GenerateError as e:
        raise UserError(f"--{e.path.replace('_', '-')}: {e.reason}") from None
    except (TokenizerError, PretrainedError, ValueError) as e:
        raise UserError(str(e)) from None
    tok = result.tokenizer
    wav_out = result.wav.numpy()
    hop = 256
    log_mel = np.log(np.maximum(mel_power(wav_out, tok.sample_rate, hop=hop), 1e-10))
    png = plot_reconstruction(log_mel, None, result.tokens.codes[0][0].numpy(), tok.layout.streams[0].frame_rate,
                              hop / tok.sample_rate, outputs[2],
                              title=f"{out.name}: {result.prompt_seconds:.1f} s prompt + continuation",
                              marks=(result.prompt_seconds,) if result.prompt_seconds else (), mel_label="Mel")
    result.tokens.save(outputs[1])
    save(out, wav_out, tok.sample_rate)
    console.print(f"{result.generated_tokens} tokens sampled at {result.tokens_per_second_generated:.0f} tokens/s "
                  f"({'no cache' if no_cache else 'KV cache'}); wrote {out}, {outputs[1]}, {png}")


@app.command("separate")
def separate_cmd(
    inputs: list[Path] = typer.Argument(..., help="Mixtures: audio files or folders (folders are mirrored)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: a folder per input holding one WAV per stem."),
    model: str = typer.Option("sep-lm-small", "--model", help="A bundled separator name or a saved separator folder."),
    greedy: bool = typer.Option(False, help="LM separator: always take the most likely token (temperature 0)."),
    temperature: Optional[float] = typer.Option(None, help="LM separator: sampling temperature (default: the model's)."),
    top_k: Optional[int] = typer.Option(None, help="LM separator: sample among the k most likely tokens."),
    top_p: Optional[float] = typer.Option(None, help="LM separator: nucleus sampling mass."),
    samples: Optional[int] = typer.Option(None, help="LM separator: draw N candidates, keep the one whose stems "
                                          "add up best to the mixture (needs a temperature > 0)."),
    seed: int = typer.Option(0, help="Seed of the sampler."),
    overwrite: bool = typer.Option(False, help="Separate again inputs whose stems are already there."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:1 …"),
) -> None:
    """Split mixtures into stems (one WAV per stem), a window at a time so long files fit in memory."""
    from .audio import AudioError, AudioStream
    from .convert import ConvertError
    from .separation.base import Separator, SeparatorError
    from .separation.files import plan_separation, separate_files

    _check_device(device)
    options = {"temperature": 0.0 if greedy else temperature, "top_k": top_k, "top_p": top_p, "samples": samples}
    options = {k: v for k, v in options.items() if v is not None}
    if options:
        options["seed"] = seed
    try:
        separator = Separator.from_pretrained(model, map_location=device)
        separator.check_options(**options)
        pairs = plan_separation(inputs, out, separator.stem_names)
    except (FileNotFoundError, ValueError, SeparatorError, ConvertError) as e:
        raise UserError(str(e)) from None
    total = 0.0
    for src, _ in pairs:
        try:
            total += AudioStream(src).duration
        except AudioError:
            pass  # reported when its turn comes
    with _progress() as progress:
        task = progress.add_task("separating", total=total, status="")
        rate = separator.sample_rate
        report = separate_files(
            pairs, separator, overwrite=overwrite, **options,
            on_file=lambda src, status: progress.update(task, status=f"{src.name} {status}"),
            on_samples=lambda n: progress.update(task, advance=n / rate))
    for src, why in report.failed:
        err_console.print(f"[red]error:[/] {escape(f'{src}: {why}')}")
    speed = _speed(report)
    console.print(f"{len(report.written)} separated into {', '.join(separator.stem_names)}, "
                  f"{len(report.skipped)} already there, {len(report.failed)} failed{speed}")
    if report.failed:
        raise typer.Exit(1)


@app.command("bench")
def bench_cmd(
    tokenizers: Optional[str] = typer.Option(None, help="Comma-separated bundled names or saved tokenizer folders "
                                             "(default: bandtok-small,rvq-small,rvq-mmd-small,pyramid-small; "
                                             "with --dual: duotok-small,bandtok-small,rvq-dac-small)."),
    quick: bool = typer.Option(False, help="Tiny settings: the whole pipeline in minutes (a smoke test)."),
    out: Path = typer.Option(Path("docs/results"), help="Where the table, plots and HTML report go."),
    work: Path = typer.Option(Path("runs/bench"), help="Token caches and LM runs (a rerun reuses them)."),
    corpus: Path = typer.Option(Path("data/chorales"), help="A rendered corpus folder."),
    split: str = typer.Option("test", help="Corpus split the clips and LM scores come from."),
    real: Optional[Path] = typer.Option(None, help="A folder of real recordings for the real-music columns "
                                        "(default: hedgewars' music when `make data-hedgewars` unpacked it); "
                                        "with --dual, the mixes' reconstruction (they have no stems)."),
    cache_dir: Path = typer.Option(Path("data/token-cache"), help="Corpus tokens per tokenizer fingerprint."),
    lm_steps: Optional[int] = typer.Option(None, help="Override the LM steps (same for every row)."),
    name: Optional[str] = typer.Option(None, help="File stem of the outputs (default bench-<date>)."),
    baselines: bool = typer.Option(True, help="Time EnCodec and DAC too, when their packages import."),
    dual: bool = typer.Option(False, "--dual", help="The dual-track LM protocol instead (DuoTok, Appendix B.1): "
                              "lead and accompaniment, parallel and track-to-track LMs, per-track cnBPT, "
                              "corruption and context curves."),
    probe: bool = typer.Option(False, "--probe", help="Add the attribute-probe columns: a logistic probe on each "
                               "tokenizer's frozen code embeddings, AP and ROC-AUC on the split's clips."),
    probe_real: Optional[Path] = typer.Option(None, help="A corpus of imported recordings (e.g. data/real) for the "
                                              "source-package probe columns (and the tagger's training)."),
    frechet: bool = typer.Option(False, "--frechet", help="Add Fréchet distances of each LM's continuations to "
                                 "held-out clips (Mel statistics and a tagger trained here), with their floor."),
    tagger: Optional[Path] = typer.Option(None, help="A trained tagger folder for --frechet (default: train one "
                                          "into <work>/tagger, reused by later runs)."),
    seed: int = typer.Option(0, help="Seed of the LMs and the bootstrap; each seed trains its own LMs (run "
                             "several to see the spread between seeds)."),
    track_to_track: bool = typer.Option(True, help="With --dual: also train the track-to-track LM and draw the "
                                        "corruption curves (--no-track-to-track: parallel LMs only, half the "
                                        "time, enough for ablations judged on cnBPT)."),
) -> None:
    """Compare tokenizers under one held-constant protocol: table, plots and an HTML report with audio."""
    from .bench import BenchConfig, run_bench

    default = "duotok-small,bandtok-small,rvq-dac-small" if dual else "bandtok-small,rvq-small,rvq-mmd-small,pyramid-small"
    names = [t.strip() for t in (tokenizers if tokenizers is not None else default).split(",") if t.strip()]
    if not names:
        raise UserError("--tokenizers is empty")
    if not track_to_track and not dual:
        raise UserError("--no-track-to-track: only bench --dual trains a track-to-track LM")
    if not (corpus / "metadata.jsonl").is_file():
        raise UserError(f"{corpus}: no rendered corpus here; run `musictok data build --out {corpus}` first")
    if real is None and HEDGEWARS_MUSIC.is_dir():
        real = HEDGEWARS_MUSIC
    if real is not None:
        from .audio import AudioError
        from .evaluate import load_clips

        if not real.exists():
            raise UserError(f"{real}: --real folder not found")
        try:  # fail now, not after an hour of training
            load_clips(16000, audio_dir=real, seconds=1.0, max_clips=1)
        except AudioError as e:
            raise UserError(f"--real: {e}") from None
    if dual:
        from .bench_dual import DualBenchConfig, run_dual_bench
        from .tokenizers.base import TokenizerError

        kw = {"corpus": str(corpus), "out": str(out), "eval_split": split, "cache_dir": str(cache_dir),
              "work": str(work if work != Path("runs/bench") else Path("runs/bench-dual")), "seed": seed,
              "track_to_track": track_to_track, "real": str(real) if real else None}
        kw |= ({"lm_steps": lm_steps} if lm_steps is not None else {}) | ({"name": name} if name else {})
        dcfg = DualBenchConfig.quick(names, **kw) if quick else DualBenchConfig(tokenizers=names, **kw)
        try:
            run_dual_bench(dcfg, log=lambda line: console.print(line, markup=False, highlight=False))
        except (TokenizerError, ValueError) as e:
            raise UserError(str(e)) from None
        return
    kw = {"corpus": str(corpus), "out": str(out), "work": str(work), "baselines": baselines,
          "eval_split": split, "cache_dir": str(cache_dir), "real": str(real) if real else None,
          "probe": probe, "frechet": frechet, "seed": seed}
    if probe_real is not None:
        if not (probe_real / "metadata.jsonl").is_file():
            raise UserError(f"{probe_real}: --probe-real needs an imported corpus (metadata.jsonl); "
                            "run `musictok data import` first")
        kw["probe_real"] = str(probe_real)
    if tagger is not None:
        kw["frechet_tagger"] = str(tagger)
    if lm_steps is not None:
        kw["lm_steps"] = lm_steps
    if name:
        kw["name"] = name
    cfg = BenchConfig.quick(names, **kw) if quick else BenchConfig(tokenizers=names, **kw)
    from .tokenizers.base import TokenizerError

    try:
        run_bench(cfg, log=lambda line: console.print(line, markup=False, highlight=False))
    except (TokenizerError, ValueError) as e:
        raise UserError(str(e)) from None


def _key_values(items: Optional[list[str]], expected: str) -> dict:
    """``--set key=value`` options as a dict, each value read as YAML (``3`` is a number, ``a`` a string)."""
    import yaml

    out: dict = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected {expected}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise UserError(f"--set {item!r}: the value is not valid YAML") from None
    return out


def _train(command: str, config: Optional[Path], resume: bool, out: Optional[Path], steps: Optional[int],
           max_minutes: Optional[float], vocoder: Optional[Path] = None, init_from: Optional[Path] = None,
           sets: Optional[list[str]] = None, init: Optional[str] = None, audio: Optional[list[str]] = None) -> None:
    from .errors import MusictokError
    from .train.loop import CheckpointError, Trainer
    from .train.registry import RunError, RunRequest, prepare_run

    overrides: dict = {}
    if out is not None:
        overrides["train.out_dir"] = str(out)
    if steps is not None:
        overrides["train.steps"] = steps
    if max_minutes is not None:
        overrides["train.max_minutes"] = max_minutes
    if init_from is not None:
        overrides["init_from"] = str(init_from)
    overrides |= _key_values(sets, "section.key=value, e.g. duotok.noise_prob=0")
    request = RunRequest(command, config, init, list(audio or []), overrides, str(vocoder) if vocoder else None)
    try:
        prepared = prepare_run(request)
    except RunError as e:
        raise UserError(str(e)) from None
    meta = prepared.meta("musictok " + " ".join(sys.argv[1:]))
    try:
        summary = Trainer(prepared.task, prepared.run.train, console=console, extra_meta=meta).run(resume=resume)
    except (FileExistsError, CheckpointError, ValueError, MusictokError) as e:
        raise UserError(str(e)) from None
    if os.environ.get("RANK", "0") != "0":
        return
    for line in prepared.summary_lines(summary):
        console.print(line, markup=False, highlight=False)


_RESUME_HELP = "Continue the run in the output folder from its checkpoint."
_OUT_HELP = "Output folder (default: train.out_dir of the config; a fine-tune without one: runs/finetune-<name>)."
_INIT_HELP = ("Fine-tune: start from this saved model (bundled name or folder); its config is the model's, and "
              "without --config a default recipe applies (docs/finetune.md).")
_AUDIO_HELP = ("A folder of audio to train on, replacing the config's data sources (repeatable; DIR:weight for "
               "unequal shares); some of its files are held out for validation.")
_SET_HELP = "Override a config key, section.key=value (repeatable), e.g. --set train.lr=5e-5."


@train_app.command("tokenizer")
def train_tokenizer(
    config: Optional[Path] = typer.Option(None, help="Run config YAML (kind: bandtok, codec or duotok), e.g. configs/bandtok-small.yaml, configs/rvq-small.yaml or configs/duotok-small-stage1.yaml; optional with --init."),
    resume: bool = typer.Option(False, help=_RESUME_HELP),
    out: Optional[Path] = typer.Option(None, help=_OUT_HELP),
    steps: Optional[int] = typer.Option(None, help="Override train.steps."),
    max_minutes: Optional[float] = typer.Option(None, help="Stop (with a checkpoint) after this many minutes."),
    vocoder: Optional[Path] = typer.Option(None, help="A trained vocoder folder to bundle into the export."),
    init_from: Optional[Path] = typer.Option(None, help="DuoTok: the previous stage's export to start from "
                                             "(overrides init_from of the config)."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a config key, section.key=value "
                                             "(repeatable), e.g. --set duotok.noise_prob=0 for an ablation."),
    init: Optional[str] = typer.Option(None, "--init", help=_INIT_HELP),
    audio: Optional[list[str]] = typer.Option(None, "--audio", help=_AUDIO_HELP),
) -> None:
    """Train a tokenizer on the rendered corpus (DuoTok: one stage per run), or fine-tune one on your audio."""
    _train("tokenizer", config, resume, out, steps, max_minutes, vocoder, init_from, set_, init, audio)


@train_app.command("lm")
def train_lm(
    config: Optional[Path] = typer.Option(None, help="Run config YAML (kind: lm), e.g. configs/lm-small.yaml; optional with --init."),
    resume: bool = typer.Option(False, help=_RESUME_HELP),
    out: Optional[Path] = typer.Option(None, help=_OUT_HELP),
    steps: Optional[int] = typer.Option(None, help="Override train.steps."),
    max_minutes: Optional[float] = typer.Option(None, help="Stop (with a checkpoint) after this many minutes."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help=_SET_HELP),
    init: Optional[str] = typer.Option(None, "--init", help=_INIT_HELP + " Here: a token LM; --audio is encoded "
                                       "with its tokenizer."),
    audio: Optional[list[str]] = typer.Option(None, "--audio", help=_AUDIO_HELP),
) -> None:
    """Train a token LM on a tokenizer's tokens of the rendered corpus (tokens cached on first use), or fine-tune one."""
    _train("lm", config, resume, out, steps, max_minutes, sets=set_, init=init, audio=audio)


@train_app.command("separator")
def train_separator(
    config: Path = typer.Option(..., help="Run config YAML (kind: separator), e.g. configs/sep-lm-small.yaml or configs/sep-mask-small.yaml."),
    resume: bool = typer.Option(False, help=_RESUME_HELP),
    out: Optional[Path] = typer.Option(None, help="Output folder (default: train.out_dir of the config)."),
    steps: Optional[int] = typer.Option(None, help="Override train.steps."),
    max_minutes: Optional[float] = typer.Option(None, help="Stop (with a checkpoint) after this many minutes."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a config key, section.key=value "
                                             "(repeatable), e.g. --set model.mode=independent for an ablation, "
                                             "--set train.log_every=1 to time steps."),
) -> None:
    """Train a source separator (the LM separator or the mask baseline) on the corpus's exact stems."""
    _train("separator", config, resume, out, steps, max_minutes, sets=set_)


@train_app.command("vocoder")
def train_vocoder(
    config: Optional[Path] = typer.Option(None, help="Run config YAML (kind: vocoder), e.g. configs/vocoder-small.yaml; optional with --init."),
    resume: bool = typer.Option(False, help=_RESUME_HELP),
    out: Optional[Path] = typer.Option(None, help=_OUT_HELP),
    steps: Optional[int] = typer.Option(None, help="Override train.steps."),
    max_minutes: Optional[float] = typer.Option(None, help="Stop (with a checkpoint) after this many minutes."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help=_SET_HELP),
    init: Optional[str] = typer.Option(None, "--init", help=_INIT_HELP),
    audio: Optional[list[str]] = typer.Option(None, "--audio", help=_AUDIO_HELP),
) -> None:
    """Train the Mel → waveform vocoder on the rendered corpus, or fine-tune one on your audio."""
    _train("vocoder", config, resume, out, steps, max_minutes, sets=set_, init=init, audio=audio)


@app.command("bundle")
def bundle_cmd(
    source: str = typer.Argument(..., help="A trained export (e.g. runs/vocoder-small-mel/export), any saved model "
                                 "folder or a bundled name: tokenizer, vocoder, token LM, separator or tagger."),
    dest: Path = typer.Argument(..., help="The folder to write, e.g. pretrained/vocoder-small; its files other "
                                "than config.json and model.safetensors (a MODEL_CARD.md) are kept."),
    dtype: str = typer.Option("fp16", "--dtype", help="How the floating weights are stored: fp16 (half the "
                              "file), bf16, or fp32. The recorded fingerprint is that of the weights as stored."),
    force: bool = typer.Option(False, "--force", help="Replace the model DEST already holds."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Record key=value in config.json (the value read "
                                             "as YAML; repeatable), e.g. --set train_step=6332."),
    vocoder_ref: Optional[str] = typer.Option(None, "--vocoder-ref", help="A tokenizer: name this bundled vocoder "
                                              "(e.g. vocoder-small) instead of storing its copy; it must be the same "
                                              "weights. The folder then needs that vocoder to load."),
) -> None:
    """Bundle a trained model as a checkpoint to ship: rounded to --dtype, fingerprinted, written atomically."""
    from .bundle import STORAGE_DTYPES, bundle

    if dtype not in STORAGE_DTYPES:
        raise UserError(f"--dtype {dtype}: expected one of {', '.join(STORAGE_DTYPES)}")
    done = bundle(source, dest, STORAGE_DTYPES[dtype], extra=_key_values(set_, "key=value, e.g. train_step=6332"),
                  force=force, vocoder_ref=vocoder_ref)
    who = done.fingerprint.short() if done.fingerprint else done.kind
    console.print(f"bundled {who} into {done.folder} ({done.size_bytes / 1e6:.1f} MB, {done.storage_dtype})",
                  markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    """Entry point: expected failures become one red line and exit code 1."""
    from .errors import MusictokError

    try:
        app()
    except (UserError, MusictokError) as e:
        err_console.print(f"[red]error:[/] {escape(str(e))}")
        sys.exit(1)
    except OSError as e:  # permissions, full disk …: the system's own words are the best one-liner
        why = f"{e.filename}: {e.strerror or e}" if e.filename else str(e.strerror or e)
        err_console.print(f"[red]error:[/] {escape(why)}")
        sys.exit(1)
