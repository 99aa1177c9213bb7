"""Constants and a helper shared by the separation tests."""

from __future__ import annotations

from pathlib import Path

from musictok.train.config import load_run_config
from musictok.train.loop import Trainer
from musictok.train.separator import SeparatorTask

SR = 16000
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def train_tiny(config: str, corpus: Path, out: Path, **model) -> Path:
    overrides = {"data.corpus": str(corpus), "data.valid_split": "train", "train.out_dir": str(out)}
    overrides |= {f"model.{k}": v for k, v in model.items()}
    run = load_run_config(CONFIGS / config, overrides)
    summary = Trainer(SeparatorTask(run), run.train).run()
    assert summary.end_step == run.train.steps
    return out / "export"
