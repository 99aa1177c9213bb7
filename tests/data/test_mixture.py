"""Training on a weighted mixture of sources: weights, determinism, augmentation, validation sets."""

import numpy as np
import pytest

from musictok.audio import save
from musictok.data.mixture import Augment, MixtureClips, SourceSpec, validation_sets
from musictok.train.config import DataConfig, per_source

SR = 16000


@pytest.fixture
def folder(tmp_path):
    t = np.arange(SR * 3) / SR
    save(tmp_path / "f" / "a.wav", (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR)
    return tmp_path / "f"


def test_sampling_follows_the_weights(tiny_corpus, folder):
    specs = [SourceSpec(str(tiny_corpus), 3.0, name="corpus"), SourceSpec(str(folder), 1.0, name="folder")]
    ds = MixtureClips(specs, 0.5, SR, length=4000, seed=1)
    counts = np.bincount([ds.source_of(i) for i in range(4000)], minlength=2)
    assert counts[0] / 4000 == pytest.approx(0.75, abs=0.03)
    item = ds[7]
    assert item["audio"].shape == (SR // 2,) and item["source"] in ("corpus", "folder")


def test_clips_are_a_function_of_seed_and_index(tiny_corpus, folder):
    specs = [SourceSpec(str(tiny_corpus), 1.0), SourceSpec(str(tiny_corpus), 1.0, stems=True),
             SourceSpec(str(folder), 1.0)]
    aug = Augment(gain_db=(-12.0, 0.0), eq_db=6.0)
    a = MixtureClips(specs, 0.5, SR, length=50, seed=3, augment=aug)
    b = MixtureClips(specs, 0.5, SR, length=50, seed=3, augment=aug)
    for i in (0, 11, 42):
        assert np.array_equal(a[i]["audio"].numpy(), b[i]["audio"].numpy())
    assert {a[i]["source"] for i in range(50)} == {specs[0].name, specs[1].name, specs[2].name}


def test_stem_source_gives_single_parts(tiny_corpus):
    mix = MixtureClips([SourceSpec(str(tiny_corpus))], 1.0, SR, length=5, seed=0)
    stems = MixtureClips([SourceSpec(str(tiny_corpus), stems=True)], 1.0, SR, length=5, seed=0)
    # same piece and offset, but one part: less energy than the mix in general
    e_mix = sum(float((mix[i]["audio"] ** 2).sum()) for i in range(5))
    e_stem = sum(float((stems[i]["audio"] ** 2).sum()) for i in range(5))
    assert e_stem < e_mix


def test_augment_gain_eq_level():
    rng = np.random.default_rng(0)
    x = (0.1 * np.random.default_rng(1).standard_normal(SR)).astype(np.float32)
    y = Augment(level_dbfs=-20.0)(x, rng, SR)
    assert 20 * np.log10(np.sqrt(np.mean(y.astype(np.float64) ** 2))) == pytest.approx(-20.0, abs=1e-3)
    gains = []
    for k in range(200):
        z = Augment(gain_db=(-12.0, -6.0))(x, np.random.default_rng(k), SR)
        gains.append(20 * np.log10(np.sqrt(np.mean(z.astype(np.float64) ** 2)) / np.sqrt(np.mean(x ** 2.0))))
    assert min(gains) >= -12.001 and max(gains) <= -5.999 and np.std(gains) > 1.0
    loud = Augment(gain_db=(20.0, 20.0))(x, rng, SR)
    assert np.max(np.abs(loud)) <= 0.999 + 1e-6  # a gain that would clip is turned down
    eq = Augment(eq_db=6.0)(x, rng, SR)
    assert eq.shape == x.shape and not np.allclose(eq, x)


def test_data_config_checks_and_validation(tiny_corpus, folder):
    d = DataConfig(sources=[{"path": str(tiny_corpus), "weight": 2}, {"path": str(folder)}], gain_db=[-6, 0],
                   valid_split="train", valid_clips=2, valid_seconds=1.0)
    assert [s.weight for s in d.source_specs] == [2, 1.0]
    sets = d.valid_sets(1.0, SR)
    assert list(sets) == [tiny_corpus.name, "f"]  # a folder of one file is all "train", like this corpus here
    with pytest.raises(ValueError, match="weight"):
        DataConfig(sources=[{"path": "x", "weight": -1}])
    with pytest.raises(ValueError, match="unknown data.sources keys"):
        DataConfig(sources=[{"path": "x", "wieght": 1}])
    with pytest.raises(ValueError, match="gain_db"):
        DataConfig(gain_db=[3, -3])
    with pytest.raises(ValueError, match="valid"):  # ... and has nothing to hold out
        validation_sets([SourceSpec(str(folder))], "valid", 1.0, SR, 2)
    assert per_source({"": {"m": 1.0}}) == {"m": 1.0}
    assert per_source({"a": {"m": 1.0}, "b": {"m": 3.0}}) == {"m/a": 1.0, "m/b": 3.0, "m": 2.0}


def test_a_plain_folder_trains_and_validates_on_disjoint_files(tmp_path):
    """A folder without metadata.jsonl is split by file: the validation clips come from files the training
    clips never touch, and the split of a file does not depend on the other files."""
    t = np.arange(SR * 2) / SR
    for k in range(12):
        save(tmp_path / "songs" / f"s{k:02d}.wav", (0.1 * np.sin(2 * np.pi * (110 + 20 * k) * t)).astype(np.float32), SR)
    spec = SourceSpec(str(tmp_path / "songs"))
    train = MixtureClips([spec], 0.5, SR, length=200, seed=0)
    valid = validation_sets([spec], "valid", 0.5, SR, 50)["songs"]
    seen_train = {train[i]["piece"] for i in range(200)}
    seen_valid = {valid[i]["piece"] for i in range(len(valid))}
    assert seen_valid and seen_train and not seen_train & seen_valid
    assert len(seen_train) + len(seen_valid) == 12
    # a new file does not move the others between splits
    save(tmp_path / "songs" / "zz.wav", (0.1 * np.sin(2 * np.pi * 500 * t)).astype(np.float32), SR)
    again = validation_sets([spec], "valid", 0.5, SR, 50)["songs"]
    assert seen_valid <= {again[i]["piece"] for i in range(len(again))}
