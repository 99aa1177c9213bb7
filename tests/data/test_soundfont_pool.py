"""SoundFont pools, the wide programme palette and drums in the parts group: deterministic draws, exact mixes."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from musictok.data.build import BuildConfig, build_corpus, has_drums, piece_rng
from musictok.data.corpus import Note, Part
from musictok.data.render import (
    UNRELIABLE_PRESETS,
    SoundFont,
    SoundFontError,
    _loaded,
    choose_soundfonts,
    embedded_soundfont,
    find_soundfont_pool,
)
from musictok.data.stems import GM_FAMILIES, GM_INSTRUMENTS, PALETTES, choose_programs, fits, register_of
from musictok.data.verify import check_piece

SF3 = (Path(__file__).parents[2] / "data/debian/musescore-general-soundfont-small"
       / "usr/share/sounds/sf3/MuseScore_General_Lite.sf3")


def rows(root):
    return [json.loads(line) for line in (root / "metadata.jsonl").read_text().splitlines()]


@pytest.fixture
def free_fonts():
    """Tests that load the large Debian SoundFonts (≈ 1 GB decoded) give the memory back."""
    yield
    _loaded.cache_clear()


@pytest.fixture(scope="module")
def two_fonts(tmp_path_factory) -> list[str]:
    """A pool of two SoundFonts that tests can afford: TimGM6mb and a copy of it under another name."""
    d = tmp_path_factory.mktemp("fonts")
    copy = d / "TimCopy.sf2"
    shutil.copy(embedded_soundfont(), copy)
    return [str(embedded_soundfont()), str(copy)]


def _cfg(out, pool, seed=3, **kw):
    return BuildConfig(out=out, corpus="chorales", limit=2, seed=seed, sample_rate=16000, workers=1,
                       soundfont_pool=pool, palette="wide", drums_share=1.0, level_stems=True, **kw)


@pytest.fixture(scope="module")
def pool_corpus(tmp_path_factory, two_fonts) -> Path:
    out = tmp_path_factory.mktemp("pool")
    report = build_corpus(_cfg(out, two_fonts))
    assert report.rendered == 2 and not report.failed
    return out


def test_soundfont_pool_deterministic(pool_corpus, two_fonts, tmp_path):
    """Same seed → byte-identical files (every stem, mix, MIDI and piece.json) with a pool, wide palette,
    drums and levelled stems."""
    build_corpus(_cfg(tmp_path, two_fonts))
    def listing(folder):
        return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())

    for r in rows(pool_corpus):
        files = listing(pool_corpus / r["id"])
        assert files == listing(tmp_path / r["id"])
        for f in files:
            assert (pool_corpus / r["id"] / f).read_bytes() == (tmp_path / r["id"] / f).read_bytes(), f


def test_another_seed_draws_other_soundfonts_and_programmes(pool_corpus, two_fonts, tmp_path):
    build_corpus(_cfg(tmp_path, two_fonts, seed=4))
    a = [(p["program"], p["soundfont"]) for r in rows(pool_corpus) for p in r["parts"]]
    b = [(p["program"], p["soundfont"]) for r in rows(tmp_path) for p in r["parts"]]
    assert [x[0] for x in a] != [x[0] for x in b]
    assert [x[1] for x in a] != [x[1] for x in b]


def test_pool_metadata_and_hours(pool_corpus):
    names = {"TimGM6mb.sf2", "TimCopy.sf2"}
    used = set()
    for r in rows(pool_corpus):
        for p in r["parts"]:
            assert p["soundfont"] in names
            used.add(p["soundfont"])
            if not p.get("drums"):
                assert fits(p["program"], Part(p["name"], [Note(0, 1, k, 80) for k in p["pitch_range"]]))
        assert set(r["soundfonts"]) <= names
        assert set(sum(r["musdb"]["soundfonts"].values(), [])) <= names
    assert used == names  # 2 pieces × 5 stems: both SoundFonts drawn
    build = json.loads((pool_corpus / "build.json").read_text())
    assert [f["name"] for f in build["soundfonts"]] == ["TimGM6mb.sf2", "TimCopy.sf2"]
    assert sum(build["hours_by_soundfont"].values()) == pytest.approx(build["hours"], abs=1e-5)
    stems = sum(len(r["parts"]) * r["duration_seconds"] / 3600 for r in rows(pool_corpus))
    assert sum(build["stem_hours_by_soundfont"].values()) == pytest.approx(stems, abs=1e-5)


def test_drums_are_a_stem_of_the_parts_group_and_mix_is_exact(pool_corpus):
    for r in rows(pool_corpus):
        drums = [p for p in r["parts"] if p.get("drums")]
        assert len(drums) == 1 and drums[0]["index"] == len(r["parts"]) - 1 and drums[0]["notes"] > 0
        assert (pool_corpus / r["id"] / drums[0]["stem"]).is_file()
        assert drums[0]["index"] in r["groups"]["duo"]["accompaniment"]  # lead + accompaniment = mix
        assert r["musdb"]["soundfonts"]["drums"] == [drums[0]["soundfont"]]  # musdb reuses the same kit
        for check in check_piece(pool_corpus / r["id"]):
            assert check.max_abs_error <= 1e-6, check


def test_every_drawn_programme_fits_its_part():
    """Over many random parts (ranges inside the piano's) and seeds, every palette's draw fits the range."""
    gen = np.random.default_rng(0)
    for palette in PALETTES:
        for trial in range(400):
            parts = []
            for _ in range(int(gen.integers(3, 7))):
                lo = int(gen.integers(24, 90))
                hi = min(lo + int(gen.integers(0, 30)), 105)
                mid = int(gen.integers(lo, hi + 1))
                parts.append(Part("p", [Note(0, 1, lo, 80), Note(1, 2, mid, 80), Note(2, 3, hi, 80)]))
            programs = choose_programs(parts, np.random.default_rng(trial), palette)
            for i, (part, prog) in enumerate(zip(parts, programs)):
                assert fits(prog, part), (palette, part.pitch_range, prog, GM_INSTRUMENTS[prog])
                if prog in programs[:i]:  # a repeat only when every fitting programme of the pool is taken
                    pool = [p for p in PALETTES[palette].registers[register_of(part)] if fits(p, part)]
                    assert set(pool) <= set(programs[:i]), (palette, part.pitch_range, programs)


def test_wide_palette_spans_the_families():
    wide = set(sum(PALETTES["wide"].registers.values(), ()))
    for family, programs in GM_FAMILIES.items():
        if family != "voices":
            assert wide & set(programs), family
    assert all(p in GM_INSTRUMENTS for p in wide)
    assert len(wide) > 2 * len(set(sum(PALETTES["classic"].registers.values(), ())))


def test_drums_share_is_roughly_as_requested():
    ids = [f"composer/work{i}" for i in range(4000)]
    for share in (0.1, 0.3, 0.7):
        frac = np.mean([has_drums(0, i, share) for i in ids])
        assert abs(frac - share) < 0.025, (share, frac)
    assert not any(has_drums(0, i, 0.0) for i in ids[:200])
    assert all(has_drums(0, i, 1.0) for i in ids[:200])
    assert [has_drums(1, i, 0.3) for i in ids[:50]] == [has_drums(1, i, 0.3) for i in ids[:50]]
    assert [has_drums(1, i, 0.3) for i in ids[:200]] != [has_drums(2, i, 0.3) for i in ids[:200]]


def test_soundfont_draws_are_uniform_and_skip_unreliable_presets():
    bad = next(iter(UNRELIABLE_PRESETS))
    pool = [SoundFont(Path(f"/x/{name}"), "given") for name in ("A.sf2", bad, "C.sf2")]
    avoided = min(UNRELIABLE_PRESETS[bad])
    draws = choose_soundfonts(pool, [avoided] * 300, piece_rng(0, "p", "soundfonts"))
    assert bad not in {d.name for d in draws}
    draws = choose_soundfonts(pool, [40] * 3000 + [None] * 3000, piece_rng(0, "p", "soundfonts"))
    counts = [sum(d.name == sf.name for d in draws) for sf in pool]
    assert all(abs(c / len(draws) - 1 / 3) < 0.03 for c in counts), counts


def test_pool_resolution(two_fonts, tmp_path, free_fonts):
    pool = find_soundfont_pool(["auto"])
    assert pool[0].name == "TimGM6mb.sf2"  # embedded first, the rest by name
    assert [sf.name for sf in pool[1:]] == sorted(sf.name for sf in pool[1:])
    assert len({sf.name for sf in pool}) == len(pool)
    assert [sf.name for sf in find_soundfont_pool(two_fonts, GM_INSTRUMENTS)] == ["TimGM6mb.sf2", "TimCopy.sf2"]
    with pytest.raises(SoundFontError, match="already in the pool"):
        find_soundfont_pool([two_fonts[0], two_fonts[0]])
    with pytest.raises(SoundFontError, match="not found"):
        find_soundfont_pool([tmp_path / "missing.sf2"])
    with pytest.raises(ValueError, match="not both"):
        BuildConfig(out=tmp_path, soundfont=two_fonts[0], soundfont_pool="auto")
    assert BuildConfig(out=tmp_path, soundfont_pool="auto, a.sf2").soundfont_pool == ("auto", "a.sf2")


@pytest.mark.skipif(not SF3.is_file(), reason="musescore-general-soundfont-small not unpacked (make data-renders)")
def test_tinysoundfont_loads_the_ogg_compressed_sf3(free_fonts):
    from musictok.data.render import render_notes

    (sf,) = find_soundfont_pool([SF3], GM_INSTRUMENTS)  # every palette programme and the drum kit
    wav = render_notes([Note(0.1, 0.6, 69, 80)], 40, 16000, 16000, sf.path)
    assert float(np.max(np.abs(wav))) > 0.01


def test_rerun_with_other_pool_or_drums_is_refused(pool_corpus, two_fonts, tmp_path):
    shutil.copy(pool_corpus / "build.json", tmp_path / "build.json")
    with pytest.raises(ValueError, match="drums_share=1.0"):
        build_corpus(BuildConfig(out=tmp_path, corpus="chorales", limit=0, seed=3, sample_rate=16000, workers=1,
                                 soundfont_pool=two_fonts, palette="wide", drums_share=0.5, level_stems=True))
    with pytest.raises(ValueError, match="SoundFont"):
        build_corpus(_cfg(tmp_path, two_fonts[:1]))
    with pytest.raises(ValueError, match="palette='wide'"):
        build_corpus(BuildConfig(out=tmp_path, corpus="chorales", limit=0, seed=3, sample_rate=16000, workers=1,
                                 soundfont_pool=two_fonts, drums_share=1.0, level_stems=True))


def test_cli_pool_drums_and_verify(two_fonts, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-c", "from musictok.cli import main; main()", *args],
                              capture_output=True, text=True)

    out = tmp_path / "corpus"
    r = run("data", "build", "--limit", "1", "--workers", "1", "--sample-rate", "16000", "--no-musdb",
            "--soundfonts", ",".join(two_fonts), "--palette", "wide", "--drums-share", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "TimCopy.sf2" in r.stdout and "stem-h" in r.stdout
    assert any(p.get("drums") for p in rows(out)[0]["parts"])
    r = run("data", "stats", str(out), "--verify")
    assert r.returncode == 0 and "max |mix − Σ stems| over 1 pieces: 0.000e+00" in r.stdout, r.stderr
    r = run("data", "build", "--palette", "jazz", "--out", str(tmp_path / "x"))
    assert r.returncode == 1 and "palette must be one of classic, wide" in r.stderr and "Traceback" not in r.stderr
