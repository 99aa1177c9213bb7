"""The separator trainer: validation that separates (scored against the mixture-as-estimate floor), exact
resume with it, the ``valid:`` section, and the bundled small configs (they build, and the two contenders
share one budget). Behaviour only: nothing here is timed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from musictok.metrics.reconstruction import mel_distance
from musictok.metrics.separation import per_stem
from musictok.separation import Separator
from musictok.train.config import load_run_config
from musictok.train.loop import DistInfo, Trainer
from musictok.train.separator import SeparatorTask, build_separator

from sep_helpers import CONFIGS, SR


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def _tiny_run(kind: str, corpus: Path, out: Path, tokenizer: Path, **overrides):
    model = {"model.tokenizer": str(tokenizer)} if kind == "lm" else {"model.sample_rate": SR}
    return load_run_config(CONFIGS / f"sep-{kind}-tiny.yaml", {
        "data.corpus": str(corpus), "data.valid_split": "train", "train.out_dir": str(out)} | model | overrides)


@pytest.mark.parametrize("kind", ["lm", "mask"])
def test_validation_separates_and_scores_against_the_mixture_floor(kind, tiny_separators, tiny_corpus, tiny_tokenizer):
    """The logged check is what inference gives: the export (the weights of the last validation) separating the
    first validation clips greedily, Mel distance per stem to the true stems and to the mix as estimate."""
    export = tiny_separators[kind]
    last = [r for r in _rows(export.parent) if "valid/sep_mel" in r][-1]
    assert last["step"] == 3 and last["valid/sep_seconds"] > 0
    assert ("valid/bits_per_token" in last) == (kind == "lm") and ("valid/si_sdr" in last) == (kind == "mask")
    run = _tiny_run(kind, tiny_corpus, export.parent / "unused", tiny_tokenizer)
    task = SeparatorTask(run)
    task.setup(torch.device("cpu"), DistInfo(), run.train)  # only for its validation clips
    mix, stems = task._stems(task._batch(range(2)))
    sep = Separator.from_pretrained(export)
    est = sep.separate(mix, **({"temperature": 0.0} if kind == "lm" else {}))
    ours = per_stem(mel_distance, stems, est, sample_rate=SR)
    floor = per_stem(mel_distance, stems, mix[:, None].expand_as(stems), sample_rate=SR)
    for s, name in enumerate(sep.stem_names):
        assert last[f"valid/sep_mel/{name}"] == pytest.approx(float(ours[:, s].mean()), rel=1e-4, abs=1e-5)
        assert last[f"valid/mix_mel/{name}"] == pytest.approx(float(floor[:, s].mean()), rel=1e-5, abs=1e-6)
    assert last["valid/sep_mel"] == pytest.approx(float(ours.mean()), rel=1e-4, abs=1e-5)
    assert last["valid/mix_mel"] == pytest.approx(float(floor.mean()), rel=1e-5, abs=1e-6)
    split = per_stem(mel_distance, stems, mix[:, None].expand_as(stems) / 4, sample_rate=SR)
    assert last["valid/split_mel"] == pytest.approx(float(split.mean()), rel=1e-5, abs=1e-6)
    assert last["valid/mix_mel/vocals"] != last["valid/mix_mel/bass"]  # a floor per stem, not one number


def test_the_check_follows_the_valid_section(tiny_corpus, tiny_tokenizer, tmp_path):
    run = _tiny_run("mask", tiny_corpus, tmp_path / "off", tiny_tokenizer, **{"valid.separate_clips": 0,
                                                                              "train.steps": 1})
    summary = Trainer(SeparatorTask(run), run.train).run()
    assert "si_sdr" in summary.last_valid and not any(k.startswith(("sep_", "mix_")) for k in summary.last_valid)
    run = _tiny_run("mask", tiny_corpus, tmp_path / "one", tiny_tokenizer, **{"valid.separate_clips": 1,
                                                                              "train.steps": 1})
    assert "sep_mel/drums" in Trainer(SeparatorTask(run), run.train).run().last_valid
    for bad, message in (({"valid.separate_clips": -1}, "valid.separate_clips: must be >= 0"),
                         ({"valid.separate_clips": 1.5}, "valid.separate_clips: must be"),
                         ({"valid.clips": 2}, "unknown valid keys ['clips']")):
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            SeparatorTask(_tiny_run("mask", tiny_corpus, tmp_path / "bad", tiny_tokenizer, **bad))
    with pytest.raises(ValueError, match="valid: only separator runs"):
        load_run_config(CONFIGS / "vocoder-tiny.yaml", {"valid.separate_clips": 2})


@pytest.mark.parametrize("kind,amp", [("lm", "bf16"), ("mask", "none")])
def test_resume_is_exact_with_the_check_in_between(kind, amp, tiny_corpus, tiny_tokenizer, tmp_path):
    """A run stopped after step 1 and resumed ends with the weights and the validation of a straight run; the
    checks at steps 2 and 4 (greedy separation between training steps) leave the random stream alone."""
    def train(out: Path, resume: bool = False, **extra):
        run = _tiny_run(kind, tiny_corpus, out, tiny_tokenizer, **{
            "train.steps": 4, "train.valid_every": 2, "train.ckpt_every": 100, "train.amp": amp} | extra)
        return Trainer(SeparatorTask(run), run.train).run(resume=resume)

    train(tmp_path / "straight")
    assert train(tmp_path / "split", **{"train.max_minutes": 0.0}).end_step == 1
    assert train(tmp_path / "split", resume=True).end_step == 4
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["modules"]["model"]
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)["modules"]["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    valid = {d: {r["step"]: r for r in _rows(tmp_path / d) if "valid/sep_mel" in r} for d in ("straight", "split")}
    assert sorted(valid["straight"]) == sorted(valid["split"]) == [2, 4]
    for step in (2, 4):
        drop = {"valid/sep_seconds"}  # wall time
        assert ({k: v for k, v in valid["straight"][step].items() if k not in drop}
                == {k: v for k, v in valid["split"][step].items() if k not in drop})


def _header(path: Path) -> str:
    return "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))


def test_small_configs_build_and_share_one_budget():
    """sep-lm-small and sep-mask-small: the same clips, batch and wall-time cap (the issue's "same data and
    compute"); each header states its budget; the LM's window fits its LM, and it carries sampling settings
    for the benchmark's sampled row."""
    runs = {kind: load_run_config(CONFIGS / f"sep-{kind}-small.yaml") for kind in ("lm", "mask")}
    for run in runs.values():
        SeparatorTask(run)  # model and valid sections checked
    lm, mask = runs["lm"], runs["mask"]
    assert lm.data == mask.data
    same = ("batch_size", "seed", "amp", "valid_every")
    assert [getattr(lm.train, k) for k in same] == [getattr(mask.train, k) for k in same]
    assert lm.train.budget_minutes is not None and lm.train.budget_minutes == mask.train.budget_minutes
    for kind, run in runs.items():
        header = _header(CONFIGS / f"sep-{kind}-small.yaml")
        assert "Budget:" in header and f"{run.train.steps:,} steps" in header, kind
        assert run.train.valid_every <= run.train.steps and run.train.warmup_steps < run.train.steps
        assert run.valid.get("separate_clips", 2) >= 1
    sep = build_separator(lm.model)
    assert sep.sequence_steps(sep.window_frames) <= sep.lm.config.max_steps
    assert sep.config.temperature > 0 and sep.config.top_k
