"""Continuation (10 s → 30 s) and long-form (3 min) generation of token LMs, scored along the piece.

    .venv/bin/python benchmarks/long_form.py --lm band-grid=bandtok-small-lm \\
        --lm delay=runs/bench/lm-rvq-small-delay/export \\
        --lm coarse-to-fine=runs/bench/lm-pyramid-small-coarse-to-fine/export \\
        --tagger runs/tagger  [--train-tagger data/chorales,data/real]  [--smoke]

The protocol is ``musictok.longform`` (prompts from one half of the held-out pieces, the other half as the
reference, Fréchet distances of consecutive windows with the true continuation as the floor, self-similarity
statistics against the real pieces'). ``musictok bench`` trains the delay and coarse-to-fine LMs into
``runs/bench``. ``--smoke`` runs seconds instead of minutes and writes ``*-smoke`` files (a check that the
pipeline runs, not a result). Writes ``docs/results/<name>.{md,json}`` and plots.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from musictok.atomic import write_json
from musictok.longform import LongFormConfig, markdown_summary, run_long_form
from musictok.plots import plot_frechet_along, plot_lag_profiles
from musictok.report import provenance


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lm", action="append", required=True, help="NAME=LM folder or bundled name (repeatable)")
    ap.add_argument("--corpus", default="data/chorales")
    ap.add_argument("--split", default="test")
    ap.add_argument("--tagger", default=None, help="a trained tagger folder (train/tagger.py); none: Mel statistics only")
    ap.add_argument("--train-tagger", default=None, help="comma-separated corpora: train the tagger into --tagger first")
    ap.add_argument("--pieces", type=int, default=None, help="held-out clips (half prompts, half reference)")
    ap.add_argument("--long-pieces", type=int, default=None)
    ap.add_argument("--long-seconds", type=float, default=None)
    ap.add_argument("--smoke", action="store_true", help="seconds, not minutes: a pipeline check, not a result")
    ap.add_argument("--out", default="docs/results")
    ap.add_argument("--name", default=None)
    args = ap.parse_args()
    lms = dict(item.split("=", 1) if "=" in item else (Path(item).name, item) for item in args.lm)
    kw = {"corpus": args.corpus, "split": args.split}
    kw |= {k: v for k, v in (("max_pieces", args.pieces), ("long_pieces", args.long_pieces),
                             ("long_seconds", args.long_seconds)) if v is not None}
    cfg = LongFormConfig.smoke(**kw) if args.smoke else LongFormConfig(**kw)
    if args.train_tagger:
        from musictok.train.tagger import TaggerTrainConfig, train_tagger

        if not args.tagger:
            ap.error("--train-tagger needs --tagger (where to save it)")
        corpora = [c for c in args.train_tagger.split(",") if c]
        tcfg = TaggerTrainConfig.quick(corpora) if args.smoke else TaggerTrainConfig(corpora)
        train_tagger(tcfg, args.tagger)
    t0 = time.time()
    result = run_long_form(lms, cfg, tagger_dir=args.tagger)
    result |= {"wall_seconds": time.time() - t0, **provenance(),
               "threads": torch.get_num_threads(), "smoke": args.smoke}
    name = args.name or ("long-form-smoke" if args.smoke else f"long-form-{result['date']}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    floor = next(iter(result["floor"].values()))  # one sample rate in the common case
    plots = {}
    for kind in ("continuation", "long"):
        for key in ("mel", "tagger") if args.tagger else ("mel",):
            curves = {n: r[kind]["along"] for n, r in result["lms"].items()}
            plots[f"{kind}-{key}"] = plot_frechet_along(curves, floor["along"], key, out / f"{name}-{kind}-{key}.png",
                                                        title=f"{kind}: {key} Fréchet distance along the piece")
    plots["lag-profiles"] = plot_lag_profiles({n: r["long"]["structure"] for n, r in result["lms"].items()},
                                              floor["structure"], out / f"{name}-lag-profiles.png")
    note = ("**Smoke run**: seconds of generation to check the pipeline; the numbers are not results."
            if args.smoke else "")
    write_json(out / f"{name}.json", result)
    (out / f"{name}.md").write_text(markdown_summary(result, plots, note))
    print(f"wrote {out / name}.md, .json and {len(plots)} plots in {result['wall_seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
