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

The score also says where the lead rests (:func:`lead_rests`), which gives DuoTok's stage 2 the fourth kind
of training sample of the paper's 4:1:1:1 mixture (Appendix C.2–C.3: full mix, lyric-active vocal,
lyric-aligned accompaniment, instrumental-only accompaniment): **accompaniment-only** clips, the
accompaniment sounding where the lead is silent throughout (intros, interludes, a voice's rests).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .datasets import StemClips

__all__ = ["DUO_TRACKS", "SAMPLE_KINDS", "DuoScoreClips", "LOWEST_PITCH", "NUM_PITCHES", "lead_rests", "piano_roll",
           "read_duo_score"]

DUO_TRACKS = ("lead", "accompaniment")
LOWEST_PITCH = 21  # A0
NUM_PITCHES = 88  # A0 … C8
# the kinds of training sample a duo clip can be, and the input the model sees for each (0 mix, 1 lead,
# 2 accompaniment): an accompaniment-only clip is shown as the accompaniment, from where the lead rests
SAMPLE_KINDS = ("mix", "lead", "accompaniment", "accompaniment_only")
SAMPLE_VIEW = (0, 1, 2, 2)
RELEASE_SECONDS = 0.25  # a rendered note still sounds this long after its note-off (envelope release)


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


def _sounding(notes: np.ndarray, release: float) -> list[tuple[float, float]]:
    """The union of the notes' ``[start, end + release)`` as sorted, disjoint spans."""
    spans: list[tuple[float, float]] = []
    for s, e in sorted((float(s), float(e) + release) for s, e in notes[:, 1:3]):
        if spans and s <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], e))
        else:
            spans.append((s, e))
    return spans


def lead_rests(lead: np.ndarray, accompaniment: np.ndarray, clip_seconds: float,
               release: float = RELEASE_SECONDS) -> list[tuple[float, float]]:
    """Where a clip of ``clip_seconds`` can start so that the lead is silent and the accompaniment sounds
    throughout: ``[(earliest, latest start), ...]`` in seconds, sorted.

    ``lead``, ``accompaniment``: ``(N, 3)`` notes (pitch, start, end) of :func:`read_duo_score`; a note
    counts as sounding until ``release`` seconds after its end (the synthesiser's release)."""
    lead_spans = _sounding(lead, release)
    out = []
    for a0, a1 in _sounding(accompaniment, release):
        t = a0
        for s, e in lead_spans:
            if e <= t or s >= a1:
                continue
            if s - t >= clip_seconds:
                out.append((t, s - clip_seconds))
            t = max(t, e)
        if a1 - t >= clip_seconds:
            out.append((t, a1 - clip_seconds))
    return out


class DuoScoreClips(Dataset):
    """Duo clips with the score behind them, for DuoTok's stages 2–4.

    Item: ``mix (T,)``, ``stems (2, T)`` (lead, accompaniment; they sum to the mix), ``roll`` and ``onset``
    ``(2, 88, frames)`` float on the Mel grid of ``hop_length`` (``frames = ceil(T / (hop × r)) × r``, the
    frames a model sees after padding to whole token frames of ``r`` Mel frames), ``kind`` (the sample's
    kind, an index into :data:`SAMPLE_KINDS` drawn from the ``views`` weights: mix, lead, accompaniment,
    accompaniment-only), ``view`` (the input the model is shown: 0 mix, 1 lead, 2 accompaniment) and
    ``piece``, ``start``. An accompaniment-only clip starts where the score has the lead resting for the
    whole clip (:func:`lead_rests`; uniform over all such starts of the split); the other kinds start
    anywhere. Like every dataset here, item ``i`` is a pure function of ``(seed, i)``.

    ``level_dbfs`` scales mix and stems together to that RMS level of the mix, then ``gain_db`` draws a
    random gain for all three (a gain-invariant tokenizer's training view).
    """

    def __init__(self, root: str | Path, split: str, clip_seconds: float, sample_rate: int, *, hop_length: int,
                 time_downsample: int = 1, random: bool = True, length: int = 10_000, seed: int = 0,
                 max_clips: int | None = None, views: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0),
                 level_dbfs: float | None = None, gain_db: tuple[float, float] = (0.0, 0.0)):
        self.clips = StemClips(root, split, clip_seconds, sample_rate, group="duo", random=random, length=length,
                               seed=seed, max_clips=max_clips)
        w = np.asarray(tuple(views) + (0.0,) * (len(SAMPLE_KINDS) - len(views)), dtype=np.float64)
        if len(views) not in (3, 4) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"views must be three or four non-negative weights ({', '.join(SAMPLE_KINDS)}), "
                             f"got {views}")
        self.p_kind = w / w.sum()
        self.sample_rate, self.hop = sample_rate, hop_length
        unit = hop_length * time_downsample
        self.frames = -(-self.clips.num_samples // unit) * time_downsample
        self.seed, self.level_dbfs, self.gain_db = seed, level_dbfs, tuple(gain_db)
        self.pieces = {p["id"]: p for p in self.clips.index.pieces}
        self._scores: dict[str, list[np.ndarray]] = {}
        self.rests: list[tuple[int, float, float]] = []  # (piece index, earliest, latest start)
        if self.p_kind[3] > 0:
            for i, p in enumerate(self.clips.index.pieces):
                self.rests += [(i, a, b) for a, b in lead_rests(*self.score(p["id"]), self.clips.clip_seconds)]
            if not self.rests:
                raise ValueError(f"{root}: no {clip_seconds:g} s stretch of the {split} split has the lead resting "
                                 "throughout, so there are no accompaniment-only clips; set views.accompaniment_only "
                                 "to 0 or shorten the clips")
            span = np.asarray([b - a for _, a, b in self.rests]) + 1e-3  # an exact fit can be drawn too
            self.p_rest = span / span.sum()

    def __len__(self) -> int:
        return len(self.clips)

    def score(self, piece_id: str) -> list[np.ndarray]:
        if piece_id not in self._scores:
            piece = self.pieces[piece_id]
            self._scores[piece_id] = read_duo_score(self.clips.index.folder(piece) / "score.mid",
                                                    piece["groups"]["duo"])
        return self._scores[piece_id]

    def note_density(self) -> np.ndarray:
        """``(2 tracks, 2)``: the share of the rolls' cells (keys × Mel frames) where a note sounds, and where
        one starts, over the whole pieces of the split — the base rates of the symbolic head's targets."""
        hop = self.hop / self.sample_rate
        hits, cells = np.zeros((len(DUO_TRACKS), 2)), 0
        for p in self.clips.index.pieces:
            frames = max(int(p["duration_seconds"] / hop), 1)
            for k, notes in enumerate(self.score(p["id"])):
                roll, onset = piano_roll(notes, 0.0, frames, hop)
                hits[k] += roll.sum(), onset.sum()
            cells += NUM_PITCHES * frames
        return hits / cells

    def clip_start(self, piece_id: str, start: float) -> float:
        """The clip's first sample in seconds, as the audio loader reads it (whole samples of the file)."""
        sr = self.pieces[piece_id].get("sample_rate", self.sample_rate)
        return round(start * sr) / sr

    def _rest_clip(self, index: int) -> dict:
        """An accompaniment-only clip: a lead rest drawn in proportion to its room, a start uniform in it."""
        rng = np.random.default_rng([self.seed, index, 4])
        i, a, b = self.rests[int(rng.choice(len(self.rests), p=self.p_rest))]
        return self.clips.clip(i, float(rng.uniform(a, b)))

    def __getitem__(self, index: int) -> dict:
        kind = int(np.random.default_rng([self.seed, index, 3]).choice(len(SAMPLE_KINDS), p=self.p_kind))
        item = self._rest_clip(index) if kind == 3 else self.clips[index]
        pid = item["piece"]
        t0 = self.clip_start(pid, item["start"])
        rolls = [piano_roll(n, t0, self.frames, self.hop / self.sample_rate) for n in self.score(pid)]
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
                "kind": kind, "view": SAMPLE_VIEW[kind], "piece": pid, "start": item["start"]}
