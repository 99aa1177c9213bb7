"""PyTorch datasets over a rendered corpus or any folder of audio.

Training clips are a pure function of ``(seed, index)``: clip *i* always comes from the same piece and
offset, so a resumed run that restarts at index ``step × batch`` sees exactly the data it would have seen.
Validation clips are a fixed, evenly spaced grid over the split's pieces.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..audio import AudioError, find_audio, load
from .stems import MUSDB_STEMS


class CorpusIndex:
    """The pieces of a rendered corpus (``metadata.jsonl``), optionally one split."""

    def __init__(self, root: str | Path, split: str | None = None):
        self.root = Path(root)
        index = self.root / "metadata.jsonl"
        if not index.is_file():
            raise FileNotFoundError(f"{index}: no corpus index here; run `musictok data build --out {root}`")
        rows = [json.loads(line) for line in index.read_text().splitlines() if line.strip()]
        if split is not None:
            if split not in ("train", "valid", "test"):
                raise ValueError(f"split must be train, valid or test, not {split!r}")
            rows = [r for r in rows if r["split"] == split]
        self.split = split
        self.pieces: list[dict] = rows

    def __len__(self) -> int:
        return len(self.pieces)

    def folder(self, piece: dict) -> Path:
        """Where a piece's files are: its own folder, or (imported segments) its source's folder."""
        return self.root / piece.get("folder", piece["id"])

    @property
    def hours(self) -> float:
        return sum(p["duration_seconds"] for p in self.pieces) / 3600


def _clip_grid(durations: list[float], clip_seconds: float, max_clips: int | None) -> list[tuple[int, float]]:
    """Evenly spaced, non-overlapping clips, round-robin over pieces so a cap keeps variety."""
    per_piece = [max(int(d // clip_seconds), 1) for d in durations]
    out: list[tuple[int, float]] = []
    k = 0
    while any(k < n for n in per_piece):
        for i, n in enumerate(per_piece):
            if k < n:
                out.append((i, k * clip_seconds))
        k += 1
    return out[:max_clips] if max_clips else out


class _ClipSampler:
    """Shared logic: random clips for training, a fixed grid for evaluation."""

    def __init__(self, durations: list[float], clip_seconds: float, *, random: bool, seed: int,
                 length: int | None, max_clips: int | None):
        if not durations:
            raise ValueError("no audio to draw clips from (empty split or folder)")
        self.durations = durations
        self.clip_seconds = clip_seconds
        self.random = random
        self.seed = seed
        weights = np.asarray(durations, dtype=np.float64)
        self.p = weights / weights.sum()  # longer pieces give proportionally more clips
        self.grid = None if random else _clip_grid(durations, clip_seconds, max_clips)
        self.length = length if random else len(self.grid)

    def __call__(self, index: int) -> tuple[int, float]:
        if not self.random:
            return self.grid[index]
        rng = np.random.default_rng([self.seed, index])
        i = int(rng.choice(len(self.durations), p=self.p))
        room = max(self.durations[i] - self.clip_seconds, 0.0)
        return i, float(rng.uniform(0.0, room))


def _fit(wav: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad the last axis to ``n`` samples (pieces shorter than a clip are padded)."""
    if wav.shape[-1] >= n:
        return wav[..., :n]
    pad = [(0, 0)] * (wav.ndim - 1) + [(0, n - wav.shape[-1])]
    return np.pad(wav, pad)


class MixClips(Dataset):
    """Fixed-length clips of the mix: ``{"audio": (T,), "piece": id, "start": s}``.

    ``random=True`` draws ``length`` clips from ``(seed, index)``; ``random=False`` gives the deterministic
    grid (validation / test), capped at ``max_clips``.
    """

    def __init__(self, root: str | Path, split: str = "train", clip_seconds: float = 2.0,
                 sample_rate: int = 24000, *, random: bool = True, length: int = 10_000, seed: int = 0,
                 max_clips: int | None = None, group: str = "parts"):
        self.index = CorpusIndex(root, split)
        if not self.index.pieces:
            from collections import Counter

            have = Counter(p["split"] for p in CorpusIndex(root).pieces)
            found = ", ".join(f"{k} {v}" for k, v in sorted(have.items())) or "none at all"
            raise ValueError(f"{root}: no pieces in the {split!r} split to draw clips from (pieces per split: {found})")
        self.clip_seconds = clip_seconds
        self.sample_rate = sample_rate
        self.num_samples = int(round(clip_seconds * sample_rate))
        self.subdir = "musdb" if group == "musdb" else ""
        self.sampler = _ClipSampler([p["duration_seconds"] for p in self.index.pieces], clip_seconds,
                                    random=random, seed=seed, length=length, max_clips=max_clips)

    def __len__(self) -> int:
        return self.sampler.length

    def __getitem__(self, index: int) -> dict:
        i, start = self.sampler(index)
        piece = self.index.pieces[i]
        path = self.index.folder(piece) / self.subdir / piece["mix"]
        wav, _ = load(path, self.sample_rate, offset=start, duration=self.clip_seconds)
        return {"audio": torch.from_numpy(_fit(wav, self.num_samples)), "piece": piece["id"], "start": start}


class StemClips(MixClips):
    """Aligned clips of the mix and its stems for one stem group.

    - ``parts``: ``stems`` is ``(max_parts, T)`` zero-padded, with ``mask`` saying which rows are parts;
    - ``duo``: ``(2, T)`` = lead, accompaniment (summed from the part stems);
    - ``musdb``: ``(4, T)`` = vocals, bass, other, drums.
    In every group the stems sum to ``mix`` (up to float rounding for the summed duo stems).
    """

    def __init__(self, root: str | Path, split: str = "train", clip_seconds: float = 2.0,
                 sample_rate: int = 24000, *, group: str = "parts", max_parts: int = 6, **kw):
        if group not in ("parts", "duo", "musdb"):
            raise ValueError(f"stem group must be parts, duo or musdb, not {group!r}")
        super().__init__(root, split, clip_seconds, sample_rate, group=group, **kw)
        self.group = group
        self.max_parts = max_parts
        if group == "musdb" and any(p.get("musdb") is None for p in self.index.pieces):
            raise ValueError(f"{root}: corpus was built without the musdb group (rerun data build with musdb)")
        if group == "parts":
            too_many = [p["id"] for p in self.index.pieces if len(p["parts"]) > max_parts]
            if too_many:
                raise ValueError(f"{too_many[0]} has more than max_parts={max_parts} parts; raise max_parts")

    @property
    def stem_names(self) -> list[str]:
        if self.group == "duo":
            return ["lead", "accompaniment"]
        if self.group == "musdb":
            return list(MUSDB_STEMS)
        return [f"part{i}" for i in range(self.max_parts)]

    def _read(self, path: Path, start: float) -> np.ndarray:
        wav, _ = load(path, self.sample_rate, offset=start, duration=self.clip_seconds)
        return _fit(wav, self.num_samples)

    def __getitem__(self, index: int) -> dict:
        return self.clip(*self.sampler(index))

    def clip(self, i: int, start: float) -> dict:
        """The clip of piece ``i`` (of this split) from ``start`` seconds: what item access returns."""
        piece = self.index.pieces[i]
        folder = self.index.folder(piece)
        mix = self._read(folder / self.subdir / piece["mix"], start)
        mask = np.ones(len(self.stem_names), dtype=bool)
        if self.group == "musdb":
            stems = np.stack([self._read(folder / "musdb" / piece["musdb"]["stems"][n], start)
                              for n in MUSDB_STEMS])
        else:
            parts = np.stack([self._read(folder / p["stem"], start) for p in piece["parts"]])
            if self.group == "duo":
                groups = piece["groups"]["duo"]
                stems = np.stack([parts[groups["lead"]].sum(0), parts[groups["accompaniment"]].sum(0)])
            else:
                stems = np.zeros((self.max_parts, self.num_samples), dtype=np.float32)
                stems[: len(parts)] = parts
                mask[len(parts):] = False
        return {"mix": torch.from_numpy(mix), "stems": torch.from_numpy(stems.astype(np.float32)),
                "mask": torch.from_numpy(mask), "piece": piece["id"], "start": start}


# A plain folder of audio (no metadata.jsonl) used for training holds this share of its files out for
# validation. No test share: a folder given for training is the user's data, their test set lives elsewhere.
FOLDER_VALID_SHARE = 0.10


def _path_fraction(root: Path, f: Path) -> float:
    """A uniform number in [0, 1) from the SHA-1 of the file's path relative to ``root``: fixed for a file
    wherever the folder is mounted, and independent of every other file in it."""
    rel = f.relative_to(root).as_posix() if root.is_dir() else f.name
    return int(hashlib.sha1(rel.encode()).hexdigest()[:12], 16) / float(16**12)


def folder_split(root: str | Path, files: list[Path] | None = None) -> dict[str, list[Path]]:
    """``{"train": [...], "valid": [...]}`` for a plain audio folder, decided file by file.

    A file validates when its path hash falls below :data:`FOLDER_VALID_SHARE`, so adding files never moves
    another file between splits. Small folders need a floor: with two files or more, at least one
    validates (the lowest hash) and at least one trains (the highest); a single file only trains.
    Splitting by whole files keeps a recording from straddling the split, as ``data import`` does."""
    root = Path(root)
    files = sorted(files if files is not None else find_audio(root))
    u = {f: _path_fraction(root, f) for f in files}
    valid = [f for f in files if u[f] < FOLDER_VALID_SHARE]
    if len(files) >= 2:
        if not valid:
            valid = [min(files, key=u.__getitem__)]
        if len(valid) == len(files):
            valid.remove(max(files, key=u.__getitem__))
    held_out = set(valid)
    return {"train": [f for f in files if f not in held_out], "valid": valid}


class AudioFolderClips(Dataset):
    """Clips from any folder of audio files (recursively), resampled to mono ``sample_rate``.

    ``split`` (``"train"`` or ``"valid"``) keeps only that part of :func:`folder_split`, for training on a
    folder; ``None`` reads every file (evaluation). Unreadable files (not audio, truncated, an absurd rate …)
    are refused up front with an `AudioError` naming the file, or, given ``on_bad(path, reason, unreadable)``,
    reported there and left out, together with files shorter than half a clip (``unreadable=False``), which
    would be scored as mostly padding.
    """

    def __init__(self, folder: str | Path, clip_seconds: float = 10.0, sample_rate: int = 24000, *,
                 random: bool = False, length: int = 1000, seed: int = 0, max_clips: int | None = None,
                 on_bad=None, split: str | None = None):
        from ..audio import AudioStream

        self.files = find_audio(folder)
        if not self.files:
            raise AudioError(folder, "no audio files found")
        if split is not None:
            if split not in ("train", "valid"):
                raise ValueError(f"{folder}: a plain audio folder splits into train and valid, not {split!r}")
            self.files = folder_split(folder, self.files)[split]
            if not self.files:
                raise ValueError(f"{folder}: no audio file in the {split!r} split (a folder of one file only trains; "
                                 f"with two or more, about {FOLDER_VALID_SHARE:.0%} of them validate)")
        durations, usable = [], []
        for f in self.files:
            try:
                s = AudioStream(f)  # opens and checks the header, decodes nothing
            except AudioError as e:
                if on_bad is None:
                    raise
                on_bad(f, e.reason, True)
                continue
            if on_bad is not None and s.duration < clip_seconds / 2:
                on_bad(f, f"left out: {s.duration:.2f} s would be a {clip_seconds:g} s clip of mostly padding", False)
                continue
            usable.append(f)
            durations.append(s.duration)
        self.files = usable
        if not usable:
            raise AudioError(folder, f"no usable audio file (none readable and at least {clip_seconds / 2:g} s long)")
        self.clip_seconds = clip_seconds
        self.sample_rate = sample_rate
        self.num_samples = int(round(clip_seconds * sample_rate))
        self.sampler = _ClipSampler(durations, clip_seconds, random=random, seed=seed, length=length,
                                    max_clips=max_clips)

    def __len__(self) -> int:
        return self.sampler.length

    def __getitem__(self, index: int) -> dict:
        i, start = self.sampler(index)
        wav, _ = load(self.files[i], self.sample_rate, offset=start, duration=self.clip_seconds)
        return {"audio": torch.from_numpy(_fit(wav, self.num_samples)), "piece": str(self.files[i]),
                "start": start}
