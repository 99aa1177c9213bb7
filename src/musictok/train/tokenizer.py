"""Training BandTok: Mel reconstruction + commitment, then a multi-scale PatchGAN on the Mel image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..metrics.codebook import codebook_usage
from ..nn.discriminators import MultiScalePatchGAN, discriminator_loss, feature_matching_loss, generator_adversarial_loss
from ..tokenizers.bandtok import BandTok, BandTokConfig
from ..tokenizers.base import level_scale
from .config import RunConfig, build_model_config, per_source
from .finetune import InitPoint, provenance
from .loop import DistInfo, TrainConfig, TrainTask, unwrap, wrap_ddp


class BandTokTask(TrainTask):
    def __init__(self, run: RunConfig, vocoder_dir: str | None = None, init: InitPoint | None = None):
        self.run = run
        self.model_config: BandTokConfig = build_model_config(BandTokConfig, run.model)
        self.vocoder_dir = vocoder_dir
        self.init = init

    def setup(self, device: torch.device, dist_info: DistInfo, cfg: TrainConfig) -> None:
        self.device, self.dist = device, dist_info
        self.model = BandTok(self.model_config).to(device)
        if self.init is not None:
            self.init.load_into(self.model)
        if self.model.vocoder is not None:
            # a fine-tuned export's vocoder travels along untrained (the losses are on the Mel); frozen, so DDP
            # does not wait for gradients that never come
            self.model.vocoder.requires_grad_(False)
        self.disc = MultiScalePatchGAN(scales=3, channels=self.run.gan.channels).to(device)
        self.model_ddp = wrap_ddp(self.model, dist_info, device)
        self.disc_ddp = wrap_ddp(self.disc, dist_info, device)
        self.opt_g = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=cfg.betas,
                                       weight_decay=cfg.weight_decay)
        self.opt_d = torch.optim.AdamW(self.disc.parameters(), lr=self.run.gan.lr or cfg.lr, betas=cfg.betas,
                                       weight_decay=cfg.weight_decay)
        self.cfg = cfg
        # build what validation and export need now, so a bad split or vocoder fails before step 0
        d = self.run.data
        self._valid = d.valid_sets(_whole_frames(d.valid_seconds, self.model), self.model.sample_rate)
        self._vocoder = None
        if self.vocoder_dir is not None:
            from ..nn.vocoder import load_vocoder

            self._vocoder = load_vocoder(self.vocoder_dir)
            check_vocoder_fits(self.model.config, self._vocoder)

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, "disc": self.disc}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.opt_g, "discriminator": self.opt_d}

    def train_dataset(self, length: int):
        d = self.run.data
        return d.train_clips(_whole_frames(d.clip_seconds, self.model), self.model.sample_rate, length)

    def train_step(self, batch: dict, step: int, autocast: Any) -> dict[str, float]:
        wav = batch["audio"].to(self.device)
        gan = self.run.gan
        self.model.train()
        with autocast():
            out = self.model_ddp(wav)
        loss = sum(out.losses.values())
        logs = {k: float(v.detach()) for k, v in out.losses.items()}
        if step >= gan.start_step:
            real, fake = out.mel.detach(), out.mel_hat
            with autocast():
                d_loss = discriminator_loss(self.disc_ddp(real).logits, self.disc_ddp(fake.detach()).logits, gan.loss)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            nn.utils.clip_grad_norm_(self.disc.parameters(), self.cfg.grad_clip)
            self.opt_d.step()
            with autocast():
                with torch.no_grad():
                    real_out = self.disc_ddp(real)
                fake_out = self.disc_ddp(fake)
                adv = generator_adversarial_loss(fake_out.logits, gan.loss)
                fm = feature_matching_loss(real_out.features, fake_out.features)
            loss = loss + gan.adv_weight * adv + gan.fm_weight * fm
            logs |= {"disc": d_loss.item(), "adv": adv.item(), "fm": fm.item()}
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        logs["grad_norm"] = float(nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip))
        self.opt_g.step()
        logs["loss"] = loss.item()
        logs["perplexity"] = float(out.stats.get("perplexity", torch.tensor(0.0)))
        logs["utilization"] = float(out.stats.get("utilization", torch.tensor(0.0)))
        return logs

    @torch.no_grad()
    def validate(self, autocast: Any) -> dict[str, float]:
        """Mel L1 (normalised log-Mel) and codebook use over the fixed validation clips."""
        model = unwrap(self.model)
        model.eval()
        out_logs = {}
        for name, ds in self._valid.items():
            l1, codes = 0.0, []
            for i in range(len(ds)):
                wav = ds[i]["audio"][None].to(self.device)
                if model.level_dbfs is not None:  # as encode() sees it
                    wav = wav / level_scale(wav, model.level_dbfs)
                out = model.forward_train(wav)
                l1 += float(out.losses["mel_l1"]) / model.config.l1_weight
                codes.append(out.codes.reshape(-1).cpu())
            usage = codebook_usage(torch.cat(codes), model.config.codebook_size)
            out_logs[name] = {"mel_l1": l1 / len(ds), "utilization": usage.utilization,
                              "normalized_entropy": usage.normalized_entropy}
        model.train()
        return per_source(out_logs)

    def export(self, out_dir: Path, step: int) -> None:
        model = unwrap(self.model)
        if self._vocoder is not None:
            model = attach_vocoder(model, self._vocoder)
        model.save_pretrained(out_dir, extra={"train_step": step, "run_config": self.run.to_dict()}
                              | provenance(self.init))


def _whole_frames(seconds: float, model: BandTok) -> float:
    """Round a clip length to whole token frames, so training clips need no padding."""
    hop = model.hop_samples
    return max(round(seconds * model.sample_rate / hop), 1) * hop / model.sample_rate


def check_vocoder_fits(cfg, vocoder) -> None:
    """A vocoder trained on another Mel (rate, FFT, hop, bins, range) would decode to garbage. ``cfg`` is a
    Mel tokenizer's config (BandTok's, DuoTok's): anything with ``mel_config()``."""
    want, have = cfg.mel_config(), vocoder.config.mel
    for key in ("sample_rate", "n_fft", "hop_length", "win_length", "n_mels", "fmin", "fmax", "log_floor"):
        if getattr(want, key) != getattr(have, key):
            raise ValueError(f"the vocoder's Mel has {key}={getattr(have, key)}, the tokenizer's has "
                             f"{getattr(want, key)}")


def attach_vocoder(model, vocoder):
    """A copy of ``model`` (a Mel tokenizer whose config has a ``vocoder`` field: BandTok, DuoTok) whose
    ``decode`` uses ``vocoder`` (a `Vocoder`, or a folder to load one from)."""
    from ..nn.vocoder import load_vocoder

    if isinstance(vocoder, (str, Path)):
        vocoder = load_vocoder(vocoder)
    check_vocoder_fits(model.config, vocoder)
    cls = type(model)
    cfg = cls.config_class.from_dict(model.config.to_dict() | {"vocoder": vocoder.config.to_dict()})
    out = cls(cfg)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("vocoder.")}
    state |= {f"vocoder.{k}": v for k, v in vocoder.state_dict().items()}
    out.load_state_dict(state)
    return out.eval()
