"""benchmarks/rvq_seed_study.py on four tiny DAC-style RVQ runs (with / without MMD × seeds 1, 2): every run
in the JSON, paired differences that are the per-run values' differences, the report written; and a
one-line error for a run folder it cannot use. scripts/rvq_seed_study.sh (with a stand-in for the trainer): the
seed reaches the model, and a run folder of another model seed is not resumed."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from musictok.audio import save
from musictok.tokenizers.rvq_codec import RVQCodec
from musictok.train.codec import codec_model_config

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
STEPS = 40


def _tones(seconds: float, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    wav = sum(0.05 * np.sin(2 * np.pi * f * t) for f in rng.uniform(110, 1760, 4))
    return torch.from_numpy((wav + 0.005 * rng.standard_normal(t.size)).astype(np.float32))


def _tiny_run(root: Path, seed: int, mmd_weight: float) -> Path:
    """rvq-dac-tiny, initialised (one k-means pass) and exported as the trainer exports, with a hand-written
    log.jsonl (training rows carry ``mmd``; two validation rows) and summary.json."""
    model_section = yaml.safe_load((ROOT / "configs" / "rvq-dac-tiny.yaml").read_text())["model"]
    model_section["mmd"] = dict(model_section["mmd"], weight=mmd_weight)
    model_section["seed"] = seed  # as scripts/rvq_seed_study.sh sets it: the variants of a seed start alike
    codec = "rvq-dac-mmd-tiny" if mmd_weight else "rvq-dac-tiny"
    run = root / f"{codec}-s{seed}"
    model = RVQCodec(codec_model_config(model_section)[1]).train()
    # fills the k-means buffer; on other clips per variant, so that they differ, as trained ones do
    model.forward_train(torch.stack([_tones(1.0, seed + s + (50 if mmd_weight else 0)) for s in range(2)]))
    model.eval().save_pretrained(run / "export", extra={"train_step": STEPS,
                                                        "run_config": {"train": {"seed": seed, "steps": STEPS}}})
    rows = []
    for step in range(10, STEPS + 1, 10):
        rows.append({"step": step, "time": 1.5 * step, "mel": 30.0, "mmd": 0.01 * step / (1 + mmd_weight) + 0.001 * seed})
        if step % 20 == 0:
            rows.append({"step": step, "valid/mel_distance": 3.0 - step / 100 - 0.1 * seed})
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "summary.json").write_text(json.dumps({"start_step": 0, "end_step": STEPS, "wall_seconds": 60.0 * seed}))
    return run


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("rvq_seed_study")


@pytest.fixture(scope="module")
def study(tiny_corpus, tmp_path_factory, bench):
    tmp = tmp_path_factory.mktemp("seeds")
    runs = [_tiny_run(tmp / "runs", seed, w) for seed in (1, 2) for w in (1.0, 0.0)]
    real = tmp / "real"
    save(real / "song.wav", _tones(2.5, 9).numpy(), SR)
    out = tmp / "results"
    result = bench.main(["--root", str(tmp / "runs"), "--corpus", str(tiny_corpus), "--split", "train",
                                 "--real", str(real), "--clips", "2", "--seconds", "1.0", "--resamples", "200",
                                 "--out", str(out)])
    return runs, out, result


def test_every_run_is_reported_with_its_variant_seed_and_budget(study):
    runs, out, result = study
    written = json.loads((out / "rvq-seeds.json").read_text())
    assert set(written["runs"]) == {r.name for r in runs}
    assert written["date"] and written["machine"] and written["metrics_version"]  # provenance() stamped
    for name, e in written["runs"].items():
        assert e["variant"] == ("with MMD" if "mmd" in name else "without MMD")
        assert e["seed"] == int(name[-1]) and e["budget"]["steps"] == STEPS
        assert e["budget"]["wall_minutes"] == pytest.approx(e["seed"]) and not e["budget"]["resumed"]
        for src in ("test split", "real music"):
            ent = e["sources"][src]
            assert set(ent["reconstruction"]) == {"tokens", "codebooks 1-1", "codebooks 1-2", "unquantised latent"}
            # the per-clip Mel distances are the clips evaluate_reconstruction averaged
            assert len(ent["mel_distance_per_clip"]) == ent["clips"] == 2
            assert np.mean(ent["mel_distance_per_clip"]) == pytest.approx(ent["reconstruction"]["tokens"]["mel_distance"],
                                                                         rel=1e-5)
            lo, hi = ent["mel_distance_ci"]
            assert lo <= np.mean(ent["mel_distance_per_clip"]) <= hi
            assert len(ent["tokens"]["per_stream"]["rvq"]["utilization_per_slot"]) == 4
            assert set(e["headline"][src]) >= {"Mel k=1", "Mel k=2", "Mel k=4", "SI-SDR k=4", "Mel unquantised",
                                                 "utilization", "MI - shuffled (bits)"}
        mmd = e["training"]["mmd"]  # hand-written log: steps 10…40, the last 10 % of 40 steps is step 40 alone
        assert mmd["steps"] == [10, 20, 30, 40] and mmd["last_10pct_mean"] == pytest.approx(mmd["last"])
        assert e["training"]["valid_mel_distance"]["steps"] == [20, 40]
    # the same clips for every run
    assert written["clips"]["test split"]["names"] and written["clips"]["real music"]["clips"] == 2


def test_paired_differences_are_the_per_run_differences(study):
    _, _, result = study
    runs, paired = result["runs"], result["paired"]
    assert set(paired["per_seed"]) == {"1", "2"} and paired["unpaired_seeds"] == []
    for s, p in paired["per_seed"].items():
        a, b = runs[p["with MMD"]], runs[p["without MMD"]]
        assert a["seed"] == b["seed"] == int(s)
        for group, row in p["difference"].items():
            for key, d in row.items():
                x, y = a["headline"][group][key], b["headline"][group][key]
                assert d == pytest.approx(x - y), (group, key)
        assert p["difference"]["test split"]["Mel k=4"] != 0  # the variants really differ: a sign would show
    for group, row in paired["mean_difference"].items():
        for key, d in row.items():
            assert d == pytest.approx(np.mean([p["difference"][group][key] for p in paired["per_seed"].values()]))
    for variant, v in result["variants"].items():
        assert len(v["runs"]) == 2 and v["seeds"] == [1, 2]
        m = v["mean"]["test split"]["Mel k=4"]
        assert m == pytest.approx(np.mean([runs[n]["headline"]["test split"]["Mel k=4"] for n in v["runs"]]))
    assert "no interval over seeds is meaningful" in paired["note"]


def test_markdown_and_plot_are_written(study):
    runs, out, _ = study
    md = (out / "rvq-seeds.md").read_text()
    assert all(r.name in md for r in runs) and "no interval over seeds is meaningful" in md
    assert "| test split | Mel k=4 |" in md and "## real music: tokens" in md
    table_rows = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert table_rows and not [ln for ln in table_rows if "," in ln]  # labels and cells without commas
    assert (out / "rvq-seeds-training.png").stat().st_size > 0


@pytest.mark.parametrize("breakage, message", [("no export", "no export/"), ("no log", "no log.jsonl"),
                                               ("no summary", "no summary.json"), ("unfinished", "stopped at step 20"),
                                               ("model seed", "built with model seed 0, the run's seed is 1")])
def test_an_unusable_run_folder_is_a_one_line_error(tmp_path, capsys, breakage, message, bench):
    run = tmp_path / "rvq-dac-small-s1"
    run.mkdir()
    if breakage != "no export":
        (run / "export").mkdir()
        (run / "export" / "config.json").write_text(json.dumps(
            {"tokenizer": "rvq_codec", "config": {"mmd": {"weight": 0.0}, "seed": 0 if breakage == "model seed" else 1},
             "train_step": 20,
             "run_config": {"train": {"seed": 1, "steps": 2000 if breakage == "unfinished" else 20}}}))
    if breakage != "no log":
        (run / "log.jsonl").write_text(json.dumps({"step": 20, "time": 3.0, "mmd": 0.1}) + "\n")
    if breakage != "no summary":
        (run / "summary.json").write_text(json.dumps({"start_step": 0, "end_step": 20, "wall_seconds": 3.0}))
    with pytest.raises(SystemExit) as exc:
        bench.main([str(run), "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_wall_minutes_of_a_resumed_run_add_the_earlier_sittings(bench):
    log = [{"step": 50, "time": 30.0}, {"step": 100, "time": 60.0}, {"step": 150, "time": 20.0},
           {"step": 200, "time": 40.0}, {"step": 250, "time": 10.0}]
    minutes, resumed = bench._wall_minutes({"start_step": 200, "end_step": 300, "wall_seconds": 120.0}, log)
    assert resumed and minutes == pytest.approx((60.0 + 40.0 + 120.0) / 60)
    assert not math.isnan(bench._wall_minutes({"start_step": 0, "wall_seconds": 60.0}, log)[0])


# ------------------------------------------------------------------------------------------------ the training script
def _script_tree(tmp_path: Path) -> tuple[Path, Path]:
    """The layout scripts/rvq_seed_study.sh runs in: the script, ``.venv/bin/python`` (this interpreter) and a
    ``.venv/bin/musictok`` stand-in that records its arguments instead of training."""
    import os
    import shutil
    import sys

    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "rvq_seed_study.sh", tmp_path / "scripts")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    calls = tmp_path / "calls.txt"
    for name, body in (("python", f'exec "{sys.executable}" "$@"'), ("musictok", f'echo "$@" >> "{calls}"')):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        os.chmod(bin_dir / name, 0o755)
    return tmp_path / "scripts" / "rvq_seed_study.sh", calls


def _run_script(script: Path):
    import subprocess

    return subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60)


def _partial_run(root: Path, name: str, model_seed: int) -> Path:
    run = root / "runs" / "seeds" / name
    (run / "export").mkdir(parents=True)
    (run / "checkpoint.pt").write_bytes(b"")
    (run / "export" / "config.json").write_text(json.dumps({"tokenizer": "rvq_codec", "config": {"seed": model_seed}}))
    return run


def test_the_script_seeds_the_model_the_trainer_and_the_data(tmp_path):
    script, calls = _script_tree(tmp_path)
    r = _run_script(script)
    assert r.returncode == 0, r.stderr
    lines = calls.read_text().splitlines()
    assert len(lines) == 4
    for line in lines:
        seed = re.search(r"--out runs/seeds/rvq-dac-(?:mmd-)?small-s(\d)", line).group(1)
        for key in ("model.seed", "train.seed", "data.seed"):
            assert f"--set {key}={seed} " in line, (key, line)


def test_the_script_refuses_to_resume_a_run_of_another_model_seed(tmp_path):
    script, calls = _script_tree(tmp_path)
    _partial_run(tmp_path, "rvq-dac-small-s1", model_seed=0)  # started before the script set model.seed
    r = _run_script(script)
    assert r.returncode == 1 and not calls.exists()  # nothing trained
    assert "model seed 0, not 1" in r.stderr and "rm -r runs/seeds/rvq-dac-small-s1" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_the_script_resumes_a_run_of_the_same_model_seed(tmp_path):
    script, calls = _script_tree(tmp_path)
    _partial_run(tmp_path, "rvq-dac-small-s1", model_seed=1)
    r = _run_script(script)
    assert r.returncode == 0, r.stderr
    first = calls.read_text().splitlines()[0]
    assert "runs/seeds/rvq-dac-small-s1" in first and first.endswith("--resume")


def test_model_seed_override_reaches_the_codec_weights():
    """``--set model.seed=N`` lands in the codec's config (RVQCodecConfig.seed), which its weights are drawn from."""
    from musictok.train.config import load_run_config

    for name in ("rvq-dac-small", "rvq-dac-mmd-small"):
        run = load_run_config(ROOT / "configs" / f"{name}.yaml", {"model.seed": 2})
        assert codec_model_config(run.model)[1].seed == 2
    tiny = {s: RVQCodec(codec_model_config(load_run_config(ROOT / "configs" / "rvq-dac-tiny.yaml",
                                                           {"model.seed": s}).model)[1]) for s in (1, 2)}
    a, b = (m.state_dict() for m in tiny.values())
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("encoder."))
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("quantizer."))
