"""The benches' reports: tables, plots and the one-file HTML, apart from the code that measures.

``bench.py`` and ``bench_dual.py`` run and time things and hand a JSON-ready result here; this module turns a
result into Markdown, PNG plots and self-contained HTML, and nothing here trains, encodes or generates. So a
report can be rebuilt from a saved ``bench-<date>.json`` alone (:func:`rebuild`), and a new column is one
line in :data:`COLUMNS`.

Optional columns (the attribute probe, Fréchet distances of generations) appear only when some row has
them, so a default bench's table keeps its shape.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data.score import DUO_TRACKS

COLUMNS: list[tuple[str, str, str]] = [  # (key, header, format)
    ("frame_rate", "frames/s", "{:.2f}"), ("tokens_per_second", "tokens/s", "{:.1f}"), ("kbps", "kbps", "{:.3f}"),
    ("train_steps", "tokenizer steps", "{:.0f}"), ("train_minutes", "tokenizer train min", "{:.0f}"),
    ("mel_distance", "Mel dist ↓", "{:.3f}"), ("stft_distance", "STFT dist ↓", "{:.3f}"), ("si_sdr", "SI-SDR dB", "{:.1f}"),
    ("utilization", "util.", "{:.3f}"), ("normalized_entropy", "norm. H", "{:.3f}"),
    ("inter_codebook_mi", "MI between slots (bits) − shuffled", "{:.3f}"), ("inter_codebook_mi_ci", "its 95% interval", "[{:.3f}, {:.3f}]"),
    ("neighbour_nmi", "neighbour NMI − shuffled", "{:.3f}"), ("neighbour_nmi_ci", "its 95% interval", "[{:.3f}, {:.3f}]"),
    ("stability_noise", "stable: noise", "{:.2f}"), ("stability_gain", "stable: gain", "{:.2f}"),
    ("stability_shift", "stable: shift", "{:.2f}"),
    ("real_mel_distance", "real: Mel dist ↓", "{:.3f}"), ("real_utilization", "real: util.", "{:.3f}"),
    ("real_normalized_entropy", "real: norm. H", "{:.3f}"), ("real_stability_gain", "real: stable: gain", "{:.2f}"),
    ("bpt", "BPT ↓", "{:.3f}"), ("cnbpt", "cnBPT ↓", "{:.3f}"), ("real_cnbpt", "real: cnBPT ↓", "{:.3f}"),
    ("enbpt", "enBPT ↓", "{:.3f}"), ("cnbps", "cnBPS ↓", "{:.1f}"),
    ("acc1", "Acc@1", "{:.3f}"), ("acc5", "Acc@5", "{:.3f}"), ("acc10", "Acc@10", "{:.3f}"), ("lm_steps_per_second", "LM steps / s audio", "{:.1f}"),
    ("generation_tokens_per_second", "gen. tokens/s", "{:.0f}"),
    # behind `bench --probe` (metrics/probe.py): a logistic probe on the frozen code embeddings, test clips
    ("probe_ap", "probe AP ↑", "{:.3f}"), ("probe_ap_ci", "its 95% interval", "[{:.3f}, {:.3f}]"),
    ("probe_auc", "probe ROC-AUC ↑", "{:.3f}"), ("probe_auc_ci", "its 95% interval", "[{:.3f}, {:.3f}]"),
    ("probe_auc_shuffled", "shuffled-label AUC", "{:.3f}"),
    ("real_probe_ap", "real: probe AP ↑", "{:.3f}"), ("real_probe_auc", "real: probe ROC-AUC ↑", "{:.3f}"),
    ("real_probe_auc_ci", "its 95% interval", "[{:.3f}, {:.3f}]"),
    # behind `bench --frechet` (metrics/frechet.py): continuations against held-out clips
    ("fd_mel_recon", "recon.: Mel-stat. FD ↓", "{:.3g}"),
    ("fd_mel", "gen.: Mel-stat. FD ↓", "{:.3g}"), ("fd_mel_ci", "its 95% interval", "[{:.3g}, {:.3g}]"),
    ("fd_tagger_recon", "recon.: tagger FD ↓", "{:.3g}"),
    ("fd_tagger", "gen.: tagger FD ↓", "{:.3g}"), ("fd_tagger_ci", "its 95% interval", "[{:.3g}, {:.3g}]"),
]
OPTIONAL = {k for k, _, _ in COLUMNS[COLUMNS.index(("probe_ap", "probe AP ↑", "{:.3f}")):]}
NOT_RECORDED = {"train_steps", "train_minutes"}  # facts read from a checkpoint: "n/a" when it has none


def shown_columns(rows: list[dict]) -> list[tuple[str, str, str]]:
    """The table's columns: every standard one, and an optional one when some row has a value for it."""
    return [c for c in COLUMNS if c[0] not in OPTIONAL or any(r["values"].get(c[0]) is not None for r in rows)]



# ---------------------------------------------------------------------------------------- bench
def machine() -> str:
    """What the numbers were measured on (they are speeds on this machine)."""
    import os
    import platform

    return f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def provenance() -> dict[str, str]:
    """Stamped into every results JSON, so a number can be traced to the code, metric definitions and machine."""
    import time

    from . import __version__
    from .metrics.version import METRICS_VERSION

    return {"date": time.strftime("%Y-%m-%d"), "musictok_version": __version__, "metrics_version": METRICS_VERSION,
            "machine": machine()}


def audio_data_uri(wav: np.ndarray, sample_rate: int) -> str:
    """A ``data:`` URI (Ogg Vorbis, small enough to embed; WAV if this libsndfile cannot write Ogg)."""
    import soundfile as sf

    wav = np.clip(np.asarray(wav, dtype=np.float32), -1, 1)
    buf = io.BytesIO()
    try:
        sf.write(buf, wav, sample_rate, format="OGG", subtype="VORBIS")
        mime = "audio/ogg"
    except Exception:
        buf = io.BytesIO()
        sf.write(buf, wav, sample_rate, format="WAV", subtype="PCM_16")
        mime = "audio/wav"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode()}"


def bench_plots(result: dict, out: Path, stem: str) -> dict[str, Path]:
    """The trade-off, loss-by-position and codebook-usage plots (and the Fréchet plot when measured)."""
    from .plots import plot_bench_losses, plot_bench_tradeoff, plot_codebook_usage, plot_frechet_rows

    rows = result["rows"]
    paths = {
        "tradeoff": plot_bench_tradeoff(
            [(f"{r['tokenizer']} / {r['pattern']}", r["values"]["mel_distance"], r["values"]["cnbpt"]) for r in rows],
            out / f"{stem}-tradeoff.png"),
        "loss_by_position": plot_bench_losses(
            {k: (v["loss_by_position_bits"], v["context_seconds"]) for k, v in result["extras"].items()
             if "loss_by_position_bits" in v}, out / f"{stem}-loss-by-position.png"),
        "usage": plot_codebook_usage({k: v["usage"] for k, v in result["extras"].items() if "usage" in v},
                                     out / f"{stem}-usage.png"),
    }
    fd = [(f"{r['tokenizer']} / {r['pattern']}", r["values"]) for r in rows if r["values"].get("fd_mel") is not None]
    if fd:
        paths["frechet"] = plot_frechet_rows(fd, result.get("frechet_floor", {}), out / f"{stem}-frechet.png")
    return paths


def _fmt(v: Any, spec: str, missing: str = "–") -> str:
    """A table cell: ``missing`` for a missing or undefined value, an interval for a pair."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return missing
    return spec.format(*v) if isinstance(v, (list, tuple)) else spec.format(v)


def _cells(values: dict, columns: list[tuple[str, str, str]]) -> list[str]:
    """A bench row's cells under ``columns``; a budget the checkpoint did not record reads "n/a"."""
    return [_fmt(values.get(k), f, "n/a" if k in NOT_RECORDED else "–") for k, _, f in columns]


def markdown_report(result: dict, plots: dict[str, Path]) -> str:
    """The paper-style table, speed table, metric notes and plot links of one bench run."""
    cfg = result["config"]
    columns = shown_columns(result["rows"])
    head = "| tokenizer | pattern | " + " | ".join(h for _, h, _ in columns) + " |"
    lines = [f"# Tokenizer benchmark, {result['date']}", "",
             f"Machine: {result['machine']}. musictok {result['musictok_version']}, metrics "
             f"v{result.get('metrics_version', '?')}. Wall time "
             f"{result['wall_seconds'] / 60:.1f} min.", "",
             "Held constant for every row: the LM (preset `{lm_preset}`, {lm_layers} layers × {lm_embd}, {lm_heads} "
             "heads), {lm_steps} steps of batch {lm_batch}, AdamW lr {lm_lr}, {context_seconds:g} s of context, seed "
             "{seed}; reconstruction and token statistics on {eval_clips} test clips of {eval_seconds:g} s; LM "
             "metrics on up to {lm_eval_windows} test windows.".format(**cfg) + _real_and_budget_note(cfg), "",
             head, "|" + "---|" * (len(columns) + 2)]
    for r in result["rows"]:
        lines.append(f"| {r['tokenizer']} | {r['pattern']} | " + " | ".join(_cells(r["values"], columns)) + " |")
    lines += _metric_notes(result)
    sp = result["speed"]
    lines += ["", f"## Speed: {sp['seconds']:g} s of audio, batch 1, {sp['threads']} threads, median of {sp['repeats']} "
              f"runs after a warm-up (baselines: {sp.get('baseline_repeats', 1)} run)",
              "", "Baselines are built from their PyPI packages with random weights: speed does not depend on the "
              "weights.", "", "| model | encode × real time | decode × real time | encode vs EnCodec | decode vs EnCodec |",
              "|---|---:|---:|---:|---:|"]
    for name, s in sp["rows"].items():
        lines.append(f"| {name} | {s['encode_realtime_factor']:.1f} | {s['decode_realtime_factor']:.1f} | "
                     f"{_fmt(s.get('encode_vs_encodec'), '{:.2f}×')} | {_fmt(s.get('decode_vs_encodec'), '{:.2f}×')} |")
    for name, note in sp["notes"].items():
        lines.append(f"\n{name}: {note}")
    lines += ["", "## Plots", ""] + [f"![{k}]({p.name})" for k, p in plots.items()]
    lines += ["", f"The HTML report with audio, `{Path(next(iter(plots.values()))).name.rsplit('-', 1)[0]}.html`, is "
              "written next to this file by the run; it embeds rendered audio, so it is not committed."]
    return "\n".join(lines) + "\n"


def _real_and_budget_note(cfg: dict) -> str:
    """What the real-music columns were measured on and where the tokenizers' budgets come from."""
    real = (f" The real-music columns: {cfg['eval_clips']} clips of {cfg['eval_seconds']:g} s of `{cfg['real']}` "
            "(held out), the same LMs scored on their tokens (real: cnBPT, up to the same number of windows)."
            if cfg.get("real") else "")
    return real + (" Tokenizer steps and train minutes: the tokenizer's own training, from its export's config.json "
                   "and its run's summary.json (minutes over every sitting); n/a where the checkpoint records none.")


def _metric_notes(result: dict) -> list[str]:
    """What the optional columns were measured on, and their noise floor (Markdown lines)."""
    out = []
    probe = result.get("probe")
    if probe:
        out += ["", f"Probe: {probe['description']}"]
        for name, p in probe.get("tags", {}).items():
            out.append(f"- {name}: " + ", ".join(f"{t} (test prevalence {v:.2f})" for t, v in p.items()))
    floor = result.get("frechet_floor")
    if floor:
        out += ["", f"Fréchet distances: {floor['description']} Floor (the prompts' true continuations, real music, "
                f"against the same reference at the same sizes): Mel-stat. {floor['mel']:.3g} [{floor['mel_ci'][0]:.3g}, "
                f"{floor['mel_ci'][1]:.3g}]" + (f", tagger {floor['tagger']:.3g} [{floor['tagger_ci'][0]:.3g}, "
                                                f"{floor['tagger_ci'][1]:.3g}]" if floor.get("tagger") is not None else "")
                + "."]
    return out


def html_report(result: dict, plots: dict[str, Path], media: dict) -> str:
    """One self-contained HTML file: table, plots (inline PNG) and audio (inline Ogg)."""
    e = html.escape
    columns = shown_columns(result["rows"])
    cells = "".join(f"<th>{e(h)}</th>" for _, h, _ in columns)
    body = [f"<h1>musictok tokenizer benchmark, {e(result['date'])}</h1>",
            f"<p>{e(result['machine'])}; musictok {e(result['musictok_version'])}; "
            f"wall time {result['wall_seconds'] / 60:.1f} min. Same LM, steps, optimizer and context for every row.</p>",
            f"<table><tr><th>tokenizer</th><th>pattern</th>{cells}</tr>"]
    for r in result["rows"]:
        body.append(f"<tr><td>{e(r['tokenizer'])}</td><td>{e(r['pattern'])}</td>"
                    + "".join(f"<td>{c}</td>" for c in _cells(r["values"], columns)) + "</tr>")
    body.append("</table>")
    body += [f"<p>{e(line)}</p>" for line in _metric_notes(result) if line]
    body.append("<h2>Speed</h2><table><tr><th>model</th><th>encode × RT</th><th>decode × RT</th>"
                "<th>encode vs EnCodec</th><th>decode vs EnCodec</th></tr>")
    for name, s in result["speed"]["rows"].items():
        body.append(f"<tr><td>{e(name)}</td><td>{s['encode_realtime_factor']:.1f}</td><td>{s['decode_realtime_factor']:.1f}"
                    f"</td><td>{_fmt(s.get('encode_vs_encodec'), '{:.2f}×')}</td><td>{_fmt(s.get('decode_vs_encodec'), '{:.2f}×')}</td></tr>")
    body.append("</table>")
    for name, note in result["speed"]["notes"].items():
        body.append(f"<p>{e(name)}: {e(note)}</p>")
    body.append("<h2>Plots</h2>")
    for k, p in plots.items():
        data = base64.b64encode(Path(p).read_bytes()).decode()
        body.append(f'<figure><img alt="{e(k)}" src="data:image/png;base64,{data}"><figcaption>{e(k)}</figcaption></figure>')
    body.append("<h2>Listen</h2><p>Reconstructions of the same test clips, and continuations of their first "
                f"{result['config']['prompt_seconds']:g} s by each LM.</p>")
    for i, (clip, uri) in enumerate(media["clips"].items()):
        body.append(f"<h3>{e(clip)}</h3><table><tr><td>original</td><td><audio controls src=\"{uri}\"></audio></td></tr>")
        for name, items in media["recon"].items():
            if i < len(items):
                body.append(f"<tr><td>{e(name)}: reconstruction</td><td><audio controls src=\"{items[i]}\"></audio></td></tr>")
        for name, items in media["continuation"].items():
            if i < len(items):
                body.append(f"<tr><td>{e(name)}: continuation</td><td><audio controls src=\"{items[i]}\"></audio></td></tr>")
        body.append("</table>")
    style = ("body{font-family:sans-serif;margin:2em;max-width:1400px} table{border-collapse:collapse;font-size:13px}"
             " td,th{border:1px solid #ccc;padding:3px 6px;text-align:right} td:first-child,th:first-child{text-align:left}"
             " img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>musictok bench {e(result['date'])}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


# ---------------------------------------------------------------------------------------- bench --dual
def dual_plots(rows: dict, out: Path, stem: str) -> dict[str, str]:
    """`bench --dual`: the corruption and context-scaling figures (file names, next to the Markdown); a run
    without the track-to-track LM has no corruption figure."""
    from .plots import plot_context_scaling, plot_corruption

    plots = {}
    if all("corruption" in r for r in rows.values()):
        plots["corruption"] = plot_corruption({k: r["corruption"] for k, r in rows.items()},
                                              out / f"{stem}-corruption.png").name
    plots["context"] = plot_context_scaling({k: r["context"] for k, r in rows.items()},
                                            out / f"{stem}-context.png").name
    return plots


def _num(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _bracket(interval: list | None, digits: int = 3) -> str:
    return "" if not interval else f"[{_num(interval[0], digits)}, {_num(interval[1], digits)}]"


def _utilization(cb: dict) -> str:
    """Utilization beside that of uniformly used codes at the same number of tokens (its ceiling there)."""
    uniform = cb.get("uniform_utilization")
    return _num(cb["utilization"]) + ("" if uniform is None else f" ({uniform:.3f})")


def _track_to_track_lines(rows: dict) -> list[str]:
    """`bench --dual`'s track-to-track table and the corruption costs with their intervals."""
    lines = ["", "## Track-to-track (accompaniment given the lead)", "",
             "| tokenizer | cnBPT ↓ | BPT | enBPT | Acc@1 | Acc@5 | Acc@10 | Acc@50 | ΔcnBPT mismatch "
             "| ΔcnBPT shift (frames) | ΔcnBPT mask (ratio) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        s = r["conditional"]["streams"][DUO_TRACKS[1]]
        acc = {str(k): v for k, v in (s["topk_accuracy"] or {}).items()}
        c = r["corruption"]
        shift = ", ".join(f"{k}: {v:+.1%}" for k, v in c["shift"].items())
        mask = ", ".join(f"{k}: {v:+.1%}" for k, v in c["mask"].items())
        lines.append(f"| {name} | {_num(s['cnbpt'])} | {_num(s['bpt'])} | {_num(s['enbpt'])} | {_num(acc.get('1'))} | "
                     f"{_num(acc.get('5'))} | {_num(acc.get('10'))} | {_num(acc.get('50'))} | {c['mismatch']:+.1%} | {shift} | {mask} |")
    if not any((r["corruption"].get("intervals") or {}) for r in rows.values()):
        return lines
    lines += ["", "## Corruption costs with their intervals (ΔcnBPT of the accompaniment, 95 %)", "",
              "| tokenizer | corruption | ΔcnBPT | interval |", "|---|---|---|---|"]
    for name, r in rows.items():
        c = r["corruption"]
        for key, iv in (c.get("intervals") or {}).items():
            kind, _, at = key.partition(" ")
            value = c["mismatch"] if kind == "mismatch" else next(
                v for k, v in c[kind].items() if float(k) == float(at))
            lines.append(f"| {name} | {key} | {value:+.1%} | [{iv[0]:+.1%}, {iv[1]:+.1%}] |")
    return lines


def dual_markdown_report(result: dict, plots: dict) -> str:
    """`bench --dual`: per-track tables of both LMs, corruption costs and the context-scaling table."""
    from .metrics.diagnostics import context_gain

    cfg = result["config"]
    lines = [f"# Dual-track LM protocol ({result['date']})", "",
             f"Same LM for every row: {cfg['lm_layers']} layers × {cfg['lm_embd']} wide, {cfg['lm_steps']} steps, "
             f"batch {cfg['lm_batch']}, {cfg['context_seconds']:g} s of context; track-to-track: the accompaniment "
             f"given the whole lead and its first {cfg['prefix_seconds']:g} s. Corpus `{cfg['corpus']}`, "
             f"{cfg['eval_split']} split. enBPT and norm. H divide by the codes' unigram entropy: "
             + ("the plug-in estimate (metrics v1)." if str(result.get("metrics_version")) == "1" else
                f"the NSB estimate (metrics v{result.get('metrics_version')})."), "",
             f"LM seed {cfg.get('seed', 0)}. Mel distance: each track's decode against its stem, "
             f"{cfg.get('recon_clips', '?')} clips of {cfg.get('recon_seconds', '?')} s, with a 95 % bootstrap "
             "interval" + ("; corruption costs: 95 % intervals from resampling the test pieces (clean and corrupted "
                           "paired)." if cfg.get("track_to_track", True) else
                           ". Parallel LMs only (`--no-track-to-track`): no track-to-track LM, no corruption costs."),
             "",
             "## Parallel (unconditional), per track", "",
             "| tokenizer | kbps | track | Mel dist. ↓ | cnBPT ↓ | BPT | enBPT | cnBPS | Acc@1 | Acc@5 | Acc@10 | Acc@50 "
             "| util. (if uniform) | norm. H |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in result["rows"].items():
        for track, s in r["parallel"]["streams"].items():
            acc = {str(k): v for k, v in (s["topk_accuracy"] or {}).items()}
            cb = r["codebook"][track]
            rec = (r.get("reconstruction") or {}).get(track)
            mel = "–" if rec is None else f"{rec['mel_distance']:.3f} {_bracket(rec['interval'])}" + (
                f" ({rec['silent_clips']} silent)" if rec.get("silent_clips") else "")
            lines.append(f"| {name} | {r['kbps']:.3f} | {track} | {mel} | {_num(s['cnbpt'])} | {_num(s['bpt'])} | "
                         f"{_num(s['enbpt'])} | {_num(s['cnbps'], 1)} | {_num(acc.get('1'))} | {_num(acc.get('5'))} | "
                         f"{_num(acc.get('10'))} | {_num(acc.get('50'))} | {_utilization(cb)} | "
                         f"{_num(cb['normalized_entropy'])} |")
        lines.append(f"| {name} | | **avg** | | {_num(r['parallel']['cnbpt'])} | {_num(r['parallel']['bpt'])} | "
                     f"{_num(r['parallel']['enbpt'])} | {_num(r['parallel']['cnbps'], 1)} | | | | | | |")
    if all("conditional" in r for r in result["rows"].values()):
        lines += _track_to_track_lines(result["rows"])
    else:
        lines += ["", "## Track-to-track", "", "Not run (`--no-track-to-track`): parallel LMs only."]
    real = {name: r["real"] for name, r in result["rows"].items() if r.get("real")}
    if real:
        first = next(iter(real.values()))
        lines += ["", "## Real recordings (no stems: the mix through the tokenizer, against the mix)", "",
                  f"{first['clips']} clips of {first['seconds']:g} s from `{first['folder']}` (held out, never trained "
                  "on). A two-track tokenizer separates the mix itself and its two decoded tracks are summed; the "
                  "others tokenize the mix as one signal. Mel distance with a 95 % bootstrap interval over clips.", "",
                  "| tokenizer | Mel dist. ↓ | util. (if uniform) per stream |", "|---|---|---|"]
        for name, r in real.items():
            util = ", ".join(f"{k}: {_utilization(cb)}" for k, cb in r["codebook"].items())
            lines.append(f"| {name} | {r['mel_distance']:.3f} {_bracket(r['interval'])} | {util} |")
    grid = next(iter(result["rows"].values()))["context"]
    lines += ["", "## Context scaling (parallel LM, cnBPT of the last "
              f"{cfg['scored_seconds']:g} s against the window's length)", "",
              "Gain: the relative cnBPT drop from the shortest to the longest context, with its 95 % interval "
              "from resampling the test pieces (both contexts paired).", "",
              "| tokenizer | " + " | ".join(f"{k} s" for k in grid) + " | gain |", "|---|" + "---|" * (len(grid) + 1)]
    for name, r in result["rows"].items():
        iv = r.get("context_gain_interval")
        lines.append(f"| {name} | " + " | ".join(_num(v) for v in r["context"].values())
                     + f" | {context_gain(r['context']):+.2%}"
                     + (f" [{iv[0]:+.2%}, {iv[1]:+.2%}]" if iv else "") + " |")
    for key, path in plots.items():
        lines += ["", f"![{key}]({path})"]
    lines.append("")
    return "\n".join(lines)


def rebuild(json_path: str | Path) -> dict[str, Path]:
    """Rewrite a bench run's Markdown and plots from its saved JSON (the HTML needs the run's audio)."""
    from .atomic import write_text

    path = Path(json_path)
    result = json.loads(path.read_text())
    out, stem = path.parent, path.stem
    if "speed" in result:
        plots = bench_plots(result, out, stem)
        write_text(out / f"{stem}.md", markdown_report(result, plots))
    else:
        plots = {k: out / v for k, v in dual_plots(result["rows"], out, stem).items()}
        write_text(out / f"{stem}.md", dual_markdown_report(result, {k: p.name for k, p in plots.items()}))
    return plots
