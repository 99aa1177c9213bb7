"""LM source separation against the discriminative baseline and the tokenizer ceiling, per stem (issue 14).

    .venv/bin/python benchmarks/separation.py \
        --separator lm=runs/sep-lm-small/export --separator mask=runs/sep-mask-small/export \
        [--separator lm-independent=runs/sep-lm-ind/export] [--real data/debian/.../Music]

For every separator on the same fixed clips of the test split (the musdb group: mix = Σ stems exactly) and
for the **tokenizer ceiling** (the true stems encoded and decoded by the first LM separator's tokenizer: what
its tokens can carry at all) and for the **mixture** as every stem's estimate (the floor any separator must
beat, SiSEC's "mix" baseline), per stem: SI-SDR, BSS-eval SDR (512-tap filters), plain SDR, Mel distance,
leakage (interference-to-target ratio by least-squares projection on the true stems) and, per clip, the
mixture consistency ``‖Σ est − mix‖ / ‖mix‖`` — each a mean with a 95 % Student-t interval across clips.
On real recordings without stems (hedgewars' music, never trained on): consistency, and the leakage that
can be estimated without references (the share of each estimate the other estimates explain), plus
listening files (written under ``--listen``, never committed).

Writes ``OUT/NAME.md`` and ``OUT/NAME.json`` (default ``docs/results/separation.*``). ``--quick`` runs the
whole pipeline on two short clips (a smoke test; the tests use it with tiny models).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from musictok import __version__
from musictok.atomic import write_json, write_text
from musictok.metrics.separation import cross_leakage, mean_interval, mixture_consistency, stem_metrics
from musictok.metrics.version import METRICS_VERSION
from musictok.separation.base import Separator, stem_group

METRICS = [("si_sdr", "SI-SDR dB ↑"), ("bss_sdr", "SDR (BSS) dB ↑"), ("sdr", "SDR (plain) dB ↑"),
           ("mel_distance", "Mel dist ↓"), ("leakage_db", "leakage dB ↓")]
MIXTURE = "mixture (lower bound)"
HEDGEWARS_MUSIC = Path("data/debian/hedgewars-data/usr/share/games/hedgewars/Data/Music")


def _fmt(iv: dict, digits: int = 2) -> str:
    if iv["mean"] is None:
        return "–"
    if iv["low"] is None:
        return f"{iv['mean']:.{digits}f}"
    return f"{iv['mean']:.{digits}f} [{iv['low']:.{digits}f}, {iv['high']:.{digits}f}]"


def _interval(values) -> dict:
    iv = mean_interval(values).to_dict()
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in iv.items()}


def evaluate_corpus(systems: dict[str, Separator], ceiling: Separator | None, corpus: str, split: str,
                    seconds: float, max_clips: int, log=print) -> dict:
    """Per system (and the ceiling and the mixture floor), per stem and metric: the per-clip values and their
    interval."""
    from musictok.data.datasets import StemClips

    first = next(iter(systems.values()))
    names, sr = first.stem_names, first.sample_rate
    clips = StemClips(corpus, split, seconds, sr, group=stem_group(names), random=False, max_clips=max_clips)
    order = [clips.stem_names.index(n) for n in names]
    values: dict[str, dict[str, list]] = {}
    rows = list(systems) + (["tokenizer ceiling"] if ceiling is not None else []) + [MIXTURE]
    for i in range(len(clips)):
        item = clips[i]
        mix, refs = item["mix"][None], item["stems"][order][None]
        for label in rows:
            t0 = time.perf_counter()
            if label == "tokenizer ceiling":
                est = ceiling.tokenizer_ceiling(refs)
            elif label == MIXTURE:
                est = mix[:, None].expand_as(refs)
            else:
                sep = systems[label]
                est = sep.separate(mix)[:, [sep.stem_names.index(n) for n in names]].cpu()
            scores = stem_metrics(mix, refs, est, sr)
            v = values.setdefault(label, {})
            for k, x in scores.items():
                v.setdefault(k, []).append(x[0].tolist())
            v.setdefault("seconds", []).append(time.perf_counter() - t0)
        log(f"clip {i + 1}/{len(clips)} ({item['piece']} at {item['start']:.1f} s)")
    out = {}
    for label, v in values.items():
        per_stem = {name: {k: _interval([clip[s] for clip in v[k]]) for k, _ in METRICS if k in v}
                    for s, name in enumerate(names)}
        out[label] = {"per_stem": per_stem, "consistency": _interval(v["consistency"]),
                      "seconds_per_clip": sum(v["seconds"]) / len(v["seconds"]), "values": v}
    return {"clips": len(clips), "seconds": seconds, "split": split, "corpus": corpus, "stems": names,
            "systems": out}


def evaluate_real(systems: dict[str, Separator], folder: str, seconds: float, max_clips: int, listen: Path | None,
                  log=print) -> dict:
    """Consistency and reference-free leakage on recordings without stems; listening files under ``listen``."""
    from musictok.audio import save
    from musictok.data.datasets import AudioFolderClips

    first = next(iter(systems.values()))
    clips = AudioFolderClips(folder, seconds, first.sample_rate, max_clips=max_clips)
    out = {}
    for label, sep in systems.items():
        cons, leak = [], []
        for i in range(len(clips)):
            item = clips[i]
            mix = item["audio"][None]
            est = sep.separate(mix).cpu()
            cons.append(float(mixture_consistency(mix, est)[0]))
            leak.append(cross_leakage(est)[0].tolist())
            if listen is not None and i < 4:
                d = listen / label / f"{i:02d}-{Path(item['piece']).stem}"
                save(d / "mix.wav", mix[0].numpy(), sep.sample_rate)
                for s, name in enumerate(sep.stem_names):
                    save(d / f"{name}.wav", est[0, s].numpy(), sep.sample_rate)
        out[label] = {"consistency": _interval(cons),
                      "cross_leakage": {n: _interval([c[s] for c in leak]) for s, n in enumerate(sep.stem_names)}}
        log(f"real music: {label} done")
    return {"folder": str(folder), "clips": len(clips), "seconds": seconds, "systems": out}


def claims(result: dict) -> list[str]:
    """The paper's claims, each stated as reproduced or not at this scale, from the intervals."""
    systems = result["test"]["systems"]
    lm = [k for k, v in result["separators"].items() if v["kind"] == "lm"]
    disc = [k for k, v in result["separators"].items() if v["kind"] != "lm"]
    lines = ["The paper reports perceptual scores only (NISQA); nothing here measures perceived quality, so "
             "its NISQA claims are neither reproduced nor refuted. What the metrics below can say:"]

    def metric_for(a: str) -> tuple[str, str, float]:
        """A phase-free tokenizer's waveforms have a made-up phase, so SI-SDR says nothing about them: its
        separators are judged by Mel distance (lower is better)."""
        if a in result.get("phase_free", []):
            return "mel_distance", "Mel distance", -1.0
        return "si_sdr", "SI-SDR", 1.0

    def compare(a: str, b: str, stem: str, metric: str, sign: float) -> str:
        """"better", "worse" or "not distinguishable" (95 % intervals overlap) for ``a`` against ``b``."""
        x, y = systems[a]["per_stem"][stem][metric], systems[b]["per_stem"][stem][metric]
        if x["mean"] is None or y["mean"] is None:
            return "undefined"
        if x["low"] is not None and y["low"] is not None:
            if x["low"] > y["high"]:
                return "better" if sign > 0 else "worse"
            if x["high"] < y["low"]:
                return "worse" if sign > 0 else "better"
            return "not distinguishable"
        return "better" if sign * (x["mean"] - y["mean"]) > 0 else "worse"

    def gap(a: str, b: str, stem: str, metric: str, sign: float) -> float | None:
        x, y = systems[a]["per_stem"][stem][metric]["mean"], systems[b]["per_stem"][stem][metric]["mean"]
        return None if x is None or y is None else sign * (x - y)

    stems = result["test"]["stems"]
    for a in lm:
        metric, what, sign = metric_for(a)
        for b in disc:
            verdicts = {s: compare(a, b, s, metric, sign) for s in stems}
            close = [s for s, v in verdicts.items() if v in ("better", "not distinguishable")]
            lines.append(f"- *Generative separation approaches the discriminative baseline* ({a} vs {b}, {what}): "
                         + ", ".join(f"{s} {v}" for s, v in verdicts.items())
                         + (f" — reproduced for {', '.join(close)}" if close else " — not reproduced at this scale") + ".")
            gaps = {s: g for s in stems if (g := gap(a, b, s, metric, sign)) is not None}
            if len(gaps) > 1:
                best, worst = max(gaps, key=gaps.get), min(gaps, key=gaps.get)
                lines.append(f"- *Best on vocals, worst on drums* ({a} − {b}, {what}, positive = {a} better): "
                             + ", ".join(f"{s} {g:+.2f}" for s, g in gaps.items())
                             + f"; best relative to {b} on {best}, worst on {worst} (the paper: vocals, drums; "
                             "means only).")
        if "tokenizer ceiling" in systems:
            verdicts = {s: compare(a, "tokenizer ceiling", s, metric, sign) for s in stems}
            lines.append(f"- {a} against what its tokens can carry (tokenizer ceiling, {what}): "
                         + ", ".join(f"{s} {v}" for s, v in verdicts.items()) + ".")
        if MIXTURE in systems:
            verdicts = {s: compare(a, MIXTURE, s, metric, sign) for s in stems}
            lines.append(f"- {a} against the mixture as estimate ({what}): "
                         + ", ".join(f"{s} {v}" for s, v in verdicts.items()) + ".")
        c = systems[a]["consistency"]
        lines.append(f"- Mixture consistency of {a} (no consistency term, as in the paper): ‖Σ est − mix‖ / ‖mix‖ = "
                     f"{_fmt(c, 3)}; the mask baseline's is 0 by construction"
                     + (f"; with a made-up phase even the true tokens give {_fmt(systems['tokenizer ceiling']['consistency'], 3)} "
                        "(the tokenizer ceiling), so only the difference says something" if a in result.get("phase_free", [])
                        and "tokenizer ceiling" in systems else "") + ".")
    seq = [k for k in lm if result["separators"][k]["mode"] == "sequential"]
    ind = [k for k in lm if result["separators"][k]["mode"] == "independent"]
    for a in seq:
        metric, what, sign = metric_for(a)
        for b in ind:
            verdicts = {s: compare(a, b, s, metric, sign) for s in stems}
            lines.append(f"- *Sequential cross-track generation helps* ({a} vs {b}, {what}): "
                         + ", ".join(f"{s} {v}" for s, v in verdicts.items()) + ".")
    return lines


def markdown(result: dict) -> str:
    t = result["test"]
    lines = [f"# LM source separation vs a discriminative baseline (musictok {__version__})", "",
             f"{t['clips']} clips of {t['seconds']:g} s from `{t['corpus']}` ({t['split']} split, musdb group: "
             "mix = Σ stems exactly). Mean and 95 % t-interval across clips; NaN-free clips only (a silent "
             "reference leaves SI-SDR / SDR undefined).", ""]
    for label, info in result["separators"].items():
        lines.append(f"- **{label}**: `{info['source']}` ({info['kind']}"
                     + (f", {info['mode']}, tokenizer {info['tokenizer']}" if info["kind"] == "lm" else "") + ")")
    lines += ["", "| stem | system | " + " | ".join(h for _, h in METRICS) + " |",
              "| --- | --- | " + " | ".join("---" for _ in METRICS) + " |"]
    for stem in t["stems"]:
        for label, sys_ in t["systems"].items():
            cells = [_fmt(sys_["per_stem"][stem][k]) if k in sys_["per_stem"][stem] else "–" for k, _ in METRICS]
            lines.append(f"| {stem} | {label} | " + " | ".join(cells) + " |")
    if result.get("phase_free"):
        lines += ["", f"Phase: the tokenizers of {', '.join(result['phase_free'])} (and so the ceiling) decode through a "
                  "spectrogram and pick their own phase, so their waveform figures (SI-SDR, SDR, leakage) compare a "
                  "made-up phase and say little; judge them against the ceiling by Mel distance."]
    lines += ["", "| system | mixture consistency ‖Σ est − mix‖ / ‖mix‖ ↓ | seconds per clip |", "| --- | --- | --- |"]
    for label, sys_ in t["systems"].items():
        lines.append(f"| {label} | {_fmt(sys_['consistency'], 4)} | {sys_['seconds_per_clip']:.2f} |")
    if result.get("real"):
        r = result["real"]
        lines += ["", f"## Real recordings (no stems): {r['clips']} clips of {r['seconds']:g} s from `{r['folder']}`", "",
                  "Leakage without references: the share of each estimate's energy that the other estimates explain "
                  "(least squares; 0 = nothing shared).", "",
                  "| system | consistency ↓ | " + " | ".join(f"{s} cross-leakage ↓" for s in t["stems"]) + " |",
                  "| --- | --- | " + " | ".join("---" for _ in t["stems"]) + " |"]
        for label, sys_ in r["systems"].items():
            lines.append(f"| {label} | {_fmt(sys_['consistency'], 4)} | "
                         + " | ".join(_fmt(sys_["cross_leakage"][s], 3) for s in t["stems"]) + " |")
    lines += ["", "## The paper's claims at this scale", ""] + claims(result) + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--separator", action="append", default=[], metavar="LABEL=PATH",
                    help="a saved separator (repeatable); the first LM separator's tokenizer gives the ceiling")
    ap.add_argument("--corpus", default="data/chorales")
    ap.add_argument("--split", default="test")
    ap.add_argument("--seconds", type=float, default=4.0, help="clip length (at most the LM separators' window)")
    ap.add_argument("--clips", type=int, default=32)
    ap.add_argument("--real", default=None, help="recordings without stems (default: hedgewars' music if unpacked)")
    ap.add_argument("--real-clips", type=int, default=8)
    ap.add_argument("--listen", default="runs/separation-listen", help="where listening files go (not committed)")
    ap.add_argument("--out", default="docs/results")
    ap.add_argument("--name", default="separation")
    ap.add_argument("--quick", action="store_true", help="two short clips: a smoke test of the whole pipeline")
    args = ap.parse_args(argv)
    if not args.separator:
        ap.error("give at least one --separator LABEL=PATH")
    if args.quick:
        args.clips, args.real_clips = 2, 1
    systems: dict[str, Separator] = {}
    for spec in args.separator:
        label, _, path = spec.partition("=")
        if not path:
            label, path = Path(spec).name, spec
        systems[label] = Separator.from_pretrained(path)
    names = next(iter(systems.values())).stem_names
    for label, sep in systems.items():
        if set(sep.stem_names) != set(names) or sep.sample_rate != next(iter(systems.values())).sample_rate:
            raise SystemExit(f"{label}: separates {sep.stem_names} at {sep.sample_rate} Hz; every separator must "
                             f"separate {names} at one rate")
    lms = [s for s in systems.values() if s.name == "lm"]
    ceiling = lms[0] if lms else None
    log = (lambda line: print(line, file=sys.stderr, flush=True))
    real = args.real or (str(HEDGEWARS_MUSIC) if HEDGEWARS_MUSIC.is_dir() else None)
    result = {
        "musictok_version": __version__,
        "metrics_version": METRICS_VERSION,
        "separators": {k: {"source": s.source, "kind": s.name, "mode": getattr(s.config, "mode", None),
                           "tokenizer": getattr(s.config, "tokenizer", None)} for k, s in systems.items()},
        "ceiling_tokenizer": None if ceiling is None else ceiling.config.tokenizer,
        "phase_free": [k for k, s in systems.items() if s.name == "lm" and type(s.tokenizer).phase_free],
        "test": evaluate_corpus(systems, ceiling, args.corpus, args.split, args.seconds, args.clips, log),
        "real": (evaluate_real(systems, real, args.seconds, args.real_clips,
                               Path(args.listen) if args.listen else None, log) if real else None),
    }
    out = Path(args.out)
    write_json(out / f"{args.name}.json", json.loads(json.dumps(result, default=float).replace("NaN", "null")))
    write_text(out / f"{args.name}.md", markdown(result))
    log(f"wrote {out / args.name}.md and .json")
    return result


if __name__ == "__main__":
    with torch.no_grad():
        main()
