"""Channels as token streams (musictok.channels): the mid/side matrix, the stream layout, channel order,
one shared gain per clip, and .mtok files of every channel layout (old mono files still read)."""

import json

import numpy as np
import pytest
import torch

from musictok.channels import (channel_layout, decode_channels, encode_channels, from_channels, join_channels,
                               shared_scale, split_channels, to_channels)
from musictok.tokenizers.bandtok import BandTok, BandTokConfig
from musictok.tokenizers.base import TokenizerError
from musictok.tokenizers.rvq_codec import RVQCodec, RVQCodecConfig
from musictok.tokens import MTOK_VERSION, SourceAudio, TokenFileError, Tokens, _checksum

SR = 16000


@pytest.fixture(scope="module")
def tok():
    """A waveform codec: its decoder is deterministic and the same for a clip alone or in a batch (BandTok's
    Griffin-Lim draws its phases per batch shape)."""
    torch.manual_seed(0)
    return RVQCodec(RVQCodecConfig.tiny(sample_rate=SR)).eval()


@pytest.fixture(scope="module")
def level_tok():
    torch.manual_seed(0)
    return BandTok(BandTokConfig.tiny(sample_rate=SR, griffin_lim_iters=1, level_dbfs=-20.0)).eval()


def _stereo(seconds: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Two different channels: a tone on the left, noise on the right."""
    t = torch.arange(int(seconds * SR)) / SR
    noise = torch.randn(len(t), generator=torch.Generator().manual_seed(seed))
    return torch.stack([0.3 * torch.sin(2 * torch.pi * 440 * t), 0.05 * noise])


def test_mid_side_is_exactly_invertible_and_mono_is_the_mean():
    x = _stereo(0.1)
    ms = to_channels(x, "mid-side")
    assert torch.allclose(ms[0], (x[0] + x[1]) / 2) and torch.allclose(ms[1], (x[0] - x[1]) / 2)
    assert torch.allclose(from_channels(ms, "mid-side"), x, atol=1e-7)
    assert np.allclose(from_channels(to_channels(x.numpy(), "mid-side"), "mid-side"), x.numpy(), atol=1e-7)
    assert torch.equal(to_channels(x, "stereo"), x)
    assert torch.allclose(to_channels(x, "mono"), x.mean(0, keepdim=True))
    with pytest.raises(ValueError, match="two channels"):
        to_channels(torch.zeros(3, 10), "stereo")
    with pytest.raises(ValueError, match="one of"):
        to_channels(x, "surround")


def test_each_channel_is_its_own_streams_in_order(tok):
    """Channel c of a stereo decode is exactly the mono decode of channel c alone: order kept, no crosstalk."""
    x = _stereo()
    tokens = encode_channels(tok, x, "stereo")
    assert tokens.channels == "stereo" and tokens.channel_names == ("left", "right")
    assert [s.name for s in tokens.layout.streams] == ["left.rvq", "right.rvq"]
    assert tokens.lengths == [x.shape[-1]] and tokens.layout.bitrate == pytest.approx(2 * tok.layout.bitrate)
    for c in range(2):
        assert torch.equal(tokens.codes[c], tok.encode(x[c]).codes[0])
    y = decode_channels(tok, tokens)
    assert y.shape == (1, 2, x.shape[-1])
    for c in range(2):
        assert torch.allclose(y[0, c], tok.decode(tok.encode(x[c]))[0], atol=1e-6)
    assert not torch.equal(y[0, 0], y[0, 1])


def test_mid_side_round_trip_decodes_to_left_and_right(tok):
    x = _stereo()
    tokens = encode_channels(tok, x, "mid-side")
    assert [s.name for s in tokens.layout.streams] == ["mid.rvq", "side.rvq"]
    mid, side = (tok.decode(tok.encode(p))[0] for p in to_channels(x, "mid-side"))
    y = decode_channels(tok, tokens)[0]
    assert torch.allclose(y[0], mid + side, atol=1e-6) and torch.allclose(y[1], mid - side, atol=1e-6)


def test_join_and_split_are_inverse_for_a_batch_of_clips(tok):
    x = torch.stack([_stereo(0.5, seed=1), _stereo(0.5, seed=2)])  # (B=2, C=2, T)
    tokens = encode_channels(tok, x, "stereo")
    assert tokens.batch_size == 2
    mono = split_channels(tokens)
    assert mono.channels == "mono" and mono.layout == tok.layout and mono.batch_size == 4
    assert torch.equal(mono.codes[0][3], tok.encode(x[1, 1]).codes[0][0])  # row b·C + c: clip 1's right
    again = join_channels(mono, "stereo")
    assert again.layout == tokens.layout and all(torch.equal(a, b) for a, b in zip(again.codes, tokens.codes))
    assert channel_layout(tok.layout, "mono") == tok.layout


def test_channels_share_one_gain_and_keep_their_balance(level_tok):
    """A level-normalising tokenizer removes one gain per stereo clip (over both channels), so a quiet right
    channel stays quiet in the tokens; any input gain only scales that gain."""
    x = _stereo()
    tokens = encode_channels(level_tok, x, "stereo")
    assert tokens.scales == pytest.approx([shared_scale(x, -20.0)])
    assert torch.equal(tokens.codes[1], level_tok.encode(x[1], scales=tokens.scales).codes[0])
    assert not torch.equal(tokens.codes[1], level_tok.encode(x[1]).codes[0])  # its own gain would lose the balance
    louder = encode_channels(level_tok, 4 * x, "stereo")
    assert louder.scales[0] == pytest.approx(4 * tokens.scales[0], rel=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(louder.codes, tokens.codes))
    assert split_channels(tokens).scales == [tokens.scales[0]] * 2  # decoding multiplies it into every channel
    with pytest.raises(ValueError, match="takes no scales"):
        BandTok(BandTokConfig.tiny(sample_rate=SR)).encode(x[0], scales=[2.0])


def test_a_tokenizer_refuses_channel_tokens_and_points_to_the_channel_layer(tok):
    tokens = encode_channels(tok, _stereo(0.3), "stereo")
    with pytest.raises(TokenizerError, match="2 channels.*decode_channels"):
        tok.decode(tokens)


def test_stereo_mtok_round_trip_records_layout_and_source(tok, tmp_path):
    tokens = encode_channels(tok, _stereo(0.5), "mid-side")
    tokens.source = SourceAudio(44100, 2, (22050,))
    tokens.save(tmp_path / "s.mtok")
    back = Tokens.load(tmp_path / "s.mtok")
    assert back.channels == "mid-side" and back.source == tokens.source and back.layout == tokens.layout
    assert all(torch.equal(a, b) for a, b in zip(back.codes, tokens.codes))
    from safetensors import safe_open

    with safe_open(str(tmp_path / "s.mtok"), framework="numpy") as f:
        header = json.loads(f.metadata()["musictok"])
    assert header["format_version"] == MTOK_VERSION == 2
    assert header["channels"] == {"layout": "mid-side", "count": 2, "names": ["mid", "side"]}
    assert header["source"] == {"sample_rate": 44100, "channels": 2, "lengths": [22050]}
    mono = tok.encode(_stereo(0.5)[0])
    mono.save(tmp_path / "m.mtok")
    with safe_open(str(tmp_path / "m.mtok"), framework="numpy") as f:
        assert json.loads(f.metadata()["musictok"])["format_version"] == 1  # older musictok still reads it


def _write_v1(tokens: Tokens, path) -> None:
    """A token file exactly as format 1 wrote it: no channels, no source."""
    from safetensors.numpy import save_file

    arrays = {f"stream{i}": c.numpy().astype(np.uint16) for i, c in enumerate(tokens.codes)}
    header = {k: v for k, v in tokens.header().items() if k not in ("channels", "source")}
    header["format_version"] = 1
    header["checksum"] = _checksum(arrays, header)
    save_file(arrays, str(path), metadata={"musictok": json.dumps(header)})


def test_old_mono_files_still_load_and_decode(tok, tmp_path):
    x = _stereo(0.5)[0]
    tokens = tok.encode(x)
    _write_v1(tokens, tmp_path / "old.mtok")
    old = Tokens.load(tmp_path / "old.mtok")
    assert old.channels == "mono" and old.source is None and torch.equal(old.codes[0], tokens.codes[0])
    assert torch.equal(tok.decode(old), tok.decode(tokens))
    assert torch.allclose(decode_channels(tok, old)[0, 0], tok.decode(tokens)[0], atol=1e-6)


def test_newer_format_and_inconsistent_channels_are_refused(tok, tmp_path):
    from safetensors.numpy import save_file

    tokens = encode_channels(tok, _stereo(0.3), "stereo")
    arrays = {f"stream{i}": c.numpy().astype(np.uint16) for i, c in enumerate(tokens.codes)}
    for change, message in ((lambda h: h.update(format_version=MTOK_VERSION + 1), "newer musictok"),
                            (lambda h: h.update(channels={"layout": "stereo", "names": ["right", "left"]}),
                             "do not match"),
                            (lambda h: h.update(channels={"layout": "mid-side"}), "once per channel")):
        header = tokens.header()
        change(header)
        header["checksum"] = _checksum(arrays, header)
        save_file(arrays, str(tmp_path / "x.mtok"), metadata={"musictok": json.dumps(header)})
        with pytest.raises(TokenFileError, match=message):
            Tokens.load(tmp_path / "x.mtok")
