"""LM source separation against the discriminative baseline and the tokenizer ceiling, per stem (issue 14).

    .venv/bin/python benchmarks/separation.py \
        --separator lm=runs/sep-lm-small/export --separator mask=runs/sep-mask-small/export \
        [--separator lm-independent=runs/sep-lm-ind/export] [--real data/debian/.../Music]

For every separator on the same fixed clips of the test split (the musdb group: mix = Σ stems exactly) and
for the **tokenizer ceiling** (the true stems encoded and decoded by the first LM separator's tokenizer: what
its tokens can carry at all) and for two floors any separator must beat — the **mixture** as every stem's
estimate (SiSEC's "mix" baseline) and the **uniform split** ``mix / S`` (what soft masks give before any
training; by Mel distance it beats the mixture, whose level is wrong for every stem) — per stem: Mel
distance, SI-SDR, BSS-eval SDR (512-tap filters), plain SDR, leakage (interference-to-target ratio by
least-squares projection on the true stems) and, per clip, the mixture consistency
``‖Σ est − mix‖ / ‖mix‖`` — each a mean with a 95 % Student-t interval across clips.

An LM separator gives two rows: **greedy** (temperature 0) and **sampled** (its config's temperature /
top-k / top-p, or ``--temperature`` / ``--top-k`` when its config decodes greedily; one draw per clip from
the fixed ``--seed``), and with ``--best-of N`` a third: **best of N**, the same sampling drawn N times per
clip, keeping the candidate whose stems add up best to the mixture (the paper's consistency pick). **Mel distance decides the claims.** A decoder that makes up its own phase (every
bundled tokenizer's, ``Tokenizer.phase_free``) gives waveforms whose SI-SDR, SDR and projection leakage
measure that phase, not the separation: those columns are left empty for its rows (and the ceiling's) and
kept only for phase-aware outputs (the mask baseline, the two floors).

On real recordings without stems (hedgewars' music, never trained on): consistency, and the leakage that
can be estimated without references (the share of each estimate the other estimates explain; for
phase-aware outputs only, for the same reason), plus listening files (written under ``--listen``, never
committed).

Writes ``OUT/NAME.md`` and ``OUT/NAME.json`` (default ``docs/results/separation.*``). ``--quick`` runs the
whole pipeline on two short clips (a smoke test; the tests use it with tiny models).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from musictok import __version__
from musictok.atomic import write_json, write_text
from musictok.metrics.separation import cross_leakage, mean_interval, mixture_consistency, stem_metrics
from musictok.report import provenance
from musictok.separation.base import Separator, stem_group

METRICS = [("mel_distance", "Mel dist ↓"), ("si_sdr", "SI-SDR dB ↑"), ("bss_sdr", "SDR (BSS) dB ↑"),
           ("sdr", "SDR (plain) dB ↑"), ("leakage_db", "leakage dB ↓")]
CEILING = "tokenizer ceiling"
MIXTURE = "mixture as estimate"  # every stem estimated by the mix itself (SiSEC's "mix" baseline)
SPLIT = "uniform split (mixture / S)"  # every stem estimated by mix / S: what untrained soft masks give
HEDGEWARS_MUSIC = Path("data/debian/hedgewars-data/usr/share/games/hedgewars/Data/Music")


@dataclass
class System:
    """One row of the tables: a saved separator (``name``: its ``--separator`` label) run with fixed
    decoding ``options``; ``decoding`` says which in words."""

    separator: Separator
    name: str
    options: dict = field(default_factory=dict)
    decoding: str = ""

    @property
    def phase_free(self) -> bool:
        """Its stems come from a decoder that picks its own phase."""
        return self.separator.name == "lm" and bool(type(self.separator.tokenizer).phase_free)

    def separate(self, mix: torch.Tensor, names: list[str]) -> torch.Tensor:
        sep = self.separator
        return sep.separate(mix, **self.options)[:, [sep.stem_names.index(n) for n in names]].cpu()


def sampled_options(sep: Separator, temperature: float, top_k: int | None, seed: int) -> tuple[dict, str]:
    """The sampled row's decoding: the separator's own settings when its config samples, else the
    benchmark's ``temperature`` and ``top_k``; one draw per clip from ``seed``."""
    c = sep.config
    if c.temperature > 0:
        t, k, p, source = c.temperature, c.top_k, c.top_p, "settings from its config"
    else:
        t, k, p, source = temperature, top_k, None, "settings from the benchmark's flags, its config decodes greedily"
    words = f"sampled: temperature {t:g}" + (f", top-k {k}" if k else "") + (f", top-p {p:g}" if p else "")
    return ({"temperature": t, "top_k": k, "top_p": p, "samples": 1, "seed": seed},
            f"{words}, seed {seed}, one draw per clip ({source})")


def make_systems(separators: dict[str, Separator], temperature: float, top_k: int | None,
                 seed: int, best_of: int = 0) -> dict[str, System]:
    """The rows: a mask separator once, an LM separator greedy and sampled (and best of ``best_of`` samples
    by mixture consistency, when ``best_of`` > 1)."""
    rows: dict[str, System] = {}
    for label, sep in separators.items():
        if sep.name != "lm":
            rows[label] = System(sep, label)
            continue
        rows[f"{label} greedy"] = System(sep, label, {"temperature": 0.0, "samples": 1}, "greedy (temperature 0)")
        options, words = sampled_options(sep, temperature, top_k, seed)
        rows[f"{label} sampled"] = System(sep, label, options, words)
        if best_of > 1:
            rows[f"{label} best of {best_of}"] = System(
                sep, label, options | {"samples": best_of},
                words.replace("one draw per clip", f"{best_of} draws per clip, the most consistent kept"))
    return rows


def _fmt(iv: dict, digits: int = 2) -> str:
    if iv["mean"] is None:
        return "–"
    if iv["low"] is None:
        return f"{iv['mean']:.{digits}f}"
    return f"{iv['mean']:.{digits}f} [{iv['low']:.{digits}f}, {iv['high']:.{digits}f}]"


def _interval(values) -> dict:
    iv = mean_interval(values).to_dict()
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in iv.items()}


def evaluate_corpus(systems: dict[str, System], ceiling: Separator | None, corpus: str, split: str,
                    seconds: float, max_clips: int, log=print) -> dict:
    """Per system (and the ceiling and the mixture floor), per stem and metric: the per-clip values and their
    interval. Phase-free rows get no waveform metrics (see the module docstring)."""
    from musictok.data.datasets import StemClips

    first = next(iter(systems.values())).separator
    names, sr = first.stem_names, first.sample_rate
    clips = StemClips(corpus, split, seconds, sr, group=stem_group(names), random=False, max_clips=max_clips)
    order = [clips.stem_names.index(n) for n in names]
    values: dict[str, dict[str, list]] = {}
    rows = list(systems) + ([CEILING] if ceiling is not None else []) + [MIXTURE, SPLIT]
    phase_free = {label: systems[label].phase_free for label in systems}
    phase_free[CEILING] = ceiling is not None and bool(type(ceiling.tokenizer).phase_free)
    phase_free |= {MIXTURE: False, SPLIT: False}
    for i in range(len(clips)):
        item = clips[i]
        mix, refs = item["mix"][None], item["stems"][order][None]
        for label in rows:
            t0 = time.perf_counter()
            if label == CEILING:
                est = ceiling.tokenizer_ceiling(refs)
            elif label == MIXTURE:
                est = mix[:, None].expand_as(refs)
            elif label == SPLIT:
                est = mix[:, None].expand_as(refs) / len(names)
            else:
                est = systems[label].separate(mix, names)
            scores = stem_metrics(mix, refs, est, sr, waveform=not phase_free[label])
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
                      "seconds_per_clip": sum(v["seconds"]) / len(v["seconds"]), "phase_free": phase_free[label],
                      "values": v}
    return {"clips": len(clips), "seconds": seconds, "split": split, "corpus": corpus, "stems": names,
            "systems": out}


def evaluate_real(systems: dict[str, System], folder: str, seconds: float, max_clips: int, listen: Path | None,
                  log=print) -> dict:
    """Consistency and reference-free leakage (phase-aware rows only) on recordings without stems;
    listening files under ``listen``."""
    from musictok.audio import save
    from musictok.data.datasets import AudioFolderClips

    first = next(iter(systems.values())).separator
    names, sr = first.stem_names, first.sample_rate
    clips = AudioFolderClips(folder, seconds, sr, max_clips=max_clips)
    out = {}
    for label, system in systems.items():
        cons, leak = [], []
        for i in range(len(clips)):
            item = clips[i]
            mix = item["audio"][None]
            est = system.separate(mix, names)
            cons.append(float(mixture_consistency(mix, est)[0]))
            if not system.phase_free:
                leak.append(cross_leakage(est)[0].tolist())
            if listen is not None and i < 4:
                d = listen / label.replace(" ", "-") / f"{i:02d}-{Path(item['piece']).stem}"
                save(d / "mix.wav", mix[0].numpy(), sr)
                for s, name in enumerate(names):
                    save(d / f"{name}.wav", est[0, s].numpy(), sr)
        out[label] = {"consistency": _interval(cons), "phase_free": system.phase_free,
                      "cross_leakage": ({n: _interval([c[s] for c in leak]) for s, n in enumerate(names)}
                                        if leak else None)}
        log(f"real music: {label} done")
    return {"folder": str(folder), "clips": len(clips), "seconds": seconds, "systems": out}


def claims(result: dict) -> list[str]:
    """The paper's claims, each stated as reproduced or not at this scale, from the Mel-distance intervals."""
    systems = result["test"]["systems"]
    rows = result["rows"]
    lm = [k for k, v in rows.items() if v["kind"] == "lm"]
    disc = [k for k, v in rows.items() if v["kind"] != "lm"]
    metric, what, sign = "mel_distance", "Mel distance", -1.0
    lines = ["The paper reports perceptual scores only (NISQA); nothing here measures perceived quality, so "
             "its NISQA claims are neither reproduced nor refuted. What the metrics below can say, judged by Mel "
             "distance (lower is better; 95 % intervals across clips) — the one column that means the same for a "
             "decoder that makes up its phase and for one that keeps the mixture's:"]

    def compare(a: str, b: str, stem: str) -> str:
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

    def gap(a: str, b: str, stem: str) -> float | None:
        x, y = systems[a]["per_stem"][stem][metric]["mean"], systems[b]["per_stem"][stem][metric]["mean"]
        return None if x is None or y is None else sign * (x - y)

    def verdicts(a: str, b: str) -> dict[str, str]:
        return {s: compare(a, b, s) for s in stems}

    def said(v: dict[str, str]) -> str:
        return ", ".join(f"{s} {x}" for s, x in v.items())

    stems = result["test"]["stems"]
    for a in lm:
        for b in disc:
            v = verdicts(a, b)
            better = [s for s, x in v.items() if x == "better"]
            close = [s for s, x in v.items() if x == "not distinguishable"]
            lines.append(f"- *Generative separation approaches the discriminative baseline* ({a} vs {b}, {what}): "
                         + said(v) + (f" — reproduced (better) for {', '.join(better)}" if better else "")
                         + (f" — not shown worse for {', '.join(close)} (overlapping intervals: parity not shown "
                            "either)" if close else "")
                         + (" — not reproduced at this scale" if not better and not close else "") + ".")
            gaps = {s: g for s in stems if (g := gap(a, b, s)) is not None}
            if len(gaps) > 1:
                best, worst = max(gaps, key=gaps.get), min(gaps, key=gaps.get)
                lines.append(f"- *Best on vocals, worst on drums* ({a} − {b}, {what}, positive = {a} better): "
                             + ", ".join(f"{s} {g:+.2f}" for s, g in gaps.items())
                             + f"; best relative to {b} on {best}, worst on {worst} (the paper: vocals, drums; "
                             "means only).")
        if CEILING in systems:
            lines.append(f"- {a} against what its tokens can carry (tokenizer ceiling, {what}): "
                         f"{said(verdicts(a, CEILING))}.")
        for floor in (MIXTURE, SPLIT):
            if floor in systems:
                lines.append(f"- {a} against the floor *{floor}* ({what}): {said(verdicts(a, floor))}.")
        c = systems[a]["consistency"]
        lines.append(f"- Mixture consistency of {a} (no consistency term, as in the paper): ‖Σ est − mix‖ / ‖mix‖ = "
                     f"{_fmt(c, 3)}" + ("; the mask baseline's is 0 by construction" if disc else "")
                     + (f"; with a made-up phase even the true tokens give {_fmt(systems[CEILING]['consistency'], 3)} "
                        "(the tokenizer ceiling), so only the difference says something" if rows[a]["phase_free"]
                        and CEILING in systems else "") + ".")
    for name in dict.fromkeys(rows[k]["separator"] for k in lm):
        greedy, sampled = f"{name} greedy", f"{name} sampled"
        if greedy in systems and sampled in systems:
            lines.append(f"- Greedy against sampled decoding ({greedy} vs {sampled}, {what}; the sampled row's "
                         f"settings are listed above): {said(verdicts(greedy, sampled))}.")
        best = next((k for k in systems if k.startswith(f"{name} best of ")), None)
        if best and sampled in systems:
            lines.append(f"- Several samples, the most consistent kept, against one ({best} vs {sampled}, {what}): "
                         f"{said(verdicts(best, sampled))}.")
    seq = [k for k in lm if rows[k]["mode"] == "sequential"]
    ind = [k for k in lm if rows[k]["mode"] == "independent"]
    for a in seq:
        for b in ind:
            if rows[a]["greedy"] == rows[b]["greedy"]:  # the same way of decoding, or the comparison mixes two effects
                lines.append(f"- *Sequential cross-track generation helps* ({a} vs {b}, {what}): "
                             f"{said(verdicts(a, b))}.")
    return lines


def _cell(sys_: dict, stem: str, key: str) -> str:
    if sys_.get("phase_free") and key != "mel_distance":
        return "n/a †"
    return _fmt(sys_["per_stem"][stem][key]) if key in sys_["per_stem"][stem] else "–"


def markdown(result: dict) -> str:
    t = result["test"]
    lines = [f"# LM source separation vs a discriminative baseline (musictok {__version__})", "",
             f"{t['clips']} clips of {t['seconds']:g} s from `{t['corpus']}` ({t['split']} split, musdb group: "
             "mix = Σ stems exactly). Mean and 95 % t-interval across clips; NaN-free clips only (a silent "
             "reference leaves SI-SDR / SDR undefined).", ""]
    for label, info in result["separators"].items():
        lines.append(f"- **{label}**: `{info['source']}` ({info['kind']}"
                     + (f", {info['mode']}, tokenizer {info['tokenizer']}" if info["kind"] == "lm" else "") + ")")
        for row, meta in result["rows"].items():
            if meta["separator"] == label and meta["decoding"]:
                lines.append(f"  - row *{row}*: {meta['decoding']}")
    lines += ["", "| stem | system | " + " | ".join(h for _, h in METRICS) + " |",
              "| --- | --- | " + " | ".join("---" for _ in METRICS) + " |"]
    for stem in t["stems"]:
        for label, sys_ in t["systems"].items():
            lines.append(f"| {stem} | {label} | " + " | ".join(_cell(sys_, stem, k) for k, _ in METRICS) + " |")
    free = [label for label, sys_ in t["systems"].items() if sys_.get("phase_free")]
    if free:
        lines += ["", f"† Phase-free: {', '.join(free)} decode through a spectrogram and make up their own phase, so "
                  "SI-SDR, SDR and leakage by projection would measure that phase, not the separation; they are "
                  "not reported for these rows (kept for the phase-aware ones). Judge them by Mel distance, "
                  "against the ceiling and the two floors."]
    lines += ["", "| system | mixture consistency ‖Σ est − mix‖ / ‖mix‖ ↓ | seconds per clip |", "| --- | --- | --- |"]
    for label, sys_ in t["systems"].items():
        lines.append(f"| {label} | {_fmt(sys_['consistency'], 4)} | {sys_['seconds_per_clip']:.2f} |")
    if result.get("real"):
        r = result["real"]
        lines += ["", f"## Real recordings (no stems): {r['clips']} clips of {r['seconds']:g} s from `{r['folder']}`", "",
                  "Leakage without references: the share of each estimate's energy that the other estimates explain "
                  "(least squares on waveforms; 0 = nothing shared; n/a † for phase-free rows, whose made-up phases "
                  "make any two estimates look unrelated).", "",
                  "| system | consistency ↓ | " + " | ".join(f"{s} cross-leakage ↓" for s in t["stems"]) + " |",
                  "| --- | --- | " + " | ".join("---" for _ in t["stems"]) + " |"]
        for label, sys_ in r["systems"].items():
            leak = sys_["cross_leakage"]
            lines.append(f"| {label} | {_fmt(sys_['consistency'], 4)} | "
                         + " | ".join("n/a †" if leak is None else _fmt(leak[s], 3) for s in t["stems"]) + " |")
    lines += ["", "## The paper's claims at this scale", ""] + claims(result) + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--separator", action="append", default=[], metavar="LABEL=PATH",
                    help="a saved separator (repeatable); the first LM separator's tokenizer gives the ceiling")
    ap.add_argument("--corpus", default="data/chorales")
    ap.add_argument("--split", default="test")
    ap.add_argument("--seconds", type=float, default=4.0, help="clip length (at most the LM separators' window)")
    ap.add_argument("--clips", type=int, default=32, help="test clips (the intervals are across clips)")
    ap.add_argument("--temperature", type=float, default=1.0,
                    help="sampled rows of an LM separator whose config decodes greedily (else its config's)")
    ap.add_argument("--top-k", type=int, default=50, help="with --temperature, for the same rows (0: no top-k)")
    ap.add_argument("--seed", type=int, default=0, help="the sampled rows' seed (one draw per clip)")
    ap.add_argument("--best-of", type=int, default=4, help="an LM separator's best-of-N row: N samples per clip, the "
                    "one most consistent with the mixture kept (0 or 1: no such row)")
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
    if not (args.temperature > 0 and args.top_k >= 0):
        ap.error("--temperature must be > 0 and --top-k >= 0 (they set the sampled rows)")
    separators: dict[str, Separator] = {}
    for spec in args.separator:
        label, _, path = spec.partition("=")
        if not path:
            label, path = Path(spec).name, spec
        separators[label] = Separator.from_pretrained(path)
    first = next(iter(separators.values()))
    names = first.stem_names
    for label, sep in separators.items():
        if set(sep.stem_names) != set(names) or sep.sample_rate != first.sample_rate:
            raise SystemExit(f"{label}: separates {sep.stem_names} at {sep.sample_rate} Hz; every separator must "
                             f"separate {names} at one rate")
    if args.best_of < 0:
        ap.error("--best-of must be >= 0")
    systems = make_systems(separators, args.temperature, args.top_k or None, args.seed, args.best_of)
    lms = [s for s in separators.values() if s.name == "lm"]
    ceiling = lms[0] if lms else None
    log = (lambda line: print(line, file=sys.stderr, flush=True))
    real = args.real or (str(HEDGEWARS_MUSIC) if HEDGEWARS_MUSIC.is_dir() else None)
    result = {
        **provenance(),
        "separators": {k: {"source": s.source, "kind": s.name, "mode": getattr(s.config, "mode", None),
                           "tokenizer": getattr(s.config, "tokenizer", None)} for k, s in separators.items()},
        "rows": {k: {"separator": s.name, "kind": s.separator.name, "mode": getattr(s.separator.config, "mode", None),
                     "decoding": s.decoding, "options": s.options, "greedy": s.options.get("temperature") == 0.0,
                     "phase_free": s.phase_free} for k, s in systems.items()},
        "ceiling_tokenizer": None if ceiling is None else ceiling.config.tokenizer,
        "phase_free": [k for k, s in systems.items() if s.phase_free],
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
