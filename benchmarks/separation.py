"""LM source separation against the discriminative baseline and the tokenizer ceiling, per stem (issue 14).

    .venv/bin/python benchmarks/separation.py \
        --separator lm=runs/sep-lm-small/export --separator mask=runs/sep-mask-small/export \
        [--separator lm-independent=runs/sep-lm-ind/export] [--real data/debian/.../Music]

For every separator on the same fixed clips of the test split (the musdb group: mix = Σ stems exactly), for
a **tokenizer ceiling** per distinct tokenizer among the LM separators (by fingerprint; the true stems
encoded and decoded by that tokenizer: what its tokens can carry at all), and for two floors any separator
must beat — the **mixture** as every stem's estimate (SiSEC's "mix" baseline) and the **uniform split**
``mix / S`` (what soft masks give before any training; by Mel distance it beats the mixture, whose level is
wrong for every stem) — per stem: Mel distance, SI-SDR, BSS-eval SDR (512-tap filters), plain SDR, leakage
(interference-to-target ratio by least-squares projection on the true stems, and the same ratio from a
non-negative fit of Mel magnitudes, which a made-up phase does not spoil), and per clip two
consistencies: the waveform one ``‖Σ est − mix‖ / ‖mix‖`` and the Mel one (the Mel distance between the
mixture and the stems' power sum, which a made-up phase does not spoil) — each a mean with a 95 %
Student-t interval across clips. Every fidelity metric is undefined where the reference stem is silent (some
clips have no vocals or no bass): those clips drop out of its mean, and the level a row wrote into such
stems is its own column.

An LM separator gives two rows: **greedy** (temperature 0) and **sampled** (its config's temperature /
top-k / top-p, or ``--temperature`` / ``--top-k`` when its config decodes greedily; one draw per clip from
the fixed ``--seed``), and with ``--best-of N`` a third: **best of N**, the same sampling drawn N times per
clip, keeping the candidate whose stems add up best to the mixture (the paper's consistency pick; by Mel
consistency for a phase-free tokenizer, see ``LMSeparator.consistency``). **Mel distance decides the
claims.** A decoder that makes up its own phase (every bundled tokenizer's, ``Tokenizer.phase_free``) gives
waveforms whose SI-SDR, SDR and projection leakage measure that phase, not the separation: those columns are
left empty for its rows (and its ceiling's) and kept only for phase-aware outputs (the mask baseline, the
two floors).

Every row is scored on the same clips, so every comparison is **paired**: the interval of the per-clip
differences (``paired_interval``), per stem and over all stems (per clip, the mean over the stems defined in
it). Clips cut from one piece are not independent draws: every interval, of a row or of a difference, is
taken over pieces (each piece's clips averaged first; ``n`` counts pieces). A claim is *reproduced* when
each of its intervals excludes 0 in the claimed direction, *not
reproduced* when one excludes 0 the other way, and *not resolved* otherwise. "Sequential beats
independent" pairs only separators whose saved configs differ in ``mode`` alone, decoded the same way.

On real recordings without stems (hedgewars' music, never trained on): consistency, and the leakage that
can be estimated without references (the share of each estimate the other estimates explain: in Mel
magnitudes for every row, in waveforms for phase-aware outputs only), plus listening files (written under ``--listen``, never
committed).

Writes ``OUT/NAME.md`` and ``OUT/NAME.json`` (default ``docs/results/separation.*``). ``--quick`` runs the
whole pipeline on two short clips (a smoke test; the tests use it with tiny models).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from musictok import __version__
from musictok.atomic import write_json, write_text
from musictok.metrics.separation import (Interval, cross_leakage, mean_interval, mel_cross_leakage,
                                         mixture_consistency, paired_interval, spectral_consistency, stem_metrics)
from musictok.report import provenance
from musictok.separation.base import Separator, stem_group
from musictok.tokens import Fingerprint

METRICS = [("mel_distance", "Mel dist ↓"), ("si_sdr", "SI-SDR dB ↑"), ("bss_sdr", "SDR (BSS) dB ↑"),
           ("sdr", "SDR (plain) dB ↑"), ("leakage_db", "leakage dB ↓"), ("mel_leakage_db", "Mel leakage dB ↓"),
           ("silent_stem_level_db", "level where silent dBFS ↓")]
WAVEFORM_METRICS = ("si_sdr", "bss_sdr", "sdr", "leakage_db")  # compare samples: meaningless for a made-up phase
PER_CLIP = [("consistency", "mixture consistency ‖Σ est − mix‖ / ‖mix‖ ↓"),
            ("mel_consistency", "Mel consistency (mix vs power sum of stems) ↓")]
CEILING = "tokenizer ceiling"  # a row per tokenizer: "tokenizer ceiling (NAME)"
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


def _interval_of(iv: Interval) -> dict:
    """An interval as JSON keeps it: NaN (undefined) as None."""
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in iv.to_dict().items()}


def _interval(values, groups=None) -> dict:
    return _interval_of(mean_interval(values, groups=groups))


def tokenizer_ceilings(separators: dict[str, Separator]) -> tuple[dict[str, Separator], dict[str, str]]:
    """One ceiling row per distinct tokenizer (by fingerprint) among the LM separators, labelled
    ``tokenizer ceiling (NAME)`` (the weights' hash added when two tokenizers share a name); and, for each LM
    separator's label, the label of its ceiling. Each LM separator is judged against its own tokenizer's."""
    first: dict[Fingerprint, Separator] = {}  # the first LM separator with each tokenizer
    for sep in separators.values():
        if sep.name == "lm":
            first.setdefault(sep.tokenizer.fingerprint(), sep)
    names = {fp: Path(sep.config.tokenizer).name for fp, sep in first.items()}  # a name, or a folder's name
    uses = Counter(names.values())
    label = {fp: f"{CEILING} ({n})" if uses[n] == 1 else f"{CEILING} ({n}, weights {fp.weights_hash[:8]})"
             for fp, n in names.items()}
    return ({label[fp]: sep for fp, sep in first.items()},
            {k: label[sep.tokenizer.fingerprint()] for k, sep in separators.items() if sep.name == "lm"})


def evaluate_corpus(systems: dict[str, System], ceilings: dict[str, Separator], corpus: str, split: str,
                    seconds: float, max_clips: int, log=print) -> dict:
    """Per system (and each tokenizer ceiling and the two floors), per stem and metric: the per-clip values and
    their interval. Phase-free rows get no waveform metrics (see the module docstring)."""
    from musictok.data.datasets import StemClips

    first = next(iter(systems.values())).separator
    names, sr = first.stem_names, first.sample_rate
    clips = StemClips(corpus, split, seconds, sr, group=stem_group(names), random=False, max_clips=max_clips)
    order = [clips.stem_names.index(n) for n in names]
    values: dict[str, dict[str, list]] = {}
    rows = list(systems) + list(ceilings) + [MIXTURE, SPLIT]
    phase_free = {label: systems[label].phase_free for label in systems}
    phase_free |= {label: bool(sep.tokenizer.phase_free) for label, sep in ceilings.items()}
    phase_free |= {MIXTURE: False, SPLIT: False}
    pieces = []  # per clip: clips of one piece are averaged before any interval (they are not independent)
    for i in range(len(clips)):
        item = clips[i]
        pieces.append(item["piece"])
        mix, refs = item["mix"][None], item["stems"][order][None]
        for label in rows:
            t0 = time.perf_counter()
            if label in ceilings:
                est = ceilings[label].tokenizer_ceiling(refs)
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
        per_stem = {name: {k: _interval([clip[s] for clip in v[k]], pieces) for k, _ in METRICS if k in v}
                    for s, name in enumerate(names)}
        out[label] = {"per_stem": per_stem, **{k: _interval(v[k], pieces) for k, _ in PER_CLIP},
                      "seconds_per_clip": sum(v["seconds"]) / len(v["seconds"]), "phase_free": phase_free[label],
                      "values": v}
    return {"clips": len(clips), "pieces": pieces, "seconds": seconds, "split": split, "corpus": corpus,
            "stems": names, "systems": out}


def evaluate_real(systems: dict[str, System], folder: str, seconds: float, max_clips: int, listen: Path | None,
                  log=print) -> dict:
    """Both consistencies and reference-free leakage (in Mel magnitudes for every row, in waveforms for
    phase-aware rows) on recordings without stems;
    listening files under ``listen``."""
    from musictok.audio import save
    from musictok.data.datasets import AudioFolderClips

    first = next(iter(systems.values())).separator
    names, sr = first.stem_names, first.sample_rate
    clips = AudioFolderClips(folder, seconds, sr, max_clips=max_clips)
    out = {}
    for label, system in systems.items():
        cons, mel_cons, leak, mel_leak = [], [], [], []
        for i in range(len(clips)):
            item = clips[i]
            mix = item["audio"][None]
            est = system.separate(mix, names)
            cons.append(float(mixture_consistency(mix, est)[0]))
            mel_cons.append(float(spectral_consistency(mix, est, sr)[0]))
            mel_leak.append(mel_cross_leakage(est, sr)[0].tolist())
            if not system.phase_free:
                leak.append(cross_leakage(est)[0].tolist())
            if listen is not None and i < 4:
                d = listen / label.replace(" ", "-") / f"{i:02d}-{Path(item['piece']).stem}"
                save(d / "mix.wav", mix[0].numpy(), sr)
                for s, name in enumerate(names):
                    save(d / f"{name}.wav", est[0, s].numpy(), sr)
        out[label] = {"consistency": _interval(cons), "mel_consistency": _interval(mel_cons),
                      "phase_free": system.phase_free,
                      "mel_cross_leakage": {n: _interval([c[s] for c in mel_leak]) for s, n in enumerate(names)},
                      "cross_leakage": ({n: _interval([c[s] for c in leak]) for s, n in enumerate(names)}
                                        if leak else None)}
        log(f"real music: {label} done")
    return {"folder": str(folder), "clips": len(clips), "seconds": seconds, "systems": out}


# ------------------------------------------------------------------------------------------------ the claims
ALL = "all stems"  # per clip, the mean over the stems defined in it


def _mel(result: dict, label: str) -> torch.Tensor:
    """A row's per-clip Mel distances ``(clips, S)``; undefined values (silent references) as NaN."""
    values = result["test"]["systems"][label]["values"]["mel_distance"]
    return torch.as_tensor(np.array(values, dtype=np.float64))  # None (JSON's null) -> NaN


def mel_differences(result: dict, a: str, b: str) -> dict[str, dict]:
    """Paired intervals of the per-clip Mel distance ``a − b`` (negative: ``a`` better), per stem and over
    all stems. A stem's silent clips drop out alike for both rows (the reference decides)."""
    x, y, pieces = _mel(result, a), _mel(result, b), result["test"]["pieces"]
    out = {name: _interval_of(paired_interval(x[:, s], y[:, s], groups=pieces))
           for s, name in enumerate(result["test"]["stems"])}
    out[ALL] = _interval_of(paired_interval(torch.nanmean(x, dim=1), torch.nanmean(y, dim=1), groups=pieces))
    return out


def _side(iv: dict) -> int:
    """1 when the interval lies above 0, -1 below, 0 when it holds 0 (or there is none: fewer than 2 clips)."""
    if iv["low"] is None:
        return 0
    return 1 if iv["low"] > 0 else -1 if iv["high"] < 0 else 0


def verdict(intervals: list[dict], claimed: int) -> str:
    """``reproduced`` when every interval excludes 0 on the claimed side (``claimed`` 1: above 0, -1: below),
    ``not reproduced`` when one excludes it on the other, ``not resolved`` otherwise."""
    sides = [_side(iv) * claimed for iv in intervals]
    if any(x < 0 for x in sides):
        return "not reproduced"
    return "reproduced" if sides and all(x > 0 for x in sides) else "not resolved"


def _standing(iv: dict) -> str:
    """A Mel-distance difference ``a − b`` in words, for ``a``."""
    return {-1: "better", 1: "worse", 0: "not resolved"}[_side(iv)]


def _said(diffs: dict[str, dict]) -> str:
    return "; ".join(f"{s} {_fmt(iv)} ({_standing(iv)})" for s, iv in diffs.items())


def approaches_claim(result: dict, a: str, b: str) -> str:
    """*Approaches discriminative quality*: the paired Mel difference ``a − b`` over all stems (reproduced when
    ``a`` is shown better, not reproduced when shown worse), with every stem's."""
    d = mel_differences(result, a, b)
    said = verdict([d[ALL]], -1)
    return (f"- *Generative separation approaches the discriminative baseline* ({a} − {b}, Mel distance, negative "
            f"= {a} better): {_said(d)} — **{said}** over all stems"
            + (" (the interval holds 0: neither worse nor parity shown)" if said == "not resolved" else "") + ".")


def best_worst_claims(result: dict, a: str, b: str) -> list[str]:
    """*Best on vocals* / *worst on drums*: with per-clip gaps ``g_s = mel_b − mel_a`` (positive: ``a`` better
    than ``b`` on stem ``s``), paired intervals of ``g_vocals − g_s`` (claimed > 0) and ``g_drums − g_s``
    (claimed < 0) for every other stem ``s``."""
    stems = result["test"]["stems"]
    gaps = _mel(result, b) - _mel(result, a)
    lines = []
    for stem, claimed, words in (("vocals", 1, "best on vocals"), ("drums", -1, "worst on drums")):
        if stem not in stems:
            continue
        i = stems.index(stem)
        ivs = {s: _interval_of(paired_interval(gaps[:, i], gaps[:, j], groups=result["test"]["pieces"]))
               for j, s in enumerate(stems) if j != i}
        lines.append(f"- *{words.capitalize()}* ({a} against {b}, Mel distance; g = {b} − {a}, positive = {a} "
                     f"better; g_{stem} − g_s, claimed {'> 0' if claimed > 0 else '< 0'}): "
                     + "; ".join(f"{s} {_fmt(iv)}" for s, iv in ivs.items())
                     + f" — **{verdict(list(ivs.values()), claimed)}**.")
    return lines


def differ_in_mode_only(a: dict, b: dict) -> bool:
    """Two saved separator configs that differ in ``mode`` and nothing else."""
    return [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)] == ["mode"]


def sequential_pairs(result: dict) -> list[tuple[str, str]]:
    """(sequential row, independent row) pairs that isolate ``mode``: their separators' configs differ in
    ``mode`` alone and the rows decode alike (the same options), so no other effect is mixed in."""
    rows, seps = result["rows"], result["separators"]
    lm = [k for k, v in rows.items() if v["kind"] == "lm"]
    return [(a, b) for a in lm for b in lm
            if rows[a]["mode"] == "sequential" and rows[b]["mode"] == "independent"
            and rows[a]["options"] == rows[b]["options"]
            and differ_in_mode_only(seps[rows[a]["separator"]]["config"], seps[rows[b]["separator"]]["config"])]


def claims(result: dict) -> list[str]:
    """The paper's claims, each stated as reproduced, not reproduced or not resolved at this scale, from
    paired Mel-distance intervals (see the module docstring)."""
    systems, rows = result["test"]["systems"], result["rows"]
    lm = [k for k, v in rows.items() if v["kind"] == "lm"]
    disc = [k for k, v in rows.items() if v["kind"] != "lm"]
    lines = ["The paper reports perceptual scores only (NISQA); nothing here measures perceived quality, so "
             "its NISQA claims are neither reproduced nor refuted. What the metrics below can say, judged by Mel "
             "distance (lower is better) — the one column that means the same for a decoder that makes up its "
             "phase and for one that keeps the mixture's. Every comparison is paired (the same clips): mean "
             "per-clip difference and its 95 % t-interval, taken over pieces (each piece's clips averaged "
             "first); clips where a stem is silent drop out for that stem."]
    for a in lm:
        for b in disc:
            lines.append(approaches_claim(result, a, b))
            lines += best_worst_claims(result, a, b)
        ceiling = rows[a].get("ceiling")
        if ceiling in systems:
            lines.append(f"- {a} − what its tokens can carry (*{ceiling}*, Mel distance): "
                         f"{_said(mel_differences(result, a, ceiling))}.")
        for floor in (MIXTURE, SPLIT):
            if floor in systems:
                lines.append(f"- {a} − the floor *{floor}* (Mel distance): "
                             f"{_said(mel_differences(result, a, floor))}.")
        lines.append(_consistency_line(result, a, bool(disc)))
    for name in dict.fromkeys(rows[k]["separator"] for k in lm):
        greedy, sampled = f"{name} greedy", f"{name} sampled"
        if greedy in systems and sampled in systems:
            lines.append(f"- Greedy − sampled decoding ({greedy} − {sampled}, Mel distance; the sampled row's "
                         f"settings are listed above): {_said(mel_differences(result, greedy, sampled))}.")
        best = next((k for k in systems if k.startswith(f"{name} best of ")), None)
        if best and sampled in systems:
            lines.append(f"- Several samples, the most consistent kept, − one ({best} − {sampled}, Mel distance): "
                         f"{_said(mel_differences(result, best, sampled))}.")
    pairs = sequential_pairs(result)
    for a, b in pairs:
        d = mel_differences(result, a, b)
        lines.append(f"- *Sequential cross-track generation helps* ({a} − {b}: configs differ in mode alone, same "
                     f"decoding; Mel distance, negative = sequential better): {_said(d)} — "
                     f"**{verdict([d[ALL]], -1)}** over all stems.")
    if not pairs and any(rows[k]["mode"] == "independent" for k in lm):
        lines.append("- *Sequential cross-track generation helps*: no sequential separator here differs from an "
                     "independent one in mode alone, so no pair isolates it (not compared).")
    return lines


def _consistency_line(result: dict, a: str, with_mask: bool) -> str:
    """Row ``a``'s two consistencies, and its ceiling's when its decoder makes up the phase."""
    systems, rows = result["test"]["systems"], result["rows"]
    ceiling = rows[a].get("ceiling")

    def both(label: str) -> str:
        return f"waveform {_fmt(systems[label]['consistency'], 3)}, Mel {_fmt(systems[label]['mel_consistency'], 3)}"

    return (f"- Consistency with the mixture of {a} (no consistency term, as in the paper): {both(a)}"
            + ("; the mask baseline's waveform consistency is 0 by construction" if with_mask else "")
            + (f"; with a made-up phase even the true tokens give {both(ceiling)} (*{ceiling}*), so only the "
               "difference says something, and the Mel one is the one to read" if rows[a]["phase_free"]
               and ceiling in systems else "") + ".")


def _cell(sys_: dict, stem: str, key: str) -> str:
    if sys_.get("phase_free") and key in WAVEFORM_METRICS:
        return "n/a †"
    iv = sys_["per_stem"][stem].get(key)
    if iv is None or not iv["n"]:
        return "–"
    return _fmt(iv, 1) + f" ({iv['n']} clips)" if key == "silent_stem_level_db" else _fmt(iv)


def markdown(result: dict) -> str:
    t = result["test"]
    lines = [f"# LM source separation vs a discriminative baseline (musictok {__version__})", "",
             f"{t['clips']} clips of {t['seconds']:g} s from `{t['corpus']}` ({t['split']} split, musdb group: "
             "mix = Σ stems exactly). Mean and 95 % t-interval across clips. Where a reference stem is silent "
             "(the stem does not play in the clip) its SI-SDR, SDR, Mel distance and leakage are undefined and "
             "that clip drops out of their means; *level where silent* is what the row wrote into such stems "
             "instead (RMS in dBFS, over those clips only; -120 = silence).", ""]
    for label, info in result["separators"].items():
        lines.append(f"- **{label}**: `{info['source']}` ({info['kind']}"
                     + (f", {info['mode']}, tokenizer {info['tokenizer']}" if info["kind"] == "lm" else "") + ")")
        for row, meta in result["rows"].items():
            if meta["separator"] == label and meta["decoding"]:
                lines.append(f"  - row *{row}*: {meta['decoding']}")
    for label, info in result["ceilings"].items():
        lines.append(f"- *{label}*: the true stems through `{info['tokenizer']}` ({info['fingerprint']}), for "
                     f"{', '.join(info['separators'])}")
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
    lines += ["", "| system | " + " | ".join(h for _, h in PER_CLIP) + " | seconds per clip |",
              "| --- | " + " | ".join("---" for _ in PER_CLIP) + " | --- |"]
    for label, sys_ in t["systems"].items():
        lines.append(f"| {label} | " + " | ".join(_fmt(sys_[k], 4) for k, _ in PER_CLIP)
                     + f" | {sys_['seconds_per_clip']:.2f} |")
    lines += ["", "Mel consistency: the Mel distance between the mixture and the power sum of the estimated stems, "
              "sqrt(Σ_s Mel(est_s)²) — made-up phases add in power, so unlike the waveform consistency it does not "
              "reward quiet stems; the true stems score near 0, not 0 (their cross terms within a Mel band)."]
    if result.get("real"):
        r = result["real"]
        lines += ["", f"## Real recordings (no stems): {r['clips']} clips of {r['seconds']:g} s from `{r['folder']}`", "",
                  "Leakage without references: the share of each estimate's energy that the other estimates explain — "
                  "in Mel magnitudes (a non-negative fit; every row) and in waveforms (least squares; n/a † for "
                  "phase-free rows, whose made-up phases make any two estimates look unrelated); 0 = nothing "
                  "shared.", "",
                  "| system | consistency ↓ | Mel consistency ↓ | "
                  + " | ".join(f"{s} Mel cross-leakage ↓" for s in t["stems"]) + " | "
                  + " | ".join(f"{s} cross-leakage ↓" for s in t["stems"]) + " |",
                  "| --- | --- | --- | " + " | ".join("---" for _ in t["stems"] * 2) + " |"]
        for label, sys_ in r["systems"].items():
            leak, mel_leak = sys_["cross_leakage"], sys_["mel_cross_leakage"]
            lines.append(f"| {label} | {_fmt(sys_['consistency'], 4)} | {_fmt(sys_['mel_consistency'], 4)} | "
                         + " | ".join(_fmt(mel_leak[s], 3) for s in t["stems"]) + " | "
                         + " | ".join("n/a †" if leak is None else _fmt(leak[s], 3) for s in t["stems"]) + " |")
    lines += ["", "## The paper's claims at this scale", ""] + claims(result) + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--separator", action="append", default=[], metavar="LABEL=PATH",
                    help="a saved separator (repeatable); each distinct tokenizer of the LM separators gets a "
                    "ceiling row")
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
    ceilings, ceiling_of = tokenizer_ceilings(separators)
    log = (lambda line: print(line, file=sys.stderr, flush=True))
    real = args.real or (str(HEDGEWARS_MUSIC) if HEDGEWARS_MUSIC.is_dir() else None)
    result = {
        **provenance(),
        "separators": {k: {"source": s.source, "kind": s.name, "mode": getattr(s.config, "mode", None),
                           "tokenizer": getattr(s.config, "tokenizer", None), "config": s.config_dict()}
                       for k, s in separators.items()},
        "rows": {k: {"separator": s.name, "kind": s.separator.name, "mode": getattr(s.separator.config, "mode", None),
                     "decoding": s.decoding, "options": s.options, "greedy": s.options.get("temperature") == 0.0,
                     "phase_free": s.phase_free, "ceiling": ceiling_of.get(s.name)} for k, s in systems.items()},
        "ceilings": {label: {"tokenizer": sep.config.tokenizer, "fingerprint": sep.tokenizer.fingerprint().short(),
                             "separators": [k for k, c in ceiling_of.items() if c == label]}
                     for label, sep in ceilings.items()},
        "phase_free": [k for k, s in systems.items() if s.phase_free],
        "test": evaluate_corpus(systems, ceilings, args.corpus, args.split, args.seconds, args.clips, log),
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
