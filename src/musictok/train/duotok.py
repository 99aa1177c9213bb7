"""Training DuoTok stage by stage: one run per stage, each starting from the previous stage's export.

```yaml
kind: duotok
stage: 2                                     # 1 BEST-RQ · 2 heads + noise · 3 dual SimVQ · 4 decoders
init_from: runs/duotok-small-stage1/export   # required from stage 2 on
model: {}                                    # stage 1: {preset: small, ...}; later stages take the model
                                             # from init_from (keys given here override non-architectural fields)
duotok: {noise_prob: 0.2, views: {mix: 4, lead: 1, accompaniment: 1, accompaniment_only: 1}}
data: {corpus: data/chorales, clip_seconds: 2.0}
train: {steps: 10000, batch_size: 8, out_dir: runs/duotok-small-stage2}
```

What each stage trains; everything else is frozen (``requires_grad`` off, not in the optimizer), as the paper
prescribes:

====== ======================================== ==============================================================
stage  trained                                  data
====== ======================================== ==============================================================
1      encoder, BEST-RQ prediction head         ``data.sources`` / ``data.corpus`` (mixes, part stems, recordings)
2      encoder, heads (Mel, chroma, MSS, score)  duo clips of ``data.corpus``, each showing its mix or one stem
                                                 (or the accompaniment where the lead rests: ``views``)
3      quantizers, Mel/chroma/score heads        both stems of every duo clip (MSS head off); the encoder is
                                                 frozen unless ``freeze_encoder: false`` (the ablation)
4      decoders (+ a PatchGAN per track)         both stems of every duo clip
====== ======================================== ==============================================================

Each export is a complete DuoTok folder whose config records ``trained_stage``; stage ``n`` refuses an
``init_from`` that has not been through stage ``n - 1``. The ablations of the paper are options here:
``noise_prob: 0`` (stage 2 without feature-replacement noise), ``mss_weight: 0`` (without the MSS head),
``symbolic_weight: 0`` (without the score head, stages 2 and 3), ``freeze_encoder: false`` (stage 3).
The quantizers are first trained in stage 3, so a stage 3 may give them another size than stage 1 did
(``model: {codebook_size: 4096}``): variants of the codebook share stages 1-2 and so compare on one encoder.

Runs in one process (the stage passes call the model's methods, not a DDP-wrapped ``forward``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.score import DUO_TRACKS, SAMPLE_KINDS, DuoScoreClips
from ..metrics.codebook import codebook_usage
from ..nn.discriminators import (MultiScalePatchGAN, discriminator_loss, feature_matching_loss,
                                 generator_adversarial_loss)
from ..settings import build_checked, check_types, require
from ..tokenizers.duotok import BestRQ, DuoTok, DuoTokConfig, HeadWeights
from .config import RunConfig, build_model_config
from .loop import DistInfo, TrainConfig, TrainTask, unwrap
from .tokenizer import attach_vocoder, check_vocoder_fits

POS_WEIGHTS = ("sqrt", "balanced")  # duotok.symbolic_pos_weight from the note density
NORM_CLIPS = 64  # stage 1: training clips whose Mel statistics normalise BEST-RQ's targets
# what each stage trains; the encoder joins stage 3 only in the "w/o encoder freeze" ablation
TRAINED = {1: ("encoder",), 2: ("encoder", "heads"), 3: ("quantizers", "heads.mel", "heads.chroma", "heads.symbolic"),
           4: ("decoders",)}


@dataclass
class DuoTokStage:
    """The ``duotok:`` section of a stage's run config (``stage`` and ``init_from`` are top-level keys)."""

    # stage 1: BEST-RQ (Chiu et al., 2022): frozen random projection + codebook, masked spans
    rq_codebook_size: int = 8192
    rq_dim: int = 16
    rq_codebooks: int = 1
    mask_prob: float = 0.04  # a token frame starts a masked span with this probability
    mask_span: int = 8  # token frames per span (≈ 0.34 s at 23.4 frames/s)
    # stage 2: the kinds of sample and their weights (the paper's 4:1:1:1 adds accompaniment_only: the
    # accompaniment where the lead rests; data/score.py). Stages 3 and 4 always use both stems.
    views: dict = field(default_factory=lambda: {"mix": 4.0, "lead": 1.0, "accompaniment": 1.0})
    # stage 2
    noise_prob: float = 0.0  # feature-replacement noise: the share of hidden time steps replaced
    mask_teacher: str = "irm"  # "irm" (ideal ratio masks of the exact stems) or a trained separator folder
    # head weights (stages 2 and 3; the MSS head only trains in stage 2)
    mel_weight: float = 1.0
    chroma_weight: float = 0.5
    mss_weight: float = 1.0
    symbolic_weight: float = 1.0
    # the symbolic head's BCE weight on positive targets (notes are sparse): "sqrt" or "balanced" from the
    # training split's note density (symbolic_pos_weight()), or one number for every target (1: plain BCE)
    symbolic_pos_weight: str | float = "sqrt"
    # stage 3
    freeze_encoder: bool = True
    separated_share: float = 0.0  # stages 3-4: share of clips whose encoder input is the model's own separation
    # stage 4
    l1_weight: float = 1.0
    l2_weight: float = 1.0
    vocoder: str | None = None  # a trained vocoder (folder or bundled name) bundled into the stage-4 export

    def __post_init__(self) -> None:
        for key in ("rq_codebook_size", "rq_dim", "rq_codebooks", "mask_span"):
            require(f"duotok.{key}", getattr(self, key), getattr(self, key) >= 1, ">= 1")
        for key in ("mask_prob", "noise_prob", "separated_share"):
            require(f"duotok.{key}", getattr(self, key), 0 <= getattr(self, key) <= 1, "in 0..1")
        for key in ("mel_weight", "chroma_weight", "mss_weight", "symbolic_weight", "l1_weight", "l2_weight"):
            require(f"duotok.{key}", getattr(self, key), getattr(self, key) >= 0, ">= 0")
        pw = self.symbolic_pos_weight
        if isinstance(pw, str):
            require("duotok.symbolic_pos_weight", pw, pw in POS_WEIGHTS,
                    f"one of {', '.join(POS_WEIGHTS)} or a number")
        else:
            require("duotok.symbolic_pos_weight", pw, pw > 0, "> 0")
        if not isinstance(self.views, dict) or set(self.views) - set(SAMPLE_KINDS) or not self.views:
            raise ValueError(f"duotok.views must map some of {', '.join(SAMPLE_KINDS)} to weights, "
                             f"not {self.views!r}")
        weights = [self.views.get(v, 0.0) for v in SAMPLE_KINDS]
        if any(not isinstance(w, (int, float)) or w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"duotok.views: weights must be >= 0 and not all 0, got {self.views!r}")

    @property
    def view_weights(self) -> tuple[float, ...]:
        return tuple(float(self.views.get(v, 0.0)) for v in SAMPLE_KINDS)

    def head_weights(self, stage: int, symbolic_pos_weight: torch.Tensor | None = None) -> HeadWeights:
        return HeadWeights(self.mel_weight, self.chroma_weight, self.mss_weight if stage == 2 else 0.0,
                           self.symbolic_weight, symbolic_pos_weight)


def symbolic_pos_weight(density: np.ndarray, mode: str | float) -> torch.Tensor:
    """The symbolic head's BCE weight on positive targets, per track and target (roll, onset), from their
    base rate ``p`` (``density``, ``(2, 2)``, :meth:`DuoScoreClips.note_density`).

    ``"balanced"`` is ``(1 - p) / p``: positives and negatives weigh the same in total — for onsets
    (``p ≈ 2e-4``) that is ~5,000, and a cell the head knows nothing about is best predicted at 0.5, i.e.
    notes everywhere. ``"sqrt"`` (the default) is its square root, the usual compromise of inverse-frequency
    weighting: ~10 for the lead's roll, ~70 for its onsets, and an uninformed cell's best prediction
    ``sqrt(p) / (sqrt(p) + sqrt(1 - p))`` stays small (0.09 at ``p = 0.01``). A number is that weight for
    every target. A target that never occurs gets weight 1 (there is nothing to weigh).
    """
    if not isinstance(mode, str):
        return torch.full((len(DUO_TRACKS), 2), float(mode))
    p = torch.as_tensor(density, dtype=torch.float64)
    ratio = torch.where(p > 0, (1 - p) / p.clamp_min(1e-12), torch.ones_like(p))
    return (ratio.sqrt() if mode == "sqrt" else ratio).float()


def duotok_model_config(run: RunConfig) -> tuple[DuoTokConfig, dict | None]:
    """The model a stage trains and the weights it starts from: ``model:`` for a fresh stage 1, else the
    ``init_from`` export's config (with ``model:`` overrides) and state. Raises ``ValueError`` with the reason."""
    if run.init_from is None:
        return build_model_config(DuoTokConfig, run.model), None
    from ..tokenizers.base import Tokenizer, TokenizerError

    try:
        loaded = Tokenizer.from_pretrained(run.init_from)
    except TokenizerError as e:
        raise ValueError(f"init_from: {e}") from None
    if not isinstance(loaded, DuoTok):
        raise ValueError(f"init_from: {run.init_from} holds a {loaded.name} tokenizer, not a DuoTok stage export")
    done = loaded.config.trained_stage
    if done < run.stage - 1:
        raise ValueError(f"init_from: {run.init_from} has been trained up to stage {done}; stage {run.stage} "
                         f"starts from a stage-{run.stage - 1} export")
    overrides = dict(run.model)
    if "preset" in overrides:
        raise ValueError("model.preset: from stage 2 on the model comes from init_from; give only the fields to change")
    known = {f.name for f in dataclasses.fields(DuoTokConfig)}
    if set(overrides) - known:
        raise ValueError(f"unknown DuoTokConfig keys {sorted(set(overrides) - known)}")
    check_types(DuoTokConfig, overrides, "model")
    config = DuoTokConfig.from_dict(loaded.config.to_dict() | overrides)
    return config, loaded.state_dict()


def _whole_frames(seconds: float, hop: int, sample_rate: int) -> float:
    """Round a clip length to whole token frames, so training clips need no padding."""
    return max(round(seconds * sample_rate / hop), 1) * hop / sample_rate


class DuoTokTask(TrainTask):
    """One stage of DuoTok (see the module docstring)."""

    def __init__(self, run: RunConfig, vocoder_dir: str | None = None):
        if run.kind != "duotok" or run.stage not in (1, 2, 3, 4):
            raise ValueError("a DuoTok run needs kind: duotok and stage: 1..4")
        self.run, self.stage = run, int(run.stage)
        self.opts: DuoTokStage = build_checked(DuoTokStage, run.duotok, "duotok")
        self.vocoder_dir = vocoder_dir or self.opts.vocoder
        if self.vocoder_dir and self.stage != 4:
            raise ValueError("a vocoder is bundled by stage 4 (the stage that trains the decoders)")
        if self.opts.mask_teacher != "irm" and self.stage != 2:
            raise ValueError("duotok.mask_teacher: only stage 2 trains the MSS head")
        if self.stage >= 2 and run.data.sources:
            raise ValueError("data.sources: stages 2-4 read the duo stems and the score of data.corpus "
                             "(a rendered corpus); a mixture of sources is for stage 1")
        if self.stage >= 2 and run.data.eq_db:
            raise ValueError("data.eq_db: stages 2-4 keep stems and mix consistent and apply no EQ; set it to 0")
        self.model_config, self._init_state = duotok_model_config(run)

    # ---------------------------------------------------------------- setup
    def _fresh_prefixes(self) -> tuple[str, ...]:
        """Parts this stage may build anew when ``model:`` changes their shape: stage 4 may pick another
        decoder (``model.decoder``); stage 3 from an export that never trained the quantizers may pick another
        codebook (``model.codebook_size`` / ``codebook_dim``: e.g. a 4096-code variant sharing stages 1-2)."""
        if self.stage == 4:
            return ("decoders.",)
        if self.stage == 3 and self.model_config.trained_stage < 3:
            return ("quantizers.", "decoders.")
        return ()

    def _trained_names(self) -> tuple[str, ...]:
        names = TRAINED[self.stage]
        return names + ("encoder",) if self.stage == 3 and not self.opts.freeze_encoder else names

    def setup(self, device: torch.device, dist_info: DistInfo, cfg: TrainConfig) -> None:
        self.device, self.cfg = device, cfg
        self.model = DuoTok(self.model_config).to(device)
        if self._init_state is not None:
            why = "model: may only change fields that keep the architecture"
            fresh = self._fresh_prefixes()
            own = self.model.state_dict()
            state = {k: v for k, v in self._init_state.items()  # what this stage builds anew is not loaded
                     if not (k.startswith(fresh) and (k not in own or own[k].shape != v.shape))}
            try:
                missing, unexpected = self.model.load_state_dict(state, strict=False)
            except RuntimeError as e:  # shapes that differ
                raise ValueError(f"init_from: its weights do not fit this stage's model "
                                 f"({str(e).splitlines()[1].strip()[:120]}); {why}") from None
            bad = [k for k in missing if not k.startswith(fresh or ("\0",))] + list(unexpected)
            if bad:
                raise ValueError(f"init_from: its weights do not fit this stage's model ({bad[:3]}); {why}")
        self.model.requires_grad_(False)
        trained = [self.model.get_submodule(n) for n in self._trained_names()]
        for m in trained:
            m.requires_grad_(True)
        params = [p for m in trained for p in m.parameters()]
        self.ssl = None
        if self.stage == 1:
            o = self.opts
            self.ssl = BestRQ(self.model_config, o.rq_codebook_size, o.rq_dim, o.rq_codebooks, o.mask_prob,
                              o.mask_span).to(device)
            self.ssl.targets.fit_normalisation(self._normalisation_mels())
            params += list(self.ssl.parameters())
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        self.trained_parameters = params
        self.disc = self.opt_d = None
        if self.stage == 4:
            self.disc = nn.ModuleList(MultiScalePatchGAN(scales=3, channels=self.run.gan.channels)
                                      for _ in DUO_TRACKS).to(device)
            self.opt_d = torch.optim.AdamW(self.disc.parameters(), lr=self.run.gan.lr or cfg.lr, betas=cfg.betas,
                                           weight_decay=cfg.weight_decay)
        self.teacher = None
        if self.opts.mask_teacher != "irm":
            self.teacher = _load_teacher(self.opts.mask_teacher, self.model.sample_rate, device)
        self._vocoder = None
        if self.vocoder_dir:
            from ..nn.vocoder import load_vocoder

            self._vocoder = load_vocoder(self.vocoder_dir)
            check_vocoder_fits(self.model_config, self._vocoder)
        # stages 2-3: the symbolic head's positive-class weights from the training split's note density (a pure
        # function of the corpus, so a resumed run weighs the same)
        self.note_density = self.pos_weight = None
        if self.stage in (2, 3) and self.opts.symbolic_weight > 0:
            c = self.model_config
            self.note_density = self._duo_clips("train", _whole_frames(1.0, c.hop_samples, c.sample_rate),
                                                random=True, length=1).note_density()
            self.pos_weight = symbolic_pos_weight(self.note_density, self.opts.symbolic_pos_weight).to(device)
        # build what validation needs now, so a bad split fails before step 0
        d = self.run.data
        secs = _whole_frames(d.valid_seconds, self.model.hop_samples, self.model.sample_rate)
        if self.stage == 1:
            self._valid = d.valid_sets(secs, self.model.sample_rate)
        else:
            self._valid = {"": self._duo_clips(d.valid_split, secs, random=False, max_clips=d.valid_clips,
                                               views=(1.0, 0.0, 0.0))}

    def _normalisation_mels(self) -> torch.Tensor:
        """Stage 1: the Mels of the first ``NORM_CLIPS`` training clips (a pure function of the data seed, so
        a resumed run fits the same BEST-RQ statistics), for the targets' per-bin normalisation."""
        d, c = self.run.data, self.model_config
        clips = d.train_clips(_whole_frames(d.clip_seconds, c.hop_samples, c.sample_rate), c.sample_rate, NORM_CLIPS)
        audio = torch.stack([clips[i]["audio"] for i in range(NORM_CLIPS)]).to(self.device)
        with torch.no_grad():
            return self.model.mel(self.model._pad(audio))

    def _duo_clips(self, split: str, seconds: float, **kw) -> DuoScoreClips:
        d, c = self.run.data, self.model_config
        return DuoScoreClips(d.corpus, split, seconds, c.sample_rate, hop_length=c.hop_length,
                             time_downsample=c.time_downsample, seed=d.seed, level_dbfs=d.level_dbfs,
                             gain_db=(float(d.gain_db[0]), float(d.gain_db[1])), **kw)

    def modules(self) -> dict[str, nn.Module]:
        out: dict[str, nn.Module] = {"model": self.model}
        if self.ssl is not None:
            out["best_rq"] = self.ssl
        if self.disc is not None:
            out["disc"] = self.disc
        return out

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        out = {"generator": self.opt}
        if self.opt_d is not None:
            out["discriminator"] = self.opt_d
        return out

    def train_dataset(self, length: int):
        d, c = self.run.data, self.model_config
        secs = _whole_frames(d.clip_seconds, c.hop_samples, c.sample_rate)
        if self.stage == 1:
            return d.train_clips(secs, c.sample_rate, length)
        return self._duo_clips("train", secs, random=True, length=length, views=self.opts.view_weights)

    # ---------------------------------------------------------------- one step
    def _batch(self, batch: dict) -> dict:
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def _inputs(self, b: dict) -> torch.Tensor | None:
        """Stages 3-4: the stems the encoder sees — some clips' stems separated from their mix by the model."""
        share = self.opts.separated_share
        if share <= 0:
            return None
        pick = (torch.rand(b["stems"].shape[0]) < share).to(self.device)
        if not bool(pick.any()):
            return None
        inputs = b["stems"].clone()
        with torch.no_grad():
            inputs[pick] = self.model.separate(self.model._pad(b["mix"][pick]))[..., : inputs.shape[-1]]
        return inputs

    def _forward(self, b: dict, train: bool = True):
        """The stage's losses of a batch (weighted) and the stage output (stats, Mels for the GAN)."""
        model, o = self.model, self.opts
        if self.stage == 1:
            mel = model.mel(model._pad(b["audio"]))
            loss, stats = self.ssl.loss(model.encoder, mel)
            return {"best_rq": loss}, stats, None
        if self.stage == 2:
            if self.teacher is not None:
                with torch.no_grad():
                    b["teacher_mask"] = model.ideal_masks(_teacher_stems(self.teacher, model._pad(b["mix"])))
            out = model.stage2_losses(b, o.head_weights(2, self.pos_weight), noise=o.noise_prob if train else 0.0)
        elif self.stage == 3:
            out = model.stage3_losses(b, o.head_weights(3, self.pos_weight), freeze_encoder=o.freeze_encoder,
                                      inputs=self._inputs(b) if train else None)
        else:
            out = model.stage4_losses(b, o.l1_weight, o.l2_weight, inputs=self._inputs(b) if train else None)
        return out.losses, out.stats, out

    def train_step(self, batch: dict, step: int, autocast: Any) -> dict[str, float]:
        b = self._batch(batch)
        self.model.train()
        for name in ("encoder", "heads", "quantizers", "decoders"):  # frozen parts run as at inference
            if not any(p.requires_grad for p in self.model.get_submodule(name).parameters()):
                self.model.get_submodule(name).eval()
        with autocast():
            losses, stats, out = self._forward(b)
        loss = sum(losses.values())
        logs = {k: float(v.detach()) for k, v in losses.items()} | {k: float(v) for k, v in stats.items()}
        gan = self.run.gan
        if self.stage == 4 and step >= gan.start_step:
            adv, fm, d_loss = 0.0, 0.0, 0.0
            for k, disc in enumerate(self.disc):
                real, fake = out.mels[k][:, None].detach(), out.mel_hats[k][:, None]
                with autocast():
                    d_loss = d_loss + discriminator_loss(disc(real).logits, disc(fake.detach()).logits, gan.loss,
                                                         gan.reduction)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            nn.utils.clip_grad_norm_(self.disc.parameters(), self.cfg.grad_clip)
            self.opt_d.step()
            for k, disc in enumerate(self.disc):
                real, fake = out.mels[k][:, None].detach(), out.mel_hats[k][:, None]
                with autocast():
                    with torch.no_grad():
                        real_out = disc(real)
                    fake_out = disc(fake)
                    adv = adv + generator_adversarial_loss(fake_out.logits, gan.loss, gan.reduction)
                    fm = fm + feature_matching_loss(real_out.features, fake_out.features, gan.reduction)
            loss = loss + gan.adv_weight * adv + gan.fm_weight * fm
            logs |= {"disc": float(d_loss.detach()), "adv": float(adv.detach()), "fm": float(fm.detach())}
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        logs["grad_norm"] = float(nn.utils.clip_grad_norm_(self.trained_parameters, self.cfg.grad_clip))
        self.opt.step()
        logs["loss"] = float(loss.detach())
        return logs

    # ---------------------------------------------------------------- validation and export
    @torch.no_grad()
    def validate(self, autocast: Any) -> dict[str, float]:
        """The stage's losses (unweighted heads) on the fixed validation clips; stage 3 adds each track's
        codebook utilization and normalised entropy (codebook health per track)."""
        from .config import per_source

        model = unwrap(self.model)
        model.eval()
        saved = self.opts
        self.opts = dataclasses.replace(saved, mel_weight=1.0, chroma_weight=1.0, mss_weight=1.0,
                                        symbolic_weight=1.0, l1_weight=1.0, l2_weight=1.0)
        results: dict[str, dict[str, float]] = {}
        try:
            with torch.random.fork_rng(devices=[]):  # validation's draws never touch the training stream
                torch.manual_seed(0)
                for name, ds in self._valid.items():
                    sums: dict[str, float] = {}
                    codes: list[list[torch.Tensor]] = [[], []]
                    for i in range(0, len(ds), 8):
                        items = [ds[j] for j in range(i, min(i + 8, len(ds)))]
                        b = self._batch(torch.utils.data.default_collate(items))
                        with autocast():
                            losses, stats, _ = self._forward(b, train=False)
                        if self.stage == 1:  # the masked-prediction accuracy too
                            losses = losses | {"accuracy": stats["accuracy"]}
                        for k, v in losses.items():
                            sums[k] = sums.get(k, 0.0) + float(v) * len(items)
                        if self.stage >= 3:
                            h = model.encode_features(model._pad(b["stems"]))
                            for k, q in enumerate(model.quantizers):
                                codes[k].append(q.encode(h[:, k]).reshape(-1).cpu())
                    res = {k: v / len(ds) for k, v in sums.items()}
                    if self.stage >= 3:
                        for k, track in enumerate(DUO_TRACKS):
                            u = codebook_usage(torch.cat(codes[k]), model.config.codebook_size)
                            res |= {f"utilization/{track}": u.utilization,
                                    f"normalized_entropy/{track}": u.normalized_entropy}
                    results[name] = res
        finally:
            self.opts = saved
            model.train()
        return per_source(results)

    def exported_model(self) -> DuoTok:
        """The current weights as a DuoTok whose config records this stage (and the vocoder, if any)."""
        model = unwrap(self.model)
        cfg = DuoTokConfig.from_dict(model.config.to_dict()
                                     | {"trained_stage": max(model.config.trained_stage, self.stage)})
        out = DuoTok(cfg)
        out.load_state_dict(model.state_dict())
        if self._vocoder is not None:
            out = attach_vocoder(out, self._vocoder)
        return out.eval()

    def export(self, out_dir: Path, step: int) -> None:
        extra = {"train_step": step, "stage": self.stage, "run_config": self.run.to_dict()}
        if self.pos_weight is not None:  # what the symbolic head's loss weighed notes by, and why
            extra |= {"symbolic_pos_weight": self.pos_weight.tolist(), "note_density": self.note_density.tolist()}
        self.exported_model().save_pretrained(out_dir, extra=extra)


# ------------------------------------------------------------------------------------------------ teachers
def _load_teacher(source: str, sample_rate: int, device: torch.device):
    """A trained separator whose stems give the MSS head's soft masks (distillation instead of exact IRMs)."""
    from ..separation.base import Separator, SeparatorError

    try:
        sep = Separator.from_pretrained(source, map_location=device)
    except SeparatorError as e:
        raise ValueError(f"duotok.mask_teacher: {e}") from None
    names = sep.stem_names
    if sep.sample_rate != sample_rate:
        raise ValueError(f"duotok.mask_teacher: the separator runs at {sep.sample_rate} Hz, DuoTok at {sample_rate} Hz")
    if names[:2] != ["lead", "accompaniment"] and "vocals" not in names:
        raise ValueError(f"duotok.mask_teacher: the separator's stems {names} give no lead (want lead/accompaniment "
                         "or a musdb group with vocals)")
    return sep.eval()


def _teacher_stems(sep, mix: torch.Tensor) -> torch.Tensor:
    """The teacher's ``(B, 2, T)`` lead and accompaniment (musdb: vocals, and the sum of the rest)."""
    stems = sep.separate(mix)
    names = sep.stem_names
    if names[:2] == ["lead", "accompaniment"]:
        return stems[:, :2]
    v = names.index("vocals")
    return torch.stack([stems[:, v], stems.sum(1) - stems[:, v]], dim=1)
