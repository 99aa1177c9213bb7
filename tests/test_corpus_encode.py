"""Corpus-scale encoding: worker processes + batched encoder threads give exactly per-file encoding's tokens."""

import numpy as np
import pytest
import soundfile as sf
import torch

from musictok.audio import AUDIO_EXTENSIONS
from musictok.convert import MTOK, encode_file, encode_files, plan
from musictok.corpus_encode import ChunkPlan, StreamChunker, encode_corpus
from musictok.tokenizers.bandtok import BandTok, BandTokConfig
from musictok.tokens import Tokens

SR = 16000
CHUNK = 8  # units of 1,024 samples: whole files up to 7.3 s, one encoder input up to 3.6 s


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Files of every path through encoding: one input, whole but chunked, streamed (two of equal length,
    so their chunks batch together), another rate and channel count, and one that is not audio."""
    root = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)

    def noise(seconds, rate, channels=1):
        t = np.arange(int(seconds * rate)) / rate
        tone = 0.2 * np.sin(2 * np.pi * 220 * t * (1 + 0.1 * np.sin(t)))[:, None]
        return (tone + 0.05 * rng.standard_normal((len(t), channels))).astype(np.float32)

    sf.write(root / "short.wav", noise(2.0, SR), SR)
    sf.write(root / "medium.flac", noise(5.3, SR), SR)
    (root / "sub").mkdir()
    sf.write(root / "sub" / "long_a.flac", noise(12.0, SR), SR)
    sf.write(root / "sub" / "long_b.ogg", noise(12.0, 44100, 2), 44100)
    sf.write(root / "sub" / "long_c.wav", noise(12.0, SR, 2) * np.array([1.0, 0.3], np.float32), SR)
    sf.write(root / "stereo_short.flac", noise(4.0, 44100, 2), 44100)
    (root / "broken.wav").write_bytes(b"RIFF0000WAVEfmt not really")
    return root


def _model(**kw) -> BandTok:
    torch.manual_seed(0)
    m = BandTok(BandTokConfig.tiny(sample_rate=SR, **kw))
    m.train()
    m.forward_train(torch.randn(2, 16384) * 0.1)  # k-means init: codes that use the codebook
    return m.eval()


def test_chunker_cuts_the_chunks_of_encode_long():
    """Whatever the block sizes, the chunks are those `Tokenizer._encode_long` slices from the padded clip."""
    plan_ = ChunkPlan(hop=4, chunk=5, context=2)
    rng = np.random.default_rng(1)
    for n in (1, 7, 36, 37, 40, 41, 123):
        x = rng.standard_normal(n).astype(np.float32)
        for block in (1, 3, 50, 1000):
            chunker = StreamChunker(plan_)
            chunks = [c for i in range(0, n, block) for c in chunker.push(x[i: i + block])] + chunker.finish()
            units = -(-n // 4)
            padded = np.pad(x, (0, units * 4 - n))
            if units <= 5 + 2 * 2:
                want = [(0, 0, units, units)]
            else:
                want = [(max(s - 2, 0), s, min(s + 5, units), min(s + 5 + 2, units)) for s in range(0, units, 5)]
            assert [(c.lo, c.start, c.stop, c.lo + c.samples.shape[-1] // 4) for c in chunks] == want, (n, block)
            for c in chunks:
                assert c.samples.shape[0] == 1
                np.testing.assert_array_equal(c.samples[0], padded[c.lo * 4: c.lo * 4 + c.samples.shape[-1]])
    two = np.stack([x, -2 * x])  # channels are cut together
    chunker = StreamChunker(plan_)
    chunks = chunker.push(two[:, :50]) + chunker.push(two[:, 50:]) + chunker.finish()
    assert all(c.samples.shape[0] == 2 for c in chunks)
    np.testing.assert_array_equal(np.concatenate([c.samples[:, (c.start - c.lo) * 4: (c.stop - c.lo) * 4]
                                                  for c in chunks], axis=1)[:, :123], two)


def _same_tokens(got: Tokens, want: Tokens, name: str) -> None:
    assert got.channels == want.channels and got.layout == want.layout, name
    assert got.lengths == want.lengths and got.fingerprint == want.fingerprint, name
    assert got.scales == want.scales and got.source == want.source, name
    for a, b in zip(got.codes, want.codes):
        assert torch.equal(a, b.to(a.dtype)), name


@pytest.mark.parametrize("level, channels", [(None, "keep"), (-20.0, "keep"), (-20.0, "mid-side"), (None, "mono")])
def test_parallel_folder_encoding_equals_per_file_encoding(folder, tmp_path, level, channels):
    tok = _model(level_dbfs=level)
    pairs = plan([folder], tmp_path / "out", AUDIO_EXTENSIONS, MTOK)
    seen = []
    report = encode_corpus(pairs, tok, workers=2, channels=channels, threads=2, batch_size=3, chunk_units=CHUNK,
                           on_file=lambda src, status: seen.append((src.name, status)))
    assert sorted(seen) == sorted([("broken.wav", "failed")] + [(s.name, "written") for s, _ in pairs
                                                                  if s.name != "broken.wav"])
    assert [p.name for p, _ in report.failed] == ["broken.wav"]
    assert report.written == [d for s, d in pairs if s.name != "broken.wav"]  # in input order
    assert report.audio_seconds == pytest.approx(2.0 + 5.3 + 4.0 + 3 * 12.0, abs=0.01)
    for src, dst in pairs:
        if src.name == "broken.wav":
            assert not dst.exists()
            continue
        got = Tokens.load(dst)
        want, _ = encode_file(src, tok, chunk_units=CHUNK, channels=channels)
        _same_tokens(got, want, src.name)
        assert got.extra["source_file"] == src.name
        stereo = src.name in ("long_b.ogg", "long_c.wav", "stereo_short.flac")
        assert got.channels == ("mono" if channels == "mono" or not stereo else
                                "stereo" if channels == "keep" else "mid-side")
    # a rerun skips what is there; overwrite re-encodes to the same bytes
    again = encode_files(pairs, tok, workers=1, channels=channels)
    assert len(again.skipped) == len(pairs) - 1 and not again.written
    before = {d: d.read_bytes() for d in report.written}
    redo = encode_corpus(pairs, tok, workers=1, channels=channels, chunk_units=CHUNK, overwrite=True)
    assert redo.written == report.written and all(d.read_bytes() == b for d, b in before.items())


def test_parallel_encoding_at_the_default_chunk_equals_the_sequential_path(folder, tmp_path):
    """`encode_files(workers=N)` and `workers=0` (one file after the other in this process) agree."""
    tok = _model()
    pairs = plan([folder / "sub"], tmp_path / "seq", AUDIO_EXTENSIONS, MTOK)
    encode_files(pairs, tok, workers=0)
    par = [(s, tmp_path / "par" / d.relative_to(tmp_path / "seq")) for s, d in pairs]
    encode_files(par, tok, workers=2)
    for (src, a), (_, b) in zip(pairs, par):
        _same_tokens(Tokens.load(b), Tokens.load(a), src.name)


def test_bf16_encoding_runs_the_networks_in_bf16_on_every_path_and_says_so(folder, tmp_path):
    """`--precision bf16`: the encoder runs under bf16 autocast in this thread and in the corpus encoder's
    threads (autocast is per thread), codes mostly equal fp32's, and the tokens record the precision."""
    tok = _model()
    seen: list[torch.dtype] = []
    tok.encoder.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    x = torch.from_numpy(np.random.default_rng(2).standard_normal(3 * SR).astype(np.float32)) * 0.1
    fp32 = tok.encode(x)
    assert seen == [torch.float32] and "encode_precision" not in fp32.extra
    with pytest.raises(ValueError, match="fp32, bf16"):
        tok.set_encode_precision("fp16")
    bf16 = tok.set_encode_precision("bf16").encode(x)
    assert seen[-1] == torch.bfloat16 and bf16.extra["encode_precision"] == "bf16"
    assert bf16.codes[0].shape == fp32.codes[0].shape
    assert (bf16.codes[0] == fp32.codes[0]).float().mean() > 0.9
    for workers in (0, 2):  # in this process (streaming the long files) and in the encoder threads
        seen.clear()
        pairs = plan([folder / "sub"], tmp_path / f"w{workers}", AUDIO_EXTENSIONS, MTOK)
        encode_files(pairs, tok, workers=workers)
        assert seen and set(seen) == {torch.bfloat16}
        assert all(Tokens.load(d).extra["encode_precision"] == "bf16" for _, d in pairs)
