"""Separation metrics: BSS-eval SDR and SI-SDR against fast_bss_eval, consistency, leakage, intervals."""

import fast_bss_eval
import numpy as np
import pytest
import torch
from scipy import stats

from musictok.metrics.separation import (bss_sdr, cross_leakage, leakage_db, leakage_matrix, mean_interval,
                                         mel_cross_leakage, mel_leakage_db, mixture_consistency, paired_interval,
                                         per_stem, silent_stem_level_db, spectral_consistency, stem_metrics)
from musictok.metrics.reconstruction import mel_distance, si_sdr


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


def _toy_mix(t: int = 16000, sr: int = 16000) -> torch.Tensor:
    """``(1, 4, t)`` stems: two tones, white noise and a random walk, at levels a mix could have."""
    g = torch.Generator().manual_seed(0)
    time = torch.arange(t, dtype=torch.float64) / sr
    noise = torch.randn(2, t, generator=g, dtype=torch.float64)
    return torch.stack([0.1 * torch.sin(2 * torch.pi * 440 * time), 0.05 * noise[0],
                        0.1 * torch.sin(2 * torch.pi * 80 * time), 0.001 * noise[1].cumsum(0)])[None]


def test_spectral_consistency_scores_level_not_phase():
    """Mel consistency: the true stems of a toy mix score near 0 (the stems' cross terms within a Mel band
    keep it off 0), and better than the same stems at half or twice the level and than silence — which
    waveform consistency ranks the other way round once the phases are made up."""
    sr = 16000
    stems = _toy_mix()
    mix = stems.sum(1)
    true = float(spectral_consistency(mix, stems, sr)[0])
    assert 0 <= true < 0.3
    for factor in (0.5, 2.0):  # every band off by log10 2 at each of the 7 resolutions
        assert float(spectral_consistency(mix, factor * stems, sr)[0]) == pytest.approx(7 * np.log10(2), abs=true)
    assert float(spectral_consistency(mix, 0 * stems, sr)[0]) > 10
    # one stem: the Mel distance between mixture and estimate
    est = 0.7 * mix + 0.01 * torch.randn(mix.shape, generator=torch.Generator().manual_seed(1), dtype=mix.dtype)
    assert torch.allclose(spectral_consistency(mix, est[:, None], sr), mel_distance(mix, est, sr))
    # the tones with their phases shifted by 90°: waveforms no longer add up (worse than silence), magnitudes do
    time = torch.arange(mix.shape[-1], dtype=torch.float64) / sr
    shifted = stems.clone()
    shifted[0, 0], shifted[0, 2] = 0.1 * torch.cos(2 * torch.pi * 440 * time), 0.1 * torch.cos(2 * torch.pi * 80 * time)
    assert float(mixture_consistency(mix, shifted)[0]) > float(mixture_consistency(mix, 0 * stems)[0])
    assert float(spectral_consistency(mix, shifted, sr)[0]) < true + 0.1
    with pytest.raises(ValueError, match="mix"):
        spectral_consistency(mix[:, :4000], stems, sr)


def test_silent_reference_leaves_mel_distance_undefined_and_reports_the_estimates_level():
    """A stem that does not play in a clip: its Mel distance would only say how quiet the estimate is, so
    it is NaN (as SI-SDR is) and left out of means; the level written into it is reported instead."""
    stems = _toy_mix().repeat(2, 1, 1)
    stems[0, 1] = 0.0  # the noise stem is silent in clip 0
    ests = stems + 0.01 * torch.randn(stems.shape, generator=torch.Generator().manual_seed(2), dtype=stems.dtype)
    scores = stem_metrics(stems.sum(1), stems, ests, 16000, waveform=False)
    mel = scores["mel_distance"]
    assert torch.isnan(mel[0, 1]) and int(torch.isnan(mel).sum()) == 1
    assert torch.equal(mel[1], per_stem(mel_distance, stems[1:], ests[1:], sample_rate=16000)[0])
    level = scores["silent_stem_level_db"]
    assert float(level[0, 1]) == pytest.approx(float(10 * torch.log10(ests[0, 1].pow(2).mean())))  # ≈ -40 dBFS
    assert float(level[0, 1]) == pytest.approx(-40.0, abs=0.5)  # white noise of standard deviation 0.01
    assert int(torch.isfinite(level).sum()) == 1
    assert float(silent_stem_level_db(stems, 0 * stems)[0, 1]) == pytest.approx(-120.0)  # silence: the floor
    assert mean_interval(mel[:, 1]).n == 1  # intervals leave the undefined clip out


def test_paired_interval_is_the_t_interval_of_differences():
    g = torch.Generator().manual_seed(6)
    base = torch.randn(20, generator=g, dtype=torch.float64) * 5  # clips differ a lot
    a, b = base + 0.3 + 0.1 * torch.randn(20, generator=g, dtype=torch.float64), base.clone()
    b[3] = float("nan")  # an undefined clip drops out of the pair
    iv = paired_interval(a, b, level=0.9)
    d = (a - b)[torch.isfinite(b)].numpy()
    lo, hi = stats.t.interval(0.9, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    assert iv.n == 19 and iv.low == pytest.approx(lo) and iv.high == pytest.approx(hi)
    assert iv.low > 0  # the shift is resolved by the pairs, not by the two unpaired intervals
    ia, ib = mean_interval(a), mean_interval(b)
    assert ia.low < ib.high
    with pytest.raises(ValueError, match="same clips"):
        paired_interval(a, b[:5])


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


def test_intervals_over_groups_average_each_group_first():
    """Clips of one piece are not independent: ``groups`` averages each piece's clips, then takes the interval
    over pieces; undefined values drop out inside their group."""
    values = [1.0, 3.0, 10.0, float("nan"), 5.0, 7.0]
    pieces = ["a", "a", "b", "b", "c", "c"]
    grouped = mean_interval(values, groups=pieces)
    assert grouped.n == 3 and grouped == mean_interval([2.0, 10.0, 6.0])
    paired = paired_interval(values, [0.0] * 6, groups=pieces)
    assert paired == grouped
    with pytest.raises(ValueError, match="one label per value"):
        mean_interval(values, groups=pieces[:-1])


def test_mean_interval_is_a_t_interval():
    x = [1.0, 2.0, 4.0, float("nan"), 3.5]
    iv = mean_interval(x, level=0.9)
    finite = np.array([1.0, 2.0, 4.0, 3.5])
    lo, hi = stats.t.interval(0.9, len(finite) - 1, loc=finite.mean(), scale=stats.sem(finite))
    assert iv.n == 4 and iv.mean == pytest.approx(finite.mean())
    assert iv.low == pytest.approx(lo) and iv.high == pytest.approx(hi)
    one = mean_interval([2.0])
    assert one.mean == 2.0 and np.isnan(one.low)


def _tones(freqs, seconds: float = 1.0, sr: int = 16000) -> torch.Tensor:
    t = torch.arange(int(seconds * sr), dtype=torch.float64) / sr
    return torch.stack([0.3 * torch.sin(2 * torch.pi * f * t) for f in freqs])[None]  # (1, S, T)


def test_mel_leakage_reads_magnitudes_so_a_made_up_phase_does_not_matter():
    from scipy.signal import hilbert

    refs = _tones([220.0, 1500.0, 5000.0])
    quadrature = torch.from_numpy(np.imag(hilbert(refs.numpy(), axis=-1)).copy())  # every stem 90° off
    clean = mel_leakage_db(refs, quadrature, 16000)
    assert bool((clean < -40).all()), clean  # same magnitudes: no leakage
    assert bool((leakage_db(refs, quadrature) > -40).any())  # which the waveform projection cannot see
    leaky = quadrature.clone()
    leaky[:, 0] = leaky[:, 0] + 0.5 * quadrature[:, 1]  # estimate 0 carries stem 1 at half amplitude
    db = mel_leakage_db(refs, leaky, 16000)
    assert -9 < float(db[0, 0]) < -3  # ≈ 20 log10(0.5) = -6 dB for equal-level stems
    assert bool((db[0, 1:] < -40).all())
    refs[0, 2] = 0
    assert torch.isnan(mel_leakage_db(refs, leaky, 16000)[0, 2])


def test_mel_cross_leakage_needs_no_reference_and_no_phase():
    ests = _tones([220.0, 1500.0, 5000.0])
    assert float(mel_cross_leakage(ests, 16000).max()) < 0.01  # apart in frequency: nothing shared
    dup = ests.clone()
    dup[:, 2] = -0.5 * ests[:, 0]  # another estimate's magnitude, opposite phase
    shares = mel_cross_leakage(dup, 16000)
    assert torch.allclose(shares[:, [0, 2]], torch.ones(1, 2, dtype=shares.dtype), atol=1e-3)


def test_stem_metrics_shapes():
    refs, ests = _signals(5, b=2, t=4096)
    out = stem_metrics(refs.sum(1), refs.float(), ests.float(), 16000)
    per_clip = {"consistency", "mel_consistency"}
    assert set(out) == {"si_sdr", "sdr", "bss_sdr", "mel_distance", "leakage_db", "mel_leakage_db",
                        "silent_stem_level_db"} | per_clip
    assert all(v.shape == (2, 4) for k, v in out.items() if k not in per_clip)
    assert all(out[k].shape == (2,) for k in per_clip)
    phase_free = stem_metrics(refs.sum(1), refs.float(), ests.float(), 16000, waveform=False)
    # no waveform comparison of a made-up phase
    assert set(phase_free) == {"mel_distance", "mel_leakage_db", "silent_stem_level_db"} | per_clip
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
