"""`musictok bench --dual --quick` end to end on the tiny corpus: a two-track tokenizer (DuoTok) and a
single-stream one run on each stem (BandTok), under the same dual-track LM protocol."""

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from musictok.bench_dual import duo_stems, duo_tokens, piece_cnbpt, two_track_layout
from musictok.lm.scoring import CellScores
from musictok.cli import app
from musictok.data.datasets import CorpusIndex
from musictok.tokenizers.bandtok import BandTok
from musictok.tokens import StreamSpec, TokenLayout

SR = 16000


@pytest.fixture(scope="module")
def tokenizers(dual_tokenizers):
    return dual_tokenizers


def test_tracks_come_from_the_duo_group(tiny_corpus, tokenizers, tmp_path):
    piece = CorpusIndex(tiny_corpus, "train").pieces[0]
    stems = duo_stems(tiny_corpus, piece, SR)
    assert stems.shape[0] == 2 and stems.shape[1] == piece["num_samples"]
    band = BandTok.from_pretrained(tokenizers / "band")
    tokens = duo_tokens(band, tiny_corpus, "train", tmp_path, max_pieces=1)[0]
    assert [s.name for s in tokens.layout.streams] == ["lead", "accompaniment"]
    assert torch.equal(tokens.codes[0], band.encode(torch.from_numpy(stems[0])).codes[0])
    assert torch.equal(tokens.codes[1], band.encode(torch.from_numpy(stems[1])).codes[0])
    with pytest.raises(ValueError, match="dual protocol"):
        two_track_layout(TokenLayout((StreamSpec("a", 1.0, (4,)), StreamSpec("b", 2.0, (4,)))))


def test_bench_dual_quick(tiny_corpus, tokenizers, tmp_path):
    real = tmp_path / "real"  # "recordings" without stems: two of the corpus's mixes
    real.mkdir()
    for piece in CorpusIndex(tiny_corpus, "train").pieces[:2]:
        mix = CorpusIndex(tiny_corpus).folder(piece) / piece["mix"]
        shutil.copy(mix, real / f"{piece['id']}{mix.suffix}")
    res = CliRunner().invoke(app, [
        "bench", "--dual", "--quick", "--tokenizers", f"{tokenizers / 'duo'},{tokenizers / 'band'}", "--real", str(real),
        "--corpus", str(tiny_corpus), "--split", "train", "--out", str(tmp_path / "out"),
        "--work", str(tmp_path / "work"), "--cache-dir", str(tmp_path / "cache"), "--name", "dual"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    result = json.loads((tmp_path / "out" / "dual.json").read_text())
    assert set(result["rows"]) == {"duo", "band"}
    for row in result["rows"].values():
        assert set(row["parallel"]["streams"]) == {"lead", "accompaniment"}
        assert set(row["conditional"]["streams"]) == {"accompaniment"}  # the loss is on the target only
        for s in row["parallel"]["streams"].values():
            assert 0 < s["cnbpt"] and s["enbpt"] is not None and set(s["topk_accuracy"]) == {"1", "5", "10", "50"}
            acc = s["topk_accuracy"]
            assert 0 <= acc["1"] <= acc["5"] <= acc["10"] <= acc["50"] <= 1
        test_ids = {p["id"] for p in CorpusIndex(tiny_corpus, "train").pieces}
        assert row["parallel"]["per_piece_cnbpt"] and set(row["parallel"]["per_piece_cnbpt"]) <= test_ids
        assert set(row["codebook"]) == {"lead", "accompaniment"}
        for cb in row["codebook"].values():  # NSB entropy, with the plug-in and the uniform ceiling beside it
            assert 0 <= cb["normalized_entropy"] <= 1 and 0 < cb["utilization"] <= cb["uniform_utilization"] <= 1
        assert set(row["corruption"]["shift"]) == {"1", "4"} and row["corruption"]["mismatch"] is not None
        assert list(row["context"]) == ["1.024", "1.984"]  # 16 and 31 frames at 15.625 frames/s
        pts = list(row["context"].values())  # the gain shortest -> longest inside its interval over pieces
        low, high = row["context_gain_interval"]
        assert low <= (pts[0] - pts[-1]) / pts[0] + 1e-12 and (pts[0] - pts[-1]) / pts[0] <= high + 1e-12
        # every corruption cost inside its bootstrap interval over the test pieces
        ivs = row["corruption"]["intervals"]
        assert set(ivs) == {"shift 1", "shift 4", "mask 0.3", "mask 0.9", "mismatch"}
        assert ivs["mismatch"][0] <= row["corruption"]["mismatch"] <= ivs["mismatch"][1]
        for track, rec in row["reconstruction"].items():  # each track's decode against its own stem
            assert track in ("lead", "accompaniment") and rec["clips"] == 2
            assert 0 < rec["interval"][0] <= rec["mel_distance"] <= rec["interval"][1]
        # the mixes of the real folder: Mel distance in its interval; DuoTok's tokens of both tracks
        assert row["real"]["clips"] == 2 and 0 < row["real"]["interval"][0] <= row["real"]["mel_distance"]
        assert row["real"]["mel_distance"] <= row["real"]["interval"][1]
    assert set(result["rows"]["duo"]["real"]["codebook"]) == {"lead", "accompaniment"}
    assert result["rows"]["duo"]["kbps"] == pytest.approx(2 * 15.625 * 6 / 1000)
    assert result["rows"]["band"]["layout"]["streams"][0]["slot_axis"] == "band"
    for f in ("dual.md", "dual-corruption.png", "dual-context.png"):
        assert (tmp_path / "out" / f).is_file()
    page = (tmp_path / "out" / "dual.md").read_text()
    assert "Track-to-track" in page
    # Acc@5 in both tables, its cell between Acc@1's and Acc@10's
    tables = [t for t in page.split("\n\n") if t.startswith("| tokenizer")]
    assert len(tables) == 5 and all("| Acc@1 | Acc@5 | Acc@10 | Acc@50 |" in t for t in tables[:2])
    assert "| mismatch |" in tables[2]  # the corruption costs with their intervals
    header, _, first = tables[0].splitlines()[:3]
    cells = dict(zip([c.strip() for c in header.split("|")], [c.strip() for c in first.split("|")]))
    lead = result["rows"][cells["tokenizer"]]["parallel"]["streams"]["lead"]["topk_accuracy"]
    assert cells["Acc@5"] == f"{lead['5']:.3f}"

    # parallel LMs only: the same parallel rows (the same seed trains the same LM), no track-to-track anywhere
    res = CliRunner().invoke(app, [
        "bench", "--dual", "--quick", "--no-track-to-track", "--tokenizers", f"{tokenizers / 'duo'},{tokenizers / 'band'}",
        "--real", str(real),
        "--corpus", str(tiny_corpus), "--split", "train", "--out", str(tmp_path / "out2"),
        "--work", str(tmp_path / "work2"), "--cache-dir", str(tmp_path / "cache"), "--name", "dual"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    only = json.loads((tmp_path / "out2" / "dual.json").read_text())
    for name, row in only["rows"].items():
        assert "conditional" not in row and "corruption" not in row
        assert row["parallel"] == result["rows"][name]["parallel"] and row["context"] == result["rows"][name]["context"]
        assert row["real"] == result["rows"][name]["real"]
    assert sorted(p.name for p in (tmp_path / "out2").iterdir()) == ["dual-context.png", "dual.json", "dual.md"]
    assert "Not run (`--no-track-to-track`)" in (tmp_path / "out2" / "dual.md").read_text()



def test_piece_cnbpt_reference_values():
    """Per piece: each stream's mean NLL over its scored cells in bits over log2 K, then the streams' mean;
    unscored cells (whatever they hold) and other pieces' windows do not count."""
    import math

    layout = TokenLayout((StreamSpec("lead", 10.0, (4,)), StreamSpec("accompaniment", 10.0, (16,))))
    ln2 = math.log(2)
    nll = [torch.tensor([[[1.0], [3.0]], [[2.0], [99.0]], [[5.0], [5.0]]]) * ln2,  # bits 1,3 | 2,(99) | 5,5
           torch.tensor([[[4.0], [4.0]], [[8.0], [8.0]], [[2.0], [6.0]]]) * ln2]
    scored = [torch.tensor([[[True], [True]], [[True], [False]], [[True], [True]]]),
              torch.ones(3, 2, 1, dtype=torch.bool)]
    out = piece_cnbpt(CellScores(nll, scored, []), layout, [0, 0, 1], ["a", "b"])
    # piece a: lead mean(1, 3, 2) = 2 bits / 2; accompaniment mean(4, 4, 8, 8) = 6 bits / 4
    assert out["a"] == pytest.approx((2 / 2 + 6 / 4) / 2)
    assert out["b"] == pytest.approx((5 / 2 + 4 / 4) / 2)
