"""Spectral front-end against librosa, plus frame arithmetic and Griffin-Lim."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from musictok.spectral import (
    DAC_MEL_RESOLUTIONS,
    MelConfig,
    MelSpectrogram,
    MultiResolutionMel,
    griffin_lim,
    mel_filterbank,
    multi_resolution_mel,
)


def _chord(seconds: float = 1.0, sample_rate: int = 24000, seed: int = 0) -> np.ndarray:
    """Three partials plus a little noise, so every Mel band is well above the log floor."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    rng = np.random.default_rng(seed)
    wav = sum(a * np.sin(2 * np.pi * f * t) for a, f in [(0.4, 220), (0.2, 1320), (0.1, 5000)])
    return (wav + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)


@pytest.mark.parametrize(
    "sample_rate, n_fft, n_mels, fmin, fmax",
    [
        (24000, 1024, 128, 0.0, None),
        (22050, 2048, 80, 30.0, 8000.0),
        (16000, 512, 64, 0.0, None),
        (24000, 32, 5, 0.0, None),
        (24000, 2048, 320, 0.0, None),
    ],
)
def test_mel_filterbank_matches_librosa(sample_rate, n_fft, n_mels, fmin, fmax) -> None:
    ours = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
    ref = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    assert ours.shape == (n_mels, n_fft // 2 + 1)
    assert ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-5, rtol=0)


def test_mel_filterbank_rejects_bad_range() -> None:
    with pytest.raises(ValueError, match="fmax"):
        mel_filterbank(24000, 1024, 80, fmin=0.0, fmax=20000.0)


def test_log_mel_matches_librosa() -> None:
    # torch.stft pads with "reflect" by default; librosa's default is "constant", so ask for reflect.
    config = MelConfig()
    wav = _chord()
    ours = MelSpectrogram(config)(torch.from_numpy(wav))[0].numpy()
    ref_mel = librosa.feature.melspectrogram(
        y=wav, sr=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
        win_length=config.win_length, n_mels=config.n_mels, power=1.0, center=True, pad_mode="reflect",
    )
    ref = np.log(np.maximum(ref_mel, 1e-5))
    assert ours.shape == ref.shape
    assert ref.min() > np.log(1e-5) + 1.0  # the comparison is not about the floor
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


def test_log_floor_and_natural_log() -> None:
    mel = MelSpectrogram(MelConfig())
    silence = mel(torch.zeros(4800))
    assert torch.allclose(silence, torch.full_like(silence, float(np.log(1e-5))))


@pytest.mark.parametrize("num_samples", [513, 4800, 4801, 24000, 24255, 24256])
def test_frame_count(num_samples: int) -> None:
    config = MelConfig()
    mel = MelSpectrogram(config)
    out = mel(torch.randn(num_samples, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (1, config.n_mels, num_samples // config.hop_length + 1)
    assert mel.frames_for(num_samples) == out.shape[-1]
    assert config.frames_for(config.samples_for(out.shape[-1])) == out.shape[-1]


def test_batched_equals_single_and_buffers_follow_module() -> None:
    mel = MelSpectrogram(MelConfig(n_mels=64))
    wav = torch.randn(3, 6000, generator=torch.Generator().manual_seed(1))
    batched = mel(wav)
    single = torch.cat([mel(w) for w in wav])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)
    names = {name for name, _ in mel.named_buffers()}
    assert names == {"window", "filterbank"}
    assert mel.state_dict() == {}  # derived from the config, not saved
    double = MelSpectrogram(MelConfig(n_mels=64)).to(torch.float64)
    assert double(wav).dtype == torch.float64
    torch.testing.assert_close(double(wav).float(), batched, rtol=1e-4, atol=1e-4)
    assert mel.half()(wav).dtype == torch.float32  # never computed in half precision


def test_bad_inputs_raise() -> None:
    mel = MelSpectrogram(MelConfig())
    with pytest.raises(ValueError, match="too short"):
        mel(torch.zeros(100))
    with pytest.raises(ValueError, match="waveform"):
        mel(torch.zeros(1, 1, 4800))
    with pytest.raises(ValueError, match="win_length"):
        MelConfig(n_fft=512, win_length=1024)


def test_multi_resolution_mel_shapes_and_values() -> None:
    wav = torch.from_numpy(_chord(0.5))[None]
    outs = multi_resolution_mel(wav)
    assert len(outs) == len(DAC_MEL_RESOLUTIONS)
    for out, (n_fft, hop, n_mels) in zip(outs, DAC_MEL_RESOLUTIONS):
        assert out.shape == (1, n_mels, wav.shape[-1] // hop + 1)
    one = MelSpectrogram(MelConfig(n_fft=512, hop_length=128, win_length=512, n_mels=80))(wav)
    torch.testing.assert_close(outs[4], one)
    module = MultiResolutionMel(resolutions=[(256, 64, 40)])
    torch.testing.assert_close(module(wav)[0], outs[3])


def test_griffin_lim_reconstructs_log_mel() -> None:
    config = MelConfig()
    mel = MelSpectrogram(config)
    t = torch.arange(24000) / 24000
    wav = 0.5 * torch.sin(2 * torch.pi * 440 * t) + 0.3 * torch.sin(2 * torch.pi * 1234 * t)
    target = mel(wav)
    rebuilt = griffin_lim(target, config, n_iter=32, seed=0)
    assert rebuilt.shape == (1, config.samples_for(target.shape[-1]))
    error = (mel(rebuilt) - target).abs().mean().item()
    random_phase = (mel(griffin_lim(target, config, n_iter=0, seed=0)) - target).abs().mean().item()
    assert error < 0.3
    assert error < 0.6 * random_phase
    # Deterministic for a seed, and the seed matters.
    first = griffin_lim(target, config, n_iter=4, seed=3)
    assert torch.equal(first, griffin_lim(target, config, n_iter=4, seed=3))
    assert not torch.equal(first, griffin_lim(target, config, n_iter=4, seed=4))


def test_griffin_lim_checks_shape_and_length() -> None:
    config = MelConfig()
    log_mel = torch.zeros(1, config.n_mels, 10)
    with pytest.raises(ValueError, match="n_mels|log-Mel"):
        griffin_lim(torch.zeros(1, 7, 10), config)
    with pytest.raises(ValueError, match="length"):
        griffin_lim(log_mel, config, length=10 * config.hop_length)
    out = griffin_lim(log_mel[0], config, n_iter=1, length=9 * config.hop_length + 5)
    assert out.shape == (1, 9 * config.hop_length + 5)
