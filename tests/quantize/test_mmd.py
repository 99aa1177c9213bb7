"""The independence-promoting MMD at the trained settings: ≈ 0 with no sign bias for independent streams and a
planted dependence detected, at rvq-small's (8 levels × 64 dims, batches of 8 clips of 23 frames) and at
rvq-dac-mmd-small's (8 levels × 8 L2-normalised look-up dims, a pool of 32 batches × 8 clips, 16 frames each
after the delay alignment); gradient for every level through the pre-quantisation residual streams."""

import dataclasses
import functools
import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from musictok.quantize.mmd import (
    AUDIOCRAFT_BANDWIDTHS,
    MMDConfig,
    align_delays,
    independence_mmd,
    joint_and_product,
    mmd_squared,
)
from musictok.quantize.rvq import ResidualVQ, RVQConfig
from musictok.quantize.vq import VQConfig
from musictok.tokenizers.rvq_codec import RVQCodecConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CFG = RVQCodecConfig.small()
LEVELS, DIM = CFG.num_quantizers, CFG.latent_dim  # 8 × 64
BATCH, FRAMES = 8, round(CFG.frame_rate)  # configs/rvq-small.yaml: batch 8 × 1 s clips = 23 frames


@dataclasses.dataclass(frozen=True)
class Setting:
    """What one statistic of a training run reads: ``clips`` clips of ``frames`` frames (before the delay
    alignment), ``levels`` streams of ``dim`` features, L2-normalised for look-up streams."""

    name: str
    levels: int
    dim: int
    clips: int
    frames: int
    l2norm: bool
    repeats: int  # statistics of independent streams per test (one costs ≈ 0.6 s at the pool's size)
    max_abs: float  # no statistic of independent streams beyond this (a planted ρ = 0.6 reads ≈ 1e-2)


def _dac_mmd_setting() -> Setting:
    """configs/rvq-dac-mmd-small.yaml: its look-up streams, its pool (pool_batches × batch size) and its clips'
    frames (clip_seconds rounded to whole frames, as train/codec.py's whole_units does)."""
    from musictok.train.codec import codec_model_config
    from musictok.train.config import load_run_config

    run = load_run_config(CONFIGS / "rvq-dac-mmd-small.yaml")
    cfg = codec_model_config(run.model)[1]
    assert (cfg.mmd.streams, cfg.lookup, cfg.mmd.delay) == ("lookup", "l2norm", True)
    setting = Setting("rvq-dac-mmd-small", cfg.num_quantizers, cfg.codebook_dim,
                      cfg.mmd.pool_batches * run.train.batch_size, round(run.data.clip_seconds * cfg.frame_rate),
                      True, repeats=16, max_abs=1e-3)
    assert (setting.levels, setting.dim, setting.clips, setting.frames) == (8, 8, 256, 23)
    assert setting.clips * (setting.frames - setting.levels + 1) <= cfg.mmd.max_samples  # every frame is used
    return setting


RVQ_SMALL = Setting("rvq-small", LEVELS, DIM, BATCH, FRAMES, False, repeats=40, max_abs=1e-5)
SETTINGS = [RVQ_SMALL, _dac_mmd_setting()]


def _independent(seed: int, ar: float = 0.0, b: int | None = None, setting: Setting = RVQ_SMALL) -> torch.Tensor:
    """``(b, frames, levels, dim)`` streams independent across levels; AR(1) in time with coefficient ``ar``."""
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b or setting.clips, setting.frames, setting.levels, setting.dim, generator=g)
    for t in range(1, setting.frames):
        s[:, t] = ar * s[:, t - 1] + math.sqrt(1 - ar * ar) * s[:, t]
    return F.normalize(s, dim=-1) if setting.l2norm else s


def _planted(seed: int, rho: float, b: int | None = None, setting: Setting = RVQ_SMALL) -> torch.Tensor:
    """Every level shares a component of variance ``rho`` with the others (before any L2 normalisation), in the
    tuples the delay pattern predicts together (level ``l`` at frame ``t - l`` with level 0 at ``t``)."""
    s = _independent(seed, b=b, setting=dataclasses.replace(setting, l2norm=False))
    levels, frames = setting.levels, setting.frames
    common = torch.randn(s.shape[0], frames - levels + 1, 1, setting.dim,
                         generator=torch.Generator().manual_seed(10_000 + seed))
    for lv in range(levels):
        part = s[:, levels - 1 - lv: frames - lv, lv]
        s[:, levels - 1 - lv: frames - lv, lv] = math.sqrt(1 - rho) * part + math.sqrt(rho) * common[:, :, 0]
    return F.normalize(s, dim=-1) if setting.l2norm else s


def _mmd(streams: torch.Tensor, seed: int, **kw) -> float:
    return float(independence_mmd(streams, MMDConfig(**kw), torch.Generator().manual_seed(seed)))


@functools.lru_cache(maxsize=None)
def _independent_values(setting: Setting) -> torch.Tensor:
    """``setting.repeats`` statistics of independent streams (computed once: two tests read them)."""
    return torch.tensor([_mmd(_independent(s, setting=setting), seed=100 + s) for s in range(setting.repeats)])


def test_defaults_are_audiocrafts():
    cfg = MMDConfig()
    assert cfg.bandwidths == AUDIOCRAFT_BANDWIDTHS == (0.1, 1.0, 5.0, 10.0, 20.0, 50.0)
    assert cfg.delay and cfg.pool_batches == 32 and cfg.streams == "inputs"


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_independent_streams_give_zero_with_no_sign_bias(setting):
    values = _independent_values(setting)
    n = len(values)
    se = float(values.std()) / math.sqrt(n)
    assert abs(float(values.mean())) < 3 * se  # unbiased: the mean is 0 within its standard error
    assert abs(int((values > 0).sum()) - n / 2) <= 1.3 * math.sqrt(n)  # either sign as likely (2.6 sd of a fair coin)
    assert float(values.abs().max()) < setting.max_abs


def test_clip_coherence_is_not_read_as_dependence():
    """Frames of one clip are alike in every level at once (AR(1), 0.9); levels are still independent.
    Joint and product from disjoint clips, same-clip pairs left out: 0 on average. Every frame its own unit
    (AudioCraft's frame shuffles): a bias of many standard deviations."""
    clip_level = torch.tensor([_mmd(_independent(s, ar=0.9), seed=s) for s in range(30)])
    frame_level = torch.tensor([
        _mmd(align_delays(_independent(s, ar=0.9)).reshape(-1, 1, LEVELS, DIM), seed=s, delay=False)
        for s in range(30)])
    se = float(clip_level.std()) / math.sqrt(len(clip_level))
    assert abs(float(clip_level.mean())) < 3 * se
    assert float(frame_level.mean()) > 1e-3 > 100 * float(clip_level.std())


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_planted_dependence_is_detected_at_the_training_batch_size(setting):
    planted = [_mmd(_planted(s, rho=0.6, setting=setting), seed=s) for s in range(setting.repeats // 2)]
    assert min(planted) > float(_independent_values(setting).max())


def test_a_planted_dependence_is_seen_only_through_the_delay_alignment():
    """Delay off reads other tuples (level l at the same frame as level 0) and sees nothing of it."""
    off = torch.tensor([_mmd(_planted(s, rho=0.6), seed=s, delay=False) for s in range(20)])
    assert float(off.mean()) < 3 * float(off.std()) / math.sqrt(len(off))


def test_pooling_batches_detects_a_weaker_dependence():
    """A weak dependence is lost in one batch's spread and found when 8 batches are pooled, which is why the
    statistic is computed on ``pool_batches`` batches at once (AudioCraft: 32)."""
    one_dep = [_mmd(_planted(s, rho=0.2), seed=s) for s in range(20)]
    one_ind = [_mmd(_independent(100 + s), seed=s) for s in range(20)]
    pooled_dep = [_mmd(_planted(s, rho=0.2, b=8 * BATCH), seed=s) for s in range(5)]
    pooled_ind = [_mmd(_independent(200 + s, b=8 * BATCH), seed=s) for s in range(5)]
    assert min(one_dep) < max(one_ind)  # one batch: the two overlap
    assert min(pooled_dep) > 3 * max(abs(v) for v in pooled_ind)


def test_every_level_gets_gradient_through_the_residual_streams():
    torch.manual_seed(0)
    rvq = ResidualVQ(RVQConfig(VQConfig(dim=DIM, codebook_size=CFG.codebook_size), num_quantizers=LEVELS))
    latents = torch.randn(BATCH, FRAMES, DIM)
    rvq.train()(latents)  # k-means init
    rvq.eval()
    x = latents.clone().requires_grad_()
    streams = rvq.residual_streams(x)
    streams.retain_grad()
    independence_mmd(streams, MMDConfig()).backward()
    per_level = streams.grad.abs().sum(dim=(0, 1, 3))
    assert per_level.shape == (LEVELS,) and bool((per_level > 0).all())
    assert float(x.grad.abs().sum()) > 0
    # the straight-through quantized levels the loss used to read: levels 2..8 pass no gradient to x
    levels = rvq(x).levels
    for lv in range(1, LEVELS):
        (g,) = torch.autograd.grad(levels[..., lv, :].sum(), x, retain_graph=True)
        assert float(g.abs().sum()) == 0.0


def test_scale_of_a_level_does_not_matter():
    s = _planted(0, rho=0.6)
    scaled = s.clone()
    scaled[:, :, 3] *= 100.0
    assert _mmd(s, seed=3) == pytest.approx(_mmd(scaled, seed=3), rel=1e-3)


def test_delay_alignment_pairs_level_l_with_frame_t_minus_l():
    frames = torch.arange(10.0).view(1, 10, 1, 1).expand(2, 10, 4, 3)
    aligned = align_delays(frames)
    assert aligned.shape == (2, 7, 4, 3)
    for lv in range(4):  # tuple t: level 0 at frame t + 3, level l at frame t + 3 - l
        assert torch.equal(aligned[0, :, lv, 0], torch.arange(7.0) + 3 - lv)


def test_joint_and_product_are_disjoint_and_keep_the_marginals():
    s = torch.arange(8 * 5 * 3, dtype=torch.float32).view(8, 5, 3, 1)  # every value unique
    g = torch.Generator().manual_seed(0)
    joint, product, clips = joint_and_product(s, generator=g)
    assert clips == 4 and joint.shape == product.shape == (20, 3)
    z = (s - s.reshape(-1, 3, 1).mean(0)) / s.reshape(-1, 3, 1).var(0).sqrt()
    jrows = {tuple(r.tolist()) for r in joint}
    assert all(tuple(r.tolist()) not in jrows for r in product)
    for lv in range(3):  # each level of the product: the values of 4 whole clips of that level
        used = set(product[:, lv].tolist())
        assert len(used) == 20 and not used & set(joint[:, lv].tolist())
        assert used <= set(z[:, :, lv].reshape(-1).tolist())


def test_mmd_squared_of_one_distribution_is_about_zero_and_a_shift_is_positive():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 3, generator=g), torch.randn(300, 3, generator=g)
    assert abs(float(mmd_squared(x, y))) < 0.05
    assert float(mmd_squared(x, y + 1.0)) > 0.3


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        independence_mmd(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="delay-aligned"):
        independence_mmd(torch.zeros(4, 3, 8, 2))
    with pytest.raises(ValueError):
        MMDConfig(weight=-1)
    with pytest.raises(ValueError, match="streams"):
        MMDConfig(streams="outputs")
    with pytest.raises(ValueError, match="pool_batches"):
        MMDConfig(pool_batches=0)


def test_factorised_dac_setting_every_level_gets_gradient_and_lookup_streams_keep_the_kernels_alive():
    """configs/rvq-dac-small.yaml: 8 levels × 256-dim latents, factorised 8-dim l2norm codes. Every level's
    residual stream gets gradient; on the 256-dim streams (2,048 standardised features) every pair of samples
    sits ≈ 4,096 apart in squared distance, far in the tails of kernels of variance ≤ 50, so the statistic
    and its gradient vanish (≈ 1e-16); the look-up streams (8 × 8 features) keep them informative."""
    import yaml

    from musictok.train.codec import codec_model_config

    _, cfg = codec_model_config(yaml.safe_load(open(CONFIGS / "rvq-dac-small.yaml"))["model"])
    assert (cfg.num_quantizers, cfg.latent_dim, cfg.codebook_dim) == (8, 256, 8)
    rvq = ResidualVQ(dataclasses.replace(cfg.quantizer_config(), kmeans_vectors=4096)).train()
    mix = torch.randn(256, 256, generator=torch.Generator().manual_seed(0)) / 16
    spectrum = 2.0 ** (-torch.arange(256) / 32)

    def latents(clips: int, seed: int) -> torch.Tensor:
        return torch.randn(clips, FRAMES, 256, generator=torch.Generator().manual_seed(seed)) * spectrum @ mix.T * 4

    for seed in range(3):
        rvq(latents(64, seed))  # 3 × 64 × 23 >= 4096 latents: buffered k-means + PCA init
    assert all(bool(layer.initted) for layer in rvq.layers)
    rvq.eval()
    x = latents(BATCH, 10).requires_grad_()
    per_level = {}
    for kind in ("inputs", "lookup"):
        streams = rvq.residual_streams(x, lookup=kind == "lookup")
        streams.retain_grad()
        independence_mmd(streams, MMDConfig()).backward()
        per_level[kind] = streams.grad.abs().sum(dim=(0, 1, 3))
        assert streams.shape == (BATCH, FRAMES, LEVELS, 256 if kind == "inputs" else 8)
        assert per_level[kind].shape == (LEVELS,) and bool((per_level[kind] > 0).all()), kind
    assert float(per_level["inputs"].max()) < 1e-9 * float(per_level["lookup"].min())
    assert float(x.grad.abs().sum()) > 0
