"""Sequence patterns: how a tokenizer's codes become the steps of a token LM, and back — as data.

A tokenizer emits a grid of *cells* per stream, ``codes[s]`` shaped ``(B, frames_s, slots_s)``. A token
LM reads a 1-D sequence of *steps*; at each step it predicts ``K`` cells at once (one per *column*, one
head each). A :class:`SequencePattern` is the table that connects the two, built once for a layout and a
number of frames:

- ``cells``      ``(steps, K)``: the flat index of the cell each step predicts in each column, ``-1`` when
  the column predicts nothing at that step (e.g. the ramp of the delay pattern);
- ``positions``  ``(steps, 1)`` or ``(steps, 2)``: where each step sits for RoPE — a 1-D index, or
  ``(time, band)`` for 2-D RoPE;
- ``vocab_sizes`` / ``slot_offsets``: the LM's ids. A column may carry cells of several codebooks (the
  flatten pattern carries all of them in one column), so each ``(stream, slot)`` codebook gets an offset
  and the column's vocabulary is the sum of its codebooks — unless they are one shared codebook (BandTok's
  bands), which is counted once. ``lm_id = code + slot_offsets[stream][slot]``.

**Teacher forcing, made explicit.** Step ``t`` *predicts* ``cells[t]`` and its *input* is what step ``t-1``
predicted: ``inputs[:, t] = targets[:, t-1]`` (a ``bos_id`` in every column at step 0, a ``pad_id`` where
step ``t-1`` predicted nothing). So a causal model never sees a cell before it predicts it, and ``K_in``
equals ``K_out``. A step's position is the position of the cells it *predicts* (for 2-D RoPE this tells the
model which band it must produce; its input then sits one step earlier in the pattern's order).

Every cell is predicted exactly once, so ``revert(build(codes).targets) == codes`` for every pattern. A
pattern may leave some predicted cells out of the loss (``scored``; the conditional dual-track pattern's
context): ``build`` still returns every target, and :meth:`SequencePattern.scored_targets` masks the rest.
The patterns (``PATTERNS``, :func:`make_pattern`):

==================  =====================================================================================
``flatten``         one cell per step, frame-major; several streams interleave by time (a frame starting
                    at ``f / rate`` seconds, ties by stream then slot). 1-D positions = step index. Joint
                    modelling of every cell, ``sum(slots)`` times more steps than frames.
``parallel``        one step per frame, every slot predicted at once: a product of per-slot marginals
                    given the past frames. Streams must share one frame rate.
``delay``           MusicGen's pattern: column ``k`` is slot ``k`` delayed by ``delays[k]`` steps (default
                    ``k``), so slot ``k`` of frame ``f`` is conditioned on slots ``< k`` of frame ``f``.
                    ``frames + max(delays)`` steps; the ramp cells are ``pad_id`` / ignored.
``band-grid``       BandTok: ``flatten`` of one stream with 2-D positions ``(time = frame, band = slot)``.
``dual-track``      two tracks at one frame rate (DuoTok's lead and accompaniment, or any tokenizer run on
                    each stem), the two LM protocols of DuoTok's Appendix B.1. ``mode="parallel"``: the
                    parallel pattern over both tracks — one head per (track, slot), unconditional.
                    ``mode="conditional"``: track-to-track — every frame of the ``source`` track, then the
                    target track's frames; the source and the target's first ``prefix_seconds`` are context,
                    only the rest is scored (``scored``). Positions are frame indices in both halves, so a
                    target frame sits at the position of the source frame it goes with.
``coarse-to-fine``  multi-rate streams (PyramidCodec levels, stream 0 coarsest): every cell of stream 0 for
                    the whole context (frame-major over its slots), then stream 1, ... so every finer cell
                    is conditioned on all coarser ones. 1-D positions = the start time of the predicted
                    cell's frame, as a (possibly fractional) frame index of the *finest* stream:
                    ``frame * rate_finest / rate_stream``; positions therefore restart at 0 with each
                    stream and several steps share a position — the offset vocabulary tells the model
                    which stream and slot a step belongs to.
==================  =====================================================================================
"""

from __future__ import annotations

import bisect
import itertools
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import NamedTuple

import torch
from torch import Tensor

from ..tokens import TokenLayout

__all__ = [
    "BOS_CELL",
    "IGNORE_INDEX",
    "PATTERNS",
    "LMVocab",
    "PatternBatch",
    "PatternStep",
    "SequencePattern",
    "band_grid_pattern",
    "coarse_to_fine_pattern",
    "delay_pattern",
    "dual_track_pattern",
    "flatten_pattern",
    "make_pattern",
    "parallel_pattern",
    "stream_frames",
]

IGNORE_INDEX = -100  # targets of columns that predict nothing (``torch.nn.functional.cross_entropy`` default)
NO_CELL = -1  # in ``cells``: the column predicts nothing at this step
BOS_CELL = -2  # in ``input_cells``: the beginning-of-sequence input of step 0

Cell = tuple[int, int, int]  # (stream, frame, slot)


@dataclass(frozen=True)
class LMVocab:
    """What a token LM must know of a pattern's ids, independent of the sequence length.

    Column ``k`` predicts ids in ``[0, vocab_sizes[k])``. Inputs additionally use two special ids shared by
    all columns, placed after the largest vocabulary so that a real token has the same id as input and as
    target: ``pad_id = max(vocab_sizes)`` and ``bos_id = pad_id + 1``; every input table therefore has
    ``input_vocab_size = max(vocab_sizes) + 2`` rows. ``shared`` says every column indexes one and the same
    codebook (BandTok's bands), so the model may share one embedding table.
    """

    vocab_sizes: tuple[int, ...]
    shared: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "vocab_sizes", tuple(int(v) for v in self.vocab_sizes))
        if not self.vocab_sizes or min(self.vocab_sizes) < 1:
            raise ValueError(f"every column needs a vocabulary of at least 1 id, got {self.vocab_sizes}")

    @property
    def num_columns(self) -> int:
        return len(self.vocab_sizes)

    @property
    def pad_id(self) -> int:
        return max(self.vocab_sizes)

    @property
    def bos_id(self) -> int:
        return max(self.vocab_sizes) + 1

    @property
    def input_vocab_size(self) -> int:
        return max(self.vocab_sizes) + 2

    def to_dict(self) -> dict:
        return {"vocab_sizes": list(self.vocab_sizes), "shared": self.shared}

    @classmethod
    def from_dict(cls, d: dict) -> LMVocab:
        return cls(tuple(d["vocab_sizes"]), bool(d.get("shared", False)))


class PatternBatch(NamedTuple):
    """What :meth:`SequencePattern.build` returns; unpacks as ``inputs, targets, positions``."""

    inputs: Tensor  # (B, steps, K) long, real ids, pad_id or bos_id
    targets: Tensor  # (B, steps, K) long, real ids or IGNORE_INDEX
    positions: Tensor  # (steps, 1 | 2) float32


@dataclass(frozen=True)
class PatternStep:
    """One step in readable form: the input and predicted cell of each column, and the position."""

    inputs: tuple[Cell | str | None, ...]  # a (stream, frame, slot), "bos", or None (pad)
    predicts: tuple[Cell | None, ...]
    position: tuple[float, ...]


@dataclass(frozen=True, eq=False)
class SequencePattern:
    """The step table for one layout and one number of frames per stream (see the module docstring).

    Attributes:
        name: the pattern's name in ``PATTERNS``.
        layout: the tokenizer layout the codes follow.
        frames: frames per stream.
        cells: ``(steps, K)`` long: flat index of the cell predicted per step and column, ``-1`` for none.
            A cell ``(s, f, j)`` has flat index ``stream_start[s] + f * slots_s + j``.
        positions: ``(steps, P)`` float32, ``P = 1`` (1-D RoPE) or ``2`` (``time, band``).
        vocab_sizes: per column, the number of LM ids it predicts.
        slot_offsets: per stream, per slot: the offset added to a code to make its LM id.
        shared_vocab: every column indexes one and the same codebook.
        scored: optional ``(steps, K)`` bool: which predicted cells count in the loss and the metrics
            (``None``: all of them). Unscored cells are context the LM reads but is not judged on.
    """

    name: str
    layout: TokenLayout
    frames: tuple[int, ...]
    cells: Tensor = field(repr=False)
    positions: Tensor = field(repr=False)
    vocab_sizes: tuple[int, ...]
    slot_offsets: tuple[tuple[int, ...], ...]
    shared_vocab: bool
    scored: Tensor | None = field(default=None, repr=False)
    _cell_step: Tensor = field(init=False, repr=False)  # (N,) step of each flat cell
    _cell_column: Tensor = field(init=False, repr=False)  # (N,) column of each flat cell
    _stream_start: tuple[int, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        assert len(self.frames) == len(self.layout.streams) == len(self.slot_offsets)
        assert self.cells.ndim == 2 and self.cells.dtype == torch.long
        assert self.positions.shape[0] == self.cells.shape[0] and self.positions.shape[1] in (1, 2)
        assert len(self.vocab_sizes) == self.cells.shape[1]
        starts, n = [], 0
        for s, f in zip(self.layout.streams, self.frames):
            starts.append(n)
            n += f * s.num_slots
        valid = self.cells >= 0
        flat = self.cells[valid]
        # The invariant revert relies on: every cell is predicted exactly once.
        assert flat.numel() == n and torch.equal(torch.sort(flat).values, torch.arange(n)), \
            f"pattern {self.name!r} does not predict every cell exactly once"
        if self.scored is not None:
            assert self.scored.shape == self.cells.shape and self.scored.dtype == torch.bool
            assert not bool((self.scored & ~valid).any()), "only predicted cells can be scored"
            assert bool(self.scored.any()), f"pattern {self.name!r} scores no cell"
        steps, cols = torch.nonzero(valid, as_tuple=True)
        cell_step = torch.empty(n, dtype=torch.long)
        cell_col = torch.empty(n, dtype=torch.long)
        cell_step[flat], cell_col[flat] = steps, cols
        object.__setattr__(self, "_cell_step", cell_step)
        object.__setattr__(self, "_cell_column", cell_col)
        object.__setattr__(self, "_stream_start", tuple(starts))

    # ---------------------------------------------------------------- sizes and vocabulary
    @property
    def num_steps(self) -> int:
        return self.cells.shape[0]

    @property
    def num_columns(self) -> int:
        return self.cells.shape[1]

    @property
    def num_cells(self) -> int:
        return self._cell_step.numel()

    @property
    def position_dims(self) -> int:
        """1 for 1-D RoPE positions, 2 for ``(time, band)``."""
        return self.positions.shape[1]

    @property
    def vocab(self) -> LMVocab:
        return LMVocab(self.vocab_sizes, self.shared_vocab)

    @property
    def pad_id(self) -> int:
        return self.vocab.pad_id

    @property
    def bos_id(self) -> int:
        return self.vocab.bos_id

    @property
    def loss_mask(self) -> Tensor:
        """``(steps, K)`` bool: the predicted cells that count in the loss and the metrics."""
        valid = self.cells >= 0
        return valid if self.scored is None else valid & self.scored

    def scored_targets(self, targets: Tensor) -> Tensor:
        """``build(...).targets`` with the unscored cells set to ``IGNORE_INDEX``: what a loss should see."""
        if self.scored is None:
            return targets
        return targets.masked_fill(~self.scored.to(targets.device), IGNORE_INDEX)

    @property
    def input_cells(self) -> Tensor:
        """``(steps, K)``: the cell each step reads — the one predicted a step earlier (``BOS_CELL`` at 0)."""
        out = torch.full_like(self.cells, NO_CELL)
        out[0] = BOS_CELL
        out[1:] = self.cells[:-1]
        return out

    @property
    def target_ranges(self) -> Tensor:
        """``(steps, K, 2)`` long: ``[lo, hi)`` of the LM ids valid for the cell each step predicts.

        Sampling restricted to this range always yields ids that :meth:`revert` accepts (it matters for
        one-column patterns whose vocabulary concatenates several codebooks). Columns that predict nothing
        get their whole vocabulary, so a mask built from the range never empties a row.
        """
        lo = torch.zeros_like(self.cells)
        hi = torch.tensor(self.vocab_sizes, dtype=torch.long).expand_as(self.cells).clone()
        for s, stream in enumerate(self.layout.streams):
            for j, k in enumerate(stream.codebook_sizes):
                idx = self._stream_start[s] + j + stream.num_slots * torch.arange(self.frames[s])
                steps, cols = self._cell_step[idx], self._cell_column[idx]
                lo[steps, cols] = self.slot_offsets[s][j]
                hi[steps, cols] = self.slot_offsets[s][j] + k
        return torch.stack([lo, hi], dim=-1)

    def cell_coords(self, index: int) -> Cell:
        """Flat cell index -> ``(stream, frame, slot)``."""
        if not 0 <= index < self.num_cells:
            raise ValueError(f"cell index {index} is outside [0, {self.num_cells})")
        s = bisect.bisect_right(self._stream_start, index) - 1  # every stream has >= 1 cell
        f, j = divmod(index - self._stream_start[s], self.layout.streams[s].num_slots)
        return (s, f, j)

    def cell_table(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(stream, frame, slot)`` of the cell each step predicts per column, three ``(steps, K)`` long
        tensors with ``-1`` where a column predicts nothing (for scoring stream by stream, and for knowing
        which steps a prompt already fixes)."""
        bounds = torch.tensor(self._stream_start[1:], dtype=torch.long)
        cells = self.cells.clamp_min(0)
        streams = torch.bucketize(cells, bounds, right=True)
        starts = torch.tensor(self._stream_start, dtype=torch.long)[streams]
        slots = torch.tensor([st.num_slots for st in self.layout.streams], dtype=torch.long)[streams]
        frame, slot = (cells - starts).div(slots, rounding_mode="floor"), (cells - starts) % slots
        none = self.cells < 0
        return tuple(t.masked_fill(none, -1) for t in (streams, frame, slot))  # type: ignore[return-value]

    def step(self, t: int) -> PatternStep:
        """Step ``t`` in readable form (for documentation, tests and debugging)."""
        if not -self.num_steps <= t < self.num_steps:
            raise ValueError(f"step {t} is outside a pattern of {self.num_steps} steps")

        def readable(c: int) -> Cell | str | None:
            return "bos" if c == BOS_CELL else None if c == NO_CELL else self.cell_coords(c)

        return PatternStep(
            inputs=tuple(readable(int(c)) for c in self.input_cells[t]),
            predicts=tuple(None if int(c) == NO_CELL else self.cell_coords(int(c)) for c in self.cells[t]),
            position=tuple(float(p) for p in self.positions[t]),
        )

    # ---------------------------------------------------------------- codes -> steps -> codes
    def _offsets(self, s: int, device: torch.device) -> Tensor:
        return torch.tensor(self.slot_offsets[s], dtype=torch.long, device=device)

    def check_codes(self, codes: Sequence[Tensor]) -> int:
        """Raise ``ValueError`` unless ``codes`` fit this pattern; returns the batch size."""
        if len(codes) != len(self.layout.streams):
            raise ValueError(f"pattern {self.name!r} expects {len(self.layout.streams)} code tensors "
                             f"(one per stream), got {len(codes)}")
        batch = None
        for c, s, f in zip(codes, self.layout.streams, self.frames):
            if c.ndim != 3 or c.shape[1:] != (f, s.num_slots):
                raise ValueError(f"stream {s.name!r}: codes must be (batch, {f}, {s.num_slots}) for this pattern, "
                                 f"got {tuple(c.shape)}; build a pattern for these frames with make_pattern")
            if c.dtype.is_floating_point or c.dtype == torch.bool or c.is_complex():
                raise ValueError(f"stream {s.name!r}: codes must be integers, got {c.dtype}")
            if batch is not None and c.shape[0] != batch:
                raise ValueError(f"all streams need the same batch size, got {batch} and {c.shape[0]}")
            batch = c.shape[0]
            if c.numel():
                sizes = torch.tensor(s.codebook_sizes, device=c.device)
                if bool((c < 0).any()) or bool((c >= sizes).any()):
                    raise ValueError(f"stream {s.name!r} holds codes outside [0, codebook size) "
                                     f"with sizes {s.codebook_sizes}")
        assert batch is not None
        return batch

    def build(self, codes: Sequence[Tensor]) -> PatternBatch:
        """Per-stream codes -> teacher-forced LM inputs, targets and positions.

        Args:
            codes: one ``(B, frames_s, slots_s)`` integer tensor per stream, values in ``[0, K_slot)``.
        Returns:
            ``inputs (B, steps, K)`` long (``bos_id`` at step 0, ``pad_id`` where the previous step predicted
            nothing), ``targets (B, steps, K)`` long (``IGNORE_INDEX`` where nothing is predicted) and
            ``positions (steps, P)`` float32, all on the codes' device.
        """
        batch = self.check_codes(codes)
        device = codes[0].device
        flat = torch.cat([(c.long() + self._offsets(s, device)).reshape(batch, -1) for s, c in enumerate(codes)],
                         dim=1)  # (B, N) LM ids in flat cell order
        cells = self.cells.to(device)
        valid = cells >= 0
        targets = flat[:, cells.clamp(min=0)].masked_fill(~valid, IGNORE_INDEX)  # (B, steps, K)
        inputs = torch.full_like(targets, self.pad_id)
        inputs[:, 0] = self.bos_id
        inputs[:, 1:] = torch.where(valid[:-1], targets[:, :-1], torch.full_like(targets[:, :-1], self.pad_id))
        return PatternBatch(inputs, targets, self.positions.to(device))

    def _check_steps(self, values: Tensor, what: str) -> None:
        if values.ndim < 3 or values.shape[1:3] != (self.num_steps, self.num_columns):
            raise ValueError(f"{what} must be (batch, {self.num_steps}, {self.num_columns}, ...) for pattern "
                             f"{self.name!r}, got {tuple(values.shape)}")

    def revert_values(self, values: Tensor) -> list[Tensor]:
        """Any per-step, per-column values back to cells: ``(B, steps, K, *rest)`` -> ``[(B, F_s, S_s, *rest)]``.

        No offsets are removed: use it for per-token losses, probabilities or logits over a column's ids.
        """
        self._check_steps(values, "values")
        per_cell = values[:, self._cell_step.to(values.device), self._cell_column.to(values.device)]  # (B, N, ...)
        out = []
        for s, stream in enumerate(self.layout.streams):
            a = self._stream_start[s]
            n = self.frames[s] * stream.num_slots
            out.append(per_cell[:, a: a + n].reshape(values.shape[0], self.frames[s], stream.num_slots,
                                                     *values.shape[3:]))
        return out

    def revert(self, step_values: Tensor) -> list[Tensor]:
        """LM ids per step ``(B, steps, K)`` (targets, or sampled ids) -> per-stream codes ``[(B, F_s, S_s)]``.

        Entries of columns that predict nothing at a step are ignored. Raises ``ValueError`` if an id lies
        outside its cell's codebook (sample within :attr:`target_ranges` to avoid it).
        """
        if step_values.ndim != 3:
            raise ValueError(f"step values must be (batch, steps, columns) LM ids, got {tuple(step_values.shape)}; "
                             "use revert_values or revert_logits for per-token values")
        if step_values.dtype.is_floating_point:
            raise ValueError("revert takes integer LM ids; use revert_values for float values")
        codes = []
        for s, c in enumerate(self.revert_values(step_values.long())):
            c = c - self._offsets(s, c.device)
            sizes = torch.tensor(self.layout.streams[s].codebook_sizes, device=c.device)
            if c.numel() and (bool((c < 0).any()) or bool((c >= sizes).any())):
                raise ValueError(f"stream {self.layout.streams[s].name!r}: some LM ids fall outside their "
                                 "cell's codebook; restrict sampling to pattern.target_ranges")
            codes.append(c)
        return codes

    def revert_logits(self, logits: Tensor) -> list[Tensor]:
        """Column logits ``(B, steps, K, V)`` -> per-cell logits over its own codebook ``[(B, F_s, S_s, Kmax_s)]``.

        Each cell keeps the slice ``[offset, offset + K_slot)`` of its column's logits, so codes index the
        last axis directly (top-k accuracy, per-stream scoring); slots with smaller codebooks than the
        stream's largest are padded with ``-inf``.
        """
        if logits.ndim != 4:
            raise ValueError(f"logits must be (batch, steps, columns, vocab), got {tuple(logits.shape)}")
        out = []
        for s, v in enumerate(self.revert_values(logits)):
            sizes = self.layout.streams[s].codebook_sizes
            kmax = max(sizes)
            cols = []
            for j, k in enumerate(sizes):
                a = self.slot_offsets[s][j]
                if a + k > v.shape[-1]:
                    raise ValueError(f"logits have {v.shape[-1]} ids but stream {s} slot {j} needs {a + k}")
                cols.append(torch.nn.functional.pad(v[:, :, j, a: a + k], (0, kmax - k), value=float("-inf")))
            out.append(torch.stack(cols, dim=2))
        return out


# ------------------------------------------------------------------------------------------------ helpers
def stream_frames(layout: TokenLayout, frames: int | Sequence[int]) -> tuple[int, ...]:
    """Frames per stream. A sequence gives them explicitly; an ``int`` is the frame count of the fastest
    stream, and slower streams get ``ceil(frames * rate_s / rate_fastest)`` (equal for equal rates)."""
    if isinstance(frames, numbers.Integral):
        fastest = max(s.frame_rate for s in layout.streams)
        out = tuple(math.ceil(frames * s.frame_rate / fastest - 1e-9) for s in layout.streams)
    else:
        out = tuple(int(f) for f in frames)
        if len(out) != len(layout.streams):
            raise ValueError(f"got {len(out)} frame counts for {len(layout.streams)} streams; give one per stream")
    if min(out) < 1:
        raise ValueError(f"every stream needs at least one frame, got {out}")
    return out


def _cell_index(layout: TokenLayout, frames: tuple[int, ...]) -> Callable[[int, int, int], int]:
    starts = [0]
    for s, f in zip(layout.streams, frames):
        starts.append(starts[-1] + f * s.num_slots)
    return lambda s, f, j: starts[s] + f * layout.streams[s].num_slots + j


def _frame_cells(layout: TokenLayout, index: Callable[[int, int, int], int], s: int, j: int,
                 frame_index: Tensor) -> Tensor:
    """Flat indices of slot ``j`` of stream ``s`` at ``frame_index`` (cells are frame-major per stream)."""
    return index(s, 0, j) + layout.streams[s].num_slots * frame_index


def _one_column_vocab(layout: TokenLayout) -> tuple[int, tuple[tuple[int, ...], ...], bool]:
    """All codebooks in one column: each (stream, slot) codebook gets an offset, a shared codebook counts once.

    Returns the column's vocabulary size, the offsets per stream and slot, and whether it is one codebook.
    """
    offsets, total, groups = [], 0, 0
    for s in layout.streams:
        if s.shared_codebook:
            offsets.append((total,) * s.num_slots)
            total += s.codebook_sizes[0]
            groups += 1
        else:
            offsets.append(tuple(total + sum(s.codebook_sizes[:j]) for j in range(s.num_slots)))
            total += sum(s.codebook_sizes)
            groups += s.num_slots
    return total, tuple(offsets), groups == 1


def _slot_columns_vocab(layout: TokenLayout) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...], bool]:
    """One column per (stream, slot): no offsets, a vocabulary per column."""
    sizes = tuple(k for s in layout.streams for k in s.codebook_sizes)
    shared = len(layout.streams) == 1 and (layout.streams[0].shared_codebook or layout.streams[0].num_slots == 1)
    return sizes, tuple((0,) * s.num_slots for s in layout.streams), shared


def _one_column_pattern(name: str, layout: TokenLayout, frames: tuple[int, ...], order: list[Cell],
                        positions: Tensor) -> SequencePattern:
    index = _cell_index(layout, frames)
    cells = torch.tensor([[index(*c)] for c in order], dtype=torch.long)  # (steps, 1)
    vocab, offsets, shared = _one_column_vocab(layout)
    return SequencePattern(name, layout, frames, cells, positions.float(), (vocab,), offsets, shared)


def _equal_frames(name: str, layout: TokenLayout, frames: tuple[int, ...]) -> int:
    rates = {s.frame_rate for s in layout.streams}
    if len(rates) != 1 or len(set(frames)) != 1:
        raise ValueError(f"the {name} pattern needs every stream at one frame rate and frame count, got rates "
                         f"{[s.frame_rate for s in layout.streams]} and frames {list(frames)}; use flatten or "
                         "coarse-to-fine for multi-rate layouts")
    return frames[0]


# ------------------------------------------------------------------------------------------------ patterns
def flatten_pattern(layout: TokenLayout, frames: int | Sequence[int]) -> SequencePattern:
    """One cell per step, frame-major; streams interleave by frame start time (ties: stream, then slot)."""
    fr = stream_frames(layout, frames)
    order = sorted(
        ((s, f, j) for s, st in enumerate(layout.streams) for f in range(fr[s]) for j in range(st.num_slots)),
        key=lambda c: (Fraction(c[1]) / Fraction(layout.streams[c[0]].frame_rate), c[0], c[1], c[2]),
    )
    return _one_column_pattern("flatten", layout, fr, order, torch.arange(len(order)).unsqueeze(1))


def band_grid_pattern(layout: TokenLayout, frames: int | Sequence[int], positions: str = "2d") -> SequencePattern:
    """BandTok: one stream flattened frame-major, positions ``(time = frame, band = slot)`` for 2-D RoPE.

    ``positions="1d"`` gives the same order with plain step indices — the ablation of 2-D RoPE."""
    if positions not in ("1d", "2d"):
        raise ValueError(f"band-grid positions must be '1d' or '2d', not {positions!r}")
    if len(layout.streams) != 1:
        raise ValueError(f"the band-grid pattern takes one stream (bands as slots), got {len(layout.streams)}; "
                         "use flatten or coarse-to-fine for several streams")
    fr = stream_frames(layout, frames)
    order = [(0, f, j) for f in range(fr[0]) for j in range(layout.streams[0].num_slots)]
    if positions == "2d":
        pos = torch.tensor([[f, j] for _, f, j in order], dtype=torch.float32)
    else:
        pos = torch.arange(len(order), dtype=torch.float32)[:, None]
    return _one_column_pattern("band-grid", layout, fr, order, pos)


def coarse_to_fine_pattern(layout: TokenLayout, frames: int | Sequence[int]) -> SequencePattern:
    """Every cell of stream 0 (coarsest) first, then stream 1, ...; positions in finest-rate frames."""
    rates = [s.frame_rate for s in layout.streams]
    if any(b < a for a, b in itertools.pairwise(rates)):
        raise ValueError(f"coarse-to-fine expects streams ordered coarsest first (non-decreasing frame rates), "
                         f"got {rates}")
    fr = stream_frames(layout, frames)
    order = [(s, f, j) for s, st in enumerate(layout.streams) for f in range(fr[s]) for j in range(st.num_slots)]
    finest = max(rates)
    positions = torch.tensor([[f * finest / rates[s]] for s, f, _ in order], dtype=torch.float32)
    return _one_column_pattern("coarse-to-fine", layout, fr, order, positions)


def parallel_pattern(layout: TokenLayout, frames: int | Sequence[int]) -> SequencePattern:
    """One step per frame; column ``k`` = the k-th (stream, slot), all predicted together."""
    fr = stream_frames(layout, frames)
    n = _equal_frames("parallel", layout, fr)
    index = _cell_index(layout, fr)
    columns = [(s, j) for s, st in enumerate(layout.streams) for j in range(st.num_slots)]
    frame_index = torch.arange(n)
    cells = torch.stack([_frame_cells(layout, index, s, j, frame_index) for s, j in columns], dim=1)
    sizes, offsets, shared = _slot_columns_vocab(layout)
    return SequencePattern("parallel", layout, fr, cells, torch.arange(n, dtype=torch.float32).unsqueeze(1),
                           sizes, offsets, shared)


def delay_pattern(layout: TokenLayout, frames: int | Sequence[int],
                  delays: Sequence[int] | None = None) -> SequencePattern:
    """Column ``k`` (the k-th (stream, slot)) predicts frame ``t - delays[k]`` at step ``t``.

    With the default ``delays[k] = k`` the pattern has ``frames + K - 1`` steps, and slot ``k`` of a frame is
    predicted after slots ``< k`` of the same frame (MusicGen's "delay" interleaving).
    """
    fr = stream_frames(layout, frames)
    n = _equal_frames("delay", layout, fr)
    columns = [(s, j) for s, st in enumerate(layout.streams) for j in range(st.num_slots)]
    d = tuple(range(len(columns))) if delays is None else tuple(int(x) for x in delays)
    if len(d) != len(columns) or min(d) < 0:
        raise ValueError(f"delays need one non-negative entry per slot ({len(columns)}), got {d}")
    index = _cell_index(layout, fr)
    steps = n + max(d)
    cells = torch.full((steps, len(columns)), NO_CELL, dtype=torch.long)
    frame_index = torch.arange(n)
    for k, (s, j) in enumerate(columns):
        cells[frame_index + d[k], k] = _frame_cells(layout, index, s, j, frame_index)
    sizes, offsets, shared = _slot_columns_vocab(layout)
    return SequencePattern("delay", layout, fr, cells, torch.arange(steps, dtype=torch.float32).unsqueeze(1),
                           sizes, offsets, shared)


def dual_track_pattern(layout: TokenLayout, frames: int | Sequence[int], mode: str = "parallel",
                       source: int | str = 0, prefix_seconds: float = 2.0,
                       prefix_frames: int | None = None) -> SequencePattern:
    """DuoTok's dual-track LM protocols (Appendix B.1) over a layout of exactly two tracks at one frame rate.

    ``mode="parallel"`` (B.1.3, unconditional): one step per frame, every (track, slot) predicted at once by
    its own head — the parallel pattern, checked to hold two tracks.
    ``mode="conditional"`` (B.1.4, track-to-track): steps ``0 … F-1`` predict the ``source`` track's frames
    (its columns), steps ``F … 2F-1`` the other track's (its columns); the source and the target's first
    ``prefix_frames`` (default: ``prefix_seconds`` at the track's frame rate) are context, only the rest of
    the target is scored. Both modes have the same columns and vocabulary, so one LM architecture runs
    both. Positions are frame indices in both halves: the target's frame ``f`` sits at the position of the
    source's frame ``f``, which it accompanies (RoPE sees offset 0 between aligned frames).
    """
    if mode not in ("parallel", "conditional"):
        raise ValueError(f"dual-track mode must be 'parallel' or 'conditional', not {mode!r}")
    if len(layout.streams) != 2:
        raise ValueError(f"the dual-track pattern takes two tracks (streams), got {len(layout.streams)}; "
                         "run a single-stream tokenizer on each stem to make a two-track layout")
    fr = stream_frames(layout, frames)
    n = _equal_frames("dual-track", layout, fr)
    if mode == "parallel":
        p = parallel_pattern(layout, fr)
        return SequencePattern("dual-track", layout, fr, p.cells, p.positions, p.vocab_sizes, p.slot_offsets,
                               p.shared_vocab)
    names = [s.name for s in layout.streams]
    src = names.index(source) if isinstance(source, str) and source in names else source
    if src not in (0, 1):
        raise ValueError(f"source must be a track index (0, 1) or name ({', '.join(names)}), got {source!r}")
    tgt = 1 - src
    if prefix_frames is None:
        prefix_frames = round(prefix_seconds * layout.streams[tgt].frame_rate)
    if not 0 <= prefix_frames < n:
        raise ValueError(f"the target's prefix ({prefix_frames} frames) must leave some of its {n} frames to score")
    index = _cell_index(layout, fr)
    columns = [(s, j) for s, st in enumerate(layout.streams) for j in range(st.num_slots)]
    cells = torch.full((2 * n, len(columns)), NO_CELL, dtype=torch.long)
    frame_index = torch.arange(n)
    for k, (s, j) in enumerate(columns):
        half = 0 if s == src else n
        cells[half + frame_index, k] = _frame_cells(layout, index, s, j, frame_index)
    scored = torch.zeros_like(cells, dtype=torch.bool)
    scored[n + prefix_frames:] = cells[n + prefix_frames:] >= 0
    positions = torch.cat([frame_index, frame_index]).float().unsqueeze(1)
    sizes, offsets, shared = _slot_columns_vocab(layout)
    return SequencePattern("dual-track", layout, fr, cells, positions, sizes, offsets, shared, scored)


PATTERNS: dict[str, Callable[..., SequencePattern]] = {
    "flatten": flatten_pattern,
    "parallel": parallel_pattern,
    "delay": delay_pattern,
    "band-grid": band_grid_pattern,
    "coarse-to-fine": coarse_to_fine_pattern,
    "dual-track": dual_track_pattern,
}


def make_pattern(name: str, layout: TokenLayout, frames: int | Sequence[int], **options) -> SequencePattern:
    """Build pattern ``name`` (a key of ``PATTERNS``) for ``layout`` and ``frames`` (see :func:`stream_frames`).

    ``options`` go to the builder (``delays`` for ``delay``; ``mode``, ``source``, ``prefix_seconds`` for
    ``dual-track``).
    """
    if name not in PATTERNS:
        raise ValueError(f"unknown sequence pattern {name!r}; choose one of {sorted(PATTERNS)}")
    return PATTERNS[name](layout, frames, **options)
