"""benchmarks/duotok_claims.py on hand-made `bench --dual` results with known answers: a claim that holds at
every seed is reproduced, at none not, at some mixed; ablation rows are found by their run names."""

import json
import sys

import pytest


def _row(cnbpt: float, mismatch: float, mask: float, shift: float, ctx: tuple[float, float], mel: float = 1.0) -> dict:
    stream = {"cnbpt": cnbpt, "enbpt": 1.5 - cnbpt, "topk_accuracy": {"1": 0.2}}
    return {"parallel": {"cnbpt": cnbpt, "enbpt": 1.5 - cnbpt, "streams": {"lead": stream, "accompaniment": stream}},
            "corruption": {"shift": {"1": shift / 2, "32": shift}, "mask": {"0.1": mask / 3, "0.9": mask},
                           "mismatch": mismatch, "intervals": {"mismatch": [mismatch - 0.01, mismatch + 0.01]}},
            "context": {"2.000": ctx[0], "10.000": ctx[1]},
            "reconstruction": {t: {"mel_distance": mel, "interval": [mel - 0.1, mel + 0.1], "clips": 4}
                               for t in ("lead", "accompaniment")}}


def _result(seed: int, rows: dict) -> dict:
    return {"config": {"seed": seed, "lm_layers": 4, "lm_embd": 256, "lm_steps": 400, "context_seconds": 10.0,
                       "corpus": "data/chorales", "eval_split": "test"}, "rows": rows}


def test_claims_verdicts_follow_the_seeds(tmp_path, monkeypatch, load_benchmark):
    claims = load_benchmark("duotok_claims")
    s0 = _result(0, {"duo": _row(0.40, 0.20, 0.10, 0.05, (0.50, 0.40)),
                     "band": _row(0.60, 0.05, 0.02, 0.01, (0.62, 0.60))})
    s1 = _result(1, {"duo": _row(0.65, 0.20, 0.25, 0.05, (0.50, 0.40)),  # worse than band; mask > mismatch
                     "band": _row(0.60, 0.05, 0.02, 0.01, (0.62, 0.60))})
    out = {c["claim"]: c["verdict"] for c in claims.main_claims([s0, s1], "duo")}
    assert out["DuoTok has the lowest cnBPT"] == "mixed (1/2 seeds) (point estimates)"
    assert out["DuoTok has the lowest enBPT (not lowered by unused codes)"] == "mixed (1/2 seeds)"  # the other seed
    assert out["duo: mismatch > mask > shift"] == "mixed (1/2 seeds)"
    assert out["band: mismatch > mask > shift"] == "reproduced (2/2 seeds)"
    assert out["DuoTok's mismatch cost is the largest"] == "reproduced (2/2 seeds)"
    assert out[next(k for k in out if k.startswith("DuoTok's context"))] == "reproduced (2/2 seeds)"
    with pytest.raises(SystemExit, match="no row 'nope'"):
        claims.main_claims([s0], "nope")

    abl = [_result(s, {"duotok-small-stage3": _row(0.50, 0.2, 0.1, 0.05, (0.5, 0.4), mel=1.0),
                       "duotok-small-no-noise-stage3": _row(0.55, 0.2, 0.1, 0.05, (0.5, 0.4), mel=1.0),
                       "duotok-small-no-mss-stage3": _row(0.49, 0.2, 0.1, 0.05, (0.5, 0.4), mel=1.2),
                       "duotok-small-no-freeze-stage3": _row(0.45, 0.2, 0.1, 0.05, (0.5, 0.4))}) for s in (0, 1)]
    out = {c["claim"]: c["verdict"] for c in claims.ablation_claims(abl, "duotok-small-stage3")}
    assert out["without the noise, cnBPT rises"] == "reproduced (2/2 seeds) (point estimates)"
    assert out["without freezing the encoder, cnBPT rises"] == "not reproduced (0/2 seeds) (point estimates)"
    assert out["without the MSS head, cnBPT does not rise and the Mel distance does"] == \
        "reproduced (2/2 seeds) (point estimates)"
    assert out["not freezing the encoder costs the most cnBPT of the ablations"] == "not reproduced (0/2 seeds)"
    # a row of a similar name is not taken for the ablation; a missing one is said, not dropped
    odd = [_result(s, {"duotok-small-stage3": _row(0.50, 0.2, 0.1, 0.05, (0.5, 0.4)),
                       "duotok-small-no-noise-4096-stage3": _row(0.40, 0.2, 0.1, 0.05, (0.5, 0.4))}) for s in (0, 1)]
    out = {c["claim"]: c["verdict"] for c in claims.ablation_claims(odd, "duotok-small-stage3")}
    assert out["without the noise, cnBPT rises"].startswith("not testable (no row duotok-small-no-noise-stage3")
    assert out["not freezing the encoder costs the most cnBPT of the ablations"].startswith("not testable")
    with pytest.raises(SystemExit, match="no reference row"):
        claims.ablation_claims(odd, "duotok-small-stage4")
    # no baseline: nothing to beat, so nothing is claimed
    alone = [_result(0, {"duo": _row(0.9, 0.0, 0.0, 0.0, (0.5, 0.5))})]
    assert all(c["verdict"].startswith("not testable") for c in claims.main_claims(alone, "duo")
               if c["claim"].startswith("DuoTok"))

    # the script end to end: files in, Markdown and JSON out
    files = []
    for i, r in enumerate([s0, s1] + abl):
        files.append(tmp_path / f"r{i}.json")
        files[-1].write_text(json.dumps(r))
    monkeypatch.setattr(sys, "argv", ["duotok_claims.py", "--main", str(files[0]), str(files[1]), "--duotok", "duo",
                                      "--ablations", str(files[2]), str(files[3]), "--out", str(tmp_path / "claims")])
    claims.main()
    with pytest.raises(SystemExit, match="a seed comes twice"):
        claims.load([files[0], files[0]])
    with pytest.raises(SystemExit, match="differ from"):
        claims.load([files[0], files[2]])
    page = (tmp_path / "claims.md").read_text()
    assert "| DuoTok has the lowest cnBPT | mixed (1/2 seeds) (point estimates) |" in page
    assert "duotok-small-stage3 (reference)" in page
    assert json.loads((tmp_path / "claims.json").read_text())["claims"][0]["verdict"] == \
        "mixed (1/2 seeds) (point estimates)"


def test_an_ordering_inside_the_intervals_is_not_resolved(load_benchmark):
    claims = load_benchmark("duotok_claims")
    row = _row(0.4, 0.002, 0.001, 0.0, (0.5, 0.4))
    row["corruption"]["intervals"] = {"shift 32": [-0.001, 0.001], "mask 0.9": [-0.001, 0.003],
                                      "mismatch": [0.0, 0.004]}
    assert claims.ordering_claim([_result(0, {"duo": row})], "duo")["verdict"] == \
        "not resolved (1/1 seeds inside the intervals)"
    row["corruption"]["intervals"] = {"shift 32": [-0.001, 0.0005], "mask 0.9": [0.0008, 0.0012],
                                      "mismatch": [0.0015, 0.003]}
    assert claims.ordering_claim([_result(0, {"duo": row})], "duo")["verdict"] == "reproduced (1/1 seeds)"


def test_cross_tokenizer_claims_inside_the_intervals_are_not_resolved(load_benchmark):
    """DuoTok ahead on the point estimates, but its mismatch cost's and its context gain's intervals overlap
    a baseline's: not resolved; apart: reproduced."""
    claims = load_benchmark("duotok_claims")
    duo, band = _row(0.4, 0.003, 0.001, 0.0, (0.5, 0.49)), _row(0.6, 0.002, 0.001, 0.0, (0.6, 0.599))
    duo["corruption"]["intervals"]["mismatch"], band["corruption"]["intervals"]["mismatch"] = [0.001, 0.005], [0.0, 0.004]
    duo["context_gain_interval"], band["context_gain_interval"] = [0.0, 0.03], [-0.01, 0.01]
    out = {c["claim"]: c["verdict"] for c in claims.main_claims([_result(0, {"duo": duo, "band": band})], "duo")}
    context = next(k for k in out if k.startswith("DuoTok's context"))
    assert out["DuoTok's mismatch cost is the largest"] == "not resolved (1/1 seeds with overlapping intervals)"
    assert out[context] == "not resolved (1/1 seeds with overlapping intervals)"
    band["corruption"]["intervals"]["mismatch"], band["context_gain_interval"] = [0.0, 0.0005], [-0.01, -0.001]
    out = {c["claim"]: c["verdict"] for c in claims.main_claims([_result(0, {"duo": duo, "band": band})], "duo")}
    assert out["DuoTok's mismatch cost is the largest"] == out[context] == "reproduced (1/1 seeds)"


def test_the_matched_decoder_claim_reads_the_paired_intervals(load_benchmark):
    claims = load_benchmark("duotok_claims")

    def result(lead: list[float], acc: list[float]) -> dict:  # intervals of "band − duo"
        pair = {t: {"mel_distance": sum(iv) / 2, "interval": iv} for t, iv in (("lead", lead), ("accompaniment", acc))}
        toks = {n: {"source": n, "codewords": {"kbps_per_track": k}} for n, k in (("band", 1.875), ("duo", 0.35))}
        return {"tokenizers": toks, "paired": {"band − duo": pair}}

    assert claims.matched_claim(result([0.1, 0.3], [0.2, 0.4]), "duo")["verdict"] == "reproduced (1 decoder seed)"
    worse = claims.matched_claim(result([-0.6, -0.4], [0.2, 0.4]), "duo")
    assert worse["verdict"] == "not reproduced (1 decoder seed)"
    assert worse["values"]["DuoTok − other, Mel"]["band lead"] == "+0.500 [+0.400, +0.600]"
    assert claims.matched_claim(result([-0.1, 0.3], [0.2, 0.4]), "duo")["verdict"] == "not resolved"
    assert claims.matched_claim(result([0.1, 0.3], [0.2, 0.4]), "nope")["verdict"].startswith("not testable")


def test_a_baseline_clearly_ahead_refutes_rather_than_leaves_unresolved(load_benchmark):
    """One baseline overlaps DuoTok, another's mismatch interval lies wholly above: not reproduced; NaN
    intervals (one test piece) count as none."""
    claims = load_benchmark("duotok_claims")
    duo, a, b = (_row(0.4, 0.003, 0.001, 0.0, (0.5, 0.49)), _row(0.6, 0.002, 0.001, 0.0, (0.6, 0.599)),
                 _row(0.7, 0.001, 0.001, 0.0, (0.6, 0.599)))
    duo["corruption"]["intervals"]["mismatch"] = [0.001, 0.005]
    a["corruption"]["intervals"]["mismatch"] = [0.0, 0.004]  # overlaps
    b["corruption"]["intervals"]["mismatch"] = [0.006, 0.009]  # wholly above DuoTok's, though its point is lower
    duo["context_gain_interval"], a["context_gain_interval"] = [float("nan"), float("nan")], [-0.01, 0.01]
    out = {c["claim"]: c["verdict"] for c in claims.main_claims([_result(0, {"duo": duo, "a": a, "b": b})], "duo")}
    assert out["DuoTok's mismatch cost is the largest"].startswith("not reproduced (1/1 seeds with a baseline's")
    assert out[next(k for k in out if k.startswith("DuoTok's context"))] == "reproduced (1/1 seeds)"


def _with_pieces(row: dict, per_piece: list[float], per_clip: list[float] | None = None) -> dict:
    row["parallel"]["per_piece_cnbpt"] = {f"p{i}": v for i, v in enumerate(per_piece)}
    if per_clip is not None:
        for t in ("lead", "accompaniment"):
            row["reconstruction"][t]["per_clip"] = list(per_clip)
    return row


def test_per_piece_values_judge_by_paired_intervals(load_benchmark):
    """With per-piece cnBPT, a difference that every piece shows is resolved even when it is small, and one
    that the pieces disagree on is not, whatever the point estimates say."""
    claims = load_benchmark("duotok_claims")
    base = [0.30, 0.50, 0.70, 0.40, 0.60, 0.35, 0.55, 0.45]
    ref = [_row(0.5, 0.2, 0.1, 0.05, (0.5, 0.4)) for _ in range(2)]
    steady = [b + 0.01 for b in base]  # every piece a little worse: rises
    noisy = [b + (0.2 if i % 2 else -0.19) for i, b in enumerate(base)]  # worse on average, not on every piece
    mel_ref, mel_up = [1.0, 1.2, 0.9, 1.1], [1.1, 1.3, 1.0, 1.2]
    abl = [_result(s, {"duotok-small-stage3": _with_pieces(ref[s], base, mel_ref),
                       "duotok-small-no-noise-stage3": _with_pieces(_row(0.51, 0.2, 0.1, 0.05, (0.5, 0.4)), steady, mel_ref),
                       "duotok-small-no-freeze-stage3": _with_pieces(_row(0.51, 0.2, 0.1, 0.05, (0.5, 0.4)), noisy, mel_ref),
                       "duotok-small-no-mss-stage3": _with_pieces(_row(0.49, 0.2, 0.1, 0.05, (0.5, 0.4)),
                                                                   [b - 0.005 for b in base], mel_up)})
           for s in (0, 1)]
    out = {c["claim"]: c for c in claims.ablation_claims(abl, "duotok-small-stage3")}
    assert out["without the noise, cnBPT rises"]["verdict"] == "reproduced (2/2 seeds, paired intervals over pieces)"
    assert out["without freezing the encoder, cnBPT rises"]["verdict"] == \
        "not resolved (2/2 seeds with a paired interval holding 0)"
    assert out["without the MSS head, cnBPT does not rise and the Mel distance does"]["verdict"] == \
        "reproduced (2/2 seeds, paired intervals over pieces)"
    assert out["without the noise, cnBPT rises"]["values"]["s0"]["Δ cnBPT per piece"].startswith("+0.0100 [+0.0100,")
    table = "\n".join(claims.ablation_table(abl, "duotok-small-stage3"))
    assert "spans 0.0000" in table and "+0.0100 [+0.0100, +0.0100]" in table

    # DuoTok below a baseline on every piece: reproduced; above it on every piece: not reproduced
    duo = _with_pieces(_row(0.4, 0.2, 0.1, 0.05, (0.5, 0.4)), base)
    band = _with_pieces(_row(0.6, 0.2, 0.1, 0.05, (0.5, 0.4)), [b + 0.1 for b in base])
    out = {c["claim"]: c["verdict"] for c in claims.main_claims([_result(0, {"duo": duo, "band": band})], "duo")}
    assert out["DuoTok has the lowest cnBPT"] == "reproduced (1/1 seeds, paired intervals over pieces)"
    band = _with_pieces(_row(0.6, 0.2, 0.1, 0.05, (0.5, 0.4)), [b - 0.1 for b in base])
    out = {c["claim"]: c["verdict"] for c in claims.main_claims([_result(0, {"duo": duo, "band": band})], "duo")}
    assert out["DuoTok has the lowest cnBPT"] == "not reproduced (1/1 seeds against, paired intervals over pieces)"
