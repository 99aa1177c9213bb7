"""Which Mel -> waveform path reconstructs best? Vocoders against Griffin-Lim, on rendered and real music.

    .venv/bin/python benchmarks/vocoder_quality.py \
        --vocoders "plain head (step 7086)=runs/vocoder-small-plain/export,pinv prior=runs/vocoder-small/export" \
        --real data/debian/hedgewars-data/usr/share/games/hedgewars/Data/Music

Every vocoder inverts the true 128-bin log-Mel of each clip (copy synthesis); Griffin-Lim (32 iterations,
momentum 0.99) inverts the same Mel with no training. Reported: the Mel distance (DAC definition, log10,
summed over the 7 resolutions) with a 95 % bootstrap interval over clips, its split by resolution (where a
vocoder loses: short windows = timing, long windows = harmonic detail), and the mean signed log10 error (a
positive value = more energy than the original: noise filling between partials). Writes
docs/results/vocoder-quality.{md,json} and a PNG by resolution.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from musictok.atomic import write_json
from musictok.evaluate import load_clips
from musictok.metrics.reconstruction import MEL_BANDS, MEL_WINDOWS, log_mel_magnitude
from musictok.nn.vocoder import load_vocoder
from musictok.plots import _figure_backend, save_figure
from musictok.report import provenance
from musictok.spectral import griffin_lim

GRIFFIN_LIM = "Griffin-Lim (32 it., no training)"


def _pairs(text: str) -> dict[str, str]:
    out = {}
    for item in filter(None, text.split(",")):
        label, _, value = item.partition("=")
        out[label] = value or label
    return out


def per_resolution(ref: torch.Tensor, est: torch.Tensor, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """``(clips, 7)`` mean |log10 Mel error| and ``(clips, 7)`` mean signed error (est − ref) per resolution."""
    abs_err, signed = [], []
    for window, bands in zip(MEL_WINDOWS, MEL_BANDS):
        d = log_mel_magnitude(est, sample_rate, window, bands) - log_mel_magnitude(ref, sample_rate, window, bands)
        abs_err.append(d.abs().mean(dim=(1, 2)))
        signed.append(d.mean(dim=(1, 2)))
    return torch.stack(abs_err, 1).numpy(), torch.stack(signed, 1).numpy()


def bootstrap_interval(values: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean over clips."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _score(ref: torch.Tensor, est: torch.Tensor, sample_rate: int) -> dict:
    abs_err, signed = per_resolution(ref, est, sample_rate)
    total = abs_err.sum(axis=1)
    lo, hi = bootstrap_interval(total)
    return {"mel_distance": float(total.mean()), "ci95": [lo, hi],
            "by_window": dict(zip(map(str, MEL_WINDOWS), abs_err.mean(axis=0).round(4).tolist())),
            "signed_log10_error": float(signed.mean())}


def _plot(result: dict, path: Path) -> Path:
    plt = _figure_backend()
    names = list(result["sources"])
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 3.4), squeeze=False)
    for ax, source in zip(axes[0], names):
        for label, entry in result["sources"][source].items():
            ax.plot(range(len(MEL_WINDOWS)), list(entry["by_window"].values()), marker="o", ms=3,
                    label=f"{label} ({entry['mel_distance']:.3f})")
        ax.set_xticks(range(len(MEL_WINDOWS)), [str(w) for w in MEL_WINDOWS])
        ax.set_xlabel("STFT window of the metric (samples at 24 kHz)")
        ax.set_ylabel("mean |log10 Mel error|")
        ax.set_title(source, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocoders", required=True, help="label=dir,... vocoder exports")
    ap.add_argument("--corpus", default="data/chorales")
    ap.add_argument("--real", required=True, help="a folder of real recorded music (held out: hedgewars)")
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--out", default="docs/results")
    args = ap.parse_args()
    torch.set_num_threads(2)
    vocoders = {label: load_vocoder(src).eval() for label, src in _pairs(args.vocoders).items()}
    first = next(iter(vocoders.values()))
    mel_config, sr = first.config.mel, first.config.mel.sample_rate
    sources = {"test split": load_clips(sr, corpus=args.corpus, split="test", seconds=args.seconds,
                                        max_clips=args.clips),
               "real music": load_clips(sr, audio_dir=args.real, seconds=args.seconds, max_clips=args.clips)}
    result = {**provenance(),
              "vocoders": _pairs(args.vocoders), "clips": {k: v.source for k, v in sources.items()}, "sources": {}}
    for name, clips in sources.items():
        wav = clips.audio
        rows = {}
        with torch.no_grad():
            mel = first.wav_to_mel(wav)
            rows[GRIFFIN_LIM] = _score(wav, griffin_lim(mel, mel_config, length=wav.shape[-1]), sr)
            for label, voc in vocoders.items():
                if voc.config.mel != mel_config:
                    raise SystemExit(f"{label}: its Mel differs from {next(iter(vocoders))}'s")
                t0 = time.perf_counter()
                est = voc(mel, length=wav.shape[-1])
                rows[label] = _score(wav, est, sr) | {
                    "x_real_time": round(wav.numel() / sr / (time.perf_counter() - t0), 1)}
        result["sources"][name] = rows
        print(name, json.dumps(rows, indent=1))
    out = Path(args.out)
    png = _plot(result, out / "vocoder-quality.png")
    write_json(out / "vocoder-quality.json", result)
    lines = ["# Vocoders against Griffin-Lim", "",
             f"Command: `.venv/bin/python benchmarks/vocoder_quality.py --vocoders \"{args.vocoders}\" "
             f"--real {args.real}`", "",
             f"Copy synthesis from the true 128-bin log-Mel; {args.clips} clips of {args.seconds:g} s per source "
             "(real music: Debian's `hedgewars-data`, never trained on). Mel distance: DAC definition, lower is "
             "better; [95 % bootstrap interval over clips]. Signed error > 0: more energy than the original.", "",
             "| path | " + " | ".join(f"{s}: Mel distance | {s}: signed error" for s in sources) + " |",
             "|---" * (1 + 2 * len(sources)) + "|"]
    for label in result["sources"]["test split"]:
        cells = []
        for s in sources:
            e = result["sources"][s][label]
            cells += [f"{e['mel_distance']:.3f} [{e['ci95'][0]:.3f}, {e['ci95'][1]:.3f}]",
                      f"{e['signed_log10_error']:+.3f}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "By resolution (mean |log10 Mel error| per STFT window):", "",
              "| source | path | " + " | ".join(map(str, MEL_WINDOWS)) + " |",
              "|---|---" + "|---" * len(MEL_WINDOWS) + "|"]
    for s in sources:
        for label, e in result["sources"][s].items():
            lines.append(f"| {s} | {label} | " + " | ".join(f"{v:.3f}" for v in e["by_window"].values()) + " |")
    lines += ["", f"![error by resolution]({png.name})", ""]
    (out / "vocoder-quality.md").write_text("\n".join(lines))
    print(f"wrote {out / 'vocoder-quality.md'}")


if __name__ == "__main__":
    main()
