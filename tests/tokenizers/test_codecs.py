"""The waveform codecs (RVQ codec and PyramidCodec) on tiny randomly initialised models: rates, shapes,
the pyramid's algorithms, partial decoding, chunking, persistence and the MMD term's gradients; the bundled
codecs decode as they did before the DAC options existed."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from signals import music

from musictok.spectral import band_limit
from musictok.tokenizers.base import Tokenizer
from musictok.tokenizers.pyramid import PyramidCodec, PyramidCodecConfig
from musictok.tokenizers.rvq_codec import RVQCodec, RVQCodecConfig
from musictok.train.codec import codec_model_config

SR = 16000
ROOT = Path(__file__).resolve().parents[2]


def _config_model(name: str):
    """The model config of ``configs/<name>.yaml``."""
    return codec_model_config(yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())["model"])[1]


def _dac_tiny() -> RVQCodec:
    return RVQCodec(_config_model("rvq-dac-tiny"))


def _music(seconds: float, seed: int = 0) -> torch.Tensor:
    return music(seconds, SR, seed, peak=0.2)


def _trained_once(model):
    model.train()
    model.forward_train(_music(2.0, seed=1)[None])  # k-means init of every codebook
    return model.eval()


@pytest.fixture(scope="module")
def rvq():
    return _trained_once(RVQCodec(RVQCodecConfig.tiny()))


@pytest.fixture(scope="module")
def pyramid():
    return _trained_once(PyramidCodec(PyramidCodecConfig.tiny()))


def test_small_presets_match_bandtok_budget():
    for model in (RVQCodec(RVQCodecConfig.small()), PyramidCodec(PyramidCodecConfig.small())):
        assert model.layout.tokens_per_second == pytest.approx(187.5)
        assert model.layout.bitrate == pytest.approx(1875.0)
    rates = [s.frame_rate for s in PyramidCodec(PyramidCodecConfig.small()).layout.streams]
    assert rates == pytest.approx([23.4375 / 4, 23.4375 / 2, 23.4375])


def test_rvq_shapes_and_prefix_decoding(rvq):
    wav = _music(3.0)
    tokens = rvq.encode(wav)
    frames = int(np.ceil(len(wav) / rvq.hop_samples))
    assert tokens.codes[0].shape == (1, frames, 4) and int(tokens.codes[0].max()) < 64
    full, two = rvq.decode(tokens), rvq.decode(tokens, levels=2)
    assert full.shape == two.shape == (1, len(wav)) and torch.isfinite(full).all()
    assert not torch.allclose(full, two)


def test_rvq_reconstruction_paths_score_prefixes_and_the_unquantised_latent(rvq):
    """The codec benchmark's 1, 2, 4 … codebook rows decode exactly what ``decode(levels=k)`` gives, and the
    unquantised path skips the quantizer (so it differs from every prefix); the bench keeps ``tokens`` only."""
    from musictok.evaluate import EvalClips, evaluate_reconstruction

    wav = _music(2.0)[None]
    paths = rvq.reconstruction_paths()
    assert list(paths) == ["tokens", "codebooks 1-1", "codebooks 1-2", "unquantised latent"]
    assert torch.equal(paths["codebooks 1-2"](wav), rvq.decode(rvq.encode(wav), levels=2))
    latent = paths["unquantised latent"](wav)
    assert latent.shape == wav.shape and not torch.allclose(latent, rvq.decode(rvq.encode(wav)))
    clips = EvalClips(audio=wav, sample_rate=SR, source={})
    assert list(evaluate_reconstruction(rvq, clips, paths=("tokens",))["reconstruction"]) == ["tokens"]


def test_pyramid_algorithm_1_shapes_and_rates(pyramid):
    cfg = pyramid.config
    wav = _music(2.0)[None]
    wav = torch.nn.functional.pad(wav, (0, -wav.shape[-1] % pyramid.hop_samples))
    feats = pyramid._features(wav)
    n = wav.shape[-1] // cfg.stride
    assert [f.shape[-1] for f in feats] == [n // 4, n // 2, n]  # each level half the rate of the one below
    codes = pyramid._pyramid_encode(feats, train=False)
    assert [c.shape for c in codes] == [(1, n // 4, 1), (1, n // 2, 2), (1, n, 2)]


def test_pyramid_algorithm_2_prefixes_reach_the_finest_rate(pyramid):
    d = pyramid.config.latent_dim
    q = [torch.randn(1, d, 4), torch.randn(1, d, 8), torch.randn(1, d, 16)]
    out = pyramid._pyramid_decode(q)
    assert [r.shape for r in out] == [(1, d, 16)] * 3
    # the prefix embedding of level 1 depends only on level 1
    q2 = [q[0], torch.randn(1, d, 8), torch.randn(1, d, 16)]
    assert torch.allclose(pyramid._pyramid_decode(q2)[0], out[0])
    assert not torch.allclose(pyramid._pyramid_decode(q2)[1], out[1])


def test_pyramid_partial_decoding(pyramid):
    wav = _music(3.0, seed=2)
    tokens = pyramid.encode(wav)
    outs = [pyramid.decode(tokens, levels=k) for k in (1, 2, 3)]
    assert all(o.shape == (1, len(wav)) and torch.isfinite(o).all() for o in outs)
    assert torch.equal(outs[2], pyramid.decode(tokens))
    # decoding with k levels does not read the finer streams
    changed = [c.clone() for c in tokens.codes]
    changed[2].random_(0, 64, generator=torch.Generator().manual_seed(0))
    tokens2 = type(tokens)(changed, tokens.layout, tokens.fingerprint, tokens.sample_rate, tokens.lengths)
    assert torch.equal(pyramid.decode(tokens2, levels=2), outs[1])
    with pytest.raises(ValueError):
        pyramid.decode(tokens, levels=4)


def test_hierarchical_training_targets_are_band_limited(pyramid):
    wav = _music(1.0)[None]
    target = pyramid.band_limited_target(wav, 1)  # 1 of 3 levels: a quarter of the bandwidth
    spec = torch.fft.rfft(target[0]).abs()
    cut = spec.shape[-1] // 4
    assert spec[cut + 10:].max() < 1e-3 * spec.max()
    assert torch.equal(pyramid.band_limited_target(wav, 3), wav)
    out = pyramid.train().forward_train(wav)
    pyramid.eval()
    assert len(out.targets) == len(out.outputs) == 3 and set(out.losses) >= {"mel_1", "mel_2", "mel_3"}


def test_band_limit_keeps_the_low_band():
    t = torch.arange(SR) / SR
    low, high = torch.sin(2 * torch.pi * 300 * t), torch.sin(2 * torch.pi * 6000 * t)
    out = band_limit(low + high, 4)  # cut-off at 2 kHz
    assert (out - low).abs().max() < 5e-3 and (out - low).pow(2).mean() < 1e-6


@pytest.mark.parametrize("make", [lambda: RVQCodec(RVQCodecConfig.tiny()),
                                  lambda: PyramidCodec(PyramidCodecConfig.tiny()), _dac_tiny])
def test_chunked_encoding_matches_whole_file(make):
    model = _trained_once(make())
    wav = _music(20.0, seed=3)
    tokens = model.encode(wav)
    chunked = model.encode(wav, chunk_units=8)
    assert [c.shape for c in tokens.codes] == [c.shape for c in chunked.codes]
    # compared as codeword vectors: k-means on one short batch leaves duplicate codewords, whose indices
    # may tie-break differently in a shorter input
    for a, b in zip(model.code_embeddings(tokens), model.code_embeddings(chunked)):
        assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(model.decode(tokens), model.decode(tokens, chunk_units=8), atol=1e-4)


@pytest.mark.parametrize("make", [RVQCodec, PyramidCodec])
def test_mmd_gradients_reach_the_encoder(make):
    config = make.config_class.tiny(mmd={"weight": 2.0}, quantizer_dropout=0.5)
    model = make(config).train()
    wav = torch.stack([_music(1.0, seed=s) for s in range(4)])
    model.forward_train(wav)  # initialise codebooks
    assert "mmd" not in model.forward_train(wav).stats  # no pool passed: no MMD term
    model.zero_grad()
    out = model.forward_train(wav, mmd_pool=[wav[:2], wav[2:]])  # two pooled batches of 2 clips
    # the statistic and the weighted loss term under their own names
    assert float(out.losses["mmd_loss"].detach()) == pytest.approx(2.0 * float(out.stats["mmd"]))
    out.losses["mmd_loss"].backward()
    grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in model.decoder.parameters())
    streams = model.mmd_streams(wav)  # every level of the MMD's quantizer, whatever the dropout
    levels = config.num_quantizers if make is RVQCodec else config.level_quantizers[-1]
    assert streams.shape[2:] == (levels, config.latent_dim)


def test_mmd_weight_zero_logs_but_adds_nothing():
    model = RVQCodec(RVQCodecConfig.tiny(quantizer_dropout=0.0)).train()
    wav = torch.stack([_music(1.0, seed=s) for s in range(2)])
    out = model.forward_train(wav, mmd_pool=[wav])
    assert "mmd" in out.stats and not {"mmd", "mmd_loss"} & set(out.losses) and not out.stats["mmd"].requires_grad


def test_mmd_term_waits_for_the_kmeans_init():
    """While the k-means buffer fills (rvq-dac-tiny: 96 latents; here 32 per pass) the codebooks and projections
    are random: no statistic, no loss. The pass that fills it initialises the codebooks first, then computes the
    term."""
    model = RVQCodec(_config_model("rvq-dac-tiny")).train()
    wav = torch.stack([_music(0.256, seed=s) for s in range(2)])  # 2 clips × 16 frames
    pool = [torch.stack([_music(0.256, seed=10 + s) for s in range(2)]), wav]
    for _ in range(2):
        out = model.forward_train(wav, mmd_pool=pool)
        assert model.quantizer.gathering and "mmd" not in out.stats and not {"mmd", "mmd_loss"} & set(out.losses)
    out = model.forward_train(wav, mmd_pool=pool)
    assert model.quantizer.initialised and not model.quantizer.gathering
    assert float(out.losses["mmd_loss"].detach()) == pytest.approx(float(out.stats["mmd"]))  # weight 1


@pytest.mark.parametrize("make", [lambda: RVQCodec(RVQCodecConfig.tiny()),
                                  lambda: PyramidCodec(PyramidCodecConfig.tiny()), _dac_tiny])
def test_save_load_identical_tokens(make, tmp_path):
    model = _trained_once(make())
    wav = _music(2.0, seed=4)
    model.save_pretrained(tmp_path / "codec", storage_dtype=torch.float16)
    loaded = Tokenizer.from_pretrained(tmp_path / "codec")
    assert type(loaded) is type(model)
    assert torch.equal(loaded.decode(loaded.encode(wav)), loaded.decode(loaded.encode(wav)))
    assert loaded.config.to_dict() == model.config.to_dict()


def test_config_validation():
    with pytest.raises(ValueError):
        RVQCodecConfig(encoder_channels=(8, 16), encoder_strides=(4, 4))
    with pytest.raises(ValueError):
        PyramidCodecConfig(level_quantizers=())
    with pytest.raises(ValueError, match="no_such_field"):
        RVQCodecConfig.from_dict({"no_such_field": 1})


def test_transposed_conv_decoder_option():
    model = _trained_once(RVQCodec(RVQCodecConfig.tiny(decoder="transposed")))
    wav = _music(1.5)
    out = model.decode(model.encode(wav))
    assert out.shape == (1, len(wav)) and torch.isfinite(out).all() and out.abs().max() <= 1.0


# The bundled codecs, trained before the DAC options existed, must give the same tokens and audio: checksum of
# the codes (sum of code × position), first codes, and the decoded signal's L1 norm on a 3 s test signal.
BUNDLED = {
    "rvq-small": ([79199044], [404, 763, 434, 108, 178, 979], 4414.639851),
    "rvq-mmd-small": ([87903904], [522, 154, 218, 853, 895, 676], 2385.831811),
    "pyramid-small": ([1148506, 4140068, 36738792], [105, 840, 25, 388, 813, 357], 2418.091161),
    "rvq-dac-small": ([76433809], [199, 808, 312, 870, 886, 261], 4802.567714),
}


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_codecs_encode_and_decode_as_before(name):
    model = Tokenizer.from_pretrained(ROOT / "pretrained" / name)
    wav = music(3.0, 24000, seed=11, peak=0.3)
    tokens = model.encode(wav)
    checksums = [int((c.long() * torch.arange(1, c.numel() + 1).view(c.shape)).sum()) for c in tokens.codes]
    expected_sums, first, l1 = BUNDLED[name]
    assert checksums == expected_sums and tokens.codes[0].reshape(-1)[:6].tolist() == first
    assert float(model.decode(tokens).double().abs().sum()) == pytest.approx(l1, rel=1e-6)


def test_dac_small_config_budget_and_size():
    cfg = _config_model("rvq-dac-small")
    model = RVQCodec(cfg)
    assert model.layout.tokens_per_second == pytest.approx(187.5) and model.layout.bitrate == pytest.approx(1875.0)
    assert cfg.frame_rate == pytest.approx(23.4375) and cfg.latent_dim >= 256
    assert cfg.mel_windows == (32, 64, 128, 256, 512, 1024, 2048)  # every resolution of the metric
    params = sum(p.numel() for p in model.parameters())
    assert 7.5e6 < params < 8.5e6  # the size its config header states (7.95 M)
    assert model.context_units * model.hop_samples >= model.encoder.reach  # chunked encoding stays exact
    names = set(model.state_dict())
    assert any("alpha" in n for n in names) and any("parametrizations" in n for n in names)
    assert all(not layer.config.use_ema and layer.config.lookup == "l2norm" for layer in model.quantizer.layers)


def test_dac_tiny_codec_trains_to_factorised_codes():
    model = _dac_tiny().train()
    wav = torch.stack([_music(1.0, seed=s) for s in range(2)])
    first = model.forward_train(wav)  # 2 × 62 latents >= the 96 the k-means buffer needs: initialised now
    assert all(bool(layer.initted) for layer in model.quantizer.layers)
    assert {"mel", "vq_commitment", "vq_codebook"} <= set(first.losses)
    model.eval()
    tokens = model.encode(_music(2.0, seed=3))
    assert int(tokens.codes[0].max()) < model.config.codebook_size
    levels = model.code_embeddings(tokens)[0]  # (1, frames, L, D): raw codewords projected back
    norms = levels.norm(dim=-1)
    assert levels.shape[-2:] == (model.config.num_quantizers, model.config.latent_dim)
    assert float(norms.std()) > 0.05 * float(norms.mean())


def test_dependence_is_measured_on_the_lookup_codewords_of_factorised_codes(rvq):
    """Under ``mmd.streams: lookup`` the MMD between levels reads each code's look-up-space codeword (unit
    vectors of the codebook dim), as the training term reads the residuals' look-ups; elsewhere the code
    embeddings."""
    model = _dac_tiny().train()
    model.forward_train(torch.stack([_music(1.0, seed=s) for s in range(2)]))  # k-means init
    model.eval()
    tokens = model.encode(_music(2.0, seed=3))
    codes, (dep,) = tokens.codes[0], model.dependence_embeddings(tokens)
    assert model.config.mmd.streams == "lookup"
    assert dep.shape == (*codes.shape, model.config.codebook_dim)
    torch.testing.assert_close(dep.norm(dim=-1), torch.ones(codes.shape))
    layer = model.quantizer.layers[1]
    torch.testing.assert_close(dep[..., 1, :], torch.nn.functional.normalize(layer.codebook[codes[..., 1]], dim=-1))
    plain = rvq.encode(_music(1.0, seed=4))
    torch.testing.assert_close(rvq.dependence_embeddings(plain)[0], rvq.code_embeddings(plain)[0])
