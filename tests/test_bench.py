"""`musictok bench --quick` end to end on tiny tokenizers of every family (the smoke test of the issue)."""

import json
import subprocess
import sys

import pytest
import torch

from musictok.bench import BenchConfig, natural_patterns, run_bench
from musictok.metrics import METRICS_VERSION
from musictok.tokenizers.bandtok import BandTok, BandTokConfig
from musictok.tokenizers.pyramid import PyramidCodec, PyramidCodecConfig
from musictok.tokenizers.rvq_codec import RVQCodec, RVQCodecConfig


def _save(model, path):
    model.train()
    model.forward_train(torch.randn(2, 16384) * 0.1)
    model.save_pretrained(path)
    return str(path)


def _real_folder(folder):
    """Stand-in for the held-out recordings: two short files of noise-like music in a plain folder."""
    import numpy as np

    from musictok.audio import save

    rng = np.random.default_rng(0)
    for k in range(2):
        t = np.arange(3 * 16000) / 16000
        x = 0.2 * np.sin(2 * np.pi * (200 + 100 * k) * t) + 0.02 * rng.standard_normal(t.size)
        save(folder / f"track{k}.ogg", x.astype(np.float32), 16000)
    return folder


def test_quick_bench_writes_table_plots_and_report(tiny_corpus, tmp_path):
    toks = [_save(BandTok(BandTokConfig.tiny(sample_rate=16000)), tmp_path / "band"),
            _save(RVQCodec(RVQCodecConfig.tiny()), tmp_path / "rvq"),
            _save(PyramidCodec(PyramidCodecConfig.tiny()), tmp_path / "pyr")]
    args = ["bench", "--quick", "--tokenizers", ",".join(toks), "--corpus", str(tiny_corpus), "--split", "train",
            "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), "--cache-dir", str(tmp_path / "cache"),
            "--name", "bench-test", "--no-baselines", "--real", str(_real_folder(tmp_path / "real"))]
    r = subprocess.run([sys.executable, "-c", "from musictok.cli import main; main()", *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    result = json.loads((tmp_path / "out" / "bench-test.json").read_text())
    assert result["metrics_version"] == METRICS_VERSION
    pairs = [(r["tokenizer"], r["pattern"]) for r in result["rows"]]
    assert pairs == [("band", "band-grid"), ("rvq", "flatten"), ("rvq", "parallel"), ("rvq", "delay"),
                     ("pyr", "coarse-to-fine")]
    for r in result["rows"]:
        v = r["values"]
        assert v["bpt"] > 0 and 0 < v["cnbpt"] < 2 and v["mel_distance"] > 0 and v["generation_tokens_per_second"] > 0
        assert 0 <= v["acc1"] <= v["acc5"] <= v["acc10"] <= 1  # Acc@k grows with k
        assert v["real_mel_distance"] > 0 and 0 < v["real_utilization"] <= 1  # the real-music columns
        assert 0 < v["real_cnbpt"] < 2 and v["real_cnbpt"] != v["cnbpt"]  # the same LMs on the real clips' tokens
        assert v["train_steps"] is None and v["train_minutes"] is None  # these folders record no training
    _real_cnbpt_is_the_test_splits_scoring(result, tmp_path / "real")
    out = tmp_path / "out"
    md = (out / "bench-test.md").read_text()
    assert "| real: cnBPT ↓ |" in md and "| tokenizer steps | tokenizer train min |" in md
    assert "| n/a | n/a |" in md and "the same LMs scored on their tokens" in md
    for suffix in (".md", ".json", ".html", "-tradeoff.png", "-loss-by-position.png", "-usage.png"):
        assert (out / f"bench-test{suffix}").is_file(), suffix
    page = (out / "bench-test.html").read_text()
    assert page.count("<audio") >= 1 + 3 + 5 and "data:image/png;base64," in page  # offline: all inline
    assert "http" not in page.replace("http-equiv", "")
    assert set(result["speed"]["rows"]) == {"band", "rvq", "pyr"}
    # a rerun (here through the Python API, same settings) reuses the trained LMs
    cfg = BenchConfig.quick(toks, corpus=str(tiny_corpus), out=str(tmp_path / "out"), work=str(tmp_path / "work"),
                            cache_dir=str(tmp_path / "cache"), name="bench-test", baselines=False, eval_split="train")
    again = run_bench(cfg, log=lambda s: None)
    assert [r["values"]["bpt"] for r in again["rows"]] == [r["values"]["bpt"] for r in result["rows"]]


def _real_cnbpt_is_the_test_splits_scoring(result: dict, real) -> None:
    """Each row's real cnBPT is evaluate.score_lm (the scoring of the test split's cnBPT) of its LM on the
    tokens of the real-music clips the bench reconstructs."""
    from musictok.evaluate import load_clips, score_lm
    from musictok.tokenizers.base import Tokenizer
    from musictok.train.lm import load_lm

    cfg = result["config"]
    for r in result["rows"]:
        tok = Tokenizer.from_pretrained(str(_folder_of(cfg, r["tokenizer"])))
        clips = load_clips(tok.sample_rate, audio_dir=real, seconds=cfg["eval_seconds"], max_clips=cfg["eval_clips"])
        lm = load_lm(result["extras"][f"{r['tokenizer']} / {r['pattern']}"]["lm"])
        scored = score_lm(lm, [tok.encode(w) for w in clips.audio], max_windows=cfg["lm_eval_windows"])
        assert r["values"]["real_cnbpt"] == pytest.approx(scored["lm"]["cnbpt"], rel=1e-5), r["pattern"]


def _folder_of(cfg: dict, short: str) -> str:
    """The saved folder of the bench row named ``short``."""
    return next(t for t in cfg["tokenizers"] if t.rstrip("/").endswith(f"/{short}"))


def test_training_budget_reads_the_export_and_its_runs_summary(tmp_path):
    """Steps from the export's config.json, minutes over every sitting from the run's summary.json; n/a (None)
    where the checkpoint records nothing, or where the summary is of another sitting than the export."""
    from musictok.bench import training_budget

    model = RVQCodec(RVQCodecConfig.tiny())
    run = tmp_path / "run"
    model.save_pretrained(run / "export", extra={"train_step": 300})
    assert training_budget(str(run / "export")) == {"train_steps": 300, "train_minutes": None}
    (run / "summary.json").write_text(json.dumps({"start_step": 200, "end_step": 300, "wall_seconds": 60.0,
                                                  "elapsed_seconds": 600.0}))
    assert training_budget(str(run / "export")) == {"train_steps": 300, "train_minutes": 10.0}
    (run / "summary.json").write_text(json.dumps({"start_step": 0, "end_step": 300, "wall_seconds": 120.0}))
    assert training_budget(str(run / "export")) == {"train_steps": 300, "train_minutes": 2.0}  # one sitting
    (run / "summary.json").write_text(json.dumps({"start_step": 0, "end_step": 250, "wall_seconds": 120.0}))
    assert training_budget(str(run / "export")) == {"train_steps": 300, "train_minutes": None}  # another sitting
    model.save_pretrained(tmp_path / "bare")
    assert training_budget(str(tmp_path / "bare")) == {"train_steps": None, "train_minutes": None}


def test_natural_patterns_follow_the_layout():
    assert [p for p, _, _ in natural_patterns(BandTok(BandTokConfig.tiny()).layout)] == ["band-grid"]
    assert [p for p, _, _ in natural_patterns(RVQCodec(RVQCodecConfig.tiny()).layout)] == ["flatten", "parallel", "delay"]
    assert [p for p, _, _ in natural_patterns(PyramidCodec(PyramidCodecConfig.tiny()).layout)] == ["coarse-to-fine"]


def test_bench_errors_are_one_line(tiny_corpus, tmp_path):
    r = subprocess.run([sys.executable, "-c", "from musictok.cli import main; main()", "bench", "--quick",
                        "--tokenizers", "no-such-tokenizer", "--corpus", str(tiny_corpus), "--out", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "no-such-tokenizer" in r.stderr + r.stdout and "Traceback" not in r.stderr


def test_probe_and_frechet_columns_behind_options(tiny_corpus, tmp_path):
    """`bench --probe --frechet` adds the probe's AP / AUC and the Fréchet distances (with intervals and the
    floor) to every row; the report shows them and can be rebuilt from the JSON alone."""
    from musictok.report import markdown_report, rebuild

    tok = _save(BandTok(BandTokConfig.tiny(sample_rate=16000)), tmp_path / "band")
    cfg = BenchConfig.quick([tok], corpus=str(tiny_corpus), out=str(tmp_path / "out"), work=str(tmp_path / "work"),
                            cache_dir=str(tmp_path / "cache"), name="opt", baselines=False, eval_split="train",
                            probe=True, frechet=True, speed_seconds=1.0)
    result = run_bench(cfg, log=lambda s: None)
    v = result["rows"][0]["values"]
    assert v["probe_auc_shuffled"] is not None and "probe_ap_ci" in v
    for key in ("fd_mel", "fd_tagger"):
        assert v[key] >= 0 and v[f"{key}_ci"][0] <= v[key] <= v[f"{key}_ci"][1] and v[f"{key}_recon"] >= 0
    floor = result["frechet_floor"]
    assert floor["mel_ci"][0] <= floor["mel"] <= floor["mel_ci"][1] and (tmp_path / "work" / "tagger").is_dir()
    md = (tmp_path / "out" / "opt.md").read_text()
    assert "gen.: Mel-stat. FD" in md and "probe ROC-AUC" in md and "Floor (the prompts' true continuations" in md
    assert (tmp_path / "out" / "opt-frechet.png").is_file()
    (tmp_path / "out" / "opt.md").unlink()
    rebuild(tmp_path / "out" / "opt.json")
    assert (tmp_path / "out" / "opt.md").read_text() == md
    plain = markdown_report(result | {"rows": [{**r, "values": {k: x for k, x in r["values"].items()
                                                                 if not k.startswith(("fd_", "probe"))}}
                                               for r in result["rows"]], "probe": None, "frechet_floor": None},
                            {"tradeoff": tmp_path / "x.png"})
    assert "probe" not in plain.split("\n")[8] and "FD" not in plain  # the default table keeps its shape


def test_a_held_constant_lm_run_is_reused_only_when_made_the_same_way(tmp_path):
    from types import SimpleNamespace

    from musictok.bench import _short, finished_lm_run, lm_run_record, record_lm_run
    from musictok.errors import MusictokError
    from musictok.tokens import Fingerprint

    fp = Fingerprint("bandtok", "c" * 64, "w" * 64)
    run = tmp_path / "lm-band-delay"
    (run / "export").mkdir(parents=True)
    expect = lm_run_record(400, 0, fp)
    assert finished_lm_run(run, expect) is None  # not finished: no record
    record_lm_run(run, expect, SimpleNamespace(end_step=400, wall_seconds=60.0, seconds_per_step=0.15))
    assert finished_lm_run(run, expect) == run / "export"
    assert finished_lm_run(run, lm_run_record(400, 1, fp)) is None  # another seed
    assert finished_lm_run(run, lm_run_record(800, 0, fp)) is None  # another budget
    retrained = Fingerprint("bandtok", "c" * 64, "x" * 64)  # a retrained folder of the same name
    assert finished_lm_run(run, lm_run_record(400, 0, retrained)) is None
    # a run stopped early (a signal, max_minutes) is neither recorded nor reused
    with pytest.raises(MusictokError, match="stopped at step 171 of 400"):
        record_lm_run(run, expect, SimpleNamespace(end_step=171, wall_seconds=60.0, seconds_per_step=0.15))
    (run / "done.json").write_text(json.dumps(expect | {"end_step": 171}))  # as the first version wrote it
    assert finished_lm_run(run, expect) is None
    assert _short("bandtok-small") == "bandtok-small" and _short("runs/duotok-small-stage4/export") == "duotok-small-stage4"
    assert _short("runs/x/export/") == "x" and _short("pretrained/rvq-dac-small") == "rvq-dac-small"
