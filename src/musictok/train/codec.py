"""Training the waveform codecs (RVQ codec, PyramidCodec): multi-resolution Mel + commitment (+ the MMD
independence loss when its weight is > 0), then optionally multi-period + multi-resolution STFT
discriminators with feature matching on the full-band reconstruction.

The MMD term is computed once every ``mmd.pool_batches`` steps on the batches of those steps, re-encoded
with the current weights (AudioCraft's EnCodec-MMD solver keeps its ``num_batches_mmd`` batches the same
way); the task holds the pool, and after a resume it reads the batches of the cycle's earlier steps from
the dataset again, so a resumed run sees the same pools as an uninterrupted one. Pools that end while the
quantizer still gathers vectors for its k-means init are skipped (the codec computes nothing for them). The log
carries the last pool's statistic as ``mmd`` and its weighted loss term, ``mmd.weight × mmd``, as ``mmd_loss``
(weight > 0 only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..metrics.codebook import codebook_usage
from ..metrics.reconstruction import mel_distance
from ..nn.discriminators import MultiPeriodDiscriminator, MultiResolutionDiscriminator
from ..nn.vocoder import adversarial_losses, vocoder_discriminator_loss
from ..quantize.mmd import independence_mmd
from ..tokenizers.pyramid import PyramidCodec, PyramidCodecConfig
from ..tokenizers.rvq_codec import CodecOutput, RVQCodec, RVQCodecConfig
from .config import RunConfig, build_model_config, per_source
from .finetune import InitPoint, provenance
from .loop import DistInfo, TrainConfig, TrainTask, unwrap, wrap_ddp

CODECS = {"rvq_codec": (RVQCodec, RVQCodecConfig), "pyramid_codec": (PyramidCodec, PyramidCodecConfig)}


def codec_model_config(model: dict):
    """The ``model`` section of a codec run (``tokenizer: rvq_codec | pyramid_codec`` + preset + fields)."""
    fields = dict(model)
    kind = fields.pop("tokenizer", "rvq_codec")
    if kind not in CODECS:
        raise ValueError(f"model.tokenizer must be one of {', '.join(CODECS)}, not {kind!r}")
    return CODECS[kind][0], build_model_config(CODECS[kind][1], fields)


class CodecTask(TrainTask):
    def __init__(self, run: RunConfig, init: InitPoint | None = None):
        self.run = run
        self.model_class, self.model_config = codec_model_config(run.model)
        self.init = init

    def setup(self, device: torch.device, dist_info: DistInfo, cfg: TrainConfig) -> None:
        self.device, self.cfg, self.dist = device, cfg, dist_info
        self._mmd_batches: dict[int, torch.Tensor] = {}  # step -> batch of the current MMD cycle
        self._mmd_last: dict[str, float] = {}  # the last pool's statistic ("mmd") and weighted term ("mmd_loss")
        self.model = self.model_class(self.model_config).to(device)
        if self.init is not None:
            self.init.load_into(self.model)
        width = self.run.gan.channels
        self.mpd = MultiPeriodDiscriminator(channels=(width // 2, width, 2 * width, 4 * width)).to(device)
        self.mrd = MultiResolutionDiscriminator(channels=width, spectrum=self.run.gan.mrd_spectrum).to(device)
        self.model_ddp = wrap_ddp(self.model, dist_info, device)
        self.discs = [wrap_ddp(self.mpd, dist_info, device), wrap_ddp(self.mrd, dist_info, device)]
        self.opt_g = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        disc_params = list(self.mpd.parameters()) + list(self.mrd.parameters())
        self.opt_d = torch.optim.AdamW(disc_params, lr=self.run.gan.lr or cfg.lr, betas=cfg.betas,
                                       weight_decay=cfg.weight_decay)
        d = self.run.data  # built now, so a bad split fails before step 0
        self._valid = d.valid_sets(whole_units(d.valid_seconds, self.model), self.model.sample_rate)

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, "mpd": self.mpd, "mrd": self.mrd}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.opt_g, "discriminator": self.opt_d}

    def train_dataset(self, length: int):
        d = self.run.data
        self._train_set = d.train_clips(whole_units(d.clip_seconds, self.model), self.model.sample_rate, length)
        return self._train_set

    def _mmd_pool(self, wav: torch.Tensor, step: int) -> list[torch.Tensor] | None:
        """The batches the MMD term reads at ``step`` (0-based), or None: on the last step of every cycle of
        ``mmd.pool_batches`` steps, the batches of the whole cycle. Batches from before a resume are read
        again from the training set, at the indices the trainer's sampler gave them."""
        size = self.model.config.mmd.pool_batches
        first = step - step % size
        self._mmd_batches = {s: w for s, w in self._mmd_batches.items() if s >= first} | {step: wav}
        if (step + 1) % size:
            return None
        bs, world, rank = self.cfg.batch_size, self.dist.world_size, self.dist.rank
        for s in range(first, step):
            if s not in self._mmd_batches:
                items = [self._train_set[p * world + rank] for p in range(s * bs, (s + 1) * bs)]
                self._mmd_batches[s] = torch.stack([it["audio"] for it in items]).to(self.device)
        pool, self._mmd_batches = [self._mmd_batches[s] for s in range(first, step + 1)], {}
        return pool

    def train_step(self, batch: dict, step: int, autocast: Any) -> dict[str, float]:
        wav = batch["audio"].to(self.device)
        gan = self.run.gan
        self.model.train()
        pool = self._mmd_pool(wav, step)
        with autocast():
            out = self.model_ddp(wav, pool)
        self._remember_mmd(out)
        loss = sum(out.losses.values())
        logs = {k: float(v.detach()) for k, v in out.losses.items()}
        if step >= gan.start_step:
            real, fake = out.targets[-1], out.outputs[-1]
            with autocast():
                d_loss = vocoder_discriminator_loss(real, fake, self.discs, gan.loss, gan.reduction)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            nn.utils.clip_grad_norm_([p for d in (self.mpd, self.mrd) for p in d.parameters()], self.cfg.grad_clip)
            self.opt_d.step()
            with autocast():
                adv, fm = adversarial_losses(real, fake, self.discs, gan.loss, gan.reduction)
            loss = loss + gan.adv_weight * adv + gan.fm_weight * fm
            logs |= {"disc": d_loss.item(), "adv": adv.item(), "fm": fm.item()}
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        logs["grad_norm"] = float(nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip))
        self.opt_g.step()
        logs["loss"] = loss.item()
        for k, v in out.stats.items():
            logs[k] = float(v)
        return logs | self._mmd_last  # every log row carries the last pool's values, not only the pool's steps

    def _remember_mmd(self, out: CodecOutput) -> None:
        """Keep the statistic and the weighted loss term of a step that computed the MMD term: a log row is
        written every ``log_every`` steps, the term once per ``mmd.pool_batches``, and they rarely meet."""
        if "mmd" in out.stats:
            self._mmd_last = {"mmd": float(out.stats["mmd"])}
            if "mmd_loss" in out.losses:
                self._mmd_last["mmd_loss"] = float(out.losses["mmd_loss"].detach())

    @torch.no_grad()
    def validate(self, autocast: Any) -> dict[str, float]:
        """Mel distance (DAC definition) of every reconstruction the codec trains, codebook use, MMD;
        per validation source when the run trains on a mixture."""
        return per_source({name: self._validate_one(ds) for name, ds in self._valid.items()})

    def _validate_one(self, ds) -> dict[str, float]:
        model = unwrap(self.model)
        model.eval()
        sr = model.sample_rate
        dist: list[float] = []
        codes: list[list[torch.Tensor]] = []
        streams: list[torch.Tensor] = []
        for i in range(len(ds)):
            wav = ds[i]["audio"][None].to(self.device)
            out = model.forward_train(wav)
            per = [float(mel_distance(t, o, sr).mean()) for t, o in zip(out.targets, out.outputs)]
            dist = [a + b for a, b in zip(dist, per)] if dist else per
            codes.append([c.reshape(-1, c.shape[-1]).cpu() for c in out.codes])
            streams.append(model.mmd_streams(wav))
        model.train()
        n = len(ds)
        logs = {"mel_distance": dist[-1] / n}
        if streams[0].shape[2] > 1:  # one statistic over every validation clip, not a mean of per-clip ones
            frames = min(x.shape[1] for x in streams)
            gen = torch.Generator().manual_seed(0)
            logs["mmd"] = float(independence_mmd(torch.cat([x[:, :frames] for x in streams]), model.config.mmd, gen))
        if len(dist) > 1:
            logs |= {f"mel_distance_levels_1_{k + 1}": v / n for k, v in enumerate(dist[:-1])}
        k = model.config.codebook_size
        usage = [codebook_usage(col, k).utilization for stream in zip(*codes)
                 for col in torch.cat(stream).T]
        logs["utilization"] = sum(usage) / len(usage)
        return logs

    def export(self, out_dir: Path, step: int) -> None:
        unwrap(self.model).save_pretrained(out_dir, extra={"train_step": step, "run_config": self.run.to_dict()}
                                           | provenance(self.init))


def whole_units(seconds: float, model) -> float:
    """Round a clip length to whole chunk units (coarsest frames), so training clips need no padding."""
    hop = model.hop_samples
    return max(round(seconds * model.sample_rate / hop), 1) * hop / model.sample_rate
