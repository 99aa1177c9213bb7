"""Run configs: one YAML file says what to train, on which data, with which loop and GAN settings.

```yaml
kind: bandtok            # or: codec (model.tokenizer: rvq_codec | pyramid_codec), vocoder, lm
model: {preset: small}   # preset + any field of the model's config dataclass
data: {corpus: data/chorales, clip_seconds: 2.0, valid_clips: 24}
gan: {start_step: 1000, adv_weight: 0.1, fm_weight: 1.0, loss: hinge}
train: {steps: 6000, batch_size: 8, lr: 3.0e-4, amp: bf16, out_dir: runs/bandtok-small}
```
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..settings import build_checked
from .loop import TrainConfig

KINDS = ("bandtok", "codec", "vocoder", "lm")


@dataclass
class DataConfig:
    corpus: str = "data/chorales"
    clip_seconds: float = 2.0
    valid_clips: int = 24
    valid_seconds: float = 4.0
    valid_split: str = "valid"  # tiny corpora may have no piece in "valid"
    seed: int = 0


@dataclass
class GanConfig:
    start_step: int = 0  # reconstruction losses only before this step
    loss: str = "hinge"  # "hinge" or "lsgan"
    adv_weight: float = 1.0
    fm_weight: float = 1.0
    lr: float | None = None  # discriminator learning rate (default: the generator's)
    channels: int = 32  # width of the discriminators

    def __post_init__(self) -> None:
        if self.loss not in ("hinge", "lsgan"):
            raise ValueError(f"gan.loss must be hinge or lsgan, not {self.loss!r}")


@dataclass
class RunConfig:
    kind: str
    model: dict = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    lm: dict = field(default_factory=dict)  # token LMs only: tokenizer, pattern, context (train/lm.py)
    source: str = ""  # the file it came from

    def to_dict(self) -> dict:
        return {"kind": self.kind, "model": self.model, "data": dataclasses.asdict(self.data),
                "gan": dataclasses.asdict(self.gan), "train": self.train.to_dict(), "lm": self.lm}


def _section(cls, d: dict | None, name: str, path: str):
    return build_checked(cls, d or {}, f"{path}: {name}")


def load_run_config(path: str | Path, overrides: dict | None = None) -> RunConfig:
    """Read and validate a run config; ``overrides`` are dotted keys, e.g. ``{"train.steps": 10}``."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: config file not found")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{p}: expected a mapping at the top level")
    for key, value in (overrides or {}).items():
        section, _, name = key.partition(".")
        raw.setdefault(section, {})[name] = value
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{p}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    unknown = set(raw) - {"kind", "model", "data", "gan", "train", "lm"}
    if unknown:
        raise ValueError(f"{p}: unknown sections {sorted(unknown)}")
    try:
        return RunConfig(kind=kind, model=dict(raw.get("model") or {}),
                         data=_section(DataConfig, raw.get("data"), "data", str(p)),
                         gan=_section(GanConfig, raw.get("gan"), "gan", str(p)),
                         train=_section(TrainConfig, raw.get("train"), "train", str(p)),
                         lm=dict(raw.get("lm") or {}), source=str(p))
    except TypeError as e:
        raise ValueError(f"{p}: {e}") from None


def build_model_config(config_class, model: dict):
    """``{"preset": "small", **fields}`` -> the model's config dataclass."""
    fields = dict(model)
    preset = fields.pop("preset", None)
    known = {f.name for f in dataclasses.fields(config_class)}
    if set(fields) - known:
        raise ValueError(f"unknown {config_class.__name__} keys {sorted(set(fields) - known)}; known: {sorted(known)}")
    if preset is None:
        return config_class(**fields)
    if preset not in ("tiny", "small", "base"):
        raise ValueError(f"model.preset must be tiny, small or base, not {preset!r}")
    return getattr(config_class, preset)(**fields)
