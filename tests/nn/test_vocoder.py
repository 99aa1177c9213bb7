"""Vocos-style vocoder: frame arithmetic, exact iSTFT inversion, clipping, overfitting, precision, I/O."""

from __future__ import annotations

import json
import math

import pytest
import torch

from musictok.nn import (
    ISTFTHead,
    MultiPeriodDiscriminator,
    MultiResolutionDiscriminator,
    MultiResolutionMelLoss,
    Vocoder,
    VocoderConfig,
    VocoderLossWeights,
    vocoder_discriminator_loss,
    vocoder_generator_losses,
)
from musictok.metrics.reconstruction import mel_distance
from musictok.spectral import MelConfig, multi_resolution_mel


def _tone(num_samples: int, sample_rate: int = 24000) -> torch.Tensor:
    """A decaying harmonic tone ``(1, T)``, peak below 0.6."""
    t = torch.arange(num_samples) / sample_rate
    partials = [(0.3, 220.0), (0.15, 440.0), (0.1, 660.0), (0.05, 1320.0)]
    wav = sum(a * torch.sin(2 * math.pi * f * t) for a, f in partials) * torch.exp(-2.0 * t)
    return wav.unsqueeze(0)


def test_config_defaults_match_spectral_and_round_trip() -> None:
    config = VocoderConfig()
    assert config.mel == MelConfig()
    assert (config.dim, config.intermediate_dim, config.num_layers, config.n_fft) == (256, 768, 8, 1024)
    for preset in (VocoderConfig.tiny(), VocoderConfig.small(), VocoderConfig.base(mel_mean=-4.0)):
        data = json.loads(json.dumps(preset.to_dict()))
        assert VocoderConfig.from_dict(data) == preset
    assert VocoderConfig.base().dim == 512 and VocoderConfig.base().intermediate_dim == 1536
    with pytest.raises(ValueError, match="unknown VocoderConfig keys"):
        VocoderConfig.from_dict({"width": 3})
    with pytest.raises(ValueError, match="unknown MelConfig keys"):
        VocoderConfig.from_dict({"mel": {"hop": 3}})
    with pytest.raises(ValueError, match="n_fft"):
        VocoderConfig(n_fft=256)


def test_preset_sizes() -> None:
    sizes = {
        name: sum(p.numel() for p in Vocoder(getattr(VocoderConfig, name)()).parameters())
        for name in ("tiny", "small")
    }
    assert sizes["tiny"] < 1e5 < sizes["small"] < 1.5e6


@pytest.mark.parametrize("num_samples", [12000, 12001, 12255, 4097])
def test_output_length(num_samples: int) -> None:
    torch.manual_seed(0)
    vocoder = Vocoder(VocoderConfig.tiny())
    wav = torch.randn(2, num_samples) * 0.1
    mel = vocoder.wav_to_mel(wav)
    frames = num_samples // 256 + 1
    assert mel.shape == (2, 128, frames)
    assert vocoder(mel).shape == (2, (frames - 1) * 256)
    assert vocoder(mel, length=num_samples).shape == (2, num_samples)
    assert vocoder.resynthesize(wav).shape == (2, num_samples)
    assert vocoder(mel[0]).shape == (1, (frames - 1) * 256)  # (n_mels, F) is one item
    with pytest.raises(ValueError, match="use a length in"):
        vocoder(mel, length=frames * 256)
    with pytest.raises(ValueError, match=r"\(B, 128, frames\)"):
        vocoder(mel[:, :64])


def test_istft_head_inverts_true_stft() -> None:
    # Give the head the exact log-magnitude and phase of a sine: it must give the sine back.
    head = ISTFTHead(dim=8, n_fft=1024, hop=256)
    t = torch.arange(6000) / 24000
    sine = 0.3 * torch.sin(2 * math.pi * 440.0 * t).unsqueeze(0)  # peak |X| = 0.3 * 1024 / 4 < 100
    spec = torch.stft(sine, 1024, 256, window=torch.hann_window(1024), center=True, return_complex=True)
    out = head.synthesize(spec.abs().log(), spec.angle(), length=sine.shape[-1])
    assert out.shape == sine.shape
    assert (out - sine).abs().max().item() < 1e-4
    # Without length: (F - 1) * hop samples, equal to the start of the signal.
    short = head.synthesize(spec.abs().log(), spec.angle())
    assert short.shape[-1] == (spec.shape[-1] - 1) * 256
    assert (short - sine[:, : short.shape[-1]]).abs().max().item() < 1e-4


def test_magnitude_clipping_keeps_output_finite() -> None:
    head = ISTFTHead(dim=4, n_fft=64, hop=16, max_magnitude=100.0)
    log_mag = torch.full((1, 33, 9), 1e4, requires_grad=True)  # exp() alone would be inf
    phase = torch.zeros(1, 33, 9)
    out = head.synthesize(log_mag, phase)
    assert torch.isfinite(out).all()
    # Clipping in the log domain gives exactly the output of asking for magnitude 100.
    same = head.synthesize(torch.full((1, 33, 9), math.log(100.0)), phase)
    torch.testing.assert_close(out, same)
    out.sum().backward()
    assert torch.isfinite(log_mag.grad).all() and log_mag.grad.abs().sum() == 0  # clipped: no gradient
    # The full path too: huge projection weights still give finite audio.
    big = ISTFTHead(dim=4, n_fft=64, hop=16)
    with torch.no_grad():
        big.proj.weight.fill_(1e3)
    assert torch.isfinite(big(torch.ones(1, 4, 9))).all()


def test_tiny_vocoder_overfits_one_clip() -> None:
    torch.manual_seed(0)
    wav = _tone(12000)  # 0.5 s
    vocoder = Vocoder(VocoderConfig.tiny())
    loss_fn = MultiResolutionMelLoss(sample_rate=24000)
    mel = vocoder.wav_to_mel(wav)
    optimizer = torch.optim.AdamW(vocoder.parameters(), lr=2e-3)
    losses = []
    for _ in range(200):
        loss = loss_fn(wav, vocoder(mel, length=wav.shape[-1]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert min(losses[-20:]) < 0.5 * losses[0]


def test_state_dict_round_trip_is_exact() -> None:
    torch.manual_seed(0)
    config = VocoderConfig.tiny(mel_mean=-3.0, mel_std=2.5)
    vocoder = Vocoder(config).eval()
    state = vocoder.state_dict()
    assert not any(k.startswith("features.") or k.endswith("window") for k in state)  # config-derived
    torch.manual_seed(1)
    clone = Vocoder(VocoderConfig.from_dict(config.to_dict())).eval()
    clone.load_state_dict(state)
    mel = vocoder.wav_to_mel(_tone(5000))
    assert torch.equal(vocoder(mel), clone(mel))


def test_bf16_autocast_runs_and_returns_float32() -> None:
    torch.manual_seed(0)
    vocoder = Vocoder(VocoderConfig.tiny())
    wav = _tone(6000)
    with torch.no_grad():
        reference = vocoder.resynthesize(wav)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = vocoder.resynthesize(wav)
    assert out.dtype == torch.float32 and out.shape == wav.shape
    assert torch.isfinite(out).all()
    # Only the backbone ran in bf16: the result stays close to the float32 one.
    assert (out - reference).abs().max() < 0.05 * reference.abs().max() + 1e-3


def test_multi_resolution_mel_loss() -> None:
    torch.manual_seed(0)
    wav = _tone(4800)
    loss_fn = MultiResolutionMelLoss(windows=(512, 256))
    assert loss_fn(wav, wav).item() == 0.0
    noisy = wav + 0.05 * torch.randn_like(wav)
    assert loss_fn(wav, noisy).item() > 0.1
    assert loss_fn(wav[:, None], noisy[:, None]) == loss_fn(wav, noisy)  # (B, 1, T) accepted
    with pytest.raises(ValueError, match="differ"):
        loss_fn(wav, wav[:, :-1])
    with pytest.raises(ValueError, match="subset"):
        MultiResolutionMelLoss(windows=(500,))


def test_mel_loss_is_the_metric() -> None:
    """One Mel distance: the training loss over all 7 resolutions is the evaluation metric's batch mean,
    and the old natural-log mean over resolutions is the same quantity times ln(10) / 7."""
    torch.manual_seed(0)
    wav = torch.stack([_tone(9600)[0], 0.3 * torch.randn(9600)])
    fake = (wav + 0.05 * torch.randn_like(wav)).requires_grad_()
    loss = MultiResolutionMelLoss(24000)(wav, fake)
    metric = mel_distance(wav, fake.detach(), 24000)
    torch.testing.assert_close(loss.detach(), metric.mean().float())
    old = torch.stack([(f - r).abs().mean() for r, f in zip(multi_resolution_mel(wav), multi_resolution_mel(fake))]).mean()
    torch.testing.assert_close(loss.detach() * math.log(10) / 7, old.detach(), rtol=1e-4, atol=1e-6)
    loss.backward()
    assert fake.grad is not None and float(fake.grad.abs().sum()) > 0
    assert VocoderLossWeights().mel == pytest.approx(45 * math.log(10) / 7)  # the old weighting, kept


def test_gan_loss_helpers() -> None:
    torch.manual_seed(0)
    vocoder = Vocoder(VocoderConfig.tiny())
    mpd = MultiPeriodDiscriminator(periods=(2, 3), channels=(8, 16))
    mrd = MultiResolutionDiscriminator(resolutions=((512, 128, 512),), channels=8)
    mel_loss = MultiResolutionMelLoss(windows=(512,))
    real = _tone(4800)
    fake = vocoder.resynthesize(real)

    losses = vocoder_generator_losses(real, fake, [mpd, mrd], mel_loss)
    assert set(losses) == {"mel", "adv", "fm", "total"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    torch.testing.assert_close(losses["total"], VocoderLossWeights().mel * losses["mel"] + losses["adv"] + 2 * losses["fm"])
    losses["total"].backward()
    assert all(p.grad is not None for p in vocoder.parameters())

    mpd.zero_grad()
    d_loss = vocoder_discriminator_loss(real, fake, [mpd, mrd], kind="lsgan")
    d_loss.backward()
    assert d_loss.item() > 0 and all(p.grad is not None for p in mpd.parameters())


def test_pinv_magnitude_prior_starts_at_the_pseudo_inverse() -> None:
    """With the FreeV prior, a fresh head adds nothing to the pseudo-inverse magnitude: the output's
    frames are the prior's magnitudes with the head's phases, and training moves away from there."""
    torch.manual_seed(0)
    vocoder = Vocoder(VocoderConfig.tiny(magnitude_prior="pinv")).eval()
    wav = _tone(12000)
    mel = vocoder.wav_to_mel(wav)
    prior = vocoder.magnitude_prior(mel)
    assert prior.shape == (1, 513, mel.shape[-1])
    # the prior is the least-squares magnitude: its Mel is close to the input Mel where there is energy
    fb = vocoder.mel_pinv.pinverse()
    rebuilt = torch.log(torch.clamp(fb @ prior.exp(), min=1e-5))
    loud = mel > mel.max() - 4.0
    assert (rebuilt - mel)[loud].abs().mean() < 0.05
    features = vocoder.backbone((mel - vocoder.config.mel_mean) / vocoder.config.mel_std)
    angle = vocoder.head.proj(features.transpose(1, 2)).transpose(1, 2).chunk(2, dim=1)[1]
    expected = vocoder.head.synthesize(prior, angle)
    assert torch.allclose(vocoder(mel), expected, atol=1e-6)
    assert "mel_pinv" not in vocoder.state_dict()  # derived from the config, not saved


def test_magnitude_prior_config_is_checked() -> None:
    with pytest.raises(ValueError, match="magnitude_prior"):
        VocoderConfig.tiny(magnitude_prior="gl")
    with pytest.raises(ValueError, match="n_fft"):
        VocoderConfig.tiny(magnitude_prior="pinv", n_fft=2048)
    assert VocoderConfig.from_dict(VocoderConfig.tiny(magnitude_prior="pinv").to_dict()).magnitude_prior == "pinv"


def test_phase_losses_are_zero_for_the_true_phase_and_blind_to_whole_turns() -> None:
    from musictok.nn.vocoder import anti_wrapping, phase_losses

    torch.manual_seed(0)
    wav = 0.1 * torch.randn(2, 4000)
    spec = torch.stft(wav, 256, 64, window=torch.hann_window(256), center=True, return_complex=True)
    turns = 2 * math.pi * torch.randint(-3, 4, spec.shape).float()  # whole turns added anywhere
    for value in phase_losses(spec.angle() + turns, wav, 256, 64).values():
        assert value.item() < 1e-4
    wrong = phase_losses(spec.angle() + 1.0, wav, 256, 64)  # a constant offset: wrong phase, same differences
    assert wrong["ip"].item() == pytest.approx(1.0, abs=1e-4) and wrong["gd"].item() < 1e-4 and wrong["iaf"].item() < 1e-4
    assert anti_wrapping(torch.tensor([2 * math.pi - 0.1, -0.1, math.pi])).tolist() == pytest.approx([0.1, 0.1, math.pi], abs=1e-5)
    with pytest.raises(ValueError, match="does not match"):
        phase_losses(spec.angle()[..., :-1], wav, 256, 64)


def test_vocoder_returns_the_heads_phase_on_request() -> None:
    voc = Vocoder(VocoderConfig.tiny(magnitude_prior="pinv")).eval()
    mel = voc.wav_to_mel(0.1 * torch.randn(1, 4000))
    wav, phase = voc(mel, length=4000, return_phase=True)
    assert torch.equal(wav, voc(mel, length=4000))
    assert phase.shape == (1, voc.config.n_fft // 2 + 1, mel.shape[-1])
