"""Fréchet distance: closed forms for Gaussians, ≈ 0 for a set against itself, growing with added noise."""

import numpy as np
import pytest
import scipy.linalg
import torch

from musictok.metrics.frechet import (
    frechet_distance,
    frechet_distance_of,
    frechet_with_interval,
    gaussian_stats,
    mel_statistics,
    split_halves,
)


def _random_cov(rng, d, rank=None):
    a = rng.standard_normal((d, rank or d))
    return a @ a.T / d


def test_closed_forms():
    # 1-D: (m1 - m2)² + (s1 - s2)²
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]])) == pytest.approx(9 + 1)
    # commuting (diagonal) covariances: |Δμ|² + Σ (√a − √b)²
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.0])
    mu = np.array([0.5, 0.0, -1.0])
    expected = float(mu @ mu + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))
    assert frechet_distance(mu, np.diag(a), np.zeros(3), np.diag(b)) == pytest.approx(expected)
    # a rotation of both Gaussians changes nothing
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))
    assert frechet_distance(q @ mu, q @ np.diag(a) @ q.T, np.zeros(3), q @ np.diag(b) @ q.T) == pytest.approx(expected)


def test_general_covariances_match_the_sqrtm_formula():
    """The formula as FID/FAD implementations write it (scipy's sqrtm of the product), on full-rank inputs."""
    rng = np.random.default_rng(1)
    for d in (2, 8, 32):
        c1, c2 = _random_cov(rng, d) + 0.1 * np.eye(d), _random_cov(rng, d) + 0.1 * np.eye(d)
        m1, m2 = rng.standard_normal(d), rng.standard_normal(d)
        ref = float(np.sum((m1 - m2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * np.trace(scipy.linalg.sqrtm(c1 @ c2).real))
        assert frechet_distance(m1, c1, m2, c2) == pytest.approx(ref, rel=1e-8, abs=1e-8)


def test_rank_deficient_covariances_stay_finite_and_symmetric():
    rng = np.random.default_rng(2)
    c1, c2 = _random_cov(rng, 16, rank=3), _random_cov(rng, 16, rank=5)
    m = rng.standard_normal(16)
    d12, d21 = frechet_distance(m, c1, 0 * m, c2), frechet_distance(0 * m, c2, m, c1)
    assert np.isfinite(d12) and d12 == pytest.approx(d21, rel=1e-9)
    assert frechet_distance(m, c1, m, c1) == pytest.approx(0.0, abs=1e-9)


def test_self_is_zero_and_noise_makes_it_grow():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((500, 12)) @ rng.standard_normal((12, 12))
    assert frechet_distance_of(x, x) == pytest.approx(0.0, abs=1e-8)
    values = [frechet_distance_of(x, x + s * rng.standard_normal(x.shape)) for s in (0.1, 0.3, 1.0, 3.0)]
    assert all(a < b for a, b in zip(values, values[1:])) and values[0] > 0


def test_interval_and_floor():
    rng = np.random.default_rng(4)
    clips, per = 40, 10
    groups = np.repeat(np.arange(clips), per)
    real = rng.standard_normal((clips * per, 6)) + np.repeat(rng.standard_normal((clips, 6)), per, axis=0)
    a, b = split_halves(groups, seed=0)
    assert set(groups[a]).isdisjoint(groups[b]) and len(a) + len(b) == len(groups)
    floor = frechet_with_interval(real[a], real[b], groups[a], groups[b], resamples=100)
    shifted = real[a] + 2.0
    gen = frechet_with_interval(shifted, real[b], groups[a], groups[b], resamples=100)
    assert floor.low <= floor.value <= floor.high and gen.low <= gen.value <= gen.high
    assert gen.low > floor.high  # a 2σ shift in every dimension is far above two halves of real data
    assert gen.value == pytest.approx(frechet_distance_of(shifted, real[b]))
    assert floor.clips == (20, 20) and floor.windows == (200, 200)


def test_mel_statistics_windows_and_what_they_see():
    sr = 16000
    t = torch.arange(3 * sr) / sr
    tone = 0.3 * torch.sin(2 * torch.pi * 440 * t)
    e = mel_statistics(tone, sr, window_seconds=1.0, hop_seconds=0.5, n_mels=16, stft_window=1024)
    assert e.shape == (5, 32)  # 1-s windows every 0.5 s over 3 s
    assert mel_statistics(tone[: sr // 2], sr, n_mels=16, stft_window=1024).shape == (1, 32)
    noise = 0.3 * torch.randn(3 * sr, generator=torch.Generator().manual_seed(0))
    n = mel_statistics(noise, sr, n_mels=16, stft_window=1024)
    louder = mel_statistics(2 * noise, sr, n_mels=16, stft_window=1024)
    # a gain of 2 moves every band's mean by log10(2) (noise keeps every band above the floor), its spread not at all
    assert torch.allclose(louder[:, :16] - n[:, :16], torch.full_like(n[:, :16], np.log10(2)), atol=1e-4)
    assert torch.allclose(louder[:, 16:], n[:, 16:], atol=1e-4)
    far = frechet_distance_of(e.numpy(), n.numpy())
    assert far > 10 * frechet_distance_of(e.numpy()[:3], e.numpy()[2:])


def test_gaussian_stats_refuses_one_window():
    with pytest.raises(ValueError, match="N >= 2"):
        gaussian_stats(np.zeros((1, 3)))
