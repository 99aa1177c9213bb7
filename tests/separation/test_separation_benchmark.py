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
    assert set(systems) == {"lm greedy", "lm sampled", "lm best of 2", "mask", "tokenizer ceiling",
                            "mixture as estimate", "uniform split (mixture / S)"}
    assert result["test"]["clips"] == 2
    # the tiny BandTok decodes with a made-up phase: its rows (and the ceiling) are scored by Mel distance only;
    # the mask baseline and the mixture keep their phase, so they keep every waveform metric
    for name in ("vocals", "drums", "bass", "other"):
        for label in ("lm greedy", "lm sampled", "tokenizer ceiling"):
            row = systems[label]["per_stem"][name]
            assert set(row) == {"mel_distance"} and row["mel_distance"]["n"] == 2, label
        for label in ("mask", "mixture as estimate", "uniform split (mixture / S)"):
            assert set(systems[label]["per_stem"][name]) == {"si_sdr", "bss_sdr", "sdr", "mel_distance", "leakage_db"}
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
    md = (tmp_path / "results" / "separation.md").read_text()
    assert "| vocals | tokenizer ceiling |" in md and "The paper's claims at this scale" in md
    assert "| drums | mixture as estimate |" in md and "| bass | lm sampled |" in md
    assert "n/a †" in md and "† Phase-free: lm greedy, lm sampled, lm best of 2, tokenizer ceiling" in md
    claims = md.split("The paper's claims at this scale")[1]
    assert "(lm greedy vs mask, Mel distance)" in claims and "(lm sampled vs mask, Mel distance)" in claims
    assert "SI-SDR)" not in claims and "worst on" in claims
    assert "Greedy against sampled decoding (lm greedy vs lm sampled, Mel distance" in claims
    assert "the most consistent kept, against one (lm best of 2 vs lm sampled, Mel distance)" in claims
    mixture = systems["mixture as estimate"]
    assert abs(mixture["consistency"]["mean"] - 3.0) < 1e-5  # four copies of the mix: ‖4 mix − mix‖ / ‖mix‖
    split = systems["uniform split (mixture / S)"]
    assert split["consistency"]["mean"] < 1e-6  # four quarters of the mix add up to it
    for name in ("vocals", "drums", "bass", "other"):  # a quarter of the mix has the same SI-SDR as the mix
        assert split["per_stem"][name]["si_sdr"]["mean"] == pytest.approx(mixture["per_stem"][name]["si_sdr"]["mean"],
                                                                          abs=1e-3)
    assert "lm greedy against the floor *uniform split (mixture / S)* (Mel distance)" in claims
    written = json.loads((tmp_path / "results" / "separation.json").read_text())
    assert written["ceiling_tokenizer"] and written["metrics_version"] == METRICS_VERSION and written["machine"]
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
