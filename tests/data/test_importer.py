"""`musictok data import`: segments, content-hash splits, resume, bad files, licences."""

import json

import numpy as np
import pytest

from musictok.audio import load, save
from musictok.data.datasets import CorpusIndex, MixClips
from musictok.data.importer import (
    ImportConfig,
    debian_licence,
    import_audio,
    split_for,
)

SR = 24000


def _tone(seconds: float, sr: int, freq: float = 440.0, amp: float = 0.3, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x, 0.5 * x]) if channels == 2 else x


def _library(root):
    save(root / "a" / "song1.wav", _tone(5.0, 44100, channels=2), 44100)  # stereo, 44.1 kHz
    save(root / "a" / "song2.flac", _tone(3.0, SR, 330.0), SR)
    save(root / "b" / "song3.ogg", _tone(2.5, 48000, 550.0), 48000)
    (root / "b" / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    save(root / "b" / "silent.wav", np.zeros(SR * 3, np.float32), SR)
    return root


def test_import_segments_resamples_and_indexes(tmp_path):
    lib = _library(tmp_path / "lib")
    out = tmp_path / "real"
    report = import_audio(ImportConfig([lib], out, segment_seconds=2.0, licence="CC0-1.0"))
    assert report.sources == 5 and report.imported == 3
    reasons = {r.path.split("/")[-1]: r.reason for r in report.failed}
    assert set(reasons) == {"broken.wav", "silent.wav"}
    assert "decoded" in reasons["broken.wav"] and "-60 dBFS" in reasons["silent.wav"]
    index = CorpusIndex(out)
    # 5 s -> 2 + 2 + 1 (kept: >= min 2 s? no: 1 s tail dropped); 3 s -> 2 + (1 s dropped); 2.5 s -> 2 (0.5 dropped)
    durations = sorted(p["duration_seconds"] for p in index.pieces)
    assert durations == pytest.approx([2.0] * 4)
    for p in index.pieces:
        wav, sr = load(index.folder(p) / p["mix"])
        assert sr == SR and wav.ndim == 1 and len(wav) == 2 * SR
        assert p["licence"] == "CC0-1.0" and p["kind"] == "recording"
    # every segment of one source shares its split; rows are readable as a corpus
    by_source = {}
    for p in index.pieces:
        by_source.setdefault(p["source"], set()).add(p["split"])
    assert all(len(s) == 1 for s in by_source.values())
    ds = MixClips(out, None, 1.0, SR, length=3)
    assert ds[0]["audio"].shape == (SR,)
    assert json.loads((out / "import.json").read_text())["report"]["imported"] == 3


def test_resampling_is_seamless_across_segments(tmp_path):
    save(tmp_path / "in" / "tone.wav", _tone(4.0, 44100, 1000.0), 44100)
    out = tmp_path / "out"
    import_audio(ImportConfig([tmp_path / "in"], out, segment_seconds=1.0, licence="x"))
    index = CorpusIndex(out)
    joined = np.concatenate([load(index.folder(p) / p["mix"])[0] for p in
                             sorted(index.pieces, key=lambda p: p["id"])])
    whole, _ = load(tmp_path / "in" / "tone.wav", SR)
    n = min(len(joined), len(whole))
    assert np.max(np.abs(joined[:n] - whole[:n])) < 1e-3  # 24-bit FLAC and resampler, no seam glitches


def test_import_resumes_and_is_idempotent(tmp_path):
    lib = _library(tmp_path / "lib")
    out = tmp_path / "real"
    (out / ".tmp-stale").mkdir(parents=True)  # left by a killed run
    first = import_audio(ImportConfig([lib], out, segment_seconds=2.0, licence="x"))
    again = import_audio(ImportConfig([lib], out, segment_seconds=2.0, licence="x"))
    assert first.imported == 3 and again.imported == 0 and again.existing == 3
    assert not list(out.glob(".tmp-*"))
    assert (out / "metadata.jsonl").read_text() == (out / "metadata.jsonl").read_text()


def test_splits_depend_on_content_only_and_stay_stable_as_the_corpus_grows(tmp_path):
    small = tmp_path / "small"
    save(small / "x.flac", _tone(3.0, SR, 200.0), SR)
    import_audio(ImportConfig([small], tmp_path / "c1", segment_seconds=2.0, licence="x"))
    grown = tmp_path / "grown"
    save(grown / "renamed" / "y.flac", _tone(3.0, SR, 200.0), SR)  # the same bytes under another name
    for k in range(6):
        save(grown / f"extra{k}.flac", _tone(3.0, SR, 300.0 + 50 * k), SR)
    import_audio(ImportConfig([grown], tmp_path / "c2", segment_seconds=2.0, licence="x"))
    split1 = {p["split"] for p in CorpusIndex(tmp_path / "c1").pieces}
    same = [p for p in CorpusIndex(tmp_path / "c2").pieces if p["title"] == "y"]
    assert len(split1) == 1 and {p["split"] for p in same} == split1


def test_split_shares():
    import hashlib

    splits = [split_for(hashlib.sha1(str(i).encode()).hexdigest()) for i in range(4000)]
    share = {s: splits.count(s) / len(splits) for s in ("train", "valid", "test")}
    assert share["train"] == pytest.approx(0.9, abs=0.02)
    assert share["valid"] == pytest.approx(0.05, abs=0.015) and share["test"] == pytest.approx(0.05, abs=0.015)


def test_forced_split_and_excludes(tmp_path):
    lib = _library(tmp_path / "lib")
    report = import_audio(ImportConfig([lib], tmp_path / "t", segment_seconds=2.0, split="test", licence="x",
                                       exclude=["*/b/*"]))
    assert report.sources == 2
    assert {p["split"] for p in CorpusIndex(tmp_path / "t").pieces} == {"test"}


DEP5 = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"


def _debian_package(root, name: str, paragraphs: list[tuple[str, str]]):
    """A ``dpkg -x`` tree with a machine-readable copyright file of ``(Files, License)`` paragraphs;
    returns ``(package root, copyright file)``."""
    pkg = root / name
    doc = pkg / "usr" / "share" / "doc" / name
    doc.mkdir(parents=True)
    text = DEP5 + "\n".join(f"Files: {files}\nCopyright: 2010 Someone\nLicense: {lic}\n" for files, lic in paragraphs)
    (doc / "copyright").write_text(text)
    return pkg, doc / "copyright"


def test_licence_from_debian_copyright(tmp_path):
    pkg, copyright_file = _debian_package(tmp_path, "somegame-music", [
        ("*", "GPL-2+"), ("music/special.ogg\n other/file.txt", "CC-BY-SA-3.0"), ("debian/*", "GPL-3+")])
    music = pkg / "usr" / "share" / "games" / "somegame" / "music"
    save(music / "plain.ogg", _tone(2.5, SR), SR)
    save(music / "special.ogg", _tone(2.5, SR, 600.0), SR)
    assert debian_licence(music / "plain.ogg")[0] == "GPL-2+"
    assert debian_licence(music / "special.ogg")[0] == "CC-BY-SA-3.0"
    import_audio(ImportConfig([pkg], tmp_path / "out", segment_seconds=2.0))
    rows = {p["title"]: p for p in CorpusIndex(tmp_path / "out").pieces}
    assert rows["plain"]["licence"] == "GPL-2+" and rows["plain"]["package"] == "somegame-music"
    # an old-style (free text) copyright file
    copyright_file.write_text("This program is free software; you can redistribute it under the terms of "
                                   "the GNU General Public License as published by the Free Software Foundation; "
                                   "either version 2 of the License, or (at your option) any later version.\n")
    assert debian_licence(music / "plain.ogg")[0] == "GPL-2+"
    # importing again relabels the sources a different copyright reading gave another licence
    import_audio(ImportConfig([pkg], tmp_path / "out", segment_seconds=2.0))
    assert CorpusIndex(tmp_path / "out").pieces and {
        p["licence"] for p in CorpusIndex(tmp_path / "out").pieces} == {"GPL-2+"}


def test_later_directory_paragraphs_do_not_claim_other_files(tmp_path):
    """The shapes of planetblupi's, hyperrogue's and hedgewars' copyright files: a later ``src/json/*`` or
    ``sounds/*`` paragraph must not win for a music file outside those directories."""
    pkg, _ = _debian_package(tmp_path, "game-music", [
        ("*", "GPL-3+"), ("music/theme.ogg", "CC-BY-SA-3.0"), ("sounds/*", "CC-BY-SA-4.0"), ("src/json/*", "Expat"),
        ("share/game/Data/Sounds/Drop*.ogg", "CC0-1.0")])
    share = pkg / "usr" / "share" / "game"
    assert debian_licence(share / "music" / "track1.ogg")[0] == "GPL-3+"
    assert debian_licence(share / "theme.ogg")[0] == "CC-BY-SA-3.0"  # exact file name, installed elsewhere
    assert debian_licence(share / "sounds" / "hit.ogg")[0] == "CC-BY-SA-4.0"
    assert debian_licence(share / "Data" / "Sounds" / "Droplet1.ogg")[0] == "CC0-1.0"
    assert debian_licence(share / "Data" / "Music" / "Droplet1.ogg")[0] == "GPL-3+"


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        ImportConfig([tmp_path / "missing"], tmp_path / "o")
    with pytest.raises(ValueError, match="segment-seconds"):
        ImportConfig([tmp_path], tmp_path / "o", segment_seconds=0.1)
    with pytest.raises(ValueError, match="--split"):
        ImportConfig([tmp_path], tmp_path / "o", split="dev")


def test_identical_files_are_imported_once(tmp_path):
    import shutil

    save(tmp_path / "lib" / "en" / "track1.ogg", _tone(2.5, SR, 440.0), SR)
    for lang in ("de", "fr"):  # the same bytes in other language folders, as drascula-music ships them
        (tmp_path / "lib" / lang).mkdir()
        shutil.copy(tmp_path / "lib" / "en" / "track1.ogg", tmp_path / "lib" / lang / "track1.ogg")
    report = import_audio(ImportConfig([tmp_path / "lib"], tmp_path / "out", segment_seconds=2.0, licence="x"))
    assert (report.imported, report.duplicates, report.existing) == (1, 2, 0)
    assert len(CorpusIndex(tmp_path / "out").pieces) == 1
