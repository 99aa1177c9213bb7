"""benchmarks/mmd_calibration.py on a tiny DAC-style codec (rvq-dac-tiny, k-means initialised) and the tiny corpus:
both gradient norms, their ratio and the suggested weight written; a one-line error for an export it cannot use."""

import json
import math
from pathlib import Path

import pytest
import torch

from musictok.tokenizers.rvq_codec import RVQCodec
from musictok.train.codec import codec_model_config
from musictok.train.config import load_run_config

ROOT = Path(__file__).resolve().parents[1]


def _tones(seconds: float, seed: int, sr: int = 16000) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sr)) / sr
    return sum(0.05 * torch.sin(2 * math.pi * f * t) for f in 110 + 1650 * torch.rand(4, generator=g))


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("mmd_calibration")


def _export(tmp_path: Path, corpus: Path, *, run_config: bool = True) -> Path:
    """rvq-dac-tiny (MMD weight 1, pools of 2 batches of 2 clips), its k-means buffer filled, exported as the
    trainer exports it, with the run config of the tiny corpus."""
    run = load_run_config(ROOT / "configs" / "rvq-dac-tiny.yaml",
                          {"data.corpus": str(corpus), "data.valid_split": "train", "data.clip_seconds": 0.512})
    model = RVQCodec(codec_model_config(run.model)[1]).train()
    model.forward_train(torch.stack([_tones(1.0, s) for s in range(2)]))  # 126 >= 96 latents
    extra = {"train_step": 4} | ({"run_config": run.to_dict()} if run_config else {})
    model.eval().save_pretrained(tmp_path / "export", extra=extra)
    return tmp_path / "export"


def test_calibration_reports_both_gradients_and_the_weight_for_a_ratio(tiny_corpus, tmp_path, bench):
    export = _export(tmp_path, tiny_corpus)
    out = tmp_path / "results"
    result = bench.main(["--export", str(export), "--weight", "1000", "--fraction", "0.5", "--write",
                         "--out", str(out)])
    written = json.loads((out / "mmd-calibration.json").read_text())
    assert written == json.loads(json.dumps(result))
    assert written["date"] and written["metrics_version"] and written["train_step"] == 4
    s, m = written["settings"], written["measured"]
    assert (s["weight"], s["fraction"], s["pool_batches"], s["batch_size"]) == (1000.0, 0.5, 2, 2)
    assert s["streams"] == "lookup"
    assert set(m) == {"mel_loss", "mel_grad_norm", "mmd_statistic", "mmd_loss", "mmd_grad_norm", "ratio",
                      "suggested_weight"}
    assert math.isfinite(m["ratio"]) and m["ratio"] > 0 and m["mel_grad_norm"] > 0
    assert m["ratio"] == pytest.approx(m["mmd_grad_norm"] / m["mel_grad_norm"])
    assert m["mmd_loss"] == pytest.approx(1000 * m["mmd_statistic"])
    # the gradient norm is linear in the weight: the suggested weight gives the asked ratio
    assert m["suggested_weight"] == pytest.approx(1000 * 0.5 / m["ratio"])
    md = (out / "mmd-calibration.md").read_text()
    assert f"{m['ratio']:.3g}" in md and f"{m['suggested_weight']:.4g}" in md
    # the export's own weight (1) when none is given; same pool and seed: the same norms
    again = bench.main(["--export", str(export), "--fraction", "0.5"])
    assert again["settings"]["weight"] == 1.0
    assert again["measured"]["mel_grad_norm"] == pytest.approx(m["mel_grad_norm"], rel=1e-5)
    assert again["measured"]["suggested_weight"] == pytest.approx(m["suggested_weight"], rel=1e-5)


def test_an_export_without_a_run_config_is_a_one_line_error(tiny_corpus, tmp_path, capsys, bench):
    export = _export(tmp_path, tiny_corpus, run_config=False)
    with pytest.raises(SystemExit) as exc:
        bench.main(["--export", str(export), "--write", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "records no run config; name one with --config" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
