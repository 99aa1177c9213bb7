"""Streaming encode / decode of long files: the same tokens and samples as whole-file encode / decode."""

import numpy as np
import pytest
import soundfile as sf
import torch

from musictok.audio import AudioStream, load, save
from musictok.convert import ConvertError, check_levels, decode_to_file, encode_file, plan
from musictok.tokenizers.bandtok import BandTok, BandTokConfig

SR = 16000


@pytest.fixture(scope="module")
def tok():
    torch.manual_seed(0)
    return BandTok(BandTokConfig.tiny(sample_rate=SR, griffin_lim_iters=1)).eval()  # decoding speed is not the point


def test_stream_equals_load(tmp_path):
    x = (0.1 * np.random.default_rng(0).standard_normal((2, 44100 * 2 + 77))).astype(np.float32)
    sf.write(tmp_path / "s.flac", x.T, 44100)
    for rate in (None, SR):
        whole, _ = load(tmp_path / "s.flac", rate)
        stream = AudioStream(tmp_path / "s.flac", rate, block_frames=3000)
        streamed = np.concatenate(list(stream))
        np.testing.assert_array_equal(streamed, whole)  # soxr's streaming resampler gives the same samples
        assert stream.peak == pytest.approx(float(np.abs(load(tmp_path / "s.flac", mono=False)[0]).max()))


def test_long_file_streams_to_the_same_tokens_and_samples(tok, tmp_path):
    """chunk_units=3 makes a 7 s file 'long' (several chunks), so it goes through the streaming path."""
    rng = np.random.default_rng(1)
    sf.write(tmp_path / "long.flac", (0.1 * rng.standard_normal((44100 * 7 + 123, 2))).astype(np.float32), 44100)
    streamed, peak = encode_file(tmp_path / "long.flac", tok, chunk_units=3, channels="mono")
    wav, _ = load(tmp_path / "long.flac", SR)
    whole = tok.encode(torch.from_numpy(wav), chunk_units=3)
    assert streamed.lengths == whole.lengths and torch.equal(streamed.codes[0], whole.codes[0])
    assert 0 < peak < 1
    path, _ = decode_to_file(whole, tok, tmp_path / "dec.wav", chunk_units=3)
    y, sr = load(path)
    assert sr == SR and np.array_equal(y, tok.decode(whole, chunk_units=3)[0].numpy())
    assert sf.SoundFile(str(path)).software.startswith("musictok decode")  # so a rerun may replace it


def test_streamed_level_scale_is_the_whole_file_scale(tmp_path):
    """A level-normalising tokenizer's scale comes from a first pass over the whole file, as encode's does."""
    torch.manual_seed(0)
    tok = BandTok(BandTokConfig.tiny(sample_rate=SR, level_dbfs=-20.0)).eval()
    save(tmp_path / "l.wav", (0.3 * np.random.default_rng(2).standard_normal(SR * 5)).astype(np.float32), SR)
    streamed, _ = encode_file(tmp_path / "l.wav", tok, chunk_units=3)
    whole = tok.encode(torch.from_numpy(load(tmp_path / "l.wav")[0]), chunk_units=3)
    assert streamed.scales == pytest.approx(whole.scales) and torch.equal(streamed.codes[0], whole.codes[0])


def test_plan_refuses_nothing_to_do_and_outputs_onto_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConvertError, match="no audio files found"):
        from musictok.audio import AUDIO_EXTENSIONS

        plan([tmp_path / "empty"], tmp_path / "out", AUDIO_EXTENSIONS, ".mtok")
    (tmp_path / "a.mtok").write_bytes(b"x")
    with pytest.raises(ConvertError, match="would replace the input"):
        plan([tmp_path / "a.mtok"], tmp_path, (".mtok",), ".mtok")


def test_levels_are_checked_against_the_tokenizer(tok, tmp_path):
    from musictok.tokenizers.rvq_codec import RVQCodec, RVQCodecConfig

    check_levels(tok, None)
    with pytest.raises(ConvertError, match="no levels"):
        check_levels(tok, 1)
    rvq = RVQCodec(RVQCodecConfig.tiny()).eval()
    check_levels(rvq, 2)
    with pytest.raises(ConvertError, match="1..4"):
        check_levels(rvq, 5)
    tokens = rvq.encode(torch.randn(rvq.sample_rate // 2) * 0.1)
    path, _ = decode_to_file(tokens, rvq, tmp_path / "one.wav", levels=1)  # `musictok decode --levels 1`
    assert np.array_equal(load(path)[0], rvq.decode(tokens, levels=1)[0].numpy())


# ---------------------------------------------------------------- channels and sample rates
@pytest.fixture(scope="module")
def codec():
    """A deterministic decoder, so decoded files can be compared sample by sample."""
    from musictok.tokenizers.rvq_codec import RVQCodec, RVQCodecConfig

    torch.manual_seed(0)
    return RVQCodec(RVQCodecConfig.tiny(sample_rate=SR)).eval()


def _stereo_file(path, seconds: float, rate: int = 44100) -> np.ndarray:
    """Left: a 440 Hz tone; right: noise. Returns the ``(2, T)`` samples written."""
    t = np.arange(int(seconds * rate)) / rate
    x = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.05 * np.random.default_rng(3).standard_normal(len(t))])
    sf.write(path, x.T.astype(np.float32), rate, subtype="FLOAT")
    return x.astype(np.float32)


def test_stereo_44k_file_round_trips_to_stereo_at_its_own_rate(codec, tmp_path):
    from musictok.audio import resample
    from musictok.channels import decode_channels

    x = _stereo_file(tmp_path / "s.wav", 1.3)
    tokens, _ = encode_file(tmp_path / "s.wav", codec)  # the default keeps the channels
    assert tokens.channels == "stereo" and tokens.source.sample_rate == 44100
    assert tokens.source.channels == 2 and tokens.source.lengths == (x.shape[-1],)
    expected = decode_channels(codec, tokens)[0].numpy()
    path, _ = decode_to_file(tokens, codec, tmp_path / "model.wav")  # the tokenizer's rate
    y, sr = sf.read(path, dtype="float32", always_2d=True)
    assert sr == SR and y.shape == (tokens.lengths[0], 2) and np.allclose(y.T, expected, atol=1e-6)
    path, _ = decode_to_file(tokens, codec, tmp_path / "orig.wav", sample_rate=44100)
    z, sr = sf.read(path, dtype="float32", always_2d=True)
    assert sr == 44100 and z.shape == (x.shape[-1], 2)  # the input's rate, its exact length, left then right
    one_shot = resample(expected, SR, 44100)
    m = min(one_shot.shape[-1], len(z))
    assert np.allclose(z[:m].T, one_shot[:, :m], atol=1e-5)  # the streamed resampler's samples


@pytest.mark.parametrize("channels", ["stereo", "mid-side"])
def test_long_stereo_file_streams_to_the_same_tokens_and_samples(codec, tmp_path, channels):
    from musictok.channels import decode_channels, encode_channels

    _stereo_file(tmp_path / "long.wav", 3.0)
    streamed, _ = encode_file(tmp_path / "long.wav", codec, chunk_units=3, channels=channels)
    whole = encode_channels(codec, load(tmp_path / "long.wav", SR, mono=False)[0], channels, chunk_units=3)
    assert streamed.channels == channels and streamed.lengths == whole.lengths
    assert all(torch.equal(a, b) for a, b in zip(streamed.codes, whole.codes))
    path, _ = decode_to_file(streamed, codec, tmp_path / "dec.wav", chunk_units=3)
    y, _ = sf.read(path, dtype="float32", always_2d=True)
    assert np.allclose(y.T, decode_channels(codec, whole, chunk_units=3)[0].numpy(), atol=1e-5)


def test_channel_choices_per_file(codec, tmp_path):
    from musictok.convert import check_channels, file_channels

    assert file_channels("keep", 2, codec) == ("stereo", None)
    assert file_channels("mid-side", 2, codec) == ("mid-side", None)
    assert file_channels("mono", 2, codec) == ("mono", None)
    assert file_channels("stereo", 1, codec) == ("mono", None)  # a mono file has nothing to keep apart
    layout, warning = file_channels("keep", 6, codec)
    assert layout == "mono" and "6 channels downmixed" in warning
    with pytest.raises(ConvertError, match="has 6 channels; --channels stereo takes two"):
        file_channels("stereo", 6, codec, "surround.wav")
    with pytest.raises(ConvertError, match="--channels: one of keep, mono, stereo, mid-side, not 'quad'"):
        check_channels(codec, "quad")
    sf.write(tmp_path / "m.wav", np.zeros((SR, 1), np.float32), SR)
    tokens, _ = encode_file(tmp_path / "m.wav", codec, channels="stereo")
    assert tokens.channels == "mono" and tokens.source.channels == 1


def test_output_rate_and_length(codec):
    from musictok.convert import output_length, output_rate, parse_sample_rate
    from musictok.tokens import SourceAudio

    tokens = codec.encode(torch.zeros(SR))
    assert output_rate(tokens, "model") == (SR, None) and output_rate(tokens, 48000) == (48000, None)
    rate, warning = output_rate(tokens, "original")  # a file from before the input's rate was recorded
    assert rate == SR and "does not record its input's sample rate" in warning
    assert output_length(tokens, 48000) == 3 * SR
    tokens.source = SourceAudio(44100, 2, (44101,))
    assert output_rate(tokens, "original") == (44100, None) and output_length(tokens, 44100) == 44101
    assert parse_sample_rate("original") == "original" and parse_sample_rate("48000") == 48000
    for bad, why in (("fast", "model, original or a rate in Hz"), ("50", "outside")):
        with pytest.raises(ConvertError, match=f"--sample-rate: .*{why}"):
            parse_sample_rate(bad)
