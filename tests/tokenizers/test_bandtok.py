"""BandTok and the tokenizer contract, on a tiny randomly initialised model."""

import numpy as np
import pytest
import torch
from signals import music

from musictok.tokenizers.bandtok import BandTok, BandTokConfig
from musictok.tokenizers.base import Tokenizer, TokenizerError
from musictok.tokens import TokenFileError, Tokens

SR = 16000


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = BandTok(BandTokConfig.tiny(sample_rate=SR))
    # one training pass initialises the codebook (k-means) from real encoder outputs
    m.train()
    m.forward_train(_music(4.0, seed=1)[None])
    return m.eval()


def _music(seconds: float, seed: int = 0) -> torch.Tensor:
    return music(seconds, SR, seed)


def test_layout_and_shapes(model):
    lay = model.layout
    assert lay.streams[0].slot_axis == "band" and lay.streams[0].shared_codebook
    assert lay.streams[0].num_slots == 4 and lay.tokens_per_second == pytest.approx(4 * SR / 1024)
    wav = _music(3.0)
    tokens = model.encode(wav)
    assert tokens.codes[0].shape == (1, int(np.ceil(len(wav) / 1024)), 4)
    assert int(tokens.codes[0].max()) < 64
    out = model.decode(tokens)
    assert out.shape == (1, len(wav)) and torch.isfinite(out).all()


def test_default_layout_is_the_brief():
    m = BandTok(BandTokConfig.small())
    assert m.layout.streams[0].frame_rate == pytest.approx(23.4375)
    assert m.layout.tokens_per_second == pytest.approx(187.5)
    assert m.layout.bitrate == pytest.approx(1875.0)


def test_chunked_equals_whole_file(model):
    wav = _music(30.0, seed=3)  # 469 frames; chunks of 64 frames with 24 frames of context
    whole = model.encode(wav).codes[0]
    chunked = model.encode(wav, chunk_units=64).codes[0]
    assert torch.equal(whole, chunked)



def test_chunked_decoding_with_a_vocoder_equals_whole():
    """The decoder and the vocoder are local, so chunked decoding matches (Griffin-Lim is not local)."""
    from musictok.nn.vocoder import VocoderConfig
    from musictok.spectral import MelConfig

    voc = VocoderConfig.tiny(mel=MelConfig(sample_rate=SR, n_mels=32))
    torch.manual_seed(0)
    m = BandTok(BandTokConfig.tiny(sample_rate=SR, vocoder=voc.to_dict())).eval()
    tok = m.encode(_music(20.0, seed=3))
    a, b = m.decode(tok), m.decode(tok, chunk_units=64)
    assert a.shape == b.shape
    assert torch.allclose(a[:, :-2048], b[:, :-2048], atol=1e-5)


def test_batch_of_mixed_lengths_equals_one_by_one(model):
    clips = [_music(2.0, seed=4), _music(3.3, seed=5), _music(2.0, seed=6)]
    batch = model.encode(clips)
    assert batch.lengths == [len(c) for c in clips]
    for i, c in enumerate(clips):
        single = model.encode(c)
        assert torch.equal(batch.item(i).codes[0], single.codes[0])


def test_encode_leaves_training_state_alone(model):
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.encode(_music(2.0, seed=7))
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    model.eval()


def test_straight_through_gradients_reach_encoder():
    torch.manual_seed(0)
    m = BandTok(BandTokConfig.tiny(sample_rate=SR)).train()
    out = m.forward_train(_music(1.024, seed=8)[None])
    sum(out.losses.values()).backward()
    g = m.encoder.conv_in.weight.grad
    assert g is not None and float(g.abs().sum()) > 0


def test_save_load_identical_tokens(model, tmp_path):
    model.save_pretrained(tmp_path / "tok")
    loaded = Tokenizer.from_pretrained(tmp_path / "tok")
    assert isinstance(loaded, BandTok) and loaded.fingerprint() == model.fingerprint()
    wav = _music(2.5, seed=9)
    assert torch.equal(loaded.encode(wav).codes[0], model.encode(wav).codes[0])
    assert loaded.encode(wav).extra["tokenizer_source"] == str(tmp_path / "tok")


def test_fingerprint_mismatch_and_damage_are_refused(model, tmp_path):
    tokens = model.encode(_music(2.0))
    other = BandTok(BandTokConfig.tiny(sample_rate=SR, seed=1)).eval()
    with pytest.raises(TokenizerError, match="made by bandtok"):
        other.decode(tokens)
    p = tokens.save(tmp_path / "a.mtok")
    raw = bytearray(p.read_bytes())
    raw[-3] ^= 0x55
    (tmp_path / "bad.mtok").write_bytes(bytes(raw))
    with pytest.raises(TokenFileError, match="damaged"):
        Tokens.load(tmp_path / "bad.mtok")


def test_unknown_pretrained_name_lists_what_exists(tmp_path):
    with pytest.raises(TokenizerError, match="no such model folder"):
        Tokenizer.from_pretrained("no-such-tokenizer")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TokenizerError, match="not a saved model folder"):
        Tokenizer.from_pretrained(tmp_path / "empty")


def test_bad_audio_input(model):
    with pytest.raises(ValueError, match="NaN"):
        model.encode(torch.tensor([0.0, float("nan")] * 2000))
    with pytest.raises(ValueError, match="mono"):
        model.encode(torch.zeros(2, 2, 100))


def test_config_roundtrip_and_validation():
    cfg = BandTokConfig.small()
    assert BandTokConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="power of two"):
        BandTokConfig(bands=6)
    with pytest.raises(ValueError, match="unknown"):
        BandTokConfig.from_dict({"nope": 1})


def test_half_precision_storage_loads_with_its_fingerprint(model, tmp_path):
    model.save_pretrained(tmp_path / "half", storage_dtype=torch.float16)
    model.save_pretrained(tmp_path / "full")
    half = (tmp_path / "half" / "model.safetensors").stat().st_size
    assert half < 0.6 * (tmp_path / "full" / "model.safetensors").stat().st_size
    loaded = Tokenizer.from_pretrained(tmp_path / "half")
    assert next(loaded.parameters()).dtype == torch.float32
    tokens = loaded.encode(_music(2.0, seed=11))
    assert tokens.fingerprint == loaded.fingerprint()
    loaded.decode(tokens)  # its own tokens decode


def test_saving_over_a_folder_keeps_its_other_files(model, tmp_path):
    """A model card beside the weights survives a re-save (e.g. attaching a new vocoder)."""
    model.save_pretrained(tmp_path / "tok")
    (tmp_path / "tok" / "MODEL_CARD.md").write_text("# card\n")
    model.save_pretrained(tmp_path / "tok")
    assert (tmp_path / "tok" / "MODEL_CARD.md").read_text() == "# card\n"
    assert Tokenizer.from_pretrained(tmp_path / "tok").fingerprint() == model.fingerprint()


def test_damaged_weights_are_refused(model, tmp_path):
    from safetensors.torch import load_file, save_file

    model.save_pretrained(tmp_path / "tok")
    state = load_file(str(tmp_path / "tok" / "model.safetensors"))
    state["decoder.conv_out.bias"] = state["decoder.conv_out.bias"] + 1
    save_file(state, str(tmp_path / "tok" / "model.safetensors"))
    with pytest.raises(TokenizerError, match="damaged"):
        Tokenizer.from_pretrained(tmp_path / "tok")


def test_another_vocoder_decodes_the_same_tokens(model, tmp_path):
    """The fingerprint names the token space: attaching a vocoder keeps it, so tokens, LMs and token caches
    made before still fit; the vocoder's weights are still checked for damage when a folder loads."""
    from safetensors.torch import load_file, save_file

    from musictok.nn.vocoder import Vocoder, VocoderConfig
    from musictok.spectral import MelConfig
    from musictok.train.tokenizer import attach_vocoder

    mel = model.config.mel_config()
    voc_cfg = VocoderConfig.tiny(mel=MelConfig(sample_rate=SR, n_mels=mel.n_mels))
    torch.manual_seed(1)
    a = attach_vocoder(model, Vocoder(voc_cfg).eval())
    torch.manual_seed(2)
    b = attach_vocoder(model, Vocoder(voc_cfg).eval())
    assert a.fingerprint() == b.fingerprint() == model.fingerprint()
    tokens = model.encode(_music(2.0, seed=5))
    assert not torch.equal(a.decode(tokens), b.decode(tokens))  # both accept them, each with its own vocoder
    a.save_pretrained(tmp_path / "tok")
    assert Tokenizer.from_pretrained(tmp_path / "tok").fingerprint() == model.fingerprint()
    state = load_file(str(tmp_path / "tok" / "model.safetensors"))
    key = next(k for k in state if k.startswith("vocoder.") and state[k].is_floating_point())
    state[key] = state[key] + 1
    save_file(state, str(tmp_path / "tok" / "model.safetensors"))
    with pytest.raises(TokenizerError, match="damaged"):
        Tokenizer.from_pretrained(tmp_path / "tok")


def test_level_normalised_tokens_are_gain_invariant(model, tmp_path):
    leveled = BandTok(BandTokConfig.tiny(sample_rate=SR, level_dbfs=-20.0))
    leveled.load_state_dict(model.state_dict())
    leveled.eval()
    wav = _music(3.0, seed=4)
    a = leveled.encode(wav)
    b = leveled.encode(wav * 10 ** (-6 / 20))
    assert torch.equal(a.codes[0], b.codes[0])  # the level is removed before the Mel, not learned around
    assert b.scales[0] == pytest.approx(a.scales[0] * 10 ** (-6 / 20), rel=1e-6)
    # decoding puts the removed gain back: the decoded level follows the input's exactly
    da, db = leveled.decode(a), leveled.decode(b)
    assert torch.allclose(db, da * 10 ** (-6 / 20), atol=1e-6)
    # the scale travels in .mtok files and with single items
    path = b.save(tmp_path / "b.mtok")
    assert Tokens.load(path).scales == pytest.approx(b.scales)
    batch = leveled.encode([wav, 0.5 * wav[: len(wav) // 2]])
    assert batch.item(1).scales == [pytest.approx(batch.scales[1])]
    # digital silence keeps scale 1 (nothing to normalise) and the model without a level stores none
    assert leveled.encode(torch.zeros(SR)).scales == [1.0]
    assert model.encode(wav).scales is None


@pytest.mark.parametrize("config", [BandTokConfig.tiny(sample_rate=SR), BandTokConfig.small(seed=3)])
def test_inference_folds_the_linear_stem_into_one_conv(config):
    """Without gradients the encoder runs conv_in and the patchify stages as one strided conv: the same
    function (up to float rounding), so the codes match the training path's."""
    torch.manual_seed(0)
    m = BandTok(config).eval()
    for p in m.encoder.parameters():  # non-trivial biases, so a wrong bias fold would show
        p.data.add_(0.05 * torch.randn_like(p))
    mel = m.mel(_music(2.048, seed=11)[None] if config.sample_rate == SR else torch.randn(1, 24576) * 0.1)
    weight, _, stride = m.encoder.folded_stem()
    assert stride == (2 ** config.stem_stages,) * 2 and weight.shape[1] == 1
    trained = m.encoder(mel)  # grad enabled: the layer-by-layer stem
    with torch.no_grad():
        folded = m.encoder(mel)
    assert folded.shape == trained.shape
    torch.testing.assert_close(folded, trained.detach(), atol=2e-5, rtol=1e-4)
