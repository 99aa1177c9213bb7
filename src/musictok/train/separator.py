"""Training separators (``kind: separator``): the LM separator or the mask baseline, on exact stems.

```yaml
kind: separator
model: {separator: lm, preset: small, tokenizer: bandtok-small, stems: [vocals, drums, bass, other]}
data: {corpus: data/chorales, clip_seconds: 4.0, valid_clips: 16, valid_seconds: 4.0}
train: {steps: 4000, batch_size: 8, lr: 5.0e-4, out_dir: runs/sep-lm-small}
```

Clips come from :class:`~musictok.data.datasets.StemClips` of the stem group the separator's stems name
(``musdb`` for vocals / drums / bass / other, ``duo`` for lead / accompaniment), reordered to the
separator's order; the mix of every clip is exactly the sum of its stems. Clips are a pure function of
their index, so ``--resume`` is exact. Validation: the LM's teacher-forced bits per token, or the mask
model's per-stem SI-SDR, on a fixed grid of clips.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.datasets import StemClips
from ..metrics.reconstruction import si_sdr
from ..separation.base import SEPARATORS, Separator, _load_builtin_separators, stem_group
from ..settings import check_types
from .config import RunConfig
from .loop import DistInfo, TrainConfig, TrainTask, unwrap, wrap_ddp


def separator_config(model: dict):
    """``{"separator": "lm" | "mask", "preset": ..., **fields}`` -> ``(class, config)``, checked."""
    _load_builtin_separators()
    fields = dict(model)
    kind = fields.pop("separator", None)
    if kind not in SEPARATORS:
        raise ValueError(f"model.separator must be one of {', '.join(sorted(SEPARATORS))}, got {kind!r}")
    klass = SEPARATORS[kind]
    preset = fields.pop("preset", "small")
    if preset not in ("tiny", "small", "base"):
        raise ValueError(f"model.preset must be tiny, small or base, not {preset!r}")
    known = {f.name for f in dataclasses.fields(klass.config_class)}
    if set(fields) - known:
        raise ValueError(f"unknown {kind} separator keys {sorted(set(fields) - known)}; known: {sorted(known)}")
    check_types(klass.config_class, fields, "model")
    config = getattr(klass.config_class, preset)(**fields)
    stem_group(config.stems)  # the stems must be one corpus group, in any order
    return klass, config


def build_separator(model: dict, map_location: str | torch.device = "cpu") -> Separator:
    """A fresh separator for the ``model`` section; an LM separator loads its (frozen) tokenizer."""
    klass, config = separator_config(model)
    if klass.name == "lm":
        from ..tokenizers.base import Tokenizer

        tokenizer = Tokenizer.from_pretrained(config.tokenizer, map_location=map_location)
        config = dataclasses.replace(config, sample_rate=tokenizer.sample_rate)
        return klass(config, tokenizer)
    return klass(config)


def _whole_units(seconds: float, model: Separator) -> float:
    """A clip length rounded to whole units of the separator (no padding inside training clips)."""
    hop = model.hop_samples
    return max(round(seconds * model.sample_rate / hop), 1) * hop / model.sample_rate


class SeparatorTask(TrainTask):
    def __init__(self, run: RunConfig):
        self.run = run
        separator_config(run.model)  # fail on a bad model section before any data is touched
        if run.data.sources:
            raise ValueError("data.sources: separators train on one rendered corpus with stems (data.corpus)")

    def setup(self, device: torch.device, dist_info: DistInfo, cfg: TrainConfig) -> None:
        self.device, self.cfg = device, cfg
        self.model = build_separator(self.run.model).to(device)
        self.model_ddp = wrap_ddp(self.model, dist_info, device)
        # matrices and tables decay; norms, biases and the TokenLM's per-column gains do not (its optimizer_groups)
        params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        decay = [p for n, p in params if p.ndim >= 2 and not n.endswith("_gain")]
        no_decay = [p for n, p in params if p.ndim < 2 or n.endswith("_gain")]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                      {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=cfg.betas)
        d = self.run.data
        self.group = stem_group(self.model.stem_names)
        self.clip_seconds = _whole_units(d.clip_seconds, self.model)
        window = getattr(self.model, "window_frames", None)
        if window is not None and round(self.clip_seconds * self.model.sample_rate / self.model.hop_samples) > window:
            raise ValueError(f"data.clip_seconds {d.clip_seconds:g} is longer than the LM separator's window "
                             f"({self.model.config.window_seconds:g} s); shorten the clips or lengthen the window")
        valid_seconds = _whole_units(d.valid_seconds, self.model)
        if window is not None:  # the LM scores whole windows at most
            valid_seconds = min(valid_seconds, window * self.model.hop_samples / self.model.sample_rate)
        self.valid = StemClips(d.corpus, d.valid_split, valid_seconds, self.model.sample_rate, group=self.group,
                               random=False, max_clips=d.valid_clips)
        self.order = [self.valid.stem_names.index(n) for n in self.model.stem_names]

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"separator": self.opt}

    def train_dataset(self, length: int):
        d = self.run.data
        return StemClips(d.corpus, "train", self.clip_seconds, self.model.sample_rate, group=self.group,
                         random=True, length=length, seed=d.seed)

    def _stems(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return batch["mix"].to(self.device), batch["stems"][:, self.order].to(self.device)

    def train_step(self, batch: dict, step: int, autocast: Any) -> dict[str, float]:
        self.model.train()
        mix, stems = self._stems(batch)
        with autocast():
            losses = self.model_ddp(mix, stems)
        self.opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        grad = float(nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad],
                                              self.cfg.grad_clip))
        self.opt.step()
        return {k: float(v.detach()) for k, v in losses.items()} | {"grad_norm": grad}

    @torch.no_grad()
    def validate(self, autocast: Any) -> dict[str, float]:
        model = unwrap(self.model)
        model.eval()
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for i in range(0, len(self.valid), 4):
            items = [self.valid[j] for j in range(i, min(i + 4, len(self.valid)))]
            batch = {"mix": torch.stack([it["mix"] for it in items]), "stems": torch.stack([it["stems"] for it in items])}
            mix, stems = self._stems(batch)
            if model.name == "lm":
                with autocast():
                    values = {k: float(v) for k, v in model(mix, stems).items()}
                values = {k: v for k, v in values.items() if k != "loss"}
            else:
                est = model.separate(mix)
                scores = si_sdr(stems.reshape(-1, stems.shape[-1]), est.reshape(-1, est.shape[-1]))
                scores = scores.reshape(stems.shape[:2])
                values = {}
                for s, name in enumerate(model.stem_names):
                    ok = torch.isfinite(scores[:, s])
                    if ok.any():
                        values[f"si_sdr/{name}"] = float(scores[ok, s].mean())
            for k, v in values.items():
                if math.isfinite(v):
                    sums[k] = sums.get(k, 0.0) + v
                    counts[k] = counts.get(k, 0) + 1
        model.train()
        out = {k: sums[k] / counts[k] for k in sums}
        per = [v for k, v in out.items() if k.startswith("si_sdr/")]
        if per:
            out["si_sdr"] = sum(per) / len(per)
        return out

    def export(self, out_dir: Path, step: int) -> None:
        unwrap(self.model).save_pretrained(out_dir, extra={"train_step": step, "run_config": self.run.to_dict()})
