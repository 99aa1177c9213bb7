"""The rendered corpus: layout, exact mixes, musical alignment, determinism, resumability."""

import json
import shutil

import librosa
import numpy as np
import pretty_midi
import pytest

from musictok.audio import load
from musictok.data.build import BuildConfig, build_corpus, render_piece
from musictok.data.corpus import Note, list_works, load_piece, split_of
from musictok.data.render import embedded_soundfont, find_soundfont, render_notes
from musictok.data.stems import drum_notes, voice_order
from musictok.data.verify import check_piece

HOP = 256


def pieces(root):
    return [json.loads(line) for line in (root / "metadata.jsonl").read_text().splitlines()]


def test_layout_and_metadata(tiny_corpus):
    rows = pieces(tiny_corpus)
    assert len(rows) == 3
    for r in rows:
        folder = tiny_corpus / r["id"]
        audio_files = sorted(p.name for p in folder.glob("*.flac"))
        assert audio_files == sorted([r["mix"]] + [p["stem"] for p in r["parts"]])  # exactly the part stems
        assert sorted(p.name for p in (folder / "musdb").glob("*.flac")) == sorted(
            ["mix.flac", "vocals.flac", "bass.flac", "other.flac", "drums.flac"])
        for key in ("id", "corpus_path", "composer", "title", "key", "time_signature", "tempo_qpm",
                    "duration_seconds", "split"):
            assert r[key] not in (None, ""), key
        assert r["split"] == split_of(r["id"])
        for p in r["parts"]:
            assert 0 <= p["program"] < 128 and p["pitch_range"][0] <= p["pitch_range"][1]
    assert not list(tiny_corpus.glob(".tmp-*"))


def test_mix_is_exact_sum_of_stems(tiny_corpus):
    for r in pieces(tiny_corpus):
        for check in check_piece(tiny_corpus / r["id"]):
            assert check.max_abs_error <= 1e-6, check


def test_stems_of_different_parts_differ(tiny_corpus):
    r = pieces(tiny_corpus)[0]
    stems = [load(tiny_corpus / r["id"] / p["stem"])[0] for p in r["parts"]]
    for i in range(len(stems)):
        for j in range(i + 1, len(stems)):
            corr = np.corrcoef(stems[i], stems[j])[0, 1]
            assert abs(corr) < 0.9, (i, j, corr)
            assert np.max(np.abs(stems[i] - stems[j])) > 0.05


def _best_lag(wav, sr, midi_onsets):
    """The time shift that best aligns detected onsets with the MIDI onsets, and the fraction of MIDI
    onsets matched within half a hop at that shift (chance level ≈ 0.05). A shift search is robust to the
    odd spurious or missed detection, unlike a note-by-note comparison."""
    det = librosa.onset.onset_detect(y=wav, sr=sr, hop_length=HOP, units="time")
    lags = np.arange(-0.12, 0.12, 0.002)
    dist = np.abs((midi_onsets[None, :, None] + lags[:, None, None]) - det[None, None, :]).min(-1)
    score = (dist <= HOP / sr / 2).mean(1)
    return float(lags[score.argmax()]), float(score.max())


def _attack_latency(program, pitch, sr):
    """Where the onset detector puts a lone note of this instrument that starts at exactly 0.5 s."""
    wav = render_notes([Note(0.5, 1.0, pitch, 80)], program, sr, sr * 2, embedded_soundfont())
    det = librosa.onset.onset_detect(y=wav, sr=sr, hop_length=HOP, units="time")
    return float(det[np.abs(det - 0.5).argmin()] - 0.5)


def test_stem_onsets_follow_midi(tiny_corpus):
    """Each stem's onsets sit where its MIDI notes start, up to the instrument's own attack time
    (measured on a lone note), within one STFT hop."""
    for r in pieces(tiny_corpus):
        folder = tiny_corpus / r["id"]
        midi = pretty_midi.PrettyMIDI(str(folder / "score.mid"))
        for i, p in enumerate(r["parts"]):
            wav, sr = load(folder / p["stem"])
            onsets = np.unique(np.round([n.start for n in midi.instruments[i].notes], 4))
            latency = _attack_latency(p["program"], int(np.median([n.pitch for n in midi.instruments[i].notes])), sr)
            lag, matched = _best_lag(wav, sr, onsets)
            assert abs(lag - latency) <= HOP / sr + 1e-6, (r["id"], p["name"], p["program_name"], lag, latency)
            assert matched >= 0.25, (r["id"], p["name"], matched)
            # control: against MIDI onsets 60 ms late, the best shift moves by -60 ms
            lag_late, _ = _best_lag(wav, sr, onsets + 0.06)
            assert abs(lag_late - (lag - 0.06)) <= HOP / sr + 1e-6


def test_drums_fall_on_the_beat_grid(tiny_corpus):
    r = pieces(tiny_corpus)[0]
    piece = load_piece(list(p for p in list_works("chorales") if p.name.startswith(r["corpus_path"].split("/")[-1]))[0])
    notes = drum_notes(piece, np.random.default_rng(0))
    beats = np.asarray(piece.beats)
    grid = np.sort(np.concatenate([beats, (beats[:-1] + beats[1:]) / 2, [beats[-1] + np.median(np.diff(beats)) / 2]]))
    starts = np.asarray([n.start for n in notes])
    assert np.max(np.abs(starts[:, None] - grid[None, :]).min(1)) < 1e-6
    kicks = [n.start for n in notes if n.pitch == 36]
    downbeats = beats[np.asarray(piece.downbeats)]
    assert set(np.round(downbeats, 6)) <= set(np.round(kicks, 6))  # a kick on every bar line
    # in the audio: detected drum onsets sit on that grid, within one hop (after rendering)
    wav, sr = load(tiny_corpus / r["id"] / "musdb" / "drums.flac")
    det = librosa.onset.onset_detect(y=wav, sr=sr, hop_length=HOP, units="time", backtrack=True)
    piece_grid = grid * (r["tempo_qpm"] and 1.0)
    dist = np.abs(det[:, None] - piece_grid[None, :]).min(1)
    assert np.mean(dist <= HOP / sr) >= 0.9


def test_voice_order_puts_highest_first():
    assert voice_order([60.0, 72.0, 48.0, 55.0]) == [1, 0, 3, 2]


def test_same_seed_gives_identical_bytes(tiny_corpus, tmp_path):
    cfg = BuildConfig(out=tmp_path, corpus="chorales", limit=1, seed=7, sample_rate=16000, workers=1,
                      soundfont=embedded_soundfont())
    build_corpus(cfg)
    pid = pieces(tmp_path)[0]["id"]
    for f in (tmp_path / pid).rglob("*"):
        if f.is_file():
            assert f.read_bytes() == (tiny_corpus / pid / f.relative_to(tmp_path / pid)).read_bytes(), f
    # another seed draws other instruments
    other = BuildConfig(out=tmp_path / "s8", corpus="chorales", limit=1, seed=8, sample_rate=16000, workers=1,
                        soundfont=embedded_soundfont())
    build_corpus(other)
    a = [p["program"] for p in pieces(tmp_path)[0]["parts"]]
    b = [p["program"] for p in pieces(tmp_path / "s8")[0]["parts"]]
    assert a != b


def test_rerun_resumes_and_skips_finished(tmp_path):
    cfg = BuildConfig(out=tmp_path, corpus="chorales", limit=2, seed=1, sample_rate=16000, workers=1,
                      musdb=False)
    first = build_corpus(cfg)
    assert first.rendered == 2
    # simulate a kill: one piece removed, a stale temporary folder left behind
    victim = pieces(tmp_path)[1]["id"]
    shutil.rmtree(tmp_path / victim)
    (tmp_path / f".tmp-{victim}").mkdir()
    (tmp_path / f".tmp-{victim}" / "0_soprano.flac").write_bytes(b"partial")
    again = build_corpus(cfg)
    assert (again.rendered, again.existing) == (1, 1)
    assert not list(tmp_path.glob(".tmp-*"))
    assert len(pieces(tmp_path)) == 2


def test_bad_piece_is_reported_not_fatal(tmp_path):
    bad = tmp_path / "broken.mxl"
    bad.write_bytes(b"not a score")
    cfg = BuildConfig(out=tmp_path / "out", sample_rate=16000, workers=1)
    result = render_piece(bad, cfg, find_soundfont())
    assert result.status == "failed" and "cannot parse score" in result.reason
    assert not (tmp_path / "out" / "broken").exists()


def test_splits_are_deterministic_and_balanced():
    ids = [f"piece{i}" for i in range(4000)]
    splits = [split_of(i) for i in ids]
    assert splits == [split_of(i) for i in ids]
    frac = {s: splits.count(s) / len(ids) for s in ("train", "valid", "test")}
    assert abs(frac["train"] - 0.90) < 0.02 and abs(frac["valid"] - 0.05) < 0.015 and abs(frac["test"] - 0.05) < 0.015


def test_unknown_corpus_and_bad_config():
    with pytest.raises(ValueError, match="unknown corpus"):
        list_works("jazz")
    with pytest.raises(ValueError, match="audio format"):
        BuildConfig(out="x", audio_format="mp3")


def test_rerun_with_other_settings_is_refused(tmp_path):
    cfg = BuildConfig(out=tmp_path, corpus="chorales", limit=1, seed=1, sample_rate=16000, workers=1, musdb=False)
    build_corpus(cfg)
    with pytest.raises(ValueError, match="seed=1"):
        build_corpus(BuildConfig(out=tmp_path, corpus="chorales", limit=1, seed=2, sample_rate=16000, workers=1,
                                 musdb=False))
