"""The score on the Mel frame grid: piano rolls and onsets per duo track line up with the rendered notes."""

import json

import numpy as np
import pretty_midi
import pytest
import torch

from musictok.data.score import DuoScoreClips, piano_roll, read_duo_score

SR, HOP = 16000, 256


def test_piano_roll_frames_are_exact():
    # one A4 from 0.5 s to 1.0 s; a clip starting at 0.25 s, frames centred every 16 ms
    notes = np.array([[69, 0.5, 1.0], [10, 0.0, 2.0]])  # the second is below A0: left out
    roll, onset = piano_roll(notes, 0.25, 100, HOP / SR)
    k = 69 - 21
    on = np.nonzero(roll[k])[0]
    # frame j sounds when 0.5 <= 0.25 + 0.016 j < 1.0: j = 15.625.. -> 16 … 46
    assert on[0] == 16 and on[-1] == 46 and len(on) == 31
    assert np.nonzero(onset[k])[0].tolist() == [16]  # 15.625 rounds to the nearest centre
    assert roll.sum() == 31 and onset.sum() == 1
    # notes wholly before or after the clip leave no trace (a note that ended 0.2 s before the clip once
    # marked 88 of these 100 frames: a negative slice end counts from the back)
    before_after = np.array([[69, 0.0, 0.05], [70, 2.0, 3.0]])
    roll, onset = piano_roll(before_after, 0.25, 100, HOP / SR)
    assert roll.sum() == 0 and onset.sum() == 0


def test_score_tracks_follow_the_duo_group(tiny_corpus):
    piece = json.loads(next(iter(sorted(tiny_corpus.glob("*/piece.json")))).read_text())
    folder = tiny_corpus / piece["id"]
    lead, acc = read_duo_score(folder / "score.mid", piece["groups"]["duo"])
    counts = {p["index"]: p["notes"] for p in piece["parts"]}
    assert len(lead) == sum(counts[i] for i in piece["groups"]["duo"]["lead"])
    assert len(acc) == sum(counts[i] for i in piece["groups"]["duo"]["accompaniment"] if i in counts
                           and not piece["parts"][i].get("drums"))
    assert np.median(lead[:, 0]) > np.median(acc[:, 0])  # lead = the highest voice


def test_rolls_line_up_with_the_rendered_notes(tiny_corpus):
    """Where the lead's roll says a note sounds, the lead stem carries energy at that note's fundamental
    (or a harmonic); shifting the roll by a few frames breaks the agreement."""
    ds = DuoScoreClips(tiny_corpus, "train", 4.096, SR, hop_length=HOP, time_downsample=4, random=False,
                       max_clips=3, views=(1.0, 0.0, 0.0))
    assert ds.frames == 4.096 * SR // HOP
    window = torch.hann_window(1024)
    agree, shifted = [], []
    for i in range(len(ds)):
        item = ds[i]
        assert item["roll"].shape == item["onset"].shape == (2, 88, ds.frames)
        assert torch.allclose(item["stems"].sum(0), item["mix"], atol=1e-5)
        lead = item["stems"][0]
        spec = torch.stft(lead, 1024, HOP, window=window, center=True, return_complex=True).abs()[:, : ds.frames]
        roll = item["roll"][0].numpy().astype(bool)  # (88, F)
        freqs = np.arange(spec.shape[0]) * SR / 1024

        def score(r: np.ndarray) -> float:
            """Mean share of frame energy within ±1/2 semitone of an active key's partials 1-4."""
            vals = []
            for j in range(ds.frames):
                keys = np.nonzero(r[:, j])[0]
                if len(keys) == 0 or float(spec[:, j].pow(2).sum()) < 1e-8:
                    continue
                f0 = 440.0 * 2 ** ((keys + 21 - 69) / 12)
                near = np.zeros_like(freqs, dtype=bool)
                for f in f0:
                    for h in range(1, 5):
                        near |= np.abs(12 * np.log2(np.maximum(freqs, 1) / (h * f))) < 0.5
                e = spec[:, j].pow(2).numpy()
                vals.append(e[near].sum() / e.sum())
            return float(np.mean(vals)) if vals else float("nan")

        agree.append(score(roll))
        shifted.append(score(np.roll(roll, 40, axis=1)))  # 0.64 s later: other notes
    assert np.nanmean(agree) > 0.6
    assert np.nanmean(agree) > np.nanmean(shifted) + 0.2


def test_onsets_sit_where_the_note_starts_to_sound(tiny_corpus):
    """At an onset of key k, the lead stem's energy at k's fundamental jumps from the frame before to the
    frame after (the chorales are legato, so the overall level need not rise, but the new pitch appears);
    onsets moved two frames (32 ms) either way no longer sit on the jump: alignment within a frame."""
    ds = DuoScoreClips(tiny_corpus, "train", 4.096, SR, hop_length=HOP, time_downsample=4, random=False,
                       max_clips=3)
    window = torch.hann_window(1024)
    freqs = np.arange(513) * SR / 1024
    items = [ds[i] for i in range(len(ds))]

    def jump(shift: int) -> float:
        rises = []
        for item in items:
            power = torch.stft(item["stems"][0], 1024, HOP, window=window, center=True,
                               return_complex=True).abs().pow(2).numpy()
            onset, roll = (np.roll(item[k][0].numpy(), shift, axis=1) for k in ("onset", "roll"))
            for k, j in zip(*np.nonzero(onset)):
                if 3 <= j < ds.frames - 3 and not roll[k, j - 3]:  # a new pitch, not a repeated note
                    f0 = 440.0 * 2 ** ((k + 21 - 69) / 12)
                    e = power[np.abs(12 * np.log2(np.maximum(freqs, 1) / f0)) < 0.5].sum(0) + 1e-9
                    rises.append(e[j + 1] / e[j - 1])
        assert len(rises) >= 5
        return float(np.median(rises))

    at = jump(0)
    assert at > 1000
    assert jump(-2) < at / 10 and jump(2) < at / 10


def test_views_levels_and_determinism(tiny_corpus):
    ds = DuoScoreClips(tiny_corpus, "train", 1.024, SR, hop_length=HOP, time_downsample=4, length=40, seed=3,
                       views=(1.0, 1.0, 1.0), level_dbfs=-20.0, gain_db=(-6.0, 0.0))
    views = [ds[i]["view"] for i in range(40)]
    assert set(views) == {0, 1, 2}
    a, b = ds[7], ds[7]
    assert torch.equal(a["mix"], b["mix"]) and a["view"] == b["view"]
    rms_db = 20 * np.log10(float(a["mix"].pow(2).mean().sqrt()))
    assert -26.5 <= rms_db <= -19.5
    assert torch.allclose(a["stems"].sum(0), a["mix"], atol=1e-5)
    with pytest.raises(ValueError, match="views"):
        DuoScoreClips(tiny_corpus, "train", 1.0, SR, hop_length=HOP, views=(0, 0, 0))


def test_pretty_midi_keeps_part_order(tmp_path):
    pm = pretty_midi.PrettyMIDI(resolution=480, initial_tempo=100)
    for k, pitch in enumerate((72, 60, 48)):
        inst = pretty_midi.Instrument(program=k, name=f"p{k}")
        inst.notes = [pretty_midi.Note(80, pitch, 0.0, 1.0)]
        pm.instruments.append(inst)
    drums = pretty_midi.Instrument(program=0, is_drum=True, name="drums")
    drums.notes = [pretty_midi.Note(80, 36, 0.0, 0.1)]
    pm.instruments.append(drums)
    pm.write(str(tmp_path / "score.mid"))
    lead, acc = read_duo_score(tmp_path / "score.mid", {"lead": [0], "accompaniment": [1, 2, 3]})
    assert lead[:, 0].tolist() == [72] and sorted(acc[:, 0].tolist()) == [48, 60]  # drums left out
