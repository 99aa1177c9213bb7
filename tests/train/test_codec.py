"""Training the waveform codecs: tiny runs with the GAN phase and the MMD term, exact resume, export."""

import json

import pytest
import torch

from musictok.tokenizers.base import Tokenizer
from musictok.train.codec import CodecTask, codec_model_config
from musictok.train.config import DataConfig, GanConfig, RunConfig
from musictok.train.loop import TrainConfig, Trainer


def _run(corpus, out, steps, tokenizer="rvq_codec", **train):
    model = {"tokenizer": tokenizer, "preset": "tiny", "mmd": {"weight": 1.0, "pool_batches": 2}}
    cfg = RunConfig(
        kind="codec", model=model,
        data=DataConfig(corpus=str(corpus), clip_seconds=0.512, valid_clips=2, valid_seconds=1.024, valid_split="train"),
        gan=GanConfig(start_step=2, adv_weight=0.1, channels=8),
        train=TrainConfig(out_dir=str(out), steps=steps, batch_size=2, lr=1e-3, warmup_steps=2, log_every=1,
                          ckpt_every=100, valid_every=100, **train))
    return cfg, CodecTask(cfg)


@pytest.mark.parametrize("tokenizer", ["rvq_codec", "pyramid_codec"])
def test_codec_trains_with_gan_and_exports(tiny_corpus, tmp_path, tokenizer):
    cfg, task = _run(tiny_corpus, tmp_path / tokenizer, 3, tokenizer)
    summary = Trainer(task, cfg.train).run()
    assert summary.end_step == 3
    assert {"mel_distance", "utilization", "mmd"} <= set(summary.last_valid)
    if tokenizer == "pyramid_codec":
        assert {"mel_distance_levels_1_1", "mel_distance_levels_1_2"} <= set(summary.last_valid)
    model = Tokenizer.from_pretrained(tmp_path / tokenizer / "export")
    assert model.name == tokenizer
    wav = torch.randn(16000) * 0.1
    assert model.decode(model.encode(wav)).shape == (1, 16000)


def test_codec_resume_is_exact(tiny_corpus, tmp_path):
    cfg, task = _run(tiny_corpus, tmp_path / "straight", 4)
    Trainer(task, cfg.train).run()
    cfg2, task2 = _run(tiny_corpus, tmp_path / "split", 4, max_minutes=0.0)
    assert Trainer(task2, cfg2.train).run().end_step == 1
    cfg3, task3 = _run(tiny_corpus, tmp_path / "split", 4)
    Trainer(task3, cfg3.train).run(resume=True)
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["modules"]
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)["modules"]
    for module in a:
        for k in a[module]:
            assert torch.equal(a[module][k], b[module][k]), (module, k)


def test_model_section_is_checked():
    with pytest.raises(ValueError, match="model.tokenizer"):
        codec_model_config({"tokenizer": "nope"})
    with pytest.raises(ValueError, match="unknown"):
        codec_model_config({"tokenizer": "rvq_codec", "preset": "tiny", "bogus": 1})


def test_dac_tiny_config_trains_with_dacs_gan_and_exports(tiny_corpus, tmp_path):
    """configs/rvq-dac-tiny.yaml end to end: buffered k-means on step 2, LSGAN with summed losses from step 2,
    validation, export and reload."""
    from pathlib import Path

    from musictok.train.config import load_run_config

    config = Path(__file__).resolve().parents[2] / "configs" / "rvq-dac-tiny.yaml"
    cfg = load_run_config(config, {"data.corpus": str(tiny_corpus), "data.valid_split": "train",
                                   "data.clip_seconds": 0.512, "train.steps": 3, "train.valid_every": 3,
                                   "train.out_dir": str(tmp_path / "dac")})
    gan = cfg.gan
    assert (gan.loss, gan.reduction, gan.adv_weight, gan.fm_weight, gan.mrd_spectrum) == ("lsgan", "sum", 1.0, 2.0,
                                                                                          "complex")
    task = CodecTask(cfg)
    summary = Trainer(task, cfg.train).run()
    assert task.mrd.discriminators[0].convs[0].in_channels == 2  # real and imaginary parts
    assert summary.end_step == 3 and {"mel_distance", "utilization", "mmd"} <= set(summary.last_valid)
    rows = [json.loads(line) for line in (tmp_path / "dac" / "log.jsonl").read_text().splitlines()]
    steps = {row["step"]: row for row in rows if "loss" in row}
    assert steps[1]["utilization"] == 0.0 and steps[2]["utilization"] > 0  # pass-through, then k-means
    assert "adv" not in steps[2] and {"adv", "fm", "disc"} <= set(steps[3])
    model = Tokenizer.from_pretrained(tmp_path / "dac" / "export")
    assert all(bool(layer.initted) for layer in model.quantizer.layers)
    assert not any("kmeans_gathered" in k for k in model.state_dict())
    wav = torch.randn(16000) * 0.1
    assert model.decode(model.encode(wav)).shape == (1, 16000)


def test_gan_reduction_is_checked():
    with pytest.raises(ValueError, match="gan.reduction"):
        GanConfig(reduction="max")


def test_dac_mmd_config_differs_from_its_baseline_only_by_the_mmd_term():
    from pathlib import Path

    from musictok.train.config import load_run_config

    configs = Path(__file__).resolve().parents[2] / "configs"
    base, mmd = (load_run_config(configs / f"{name}.yaml").to_dict() for name in ("rvq-dac-small", "rvq-dac-mmd-small"))
    assert mmd["model"].pop("mmd") == {"weight": 30.0, "streams": "lookup", "delay": True, "pool_batches": 32}
    assert base["model"].pop("mmd")["weight"] == 0.0
    assert mmd["train"].pop("out_dir") == "runs/rvq-dac-mmd-small" and base["train"].pop("out_dir")
    assert base == mmd
    codec_model_config(load_run_config(configs / "rvq-dac-mmd-small.yaml").model)  # a valid model section


def test_log_carries_the_mmd_statistic_and_its_weighted_term_from_the_first_initialised_pool(tiny_corpus, tmp_path):
    """rvq-dac-tiny with 192 latents to gather (64 per step): the codebooks are set on step 3, so the pool of steps
    1–2 is skipped and the first statistic is the pool of steps 3–4. The log keeps the statistic as ``mmd`` (what
    benchmarks/rvq_seed_study.py reads) and the weighted term as ``mmd_loss``."""
    from pathlib import Path

    from musictok.train.config import load_run_config

    config = Path(__file__).resolve().parents[2] / "configs" / "rvq-dac-tiny.yaml"
    cfg = load_run_config(config, {"data.corpus": str(tiny_corpus), "data.valid_split": "train",
                                   "data.clip_seconds": 0.512, "train.steps": 4, "train.valid_every": 100,
                                   "train.ckpt_every": 100, "train.out_dir": str(tmp_path / "dac"),
                                   "gan.start_step": 100, "model.kmeans_vectors": 192,
                                   "model.mmd": {"weight": 3.0, "pool_batches": 2, "streams": "lookup"}})
    Trainer(CodecTask(cfg), cfg.train).run()
    rows = {r["step"]: r for r in map(json.loads, (tmp_path / "dac" / "log.jsonl").read_text().splitlines())
            if "loss" in r}
    assert [rows[s]["utilization"] > 0 for s in (1, 2, 3, 4)] == [False, False, True, True]
    assert not {"mmd", "mmd_loss"} & (set(rows[1]) | set(rows[2]) | set(rows[3]))
    assert rows[4]["mmd_loss"] == pytest.approx(3.0 * rows[4]["mmd"]) and rows[4]["mmd"] != 0
