"""The score on the Mel frame grid: piano rolls and onsets per duo track line up with the rendered notes."""

import json

import numpy as np
import pretty_midi
import pytest
import torch

from musictok.data.score import DuoScoreClips, lead_rests, piano_roll, read_duo_score

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
    with pytest.raises(ValueError, match="views"):
        DuoScoreClips(tiny_corpus, "train", 1.0, SR, hop_length=HOP, views=(1, 0))


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


def test_lead_rests_by_hand():
    acc = np.array([[48, 0.0, 4.0], [50, 4.0, 10.0]])  # the accompaniment sounds from 0 to 10.25 s
    lead = np.array([[72, 1.0, 2.0], [74, 2.0, 3.0], [76, 6.0, 7.0], [77, 12.0, 13.0]])
    # the lead sounds on [1, 3.25) and [6, 7.25) (0.25 s of release): a 2 s clip fits in [0, 1), no;
    # in [3.25, 6): starts 3.25 … 4.0; in [7.25, 10.25): starts 7.25 … 8.25
    assert lead_rests(lead, acc, 2.0) == [(3.25, 4.0), (7.25, 8.25)]
    assert lead_rests(lead, acc, 0.5)[0] == (0.0, 0.5)  # before the lead's first note
    assert lead_rests(lead, acc, 3.0) == [(7.25, 7.25)]  # an exact fit
    assert lead_rests(lead, acc, 3.5) == []
    assert lead_rests(np.zeros((0, 3)), acc, 2.0) == [(0.0, 8.25)]  # a piece without a lead: anywhere
    assert lead_rests(lead, np.zeros((0, 3)), 2.0) == []  # no accompaniment: nothing to show
    # a general pause (both silent from 4.25 to 5) splits the accompaniment: clips must not span it
    gap = np.array([[48, 0.0, 4.0], [50, 5.0, 10.0]])
    assert lead_rests(lead, gap, 0.5) == [(0.0, 0.5), (3.25, 3.75), (5.0, 5.5), (7.25, 9.75)]


def _corpus_with_a_lead_rest(tiny_corpus, root, t0: float = 3.0, t1: float = 5.0):
    """A copy of the tiny corpus whose first piece's lead rests from about ``t0`` to ``t1``: its lead notes there
    leave the score, and their sound leaves the lead stem and the mix (the chorales' soprano rarely rests)."""
    import shutil

    import soundfile as sf

    shutil.copytree(tiny_corpus, root)
    piece = json.loads(sorted(root.glob("*/piece.json"))[0].read_text())
    folder, lead_parts = root / piece["id"], piece["groups"]["duo"]["lead"]
    pm = pretty_midi.PrettyMIDI(str(folder / "score.mid"))
    removed = []
    for i in lead_parts:
        inst = pm.instruments[i]
        removed += [n for n in inst.notes if n.end > t0 and n.start < t1]
        inst.notes = [n for n in inst.notes if n.end <= t0 or n.start >= t1]
    pm.write(str(folder / "score.mid"))
    info = sf.info(folder / piece["mix"])
    mix, sr = sf.read(folder / piece["mix"], dtype="float32")
    a, b = int(min(n.start for n in removed) * sr), int((max(n.end for n in removed) + 1.0) * sr)
    for i in lead_parts:
        path = folder / piece["parts"][i]["stem"]
        stem, _ = sf.read(path, dtype="float32")
        mix[a:b] -= stem[a:b]
        stem[a:b] = 0
        sf.write(path, stem, sr, subtype=sf.info(path).subtype)
    sf.write(folder / piece["mix"], mix, sr, subtype=info.subtype)
    return root


def test_accompaniment_only_clips_come_from_lead_rests(tiny_corpus, tmp_path):
    """The fourth kind of the paper's 4:1:1:1 stage-2 mixture: the accompaniment where the lead is silent —
    the score has no lead note in the clip, the lead stem is (near) silent, the accompaniment sounds."""
    secs = 0.512
    with pytest.raises(ValueError, match="accompaniment_only"):  # the three chorales: the soprano never rests
        DuoScoreClips(tiny_corpus, "train", secs, SR, hop_length=HOP, views=(1, 0, 0, 1))
    corpus = _corpus_with_a_lead_rest(tiny_corpus, tmp_path / "corpus")
    ds = DuoScoreClips(corpus, "train", secs, SR, hop_length=HOP, time_downsample=4, length=40, seed=1,
                       views=(0.0, 0.0, 0.0, 1.0))
    assert ds.rests
    for i in range(12):
        item = ds[i]
        assert item["kind"] == 3 and item["view"] == 2  # shown to the model as the accompaniment
        assert item["roll"][0].sum() == 0 and item["roll"][1].sum() > 0
        lead_rms, acc_rms = item["stems"].pow(2).mean(-1).sqrt().tolist()
        assert lead_rms < 0.01 * acc_rms
        assert any(ds.clips.index.pieces[j]["id"] == item["piece"] and a - 1e-9 <= item["start"] <= b + 1e-9
                   for j, a, b in ds.rests)
    # 4:1:1:1 draws every kind; the three-weight form is the fourth at 0, item for item
    mixed = DuoScoreClips(corpus, "train", secs, SR, hop_length=HOP, length=400, seed=1, views=(4, 1, 1, 1))
    kinds = np.bincount([mixed[i]["kind"] for i in range(0, 400, 4)], minlength=4) / 100
    assert np.all(kinds > 0) and kinds[0] == pytest.approx(4 / 7, abs=0.12)
    three = DuoScoreClips(corpus, "train", secs, SR, hop_length=HOP, length=20, seed=1, views=(4, 1, 1))
    four = DuoScoreClips(corpus, "train", secs, SR, hop_length=HOP, length=20, seed=1, views=(4, 1, 1, 0))
    assert all(three[i]["view"] == four[i]["view"] and three[i]["start"] == four[i]["start"] for i in range(20))
