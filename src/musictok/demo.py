"""`make demo`: the main job on the embedded default corpus.

Today it renders a handful of Bach chorales with the embedded SoundFont, prints a summary, and draws the
Mel spectrograms of one piece's mix and stems (parts, duo and musdb groups).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from .audio import load
from .data.build import BuildConfig, build_corpus
from .data.datasets import CorpusIndex
from .data.verify import check_piece
from .plots import plot_stems


def run_demo(out: Path, data: Path, pieces: int = 8, console: Console | None = None) -> dict:
    console = console or Console()
    t0 = time.time()
    console.rule("[bold]1. render a small default corpus")
    report = build_corpus(BuildConfig(out=data, corpus="chorales", limit=pieces, seed=0),
                          on_piece=lambda r: console.print(f"  {r.status:9s} {r.id}"
                                                           + (f": {r.reason}" if r.reason else "")))
    index = CorpusIndex(data)
    console.print(f"{report.pieces} pieces, {report.hours * 60:.1f} min of audio, "
                  f"SoundFont {Path(report.soundfont).name} ({report.soundfont_origin}), "
                  f"{report.wall_seconds:.1f} s")

    console.rule("[bold]2. check mix = Σ stems")
    worst = max(c.max_abs_error for p in index.pieces for c in check_piece(index.folder(p)))
    console.print(f"max |mix − Σ stems| over every folder: {worst:.2e}")

    console.rule("[bold]3. draw one piece")
    piece = next((p for p in index.pieces if p["split"] == "test"), index.pieces[0])
    folder = index.folder(piece)
    sr = piece["sample_rate"]
    seconds = min(20.0, piece["duration_seconds"])
    mix, _ = load(folder / piece["mix"], duration=seconds)
    parts = [load(folder / p["stem"], duration=seconds)[0] for p in piece["parts"]]
    names = [f"{p['name']} · {p['program_name']}" for p in piece["parts"]]
    out.mkdir(parents=True, exist_ok=True)
    pngs = [plot_stems(mix, parts, names, sr, out / f"{piece['id']}_parts.png",
                       title=f"{piece['id']} ({piece['split']}) — parts")]
    duo = piece["groups"]["duo"]
    pngs.append(plot_stems(mix, [np.sum([parts[i] for i in duo[k]], axis=0) for k in ("lead", "accompaniment")],
                           ["lead", "accompaniment"], sr, out / f"{piece['id']}_duo.png",
                           title=f"{piece['id']} — duo"))
    if piece.get("musdb"):
        sub = folder / "musdb"
        stems = piece["musdb"]["stems"]
        pngs.append(plot_stems(load(sub / piece["mix"], duration=seconds)[0],
                               [load(sub / f, duration=seconds)[0] for f in stems.values()],
                               list(stems), sr, out / f"{piece['id']}_musdb.png", title=f"{piece['id']} — musdb"))

    table = Table(title=f"{piece['id']}: {piece['title']}")
    for col in ("part", "instrument", "pitch range", "notes"):
        table.add_column(col)
    for p in piece["parts"]:
        table.add_row(p["name"], f"{p['program_name']} ({p['program']})", "–".join(map(str, p["pitch_range"])),
                      str(p["notes"]))
    console.print(table)
    console.print(f"key {piece['key']}, {piece['time_signature']}, {piece['tempo_qpm']} qpm, "
                  f"{piece['duration_seconds']:.1f} s, split {piece['split']}")
    for p in pngs:
        console.print(f"wrote {p}")
    summary = {"pieces": report.pieces, "hours": report.hours, "max_mix_error": worst,
               "figures": [str(p) for p in pngs], "seconds": time.time() - t0}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    console.print(f"demo finished in {summary['seconds']:.1f} s")
    return summary
