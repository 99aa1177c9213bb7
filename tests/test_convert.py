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
