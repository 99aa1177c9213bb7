"""Figures people would rather look at than read: spectrograms of a mix and its stems."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic import atomic_path


def _figure_backend():
    import matplotlib

    matplotlib.use("Agg")  # headless machines and CI have no display
    import matplotlib.pyplot as plt

    return plt


def mel_power(wav: np.ndarray, sample_rate: int, n_mels: int = 128, hop: int = 256) -> np.ndarray:
    """Mel power spectrogram (for display only), ``(n_mels, frames)``."""
    import librosa

    return librosa.feature.melspectrogram(y=wav, sr=sample_rate, n_fft=1024, hop_length=hop, n_mels=n_mels)


def save_figure(fig, path: str | Path) -> Path:
    """Write a figure atomically (temp file, then rename) and close it: saving is the last thing every plot
    does, and pyplot keeps open figures alive."""
    import matplotlib.pyplot as plt

    p = Path(path)
    try:
        with atomic_path(p, suffix=p.suffix) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return p


def plot_stems(mix: np.ndarray, stems: list[np.ndarray], names: list[str], sample_rate: int,
               path: str | Path, title: str = "") -> Path:
    """One row per signal (mix first), Mel spectrograms on a shared time axis and colour scale."""
    plt = _figure_backend()
    rows = [("mix", mix)] + list(zip(names, stems))
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 1.7 * len(rows)), sharex=True, squeeze=False)
    hop = 256
    mels = [mel_power(wav, sample_rate, hop=hop) for _, wav in rows]
    ref = max(float(m.max()) for m in mels) or 1.0  # one colour scale for all rows: 0 dB = loudest bin
    for ax, (name, _), mel in zip(axes[:, 0], rows, mels):
        db = 10 * np.log10(np.maximum(mel, 1e-10) / ref)
        ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=-80, vmax=0,
                  extent=(0, db.shape[1] * hop / sample_rate, 0, db.shape[0]))
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
        ax.set_yticks([])
    axes[-1, 0].set_xlabel("time (s)")
    if title:
        axes[0, 0].set_title(title)
    return save_figure(fig, path)


def plot_reconstruction(log_mel: np.ndarray, log_mel_hat: np.ndarray | None, codes: np.ndarray, frame_rate: float,
                        hop_seconds: float, path: str | Path, title: str = "", marks: tuple[float, ...] = (),
                        mel_label: str = "original Mel") -> Path:
    """Original Mel | reconstructed Mel (if given) | token grid (time × band, coloured by code), one time
    axis; ``marks`` (seconds) draw vertical lines, e.g. where a prompt ends.

    ``log_mel``: ``(n_mels, F)``; ``codes``: ``(frames, bands)``.
    """
    plt = _figure_backend()
    mels = [(log_mel, mel_label)] + ([(log_mel_hat, "reconstructed Mel")] if log_mel_hat is not None else [])
    fig, axes = plt.subplots(len(mels) + 1, 1, figsize=(11, 2.5 * (len(mels) + 1)), sharex=True)
    lo, hi = float(np.percentile(log_mel, 1)), float(log_mel.max())
    for ax, (mel, name) in zip(axes, mels):
        ax.imshow(mel, origin="lower", aspect="auto", cmap="magma", vmin=lo, vmax=hi,
                  extent=(0, mel.shape[1] * hop_seconds, 0, mel.shape[0]))
        ax.set_ylabel(name)
    grid = axes[-1].imshow(codes.T, origin="lower", aspect="auto", cmap="nipy_spectral", interpolation="nearest",
                           extent=(0, codes.shape[0] / frame_rate, -0.5, codes.shape[1] - 0.5))
    axes[-1].set_ylabel("band token")
    axes[-1].set_xlabel("time (s)")
    for t in marks:
        for ax in axes:
            ax.axvline(t, color="white", linewidth=2, linestyle="--")
    fig.colorbar(grid, ax=list(axes), label="code (bottom row)", pad=0.01, fraction=0.03)  # all rows shrink alike
    if title:
        axes[0].set_title(title)
    return save_figure(fig, path)


def plot_curve(values, path: str | Path, *, xlabel: str, ylabel: str, title: str = "",
               smooth: int = 16, label: str | None = None, more: dict | None = None) -> Path:
    """A line (moving average over ``smooth`` points) — e.g. loss by position in the context; ``more``
    adds named curves to compare."""
    plt = _figure_backend()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for name, ys in ({label or "": values} | (more or {})).items():
        y = np.asarray(ys, dtype=float)
        if smooth > 1 and len(y) > smooth:
            y = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
        ax.plot(np.arange(len(y)), y, label=name or None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if label or more:
        ax.legend()
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_bench_tradeoff(points: list[tuple[str, float, float]], path: str | Path) -> Path:
    """The predictability–fidelity trade-off: cnBPT (lower = easier to predict) against Mel distance
    (lower = more faithful), one point per (tokenizer, pattern). Points of one tokenizer sit close together,
    so each gets a number beside it and its name in a legend outside the axes: labels never overlap."""
    plt = _figure_backend()
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    markers = "osD^v<>Pp*hX"
    shown = [(label, mel, cn) for label, mel, cn in points if mel is not None and cn is not None]
    for i, (label, mel, cn) in enumerate(shown):
        ax.scatter([mel], [cn], s=40, marker=markers[i % len(markers)], color=f"C{i % 10}", label=f"{i + 1}  {label}")
        ax.annotate(str(i + 1), (mel, cn), textcoords="offset points", xytext=(4, 3), fontsize=7)
    ax.set_xlabel("Mel distance (test clips) ↓")
    ax.set_ylabel("cnBPT of the held-constant LM ↓")
    ax.set_title("Predictability against fidelity")
    ax.grid(alpha=0.3)
    if shown:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)
    return save_figure(fig, path)


def plot_bench_losses(curves: dict[str, tuple[list[float], float]], path: str | Path, smooth: int = 8) -> Path:
    """Loss (bits per step, summed over a step's columns) against position in the context, in seconds, so
    patterns with different numbers of steps share one axis."""
    plt = _figure_backend()
    fig, ax = plt.subplots(figsize=(8, 4))
    for name, (values, seconds) in curves.items():
        y = np.asarray(values, dtype=float)
        if smooth > 1 and len(y) > 4 * smooth:
            y = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
        ax.plot(np.linspace(0, seconds, len(y)), y, label=name, lw=1)
    ax.set_xlabel("position in the context (s)")
    ax.set_ylabel("bits per step")
    ax.set_yscale("log")
    ax.set_title("Loss by position in the context")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)  # beside, not over, the curves
    return save_figure(fig, path)


def plot_codebook_usage(usage: dict[str, dict[str, list[list[int]]]], path: str | Path) -> Path:
    """Rank–frequency of code use per tokenizer (every codebook of every stream, sorted counts as a share of
    its tokens): a flat curve is a well-used codebook, a cliff is dead codes."""
    plt = _figure_backend()
    fig, axes = plt.subplots(1, max(len(usage), 1), figsize=(3.2 * max(len(usage), 1), 3), squeeze=False)
    for ax, (name, streams) in zip(axes[0], usage.items()):
        for stream, books in streams.items():
            for j, counts in enumerate(books):
                c = np.sort(np.asarray(counts, dtype=float))[::-1]
                if c.sum() > 0:
                    ax.plot(np.arange(1, len(c) + 1), c / c.sum(), lw=0.8, alpha=0.7,
                            label=stream if j == 0 and len(streams) > 1 else None)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("code rank")
        ax.grid(alpha=0.3)
        if len(streams) > 1:
            ax.legend(fontsize=7)
    axes[0][0].set_ylabel("share of tokens")
    return save_figure(fig, path)


def plot_corruption(curves: dict[str, dict], path: str | Path) -> Path:
    """DuoTok's Fig. 3: relative cnBPT cost of corrupting the conditioning track, per tokenizer — against the
    shift (frames) and the mask ratio, with the mismatch as a bar; shaded bands and error bars are the
    bootstrap intervals when the result has them. ``curves``: name -> ``CorruptionResult.to_dict()``."""
    plt = _figure_backend()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5), gridspec_kw={"width_ratios": [2, 2, 1]})
    names = list(curves)
    for name, c in curves.items():
        ivs = c.get("intervals") or {}
        for ax, kind, cast in ((axes[0], "shift", int), (axes[1], "mask", float)):
            pts = sorted((cast(k), v) for k, v in c[kind].items())
            line, = ax.plot([k for k, _ in pts], [100 * v for _, v in pts], marker="o", label=name)
            band = [ivs.get(f"{kind} {k:g}") for k, _ in pts]
            if pts and all(band):  # the 95 % bootstrap interval over pieces, when measured
                ax.fill_between([k for k, _ in pts], [100 * b[0] for b in band], [100 * b[1] for b in band],
                                color=line.get_color(), alpha=0.2, linewidth=0)
    heights = [100 * (curves[n]["mismatch"] or 0.0) for n in names]
    bands = [(curves[n].get("intervals") or {}).get("mismatch") for n in names]
    err = None
    if names and all(bands):
        err = [[h - 100 * b[0] for h, b in zip(heights, bands)], [100 * b[1] - h for h, b in zip(heights, bands)]]
    axes[2].bar(range(len(names)), heights, yerr=err, capsize=3)
    axes[2].set_xticks(range(len(names)), names, rotation=30, ha="right")
    axes[0].set_xscale("log", base=2)
    for ax, title, xlabel in zip(axes, ("shift", "masking", "mismatch"), ("shift (frames)", "mask ratio", "")):
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("ΔcnBPT (%)")
    axes[0].legend()
    return save_figure(fig, path)


def plot_context_scaling(curves: dict[str, dict], path: str | Path) -> Path:
    """DuoTok's Fig. 4: cnBPT of the same final frames against the context length, per tokenizer.
    ``curves``: name -> ``{seconds (str or float): cnBPT}``."""
    plt = _figure_backend()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, c in curves.items():
        pts = sorted((float(k), v) for k, v in c.items())
        ax.plot([k for k, _ in pts], [v for _, v in pts], marker="o", label=name)
    ax.set_xlabel("context (s)")
    ax.set_ylabel("cnBPT")
    ax.set_title("context scaling")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def plot_frechet_rows(rows: list[tuple[str, dict]], floor: dict, path: str | Path) -> Path:
    """`bench --frechet`: per LM row, the Fréchet distances of its continuations (with intervals) beside its
    tokenizer's reconstructions and the real-vs-real floor, one panel per embedding."""
    plt = _figure_backend()
    panels = [k for k in ("mel", "tagger") if any(v.get(f"fd_{k}") is not None for _, v in rows)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 0.45 * len(rows) + 1.6), squeeze=False)
    for ax, key in zip(axes[0], panels):
        y = np.arange(len(rows))
        vals = [v.get(f"fd_{key}") for _, v in rows]
        ci = [v.get(f"fd_{key}_ci") or [x, x] for (_, v), x in zip(rows, vals)]
        ax.errorbar(vals, y, xerr=[[x - c[0] for x, c in zip(vals, ci)], [c[1] - x for x, c in zip(vals, ci)]],
                    fmt="o", color="C0", label="continuations")
        rec = [v.get(f"fd_{key}_recon") for _, v in rows]
        if any(r is not None for r in rec):
            ax.scatter([r if r is not None else np.nan for r in rec], y, marker="x", color="C1", label="reconstructions")
        if floor.get(key) is not None:
            lo, hi = floor[f"{key}_ci"]
            ax.axvspan(lo, hi, color="0.85", label="real vs real (floor)")
        ax.set_yticks(y, [n for n, _ in rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel({"mel": "Mel-statistics Fréchet distance ↓", "tagger": "tagger Fréchet distance ↓"}[key])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_frechet_along(curves: dict[str, list[dict]], floor: list[dict], key: str, path: str | Path,
                       title: str = "") -> Path:
    """Long form: the Fréchet distance of each window along the piece (interval as a band), per LM, over the
    floor of the true continuations (grey; extended flat past the real pieces' end)."""
    plt = _figure_backend()
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for i, (name, rows) in enumerate(curves.items()):
        t = [(r["start"] + r["end"]) / 2 for r in rows if key in r]
        v = [r[key]["value"] for r in rows if key in r]
        lo = [r[key]["ci"][0] for r in rows if key in r]
        hi = [r[key]["ci"][1] for r in rows if key in r]
        ax.plot(t, v, marker="o", ms=3, color=f"C{i}", label=name)
        ax.fill_between(t, lo, hi, color=f"C{i}", alpha=0.2)
    f = [r for r in floor if key in r]
    if f:
        end = max([r["end"] for rows in curves.values() for r in rows] + [f[-1]["end"]])
        t = [(r["start"] + r["end"]) / 2 for r in f] + [end]
        ax.fill_between(t, [r[key]["ci"][0] for r in f] + [f[-1][key]["ci"][0]],
                        [r[key]["ci"][1] for r in f] + [f[-1][key]["ci"][1]], color="0.8", label="floor (real)")
    ax.set_xlabel("time in the piece (s)")
    ax.set_ylabel({"mel": "Mel-stat. Fréchet distance", "tagger": "tagger Fréchet distance"}.get(key, key))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)
    return save_figure(fig, path)


def plot_lag_profiles(generated: dict[str, list[dict]], real: list[dict], path: str | Path) -> Path:
    """Self-similarity against lag: the real pieces' median and 10–90% band, each LM's long pieces' mean."""
    plt = _figure_backend()
    fig, ax = plt.subplots(figsize=(8, 3.8))
    if real:
        seg = real[0]["segment_seconds"]
        prof = np.array([r["lag_profile"] for r in real], dtype=float)
        lags = seg * np.arange(1, prof.shape[1] + 1)
        with np.errstate(all="ignore"):
            ax.fill_between(lags, np.nanquantile(prof, 0.1, axis=0), np.nanquantile(prof, 0.9, axis=0), color="0.85",
                            label="real pieces, 10–90%")
            ax.plot(lags, np.nanmedian(prof, axis=0), color="0.4", label="real pieces, median")
    for i, (name, stats) in enumerate(generated.items()):
        if not stats:
            continue
        prof = np.array([s["lag_profile"] for s in stats], dtype=float)
        lags = stats[0]["segment_seconds"] * np.arange(1, prof.shape[1] + 1)
        ax.plot(lags, np.nanmean(prof, axis=0), color=f"C{i}", label=name)
    ax.set_xlabel("lag (s)")
    ax.set_ylabel("mean self-similarity (cosine)")
    ax.set_title("Repetition: how alike the music is to itself, by lag")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)
    return save_figure(fig, path)


def plot_step_curves(panels: dict[str, dict[str, tuple[list[float], list[float]]]], path: str | Path, *,
                     styles: dict[str, dict] | None = None, title: str = "") -> Path:
    """Quantities logged during training against the step, one panel each, one line per run (the same run
    keeps its colour in every panel). ``panels``: y label -> run -> ``(steps, values)``; ``styles``: run ->
    extra ``plot`` keywords (colour, line style)."""
    plt = _figure_backend()
    names = list(dict.fromkeys(n for curves in panels.values() for n in curves))
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3.2 * len(panels)), sharex=True, squeeze=False)
    for ax, (ylabel, curves) in zip(axes[:, 0], panels.items()):
        for name, (x, y) in curves.items():
            style = {"color": f"C{names.index(name) % 10}", "marker": "o" if len(x) < 12 else None, "ms": 3}
            ax.plot(x, y, label=name, **(style | (styles or {}).get(name, {})))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if not curves:
            ax.text(0.5, 0.5, "nothing logged", ha="center", va="center", transform=ax.transAxes)
    axes[-1, 0].set_xlabel("training step")
    handles = {}
    for ax in axes[:, 0]:  # one legend for all panels: a run logged in one panel only is still named
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    if handles:
        axes[0, 0].legend(list(handles.values()), list(handles), fontsize=7, loc="upper left",
                          bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)
    if title:
        axes[0, 0].set_title(title)
    return save_figure(fig, path)
