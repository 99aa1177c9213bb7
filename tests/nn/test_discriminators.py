"""Discriminators: the uniform (logits, features) contract, shapes, loss reference values, gradients."""

from __future__ import annotations

import pytest
import torch

from musictok.nn import (
    DiscriminatorOutput,
    MultiPeriodDiscriminator,
    MultiResolutionDiscriminator,
    MultiScalePatchGAN,
    PatchGAN2d,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _check_contract(out: DiscriminatorOutput, n_sub: int, batch: int) -> None:
    logits, features = out  # unpacks like a tuple
    assert isinstance(out, DiscriminatorOutput)
    assert len(logits) == len(features) == n_sub
    for score, feats in zip(logits, features):
        assert score.shape[0] == batch and score.shape[1] == 1 and score.numel() > 0
        assert torch.isfinite(score).all()
        assert len(feats) >= 2 and all(f.shape[0] == batch for f in feats)


@pytest.mark.parametrize("size", [(8, 8), (128, 47), (33, 17)])
def test_patchgan_shapes(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    disc = PatchGAN2d(in_ch=1, channels=8, n_layers=3)
    logits, feats = disc(torch.randn(2, 1, *size))
    assert logits.shape == (2, 1, size[0] // 8, size[1] // 8)
    assert len(feats) == 4


def test_patchgan_rejects_too_small_input() -> None:
    with pytest.raises(ValueError, match="needs H, W >= 8"):
        PatchGAN2d(n_layers=3)(torch.randn(1, 1, 64, 7))
    with pytest.raises(ValueError, match="norm"):
        PatchGAN2d(norm="batch")


def test_multiscale_patchgan_contract() -> None:
    torch.manual_seed(0)
    disc = MultiScalePatchGAN(scales=3, channels=8)
    out = disc(torch.randn(2, 128, 47))  # (B, F, T) is accepted too
    _check_contract(out, 3, 2)
    # 128x47 -> 64x24 -> 32x12 before each PatchGAN's /8.
    assert [tuple(s.shape[-2:]) for s in out.logits] == [(16, 5), (8, 3), (4, 1)]
    with pytest.raises(ValueError, match="scale 1/4"):
        disc(torch.randn(2, 1, 128, 20))


@pytest.mark.parametrize("length", [4000, 4001, 4003])
def test_mpd_contract_and_odd_lengths(length: int) -> None:
    torch.manual_seed(0)
    disc = MultiPeriodDiscriminator(channels=(8, 16))
    out = disc(torch.randn(2, 1, length))
    _check_contract(out, 5, 2)
    assert [s.shape[-1] for s in out.logits] == [2, 3, 5, 7, 11]  # one column per phase of the period


def test_mpd_short_and_strided_input() -> None:
    torch.manual_seed(0)
    disc = MultiPeriodDiscriminator(channels=(8, 16))
    _check_contract(disc(torch.randn(1, 5)), 5, 1)  # shorter than the pad of period 11: zero-padded
    strided = torch.randn(2, 2, 2310)[:, :1]  # non-contiguous, T divisible by every period
    _check_contract(disc(strided), 5, 2)


def test_mrd_contract_and_odd_lengths() -> None:
    torch.manual_seed(0)
    disc = MultiResolutionDiscriminator(channels=8)
    for length in (4800, 4801):
        out = disc(torch.randn(2, length))
        _check_contract(out, 3, 2)
        assert [s.shape[-1] for s in out.logits] == [length // 256 + 1, length // 512 + 1, length // 128 + 1]
    with pytest.raises(ValueError, match="too short"):
        disc(torch.randn(1, 1000))


def test_default_discriminators_are_small() -> None:
    # CPU-trainable widths: roughly 0.1M-1M parameters per discriminator.
    assert 5e5 < _n_params(MultiPeriodDiscriminator()) < 1e6
    assert 1e5 < _n_params(MultiResolutionDiscriminator()) < 5e5
    assert 5e5 < _n_params(MultiScalePatchGAN()) < 1.2e6


def test_weight_norm_default_and_spectral_option() -> None:
    names = [n for n, _ in PatchGAN2d(channels=4).named_parameters()]
    assert any("original0" in n for n in names)  # weight_norm's magnitude g
    disc = PatchGAN2d(channels=4, norm="spectral")
    assert disc(torch.randn(1, 1, 16, 16))[0].shape == (1, 1, 2, 2)


def test_hinge_reference_values() -> None:
    real = [torch.full((2, 1, 5, 3), 2.0), torch.full((2, 1, 7), 2.0)]
    fake = [torch.full((2, 1, 5, 3), -2.0), torch.full((2, 1, 7), -2.0)]
    assert discriminator_loss(real, fake, "hinge").item() == 0.0
    # All logits 0: relu(1) + relu(1) = 2 per sub-discriminator, averaged -> 2.
    zeros = [torch.zeros(2, 1, 4)] * 3
    assert discriminator_loss(zeros, zeros, "hinge").item() == pytest.approx(2.0)
    # Mixed: real (0.5, 3) -> mean relu(1 - r) = 0.25; fake (-3, 0) -> mean relu(1 + f) = 0.5.
    loss = discriminator_loss([torch.tensor([0.5, 3.0])], [torch.tensor([-3.0, 0.0])], "hinge")
    assert loss.item() == pytest.approx(0.75)
    assert generator_adversarial_loss([torch.tensor([0.0, 2.0])], "hinge").item() == pytest.approx(0.5)
    assert generator_adversarial_loss(fake, "hinge").item() == pytest.approx(3.0)


def test_lsgan_reference_values() -> None:
    ones, zeros = [torch.ones(2, 1, 3)], [torch.zeros(2, 1, 3)]
    assert discriminator_loss(ones, zeros, "lsgan").item() == 0.0
    half = [torch.full((2, 1, 3), 0.5)]
    assert discriminator_loss(half, half, "lsgan").item() == pytest.approx(0.5)  # 0.25 + 0.25
    # Two sub-discriminators are averaged: (0 + (1 + 1)) / 2 = 1.
    assert discriminator_loss(ones + zeros, zeros + ones, "lsgan").item() == pytest.approx(1.0)
    assert generator_adversarial_loss([torch.tensor([0.0, 1.0, 3.0])], "lsgan").item() == pytest.approx(5 / 3)
    with pytest.raises(ValueError, match="kind"):
        discriminator_loss(ones, zeros, "wgan")
    with pytest.raises(ValueError, match="one each"):
        discriminator_loss(ones, ones + zeros)


def test_feature_matching() -> None:
    torch.manual_seed(0)
    feats = [[torch.randn(2, 4, 5), torch.randn(2, 8, 3)], [torch.randn(2, 3)]]
    assert feature_matching_loss(feats, feats).item() == 0.0
    shifted = [[f + 1.0 for f in layers] for layers in feats]
    assert feature_matching_loss(feats, shifted).item() == pytest.approx(1.0)  # |1| in every element
    # Flat lists (one sub-discriminator) work too; layers are averaged: (1 + 3) / 2.
    a = [torch.zeros(3), torch.zeros(5)]
    assert feature_matching_loss(a, [torch.ones(3), torch.full((5,), 3.0)]).item() == pytest.approx(2.0)


def test_gradients_reach_generator_not_real_branch() -> None:
    torch.manual_seed(0)
    mpd = MultiPeriodDiscriminator(periods=(2, 3), channels=(8, 16))
    mrd = MultiResolutionDiscriminator(resolutions=((256, 64, 256),), channels=8)
    real = torch.randn(2, 2400, requires_grad=True)
    gen_param = torch.zeros(1, requires_grad=True)
    noise = torch.randn(2, 2400)
    for disc in (mpd, mrd):
        fake = noise * (1.0 + gen_param)  # a one-parameter "generator"
        real_out, fake_out = disc(real), disc(fake)
        adv = generator_adversarial_loss(fake_out.logits, "hinge")
        (g_adv,) = torch.autograd.grad(adv, gen_param, retain_graph=True)
        fm = feature_matching_loss(real_out.features, fake_out.features)
        g_fm, g_real = torch.autograd.grad(fm, [gen_param, real], allow_unused=True)
        assert g_adv.abs().item() > 0 and g_fm.abs().item() > 0
        assert g_real is None  # real features are detached inside the loss
    # The discriminator loss trains the discriminator's weights.
    d_loss = discriminator_loss(mpd(real).logits, mpd(fake.detach()).logits, "lsgan")
    d_loss.backward()
    assert all(p.grad is not None for p in mpd.parameters())


def test_sum_reduction_is_dacs_convention() -> None:
    """``reduction="sum"`` adds sub-discriminators and feature layers (DAC, HiFi-GAN) instead of averaging."""
    ones, zeros = [torch.ones(2, 1, 3)], [torch.zeros(2, 1, 3)]
    # two sub-discriminators: (0) + (1 + 1) summed = 2 (averaged: 1)
    assert discriminator_loss(ones + zeros, zeros + ones, "lsgan", "sum").item() == pytest.approx(2.0)
    assert generator_adversarial_loss(zeros + zeros, "lsgan", "sum").item() == pytest.approx(2.0)
    real = [[torch.zeros(3), torch.zeros(5)], [torch.zeros(4)]]
    fake = [[torch.ones(3), torch.full((5,), 3.0)], [torch.full((4,), 2.0)]]
    assert feature_matching_loss(real, fake, "sum").item() == pytest.approx(1.0 + 3.0 + 2.0)
    assert feature_matching_loss(real, fake).item() == pytest.approx(((1.0 + 3.0) / 2 + 2.0) / 2)
    with pytest.raises(ValueError, match="reduction"):
        generator_adversarial_loss(zeros, "lsgan", "max")


def test_complex_mrd_sees_the_phase_the_magnitude_mrd_cannot() -> None:
    sr, t = 16000, torch.arange(16000) / 16000
    a, b = torch.sin(2 * torch.pi * 440 * t)[None], torch.cos(2 * torch.pi * 440 * t)[None]  # 90° apart
    magnitude = MultiResolutionDiscriminator(resolutions=((512, 128, 512),), channels=4)
    complex_ = MultiResolutionDiscriminator(resolutions=((512, 128, 512),), channels=4, spectrum="complex")
    branch_m, branch_c = magnitude.discriminators[0], complex_.discriminators[0]
    spec_a, spec_b = branch_c.spectrogram(a[:, None]), branch_c.spectrogram(b[:, None])
    assert spec_a.shape == (1, 2, 257, sr // 128 + 1)
    torch.testing.assert_close(torch.log1p(spec_a.pow(2).sum(1, keepdim=True).sqrt()), branch_m.spectrogram(a[:, None]))
    inner = slice(4, -4)  # frames away from the reflect-padded edges
    mag_a, mag_b = branch_m.spectrogram(a[:, None]), branch_m.spectrogram(b[:, None])
    assert (mag_a - mag_b)[..., inner].abs().max() < 0.01 * mag_a.abs().max()  # 0.15 % measured
    assert (spec_a - spec_b)[..., inner].abs().max() > 0.5 * spec_a.abs().max()
    logits, feats = complex_(a)
    assert len(logits) == 1 and logits[0].shape[:2] == (1, 1) and len(feats[0]) == 5
    with pytest.raises(ValueError, match="spectrum"):
        MultiResolutionDiscriminator(spectrum="power")
