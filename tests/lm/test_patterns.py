"""Sequence patterns: round trips for every pattern and layout, hand-checked tables, vocabularies, errors."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from musictok.lm.patterns import (
    BOS_CELL,
    IGNORE_INDEX,
    PATTERNS,
    make_pattern,
    stream_frames,
)
from musictok.tokens import StreamSpec, TokenLayout

FAST = settings(max_examples=40, deadline=None)


@st.composite
def streams(draw, rate: float, name: str) -> StreamSpec:
    slots = draw(st.integers(1, 4))
    if draw(st.booleans()):
        sizes = (draw(st.integers(1, 9)),) * slots
        return StreamSpec(name, rate, sizes, slot_axis="band", shared_codebook=True)
    return StreamSpec(name, rate, tuple(draw(st.lists(st.integers(1, 9), min_size=slots, max_size=slots))),
                      slot_axis="residual")


@st.composite
def cases(draw, pattern: str, multi_rate: bool = False):
    """A layout, frames per stream and random codes that ``pattern`` accepts (``multi_rate``: 2-3 streams at
    distinct frame rates)."""
    if pattern == "band-grid":
        n_streams, rates = 1, [draw(st.sampled_from([1.0, 23.4375]))]
    elif pattern in ("parallel", "delay"):
        n_streams = draw(st.integers(1, 3))
        rates = [draw(st.sampled_from([1.0, 50.0]))] * n_streams
    elif pattern == "dual-track":  # two tracks at one rate
        n_streams, rates = 2, [draw(st.sampled_from([1.0, 25.0]))] * 2
    else:  # flatten, coarse-to-fine: multi-rate
        n_streams = draw(st.integers(2, 3) if multi_rate else st.integers(1, 3))
        rates = sorted(draw(st.lists(st.sampled_from([1.0, 1.5, 2.0, 3.0, 4.0]), min_size=n_streams,
                                     max_size=n_streams, unique=multi_rate)))
    layout = TokenLayout(tuple(draw(streams(r, f"s{i}")) for i, r in enumerate(rates)))
    if pattern in ("parallel", "delay", "dual-track"):
        frames = (draw(st.integers(1, 6)),) * n_streams
    else:
        frames = stream_frames(layout, draw(st.integers(1, 6)))
    batch = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    codes = [torch.stack([torch.randint(0, k, (batch, f), generator=g) for k in s.codebook_sizes], dim=-1)
             for s, f in zip(layout.streams, frames)]
    return layout, frames, codes


def check_round_trip(name: str, case) -> None:
    layout, frames, codes = case
    p = make_pattern(name, layout, frames)
    inputs, targets, positions = p.build(codes)
    B = codes[0].shape[0]
    assert inputs.shape == targets.shape == (B, p.num_steps, p.num_columns)
    assert positions.shape == (p.num_steps, p.position_dims)
    # revert(build(x)) == x, and every cell is predicted exactly once
    back = p.revert(targets)
    assert len(back) == len(codes)
    for a, b in zip(back, codes):
        assert torch.equal(a, b)
    assert int((targets != IGNORE_INDEX).sum()) == B * sum(c[0].numel() for c in codes)
    # teacher forcing: inputs are the previous step's targets (bos first, pad where nothing was predicted)
    assert bool((inputs[:, 0] == p.bos_id).all())
    prev = targets[:, :-1]
    assert torch.equal(inputs[:, 1:], torch.where(prev == IGNORE_INDEX, p.pad_id, prev))
    # ids lie in their column's vocabulary and in the predicted cell's codebook range
    ranges = p.target_ranges
    valid = targets != IGNORE_INDEX
    assert bool((targets[valid] >= ranges[..., 0].expand_as(targets)[valid]).all())
    assert bool((targets[valid] < ranges[..., 1].expand_as(targets)[valid]).all())
    assert bool((ranges[..., 1] <= torch.tensor(p.vocab_sizes)).all())
    # per-token values go back to cells too, and logits revert to per-codebook slices
    nll = torch.rand(targets.shape)
    for s, v in enumerate(p.revert_values(nll)):
        assert v.shape == codes[s].shape
    logits = torch.randn(B, p.num_steps, p.num_columns, max(p.vocab_sizes))
    onehot = torch.nn.functional.one_hot(targets.clamp(min=0), max(p.vocab_sizes)).float() * 50 + logits
    for s, lg in enumerate(p.revert_logits(onehot)):
        assert lg.shape == (*codes[s].shape, max(layout.streams[s].codebook_sizes))
        assert torch.equal(lg.argmax(-1), codes[s])


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_every_pattern_is_registered_and_round_trips(name):
    @FAST
    @given(cases(name))
    def run(case):
        check_round_trip(name, case)

    run()


@pytest.mark.parametrize("name", ["flatten", "coarse-to-fine"])
def test_multi_rate_layouts_round_trip(name):
    @FAST
    @given(cases(name, multi_rate=True))
    def run(case):
        check_round_trip(name, case)

    run()


def test_delay_pattern_on_a_hand_example():
    layout = TokenLayout((StreamSpec("rvq", 50.0, (4, 8), slot_axis="residual"),))
    p = make_pattern("delay", layout, 3)
    codes = [torch.tensor([[[0, 1], [2, 3], [3, 7]]])]  # frames a, b, c; slots 0 and 1
    inputs, targets, positions = p.build(codes)
    I = IGNORE_INDEX
    assert targets.tolist() == [[[0, I], [2, 1], [3, 3], [I, 7]]]
    pad, bos = p.pad_id, p.bos_id
    assert (pad, bos) == (8, 9)  # after the largest vocabulary: a real id is the same as input and target
    assert inputs.tolist() == [[[bos, bos], [0, pad], [2, 1], [3, 3]]]
    assert positions.squeeze(1).tolist() == [0, 1, 2, 3]
    assert p.vocab_sizes == (4, 8) and not p.shared_vocab
    assert p.step(2).predicts == ((0, 2, 0), (0, 1, 1))
    assert p.step(2).inputs == ((0, 1, 0), (0, 0, 1))
    assert p.step(0).inputs == ("bos", "bos") and int(p.input_cells[0, 0]) == BOS_CELL
    # custom delays: slot 1 two steps late
    assert make_pattern("delay", layout, 3, delays=(0, 2)).num_steps == 5


def test_parallel_pattern_predicts_a_frame_per_step():
    layout = TokenLayout((StreamSpec("rvq", 50.0, (4, 4, 4), slot_axis="residual"),))
    p = make_pattern("parallel", layout, 2)
    codes = [torch.tensor([[[1, 2, 3], [0, 1, 2]]])]
    inputs, targets, _ = p.build(codes)
    assert targets.tolist() == [[[1, 2, 3], [0, 1, 2]]]
    assert inputs.tolist() == [[[5, 5, 5], [1, 2, 3]]]


def test_band_grid_positions_are_time_and_band():
    layout = TokenLayout((StreamSpec("bands", 23.4375, (16,) * 3, slot_axis="band", shared_codebook=True),))
    p = make_pattern("band-grid", layout, 2)
    assert p.position_dims == 2
    assert p.positions.tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    # one shared vocabulary: no offsets, BandTok's ids are the codes themselves
    assert p.vocab_sizes == (16,) and p.shared_vocab and p.slot_offsets == ((0, 0, 0),)
    codes = [torch.tensor([[[5, 6, 7], [8, 9, 10]]])]
    assert p.build(codes).targets.flatten().tolist() == [5, 6, 7, 8, 9, 10]
    assert p.step(4).predicts == ((0, 1, 1),) and p.step(4).position == (1.0, 1.0)


def test_flatten_offsets_per_codebook_and_interleaves_streams_by_time():
    slow = StreamSpec("coarse", 1.0, (4, 8), slot_axis="residual")
    fast = StreamSpec("fine", 2.0, (3,), slot_axis="residual")
    p = make_pattern("flatten", TokenLayout((slow, fast)), 4)  # 4 fine frames -> 2 coarse frames
    assert p.frames == (2, 4)
    assert p.vocab_sizes == (4 + 8 + 3,) and p.slot_offsets == ((0, 4), (12,))
    order = [p.step(t).predicts[0] for t in range(p.num_steps)]
    assert order == [(0, 0, 0), (0, 0, 1), (1, 0, 0), (1, 1, 0), (0, 1, 0), (0, 1, 1), (1, 2, 0), (1, 3, 0)]
    assert p.target_ranges[:3, 0].tolist() == [[0, 4], [4, 12], [12, 15]]


def test_coarse_to_fine_orders_levels_and_scales_positions_to_the_finest_rate():
    levels = TokenLayout((StreamSpec("l0", 1.0, (4,), slot_axis="level"),
                          StreamSpec("l1", 2.0, (4, 4), slot_axis="level"),
                          StreamSpec("l2", 4.0, (4,), slot_axis="level")))
    p = make_pattern("coarse-to-fine", levels, 4)
    assert p.frames == (1, 2, 4)
    order = [p.step(t).predicts[0] for t in range(p.num_steps)]
    assert order == [(0, 0, 0), (1, 0, 0), (1, 0, 1), (1, 1, 0), (1, 1, 1),
                     (2, 0, 0), (2, 1, 0), (2, 2, 0), (2, 3, 0)]
    assert p.positions.squeeze(1).tolist() == [0, 0, 0, 2, 2, 0, 1, 2, 3]
    with pytest.raises(ValueError, match="coarsest first"):
        make_pattern("coarse-to-fine", TokenLayout(tuple(reversed(levels.streams))), 4)


def test_user_errors_are_value_errors_that_say_what_to_do():
    layout = TokenLayout((StreamSpec("a", 1.0, (4, 4)), StreamSpec("b", 2.0, (4,))))
    with pytest.raises(ValueError, match="choose one of"):
        make_pattern("zigzag", layout, 4)
    with pytest.raises(ValueError, match="flatten or coarse-to-fine"):
        make_pattern("parallel", layout, 4)
    with pytest.raises(ValueError, match="one stream"):
        make_pattern("band-grid", layout, 4)
    with pytest.raises(ValueError, match="one per stream"):
        make_pattern("flatten", layout, (4,))
    p = make_pattern("flatten", layout, (2, 4))
    good = [torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 4, 1, dtype=torch.long)]
    with pytest.raises(ValueError, match="make_pattern"):
        p.build([good[0], torch.zeros(1, 3, 1, dtype=torch.long)])
    with pytest.raises(ValueError, match="outside"):
        p.build([good[0] + 4, good[1]])
    with pytest.raises(ValueError, match="integers"):
        p.build([good[0].float(), good[1]])
    targets = p.build(good).targets
    with pytest.raises(ValueError, match="target_ranges"):
        p.revert(targets.masked_fill(targets == 0, 7))  # slot-1 ids where slot-0 codes belong
    with pytest.raises(ValueError, match="revert_values"):
        p.revert(targets.float())
