import numpy as np
import pytest
import torch

from musictok.audio import AudioError, save
from musictok.data.datasets import AudioFolderClips, CorpusIndex, MixClips, StemClips, folder_split


def test_mix_clips_are_a_function_of_seed_and_index(tiny_corpus):
    a = MixClips(tiny_corpus, split=None, clip_seconds=1.0, sample_rate=16000, length=20, seed=3)
    b = MixClips(tiny_corpus, split=None, clip_seconds=1.0, sample_rate=16000, length=20, seed=3)
    c = MixClips(tiny_corpus, split=None, clip_seconds=1.0, sample_rate=16000, length=20, seed=4)
    assert len(a) == 20
    x = a[5]
    assert x["audio"].shape == (16000,) and x["audio"].dtype == torch.float32
    assert torch.equal(x["audio"], b[5]["audio"])
    assert any(a[i]["start"] != c[i]["start"] for i in range(5))


def test_eval_grid_is_fixed_and_covers_pieces(tiny_corpus):
    ds = MixClips(tiny_corpus, split=None, clip_seconds=5.0, sample_rate=16000, random=False, max_clips=6)
    assert len(ds) == 6
    assert {ds[i]["piece"] for i in range(3)} == {p["id"] for p in CorpusIndex(tiny_corpus).pieces}
    assert [ds[i]["start"] for i in range(6)] == [0.0, 0.0, 0.0, 5.0, 5.0, 5.0]


@pytest.mark.parametrize("group,n", [("parts", 6), ("duo", 2), ("musdb", 4)])
def test_stem_clips_sum_to_mix(tiny_corpus, group, n):
    ds = StemClips(tiny_corpus, split=None, clip_seconds=1.0, sample_rate=16000, group=group, length=4, seed=0)
    item = ds[2]
    assert item["stems"].shape == (n, 16000) and len(ds.stem_names) == n
    err = (item["stems"].sum(0) - item["mix"]).abs().max().item()
    assert err < 1e-5
    assert item["stems"][item["mask"]].abs().amax(dim=1).min() > 0  # real stems are not silent


def test_resampled_clips(tiny_corpus):
    ds = MixClips(tiny_corpus, split=None, clip_seconds=0.5, sample_rate=8000, length=2)
    assert ds[0]["audio"].shape == (4000,)


def test_bad_split_and_missing_index(tiny_corpus, tmp_path):
    with pytest.raises(ValueError, match="split"):
        CorpusIndex(tiny_corpus, split="dev")
    with pytest.raises(FileNotFoundError, match="data build"):
        CorpusIndex(tmp_path)


def test_audio_folder_clips(tmp_path):
    sr = 16000
    save(tmp_path / "a.wav", np.sin(np.arange(sr * 3) / 10).astype(np.float32) * 0.3, sr)
    save(tmp_path / "sub" / "b.flac", np.zeros(sr // 2, np.float32) + 0.1, sr)
    ds = AudioFolderClips(tmp_path, clip_seconds=1.0, sample_rate=sr)
    assert len(ds) == 4  # three clips of a.wav, one padded clip of b.flac
    assert all(ds[i]["audio"].shape == (sr,) for i in range(4))
    (tmp_path / "c.wav").write_text("garbage")
    with pytest.raises(AudioError, match="c.wav"):
        AudioFolderClips(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AudioError, match="no audio files"):
        AudioFolderClips(tmp_path / "empty")
    with pytest.raises(AudioError, match="folder not found"):
        AudioFolderClips(tmp_path / "missing")


def test_folder_split_is_by_file_and_never_leaves_a_split_empty(tmp_path):
    files = [tmp_path / f"{k}.wav" for k in range(40)]
    split = folder_split(tmp_path, files)
    assert sorted(split["train"] + split["valid"]) == sorted(files) and not set(split["train"]) & set(split["valid"])
    assert 1 <= len(split["valid"]) <= 12  # about 10 %
    assert folder_split(tmp_path, files[::-1]) == split  # order does not matter
    assert folder_split(tmp_path, files[:1]) == {"train": files[:1], "valid": []}  # one file only trains
    two = folder_split(tmp_path, files[:2])
    assert len(two["train"]) == 1 and len(two["valid"]) == 1
    # the split hashes the path inside the folder: the same files elsewhere split the same way
    moved = folder_split(tmp_path / "x", [tmp_path / "x" / f.name for f in files])
    assert [f.name for f in moved["valid"]] == [f.name for f in split["valid"]]
