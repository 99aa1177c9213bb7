"""Separation metrics: BSS-eval SDR and SI-SDR against fast_bss_eval, consistency, leakage, intervals."""

import fast_bss_eval
import numpy as np
import pytest
import torch
from scipy import stats

from musictok.metrics.separation import (bss_sdr, cross_leakage, leakage_db, leakage_matrix, mean_interval,
                                         mixture_consistency, per_stem, stem_metrics)
from musictok.metrics.reconstruction import si_sdr


def _signals(seed: int = 0, b: int = 3, s: int = 4, t: int = 8000):
    g = torch.Generator().manual_seed(seed)
    refs = torch.randn(b, s, t, generator=g, dtype=torch.float64)
    # estimates: a filtered copy of the reference, some of another stem, and noise
    kernel = torch.tensor([1.0, 0.5, -0.25], dtype=torch.float64)
    filtered = torch.nn.functional.conv1d(refs.reshape(-1, 1, t), kernel.flip(0)[None, None], padding=2)[..., :t]
    ests = filtered.reshape(b, s, t) + 0.3 * refs.roll(1, dims=1) + 0.2 * torch.randn(b, s, t, generator=g, dtype=torch.float64)
    return refs, ests


def test_bss_sdr_matches_fast_bss_eval():
    refs, ests = _signals()
    ours = per_stem(bss_sdr, refs, ests)
    for s in range(refs.shape[1]):  # one reference at a time: no permutation for fast_bss_eval to solve
        theirs = fast_bss_eval.sdr(refs[:, s: s + 1].numpy(), ests[:, s: s + 1].numpy(), filter_length=512)[:, 0]
        np.testing.assert_allclose(ours[:, s].numpy(), theirs, atol=1e-3)
    # a 512-tap filter forgives the short filter that plain SDR and SI-SDR count as distortion
    assert bool((ours > per_stem(si_sdr, refs, ests)).all())


def test_si_sdr_per_stem_matches_fast_bss_eval():
    refs, ests = _signals(1)
    ours = per_stem(si_sdr, refs, ests)
    theirs = fast_bss_eval.si_sdr(refs.reshape(-1, 1, refs.shape[-1]).numpy(),
                                  ests.reshape(-1, 1, ests.shape[-1]).numpy(), zero_mean=True)[:, 0]
    np.testing.assert_allclose(ours.reshape(-1).numpy(), theirs, atol=1e-4)


def test_mixture_consistency():
    refs, _ = _signals(2)
    mix = refs.sum(1)
    assert float(mixture_consistency(mix, refs).max()) < 1e-12
    half = mixture_consistency(mix, refs * 0.5)
    assert torch.allclose(half, torch.full_like(half, 0.5))
    with pytest.raises(ValueError, match="mix"):
        mixture_consistency(mix[:, :100], refs)


def test_leakage_by_projection():
    refs, _ = _signals(3, s=3)
    ests = refs.clone()
    ests[:, 0] = refs[:, 0] + 0.1 * refs[:, 1]  # estimate 0 carries 1 % of stem 1's energy (equal-power stems)
    m = leakage_matrix(refs, ests)
    assert m.shape == (3, 3, 3)
    assert torch.allclose(m[:, 0, 1], torch.full((3,), 0.01 / 1.01, dtype=m.dtype), atol=2e-3)
    assert torch.allclose(m[:, 1], torch.eye(3, dtype=m.dtype)[1].expand(3, 3), atol=1e-6)
    db = leakage_db(refs, ests)
    energy = refs.pow(2).sum(-1)
    expected = 10 * torch.log10(0.01 * energy[:, 1] / energy[:, 0])
    assert torch.allclose(db[:, 0], expected, atol=1e-3)
    assert bool((db[:, 1:] < -100).all())  # perfect estimates: no leakage
    # a silent stem: undefined, not a number of the floor
    refs[0, 2] = 0
    assert torch.isnan(leakage_db(refs, refs)[0, 2])


def test_cross_leakage_needs_no_reference():
    refs, _ = _signals(4, s=3)
    assert float(cross_leakage(refs).max()) < 0.01  # independent noises: nearly orthogonal
    dup = refs.clone()
    dup[:, 2] = dup[:, 0] * 0.5
    assert torch.allclose(cross_leakage(dup)[:, [0, 2]], torch.ones(3, 2, dtype=dup.dtype), atol=1e-6)


def test_mean_interval_is_a_t_interval():
    x = [1.0, 2.0, 4.0, float("nan"), 3.5]
    iv = mean_interval(x, level=0.9)
    finite = np.array([1.0, 2.0, 4.0, 3.5])
    lo, hi = stats.t.interval(0.9, len(finite) - 1, loc=finite.mean(), scale=stats.sem(finite))
    assert iv.n == 4 and iv.mean == pytest.approx(finite.mean())
    assert iv.low == pytest.approx(lo) and iv.high == pytest.approx(hi)
    one = mean_interval([2.0])
    assert one.mean == 2.0 and np.isnan(one.low)


def test_stem_metrics_shapes():
    refs, ests = _signals(5, b=2, t=4096)
    out = stem_metrics(refs.sum(1), refs.float(), ests.float(), 16000)
    assert set(out) == {"si_sdr", "sdr", "bss_sdr", "mel_distance", "leakage_db", "consistency"}
    assert all(v.shape == (2, 4) for k, v in out.items() if k != "consistency") and out["consistency"].shape == (2,)
    phase_free = stem_metrics(refs.sum(1), refs.float(), ests.float(), 16000, waveform=False)
    assert set(phase_free) == {"mel_distance", "consistency"}  # no waveform comparison of a made-up phase
    assert torch.equal(phase_free["mel_distance"], out["mel_distance"])


def test_bss_sdr_of_a_silent_reference_is_nan_not_an_error():
    """A stem that does not play in a clip (digital silence, as in some test clips of the chorales) makes the
    filter's normal equations singular; its SDR is undefined (NaN) and the other stems are still scored."""
    refs, ests = _signals(5, s=3)
    refs[0, 1] = 0.0
    values = per_stem(bss_sdr, refs, ests)
    assert torch.isnan(values[0, 1]) and bool(torch.isfinite(values[0, [0, 2]]).all())
    assert torch.allclose(values[1:], per_stem(bss_sdr, refs[1:], ests[1:]))
    scores = stem_metrics(refs.sum(1), refs, ests, 16000)
    assert torch.isnan(scores["bss_sdr"][0, 1]) and torch.isnan(scores["si_sdr"][0, 1])
