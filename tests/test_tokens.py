import math

import numpy as np
import pytest
import torch

from musictok.tokens import Fingerprint, StreamSpec, TokenFileError, TokenLayout, Tokens

FP = Fingerprint("dummy", "c" * 16, "w" * 16)


def bandtok_layout():
    return TokenLayout((StreamSpec("bands", 24000 / 1024, (1024,) * 8, "band", shared_codebook=True),))


def test_layout_rates_match_the_brief():
    lay = bandtok_layout()
    assert lay.tokens_per_second == pytest.approx(187.5)
    assert lay.bitrate == pytest.approx(187.5 * 10)  # 1.875 kbps
    pyramid = TokenLayout((StreamSpec("level0", 12.0, (1024,) * 2, "residual"),
                           StreamSpec("level1", 24.0, (256,) * 4, "residual")))
    assert pyramid.tokens_per_second == pytest.approx(12 * 2 + 24 * 4)
    assert pyramid.bitrate == pytest.approx(12 * 20 + 24 * 32)
    assert TokenLayout.from_dict(pyramid.to_dict()) == pyramid


def test_layout_validation():
    with pytest.raises(ValueError, match="shared codebook"):
        StreamSpec("x", 10.0, (8, 16), "band", shared_codebook=True)
    with pytest.raises(ValueError, match="unique"):
        TokenLayout((StreamSpec("a", 1.0, (2,)), StreamSpec("a", 1.0, (2,))))
    with pytest.raises(ValueError, match="slot axis"):
        StreamSpec("x", 10.0, (8,), "pitch")


def make_tokens(K=1024, lengths=(48000, 30000)):
    lay = TokenLayout((StreamSpec("bands", 24000 / 1024, (K,) * 8, "band", shared_codebook=True),))
    frames = math.ceil(max(lengths) / 1024)
    codes = torch.randint(0, K, (len(lengths), frames, 8), generator=torch.Generator().manual_seed(0))
    return Tokens([codes], lay, FP, 24000, list(lengths))


def test_mtok_roundtrip_and_smallest_dtype(tmp_path):
    t = make_tokens()
    p = t.save(tmp_path / "a.mtok")
    u = Tokens.load(p)
    assert torch.equal(u.codes[0], t.codes[0]) and u.layout == t.layout and u.fingerprint == FP
    assert u.lengths == [48000, 30000] and u.sample_rate == 24000
    from safetensors.numpy import load_file

    assert load_file(str(p))["stream0"].dtype == np.uint16  # 1024 codes need 10 bits
    small = make_tokens(K=200)
    small.save(tmp_path / "b.mtok")
    assert load_file(str(tmp_path / "b.mtok"))["stream0"].dtype == np.uint8
    assert not list(tmp_path.glob("*.tmp"))


def test_item_strips_padding():
    t = make_tokens(lengths=(48000, 30000))
    assert t.frames(0) == 47 and t.frames(1) == 30
    assert t.item(1).codes[0].shape == (1, 30, 8)


def test_damaged_files_are_refused(tmp_path):
    p = make_tokens().save(tmp_path / "a.mtok")
    raw = bytearray(p.read_bytes())
    raw[-5] ^= 0xFF  # flip bits inside the code data
    (tmp_path / "flip.mtok").write_bytes(bytes(raw))
    with pytest.raises(TokenFileError, match="flip.mtok.*damaged"):
        Tokens.load(tmp_path / "flip.mtok")
    (tmp_path / "cut.mtok").write_bytes(p.read_bytes()[:100])
    with pytest.raises(TokenFileError, match="cut.mtok: truncated"):  # the cause, not "SafetensorError"
        Tokens.load(tmp_path / "cut.mtok")
    (tmp_path / "cut2.mtok").write_bytes(p.read_bytes()[:-3])
    with pytest.raises(TokenFileError, match="cut2.mtok: truncated: the codes end at byte"):
        Tokens.load(tmp_path / "cut2.mtok")
    with pytest.raises(TokenFileError, match="file not found"):
        Tokens.load(tmp_path / "nope.mtok")
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(3, np.uint8)}, str(tmp_path / "other.mtok"))
    with pytest.raises(TokenFileError, match="no musictok header"):
        Tokens.load(tmp_path / "other.mtok")


def test_shape_checks():
    with pytest.raises(ValueError, match="batch, frames, 8"):
        Tokens([torch.zeros(1, 5, 4, dtype=torch.long)], bandtok_layout(), FP, 24000, [5000])


def test_out_of_range_codes_are_not_stored(tmp_path):
    t = make_tokens(K=256)
    t.codes[0][0, 0, 0] = 300
    with pytest.raises(ValueError, match="outside"):
        t.save(tmp_path / "x.mtok")
    assert not (tmp_path / "x.mtok").exists()


def test_damaged_header_is_refused(tmp_path):
    p = make_tokens().save(tmp_path / "a.mtok")
    raw = p.read_bytes()
    assert raw.count(b"48000, 30000]") == 1
    raw = raw.replace(b"48000, 30000]", b"48000, 30001]")  # same size: only the header's meaning changes
    (tmp_path / "h.mtok").write_bytes(raw)
    with pytest.raises(TokenFileError, match="damaged"):
        Tokens.load(tmp_path / "h.mtok")


def test_errors_survive_pickling():
    import pickle

    from musictok.audio import AudioError

    e = pickle.loads(pickle.dumps(AudioError("/x.wav", "file not found")))
    assert str(e) == "/x.wav: file not found" and e.reason == "file not found"
    e = pickle.loads(pickle.dumps(TokenFileError("plain message")))
    assert str(e) == "plain message"
