"""Dual-track diagnostics on toy data with known answers: an oracle scorer that knows the accompaniment
copies the lead, and one that can use history only within its window."""

import math

import pytest
import torch

from musictok.metrics.diagnostics import (
    WindowBits,
    context_gain_interval,
    context_scaling,
    context_scores,
    corruption_curves,
    mask_track,
    mismatch_track,
    relative_cost,
    shift_track,
)

K = 16  # codebook size


def _toy(batch: int = 8, frames: int = 64, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lead = torch.randint(0, K, (batch, frames, 1), generator=g)
    return [lead, lead.clone()]  # the accompaniment copies the lead


def copy_scorer(codes, last=None) -> float:
    """cnBPT of a model that bets 0.9 on 'accompaniment = lead at the same frame', the rest uniform."""
    lead, acc = codes
    hit = (lead == acc).float()
    if last is not None:
        hit = hit[:, -last:]
    bits = -(hit * math.log2(0.9) + (1 - hit) * math.log2(0.1 / (K - 1)))
    return float(bits.mean()) / math.log2(K)


def test_corruptions_change_only_the_conditioning_track():
    codes = _toy()
    for new in (shift_track(codes, 0, 3), mask_track(codes, 0, 0.5, torch.Generator().manual_seed(0)),
                mismatch_track(codes, 0)):
        assert torch.equal(new[1], codes[1]) and not torch.equal(new[0], codes[0])
        assert new[0].shape == codes[0].shape
    assert torch.equal(shift_track(codes, 0, 3)[0][:, 3], codes[0][:, 0])
    assert torch.equal(shift_track(codes, 0, 64)[0], codes[0])  # a whole turn
    masked = mask_track(codes, 0, 0.25, torch.Generator().manual_seed(1))[0]
    changed = (masked != codes[0]).squeeze(-1).sum(1)
    assert bool((changed <= 16).all())  # exactly 16 frames per clip replaced (some by an equal code)
    assert torch.equal(mismatch_track(codes, 0)[0][0], codes[0][1])
    with pytest.raises(ValueError, match="donors"):
        mismatch_track(codes, 0, donors=torch.arange(8))
    with pytest.raises(ValueError):
        mask_track(codes, 0, 1.5)


def test_a_model_that_copies_pays_for_every_corruption():
    res = corruption_curves(copy_scorer, _toy(), track=0, shifts=(1, 2, 8), mask_ratios=(0.1, 0.5, 0.9))
    expected_clean = -math.log2(0.9) / 4
    assert res.clean == pytest.approx(expected_clean)
    full = -math.log2(0.1 / (K - 1)) / 4  # nothing copies: every frame costs the miss
    for d in res.shift.values():  # shifted random codes match only by chance (1/16)
        assert d == pytest.approx(relative_cost(expected_clean, full), rel=0.15)
    masks = [res.mask[r] for r in (0.1, 0.5, 0.9)]
    assert masks[0] < masks[1] < masks[2]  # monotone in the mask ratio
    assert masks[1] == pytest.approx(0.5 * (1 - 1 / K) * relative_cost(expected_clean, full), rel=0.1)
    assert res.mismatch == pytest.approx(relative_cost(expected_clean, full), rel=0.15)
    assert set(res.to_dict()["shift"]) == {"1", "2", "8"}
    # and a model that ignores the lead pays nothing
    blind = corruption_curves(lambda codes, last=None: 0.5, _toy(), track=0, shifts=(4,), mask_ratios=(0.5,))
    assert blind.shift[4] == blind.mask[0.5] == blind.mismatch == 0.0


def test_context_scaling_scores_the_same_final_frames():
    period = 8
    base = torch.randint(0, K, (4, period, 1), generator=torch.Generator().manual_seed(2))
    acc = base.repeat(1, 8, 1)  # 64 frames, period 8
    codes = [torch.zeros_like(acc), acc]

    def history_scorer(codes, last=None):
        """Predicts frame t exactly when frame t - period is inside the window; uniform otherwise."""
        a = codes[1]
        frames = a.shape[1]
        t = torch.arange(frames)
        sure = t >= period
        bits = torch.where(sure, torch.tensor(0.05), torch.tensor(math.log2(K)))
        return float(bits[-last:].mean()) / math.log2(K)

    seen = []

    def spy(codes, last=None):
        seen.append((codes[1].shape[1], last))
        return history_scorer(codes, last)

    curve = context_scaling(spy, codes, contexts=(4, 8, 12, 64), eval_frames=4)
    assert seen == [(4, 4), (8, 4), (12, 4), (64, 4)]
    assert curve[4] == curve[8] == pytest.approx(1.0)  # no frame has its period inside the window
    assert curve[12] == pytest.approx(0.05 / 4) and curve[64] == pytest.approx(0.05 / 4)
    with pytest.raises(ValueError):
        context_scaling(history_scorer, codes, contexts=(2,), eval_frames=4)


def copy_window_scorer(codes, last=None) -> WindowBits:
    """``copy_scorer`` window by window."""
    lead, acc = codes
    hit = (lead == acc).double().flatten(1)
    bits = -(hit * math.log2(0.9) + (1 - hit) * math.log2(0.1 / (K - 1)))
    return WindowBits(bits.sum(1), torch.full((lead.shape[0],), hit.shape[1] * math.log2(K), dtype=torch.float64))


def test_per_window_scores_give_paired_intervals_around_the_cost():
    codes = _toy(batch=32)
    pooled = corruption_curves(copy_scorer, codes, track=0, shifts=(2,), mask_ratios=(0.5,))
    res = corruption_curves(copy_window_scorer, codes, track=0, shifts=(2,), mask_ratios=(0.5,))
    assert res.clean == pytest.approx(pooled.clean) and res.mask[0.5] == pytest.approx(pooled.mask[0.5])
    assert set(res.intervals) == {"shift 2", "mask 0.5", "mismatch"} and res.windows == 32
    for key, value in (("shift 2", res.shift[2]), ("mask 0.5", res.mask[0.5]), ("mismatch", res.mismatch)):
        low, high = res.intervals[key]
        assert 0 < low <= value <= high
    assert res.intervals["mask 0.5"][1] - res.intervals["mask 0.5"][0] > 0  # masking varies by window
    # windows of four pieces, eight each, whose costs depend on the piece: resampling pieces sees that spread,
    # resampling windows (as if 32 independent draws) gives a narrower interval
    piece = torch.arange(32) // 8
    effect = torch.tensor([0.1, 1.0, 0.2, 0.9], dtype=torch.float64)[piece]

    def piece_scorer(c, last=None):
        corrupted = (c[0] != codes[0]).flatten(1).any(1).double()
        return WindowBits(1.0 + corrupted * effect + 0.01 * (torch.arange(32) % 3), torch.full((32,), 4.0))

    by_piece = corruption_curves(piece_scorer, codes, track=0, shifts=(), mask_ratios=(0.5,), mismatch=False,
                                 groups=piece.tolist())
    by_window = corruption_curves(piece_scorer, codes, track=0, shifts=(), mask_ratios=(0.5,), mismatch=False)
    width = lambda iv: iv[1] - iv[0]  # noqa: E731
    assert width(by_piece.intervals["mask 0.5"]) > 1.5 * width(by_window.intervals["mask 0.5"])
    with pytest.raises(ValueError, match="groups names 31 windows"):
        corruption_curves(piece_scorer, codes, track=0, shifts=(), mask_ratios=(0.5,), mismatch=False,
                          groups=piece.tolist()[:31])
    # a scorer that ignores the lead: every cost and its interval is exactly 0
    blind = corruption_curves(lambda c, last=None: WindowBits(torch.ones(32), torch.full((32,), 2.0)), codes,
                              track=0, shifts=(4,), mask_ratios=(0.5,))
    assert all(iv == [0.0, 0.0] for iv in blind.intervals.values())


def test_context_gain_interval_brackets_the_gain_and_holds_zero_for_a_blind_model():
    """Windows whose history helps by a piece-dependent amount: the gain's interval holds the pooled gain
    and is > 0; a scorer that ignores the context gives [0, 0]."""
    piece = torch.arange(24) // 6
    help_ = torch.tensor([0.1, 0.4, 0.2, 0.3], dtype=torch.float64)[piece]
    codes = [torch.zeros(24, 64, 1, dtype=torch.long)] * 2

    def scorer(c, last=None):
        longer = c[0].shape[1] > 16
        return WindowBits(torch.ones(24, dtype=torch.float64) - (help_ if longer else 0), torch.full((24,), 1.0))

    bits = context_scores(scorer, codes, contexts=(16, 64), eval_frames=8)
    gain = (bits[16].cnbpt - bits[64].cnbpt) / bits[16].cnbpt
    low, high = context_gain_interval(bits[16], bits[64], piece.tolist(), resamples=500)
    assert 0 < low <= gain <= high and gain == pytest.approx(0.25)
    assert context_scaling(scorer, codes, contexts=(16, 64), eval_frames=8) == {16: bits[16].cnbpt, 64: bits[64].cnbpt}
    blind = WindowBits(torch.ones(24, dtype=torch.float64), torch.full((24,), 1.0))
    assert context_gain_interval(blind, blind) == (0.0, 0.0)
