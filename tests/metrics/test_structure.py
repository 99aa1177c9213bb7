"""Self-similarity statistics: a loop recurs and shows its period, noise does neither."""

import numpy as np
import torch

from musictok.metrics.structure import lag_profile, recurrence, self_similarity, structure_stats

SR = 16000


def _tones(freqs, seconds_each):
    t = torch.arange(int(seconds_each * SR)) / SR
    return torch.cat([0.3 * torch.sin(2 * torch.pi * f * t) for f in freqs])


def test_a_loop_recurs_at_its_period_and_noise_does_not():
    loop = _tones([300, 500, 700, 900] * 4, 1.0)  # a 4-s loop, four times
    stats = structure_stats(loop, SR, segment_seconds=0.5, max_lag_seconds=8.0, min_lag_seconds=4.0)
    prof = np.asarray(stats.lag_profile)
    assert prof[7] > 0.95 and prof[15] > 0.95  # lags of 4 s and 8 s: the same bar again
    assert prof[3] < 0.2  # 2 s apart: another tone
    assert stats.recurrence > 0.95  # from 4 s on, every segment has its twin one period back
    noise = 0.3 * torch.randn(16 * SR, generator=torch.Generator().manual_seed(0))
    n = structure_stats(noise, SR, segment_seconds=0.5, max_lag_seconds=8.0, min_lag_seconds=2.0)
    assert n.recurrence < 0.6 and abs(np.nanmean(n.lag_profile)) < 0.2
    assert n.seconds == 16.0


def test_profile_and_recurrence_on_a_known_matrix():
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    sim = self_similarity(f)
    assert torch.allclose(sim, torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]], dtype=torch.float64))
    assert lag_profile(sim, 4)[:3].tolist() == [0.0, 1.0, 0.0] and np.isnan(lag_profile(sim, 4)[3])
    assert recurrence(sim, 2) == 1.0 and recurrence(sim, 3) == 0.0 and np.isnan(recurrence(sim, 4))
