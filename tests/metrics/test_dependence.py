"""Dependence metrics: MI estimators on known distributions, token layouts, MMD."""

import math

import pytest
import torch

from musictok.metrics.dependence import (
    DependenceResult,
    conditional_entropy_left,
    dependence_metrics,
    inter_codebook_mi,
    mmd_joint_vs_product,
    mutual_information,
    neighbour_mi,
    normalized_mutual_information,
    shuffle_corrected_mi,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- pairwise MI
def test_independent_codes_have_near_zero_corrected_mi():
    n, k = 20000, 16
    x = torch.randint(0, k, (n,), generator=_gen(0))
    y = torch.randint(0, k, (n,), generator=_gen(1))
    plugin = mutual_information(x, y, k, k, bias_correction=None, clamp=False)
    corrected = mutual_information(x, y, k, k, clamp=False)
    # The plug-in bias is about (K-1)^2 / (2 N ln 2) = 0.0081 bits; the estimator's spread ~0.0008.
    assert corrected < plugin
    assert plugin - corrected == pytest.approx(225 / (2 * n * math.log(2)), rel=0.02)
    assert abs(corrected) < 0.003
    assert mutual_information(x, y, k, k) < 0.01


def test_copied_codes_share_their_whole_entropy():
    n, k = 20000, 16
    x = torch.randint(0, k, (n,), generator=_gen(2))
    for correction in ("miller-madow", None):
        mi = mutual_information(x, x.clone(), k, k, bias_correction=correction)
        assert mi == pytest.approx(math.log2(k), abs=0.01)
        assert normalized_mutual_information(x, x.clone(), k, k, bias_correction=correction) == pytest.approx(1.0)
    # A relabelled copy is just as redundant.
    assert normalized_mutual_information(x, (x * 3 + 1) % k, k, k) == pytest.approx(1.0)


def test_mi_of_a_noisy_channel_matches_closed_form():
    # Binary symmetric channel with flip probability 0.1: I = 1 - h(0.1) bits.
    n = 20000
    x = torch.randint(0, 2, (n,), generator=_gen(3))
    flip = (torch.rand(n, generator=_gen(4)) < 0.1).long()
    y = x ^ flip
    h = -(0.1 * math.log2(0.1) + 0.9 * math.log2(0.9))
    assert mutual_information(x, y, 2, 2) == pytest.approx(1 - h, abs=0.01)


def test_mi_input_errors():
    with pytest.raises(ValueError, match="paired"):
        mutual_information(torch.zeros(3, dtype=torch.long), torch.zeros(4, dtype=torch.long), 2, 2)
    with pytest.raises(ValueError, match="bias_correction"):
        mutual_information(torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long), 2, 2,
                           bias_correction="jackknife")


# ----------------------------------------------------------------------------- token layouts
def _layout_codes() -> torch.Tensor:
    """(N=200, frames=50, slots=3): slot 1 copies slot 0, slot 2 independent; slot 0 is sticky in time."""
    g = _gen(5)
    n, t, k = 200, 50, 8
    first = torch.randint(0, k, (n, t), generator=g)
    keep = torch.rand(n, t, generator=g) < 0.5
    sticky = first.clone()
    for i in range(1, t):  # with probability 1/2 repeat the previous code
        sticky[:, i] = torch.where(keep[:, i], sticky[:, i - 1], first[:, i])
    indep = torch.randint(0, k, (n, t), generator=g)
    return torch.stack([sticky, sticky.clone(), indep], dim=-1)


def test_inter_codebook_mi_matrix():
    codes = _layout_codes()
    res = inter_codebook_mi(codes, 8)
    mi = res.mutual_information
    assert mi.shape == (3, 3)
    torch.testing.assert_close(mi, mi.T)
    assert mi[0, 1] == pytest.approx(float(mi[0, 0]), abs=1e-9)  # copy: MI = entropy
    assert mi[0, 0] == pytest.approx(3.0, abs=0.01)
    assert mi[0, 2] < 0.01 and mi[1, 2] < 0.01
    assert res.mean_off_diagonal == pytest.approx(float(mi[0, 1] + mi[0, 2] + mi[1, 2]) * 2 / 6)
    assert res.normalized_mutual_information[0, 1] == pytest.approx(1.0)


def test_neighbour_mi_and_conditional_entropy():
    codes = _layout_codes()
    # Sticky slot: P(x_t = x_{t-1}) = 1/2 + 1/16, otherwise uniform over the other 7.
    p_same = 0.5 + 0.5 / 8
    p_other = (1 - p_same) / 7
    h_cond = -(p_same * math.log2(p_same) + 7 * p_other * math.log2(p_other))
    per_slot = [3.0 - h_cond, 3.0 - h_cond, 0.0]
    assert neighbour_mi(codes, 8, "time") == pytest.approx(sum(per_slot) / 3, abs=0.01)
    assert neighbour_mi(codes[..., :1], 8, "time") == pytest.approx(3.0 - h_cond, abs=0.01)
    # Across slots: pairs (0,1) copy -> 3 bits, (1,2) independent -> 0.
    assert neighbour_mi(codes, 8, "slot") == pytest.approx(1.5, abs=0.01)
    assert conditional_entropy_left(codes[..., :1], 8) == pytest.approx(h_cond, abs=0.01)
    assert conditional_entropy_left(codes[..., 2:], 8) == pytest.approx(3.0, abs=0.01)
    with pytest.raises(ValueError, match="'time' or 'slot'"):
        neighbour_mi(codes, 8, "band")


def test_dependence_metrics_summary():
    codes = _layout_codes()
    result = dependence_metrics(codes, [8, 8, 8], resamples=50)
    assert isinstance(result, DependenceResult)
    d = result.to_dict()
    for key in ("mutual_information", "normalized_mutual_information", "neighbour_mutual_information_time",
                "neighbour_normalized_mutual_information_time", "neighbour_mutual_information_slot"):
        assert {key, f"{key}_ci", f"{key}_raw", f"{key}_shuffled", f"{key}_pairs"} <= set(d)
        lo, hi = d[f"{key}_ci"]
        assert lo <= d[key] <= hi
        assert d[key] == pytest.approx(d[f"{key}_raw"] - d[f"{key}_shuffled"])
    assert d["mmd_joint_vs_product"] is None and d["bias_correction"] == "shuffle"
    assert d["entropy"] == pytest.approx(3.0, abs=0.01)
    # K^2 = 64 << n = 10,000: the corrected values are the true ones
    assert d["neighbour_mutual_information_slot"] == pytest.approx(1.5, abs=0.01)
    assert d["mutual_information"] == pytest.approx(1.0, abs=0.01)  # (copy 3 + 0 + 0) / 3 pairs
    matrix = torch.tensor(d["mutual_information_matrix"])
    assert matrix[0, 1] == pytest.approx(3.0, abs=0.01) and abs(float(matrix[0, 2])) < 0.01
    single = dependence_metrics(codes[..., :1], 8, resamples=10)
    assert single.mutual_information is None and single.neighbour_mutual_information_slot is None
    assert single.to_dict()["mutual_information_ci"] is None


# ----------------------------------------------------------------------------- the estimator's bias removed
K, CLIPS, FRAMES = 1024, 24, 234  # the bench: 24 clips of 10 s at 23.4 frames/s ≈ 5,600 frames


def _codec_like_marginal(seed: int) -> torch.Tensor:
    """A codec's code distribution: 15 % of codes dead, the rest Gamma(4)-weighted: at n ≈ 5,600 the
    utilization is ≈ 0.83 and the normalized entropy ≈ 0.94 (the measured rvq-small values)."""
    g = _gen(seed)
    p = torch.distributions.Gamma(4.0, 1.0).sample((K,))
    p[torch.randperm(K, generator=g)[: int(0.15 * K)]] = 0
    return p / p.sum()


def _codes(seed: int, copy: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(CLIPS, FRAMES)`` codes ``x``, ``y`` drawn independently; with ``copy``, ``y = x`` with that probability."""
    torch.manual_seed(seed)
    x = torch.multinomial(_codec_like_marginal(1), CLIPS * FRAMES, replacement=True).view(CLIPS, FRAMES)
    y = torch.multinomial(_codec_like_marginal(2), CLIPS * FRAMES, replacement=True).view(CLIPS, FRAMES)
    if copy:
        y = torch.where(torch.rand(x.shape) < copy, x, y)
    return x, y


def test_independent_codes_give_zero_inside_the_interval():
    values = []
    for seed in range(5):
        x, y = _codes(seed)
        est = shuffle_corrected_mi([(x, y, K, K)], seed=seed)
        assert est.raw > 5.0  # the plug-in estimate of independent codes: bias, several bits of it
        assert est.shuffled == pytest.approx(est.raw, abs=0.02)
        assert est.low <= 0.0 <= est.high and abs(est.value) < 0.01
        assert est.high - est.low < 0.03 and est.unit == "clip" and est.pairs == CLIPS * FRAMES
        values.append(est.value)
    assert any(v > 0 for v in values) and any(v < 0 for v in values)  # no sign bias
    nmi = shuffle_corrected_mi([(x, y, K, K)], normalized=True)
    assert nmi.low <= 0.0 <= nmi.high and abs(nmi.value) < 0.002


def test_planted_dependence_is_found():
    x, y = _codes(0, copy=0.3)
    est = shuffle_corrected_mi([(x, y, K, K)])
    assert est.value > 0.3 and est.low > 0.25  # the interval excludes 0 by far
    nmi = shuffle_corrected_mi([(x, y, K, K)], normalized=True)
    assert nmi.low > 0.02
    # a weak one too: y = x for 2 % of the frames
    x, y = _codes(1, copy=0.02)
    weak = shuffle_corrected_mi([(x, y, K, K)])
    assert weak.low > 0.0


def test_bootstrap_with_replacement_would_invent_dependence():
    """Why half-samples: a with-replacement resample duplicates pairs, which the plug-in reads as
    dependence, even when the baseline is shuffled inside the resample."""
    import numpy as np

    from musictok.metrics.dependence import _mi_raw_and_shuffled

    x, y = (c.reshape(-1).numpy() for c in _codes(0))
    rng = np.random.default_rng(0)
    idx = rng.integers(0, x.size, x.size)
    raw, shuffled = _mi_raw_and_shuffled(x[idx], y[idx], K, [rng.permutation(x.size)])
    assert raw - shuffled > 0.5


def test_several_terms_share_one_interval():
    (x, y), (u, v) = _codes(0, copy=0.3), _codes(1)
    both = shuffle_corrected_mi([(x, y, K, K), (u, v, K, K)], resamples=50)
    one = shuffle_corrected_mi([(x, y, K, K)], resamples=50)
    assert both.value == pytest.approx(one.value / 2, abs=0.01)  # the mean of a dependence and a zero
    few = shuffle_corrected_mi([(x[:4], y[:4], K, K)], resamples=20)
    assert few.unit == "frame"  # fewer than 8 clips: frames are resampled
    with pytest.raises(ValueError, match="paired"):
        shuffle_corrected_mi([(x, y[:, :-1], K, K)])


def test_summary_of_independent_slots_reports_zero():
    x, y = _codes(3)
    res = dependence_metrics(torch.stack([x, y], dim=-1), K, resamples=50)
    mi = res.mutual_information
    assert mi.raw > 5.0 and mi.low <= 0.0 <= mi.high
    nb = res.neighbour_normalized_mutual_information_time  # frames are independent here too
    assert nb.low <= 0.0 <= nb.high and abs(nb.value) < 0.002


# ----------------------------------------------------------------------------- MMD
def _levels(dependent: bool, n: int = 512, d: int = 2, seed: int = 0) -> torch.Tensor:
    g = _gen(seed)
    x = torch.randn(n, d, generator=g)
    y = x + 0.5 * torch.randn(n, d, generator=g) if dependent else torch.randn(n, d, generator=g)
    return torch.stack([x, y], dim=1)  # (N, L=2, D)


def test_mmd_metric_is_the_loss_statistic():
    """One MMD: the metric calls the training loss's estimator (same kernels, same samples)."""
    from musictok.quantize.mmd import MMDConfig, independence_mmd

    emb = _levels(True, n=256).view(32, 8, 2, 2)  # 32 clips of 8 frames
    metric = mmd_joint_vs_product(emb, seed=7)
    loss = float(independence_mmd(emb, MMDConfig(delay=False), torch.Generator().manual_seed(7)))
    assert metric == loss


def test_mmd_separates_dependent_from_independent_levels():
    independent = [mmd_joint_vs_product(_levels(False, seed=s), seed=s) for s in range(5)]
    dependent = mmd_joint_vs_product(_levels(True))
    assert any(v < 0 for v in independent) and any(v > 0 for v in independent)  # unbiased: either sign
    assert dependent > 5 * max(abs(v) for v in independent)


def test_mmd_is_deterministic_given_a_seed():
    emb = _levels(True, n=256)
    assert mmd_joint_vs_product(emb, seed=7) == mmd_joint_vs_product(emb, seed=7)
    assert mmd_joint_vs_product(emb, seed=7) != mmd_joint_vs_product(emb, seed=8)
    with pytest.raises(ValueError, match="at least 2 levels"):
        mmd_joint_vs_product(emb[:, :1])
