"""Training separators (``kind: separator``): the LM separator or the mask baseline, on exact stems.

```yaml
kind: separator
model: {separator: lm, preset: small, tokenizer: bandtok-small, stems: [vocals, drums, bass, other]}
data: {corpus: data/chorales, clip_seconds: 4.0, valid_clips: 16, valid_seconds: 4.0}
train: {steps: 1250, batch_size: 8, lr: 5.0e-4, out_dir: runs/sep-lm-small}
valid: {separate_clips: 2}  # the separation check (default 2; 0: off)
```

Clips come from :class:`~musictok.data.datasets.StemClips` of the stem group the separator's stems name
(``musdb`` for vocals / drums / bass / other, ``duo`` for lead / accompaniment), reordered to the
separator's order; the mix of every clip is exactly the sum of its stems. Clips are a pure function of
their index, so ``--resume`` is exact. Validation: the LM's teacher-forced bits per token, or the mask
model's per-stem SI-SDR, on a fixed grid of clips; and, for both, the **separation check** of the run's
``valid:`` section (:class:`SeparationCheck`): the first clips of that grid separated as at inference (the LM
greedily, with the KV cache, decoded by its tokenizer) and scored by Mel distance against the true stems
and against the mixture-as-estimate floor, so a log shows what the model writes, not only what it predicts
under teacher forcing.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..data.datasets import StemClips
from ..metrics.reconstruction import mel_distance, si_sdr
from ..metrics.separation import per_stem
from ..separation.base import SEPARATORS, Separator, _load_builtin_separators, stem_group
from ..settings import build_checked, check_types, require
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


@dataclass
class SeparationCheck:
    """The run's ``valid:`` section: validation that separates, not only scores.

    A teacher-forced loss can fall while what the LM writes on its own drifts (its errors feed its next
    steps) or collapses to silence; only a separation shows that. So at every validation the first
    ``separate_clips`` clips of the validation grid are separated as ``musictok separate`` would (the LM
    greedy, so the number moves with the weights, not with a draw) and each estimate's Mel distance to its
    true stem is logged (``valid/sep_mel/<stem>``, mean ``valid/sep_mel``) beside two floors any separator
    must beat: the mix itself as every stem (``valid/mix_mel/<stem>``, ``valid/mix_mel``) and the uniform
    split ``mix / S`` (``valid/split_mel``: what soft masks give before training; by Mel distance it beats the
    mix, whose level is wrong for every stem), and the check's wall time (``valid/sep_seconds``). Mel
    distance, not SI-SDR: the bundled tokenizers' decoders make up their own phase.
    """

    separate_clips: int = 2  # 0 turns the check off

    def __post_init__(self) -> None:
        require("valid.separate_clips", self.separate_clips, self.separate_clips >= 0, ">= 0 (0: no check)")


def separation_check(run: RunConfig) -> SeparationCheck:
    """The checked ``valid:`` section of a separator run (errors name the config file)."""
    try:
        return build_checked(SeparationCheck, run.valid, "valid")
    except ValueError as e:
        raise ValueError(f"{run.source}: {e}" if run.source else str(e)) from None


def separation_scores(model: Separator, mix: Tensor, stems: Tensor) -> dict[str, float]:
    """Separate ``mix (B, T)`` as at inference and score it against the true ``stems (B, S, T)`` (in the
    model's stem order), and the two floors: ``{"sep_mel/<stem>", "sep_mel", "mix_mel/<stem>", "mix_mel",
    "split_mel"}``, means over the clips (and stems, for the keys without one)."""
    options = {"temperature": 0.0, "samples": 1} if model.name == "lm" else {}
    est = model.separate(mix, **options).to(stems.device)
    sr = model.sample_rate
    ours = per_stem(mel_distance, stems, est, sample_rate=sr)
    floor = per_stem(mel_distance, stems, mix[:, None].expand_as(stems), sample_rate=sr)
    split = per_stem(mel_distance, stems, mix[:, None].expand_as(stems) / stems.shape[1], sample_rate=sr)
    out: dict[str, float] = {}
    for key, values in (("sep_mel", ours), ("mix_mel", floor)):
        out |= {f"{key}/{name}": float(values[:, s].mean()) for s, name in enumerate(model.stem_names)}
        out[key] = float(values.mean())
    return out | {"split_mel": float(split.mean())}


def _whole_units(seconds: float, model: Separator) -> float:
    """A clip length rounded to whole units of the separator (no padding inside training clips)."""
    hop = model.hop_samples
    return max(round(seconds * model.sample_rate / hop), 1) * hop / model.sample_rate


class SeparatorTask(TrainTask):
    def __init__(self, run: RunConfig):
        self.run = run
        separator_config(run.model)  # fail on a bad model section before any data is touched
        self.check = separation_check(run)
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
            mix, stems = self._stems(self._batch(range(i, min(i + 4, len(self.valid)))))
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
        out = {k: sums[k] / counts[k] for k in sums}
        per = [v for k, v in out.items() if k.startswith("si_sdr/")]
        if per:
            out["si_sdr"] = sum(per) / len(per)
        n = min(self.check.separate_clips, len(self.valid))
        if n:  # in float32, as at inference
            t0 = time.perf_counter()
            mix, stems = self._stems(self._batch(range(n)))
            out |= separation_scores(model, mix, stems) | {"sep_seconds": time.perf_counter() - t0}
        model.train()
        return out

    def _batch(self, indices) -> dict[str, Tensor]:
        items = [self.valid[j] for j in indices]
        return {"mix": torch.stack([it["mix"] for it in items]), "stems": torch.stack([it["stems"] for it in items])}

    def export(self, out_dir: Path, step: int) -> None:
        unwrap(self.model).save_pretrained(out_dir, extra={"train_step": step, "run_config": self.run.to_dict()})
