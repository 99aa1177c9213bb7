"""Does a Mel tokenizer hold on real recordings? Every reconstruction path, on the test split and on real music.

    .venv/bin/python benchmarks/real_music.py \
        --tokenizers old=/tmp/bandtok-small-old,new=bandtok-small \
        --real data/debian/hedgewars-data/usr/share/games/hedgewars/Data/Music \
        --logs vocoder=runs/vocoder-small/log.jsonl,bandtok=runs/bandtok-small/log.jsonl

For each tokenizer and each data source (24 clips of 10 s by default): the Mel distance (DAC definition) of
Griffin-Lim from the true Mel, tokens -> Griffin-Lim, Mel -> vocoder and tokens -> vocoder (what `decode`
returns), the decoded level error, and the share of tokens unchanged under a -6 dB gain. Also a picture
of one real excerpt through every path, the validation curves of the training logs, and the hours per
training source. Writes docs/results/real-music.{md,json} and two PNGs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from musictok import __version__
from musictok.atomic import write_json
from musictok.evaluate import evaluate_reconstruction, load_clips, token_stability
from musictok.metrics.version import METRICS_VERSION
from musictok.plots import _figure_backend, save_figure
from musictok.tokenizers.base import Tokenizer

PATHS = ("mel→griffin-lim", "tokens→griffin-lim", "mel→vocoder", "tokens")
LABELS = {"mel→griffin-lim": "Griffin-Lim from the true Mel (no training)",
          "tokens→griffin-lim": "tokens → Griffin-Lim", "mel→vocoder": "Mel → vocoder",
          "tokens": "tokens → vocoder (what `decode` returns)"}


def _pairs(text: str) -> dict[str, str]:
    out = {}
    for item in filter(None, text.split(",")):
        label, _, value = item.partition("=")
        out[label] = value or label
    return out


def _evaluate(tok: Tokenizer, clips) -> dict:
    rec = evaluate_reconstruction(tok, clips)["reconstruction"]
    stab = token_stability(tok, clips)
    return {"paths": {p: {"mel_distance": rec[p]["mel_distance"], "level_error_db": rec[p]["level_error_db"]}
                      for p in PATHS if p in rec},
            "unchanged_tokens_gain_minus_6db": stab["gain_minus_6db"]}


def _mel_picture(toks: dict[str, Tokenizer], wav: torch.Tensor, sr: int, path: Path) -> Path:
    plt = _figure_backend()
    first = next(iter(toks.values()))
    mel = first.features  # every BandTok here shares the 128-bin Mel front-end

    def img(x: torch.Tensor) -> np.ndarray:
        return (mel(x[None].float()) / np.log(10)).squeeze(0).numpy()

    rows = [("original", img(wav))]
    for label, tok in toks.items():
        paths = tok.reconstruction_paths()
        with torch.no_grad():
            for p in PATHS:
                fn = paths.get(p, "missing")
                if fn == "missing":
                    continue
                y = tok.decode(tok.encode(wav[None])) if fn is None else fn(wav[None])
                rows.append((f"{label}: {LABELS[p].split(' (')[0]}", img(y[0])))
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 1.6 * len(rows)), sharex=True)
    vmin, vmax = float(rows[0][1].max()) - 5, float(rows[0][1].max())
    for ax, (title, m) in zip(axes, rows):
        ax.imshow(m, origin="lower", aspect="auto", vmin=vmin, vmax=vmax, cmap="magma",
                  extent=(0, m.shape[1] * 256 / sr, 0, m.shape[0]))
        ax.set_title(title, fontsize=8, loc="left")
        ax.set_ylabel("Mel bin", fontsize=7)
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    return save_figure(fig, path)


def _curves(logs: dict[str, str], path: Path) -> Path | None:
    plt = _figure_backend()
    series = []
    for label, log in logs.items():
        p = Path(log)
        if not p.is_file():
            continue
        rows = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
        keys = sorted({k for r in rows for k in r if k.startswith("valid/") and k.count("/") == 2
                       and k.split("/")[1] in ("mel_distance", "mel_l1")})
        series.append((label, {k: [(r["step"], r[k]) for r in rows if k in r] for k in keys}))
    if not series:
        return None
    fig, axes = plt.subplots(1, len(series), figsize=(5.5 * len(series), 3.6), squeeze=False)
    for ax, (label, curves) in zip(axes[0], series):
        for k, pts in curves.items():
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o", ms=3, label=k.split("/")[-1])
        metric = next(iter(curves)).split("/")[1] if curves else ""
        ax.set_title(f"{label}: validation {metric} by source", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def _hours(corpora: list[str]) -> dict[str, dict[str, float]]:
    out = {}
    for c in corpora:
        p = Path(c)
        if (p / "import.json").is_file():
            out[c] = json.loads((p / "import.json").read_text())["report"]["hours_by_package"]
        elif (p / "metadata.jsonl").is_file():
            rows = [json.loads(x) for x in (p / "metadata.jsonl").read_text().splitlines() if x.strip()]
            by_sf: dict[str, float] = {}
            for r in rows:
                by_sf[r.get("soundfont", "?")] = by_sf.get(r.get("soundfont", "?"), 0) + r["duration_seconds"] / 3600
            out[c] = by_sf
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizers", default="bandtok-small")
    ap.add_argument("--corpus", default="data/chorales")
    ap.add_argument("--real", required=True, help="a folder of real recorded music (held out: hedgewars)")
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--logs", default="", help="label=log.jsonl,... training logs to plot")
    ap.add_argument("--train-corpora", default="data/real,data/chorales")
    ap.add_argument("--out", default="docs/results")
    args = ap.parse_args()
    torch.set_num_threads(2)
    toks = {label: Tokenizer.from_pretrained(src) for label, src in _pairs(args.tokenizers).items()}
    sr = next(iter(toks.values())).sample_rate
    sources = {"test split": load_clips(sr, corpus=args.corpus, split="test", seconds=args.seconds,
                                        max_clips=args.clips),
               "real music": load_clips(sr, audio_dir=args.real, seconds=args.seconds, max_clips=args.clips)}
    result = {"date": time.strftime("%Y-%m-%d"), "musictok_version": __version__,
              "metrics_version": METRICS_VERSION,
              "clips": {k: v.source for k, v in sources.items()}, "tokenizers": {}}
    for label, tok in toks.items():
        t0 = time.time()
        entry = {"source": _pairs(args.tokenizers)[label], "fingerprint": tok.fingerprint().short()}
        for name, clips in sources.items():
            entry[name] = _evaluate(tok, clips)
        entry["eval_seconds"] = round(time.time() - t0, 1)
        result["tokenizers"][label] = entry
        print(label, json.dumps(entry, indent=1))
    out = Path(args.out)
    real = sources["real music"]
    excerpt = real.audio[0][: int(6 * sr)]
    mels = _mel_picture(toks, excerpt, sr, out / "real-music-mels.png")
    curves = _curves(_pairs(args.logs), out / "real-music-curves.png")
    result["hours"] = _hours(args.train_corpora.split(","))
    write_json(out / "real-music.json", result)

    lines = ["# Real recordings: every reconstruction path, old and new", "",
             f"Command: `.venv/bin/python benchmarks/real_music.py --tokenizers {args.tokenizers} --real {args.real}`",
             f"({args.clips} clips of {args.seconds:g} s per source; real music = {real.source['files']} files of "
             "Debian's `hedgewars-data`, never trained on). Mel distance: DAC definition (log10, summed over 7 "
             "resolutions); lower is better.", ""]
    labels = list(toks)
    head = "| path | " + " | ".join(f"{lab}: test split | {lab}: real music" for lab in labels) + " |"
    lines += [head, "|---" * (1 + 2 * len(labels)) + "|"]
    for p in PATHS:
        cells = []
        for lab in labels:
            for name in sources:
                v = result["tokenizers"][lab][name]["paths"].get(p)
                cells.append("—" if v is None else f"{v['mel_distance']:.3f}")
        lines.append(f"| {LABELS[p]} | " + " | ".join(cells) + " |")
    lines += ["", "| tokenizer | data | decoded level error (dB) | tokens unchanged under −6 dB |", "|---|---|---|---|"]
    for lab in labels:
        for name in sources:
            e = result["tokenizers"][lab][name]
            lines.append(f"| {lab} | {name} | {e['paths']['tokens']['level_error_db']:.2f} | "
                         f"{100 * e['unchanged_tokens_gain_minus_6db']:.1f} % |")
    lines += ["", "Fingerprints: " + ", ".join(f"{lab} = `{e['fingerprint']}` ({e['source']})"
                                                for lab, e in result["tokenizers"].items()), ""]
    lines += ["## Training data (hours per source)", ""]
    for corpus, hours in result["hours"].items():
        lines.append(f"- `{corpus}`: " + ", ".join(f"{k} {v:.2f} h" for k, v in sorted(hours.items()))
                     + f" — {sum(hours.values()):.2f} h")
    lines += ["", f"![one real excerpt through every path]({mels.name})", ""]
    if curves:
        lines += [f"![validation curves by source]({curves.name})", ""]
    (out / "real-music.md").write_text("\n".join(lines))
    print(f"wrote {out / 'real-music.md'}")


if __name__ == "__main__":
    main()
