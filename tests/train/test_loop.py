"""Trainers: a tiny run, killed and resumed, ends exactly where an uninterrupted run ends."""

import json

import torch

from musictok.metrics import METRICS_VERSION
from musictok.nn.vocoder import load_vocoder
from musictok.tokenizers.base import Tokenizer
from musictok.train.config import DataConfig, GanConfig, RunConfig
from musictok.train.loop import TrainConfig, Trainer
from musictok.train.tokenizer import BandTokTask
from musictok.train.vocoder import VocoderTask


def _run(corpus, out, steps, kind="bandtok", losses=None, **train):
    model = {"preset": "tiny", "sample_rate": 16000}
    if kind == "vocoder":
        model = {"preset": "tiny", "mel": {"sample_rate": 16000}}
    cfg = RunConfig(
        kind=kind, model=model,
        data=DataConfig(corpus=str(corpus), clip_seconds=0.512, valid_clips=2, valid_seconds=1.024, valid_split="train"),
        gan=GanConfig(start_step=2, adv_weight=0.1, channels=8),
        train=TrainConfig(out_dir=str(out), steps=steps, batch_size=2, lr=1e-3, warmup_steps=2, log_every=1,
                          ckpt_every=100, valid_every=100, **train), losses=losses or {})
    return cfg, (BandTokTask(cfg) if kind == "bandtok" else VocoderTask(cfg))


def _weights(path):
    return torch.load(path / "checkpoint.pt", weights_only=True)["modules"]


def test_resume_is_exact(tiny_corpus, tmp_path):
    cfg, task = _run(tiny_corpus, tmp_path / "straight", 5)
    Trainer(task, cfg.train).run()
    # the same run, stopped after 2 steps (max_minutes=0 stops after the first step that finishes) ...
    cfg2, task2 = _run(tiny_corpus, tmp_path / "split", 5, max_minutes=0.0)
    first = Trainer(task2, cfg2.train).run()
    assert first.stopped_early and first.end_step == 1
    # ... and resumed in a fresh process state
    cfg3, task3 = _run(tiny_corpus, tmp_path / "split", 5)
    second = Trainer(task3, cfg3.train).run(resume=True)
    assert second.start_step == 1 and second.end_step == 5
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "split")
    for module in a:
        for k in a[module]:
            assert torch.equal(a[module][k], b[module][k]), (module, k)
    steps = [json.loads(x)["step"] for x in (tmp_path / "split" / "log.jsonl").read_text().splitlines()
             if "loss" in json.loads(x)]
    assert steps == [1, 2, 3, 4, 5]  # no duplicated or missing log lines
    exported = Tokenizer.from_pretrained(tmp_path / "split" / "export")
    assert exported.config.sample_rate == 16000


def test_wall_time_budget_counts_every_invocation_and_ends_the_run_as_done(tiny_corpus, tmp_path):
    """``train.budget_minutes`` caps the run's wall time summed over resumes (the separators' equal compute);
    ``max_minutes`` caps one invocation only."""
    out = tmp_path / "run"
    cfg, task = _run(tiny_corpus, out, 5, max_minutes=0.0)
    first = Trainer(task, cfg.train).run()
    assert (first.stop_reason, first.end_step, first.stopped_early) == ("time", 1, True)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert 0 < state["elapsed_seconds"] <= first.elapsed_seconds  # (the summary also counts the last export)
    state["elapsed_seconds"] = 3600.0  # as if the first invocation had trained for an hour
    torch.save(state, out / "checkpoint.pt")
    cfg, task = _run(tiny_corpus, out, 5, budget_minutes=30.0)
    second = Trainer(task, cfg.train).run(resume=True)
    assert (second.stop_reason, second.end_step) == ("budget", 2)  # one step, then the budget is spent
    assert second.elapsed_seconds > 3600.0
    assert json.loads((out / "summary.json").read_text())["stop_reason"] == "budget"
    cfg, task = _run(tiny_corpus, tmp_path / "whole", 2, budget_minutes=30.0)
    assert Trainer(task, cfg.train).run().stop_reason == "steps"


def test_a_pause_by_sigtstp_is_left_out_of_the_run_time(tiny_corpus, tmp_path, monkeypatch):
    """``kill -TSTP PID`` stops the run like SIGSTOP, and the time until SIGCONT does not spend its budget."""
    import time

    from musictok.train import loop

    cfg, task = _run(tiny_corpus, tmp_path / "run", 1)
    trainer = Trainer(task, cfg.train)
    trainer._t0 = time.time()
    stops = []
    monkeypatch.setattr(loop.os, "kill", lambda pid, sig: (stops.append(sig), time.sleep(0.5)))  # "stopped" 0.5 s
    trainer._on_pause(loop.signal.SIGTSTP, None)
    assert stops == [loop.signal.SIGSTOP]
    assert trainer._paused >= 0.5 and trainer._running() < 0.1 and trainer._elapsed() < 0.1


def test_refuses_to_overwrite_a_run(tiny_corpus, tmp_path):
    cfg, task = _run(tiny_corpus, tmp_path / "r", 1)
    Trainer(task, cfg.train).run()
    cfg, task = _run(tiny_corpus, tmp_path / "r", 1)
    try:
        Trainer(task, cfg.train).run()
    except FileExistsError as e:
        assert "--resume" in str(e)
    else:
        raise AssertionError("a second run into the same folder must be refused")


def test_vocoder_task_trains_and_exports(tiny_corpus, tmp_path):
    cfg, task = _run(tiny_corpus, tmp_path / "voc", 3, kind="vocoder")
    summary = Trainer(task, cfg.train).run()
    assert summary.end_step == 3 and "mel_distance" in summary.last_valid
    for f in ("run.json", "summary.json"):  # the validation Mel distance's definition is named beside it
        assert json.loads((tmp_path / "voc" / f).read_text())["metrics_version"] == METRICS_VERSION
    voc = load_vocoder(tmp_path / "voc" / "export")
    out = voc(torch.zeros(1, 128, 10))
    assert out.shape == (1, 9 * 256)


def test_vocoder_phase_loss_is_logged_and_trained(tiny_corpus, tmp_path):
    """``losses.phase`` adds APNet's three phase terms in both phases of the run (Mel-only, then the GAN)."""
    cfg, task = _run(tiny_corpus, tmp_path / "voc", 3, kind="vocoder", losses={"phase": 10.0})
    Trainer(task, cfg.train).run()
    logs = [json.loads(x) for x in (tmp_path / "voc" / "log.jsonl").read_text().splitlines()]
    steps = [x for x in logs if "loss" in x]
    assert len(steps) == 3 and all(x["phase_ip"] > 0 and "phase_gd" in x and "phase_iaf" in x for x in steps)
    assert "adv" in steps[-1]  # the GAN phase (start_step 2) keeps the phase terms


def test_vocoder_losses_section_is_checked(tmp_path):
    import pytest

    from musictok.train.config import parse_run_config
    from musictok.train.vocoder import vocoder_loss_weights

    run = parse_run_config({"kind": "vocoder", "losses": {"phase": 100}}, "v.yaml")
    assert vocoder_loss_weights(run) == {"phase": 100.0}
    with pytest.raises(ValueError, match="v.yaml: losses: a vocoder run weighs"):
        vocoder_loss_weights(parse_run_config({"kind": "vocoder", "losses": {"stft": 1}}, "v.yaml"))
    with pytest.raises(ValueError, match="only vocoder runs"):
        parse_run_config({"kind": "bandtok", "losses": {"phase": 1}}, "b.yaml")


def test_resume_with_another_batch_size_is_refused(tiny_corpus, tmp_path):
    from musictok.train.loop import CheckpointError

    cfg, task = _run(tiny_corpus, tmp_path / "r", 1)
    Trainer(task, cfg.train).run()
    cfg, task = _run(tiny_corpus, tmp_path / "r", 2)
    cfg.train.batch_size = 3
    try:
        Trainer(task, cfg.train).run(resume=True)
    except CheckpointError as e:
        assert "batch_size=2" in str(e)
    else:
        raise AssertionError("resuming with another batch size must be refused")
