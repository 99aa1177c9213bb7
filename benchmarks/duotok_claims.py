"""DuoTok's claims (§4–§5, App. D), checked on `musictok bench --dual` results over several LM seeds.

    .venv/bin/python benchmarks/duotok_claims.py --main docs/results/bench-dual-s0.json docs/results/bench-dual-s1.json \\
        [--ablations docs/results/duotok-ablations-s0.json ...] [--duotok duotok-small] \\
        [--matched docs/results/matched-decoder.json] \\
        [--reference duotok-small-stage3] [--out docs/results/duotok-claims]

Each ``--main`` file is one seed of the dual-track protocol over DuoTok and its baselines; each ``--ablations``
file one seed of the same protocol over DuoTok's stage-3 tokens (``--reference``) and the ablated variants
(``scripts/duotok_ablations.sh``: the reference's name with ``-no-noise`` etc. before ``-stage3``). A claim is
*reproduced* when it holds at every seed, *not reproduced* when it holds at none, *mixed* otherwise, *not
testable* when a row it needs is missing; the numbers of every seed are in the table. The corruption costs
carry their bootstrap intervals over test pieces (from the bench); claim 3 also says whether DuoTok's and
each baseline's mismatch intervals are apart (a difference beyond that noise) or overlap (not resolved).

The claims:
1. DuoTok has the lowest cnBPT (parallel LM, both tracks) of all rows — and, as its check, the lowest enBPT
   (cnBPT divides by log2 K, which codes the tokenizer never uses inflate; enBPT by the codes' entropy).
   With per-piece cnBPT in the results (``bench --dual`` writes it), each seed is judged by the paired
   interval of DuoTok − baseline over the test pieces, not by the point estimates alone.
2. Corrupting the lead costs most by mismatch, then masking, then shifting (each at its strongest setting).
3. DuoTok's mismatch cost is larger than every baseline's.
4. DuoTok's context scaling is steeper: its relative cnBPT gain from the shortest to the longest context is
   larger than every baseline's.
5. Ablations: removing the noise raises cnBPT; not freezing the encoder raises it most; removing the MSS head
   does not raise it (the paper: slightly lower) but worsens the Mel distance. Each seed is judged by the
   paired interval of ablation − reference over the test pieces (cnBPT) and over the same clips (Mel
   distance; the decoded clips do not depend on the LM seed); the reference's spread over LM seeds is printed
   as the other noise floor.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import numpy as np

from musictok.atomic import write_json, write_text
from musictok.metrics import diagnostics
from musictok.metrics.intervals import cluster_bootstrap
from musictok.report import provenance


def load(paths: list[Path]) -> list[dict]:
    """One results file per seed: every file with the same rows, no seed twice."""
    out = []
    for p in paths:
        if not p.is_file():
            raise SystemExit(f"{p}: no such results file (run `musictok bench --dual --seed N --name …` first)")
        out.append(json.loads(p.read_text()))
    for p, r in zip(paths[1:], out[1:]):
        if set(r["rows"]) != set(out[0]["rows"]):
            raise SystemExit(f"{p}: rows {', '.join(r['rows'])} differ from {paths[0]}'s ({', '.join(out[0]['rows'])})")
    seeds = [seed_of(r) for r in out]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"{', '.join(map(str, paths))}: a seed comes twice ({seeds}); give each seed once")
    return out


def cnbpt(row: dict) -> float:
    return row["parallel"]["cnbpt"]


def enbpt(row: dict) -> float:
    return row["parallel"]["enbpt"]


def mel(row: dict) -> float:
    return statistics.fmean(v["mel_distance"] for v in row["reconstruction"].values())


def strongest(row: dict) -> dict[str, float]:
    """Each corruption at its strongest setting: the largest shift, the largest mask ratio, the mismatch."""
    c = row["corruption"]
    shift = max(c["shift"], key=lambda k: int(k))
    mask = max(c["mask"], key=lambda k: float(k))
    return {f"shift {shift}": c["shift"][shift], f"mask {float(mask):g}": c["mask"][mask], "mismatch": c["mismatch"]}


def context_gain(row: dict) -> float:
    return diagnostics.context_gain(row["context"])


def verdict(holds: list[bool]) -> str:
    """reproduced (every seed) / not reproduced (none) / mixed."""
    k, n = sum(holds), len(holds)
    return f"reproduced ({k}/{n} seeds)" if k == n else f"not reproduced ({k}/{n} seeds)" if k == 0 \
        else f"mixed ({k}/{n} seeds)"


def usable(interval) -> list | None:
    """An interval with two finite ends, or None (a NaN interval, e.g. from one test piece, says nothing)."""
    if not interval or any(x is None or not math.isfinite(x) for x in interval):
        return None
    return list(interval)


def relation(a: list | None, b: list | None) -> str | None:
    """How interval ``a`` lies against ``b``: "above", "below", "overlap", or None without both."""
    if not a or not b:
        return None
    return "above" if a[0] > b[1] else "below" if a[1] < b[0] else "overlap"


def interval_verdict(holds: list[bool], pairs: list[list[tuple]]) -> str:
    """A "DuoTok's X is the largest" claim judged by intervals, per seed: against it when some baseline's
    interval lies wholly above DuoTok's; not resolved when none does but some overlaps; otherwise the point
    estimates decide. Overlapping marginal intervals are a conservative test, not a paired test of the
    difference."""
    against = sum(any(relation(a, b) == "below" for a, b in seed) for seed in pairs)
    overlap = sum(any(relation(a, b) == "overlap" for a, b in seed) for seed in pairs)
    if against:
        return f"not reproduced ({against}/{len(pairs)} seeds with a baseline's interval wholly above DuoTok's)"
    if overlap:
        return f"not resolved ({overlap}/{len(pairs)} seeds with overlapping intervals)"
    return verdict(holds)


def seed_of(result: dict) -> int:
    return int(result["config"].get("seed", 0))


def not_testable(claim: str, why: str) -> dict:
    return {"claim": claim, "verdict": f"not testable ({why})", "values": {}}


def ordering_claim(results: list[dict], name: str) -> dict:
    """Within one row: mismatch > mask > shift, each at its strongest setting."""
    holds, values, unresolved = [], {}, 0
    for r in results:
        sh, ma, mm = strongest(r["rows"][name]).values()
        holds.append(mm > ma > sh)
        c = r["rows"][name]["corruption"]
        ivs = [(c.get("intervals") or {}).get(k) for k in strongest(r["rows"][name])]
        if all(ivs) and (ivs[2][0] <= ivs[1][1] or ivs[1][0] <= ivs[0][1]):
            unresolved += 1  # neighbours in the ordering overlap: the order is inside the noise
        values[f"s{seed_of(r)}"] = {k: f"{v:+.1%}" + (f" [{c['intervals'][k][0]:+.1%}, {c['intervals'][k][1]:+.1%}]"
                                                      if k in (c.get("intervals") or {}) else "")
                                    for k, v in strongest(r["rows"][name]).items()}
    v = verdict(holds) if not unresolved else f"not resolved ({unresolved}/{len(results)} seeds inside the intervals)"
    return {"claim": f"{name}: mismatch > mask > shift", "verdict": v, "values": values}


def main_claims(results: list[dict], duotok: str) -> list[dict]:
    claims = []
    for r in results:
        if duotok not in r["rows"]:
            raise SystemExit(f"no row {duotok!r} in the seed-{seed_of(r)} results (rows: {', '.join(r['rows'])})")
    base = [n for n in results[0]["rows"] if n != duotok]
    seeds = [seed_of(r) for r in results]
    if not base:
        return [ordering_claim(results, duotok)] + [not_testable(c, "no baseline row") for c in (
            "DuoTok has the lowest cnBPT", "DuoTok has the lowest enBPT (not lowered by unused codes)",
            "DuoTok's mismatch cost is the largest",
            "DuoTok's context scaling is the steepest (relative cnBPT gain, shortest → longest)")]

    holds = [all(cnbpt(r["rows"][duotok]) < cnbpt(r["rows"][b]) for b in base) for r in results]
    diffs = [{b: paired_difference(piece_cnbpt(r["rows"][duotok]), piece_cnbpt(r["rows"][b]), s) for b in base}
             for s, r in zip(seeds, results)]
    ways = [[direction(d) for d in seed.values()] for seed in diffs]
    if all(w is not None for seed in ways for w in seed):  # paired over test pieces: DuoTok − each baseline
        v = paired_verdict(["against" if "up" in seed else "holds" if all(w == "down" for w in seed)
                            else "unresolved" for seed in ways])
    else:
        v = verdict(holds) + " (point estimates)"
    claims.append({"claim": "DuoTok has the lowest cnBPT", "verdict": v,
                   "values": {f"s{s}": {n: round(cnbpt(row), 4) for n, row in r["rows"].items()}
                              | {f"DuoTok − {b} per piece": diff_text(d) for b, d in diff.items() if d}
                              for s, r, diff in zip(seeds, results, diffs)}})
    # the check on claim 1: cnBPT divides by log2 K, so codes a tokenizer never uses lower it; enBPT divides
    # by the codes' entropy instead
    holds = [all(enbpt(r["rows"][duotok]) < enbpt(r["rows"][b]) for b in base) for r in results]
    claims.append({"claim": "DuoTok has the lowest enBPT (not lowered by unused codes)", "verdict": verdict(holds),
                   "values": {f"s{s}": {n: round(enbpt(row), 4) for n, row in r["rows"].items()}
                              for s, r in zip(seeds, results)}})

    claims += [ordering_claim(results, name) for name in [duotok] + base]

    def mismatch_iv(r: dict, n: str) -> list | None:
        return usable(r["rows"][n]["corruption"].get("intervals", {}).get("mismatch"))

    def separated(r: dict, b: str) -> str:
        """How the two mismatch intervals lie."""
        how = relation(mismatch_iv(r, duotok), mismatch_iv(r, b))
        return {None: "no intervals", "overlap": "intervals overlap: not resolved"}.get(how, "intervals apart")

    holds = [all(r["rows"][duotok]["corruption"]["mismatch"] > r["rows"][b]["corruption"]["mismatch"] for b in base)
             for r in results]
    claims.append({"claim": "DuoTok's mismatch cost is the largest",
                   "verdict": interval_verdict(holds, [[(mismatch_iv(r, duotok), mismatch_iv(r, b)) for b in base]
                                                       for r in results]),
                   "values": {f"s{s}": {n: f"{row['corruption']['mismatch']:+.1%}"
                                        + ("" if n == duotok else f" ({separated(r, n)})")
                                        for n, row in r["rows"].items()} for s, r in zip(seeds, results)}})

    def gain_iv(r: dict, n: str) -> list | None:
        return usable(r["rows"][n].get("context_gain_interval"))

    def gain_text(row: dict) -> str:
        iv = usable(row.get("context_gain_interval"))
        return f"{context_gain(row):+.2%}" + (f" [{iv[0]:+.2%}, {iv[1]:+.2%}]" if iv else "")

    holds = [all(context_gain(r["rows"][duotok]) > context_gain(r["rows"][b]) for b in base) for r in results]
    claims.append({"claim": "DuoTok's context scaling is the steepest (relative cnBPT gain, shortest → longest)",
                   "verdict": interval_verdict(holds, [[(gain_iv(r, duotok), gain_iv(r, b)) for b in base]
                                                       for r in results]),
                   "values": {f"s{s}": {n: gain_text(row) for n, row in r["rows"].items()}
                              for s, r in zip(seeds, results)}})
    return claims


ABLATIONS = ("no-noise", "no-mss", "no-symbolic", "no-freeze")


def ablation_name(reference: str, tag: str) -> str:
    """``duotok-small-stage3`` -> ``duotok-small-no-noise-stage3`` (scripts/duotok_ablations.sh's runs)."""
    stem, sep, stage = reference.rpartition("-stage")
    return f"{stem}-{tag}{sep}{stage}" if sep else f"{reference}-{tag}"


def paired_difference(a: dict[str, float] | None, b: dict[str, float] | None, seed: int = 0,
                      resamples: int = 2000) -> tuple[float, list | None] | None:
    """Mean of ``a[k] − b[k]`` over the keys both hold (test pieces, or clips) and its 95 % bootstrap
    interval over them; None without both. The pairing removes what the pieces share (how hard each is to
    predict), which marginal intervals would leave in."""
    if not a or not b:
        return None
    keys = sorted(set(a) & set(b))
    if not keys:
        return None
    d = np.array([a[k] - b[k] for k in keys], dtype=np.float64)
    lo, hi = cluster_bootstrap(lambda i: float(d[i].mean()), np.arange(d.size), resamples=resamples, seed=seed)
    return float(d.mean()), usable([lo, hi])


def piece_cnbpt(row: dict) -> dict[str, float] | None:
    """The row's cnBPT per test piece (``bench --dual`` writes it from this version on), or None."""
    return row["parallel"].get("per_piece_cnbpt")


def clip_mel(row: dict) -> dict[str, float] | None:
    """Per-clip Mel distance averaged over both tracks, keyed by clip position (every row decodes the same
    middle clips of the same first test pieces), or None when the results keep no per-clip values."""
    tracks = [row["reconstruction"][t].get("per_clip") for t in ("lead", "accompaniment")]
    if not all(tracks) or len(tracks[0]) != len(tracks[1]):
        return None
    return {str(i): (x + y) / 2 for i, (x, y) in enumerate(zip(*tracks)) if math.isfinite(x + y)}


def direction(diff: tuple[float, list | None] | None) -> str | None:
    """"up" / "down" when the paired interval excludes 0, "unresolved" when it holds 0, None without one."""
    if diff is None or diff[1] is None:
        return None
    lo, hi = diff[1]
    return "up" if lo > 0 else "down" if hi < 0 else "unresolved"


def paired_verdict(outcomes: list[str]) -> str:
    """Per seed "holds" / "against" / "unresolved" (a paired interval over test pieces decides each):
    reproduced when it holds at every seed, not reproduced when it is against at some seed and holds at none."""
    k, n = outcomes.count("holds"), len(outcomes)
    against, open_ = outcomes.count("against"), outcomes.count("unresolved")
    if k == n:
        return f"reproduced ({k}/{n} seeds, paired intervals over pieces)"
    if against and not k:
        return f"not reproduced ({against}/{n} seeds against, paired intervals over pieces)"
    if against and k:
        return f"mixed ({k}/{n} seeds for, {against} against)"
    return f"not resolved ({open_}/{n} seeds with a paired interval holding 0)"


def diff_text(diff: tuple[float, list | None] | None, fmt: str = "+.4f") -> str:
    if diff is None:
        return "no per-piece values"
    return f"{diff[0]:{fmt}}" + (f" [{diff[1][0]:{fmt}}, {diff[1][1]:{fmt}}]" if diff[1] else "")


def ablation_claims(results: list[dict], reference: str) -> list[dict]:
    """Each ablation against the reference: a paired interval over test pieces (cnBPT; Mel distance over the
    same clips) per LM seed when the results hold per-piece values, else the point estimates' sign."""
    if reference not in results[0]["rows"]:
        raise SystemExit(f"no reference row {reference!r} in the ablation results "
                         f"(rows: {', '.join(results[0]['rows'])}); give it with --reference")
    seeds = [seed_of(r) for r in results]
    present = {tag: ablation_name(reference, tag) for tag in ABLATIONS
               if ablation_name(reference, tag) in results[0]["rows"]}

    def rises(cn: str | None, ml: str | None) -> str | None:
        return None if cn is None else {"up": "holds", "down": "against"}.get(cn, "unresolved")

    def mss(cn: str | None, ml: str | None) -> str | None:
        if cn is None or ml is None:
            return None
        if cn == "up" or ml == "down":
            return "against"
        return "holds" if ml == "up" else "unresolved"

    claims = []
    for tag, claim, test, paired in (
            ("no-noise", "without the noise, cnBPT rises", lambda a, ref: cnbpt(a) > cnbpt(ref), rises),
            ("no-freeze", "without freezing the encoder, cnBPT rises", lambda a, ref: cnbpt(a) > cnbpt(ref), rises),
            ("no-mss", "without the MSS head, cnBPT does not rise and the Mel distance does",
             lambda a, ref: cnbpt(a) <= cnbpt(ref) and mel(a) > mel(ref), mss)):
        if tag not in present:
            claims.append(not_testable(claim, f"no row {ablation_name(reference, tag)}"))
            continue
        pairs = [(r["rows"][present[tag]], r["rows"][reference]) for r in results]
        # per seed, ablation − reference: cnBPT paired over pieces, Mel distance over the same clips
        cn = [paired_difference(piece_cnbpt(a), piece_cnbpt(ref), s) for s, (a, ref) in zip(seeds, pairs)]
        ml = [paired_difference(clip_mel(a), clip_mel(ref), s) for s, (a, ref) in zip(seeds, pairs)]
        outcomes = [paired(direction(c), direction(m)) for c, m in zip(cn, ml)]
        if all(o is not None for o in outcomes):
            v = paired_verdict(outcomes)
        else:
            v = verdict([test(a, ref) for a, ref in pairs]) + " (point estimates)"
        claims.append({"claim": claim, "verdict": v, "values": {f"s{s}": {
            "cnBPT": f"{cnbpt(a):.4f} vs {cnbpt(ref):.4f}", "Δ cnBPT per piece": diff_text(c),
            "Mel": f"{mel(a):.3f} vs {mel(ref):.3f}", "Δ Mel per clip": diff_text(m, "+.3f")}
            for s, (a, ref), c, m in zip(seeds, pairs, cn, ml)}})
    claim = "not freezing the encoder costs the most cnBPT of the ablations"
    if "no-freeze" not in present or len(present) < 2:
        claims.append(not_testable(claim, "needs no-freeze and another ablation"))
    else:
        holds = [max(present.values(), key=lambda n: cnbpt(r["rows"][n])) == present["no-freeze"] for r in results]
        claims.append({"claim": claim, "verdict": verdict(holds),
                       "values": {f"s{s}": {tag: f"{cnbpt(r['rows'][n]):.4f}" for tag, n in present.items()}
                                  for s, r in zip(seeds, results)}})
    return claims


def ablation_table(results: list[dict], reference: str) -> list[str]:
    """One line per row; Δ is the row minus the reference per test piece, with its paired interval, per seed.
    The reference's spread over LM seeds is printed under the table: the noise a single seed's Δ carries
    besides the pieces'."""
    lines = ["| tokenizer | cnBPT (mean over seeds) | per seed | Δ cnBPT vs reference per seed [95 % over pieces] "
             "| Acc@1 lead | Acc@1 acc. | Mel lead | Mel acc. |",
             "|---|---|---|---|---|---|---|---|"]
    for name in results[0]["rows"]:
        rows = [r["rows"][name] for r in results]
        deltas = "—" if name == reference else "; ".join(
            diff_text(paired_difference(piece_cnbpt(r["rows"][name]), piece_cnbpt(r["rows"][reference]),
                                        seed_of(r))) for r in results)
        acc = {t: statistics.fmean(x["parallel"]["streams"][t]["topk_accuracy"]["1"] for x in rows)
               for t in ("lead", "accompaniment")}
        mels = {t: statistics.fmean(x["reconstruction"][t]["mel_distance"] for x in rows)
                for t in ("lead", "accompaniment")}
        label = f"{name} (reference)" if name == reference else name
        lines.append(f"| {label} | {statistics.fmean(cnbpt(x) for x in rows):.4f} | "
                     + ", ".join(f"{cnbpt(x):.4f}" for x in rows) + f" | {deltas}"
                     + f" | {acc['lead']:.3f} | {acc['accompaniment']:.3f} | {mels['lead']:.3f} | "
                       f"{mels['accompaniment']:.3f} |")
    spread = [cnbpt(r["rows"][reference]) for r in results]
    if len(spread) > 1:
        lines += ["", f"The reference's cnBPT over the {len(spread)} LM seeds spans {max(spread) - min(spread):.4f} "
                      f"({min(spread):.4f}–{max(spread):.4f}): a Δ smaller than that is within the LMs' own "
                      "seed-to-seed noise, whatever its interval over pieces."]
    return lines


def matched_claim(result: dict, duotok: str) -> dict:
    """§5.4: under one decoder trained on every tokenizer's frozen codewords, DuoTok's tokens reconstruct each
    track closer than the baselines' (Mel distance; the paired interval over clips decides). One decoder
    training (seed) per tokenizer, so this is one seed however the intervals fall."""
    claim = "matched decoder: DuoTok's tokens reconstruct both tracks best (§5.4)"
    toks = result["tokenizers"]
    names = {n for n in toks if n == duotok or toks[n].get("source") == duotok}
    if not names:
        return not_testable(claim, f"no row {duotok!r} in the matched-decoder results")
    if len(names) > 1:
        return not_testable(claim, f"several rows match {duotok!r}: {', '.join(sorted(names))}")
    name = names.pop()
    outcomes, values = [], {}
    for other in (n for n in toks if n != name):
        for track in ("lead", "accompaniment"):
            key = next((k for k in result["paired"] if k in (f"{name} − {other}", f"{other} − {name}")), None)
            if key is None:
                continue
            d = result["paired"][key][track]
            sign = 1 if key.startswith(f"{name} ") else -1  # duotok − other
            lo, hi = sorted((sign * d["interval"][0], sign * d["interval"][1]))
            outcomes.append("better" if hi < 0 else "worse" if lo > 0 else "unresolved")
            values[f"{other} {track}"] = f"{sign * d['mel_distance']:+.3f} [{lo:+.3f}, {hi:+.3f}]"
    if not outcomes:
        return not_testable(claim, "no paired differences with DuoTok")
    kbps = {n: t["codewords"].get("kbps_per_track") for n, t in toks.items()}
    verdict = ("reproduced (1 decoder seed)" if all(o == "better" for o in outcomes) else
               "not reproduced (1 decoder seed)" if any(o == "worse" for o in outcomes) else "not resolved")
    values["kbps per track"] = ", ".join(f"{n} {v:g}" for n, v in kbps.items() if v is not None)
    return {"claim": claim, "verdict": verdict, "values": {"DuoTok − other, Mel": values}}


def markdown(claims: list[dict], main: list[dict], ablations: list[dict], args: argparse.Namespace) -> str:
    cfg = main[0]["config"]
    lines = ["# DuoTok's claims under the dual-track LM protocol", "",
             f"Seeds {', '.join(str(seed_of(r)) for r in main)} of `musictok bench --dual` (LM {cfg['lm_layers']} × "
             f"{cfg['lm_embd']}, {cfg['lm_steps']} steps, {cfg['context_seconds']:g} s context, corpus "
             f"`{cfg['corpus']}`, {cfg['eval_split']} split). Files: "
             + ", ".join(f"`{p}`" for p in args.main + (args.ablations or [])) + ".", "",
             "A claim is reproduced when it holds at every seed. Corruption costs carry their 95 % bootstrap "
             "interval over test pieces; Mel distances are per track (mean of lead and accompaniment here).", "",
             "| claim | verdict | numbers per seed |", "|---|---|---|"]
    for c in claims:
        vals = "; ".join(f"{s}: " + ", ".join(f"{k} {v}" for k, v in d.items()) for s, d in c["values"].items())
        lines.append(f"| {c['claim']} | {c['verdict']} | {vals} |")
    if ablations:
        lines += ["", "## Ablations (stage-3 tokens; Mel distance through the Mel head and the vocoder)", ""]
        lines += ablation_table(ablations, args.reference)
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--main", type=Path, nargs="+", required=True, help="bench --dual JSON, one per seed")
    ap.add_argument("--ablations", type=Path, nargs="*", help="bench --dual JSON of the ablation rows, one per seed")
    ap.add_argument("--duotok", default="duotok-small", help="DuoTok's row name in --main (and in --matched)")
    ap.add_argument("--matched", type=Path, help="benchmarks/matched_decoder.py's JSON, for the §5.4 claim")
    ap.add_argument("--reference", default="duotok-small-stage3", help="the unablated row in --ablations")
    ap.add_argument("--out", type=Path, default=Path("docs/results/duotok-claims"))
    args = ap.parse_args()
    main_results = load(args.main)
    for path, r in zip(args.main, main_results):
        if not all("corruption" in row for row in r["rows"].values()):
            raise SystemExit(f"{path}: a run without the track-to-track LM (--no-track-to-track) has no corruption "
                             "costs; give it with --ablations, or a full run with --main")
    abl_results = load(args.ablations) if args.ablations else []
    claims = main_claims(main_results, args.duotok)
    if args.matched:
        if not args.matched.is_file():
            raise SystemExit(f"{args.matched}: no such results file (run benchmarks/matched_decoder.py first)")
        claims.append(matched_claim(json.loads(args.matched.read_text()), args.duotok))
    if abl_results:
        claims += ablation_claims(abl_results, args.reference)
    write_json(args.out.with_suffix(".json"), {"claims": claims, "main": [str(p) for p in args.main],
                                               "ablations": [str(p) for p in args.ablations or []],
                                               "matched": str(args.matched) if args.matched else None,
                                               **provenance()})
    write_text(args.out.with_suffix(".md"), markdown(claims, main_results, abl_results, args))
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
