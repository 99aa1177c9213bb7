"""Run configs: one YAML file says what to train, on which data, with which loop and GAN settings.

```yaml
kind: bandtok            # or: codec (model.tokenizer: rvq_codec | pyramid_codec), vocoder, lm,
                         # separator (model.separator: lm | mask; see train/separator.py)
model: {preset: small}   # preset + any field of the model's config dataclass
data: {corpus: data/chorales, clip_seconds: 2.0, valid_clips: 24}
gan: {start_step: 1000, adv_weight: 0.1, fm_weight: 1.0, loss: hinge}
train: {steps: 6000, batch_size: 8, lr: 3.0e-4, amp: bf16, out_dir: runs/bandtok-small}
```

A fine-tune names the checkpoint it starts from with a top-level ``init: NAME_OR_DIR`` (bandtok, codec,
vocoder, lm); its ``model:`` section may then be left out (see :mod:`musictok.train.finetune`). Sections
one kind reads: ``lm:`` (token LMs), ``losses:`` (vocoders), ``valid:`` (separators: the separation check),
``stage`` / ``init_from`` / ``duotok:`` (DuoTok).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..settings import build_checked, check_types, require
from .loop import TrainConfig

@dataclass
class DataConfig:
    """Where training audio comes from: one ``corpus``, or a weighted mixture of ``sources``
    (see :mod:`musictok.data.mixture`), with optional gain and EQ augmentation."""

    corpus: str = "data/chorales"
    clip_seconds: float = 2.0
    valid_clips: int = 24
    valid_seconds: float = 4.0
    valid_split: str = "valid"  # tiny corpora may have no piece in "valid"
    seed: int = 0
    sources: list = field(default_factory=list)  # [{path, weight, name?, stems?}]; empty: just `corpus`
    gain_db: list = field(default_factory=lambda: [0.0, 0.0])  # random gain per clip, uniform in dB
    eq_db: float = 0.0  # random shelf EQ per clip, ± dB
    level_dbfs: float | None = None  # normalise each clip to this RMS level (dBFS) before the random gain

    def __post_init__(self) -> None:
        for key in ("clip_seconds", "valid_seconds"):
            require(f"data.{key}", getattr(self, key), getattr(self, key) > 0, "> 0 seconds")
        require("data.valid_clips", self.valid_clips, self.valid_clips >= 1, ">= 1")
        self.source_specs  # validate now, so a bad source fails on load
        if (not isinstance(self.gain_db, (list, tuple)) or len(self.gain_db) != 2
                or not all(isinstance(g, (int, float)) for g in self.gain_db) or self.gain_db[0] > self.gain_db[1]):
            raise ValueError(f"data.gain_db must be [low, high] in dB, not {self.gain_db!r}")
        if not isinstance(self.eq_db, (int, float)) or not 0 <= self.eq_db <= 24:
            raise ValueError(f"data.eq_db must be a number in 0..24, not {self.eq_db!r}")
        if self.level_dbfs is not None and (not isinstance(self.level_dbfs, (int, float)) or not -60 <= self.level_dbfs <= 0):
            raise ValueError(f"data.level_dbfs must be a number in -60..0 dBFS, not {self.level_dbfs!r}")

    @property
    def source_specs(self):
        from ..data.mixture import SourceSpec

        if not isinstance(self.sources, list):
            raise ValueError(f"data.sources must be a list of {{path, weight}}, not {self.sources!r}")
        specs = []
        for s in self.sources:
            if not isinstance(s, dict):
                raise ValueError(f"data.sources: each source is a mapping {{path, weight}}, not {s!r}")
            specs.append(build_checked(SourceSpec, s, "data.sources"))
        return specs or [SourceSpec(self.corpus, name="")]

    @property
    def augment(self):
        from ..data.mixture import Augment

        return Augment(gain_db=(float(self.gain_db[0]), float(self.gain_db[1])), eq_db=float(self.eq_db),
                       level_dbfs=None if self.level_dbfs is None else float(self.level_dbfs))

    def train_clips(self, clip_seconds: float, sample_rate: int, length: int):
        """The training dataset: clips of the corpus, or of the mixture, augmented."""
        from ..data.mixture import MixtureClips

        return MixtureClips(self.source_specs, clip_seconds, sample_rate, length=length, seed=self.seed,
                            augment=self.augment)

    def valid_sets(self, seconds: float, sample_rate: int) -> dict:
        """``{source name: fixed validation clips}``; one corpus gives ``{"": clips}``."""
        from ..data.mixture import validation_sets

        return validation_sets(self.source_specs, self.valid_split, seconds, sample_rate, self.valid_clips)


def per_source(values: dict[str, dict[str, float]]) -> dict[str, float]:
    """Flatten ``{source: {metric: v}}`` into log keys: ``metric`` (mean over sources) and ``metric/source``."""
    if list(values) == [""]:
        return dict(values[""])
    out: dict[str, float] = {}
    for name, logs in values.items():
        for k, v in logs.items():
            out[f"{k}/{name}"] = v
    for k in next(iter(values.values())):
        out[k] = sum(logs[k] for logs in values.values()) / len(values)
    return out


@dataclass
class GanConfig:
    start_step: int = 0  # reconstruction losses only before this step
    loss: str = "hinge"  # "hinge" or "lsgan"
    reduction: str = "mean"  # sub-discriminators and feature layers: "mean", or "sum" (DAC, HiFi-GAN)
    adv_weight: float = 1.0
    fm_weight: float = 1.0
    lr: float | None = None  # discriminator learning rate (default: the generator's)
    channels: int = 32  # width of the discriminators
    mrd_spectrum: str = "magnitude"  # waveform GANs: the MRD sees log1p |STFT|, or "complex" (DAC: with phase)

    def __post_init__(self) -> None:
        if self.loss not in ("hinge", "lsgan"):
            raise ValueError(f"gan.loss must be hinge or lsgan, not {self.loss!r}")
        if self.reduction not in ("mean", "sum"):
            raise ValueError(f"gan.reduction must be mean or sum, not {self.reduction!r}")
        if self.mrd_spectrum not in ("magnitude", "complex"):
            raise ValueError(f"gan.mrd_spectrum must be magnitude or complex, not {self.mrd_spectrum!r}")
        for key in ("start_step", "adv_weight", "fm_weight"):
            require(f"gan.{key}", getattr(self, key), getattr(self, key) >= 0, ">= 0")
        require("gan.channels", self.channels, self.channels >= 1, ">= 1")
        if self.lr is not None:
            require("gan.lr", self.lr, self.lr > 0, "> 0 (or null)")


@dataclass
class RunConfig:
    kind: str
    model: dict = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    lm: dict = field(default_factory=dict)  # token LMs only: tokenizer, pattern, context (train/lm.py)
    losses: dict = field(default_factory=dict)  # loss weights the kind reads (vocoder: mel, phase)
    valid: dict = field(default_factory=dict)  # validation options the kind reads (separator: the separation check)
    source: str = ""  # the file it came from
    # DuoTok only (train/duotok.py): which of its four stages this run trains, the previous stage's export
    # it starts from, and the stage's options (loss weights, noise, views, freezing)
    stage: int | None = None
    init_from: str | None = None
    duotok: dict = field(default_factory=dict)
    init: str | None = None  # a fine-tune: the checkpoint (bundled name or folder) whose weights it starts from

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "model": self.model, "data": dataclasses.asdict(self.data),
             "gan": dataclasses.asdict(self.gan), "train": self.train.to_dict(), "lm": self.lm}
        if self.kind == "duotok":
            d |= {"stage": self.stage, "init_from": self.init_from, "duotok": self.duotok}
        if self.init is not None:
            d["init"] = self.init
        if self.losses:
            d["losses"] = self.losses
        if self.valid:
            d["valid"] = self.valid
        return d


def _section(cls, d: dict | None, name: str, path: str):
    if d is not None and not isinstance(d, dict):
        raise ValueError(f"{path}: {name}: must be a mapping of keys to values, got {d!r}")
    return build_checked(cls, d or {}, f"{path}: {name}")


def read_run_yaml(path: str | Path) -> dict:
    """The raw mapping of a run config file, its sections checked to be mappings (nothing else yet)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: config file not found")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{p}: expected a mapping at the top level")
    for section in ("model", "data", "gan", "train", "lm", "duotok", "losses", "valid"):
        if raw.get(section) is not None and not isinstance(raw[section], dict):
            raise ValueError(f"{p}: {section}: must be a mapping of keys to values, got {raw[section]!r}")
    return raw


def apply_overrides(raw: dict, overrides: dict | None) -> dict:
    """Set dotted keys (``{"train.steps": 10}``; a key without a dot is top-level, e.g. ``init_from``)."""
    for key, value in (overrides or {}).items():
        section, _, name = key.partition(".")
        if not name:  # a top-level key (DuoTok's stage, init_from; a fine-tune's init)
            raw[section] = value
            continue
        if raw.get(section) is None:
            raw[section] = {}
        raw[section][name] = value
    return raw


def load_run_config(path: str | Path, overrides: dict | None = None) -> RunConfig:
    """Read and validate a run config; ``overrides`` are dotted keys, e.g. ``{"train.steps": 10}``."""
    return parse_run_config(apply_overrides(read_run_yaml(path), overrides), str(path))


def parse_run_config(raw: dict, where: str) -> RunConfig:
    """Validate a raw run config mapping; ``where`` (its file, or the command that made it) starts every
    error message."""
    from .registry import RUN_KINDS  # the kinds are the registry's entries (it imports this module)

    p = where
    kind = raw.get("kind")
    if kind not in RUN_KINDS:
        raise ValueError(f"{p}: kind must be one of {', '.join(RUN_KINDS)}, got {kind!r}")
    staged = {"stage", "init_from", "duotok"}
    unknown = (set(raw) - {"kind", "model", "data", "gan", "train", "lm", "init", "losses", "valid"}
               - (staged if kind == "duotok" else set()))
    if unknown:
        raise ValueError(f"{p}: unknown sections {sorted(unknown)}")
    if raw.get("losses") and kind != "vocoder":
        raise ValueError(f"{p}: losses: only vocoder runs read this section (its mel and phase weights)")
    if raw.get("valid") and kind != "separator":
        raise ValueError(f"{p}: valid: only separator runs read this section (the separation check)")
    init = raw.get("init")
    if init is not None and (not isinstance(init, str) or not init):
        raise ValueError(f"{p}: init: must be a bundled model name or a model folder, got {init!r}")
    stage, init_from = raw.get("stage"), raw.get("init_from")
    if kind == "duotok":
        if stage not in (1, 2, 3, 4) or isinstance(stage, bool):
            raise ValueError(f"{p}: stage: a duotok run trains stage 1, 2, 3 or 4, got {stage!r}")
        if init_from is not None and not isinstance(init_from, str):
            raise ValueError(f"{p}: init_from: must be a folder (the previous stage's export), got {init_from!r}")
        if stage > 1 and not init_from:
            raise ValueError(f"{p}: init_from: stage {stage} starts from the export of stage {stage - 1} "
                             "(e.g. runs/duotok-small-stage1/export); none given")
    try:
        return RunConfig(kind=kind, model=dict(raw.get("model") or {}),
                         data=_section(DataConfig, raw.get("data"), "data", str(p)),
                         gan=_section(GanConfig, raw.get("gan"), "gan", str(p)),
                         train=_section(TrainConfig, raw.get("train"), "train", str(p)),
                         lm=dict(raw.get("lm") or {}), losses=dict(raw.get("losses") or {}),
                         valid=dict(raw.get("valid") or {}),
                         source=str(p), stage=stage, init_from=init_from,
                         duotok=dict(raw.get("duotok") or {}), init=init)
    except (TypeError, ValueError) as e:  # ranges checked in __post_init__ name the key, not the file
        raise ValueError(str(e) if str(e).startswith(str(p)) else f"{p}: {e}") from None


def build_model_config(config_class, model: dict):
    """``{"preset": "small", **fields}`` -> the model's config dataclass."""
    fields = dict(model)
    preset = fields.pop("preset", None)
    known = {f.name for f in dataclasses.fields(config_class)}
    if set(fields) - known:
        raise ValueError(f"unknown {config_class.__name__} keys {sorted(set(fields) - known)}; known: {sorted(known)}")
    check_types(config_class, fields, "model")
    if preset is None:
        return config_class(**fields)
    if preset not in ("tiny", "small", "base"):
        raise ValueError(f"model.preset must be tiny, small or base, not {preset!r}")
    return getattr(config_class, preset)(**fields)
