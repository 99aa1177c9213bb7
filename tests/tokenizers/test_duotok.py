"""DuoTok on a tiny randomly initialised model: layout, stems and mixes, the stage mechanics' invariants."""

import math

import pytest
import torch
from signals import music

from musictok.tokenizers.base import Tokenizer
from musictok.tokenizers.duotok import (
    BestRQ,
    BestRQTargets,
    DuoTok,
    DuoTokConfig,
    HeadWeights,
    chroma_filterbank,
    feature_replacement_noise,
    ideal_ratio_mask,
    span_mask,
)
from musictok.tokens import Tokens

SR = 16000


@pytest.fixture(scope="module")
def model():
    return DuoTok(DuoTokConfig.tiny(sample_rate=SR)).eval()


def _stems(seconds: float, seed: int = 0) -> torch.Tensor:
    return torch.stack([music(seconds, SR, seed), 0.5 * music(seconds, SR, seed + 100)])


def test_layout_is_two_tracks_at_the_stated_bitrate():
    m = DuoTok(DuoTokConfig.small())
    lay = m.layout
    assert [s.name for s in lay.streams] == ["lead", "accompaniment"]
    assert all(s.slot_axis == "track" and s.num_slots == 1 for s in lay.streams)
    assert lay.streams[0].frame_rate == pytest.approx(23.4375)
    assert lay.streams[0].bitrate == pytest.approx(23.4375 * 15)  # 351.6 bit/s per track
    assert lay.bitrate == pytest.approx(703.125)  # both tracks: 0.703 kbps
    assert DuoTok(DuoTokConfig.small(codebook_size=65536)).layout.bitrate == pytest.approx(750.0)


def test_stems_in_stems_out(model):
    x = torch.stack([_stems(2.0, 0), _stems(2.0, 1)])  # (B, 2, T)
    tokens = model.encode(x)
    frames = math.ceil(x.shape[-1] / model.hop_samples)
    assert [tuple(c.shape) for c in tokens.codes] == [(2, frames, 1)] * 2
    assert all(int(c.max()) < 64 for c in tokens.codes)
    y = model.decode(tokens)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_a_mix_is_separated_then_encoded(model):
    stems = _stems(2.0)
    mix = stems.sum(0)
    parts = model.separate(mix[None, : 2 * model.hop_samples * 15])
    assert parts.shape == (1, 2, 2 * model.hop_samples * 15)
    assert torch.allclose(parts.sum(1), mix[None, : parts.shape[-1]], atol=1e-4)  # the masks split the mix
    tokens = model.encode(mix)  # (T,) mono: a mix
    assert [s.name for s in tokens.layout.streams] == ["lead", "accompaniment"]
    assert tokens.codes[0].shape == tokens.codes[1].shape
    h = model.encode_features(model.separate(torch.nn.functional.pad(mix, (0, -len(mix) % 1024))[None]))
    assert torch.equal(tokens.codes[0][0, :, 0], model.quantizers[0].encode(h[0, 0]))
    assert model.decode(tokens).shape == (1, 2, len(mix))


def test_routing_sends_each_track_to_its_codebook_only(model):
    stems = _stems(1.0)[None]
    h = model.encode_features(torch.nn.functional.pad(stems, (0, -stems.shape[-1] % 1024)))
    tokens = model.encode(stems)
    for k in range(2):
        assert torch.equal(tokens.codes[k][0, :, 0], model.quantizers[k].encode(h[0, k]))
    # in training, each codebook sees exactly the features of its own track, once
    seen = {0: [], 1: []}
    hooks = [q.vq.register_forward_hook(lambda mod, inp, out, k=k: seen[k].append(inp[0].detach()))
             for k, q in enumerate(model.quantizers)]
    try:
        model.train()
        model.stage3_losses({"stems": stems}, HeadWeights(mss=0.0, symbolic=0.0))
    finally:
        model.eval()
        for hk in hooks:
            hk.remove()
    for k in range(2):
        assert len(seen[k]) == 1
        assert torch.allclose(seen[k][0], model.quantizers[k].project_in(h[:, k]), atol=1e-5)
    # and each stream decodes through its own codebook: changing B leaves the lead's Mel untouched
    other = DuoTok(model.config)
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        other.quantizers[1].vq.transform.weight.mul_(2.0)
    a, b = model.decode_mel(tokens.codes), other.decode_mel(tokens.codes)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])


def test_chunked_encoding_equals_whole_file(model):
    stems = _stems(12.0, seed=3)
    whole = model.encode(stems)
    chunked = model.encode(stems, chunk_units=40)  # 188 frames in chunks of 40 with 28 frames of context
    for a, b in zip(whole.codes, chunked.codes):
        assert torch.equal(a, b)
    mix = stems.sum(0)
    for a, b in zip(model.encode(mix).codes, model.encode(mix, chunk_units=40).codes):
        assert torch.equal(a, b)


def test_mixed_lengths_batch_like_one_by_one(model):
    clips = [_stems(1.3, 5), _stems(0.7, 6)]
    together = model.encode(clips)
    for i, c in enumerate(clips):
        alone = model.encode(c[None])
        for s in range(2):
            assert torch.equal(together.item(i).codes[s], alone.codes[s])


def test_save_load_and_token_file_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path / "duo")
    loaded = Tokenizer.from_pretrained(tmp_path / "duo")
    assert isinstance(loaded, DuoTok)
    x = _stems(1.0)[None]
    tokens = loaded.encode(x)
    assert all(torch.equal(a, b) for a, b in zip(tokens.codes, model.encode(x).codes))
    tokens.save(tmp_path / "clip.mtok")
    back = Tokens.load(tmp_path / "clip.mtok")
    assert torch.allclose(loaded.decode(back), loaded.decode(tokens))


def test_decoding_uses_the_decoders_once_stage_4_trained_them(model):
    tokens = model.encode(_stems(0.5)[None])
    heads = model.decode_mel(tokens.codes, via="heads")
    dec = model.decode_mel(tokens.codes, via="decoder")
    assert not torch.equal(heads[0], dec[0])
    assert torch.equal(model.decode_mel(tokens.codes)[0], heads[0])  # trained_stage 0: the Mel head
    staged = DuoTok(DuoTokConfig.tiny(sample_rate=SR, trained_stage=4))
    staged.load_state_dict(model.state_dict())
    assert torch.equal(staged.decode_mel(tokens.codes)[0], dec[0])
    with pytest.raises(TypeError, match="via"):
        model.decode_mel(tokens.codes, via="nope")


# ------------------------------------------------------------------------------------------- stage 1
def test_best_rq_targets_are_deterministic_and_frozen():
    cfg = DuoTokConfig.tiny(sample_rate=SR)
    a, b = BestRQTargets(32, 4, 16, 32, 2, seed=5), BestRQTargets(32, 4, 16, 32, 2, seed=5)
    assert not list(a.parameters())  # buffers only: no optimizer can move them
    mel = torch.randn(3, 32, 40)
    ta = a(mel)
    assert ta.shape == (3, 10, 2) and ta.dtype == torch.long
    assert torch.equal(ta, b(mel)) and torch.equal(ta, a(mel))
    assert not torch.equal(ta, BestRQTargets(32, 4, 16, 32, 2, seed=6)(mel))
    # a batch gives each clip the targets it gets alone
    assert torch.equal(a(mel[1:2]), ta[1:2])
    # a training step moves the encoder and the head, never the targets
    model, ssl = DuoTok(cfg), BestRQ(cfg, codebook_size=32, mask_prob=0.3, mask_span=2)
    before = {k: v.clone() for k, v in ssl.targets.state_dict().items()}
    t_before = ssl.targets(mel)
    params = list(model.encoder.parameters()) + list(ssl.parameters())
    opt = torch.optim.AdamW(params, lr=1e-2)
    loss, stats = ssl.loss(model.encoder, mel)
    loss.backward()
    opt.step()
    assert 0 < stats["masked_share"] <= 1
    assert all(torch.equal(before[k], v) for k, v in ssl.targets.state_dict().items())
    assert torch.equal(ssl.targets(mel), t_before)
    assert ssl.head[1].weight.grad is not None


def test_span_mask_spans():
    g = torch.Generator().manual_seed(0)
    m = span_mask(200, 100, 0.05, 4, g)
    expected = 1 - (1 - 0.05) ** 4  # a frame is masked unless none of the 4 frames before it started a span
    assert abs(float(m[:, 10:].float().mean()) - expected) < 0.01
    one = span_mask(1, 10, 1.0, 3)
    assert one.all()


# ------------------------------------------------------------------------------------------- stage 2
@pytest.mark.parametrize("p", [0.1, 0.3, 0.7])
def test_feature_replacement_noise_hits_the_requested_share(p):
    g = torch.Generator().manual_seed(1)
    h = torch.randn(64, 500, 8, generator=g) * 3.0 + 2.0
    noisy, mask = feature_replacement_noise(h, p, generator=g)
    share = float(mask.float().mean())
    assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / mask.numel())
    assert torch.equal(noisy[~mask], h[~mask])  # kept steps are untouched
    replaced = noisy[mask]
    assert not torch.isclose(replaced, h[mask]).all(-1).any()
    # replacements carry the features' statistics (within 5 standard errors)
    n = replaced.shape[0]
    assert torch.allclose(replaced.mean(0), h.reshape(-1, 8).mean(0), atol=5 * 3.0 / math.sqrt(n))
    assert torch.allclose(replaced.std(0), h.reshape(-1, 8).std(0), rtol=5 / math.sqrt(2 * n))
    assert torch.equal(feature_replacement_noise(h, 0.0)[0], h)
    with pytest.raises(ValueError):
        feature_replacement_noise(h, 1.5)


def test_chroma_and_ideal_masks(model):
    t = torch.arange(SR) / SR
    a440 = 0.5 * torch.sin(2 * math.pi * 440.0 * t)
    chroma = model.chroma(a440[None, : 15 * 1024])
    assert chroma.shape == (1, 15, 12)
    assert int(chroma[0, 5].argmax()) == 9  # A
    fb = chroma_filterbank(SR, 1024, 27.5, 4200.0)
    assert fb.shape == (12, 513) and set(fb.sum(0).unique().tolist()) <= {0.0, 1.0}
    lead, acc = a440[: 15 * 1024], torch.zeros(15 * 1024)
    m = model.ideal_masks(torch.stack([lead, acc])[None])
    assert m.shape == (1, 513, 60)
    assert float(m[0, 28, 10]) > 0.99  # 440 Hz = bin 27.5 at 16 kHz / 1024
    assert float(m[0, 400, 10]) == pytest.approx(0.5, abs=0.05)  # silent in both: half each
    assert torch.equal(ideal_ratio_mask(torch.ones(2), torch.ones(2)), torch.full((2,), 0.5))


def test_stage_losses_are_finite_and_heads_switch_off(model):
    B = 2
    stems = torch.stack([_stems(0.96, 0), _stems(0.96, 1)])[..., : 15 * 1024]
    batch = {"mix": stems.sum(1), "stems": stems, "view": torch.tensor([0, 2]),
             "roll": torch.zeros(B, 2, 88, 60), "onset": torch.zeros(B, 2, 88, 60)}
    batch["roll"][:, :, 40, 10:30] = 1
    model.train()
    out2 = model.stage2_losses(batch, HeadWeights(), noise=0.3)
    assert set(out2.losses) == {"mel", "chroma", "mss", "symbolic"}
    assert set(model.stage2_losses(batch, HeadWeights(mss=0.0, symbolic=0.0)).losses) == {"mel", "chroma"}
    out3 = model.stage3_losses(batch, HeadWeights(mss=0.0))
    assert {"mel", "chroma", "symbolic", "vq_commitment", "vq_codebook"} <= set(out3.losses)
    assert "mss" not in out3.losses and {"utilization/lead", "utilization/accompaniment"} <= set(out3.stats)
    out4 = model.stage4_losses(batch)
    assert set(out4.losses) == {"mel_l1/lead", "mel_l2/lead", "mel_l1/accompaniment", "mel_l2/accompaniment"}
    assert out4.mel_hats[0].shape == out4.mels[0].shape == (B, 32, 60)
    for out in (out2, out3, out4):
        assert all(torch.isfinite(v) for v in out.losses.values())
    model.eval()


def test_symbolic_positive_weight_scales_only_the_notes(model):
    """The positive-class weight multiplies the BCE of the cells where a note is, and only those: with no note
    in the batch it changes nothing, with notes everywhere it scales the loss by the weight, and a weight on
    onsets does nothing where no onset is."""
    stems = torch.stack([_stems(0.96, 0), _stems(0.96, 1)])[..., : 15 * 1024]
    base = {"mix": stems.sum(1), "stems": stems, "view": torch.tensor([0, 0])}

    def loss(roll: float, onset: float, w: list | None) -> float:
        batch = base | {"roll": torch.full((2, 2, 88, 60), roll), "onset": torch.full((2, 2, 88, 60), onset)}
        pos = None if w is None else torch.tensor([w, w], dtype=torch.float32)  # (track, roll/onset)
        with torch.no_grad():
            return float(model.stage2_losses(batch, HeadWeights(symbolic_pos_weight=pos)).losses["symbolic"])

    assert loss(0, 0, [3.0, 5.0]) == loss(0, 0, None)  # no positives: nothing to weigh
    assert loss(1, 1, [4.0, 4.0]) == pytest.approx(4 * loss(1, 1, None), rel=1e-6)
    assert loss(1, 0, [1.0, 5.0]) == pytest.approx(loss(1, 0, None), rel=1e-6)  # no onset in the batch
    # linear in the roll's weight: L(3) - L(1) = 2 (L(2) - L(1))
    l1, l2, l3 = (loss(1, 0, [w, 1.0]) for w in (1.0, 2.0, 3.0))
    assert l3 - l1 == pytest.approx(2 * (l2 - l1), rel=1e-5) and l2 > l1


def test_flow_matching_decoder_learns_and_decodes_reproducibly():
    torch.manual_seed(0)
    m = DuoTok(DuoTokConfig.tiny(sample_rate=SR, decoder="flow", flow_steps=4))
    stems = torch.stack([_stems(0.96, 0), _stems(0.96, 1)])[..., : 15 * 1024]
    params = [p for d in m.decoders for p in d.parameters()]
    opt = torch.optim.AdamW(params, lr=3e-3)
    losses = []
    for _ in range(40):
        out = m.stage4_losses({"stems": stems})
        assert set(out.losses) == {"flow/lead", "flow/accompaniment"}
        loss = sum(out.losses.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5])
    with torch.no_grad():
        val = m.stage4_losses({"stems": stems})
    assert {"mel_l1/lead", "mel_l1/accompaniment"} <= set(val.losses)
    tokens = m.encode(stems)
    a, b = m.decode_mel(tokens.codes, via="decoder"), m.decode_mel(tokens.codes, via="decoder")
    assert a[0].shape == (2, 32, 60) and torch.equal(a[0], b[0])  # noise from the model's seed
    with pytest.raises(ValueError, match="decoder"):
        DuoTokConfig.tiny(decoder="diffusion")


def test_targets_and_codes_do_not_depend_on_mixed_precision():
    """The trainers run their passes under bf16 autocast: BEST-RQ's nearest-codeword rule and the SimVQ
    search (stage 4 encodes with ``TrackQuantizer.encode``) must still pick what they pick in fp32, or
    training sees other targets / codes than inference does."""
    g = torch.Generator().manual_seed(0)
    mel = torch.randn(8, 64, 400, generator=g)
    rq = BestRQTargets(64, 4, 16, 8192, seed=3)
    q = DuoTok(DuoTokConfig.tiny(sample_rate=SR, codebook_size=4096, codebook_dim=16)).quantizers[0]
    h = torch.randn(8, 100, 32, generator=g)
    fp32 = rq(mel), q.encode(h), q.embed(torch.arange(4096)[None])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = rq(mel), q.encode(h), q.embed(torch.arange(4096)[None])
    assert torch.equal(fp32[0], amp[0])
    assert torch.equal(fp32[1], amp[1])
    assert amp[2].dtype == torch.float32 and torch.equal(fp32[2], amp[2])


def test_best_rq_normalises_each_mel_bin_by_its_statistics():
    """BEST-RQ normalises every input feature by its own mean and std before the random projection; with
    a fixed global affine only, the bins' offsets dominate the projection and the targets crowd into few
    codes. Statistics fitted on the data make the targets blind to a per-bin affine change of the input."""
    g = torch.Generator().manual_seed(0)
    mel = torch.randn(4, 32, 200, generator=g)
    shifted = mel * torch.linspace(0.5, 2.0, 32)[:, None] + torch.linspace(-3.0, 1.0, 32)[:, None]
    a, b = BestRQTargets(32, 4, 16, 256, seed=1), BestRQTargets(32, 4, 16, 256, seed=1)
    a.fit_normalisation(mel)
    b.fit_normalisation(shifted)
    assert torch.equal(a(mel), b(shifted))
    assert not list(b.parameters())  # the statistics are buffers, saved with the module, never trained
    assert {"feature_mean", "feature_std"} <= set(b.state_dict())
