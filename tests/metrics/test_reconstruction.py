"""Reconstruction metrics: reference values, invariants and error messages."""

import math

import fast_bss_eval
import librosa
import numpy as np
import pytest
import torch

from musictok.metrics.reconstruction import (
    MEL_BANDS,
    MEL_WINDOWS,
    ReconstructionResult,
    log_mel_magnitude,
    mel_distance,
    reconstruction_metrics,
    sdr,
    si_sdr,
    stft_distance,
    waveform_l1,
)

SR = 16000


def _music_like(batch: int = 3, length: int = 4096, seed: int = 0) -> torch.Tensor:
    """A few harmonic partials per item plus a little noise: structured, deterministic."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float64) / SR
    out = []
    for b in range(batch):
        f0 = 110.0 * 2 ** (b / 3)
        x = sum(torch.sin(2 * math.pi * f0 * h * t) / h for h in range(1, 6))
        out.append(0.3 * x + 0.01 * torch.randn(length, generator=gen, dtype=torch.float64))
    return torch.stack(out)


def _noisy(x: torch.Tensor, level: float, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return x + level * torch.randn(x.shape, generator=gen, dtype=x.dtype)


# ----------------------------------------------------------------------------- SI-SDR / SDR
def _np_si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    ref = ref - ref.mean()
    est = est - est.mean()
    target = np.dot(est, ref) / np.dot(ref, ref) * ref
    return 10 * np.log10(np.sum(target**2) / np.sum((est - target) ** 2))


def _np_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    return 10 * np.log10(np.sum(ref**2) / np.sum((ref - est) ** 2))


def test_si_sdr_and_sdr_match_numpy_reference():
    ref = _music_like()
    est = 0.7 * _noisy(ref, 0.05) + 0.02  # gain and offset: SI-SDR forgives both, SDR neither
    ours_si = si_sdr(ref, est).numpy()
    ours_sdr = sdr(ref, est).numpy()
    for b in range(ref.shape[0]):
        r, e = ref[b].numpy(), est[b].numpy()
        assert ours_si[b] == pytest.approx(_np_si_sdr(r, e), abs=1e-3)
        assert ours_sdr[b] == pytest.approx(_np_sdr(r, e), abs=1e-3)
    assert (ours_si > ours_sdr).all()  # the gain error costs plain SDR


def test_si_sdr_matches_fast_bss_eval():
    ref = _music_like()
    est = 1.8 * _noisy(ref, 0.2)
    theirs = fast_bss_eval.si_sdr(ref.unsqueeze(1).numpy(), est.unsqueeze(1).numpy(), zero_mean=True)[:, 0]
    np.testing.assert_allclose(si_sdr(ref, est).numpy(), theirs, atol=1e-3)
    # With a 1-tap distortion filter, BSS-eval's SDR reduces to the same projection.
    theirs_sdr1 = fast_bss_eval.sdr(
        ref.unsqueeze(1).numpy(), est.unsqueeze(1).numpy(), filter_length=1, zero_mean=True
    )[:, 0]
    np.testing.assert_allclose(si_sdr(ref, est).numpy(), theirs_sdr1, atol=1e-3)


def test_si_sdr_is_scale_invariant_and_undefined_on_a_silent_reference():
    ref = _music_like(batch=1)[0]
    est = _noisy(ref, 0.1)
    assert float(si_sdr(ref, 5.0 * est)) == pytest.approx(float(si_sdr(ref, est)), abs=1e-6)
    silence = torch.zeros(100)
    assert math.isfinite(float(si_sdr(ref, torch.zeros_like(ref))))  # a silent estimate is just bad
    assert math.isnan(float(si_sdr(silence, silence))) and math.isnan(float(sdr(silence, 0.1 * torch.ones(100))))
    both = reconstruction_metrics(torch.stack([ref[:4096], torch.zeros(4096)]), torch.stack([est[:4096], est[:4096]]), SR)
    assert both.si_sdr == pytest.approx(float(si_sdr(ref[:4096], est[:4096])), abs=1e-4)  # mean over defined items


# ----------------------------------------------------------------------------- Mel distance
def test_mel_distance_zero_for_identical_and_increasing_with_noise():
    ref = _music_like()
    assert torch.all(mel_distance(ref, ref, SR) == 0)
    d = [mel_distance(ref, _noisy(ref, lvl), SR) for lvl in (0.01, 0.05, 0.2)]
    assert torch.all(d[0] > 0)
    assert torch.all(d[0] < d[1]) and torch.all(d[1] < d[2])


def test_mel_distance_of_halved_signal_is_seven_log10_2():
    # Halving the amplitude shifts every log10 Mel value by log10(2) (nothing hits the floor),
    # so the sum over 7 resolutions is exactly 7 * log10(2). Broadband noise keeps every band above the floor.
    ref = _noisy(_music_like(batch=1), 0.1)
    assert float(mel_distance(ref, 0.5 * ref, SR)[0]) == pytest.approx(7 * math.log10(2), rel=1e-6)


def test_mel_distance_batch_equals_items_and_accepts_shapes():
    ref = _music_like()
    est = _noisy(ref, 0.05)
    batch = mel_distance(ref, est, SR)
    assert batch.shape == (3,)
    items = torch.stack([mel_distance(ref[b], est[b], SR) for b in range(3)])
    assert items.shape == (3,)
    torch.testing.assert_close(batch, items, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(mel_distance(ref.unsqueeze(1), est.unsqueeze(1), SR), batch)
    assert mel_distance(ref[0], est[0], SR).ndim == 0


def test_length_mismatch_raises_unless_align():
    ref = _music_like(batch=2, length=4000)
    est = _noisy(ref, 0.05)[:, :3990]
    for fn in (lambda a: mel_distance(ref, est, SR, align=a), lambda a: stft_distance(ref, est, align=a),
               lambda a: si_sdr(ref, est, align=a), lambda a: waveform_l1(ref, est, align=a)):
        with pytest.raises(ValueError, match="ref has 4000 samples, est has 3990.*align=True"):
            fn(False)
    aligned = mel_distance(ref, est, SR, align=True)
    torch.testing.assert_close(aligned, mel_distance(ref[:, :3990], est, SR))
    result = reconstruction_metrics(ref, est, SR, align=True)
    assert result.mel_distance == pytest.approx(float(aligned.mean()), rel=1e-6)


def test_sample_rate_mismatch_and_bad_shapes_raise():
    ref = _music_like(batch=1)
    with pytest.raises(ValueError, match="24000 Hz.*resample"):
        mel_distance(ref, ref, SR, est_sample_rate=24000)
    with pytest.raises(ValueError, match="resample"):
        reconstruction_metrics(ref, ref, SR, est_sample_rate=24000)
    with pytest.raises(ValueError, match="mono"):
        mel_distance(torch.zeros(1, 2, 4096), torch.zeros(1, 2, 4096), SR)
    with pytest.raises(ValueError, match="longer clips"):
        mel_distance(torch.randn(800), torch.randn(800), SR)


def test_one_resolution_matches_librosa_melspectrogram():
    ref = _music_like(batch=1, length=6000)[0]
    window, n_mels = MEL_WINDOWS[4], MEL_BANDS[4]  # 512 samples, 80 bands
    ours = 10 ** log_mel_magnitude(ref.unsqueeze(0), SR, window, n_mels)[0].numpy()
    theirs = librosa.feature.melspectrogram(
        y=ref.numpy(), sr=SR, n_fft=window, hop_length=window // 4, win_length=window, window="hann",
        center=True, pad_mode="reflect", power=1.0, n_mels=n_mels, fmin=0.0, fmax=SR / 2,
    )
    np.testing.assert_allclose(ours, np.maximum(theirs, 1e-5), rtol=1e-4)


# ----------------------------------------------------------------------------- the others
def test_stft_distance_and_waveform_l1_values():
    ref = _music_like(batch=2)
    assert torch.all(stft_distance(ref, ref) == 0)
    # A gain of 2 moves every (unfloored) log magnitude by log10(2), in each window,
    # and the mean over windows keeps that value.
    assert torch.allclose(stft_distance(ref, 2 * ref), torch.full((2,), math.log10(2), dtype=ref.dtype), rtol=1e-6)
    single = stft_distance(ref, 2 * ref, windows=(512,))
    torch.testing.assert_close(single, stft_distance(ref, 2 * ref))
    torch.testing.assert_close(waveform_l1(ref, ref + 0.25), torch.full((2,), 0.25, dtype=ref.dtype))


def test_reconstruction_metrics_averages_the_batch():
    ref = _music_like().float()
    est = _noisy(ref, 0.05)
    result = reconstruction_metrics(ref, est, SR)
    assert isinstance(result, ReconstructionResult)
    assert result.mel_distance == pytest.approx(float(mel_distance(ref, est, SR).mean()), rel=1e-6)
    assert result.si_sdr == pytest.approx(float(si_sdr(ref, est).mean()), rel=1e-6)
    d = result.to_dict()
    assert set(d) == {"mel_distance", "stft_distance", "waveform_l1", "si_sdr", "sdr"}
    assert all(isinstance(v, float) for v in d.values())
