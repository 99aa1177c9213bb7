"""The demo's separation step on the tiny corpus: one WAV per stem in the separator's order, a picture, a
score per stem; a separator that is not there is skipped with its reason, not a traceback."""

from pathlib import Path

from rich.console import Console

from musictok.data.datasets import CorpusIndex
from musictok.demo import _separate_demo


def test_the_demo_separates_a_held_out_mix(tiny_corpus, tiny_separators, tmp_path):
    index = CorpusIndex(tiny_corpus)
    piece = next(p for p in index.pieces if p.get("musdb"))
    console = Console(record=True, width=200)
    res = _separate_demo(str(tiny_separators["mask"]), index.folder(piece), piece, 2.0, tmp_path, console)
    assert list(res["stems"]) == ["vocals", "drums", "bass", "other"]
    for stem, r in res["stems"].items():
        assert Path(r["file"]).name == f"{piece['id']}_sep_{stem}.wav" and Path(r["file"]).is_file()
        assert r["mel_distance"] > 0
    assert Path(res["figure"]).is_file() and res["realtime_factor"] > 0
    missing = _separate_demo(str(tmp_path / "nope"), index.folder(piece), piece, 2.0, tmp_path, console)
    assert "skipped" in missing and "skipped:" in console.export_text()
