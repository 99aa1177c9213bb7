"""The dual-track pattern (DuoTok Appendix B.1): parallel and track-conditioned, and a tiny LM that learns
to lean on the other track — so corrupting that track costs it, as the diagnostics measure."""

import math

import pytest
import torch

from musictok.lm.model import TokenLM, TokenLMConfig
from musictok.lm.patterns import IGNORE_INDEX, make_pattern, parallel_pattern
from musictok.lm.scoring import cell_scores, cnbpt_scorer
from musictok.metrics.diagnostics import corruption_curves, shift_track
from musictok.tokens import StreamSpec, TokenLayout

K = 16
LAYOUT = TokenLayout((StreamSpec("lead", 10.0, (K,), "track"), StreamSpec("accompaniment", 10.0, (K,), "track")))
TWO_SLOTS = TokenLayout((StreamSpec("lead", 10.0, (8, 8), "band"), StreamSpec("accompaniment", 10.0, (8, 8), "band")))


def _codes(layout, batch=3, frames=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, s.codebook_sizes[0], (batch, frames, s.num_slots), generator=g) for s in layout.streams]


@pytest.mark.parametrize("layout", [LAYOUT, TWO_SLOTS])
@pytest.mark.parametrize("mode", ["parallel", "conditional"])
def test_build_revert_round_trip(layout, mode):
    p = make_pattern("dual-track", layout, 12, mode=mode, prefix_seconds=0.3)
    codes = _codes(layout)
    b = p.build(codes)
    assert all(torch.equal(a, c) for a, c in zip(p.revert(b.targets), codes))
    assert p.vocab == parallel_pattern(layout, 12).vocab  # one vocabulary, one LM architecture for both


def test_parallel_mode_is_the_parallel_pattern():
    p, q = make_pattern("dual-track", TWO_SLOTS, 12), parallel_pattern(TWO_SLOTS, 12)
    assert torch.equal(p.cells, q.cells) and p.num_columns == 4 and p.scored is None


def test_conditional_mode_reads_the_whole_source_then_scores_the_target_after_its_prefix():
    p = make_pattern("dual-track", LAYOUT, 12, mode="conditional", prefix_seconds=0.3)  # 3 frames of prefix
    assert p.num_steps == 24
    assert p.step(0).predicts == ((0, 0, 0), None) and p.step(11).predicts == ((0, 11, 0), None)
    assert p.step(12).predicts == (None, (1, 0, 0)) and p.step(12).inputs == ((0, 11, 0), None)
    assert p.positions[12].item() == 0 and p.positions[23].item() == 11  # target frame f at source frame f's place
    scored_steps = torch.nonzero(p.loss_mask.any(1)).flatten().tolist()
    assert scored_steps == list(range(15, 24))  # target frames 3..11
    b = p.build(_codes(LAYOUT))
    t = p.scored_targets(b.targets)
    assert bool((t[:, :15] == IGNORE_INDEX).all()) and bool((t[:, 15:, 1] != IGNORE_INDEX).all())
    # the other direction: accompaniment first, by name
    q = make_pattern("dual-track", LAYOUT, 12, mode="conditional", source="accompaniment", prefix_seconds=0)
    assert q.step(0).predicts == (None, (1, 0, 0)) and q.loss_mask[12:, 0].all() and not q.loss_mask[:12].any()


def test_dual_track_refuses_what_it_cannot_lay_out():
    one = TokenLayout((StreamSpec("mix", 10.0, (K,)),))
    with pytest.raises(ValueError, match="two tracks"):
        make_pattern("dual-track", one, 12)
    rates = TokenLayout((StreamSpec("a", 10.0, (K,)), StreamSpec("b", 20.0, (K,))))
    with pytest.raises(ValueError, match="one frame rate"):
        make_pattern("dual-track", rates, 12)
    with pytest.raises(ValueError, match="prefix"):
        make_pattern("dual-track", LAYOUT, 12, mode="conditional", prefix_seconds=1.2)
    with pytest.raises(ValueError, match="mode"):
        make_pattern("dual-track", LAYOUT, 12, mode="joint")
    with pytest.raises(ValueError, match="source"):
        make_pattern("dual-track", LAYOUT, 12, mode="conditional", source="drums")


def _toy_pairs(n: int, frames: int, seed: int) -> list[torch.Tensor]:
    """Random lead; the accompaniment plays the lead's code + 3 (mod K): predictable only from the lead."""
    lead = torch.randint(0, K, (n, frames, 1), generator=torch.Generator().manual_seed(seed))
    return [lead, (lead + 3) % K]


def test_a_tiny_lm_leans_on_the_lead_and_pays_for_its_corruption():
    torch.manual_seed(0)
    frames = 16
    pattern_for = lambda f: make_pattern("dual-track", LAYOUT, f, mode="conditional", prefix_seconds=0.2)  # noqa: E731
    pattern = pattern_for(frames)
    model = TokenLM.from_pattern(TokenLMConfig.preset("tiny", n_layer=2, n_embd=64, n_head=2), pattern)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(150):
        b = pattern.build(_toy_pairs(16, frames, seed=step))
        loss = model(b.inputs, b.positions, pattern.scored_targets(b.targets)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    test = _toy_pairs(8, frames, seed=10_000)
    res = cell_scores(model, pattern, test)
    assert not res.scored[0].any() and int(res.scored[1].sum()) == 8 * (frames - 2)
    scorer = cnbpt_scorer(model, pattern_for, streams=[1])
    clean = scorer(test)
    assert clean < 0.25  # far below 1 (uniform): it copies through the lead
    curves = corruption_curves(scorer, test, track=0, shifts=(1, 4), mask_ratios=(0.2, 0.8))
    assert curves.shift[1] > 1.0 and curves.shift[4] > 1.0 and curves.mismatch > 1.0
    assert 0 < curves.mask[0.2] < curves.mask[0.8]
    # scoring only the last frames of the window
    assert scorer(test, last=4) == pytest.approx(
        float(res.nll[1][:, -4:].sum()) / math.log(2) / (8 * 4) / math.log2(K), rel=1e-4)
    # per window: the same pooled number, and each window's own share of it
    windows = cnbpt_scorer(model, pattern_for, streams=[1], per_window=True)(test)
    assert windows.cnbpt == pytest.approx(clean, rel=1e-9)
    assert windows.bits[3].item() == pytest.approx(float(res.nll[1][3][res.scored[1][3]].sum()) / math.log(2), rel=1e-6)
    assert torch.all(windows.norm == (frames - 2) * math.log2(K))
    sure = corruption_curves(cnbpt_scorer(model, pattern_for, streams=[1], per_window=True), test, track=0,
                             shifts=(4,), mask_ratios=(0.8,))
    assert sure.shift[4] == pytest.approx(curves.shift[4], rel=1e-6)
    low, high = sure.intervals["shift 4"]
    assert low > 1.0  # a model that copies: even the interval's low end is a cost of over 100 %
    # the interval is that of a mean over 8 windows: inside the spread of the windows' own costs, and narrower
    scorer_w = cnbpt_scorer(model, pattern_for, streams=[1], per_window=True)
    a, b = scorer_w(test), scorer_w(shift_track(test, 0, 4))
    per_window = (b.bits / b.norm - a.bits / a.norm) / (a.bits / a.norm)
    assert float(per_window.min()) < low < high < float(per_window.max())
