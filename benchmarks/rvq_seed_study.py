"""Issue 12, part 4: rvq-dac-small with and without the MMD loss under one budget, over seeds.

    .venv/bin/python benchmarks/rvq_seed_study.py \
        --real data/debian/hedgewars-data/usr/share/games/hedgewars/Data/Music   # after scripts/rvq_seed_study.sh

Reads the run folders that scripts/rvq_seed_study.sh trains (default: every runs/seeds/*/ with an export/; or
name them) — each a finished training with log.jsonl, summary.json and export/. The variant comes from the
export's own config (MMD weight > 0: with the loss), the seed from the run config it records; a run whose
codec was built with another model seed (its initial weights) is refused. Every run is scored on the same
clips (the test split of --corpus, and --real music if given):

- Mel distance and SI-SDR decoding the first 1, 2, 4 … codebooks, all of them, and the unquantised latent
  (RVQCodec.reconstruction_paths); for all codebooks, the Mel distance of every clip and a 95 % percentile
  bootstrap interval over clips (fixed seed);
- utilization of every level, inter-codebook MI minus its shuffled value with its interval
  (musictok.evaluate.tokens_summary, as benchmarks/codec_quality.py reports it);
- from log.jsonl, the MMD statistic over training (first, last, mean over the last 10 % of steps) and the
  validation Mel distance; the budget (steps, wall minutes) from summary.json.

Then per variant the mean over seeds, per seed the paired difference (with − without MMD) of every headline
number, and their mean. Writes --out/rvq-seeds.{md,json} and rvq-seeds-training.png (MMD statistic and
validation Mel distance against the step, every run).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from musictok.atomic import write_json, write_text
from musictok.errors import MusictokError
from musictok.evaluate import EvalClips, evaluate_reconstruction, evaluate_tokens, load_clips, tokens_summary
from musictok.metrics.reconstruction import mel_distance
from musictok.report import provenance
from musictok.tokenizers.base import Tokenizer

WITH, WITHOUT = "with MMD", "without MMD"
TRAINING = "training"
LAST_SHARE = 0.1  # the MMD statistic is summarised over the last 10 % of the steps


class StudyError(MusictokError):
    """A run folder or an option the study cannot use; the message says which and why."""


# ------------------------------------------------------------------------------------------------ run folders
@dataclass
class Run:
    """One finished training: where it is, which variant and seed, its budget and its training log."""

    path: Path
    name: str
    variant: str
    mmd_weight: float
    seed: int
    steps: int  # steps trained (summary.json)
    planned_steps: int | None  # steps asked for (the run config), when recorded
    wall_minutes: float
    resumed: bool  # trained in several sittings: wall minutes summed over them from log.jsonl
    log: list[dict]


def find_runs(root: Path) -> list[Path]:
    """Every folder under ``root`` holding an export."""
    if not root.is_dir():
        raise StudyError(f"{root}: no such folder (train the runs with scripts/rvq_seed_study.sh, or name them)")
    found = sorted(p for p in root.iterdir() if (p / "export").is_dir())
    if not found:
        raise StudyError(f"{root}: no run folder with an export/ (train them with scripts/rvq_seed_study.sh)")
    return found


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise StudyError(f"{path.parent}: no {path.name} ({what})") from None
    except ValueError as e:
        raise StudyError(f"{path}: not valid JSON ({e})") from None


def read_log(path: Path) -> list[dict]:
    """The rows of a log.jsonl (a line torn by a kill mid-write is skipped, as the trainer does)."""
    if not path.is_file():
        raise StudyError(f"{path.parent}: no log.jsonl (the training log the MMD statistic is read from)")
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    if not rows:
        raise StudyError(f"{path}: empty training log")
    return rows


def read_run(path: Path) -> Run:
    """Check one run folder and read what the study needs from it (export config, summary, log)."""
    path = Path(path)
    if not path.is_dir():
        raise StudyError(f"{path}: no such run folder")
    if not (path / "export").is_dir():
        raise StudyError(f"{path}: no export/ (not trained yet, or trained elsewhere)")
    meta = _read_json(path / "export" / "config.json", "the exported codec's config")
    log = read_log(path / "log.jsonl")
    summary = _read_json(path / "summary.json", "written when a training ends: still training, or killed?")
    if meta.get("tokenizer") != "rvq_codec":
        raise StudyError(f"{path}/export: holds a {meta.get('tokenizer')!r} tokenizer, not an RVQ codec")
    run_config = meta.get("run_config") or {}
    planned = (run_config.get("train") or {}).get("steps")
    steps = int(summary.get("end_step", -1))
    if meta.get("train_step") is not None and int(meta["train_step"]) != steps:
        raise StudyError(f"{path}: the export is of step {meta['train_step']}, summary.json ends at {steps}: "
                         "a training is still writing this folder")
    if planned is not None and steps != int(planned):
        raise StudyError(f"{path}: stopped at step {steps} of {planned} (resume it: scripts/rvq_seed_study.sh)")
    seed = (run_config.get("train") or {}).get("seed")
    if seed is None:
        m = re.search(r"-s(\d+)$", path.name)
        if not m:
            raise StudyError(f"{path}: no seed in the export's run config and none in the folder name (<codec>-s<seed>)")
        seed = int(m.group(1))
    model_seed = int((meta.get("config") or {}).get("seed", 0))
    if model_seed != int(seed):
        raise StudyError(f"{path}: the codec was built with model seed {model_seed}, the run's seed is {seed}: its "
                         "initial weights are not its seed's (trained before scripts/rvq_seed_study.sh set "
                         "model.seed?); delete the folder and train it again")
    weight = float(((meta.get("config") or {}).get("mmd") or {}).get("weight", 0.0))
    wall, resumed = _wall_minutes(summary, log)
    return Run(path, path.name, WITH if weight > 0 else WITHOUT, weight, int(seed), steps,
               None if planned is None else int(planned), wall, resumed, log)


def _wall_minutes(summary: dict, log: list[dict]) -> tuple[float, bool]:
    """Training wall time. summary.json times the last sitting only; a resumed run adds the earlier sittings
    from log.jsonl, whose ``time`` restarts at each sitting (what ran after a sitting's last log row is lost)."""
    last = float(summary.get("wall_seconds", math.nan))
    if not summary.get("start_step"):
        return last / 60, False
    times = [r["time"] for r in log if "time" in r and r.get("step", 0) <= summary["start_step"]]
    earlier = sum(a for a, b in zip(times, times[1:] + [0.0]) if b < a)  # each sitting's last logged time
    return (earlier + last) / 60, True


def training_curves(run: Run) -> dict:
    """The MMD statistic of the training log (first, last, mean over the last 10 % of steps) and the
    validation Mel distance, with the steps they were logged at."""
    mmd = [(r["step"], r["mmd"]) for r in run.log if "mmd" in r and r["mmd"] is not None]
    valid = [(r["step"], r["valid/mel_distance"]) for r in run.log if r.get("valid/mel_distance") is not None]
    tail = [v for s, v in mmd if s > (1 - LAST_SHARE) * run.steps]

    def curve(points):
        return {"steps": [s for s, _ in points], "values": [v for _, v in points],
                "first": points[0][1] if points else None, "last": points[-1][1] if points else None}

    return {"mmd": curve(mmd) | {"last_10pct_mean": float(np.mean(tail)) if tail else None},
            "valid_mel_distance": curve(valid)}


# ------------------------------------------------------------------------------------------------ evaluation
def bootstrap_mean(values, *, resamples: int = 2000, level: float = 0.95, seed: int = 0) -> list[float] | None:
    """Percentile bootstrap interval of the mean of the finite ``values`` (``None`` with fewer than 2)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return None
    means = x[np.random.default_rng(seed).integers(0, x.size, (resamples, x.size))].mean(axis=1)
    return [float(np.quantile(means, (1 - level) / 2)), float(np.quantile(means, (1 + level) / 2))]


def _codebooks(path: str, all_levels: int) -> int | None:
    """How many codebooks a reconstruction path decodes (None: the unquantised latent)."""
    if path == "tokens":
        return all_levels
    m = re.fullmatch(r"codebooks 1-(\d+)", path)
    return int(m.group(1)) if m else None


def evaluate_run(tok, clips: EvalClips, *, resamples: int, seed: int) -> dict:
    """Every reconstruction path, the Mel distance of every clip decoded from all codebooks with its
    bootstrap interval, and the token statistics."""
    rec = evaluate_reconstruction(tok, clips)
    per_clip = []
    with torch.no_grad():
        for wav in clips.audio:  # evaluate_reconstruction averages over clips: the headline path once more
            x = wav[None].to(tok.device)
            per_clip.append(float(mel_distance(x.cpu(), tok.decode(tok.encode(x)).cpu(), clips.sample_rate)[0]))
    toks = tokens_summary(evaluate_tokens(tok, clips, stability=False))
    return {"reconstruction": rec["reconstruction"], "mel_distance_per_clip": per_clip,
            "mel_distance_ci": bootstrap_mean(per_clip, resamples=resamples, seed=seed), "tokens": toks,
            "clips": len(clips.audio)}


def headline(entry: dict, sources: list[str], all_levels: int) -> dict[str, dict[str, float | None]]:
    """The numbers compared between variants: per data source Mel distance and SI-SDR per prefix of codebooks,
    mean utilization and corrected MI; from training the MMD statistic and the last validation Mel distance."""
    out: dict[str, dict[str, float | None]] = {}
    for src in sources:
        rec, t = entry["sources"][src]["reconstruction"], entry["sources"][src]["tokens"]
        prefixes = sorted((k, p) for p in rec if (k := _codebooks(p, all_levels)) is not None)
        row: dict[str, float | None] = {}
        for key, label in (("mel_distance", "Mel"), ("si_sdr", "SI-SDR")):
            for k, p in prefixes:
                row[f"{label} k={k}"] = rec[p].get(key)
            if "unquantised latent" in rec:
                row[f"{label} unquantised"] = rec["unquantised latent"].get(key)
        row["utilization"] = t["utilization"]
        row["MI - shuffled (bits)"] = t["inter_codebook_mi_bits"]
        out[src] = row
    tr = entry["training"]
    out[TRAINING] = {"MMD statistic last 10 %": tr["mmd"]["last_10pct_mean"],
                     "MMD statistic last": tr["mmd"]["last"],
                     "validation Mel last": tr["valid_mel_distance"]["last"]}
    return out


def _diff(a, b):
    return None if a is None or b is None else a - b


def _mean(xs):
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return sum(xs) / len(xs) if xs else None


def compare(runs: dict[str, dict], *, resamples: int, seed: int) -> tuple[dict, dict]:
    """Per variant the mean over its seeds; per seed with both variants the paired difference (with − without
    MMD) of every headline number, the mean difference, and a paired bootstrap over clips of the Mel distance
    decoded from all codebooks (same clips in both runs)."""
    variants = {}
    for v in (WITH, WITHOUT):
        members = [n for n, e in runs.items() if e["variant"] == v]
        groups = runs[members[0]]["headline"] if members else {}
        variants[v] = {"runs": members, "seeds": sorted(runs[n]["seed"] for n in members),
                       "mean": {g: {k: _mean([runs[n]["headline"][g].get(k) for n in members]) for k in row}
                                for g, row in groups.items()}}
    by_seed: dict[int, dict[str, str]] = {}
    for n, e in runs.items():
        by_seed.setdefault(e["seed"], {})[e["variant"]] = n
    per_seed = {}
    for s in sorted(by_seed):
        pair = by_seed[s]
        if set(pair) != {WITH, WITHOUT}:
            continue
        a, b = runs[pair[WITH]], runs[pair[WITHOUT]]
        clip_ci = {}
        for src in a["sources"]:
            d = np.subtract(a["sources"][src]["mel_distance_per_clip"], b["sources"][src]["mel_distance_per_clip"])
            clip_ci[src] = bootstrap_mean(d, resamples=resamples, seed=seed)
        per_seed[str(s)] = {WITH: pair[WITH], WITHOUT: pair[WITHOUT],
                            "difference": {g: {k: _diff(a["headline"][g].get(k), b["headline"][g].get(k)) for k in row}
                                           for g, row in a["headline"].items()},
                            "mel_distance_all_codebooks_clip_ci": clip_ci}
    mean_diff = {}
    if per_seed:
        first = next(iter(per_seed.values()))["difference"]
        mean_diff = {g: {k: _mean([p["difference"][g][k] for p in per_seed.values()]) for k in row}
                     for g, row in first.items()}
    unpaired = sorted(str(s) for s, pair in by_seed.items() if set(pair) != {WITH, WITHOUT})
    n = len(per_seed)
    if n == 0:
        note = "No seed has both variants: nothing to pair."
    elif n < 3:
        note = (f"{n} paired seed{'s' if n > 1 else ''}: no interval over seeds is meaningful (a t-interval on "
                f"{n - 1} degree{'s' if n != 2 else ''} of freedom says nothing), so none is given. The bootstrap "
                "intervals are over clips within a run: they say how precisely each run was measured on these "
                "clips, not where another seed would land.")
    else:
        note = (f"{n} paired seeds: the spread of the per-seed differences is the evidence; the clip intervals "
                "say only how precisely each run was measured.")
    return variants, {"per_seed": per_seed, "mean_difference": mean_diff, "paired_seeds": n,
                      "unpaired_seeds": unpaired, "note": note}


# ------------------------------------------------------------------------------------------------ report
def _f(x, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _signed(x, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.{digits}f}"


def _ci(ci, digits: int = 3) -> str:
    return "" if not ci else f" [{ci[0]:.{digits}f} {ci[1]:.{digits}f}]"


def _signed_ci(ci, digits: int = 3) -> str:
    return "–" if not ci else f"[{ci[0]:+.{digits}f} {ci[1]:+.{digits}f}]"


def _digits(metric: str) -> int:
    return 1 if metric.startswith("SI-SDR") else 4 if metric.startswith("MMD") else 3


def markdown(result: dict) -> str:
    runs, sources, s = result["runs"], result["sources"], result["settings"]
    lines = [f"# Issue 12 part 4: rvq-dac-small with and without the MMD loss over seeds ({result['date']})", "",
             f"Command: `{result['command']}`. musictok {result['musictok_version']}; metrics "
             f"v{result['metrics_version']}; {result['machine']}.", "",
             "Every run decodes the same clips: " + "; ".join(
                 f"{src}: {c['clips']} clips × {c['seconds_per_clip']:g} s of "
                 f"`{c.get('corpus', c.get('audio'))}`" + (f" ({c['split']} split)" if "split" in c else "")
                 for src, c in result["clips"].items()) + ". "
             "Mel distance as DAC defines it (log10 magnitudes; seven resolutions; summed; lower is better). "
             f"Intervals in brackets: {s['level'] * 100:g} % percentile bootstrap over clips "
             f"({s['resamples']} resamples; seed {s['bootstrap_seed']}). The MMD statistic is the one each training "
             "logs, from the first pool after the codebooks' k-means init (with weight 0 it is logged but not "
             "trained on).", ""]
    lines += ["## Runs and budgets", "",
              "| run | variant | MMD weight | seed | steps | wall min | MMD stat first | MMD stat last | "
              "MMD stat mean last 10 % | validation Mel first | validation Mel last |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, e in runs.items():
        tr, b = e["training"], e["budget"]
        lines.append(f"| {name} | {e['variant']} | {e['mmd_weight']:g} | {e['seed']} | {b['steps']} | "
                     f"{_f(b['wall_minutes'], 1)}{' (resumed)' if b['resumed'] else ''} | "
                     f"{_f(tr['mmd']['first'], 4)} | {_f(tr['mmd']['last'], 4)} | {_f(tr['mmd']['last_10pct_mean'], 4)} | "
                     f"{_f(tr['valid_mel_distance']['first'])} | {_f(tr['valid_mel_distance']['last'])} |")
    for src in sources:
        some = next(iter(runs.values()))
        mel_keys = [k for k in some["headline"][src] if k.startswith("Mel ")]
        lines += ["", f"## {src}: decoding with the first k codebooks", "",
                  "Mel distance ↓ (the interval is for all codebooks) and SI-SDR in dB; 'falls' = the Mel distance "
                  "drops with every added prefix of levels.", "",
                  "| run | " + " | ".join(mel_keys) + " | falls | " +
                  " | ".join(k.replace("Mel", "SI-SDR") for k in mel_keys) + " |",
                  "|---|" + "---:|" * len(mel_keys) + "---|" + "---:|" * len(mel_keys)]
        for name, e in runs.items():
            h, ent = e["headline"][src], e["sources"][src]
            prefix = [h[k] for k in mel_keys if "unquantised" not in k]
            falls = all(a is not None and b is not None and b < a for a, b in zip(prefix, prefix[1:]))
            cells = [_f(h[k]) + (_ci(ent["mel_distance_ci"]) if k == f"Mel k={e['codebooks']}" else "")
                     for k in mel_keys]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {'yes' if falls else 'no'} | " +
                         " | ".join(_f(h[k.replace('Mel', 'SI-SDR')], 1) for k in mel_keys) + " |")
        lines += ["", f"## {src}: tokens", "",
                  "| run | utilization per level | mean utilization | MI between codebooks − shuffled (bits) "
                  "[95 % interval] | raw plug-in MI (bits) |", "|---|---|---:|---:|---:|"]
        for name, e in runs.items():
            t = e["sources"][src]["tokens"]
            per_level = " ".join(_f(u, 2) for st in t["per_stream"].values() for u in st["utilization_per_slot"].values())
            lines.append(f"| {name} | {per_level} | {_f(t['utilization'])} | {_f(t['inter_codebook_mi_bits'], 4)}"
                         f"{_ci(t['inter_codebook_mi_ci'], 4)} | {_f(t['inter_codebook_mi_raw_bits'])} |")
    comp, variants = result["paired"], result["variants"]
    seeds = list(comp["per_seed"])
    lines += ["", "## With against without the MMD loss", "", comp["note"], ""]
    if comp["unpaired_seeds"]:
        lines += [f"Seeds with one variant only (not paired): {' '.join(comp['unpaired_seeds'])}.", ""]
    lines += ["| data | number | mean with MMD | mean without MMD | " +
              " | ".join(f"seed {s}: with − without" for s in seeds) + " | mean paired difference |",
              "|---|---|---:|---:|" + "---:|" * len(seeds) + "---:|"]
    groups = variants[WITH]["mean"] or variants[WITHOUT]["mean"]
    for g, row in groups.items():
        for k in row:
            d = _digits(k)
            lines.append(f"| {g} | {k} | {_f(variants[WITH]['mean'].get(g, {}).get(k), d)} | "
                         f"{_f(variants[WITHOUT]['mean'].get(g, {}).get(k), d)} | " +
                         " | ".join(_signed(comp['per_seed'][s]['difference'][g][k], d) for s in seeds) +
                         f" | {_signed(comp['mean_difference'].get(g, {}).get(k), d) if seeds else '–'} |")
    if seeds:
        lines += ["", "Paired over clips (same clips; same seed): Mel distance with all codebooks, with − without MMD, "
                  "95 % bootstrap interval of the mean difference.", "",
                  "| seed | " + " | ".join(sources) + " |", "|---:|" + "---:|" * len(sources)]
        for s in seeds:
            ci = comp["per_seed"][s]["mel_distance_all_codebooks_clip_ci"]
            lines.append(f"| {s} | " + " | ".join(_signed_ci(ci.get(src)) for src in sources) + " |")
    lines += ["", f"![MMD statistic and validation Mel distance over training]({result['plot']})", ""]
    return "\n".join(lines)


def training_plot(runs: dict[str, dict], path: Path) -> Path:
    """The MMD statistic and the validation Mel distance against the step, one line per run: colour by
    variant, line style by seed."""
    from musictok.plots import plot_step_curves

    seeds = sorted({e["seed"] for e in runs.values()})
    dashes = ["-", "--", ":", "-."]
    styles = {n: {"color": "C0" if e["variant"] == WITH else "C1", "linestyle": dashes[seeds.index(e["seed"]) % 4]}
              for n, e in runs.items()}
    panels = {"MMD statistic (training log)": {}, "validation Mel distance": {}}
    for n, e in runs.items():
        for label, key in zip(panels, ("mmd", "valid_mel_distance")):
            c = e["training"][key]
            if c["steps"]:
                panels[label][n] = (c["steps"], c["values"])
    return plot_step_curves(panels, path, styles=styles, title="rvq-dac-small with (blue) and without (orange) MMD")


# ------------------------------------------------------------------------------------------------ main
def run_study(args: argparse.Namespace, command: str) -> dict:
    if args.clips < 1 or not (math.isfinite(args.seconds) and args.seconds > 0):
        raise StudyError(f"--clips must be >= 1 and --seconds > 0 (got {args.clips} and {args.seconds})")
    sources = {"test split": {"corpus": args.corpus, "split": args.split}}
    if args.real:
        sources["real music"] = {"audio_dir": args.real}
    folders = [Path(p) for p in args.runs] if args.runs else find_runs(Path(args.root))
    runs = [read_run(p) for p in folders]  # the runs first: an unfinished run is the usual mistake
    for src in sources.values():
        folder = Path(src.get("corpus") or src["audio_dir"])
        if not folder.is_dir():
            raise StudyError(f"{folder}: no such folder")
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise StudyError(f"two run folders share a name: {' '.join(names)}")
    taken: dict[tuple[str, int], str] = {}
    for r in runs:
        if (r.variant, r.seed) in taken:
            raise StudyError(f"{r.path} and {taken[r.variant, r.seed]}: both {r.variant} with seed {r.seed}")
        taken[r.variant, r.seed] = str(r.path)
    if len({r.steps for r in runs}) > 1:
        raise StudyError("unequal budgets: " + " ".join(f"{r.name}={r.steps}" for r in runs) +
                         " steps (the study compares runs of one budget)")
    if args.threads:
        torch.set_num_threads(args.threads)

    tokenizers, clips = {}, {}
    for r in runs:
        tok = Tokenizer.from_pretrained(r.path / "export").eval()
        tokenizers[r.name] = tok
    rates = {t.sample_rate for t in tokenizers.values()}
    if len(rates) > 1:
        raise StudyError(f"the runs decode at different sample rates ({sorted(rates)}): one clip set cannot serve all")
    rate = rates.pop()
    for label, src in sources.items():
        try:
            clips[label] = load_clips(rate, seconds=args.seconds, max_clips=args.clips,
                                      on_skip=lambda p, why, bad: print(f"  skipped {p}: {why}", flush=True), **src)
        except (ValueError, FileNotFoundError) as e:  # no corpus index, an empty split: said in the message
            raise StudyError(f"{label}: {e}") from None

    entries: dict[str, dict] = {}
    for r in runs:
        tok = tokenizers[r.name]
        entry = {"path": str(r.path), "variant": r.variant, "mmd_weight": r.mmd_weight, "seed": r.seed,
                 "fingerprint": tok.fingerprint().short(), "codebooks": tok.num_decode_levels,
                 "budget": {"steps": r.steps, "planned_steps": r.planned_steps, "wall_minutes": r.wall_minutes,
                            "resumed": r.resumed},
                 "training": training_curves(r), "sources": {}}
        for label, c in clips.items():
            t0 = time.time()
            entry["sources"][label] = evaluate_run(tok, c, resamples=args.resamples, seed=args.bootstrap_seed)
            print(f"{r.name} on {label}: Mel {entry['sources'][label]['reconstruction']['tokens']['mel_distance']:.3f} "
                  f"({time.time() - t0:.0f} s)", flush=True)
        entry["headline"] = headline(entry, list(clips), tok.num_decode_levels)
        entries[r.name] = entry
    variants, paired = compare(entries, resamples=args.resamples, seed=args.bootstrap_seed)
    out = Path(args.out)
    plot = training_plot(entries, out / "rvq-seeds-training.png")
    result = {**provenance(), "command": command, "sources": list(clips),
              "clips": {label: c.source | {"names": c.names} for label, c in clips.items()},
              "settings": {"clips": args.clips, "seconds": args.seconds, "resamples": args.resamples,
                           "bootstrap_seed": args.bootstrap_seed, "level": 0.95, "last_share": LAST_SHARE},
              "runs": entries, "variants": variants, "paired": paired, "plot": plot.name}
    write_json(out / "rvq-seeds.json", result)
    write_text(out / "rvq-seeds.md", markdown(result))
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", help="run folders (default: every folder under --root with an export/)")
    ap.add_argument("--root", default="runs/seeds")
    ap.add_argument("--corpus", default="data/chorales")
    ap.add_argument("--split", default="test", choices=("train", "valid", "test"))
    ap.add_argument("--real", default=None, help="a folder of real recorded music")
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples over clips")
    ap.add_argument("--bootstrap-seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--out", default="docs/results")
    argv = sys.argv[1:] if argv is None else argv
    args = ap.parse_args(argv)
    try:
        result = run_study(args, shlex.join([".venv/bin/python", "benchmarks/rvq_seed_study.py", *argv]))
    except MusictokError as e:  # StudyError, and a tokenizer or audio file that cannot be read
        print(f"rvq_seed_study: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print((Path(args.out) / "rvq-seeds.md").read_text())
    return result


if __name__ == "__main__":
    main()
