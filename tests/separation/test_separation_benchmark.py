"""benchmarks/separation.py --quick with tiny separators: the per-stem table, intervals, real-music rows; an LM
separator's greedy and sampled rows; waveform metrics only for phase-aware rows."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from musictok.audio import save
from musictok.metrics import METRICS_VERSION
from musictok.separation import Separator

from sep_helpers import SR


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("separation")


def test_quick_benchmark(bench, tiny_separators, tiny_corpus, tmp_path):
    real = tmp_path / "real"
    save(real / "song.wav", (0.1 * np.sin(np.arange(2 * SR) * 0.05)).astype(np.float32), SR)
    result = bench.main(["--separator", f"lm={tiny_separators['lm']}", "--separator", f"mask={tiny_separators['mask']}",
                         "--corpus", str(tiny_corpus), "--split", "train", "--seconds", "1.0", "--quick",
                         "--real", str(real), "--listen", str(tmp_path / "listen"), "--out", str(tmp_path / "results"),
                         "--best-of", "2"])
    systems = result["test"]["systems"]
    ceiling = "tokenizer ceiling (tok)"  # named after the LM separator's tokenizer (here its folder, tok)
    assert set(systems) == {"lm greedy", "lm sampled", "lm best of 2", "mask", ceiling,
                            "mixture as estimate", "uniform split (mixture / S)"}
    assert result["test"]["clips"] == 2
    # the tiny BandTok decodes with a made-up phase: its rows (and the ceiling) are scored by Mel distance only;
    # the mask baseline and the mixture keep their phase, so they keep every waveform metric
    for name in ("vocals", "drums", "bass", "other"):
        for label in ("lm greedy", "lm sampled", ceiling):
            row = systems[label]["per_stem"][name]
            assert set(row) == {"mel_distance", "mel_leakage_db", "silent_stem_level_db"}, label
            assert row["mel_distance"]["n"] == 2, label
        for label in ("mask", "mixture as estimate", "uniform split (mixture / S)"):
            assert set(systems[label]["per_stem"][name]) == {"si_sdr", "bss_sdr", "sdr", "mel_distance", "leakage_db",
                                                             "mel_leakage_db", "silent_stem_level_db"}
    rows = result["rows"]
    assert rows["lm greedy"]["options"]["temperature"] == 0.0 and rows["lm greedy"]["greedy"]
    # the tiny config decodes greedily, so the sampled row takes the benchmark's flags (defaults)
    assert rows["lm sampled"]["options"] == {"temperature": 1.0, "top_k": 50, "top_p": None, "samples": 1, "seed": 0}
    assert "benchmark's flags" in rows["lm sampled"]["decoding"] and not rows["lm sampled"]["greedy"]
    # best of 2: the sampled row's settings, two draws per clip, the one most consistent with the mix kept
    assert rows["lm best of 2"]["options"] == rows["lm sampled"]["options"] | {"samples": 2}
    assert "2 draws per clip, the most consistent kept" in rows["lm best of 2"]["decoding"]
    assert systems["mask"]["consistency"]["mean"] < 1e-5  # softmax masks: consistent by construction
    real_rows = result["real"]["systems"]
    assert set(real_rows["mask"]["cross_leakage"]) == {"vocals", "drums", "bass", "other"}
    assert real_rows["lm greedy"]["cross_leakage"] is None and real_rows["lm sampled"]["consistency"]["n"] == 1
    assert all(row["mel_consistency"]["n"] == 1 for row in real_rows.values())
    assert all(set(row["mel_cross_leakage"]) == {"vocals", "drums", "bass", "other"} for row in real_rows.values())
    md = (tmp_path / "results" / "separation.md").read_text()
    assert f"| vocals | {ceiling} |" in md and "The paper's claims at this scale" in md
    assert "| drums | mixture as estimate |" in md and "| bass | lm sampled |" in md
    assert "n/a †" in md and f"† Phase-free: lm greedy, lm sampled, lm best of 2, {ceiling}" in md
    assert "| Mel consistency (mix vs power sum of stems) ↓ |" in md
    claims = md.split("The paper's claims at this scale")[1]
    assert "(lm greedy − mask, Mel distance, negative = lm greedy better)" in claims
    assert "(lm sampled − mask, Mel distance" in claims
    assert "SI-SDR)" not in claims and "*Worst on drums* (lm greedy against mask" in claims
    assert "Greedy − sampled decoding (lm greedy − lm sampled, Mel distance" in claims
    assert "the most consistent kept, − one (lm best of 2 − lm sampled, Mel distance)" in claims
    assert f"lm greedy − what its tokens can carry (*{ceiling}*" in claims
    mixture = systems["mixture as estimate"]
    assert abs(mixture["consistency"]["mean"] - 3.0) < 1e-5  # four copies of the mix: ‖4 mix − mix‖ / ‖mix‖
    split = systems["uniform split (mixture / S)"]
    assert split["consistency"]["mean"] < 1e-6  # four quarters of the mix add up to it
    for name in ("vocals", "drums", "bass", "other"):  # a quarter of the mix has the same SI-SDR as the mix
        assert split["per_stem"][name]["si_sdr"]["mean"] == pytest.approx(mixture["per_stem"][name]["si_sdr"]["mean"],
                                                                          abs=1e-3)
    # in power, four copies of the mix and four quarters of it are both off by a factor 2: 7 log10 2 ≈ 2.1
    for floor in (mixture, split):
        assert floor["mel_consistency"]["mean"] == pytest.approx(7 * np.log10(2), abs=0.1)
    assert "lm greedy − the floor *uniform split (mixture / S)* (Mel distance)" in claims
    written = json.loads((tmp_path / "results" / "separation.json").read_text())
    assert written["ceilings"][ceiling]["separators"] == ["lm"]
    assert written["metrics_version"] == METRICS_VERSION and written["machine"]
    assert (tmp_path / "listen" / "mask" / "00-song" / "drums.wav").is_file()
    assert (tmp_path / "listen" / "lm-sampled" / "00-song" / "bass.wav").is_file()


def test_sampled_rows_are_seeded_and_follow_a_sampling_config(bench, tiny_separators):
    sep = Separator.from_pretrained(tiny_separators["lm"])
    rows = bench.make_systems({"lm": sep}, temperature=1.0, top_k=50, seed=3)
    mix = torch.randn(1, SR) * 0.1
    names = sep.stem_names
    sampled = rows["lm sampled"]
    assert torch.equal(sampled.separate(mix, names), sampled.separate(mix, names))  # one fixed seed: one draw
    assert not torch.equal(sampled.separate(mix, names), rows["lm greedy"].separate(mix, names))
    # a separator whose config samples brings its own settings
    sep.config = dataclasses.replace(sep.config, temperature=0.7, top_k=5)
    options, words = bench.sampled_options(sep, temperature=1.0, top_k=50, seed=3)
    assert options == {"temperature": 0.7, "top_k": 5, "top_p": None, "samples": 1, "seed": 3}
    assert "settings from its config" in words and "temperature 0.7, top-k 5, seed 3" in words
    mask = bench.make_systems({"mask": Separator.from_pretrained(tiny_separators["mask"])}, 1.0, 50, 0)
    assert list(mask) == ["mask"] and mask["mask"].options == {} and not mask["mask"].phase_free


def test_a_ceiling_per_tokenizer_and_mode_pairs_only(bench, tiny_separators, tiny_corpus, tmp_path):
    """Each distinct tokenizer among the LM separators gets its own ceiling row, named after it, and each LM
    row is judged against its own; "sequential beats independent" pairs only separators whose configs differ
    in mode alone, decoded alike (not the one with another tokenizer, not greedy against sampled)."""
    from musictok.separation import LMSeparator, LMSeparatorConfig
    from musictok.tokenizers.bandtok import BandTok, BandTokConfig

    independent = Separator.from_pretrained(tiny_separators["lm"])
    independent.config = dataclasses.replace(independent.config, mode="independent")
    independent.save_pretrained(tmp_path / "independent")
    torch.manual_seed(1)
    other = LMSeparator(LMSeparatorConfig.tiny(sample_rate=SR, tokenizer="other-tok"),
                        BandTok(BandTokConfig.tiny(sample_rate=SR, level_dbfs=-20.0)).eval())
    other.save_pretrained(tmp_path / "other")
    real = tmp_path / "real"
    save(real / "song.wav", (0.1 * np.sin(np.arange(SR) * 0.05)).astype(np.float32), SR)
    result = bench.main(["--separator", f"lm={tiny_separators['lm']}", "--separator", f"ind={tmp_path / 'independent'}",
                         "--separator", f"other={tmp_path / 'other'}", "--separator", f"mask={tiny_separators['mask']}",
                         "--corpus", str(tiny_corpus), "--split", "train", "--seconds", "1.0", "--quick",
                         "--best-of", "0", "--real", str(real), "--listen", "", "--out", str(tmp_path / "results")])
    mine, theirs = "tokenizer ceiling (tok)", "tokenizer ceiling (other-tok)"
    assert result["ceilings"][mine]["separators"] == ["lm", "ind"]
    assert result["ceilings"][theirs]["separators"] == ["other"]
    assert {mine, theirs} <= set(result["test"]["systems"])
    assert result["rows"]["other greedy"]["ceiling"] == theirs and result["rows"]["ind sampled"]["ceiling"] == mine
    assert bench.sequential_pairs(result) == [("lm greedy", "ind greedy"), ("lm sampled", "ind sampled")]
    claims = (tmp_path / "results" / "separation.md").read_text().split("The paper's claims at this scale")[1]
    assert f"other greedy − what its tokens can carry (*{theirs}*" in claims
    assert "*Sequential cross-track generation helps* (lm greedy − ind greedy: configs differ in mode alone" in claims
    assert "(other greedy − ind greedy" not in claims and "(lm greedy − ind sampled" not in claims


STEMS = ["vocals", "drums", "bass", "other"]


def _result(mel: dict[str, np.ndarray], configs: dict[str, dict]) -> dict:
    """What the claims read of a benchmark result: rows ``"<separator> greedy"`` (LM, mode from ``configs``)
    or ``"mask"``, each with per-clip Mel distances ``(clips, 4)``; as the JSON file keeps it (NaN as null)."""
    iv = {"mean": 0.5, "low": 0.4, "high": 0.6, "n": len(next(iter(mel.values()))), "level": 0.95}
    rows, systems = {}, {}
    for label, values in mel.items():
        sep = label.split()[0]
        lm = sep in configs
        rows[label] = {"separator": sep, "kind": "lm" if lm else "mask", "mode": configs[sep]["mode"] if lm else None,
                       "options": {"temperature": 0.0, "samples": 1} if lm else {}, "phase_free": lm, "ceiling": None}
        systems[label] = {"values": {"mel_distance": values.tolist()}, "consistency": iv, "mel_consistency": iv}
    result = {"rows": rows, "separators": {k: {"config": c} for k, c in configs.items()} | {"mask": {"config": {}}},
              "test": {"stems": STEMS, "systems": systems, "pieces": [f"piece-{i}" for i in range(iv["n"])]}}
    return json.loads(json.dumps(result).replace("NaN", "null"))


def _paired_case(delta, noise: float, seed: int = 0) -> dict:
    """20 clips whose Mel distances spread far more across clips (±1.5) than between the two systems: the
    LM row is the mask row plus ``delta`` per stem plus ``noise``. Clip 0 has silent vocals (undefined)."""
    g = np.random.default_rng(seed)
    mask = 5 + 3 * g.random((20, 4))
    mask[0, 0] = np.nan
    lm = mask + np.asarray(delta) + noise * g.standard_normal((20, 4))
    return _result({"lm greedy": lm, "mask": mask}, {"lm": {"mode": "sequential"}})


def _claim(lines: list[str], start: str) -> str:
    return next(line for line in lines if line.startswith(start))


def test_claims_are_paired_and_state_a_verdict(bench):
    """Across clips the two rows' intervals overlap (the clips differ by ±1.5), yet every per-clip difference
    says the same: paired, the claims are decided. Flipped, they are refuted; buried in noise, unresolved."""
    cases = {"reproduced": _paired_case([-0.6, 0.6, -0.2, -0.2], 0.05),
             "not reproduced": _paired_case([0.6, -0.6, 0.2, 0.2], 0.05),
             "not resolved": _paired_case([-0.06, 0.06, -0.02, -0.02], 2.0)}
    for expected, result in cases.items():
        lines = bench.claims(result)
        for start in ("- *Generative separation approaches", "- *Best on vocals*", "- *Worst on drums*"):
            assert f"— **{expected}**" in _claim(lines, start), (expected, start)
    lines = bench.claims(cases["reproduced"])
    best = _claim(lines, "- *Best on vocals*")
    assert "g_vocals − g_s, claimed > 0): drums 1.2" in best  # g = mask − lm: 0.6 on vocals, −0.6 on drums
    approach = _claim(lines, "- *Generative separation approaches")
    # clip 0 has no vocals: its mean over the other three stems is +0.07, the other clips' -0.1
    assert "vocals -0.6" in approach and "drums 0.6" in approach and "(worse)" in approach
    assert "all stems -0.09 [" in approach
    mel = cases["reproduced"]["test"]["systems"]
    lm, mask = (bench.mean_interval(np.array(mel[k]["values"]["mel_distance"], dtype=float))
                for k in ("lm greedy", "mask"))
    assert lm.low < mask.high  # the unpaired intervals overlap: they could not have decided it


def test_sequential_claim_pairs_configs_that_differ_in_mode_only(bench):
    g = np.random.default_rng(1)
    base = 5 + 3 * g.random((12, 4))
    configs = {"seq": {"mode": "sequential", "encoder_layers": 4}, "ind": {"mode": "independent", "encoder_layers": 4},
               "ind0": {"mode": "independent", "encoder_layers": 0}}
    result = _result({"seq greedy": base - 0.3 + 0.01 * g.standard_normal((12, 4)), "ind greedy": base,
                      "ind0 greedy": base + 1.0, "mask": base}, configs)
    assert bench.differ_in_mode_only(configs["seq"], configs["ind"])
    assert not bench.differ_in_mode_only(configs["seq"], configs["ind0"])
    assert bench.sequential_pairs(result) == [("seq greedy", "ind greedy")]
    lines = [line for line in bench.claims(result) if line.startswith("- *Sequential")]
    assert len(lines) == 1 and "(seq greedy − ind greedy" in lines[0] and "— **reproduced**" in lines[0]
    del result["rows"]["ind greedy"]  # an independent separator that differs in more than mode: not compared
    lines = [line for line in bench.claims(result) if line.startswith("- *Sequential")]
    assert lines == ["- *Sequential cross-track generation helps*: no sequential separator here differs from an "
                     "independent one in mode alone, so no pair isolates it (not compared)."]
