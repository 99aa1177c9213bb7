"""Training on a weighted mixture of sources, with gain and EQ augmentation.

A run config may list several sources instead of one corpus::

    data:
      sources:
        - {path: data/real, weight: 0.5}                 # imported recordings (`musictok data import`)
        - {path: data/chorales, weight: 0.3}             # a rendered corpus: its mixes
        - {path: data/chorales, weight: 0.2, stems: true, name: chorale-stems}   # ... or one part stem
        - {path: ~/my-music, weight: 0.1}                # any folder of audio (split by file, below)
      gain_db: [-18, 6]      # a random gain per clip, uniform in dB (peaks are kept under 0 dBFS)
      eq_db: 6               # a random low/high shelf tilt per clip, ± this many dB
      level_dbfs: -20        # normalise each clip to this RMS level before the random gain

Like every dataset here, clip *i* is a pure function of ``(seed, i)``, so resume is exact: the source is
drawn from the weights, then that source's own sampler picks the piece and offset.

A plain folder of audio has no ``metadata.jsonl`` to carry splits, so its files are split by a hash of their
path inside the folder (:func:`~musictok.data.datasets.folder_split`: about 10 % validate, at least one file
of a folder of two or more): it trains on the rest and is validated like a corpus source.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..audio import load
from .datasets import AudioFolderClips, MixClips, _fit

__all__ = ["Augment", "MixtureClips", "SourceSpec", "StemPartClips", "source_clips", "validation_sets"]


@dataclass
class SourceSpec:
    """One source of a mixture: a corpus folder (rendered or imported) or any folder of audio."""

    path: str
    weight: float = 1.0
    name: str = ""
    stems: bool = False  # rendered corpora only: a random part stem instead of the mix

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise ValueError(f"data.sources: path must be a folder name, not {self.path!r}")
        if not isinstance(self.weight, (int, float)) or isinstance(self.weight, bool) or not self.weight > 0:
            raise ValueError(f"data.sources[{self.path}]: weight must be a number > 0, not {self.weight!r}")
        self.name = self.name or Path(self.path).name + ("-stems" if self.stems else "")

    @property
    def is_corpus(self) -> bool:
        return (Path(self.path) / "metadata.jsonl").is_file()


@dataclass
class Augment:
    """Per-clip augmentation: random shelf EQ (± dB), then the level: optionally normalised to
    ``level_dbfs`` RMS (as a gain-invariant tokenizer's ``encode`` does to a whole file), then a random
    gain in ``gain_db`` (a 2 s clip of a normalised song sits above or below the song's level)."""

    gain_db: tuple[float, float] = (0.0, 0.0)
    eq_db: float = 0.0
    level_dbfs: float | None = None

    @property
    def active(self) -> bool:
        return self.gain_db != (0.0, 0.0) or self.eq_db > 0 or self.level_dbfs is not None

    def __call__(self, wav: np.ndarray, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
        x = wav.astype(np.float32, copy=True)
        if self.eq_db > 0:
            from scipy.signal import lfilter

            # Split at a random crossover with a one-pole low-pass; scale the two bands independently.
            cutoff = float(np.exp(rng.uniform(np.log(150.0), np.log(4000.0))))
            a = float(np.exp(-2 * np.pi * cutoff / sample_rate))
            low = lfilter([1 - a], [1, -a], x).astype(np.float32)
            g_low, g_high = 10 ** (rng.uniform(-self.eq_db, self.eq_db, size=2) / 20)
            x = g_low * low + g_high * (x - low)
        if self.level_dbfs is not None:
            rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
            if rms > 1e-6:
                x = x * (10 ** (self.level_dbfs / 20) / rms)
        lo, hi = self.gain_db
        if (lo, hi) != (0.0, 0.0):
            x = x * 10 ** (rng.uniform(lo, hi) / 20)
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        if peak > 0.999:  # a gain that would clip is turned down to just under full scale
            x = x * (0.999 / peak)
        return x.astype(np.float32)


class StemPartClips(MixClips):
    """Clips of one randomly drawn part stem of a rendered corpus (solo instruments for training)."""

    def __getitem__(self, index: int) -> dict:
        i, start = self.sampler(index)
        piece = self.index.pieces[i]
        parts = piece.get("parts") or []
        if not parts:
            return super().__getitem__(index)
        rng = np.random.default_rng([self.sampler.seed, index, 1])
        part = parts[int(rng.integers(len(parts)))]
        wav, _ = load(self.index.folder(piece) / part["stem"], self.sample_rate, offset=start,
                      duration=self.clip_seconds)
        return {"audio": torch.from_numpy(_fit(wav, self.num_samples)), "piece": piece["id"], "start": start}


def source_clips(spec: SourceSpec, split: str, clip_seconds: float, sample_rate: int, *, random: bool,
                 length: int = 10_000, seed: int = 0, max_clips: int | None = None) -> Dataset:
    """The clips of one source: a corpus split (mixes or part stems), or a plain audio folder."""
    if spec.is_corpus:
        cls = StemPartClips if spec.stems else MixClips
        return cls(spec.path, split, clip_seconds, sample_rate, random=random, length=length, seed=seed,
                   max_clips=max_clips)
    if spec.stems:
        raise ValueError(f"data.sources[{spec.path}]: stems: true needs a rendered corpus (metadata.jsonl)")
    return AudioFolderClips(spec.path, clip_seconds, sample_rate, random=random, length=length, seed=seed,
                            max_clips=max_clips, split=split)


class MixtureClips(Dataset):
    """Training clips drawn from weighted sources, augmented: ``{"audio": (T,), "source": name, ...}``."""

    def __init__(self, specs: list[SourceSpec], clip_seconds: float, sample_rate: int, *, length: int = 10_000,
                 seed: int = 0, augment: Augment | None = None):
        if not specs:
            raise ValueError("a mixture needs at least one source")
        self.specs = specs
        self.sources = [source_clips(s, "train", clip_seconds, sample_rate, random=True, length=length,
                                     seed=seed * 1000 + k) for k, s in enumerate(specs)]
        w = np.asarray([s.weight for s in specs], dtype=np.float64)
        self.p = w / w.sum()
        self.length, self.seed, self.sample_rate = length, seed, sample_rate
        self.augment = augment or Augment()

    def __len__(self) -> int:
        return self.length

    def source_of(self, index: int) -> int:
        return int(np.random.default_rng([self.seed, index, 0]).choice(len(self.specs), p=self.p))

    def __getitem__(self, index: int) -> dict:
        k = self.source_of(index)
        item = dict(self.sources[k][index])
        if self.augment.active:
            rng = np.random.default_rng([self.seed, index, 2])
            item["audio"] = torch.from_numpy(self.augment(item["audio"].numpy(), rng, self.sample_rate))
        item["source"] = self.specs[k].name
        return item


def validation_sets(specs: list[SourceSpec], split: str, seconds: float, sample_rate: int,
                    max_clips: int) -> dict[str, Dataset]:
    """A fixed validation grid per source that has pieces (a folder: files) in ``split``."""
    out: dict[str, Dataset] = {}
    for s in specs:
        if s.name in out or (not s.is_corpus and split not in ("train", "valid")):
            continue
        try:
            out[s.name] = source_clips(s, split, seconds, sample_rate, random=False, max_clips=max_clips)
        except ValueError:  # no piece in this split
            continue
    if not out:
        raise ValueError(f"no source of the mixture has pieces in the {split!r} split to validate on "
                         "(a folder of audio validates on some of its files when it holds two or more)")
    return out
