"""Attribute tags come from what the metadata records; constant or rare attributes are left out, with why."""

from musictok.data.tags import corpus_tags, instrument_family


def _piece(i, key, ts, tempo, programs, composer="J.S. Bach"):
    return {"id": f"p{i}", "composer": composer, "key": key, "time_signature": ts, "tempo_qpm": tempo,
            "parts": [{"program": p} for p in programs], "split": "train"}


def test_render_tags_and_exclusions():
    pieces = [_piece(i, "G minor" if i % 2 else "C major", "3/4" if i < 6 else "4/4", 90 + 10 * (i % 3 == 0),
                     [40, 71] if i % 2 else [40, 0], composer="bach" if i < 3 else "J.S. Bach") for i in range(12)]
    t = corpus_tags(pieces, min_positives=3)
    assert t.excluded["composer"].startswith("constant")  # "bach" and "J.S. Bach" are one composer
    assert "family:strings" in t.excluded  # every piece has a violin: one class only
    assert {"mode:minor", "meter:triple", "tempo:fast", "family:reeds", "family:keyboards"} <= set(t.tags)
    assert t.labels["p1"]["mode:minor"] == 1 and t.labels["p0"]["mode:minor"] == 0
    assert t.labels["p3"]["tempo:fast"] == 1 and t.labels["p1"]["tempo:fast"] == 0  # above the median tempo
    y, known = t.matrix(["p1", "p1"])
    assert y[0] == y[1] and all(known[0])


def test_recordings_get_package_tags_and_nothing_else():
    recs = [{"id": f"r{i}", "kind": "recording", "composer": f"pkg{i % 2}", "package": f"pkg{i % 2}", "parts": [],
             "folder": f"f{i}", "split": "train"} for i in range(10)]
    t = corpus_tags(recs, min_positives=2)
    assert t.tags == ["package:pkg0", "package:pkg1"] and t.labels["r1"] == {"package:pkg0": 0, "package:pkg1": 1}
    one = corpus_tags(recs[::2], min_positives=1)
    assert one.tags == [] and one.excluded["package"].startswith("constant")


def test_instrument_family_falls_back_to_the_gm_block():
    assert instrument_family(71) == "reeds" and instrument_family(40) == "strings"
    assert instrument_family(105) == "ethnic"  # Banjo: outside the palette, GM's block 13
