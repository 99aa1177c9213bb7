"""Training the Vocos-style vocoder: multi-resolution Mel loss, then multi-period + multi-resolution
discriminators with feature matching."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..metrics.reconstruction import mel_distance
from ..nn.discriminators import MultiPeriodDiscriminator, MultiResolutionDiscriminator
from ..nn.vocoder import (
    MultiResolutionMelLoss,
    Vocoder,
    VocoderConfig,
    VocoderLossWeights,
    phase_losses,
    save_vocoder,
    vocoder_discriminator_loss,
    vocoder_generator_losses,
)
from .config import RunConfig, build_model_config, per_source
from .finetune import InitPoint, provenance
from .loop import DistInfo, TrainConfig, TrainTask, unwrap, wrap_ddp


def vocoder_loss_weights(run: RunConfig) -> dict[str, float]:
    """The run's ``losses`` section for a vocoder: ``mel`` and ``phase`` weights (the GAN's own weights are
    ``gan.adv_weight`` and ``gan.fm_weight``)."""
    known = {"mel", "phase"}
    if set(run.losses) - known:
        raise ValueError(f"{run.source}: losses: a vocoder run weighs {sorted(known)}, not {sorted(set(run.losses) - known)}")
    for k, v in run.losses.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"{run.source}: losses.{k}: a weight >= 0, got {v!r}")
    return {k: float(v) for k, v in run.losses.items()}


class VocoderTask(TrainTask):
    def __init__(self, run: RunConfig, init: InitPoint | None = None):
        self.run = run
        self.model_config: VocoderConfig = build_model_config(VocoderConfig, run.model)
        self.init = init

    def setup(self, device: torch.device, dist_info: DistInfo, cfg: TrainConfig) -> None:
        self.device, self.cfg = device, cfg
        self.model = Vocoder(self.model_config).to(device)
        if self.init is not None:
            self.init.load_into(self.model)
        width = self.run.gan.channels
        self.mpd = MultiPeriodDiscriminator(channels=(width // 2, width, 2 * width, 4 * width)).to(device)
        self.mrd = MultiResolutionDiscriminator(channels=width, spectrum=self.run.gan.mrd_spectrum).to(device)
        self.model_ddp = wrap_ddp(self.model, dist_info, device)
        self.discs = [wrap_ddp(self.mpd, dist_info, device), wrap_ddp(self.mrd, dist_info, device)]
        self.mel_loss = MultiResolutionMelLoss(self.model_config.mel.sample_rate).to(device)
        self.opt_g = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        disc_params = list(self.mpd.parameters()) + list(self.mrd.parameters())
        self.opt_d = torch.optim.AdamW(disc_params, lr=self.run.gan.lr or cfg.lr, betas=cfg.betas,
                                       weight_decay=cfg.weight_decay)
        self.weights = VocoderLossWeights(adv=self.run.gan.adv_weight, fm=self.run.gan.fm_weight,
                                          **vocoder_loss_weights(self.run))
        d = self.run.data  # built now, so a bad split fails before step 0
        self._valid = d.valid_sets(d.valid_seconds, self.model_config.mel.sample_rate)

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, "mpd": self.mpd, "mrd": self.mrd}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.opt_g, "discriminator": self.opt_d}

    def train_dataset(self, length: int):
        d = self.run.data
        return d.train_clips(d.clip_seconds, self.model_config.mel.sample_rate, length)

    def train_step(self, batch: dict, step: int, autocast: Any) -> dict[str, float]:
        wav = batch["audio"].to(self.device)
        gan = self.run.gan
        self.model.train()
        with autocast():
            mel = self.model.wav_to_mel(wav)
            if self.weights.phase > 0:
                fake, phase = self.model_ddp(mel, length=wav.shape[-1], return_phase=True)
            else:
                fake, phase = self.model_ddp(mel, length=wav.shape[-1]), None
        if step < gan.start_step:
            mel_l = self.mel_loss(wav, fake)
            loss, logs = self.weights.mel * mel_l, {"mel": mel_l.item()}
        else:
            with autocast():
                d_loss = vocoder_discriminator_loss(wav, fake, self.discs, gan.loss, gan.reduction)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            nn.utils.clip_grad_norm_([p for d in (self.mpd, self.mrd) for p in d.parameters()], self.cfg.grad_clip)
            self.opt_d.step()
            with autocast():
                g = vocoder_generator_losses(wav, fake, self.discs, self.mel_loss, self.weights, gan.loss,
                                             gan.reduction)
            loss = g["total"]
            logs = {"mel": g["mel"].item(), "adv": g["adv"].item(), "fm": g["fm"].item(), "disc": d_loss.item()}
        if phase is not None:
            head = self.model.head
            terms = phase_losses(phase, wav, head.n_fft, head.hop)
            loss = loss + self.weights.phase * sum(terms.values())
            logs |= {f"phase_{k}": v.item() for k, v in terms.items()}
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        logs["grad_norm"] = float(nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip))
        self.opt_g.step()
        logs["loss"] = loss.item()
        return logs

    @torch.no_grad()
    def validate(self, autocast: Any) -> dict[str, float]:
        """The evaluation Mel distance (DAC definition) of resynthesised validation clips."""
        model = unwrap(self.model)
        model.eval()
        out = {}
        for name, ds in self._valid.items():
            total = 0.0
            for i in range(len(ds)):
                wav = ds[i]["audio"][None].to(self.device)
                total += float(mel_distance(wav, model.resynthesize(wav), self.model_config.mel.sample_rate).mean())
            out[name] = {"mel_distance": total / len(ds)}
        model.train()
        return per_source(out)

    def export(self, out_dir: Path, step: int) -> None:
        save_vocoder(unwrap(self.model), out_dir, extra={"train_step": step, "run_config": self.run.to_dict()}
                     | provenance(self.init))
