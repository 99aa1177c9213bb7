"""The contract every separator keeps, and what they all get for free.

A separator turns a mono mixture into its stems: ``separate(mix (B, T)) -> (B, n_stems, T)``, stems in the
order of ``stem_names``. A subclass supplies one model function on a padded window —
``_separate_window(mix (B, T), **options)`` with ``T`` a multiple of ``hop_samples`` — and its training
forward (``forward(mix, stems) -> losses``); the base class provides:

- **long inputs in windows** with bounded memory: a mixture longer than ``chunk_units + 2 × context_units``
  units (of ``hop_samples`` samples) is cut into chunks of ``chunk_units`` units, each separated with
  ``context_units`` units of real audio on either side, and only the chunk's centre is kept — the scheme of
  the tokenizers' chunked encoding. :func:`iter_windows` is the one implementation, used alike by
  :meth:`Separator.separate` on tensors and by :func:`musictok.separation.files.separate_file` on a file
  read a block at a time; a separator whose receptive field is within the context (the mask baseline)
  gives the same stems in chunks as on the whole file, away from the seams (tested);
- persistence like the tokenizers' (``config.json`` + ``model.safetensors`` through
  :mod:`musictok.pretrained`), a registry by kind, and one :class:`SeparatorError` for what a user can fix.
"""

from __future__ import annotations

import abc
import dataclasses
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .. import pretrained
from ..errors import MusictokError

SEPARATORS: dict[str, type["Separator"]] = {}  # kind -> class, filled by @register_separator


class SeparatorError(MusictokError):
    """A separator that cannot be found, loaded or built as asked."""


def register_separator(name: str):
    """Class decorator: make a separator findable by kind in saved configs."""

    def wrap(cls: type[Separator]) -> type[Separator]:
        cls.name = name
        SEPARATORS[name] = cls
        return cls

    return wrap


def _load_builtin_separators() -> None:
    from . import lm, mask  # noqa: F401  (each registers itself)


# ------------------------------------------------------------------------------------------------ windows
@dataclass
class Window:
    """One window of a long input: ``audio (..., n)`` zero-padded to whole units, and the part of the
    separated window to keep, ``[keep_start, keep_stop)`` (samples of this window)."""

    audio: Tensor
    keep_start: int
    keep_stop: int


def iter_windows(blocks: Iterable[Tensor], hop: int, chunk_units: int, context_units: int) -> Iterator[Window]:
    """Cut audio given as consecutive blocks ``(..., n_i)`` into windows of at most
    ``chunk_units + 2 × context_units`` units of ``hop`` samples, reading only as far ahead as one window.

    An input of at most that many units is one window (the whole input). Otherwise chunk ``k`` covers units
    ``[k·chunk, (k+1)·chunk)`` and its window adds up to ``context_units`` on each side (less at the ends);
    concatenating the kept parts gives exactly the input's length.
    """
    if hop < 1 or chunk_units < 1 or context_units < 0:
        raise ValueError(f"need hop >= 1, chunk_units >= 1, context_units >= 0; got {hop}, {chunk_units}, {context_units}")
    it = iter(blocks)
    buf: Tensor | None = None
    buf_start, total = 0, None  # buf holds samples [buf_start, buf_start + buf.shape[-1])

    def fill(until: int) -> None:
        nonlocal buf, total
        parts = [] if buf is None else [buf]
        have = buf_start + (0 if buf is None else buf.shape[-1])
        while total is None and have < until:
            block = next(it, None)
            if block is None:
                total = have
            else:
                parts.append(torch.as_tensor(block))
                have += parts[-1].shape[-1]
        if parts:
            buf = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]

    def padded(lo: int, hi: int) -> Tensor:
        seg = buf[..., lo * hop - buf_start: hi * hop - buf_start]
        return nn.functional.pad(seg, (0, (hi - lo) * hop - seg.shape[-1]))

    whole = chunk_units + 2 * context_units
    fill(whole * hop + 1)
    if buf is None or (total is not None and total == 0):
        raise ValueError("the audio is empty")
    if total is not None and -(-total // hop) <= whole:
        yield Window(padded(0, -(-total // hop)), 0, total)
        return
    start = 0
    while True:
        fill((start + chunk_units + context_units) * hop)
        units = None if total is None else -(-total // hop)
        if units is not None and start >= units:
            return
        stop = start + chunk_units if units is None else min(start + chunk_units, units)
        lo = max(start - context_units, 0)
        hi = stop + context_units if units is None else min(stop + context_units, units)
        keep_stop = (stop - lo) * hop if total is None else min((stop - lo) * hop, total - lo * hop)
        yield Window(padded(lo, hi), (start - lo) * hop, keep_stop)
        start = stop
        drop = max(start - context_units, 0) * hop - buf_start  # the next window starts here
        buf, buf_start = buf[..., drop:], buf_start + drop


# ------------------------------------------------------------------------------------------------ the contract
class Separator(nn.Module, abc.ABC):
    """Mixture -> stems. Subclasses set ``config_class`` and implement the abstract methods.

    Attributes a subclass sets in ``__init__``: ``config`` (a dataclass with ``sample_rate`` and ``stems``),
    ``hop_samples`` (the unit windows are counted in), ``context_units`` and ``chunk_units`` (see the module
    docstring), and optionally ``min_units`` (the shortest window the model takes; shorter inputs are
    zero-padded to it and trimmed back).
    """

    name: ClassVar[str] = "separator"
    config_class: ClassVar[type]
    hop_samples: int
    context_units: int
    chunk_units: int
    min_units: int = 1

    def __init__(self, config: Any):
        super().__init__()
        self.config = config
        self.source: str | None = None  # the name or folder it was loaded from

    # ---------------------------------------------------------------- what subclasses provide
    @abc.abstractmethod
    def _separate_window(self, mix: Tensor, **options: Any) -> Tensor:
        """``(B, T)`` with ``T % hop_samples == 0`` -> ``(B, n_stems, T)`` (abstract)."""

    @abc.abstractmethod
    def forward(self, mix: Tensor, stems: Tensor) -> dict[str, Tensor]:
        """Training losses of one batch: ``mix (B, T)``, true ``stems (B, n_stems, T)`` in ``stem_names``
        order -> ``{"loss": total, ...}`` (abstract)."""

    def check_options(self, **options: Any) -> None:
        """Refuse decoding options this separator does not take (override to accept some)."""
        if options:
            raise SeparatorError(f"a {self.name} separator takes no options, got {sorted(options)}")

    # ---------------------------------------------------------------- derived facts
    @property
    def sample_rate(self) -> int:
        return int(self.config.sample_rate)

    @property
    def stem_names(self) -> list[str]:
        return list(self.config.stems)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def config_dict(self) -> dict:
        return dataclasses.asdict(self.config)

    # ---------------------------------------------------------------- public API
    @torch.no_grad()
    def separate(self, mix: Any, *, chunk_units: int | None = None, on_window=None, **options: Any) -> Tensor:
        """Separate mono mixtures at ``sample_rate``: ``(T,)`` or ``(B, T)`` -> ``(B, n_stems, T)`` on the
        model's device. Long inputs go in windows (see the module docstring); ``on_window(k)`` is called
        after each. ``options`` are the model's decoding options (e.g. ``temperature`` for the LM)."""
        x = torch.as_tensor(mix)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[-1] == 0:
            raise ValueError(f"mix must be a non-empty (T,) or (B, T) mono waveform, got shape {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("mix contains NaN or Inf samples")
        self.check_options(**options)
        pieces = [w for w in self.separate_windows([x.float()], chunk_units=chunk_units, on_window=on_window,
                                                   **options)]
        return torch.cat(pieces, dim=-1)

    @torch.no_grad()
    def separate_windows(self, blocks: Iterable[Tensor], *, chunk_units: int | None = None, on_window=None,
                         **options: Any) -> Iterator[Tensor]:
        """The kept stems ``(B, n_stems, n_k)`` of each window of audio given as blocks ``(B, n_i)``; their
        concatenation is the separation of the whole input. Only one window is held at a time."""
        was_training = self.training
        self.eval()
        try:
            for k, w in enumerate(iter_windows(blocks, self.hop_samples, chunk_units or self.chunk_units,
                                               self.context_units)):
                audio = w.audio.to(self.device)
                n = audio.shape[-1]
                short = max(self.min_units * self.hop_samples - n, 0)
                stems = self._separate_window(nn.functional.pad(audio, (0, short)), **options)[..., :n]
                yield stems[..., w.keep_start: w.keep_stop]
                if on_window is not None:
                    on_window(k)
        finally:
            self.train(was_training)

    # ---------------------------------------------------------------- persistence
    def save_pretrained(self, directory: str | os.PathLike, extra: dict | None = None, *,
                        storage_dtype: torch.dtype | None = None) -> Path:
        """Write ``config.json`` + ``model.safetensors`` into ``directory`` (replaced atomically);
        ``storage_dtype=torch.float16`` halves the file."""
        weights = pretrained.for_storage(self.state_dict(), storage_dtype)
        meta = {"separator": self.name, "config": self.config_dict(), "stems": self.stem_names,
                "storage_dtype": weights.dtype} | (extra or {})
        return pretrained.write(directory, weights.stored, meta)

    @classmethod
    def from_config(cls, config: Any) -> Separator:
        """A separator with untrained weights for ``config`` (loading fills them)."""
        return cls(config)

    @classmethod
    def from_pretrained(cls, name_or_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> Separator:
        """Load a saved separator by folder or by bundled name (e.g. ``"sep-mask-small"``)."""
        try:
            d, meta, state = pretrained.read(name_or_dir, map_location)
        except pretrained.PretrainedError as e:
            raise SeparatorError(str(e)) from None
        kind = meta.get("separator")
        _load_builtin_separators()
        if not isinstance(kind, str) or kind not in SEPARATORS:
            what = ("a tokenizer" if "tokenizer" in meta and "model" not in meta
                    else "a token LM" if meta.get("model") == "token-lm" else "not a separator folder")
            raise SeparatorError(f"{d}: {what}, not a separator (separators: {', '.join(sorted(SEPARATORS))}; "
                                 "train one with `musictok train separator`)")
        klass = SEPARATORS[kind]
        if cls is not Separator and not issubclass(klass, cls):
            raise SeparatorError(f"{d}: holds a {kind} separator, not a {cls.name}")
        try:
            model = klass.from_config(klass.config_class.from_dict(meta["config"]))
            model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise SeparatorError(f"{d}: config and weights do not make a {kind} separator "
                                 f"({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
        model = model.to(map_location).eval()
        p = Path(name_or_dir)
        model.source = str(d.resolve()) if p.exists() else str(name_or_dir)
        return model


def stem_group(stems) -> str:
    """The corpus stem group that holds these stem names (``musdb`` or ``duo``), for training data."""
    from ..data.stems import MUSDB_STEMS

    names = list(stems)
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"stems must be distinct names, got {names}")
    for group, known in (("musdb", MUSDB_STEMS), ("duo", ("lead", "accompaniment"))):
        if set(names) == set(known):
            return group
    raise ValueError(f"stems {names} are not an ordering of one stem group: musdb {list(MUSDB_STEMS)} or "
                     "duo ['lead', 'accompaniment']")
