"""The score behind a rendered piece, on a model's frame grid: piano rolls and onsets per duo track.

Every piece folder holds ``score.mid`` (480 ticks per quarter, one instrument per part in part order, a
generated drum kit last) — the notes exactly as they were rendered, after tempo and transposition jitter.
``piece.json`` says which parts make each duo track (``groups.duo``: lead = the highest voice,
accompaniment = the rest). DuoTok's symbolic head learns to predict, at every Mel frame of a clip, which of
the 88 keys sound in each track and which start there:

- Mel frame ``j`` of a clip is centred on sample ``j × hop`` of the clip (the STFT is centred), i.e. at
  time ``start + j × hop / sr``; a key is **on** at frame ``j`` when a note of it covers that instant
  (``note.start <= t_j < note.end``);
- a note's **onset** is the frame whose centre is nearest to its start.

Drum notes are percussion keys, not pitches: they are left out of the rolls (the drums still sound in the
accompaniment's audio).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .datasets import StemClips

__all__ = ["DUO_TRACKS", "DuoScoreClips", "LOWEST_PITCH", "NUM_PITCHES", "piano_roll", "read_duo_score"]

DUO_TRACKS = ("lead", "accompaniment")
LOWEST_PITCH = 21  # A0
NUM_PITCHES = 88  # A0 … C8


def read_duo_score(path: str | Path, groups: dict[str, list[int]]) -> list[np.ndarray]:
    """``score.mid`` -> per duo track an ``(N, 3)`` float array of ``(pitch, start s, end s)``, drums left out.

    ``groups`` is the piece's ``groups.duo`` (part indices per track); instrument ``i`` of the file is part
    ``i`` (the corpus writes them in part order)."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(str(path))
    out = []
    for track in DUO_TRACKS:
        rows = []
        for i in groups[track]:
            if i < len(pm.instruments) and not pm.instruments[i].is_drum:
                rows += [(n.pitch, n.start, n.end) for n in pm.instruments[i].notes]
        out.append(np.asarray(rows, dtype=np.float64).reshape(-1, 3))
    return out


def piano_roll(notes: np.ndarray, start: float, frames: int, hop_seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """Notes ``(N, 3)`` (pitch, start, end in seconds) -> ``(roll, onset)``, each ``(88, frames)`` bool, for
    ``frames`` frames centred at ``start + j × hop_seconds``."""
    roll = np.zeros((NUM_PITCHES, frames), dtype=bool)
    onset = np.zeros((NUM_PITCHES, frames), dtype=bool)
    for pitch, s, e in notes:
        k = int(pitch) - LOWEST_PITCH
        if not 0 <= k < NUM_PITCHES:
            continue
        # frames j with s <= start + j h < e, i.e. ceil((s - start) / h) <= j < ceil((e - start) / h)
        lo = max(int(np.ceil((s - start) / hop_seconds - 1e-9)), 0)
        hi = min(int(np.ceil((e - start) / hop_seconds - 1e-9)), frames)
        if hi > lo:  # a note that ended before the clip has hi < 0, which a slice would count from the end
            roll[k, lo:hi] = True
        j = int(np.floor((s - start) / hop_seconds + 0.5))
        if 0 <= j < frames:
            onset[k, j] = True
    return roll, onset


class DuoScoreClips(Dataset):
    """Duo clips with the score behind them, for DuoTok's stages 2–4.

    Item: ``mix (T,)``, ``stems (2, T)`` (lead, accompaniment; they sum to the mix), ``roll`` and ``onset``
    ``(2, 88, frames)`` float on the Mel grid of ``hop_length`` (``frames = ceil(T / (hop × r)) × r``, the
    frames a model sees after padding to whole token frames of ``r`` Mel frames), ``view`` (which input
    the model is shown: 0 mix, 1 lead, 2 accompaniment, drawn from ``views`` weights) and ``piece``,
    ``start``. Like every dataset here, item ``i`` is a pure function of ``(seed, i)``.

    ``level_dbfs`` scales mix and stems together to that RMS level of the mix, then ``gain_db`` draws a
    random gain for all three (a gain-invariant tokenizer's training view).
    """

    def __init__(self, root: str | Path, split: str, clip_seconds: float, sample_rate: int, *, hop_length: int,
                 time_downsample: int = 1, random: bool = True, length: int = 10_000, seed: int = 0,
                 max_clips: int | None = None, views: tuple[float, float, float] = (1.0, 0.0, 0.0),
                 level_dbfs: float | None = None, gain_db: tuple[float, float] = (0.0, 0.0)):
        self.clips = StemClips(root, split, clip_seconds, sample_rate, group="duo", random=random, length=length,
                               seed=seed, max_clips=max_clips)
        w = np.asarray(views, dtype=np.float64)
        if w.shape != (3,) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"views must be three non-negative weights (mix, lead, accompaniment), got {views}")
        self.p_view = w / w.sum()
        self.sample_rate, self.hop = sample_rate, hop_length
        unit = hop_length * time_downsample
        self.frames = -(-self.clips.num_samples // unit) * time_downsample
        self.seed, self.level_dbfs, self.gain_db = seed, level_dbfs, tuple(gain_db)
        self.pieces = {p["id"]: p for p in self.clips.index.pieces}
        self._scores: dict[str, list[np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.clips)

    def score(self, piece_id: str) -> list[np.ndarray]:
        if piece_id not in self._scores:
            piece = self.pieces[piece_id]
            self._scores[piece_id] = read_duo_score(self.clips.index.folder(piece) / "score.mid",
                                                    piece["groups"]["duo"])
        return self._scores[piece_id]

    def clip_start(self, piece_id: str, start: float) -> float:
        """The clip's first sample in seconds, as the audio loader reads it (whole samples of the file)."""
        sr = self.pieces[piece_id].get("sample_rate", self.sample_rate)
        return round(start * sr) / sr

    def __getitem__(self, index: int) -> dict:
        item = self.clips[index]
        pid = item["piece"]
        t0 = self.clip_start(pid, item["start"])
        rolls = [piano_roll(n, t0, self.frames, self.hop / self.sample_rate) for n in self.score(pid)]
        rng = np.random.default_rng([self.seed, index, 3])
        view = int(rng.choice(3, p=self.p_view))
        mix, stems = item["mix"], item["stems"]
        gain = 1.0
        if self.level_dbfs is not None:
            rms = float(mix.double().pow(2).mean().sqrt())
            if rms > 1e-6:
                gain = 10 ** (self.level_dbfs / 20) / rms
        if self.gain_db != (0.0, 0.0):
            gain *= 10 ** (np.random.default_rng([self.seed, index, 2]).uniform(*self.gain_db) / 20)
        peak = float(torch.cat([mix.abs().reshape(-1), stems.abs().reshape(-1)]).max()) * gain
        if peak > 0.999:  # a gain that would clip is turned down to just under full scale
            gain *= 0.999 / peak
        return {"mix": mix * gain, "stems": stems * gain,
                "roll": torch.from_numpy(np.stack([r for r, _ in rolls]).astype(np.float32)),
                "onset": torch.from_numpy(np.stack([o for _, o in rolls]).astype(np.float32)),
                "view": view, "piece": pid, "start": item["start"]}
