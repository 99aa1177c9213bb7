"""`musictok encode/decode` with a two-track tokenizer (DuoTok): a mix, or a pair of stems, in one .mtok;
decoding writes the mix and each track."""

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from musictok.cli import app
from musictok.tokenizers.duotok import DuoTok, DuoTokConfig
from musictok.tokens import Tokens

SR = 16000


@pytest.fixture(scope="module")
def duo_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("duo") / "duotok-tiny"
    DuoTok(DuoTokConfig.tiny(sample_rate=SR)).save_pretrained(d)
    return d


def _tone(f0: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.2 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)


def test_mix_and_stems_round_trip_through_files(duo_dir, tmp_path):
    lead, acc = _tone(660.0, 1.5), _tone(220.0, 1.2)
    sf.write(tmp_path / "lead.wav", lead, SR)
    sf.write(tmp_path / "acc.wav", acc, SR)
    sf.write(tmp_path / "song.wav", lead + np.pad(acc, (0, len(lead) - len(acc))), SR)
    run = CliRunner().invoke
    res = run(app, ["encode", str(tmp_path / "song.wav"), "--tokenizer", str(duo_dir), "--out", str(tmp_path / "t")])
    assert res.exit_code == 0, res.output
    res = run(app, ["encode", "--stems", str(tmp_path / "lead.wav"), str(tmp_path / "acc.wav"), "--tokenizer",
                    str(duo_dir), "--out", str(tmp_path / "t")])
    assert res.exit_code == 0, res.output
    for name in ("song", "lead"):
        tokens = Tokens.load(tmp_path / "t" / f"{name}.mtok")
        assert [s.name for s in tokens.layout.streams] == ["lead", "accompaniment"]
        assert tokens.lengths == [len(lead)]
    assert Tokens.load(tmp_path / "t" / "lead.mtok").extra["input"] == "stems"
    res = run(app, ["decode", str(tmp_path / "t"), "--out", str(tmp_path / "w")])
    assert res.exit_code == 0, res.output
    for name in ("song", "lead"):
        mix, sr = sf.read(tmp_path / "w" / f"{name}.wav")
        parts = [sf.read(tmp_path / "w" / f"{name}.{t}.wav")[0] for t in ("lead", "accompaniment")]
        assert sr == SR and len(mix) == len(lead) and all(len(p) == len(lead) for p in parts)
        assert np.allclose(mix, parts[0] + parts[1], atol=1e-4)  # the mix file is the tracks' sum
    # the same samples as decode() in Python
    model = DuoTok.from_pretrained(duo_dir)
    y = model.decode(Tokens.load(tmp_path / "t" / "lead.mtok"))
    assert np.allclose(sf.read(tmp_path / "w" / "lead.lead.wav")[0], y[0, 0].numpy(), atol=1e-4)


def test_stems_need_pairs_and_a_two_track_tokenizer(duo_dir, tmp_path):
    sf.write(tmp_path / "a.wav", _tone(440.0, 0.5), SR)
    res = CliRunner().invoke(app, ["encode", "--stems", str(tmp_path / "a.wav"), "--tokenizer", str(duo_dir),
                                   "--out", str(tmp_path / "t")])
    assert res.exit_code != 0 and "pairs" in str(res.exception)


def test_python_api_takes_and_returns_stem_pairs(duo_dir):
    model = DuoTok.from_pretrained(duo_dir)
    x = torch.from_numpy(np.stack([_tone(660.0, 1.0), _tone(220.0, 1.0)]))[None]  # (batch, 2, samples)
    assert model.decode(model.encode(x)).shape == (1, 2, SR)
