"""The LM separator: the sequence it trains on is the one it generates, the switches do what they say,
best-of-N picks by consistency, training end to end through the run config."""

import dataclasses

import pytest
import torch

from musictok.lm.patterns import IGNORE_INDEX
from musictok.separation import LMSeparator, LMSeparatorConfig, Separator, SeparatorError
from musictok.tokenizers.bandtok import BandTok, BandTokConfig
from musictok.tokenizers.base import Tokenizer

from sep_helpers import SR


def _separator(tiny_tokenizer, **kw) -> LMSeparator:
    torch.manual_seed(0)
    return LMSeparator(LMSeparatorConfig.tiny(sample_rate=SR, **kw), Tokenizer.from_pretrained(tiny_tokenizer)).eval()


@pytest.mark.parametrize("mode,pattern", [("sequential", "delay"), ("independent", "delay"),
                                          ("sequential", "band-grid"), ("sequential", "parallel")])
def test_greedy_generation_is_the_argmax_of_teacher_forcing(tiny_tokenizer, mode, pattern):
    """Generating with the KV cache, step by step, walks the very sequence training scores: every greedy
    token is the argmax of the teacher-forced logits at its cell (prefix, stem embeddings, closing steps,
    positions and the independent batch layout all agree)."""
    sep = _separator(tiny_tokenizer, mode=mode, pattern=pattern)
    for p in sep.lm.parameters():  # sharper distributions than the init's, so argmax ties are impossible
        p.data.normal_(0, 0.2)
    cond = torch.randn(2, 6, sep.lm.config.n_embd)
    codes = sep.generate_codes(cond, temperature=0.0)
    assert codes.shape == (2, 4, 6, sep.layout.streams[0].num_slots)
    with torch.no_grad():
        inputs, targets, positions, embeds = sep.teacher_forcing(cond, codes)
        logits = sep.lm(inputs, positions, targets, embeds=embeds).logits
    p = sep.pattern(6)
    lo = torch.cat([torch.zeros_like(targets[:, :6]), *[torch.cat([p.target_ranges[:, :, 0], p.target_ranges[-1:, :, 0]])
                                                        .expand(targets.shape[0], -1, -1)] * (4 if mode == "sequential" else 1)], 1)
    hi = torch.cat([torch.zeros_like(targets[:, :6]) + 10**6, *[torch.cat([p.target_ranges[:, :, 1], p.target_ranges[-1:, :, 1]])
                                                                 .expand(targets.shape[0], -1, -1)] * (4 if mode == "sequential" else 1)], 1)
    vocab = torch.arange(logits.shape[-1])
    masked = logits.masked_fill((vocab < lo[..., None]) | (vocab >= hi[..., None]), float("-inf"))
    known = targets != IGNORE_INDEX
    assert known.sum() == codes.numel()
    assert torch.equal(masked.argmax(-1)[known], targets[known])


def test_sequential_stems_see_earlier_stems_independent_ones_do_not(tiny_tokenizer):
    for mode, sees in (("sequential", True), ("independent", False)):
        sep = _separator(tiny_tokenizer, mode=mode)
        cond = torch.randn(1, 5, sep.lm.config.n_embd)
        codes = torch.randint(0, 64, (1, 4, 5, 4))
        other = codes.clone()
        other[:, 0] = (other[:, 0] + 1) % 64  # change only the first stem's tokens
        with torch.no_grad():
            a, b = (sep.lm(inputs, positions, embeds=embeds).logits
                    for inputs, _, positions, embeds in (sep.teacher_forcing(cond, c) for c in (codes, other)))
        rows = sep._stem_rows(3, a.shape[0], 5)  # the last stem's segment
        assert (not torch.allclose(a[rows], b[rows])) == sees


def test_best_of_n_keeps_the_most_consistent_candidate(tiny_tokenizer):
    from musictok.metrics.separation import spectral_consistency

    sep = _separator(tiny_tokenizer)
    assert sep.tokenizer.phase_free  # BandTok makes its phase up: candidates are ranked by Mel consistency
    mix = torch.randn(2, 8 * sep.hop_samples) * 0.1
    best = sep.separate(mix, temperature=1.0, samples=3, seed=5)
    cond = sep.encode_mixture(mix).repeat_interleave(3, dim=0)
    g = torch.Generator().manual_seed(5)
    cands = sep.decode_codes(sep.generate_codes(cond, temperature=1.0, generator=g), mix.shape[-1])
    score = spectral_consistency(mix.repeat_interleave(3, dim=0), cands, SR).reshape(2, 3)
    pick = cands.reshape(2, 3, 4, -1)[torch.arange(2), score.argmin(1)]
    assert torch.allclose(best, pick, atol=1e-6)
    with pytest.raises(SeparatorError, match="greedy"):
        sep.separate(mix, samples=3)
    with pytest.raises(SeparatorError, match="unknown decoding options"):
        sep.separate(mix, beams=2)


def _tones(length: int, phase: float) -> torch.Tensor:
    """Four stems ``(1, 4, length)``: tones at 300, 700, 1500 and 3000 Hz, each starting at ``phase``."""
    t = torch.arange(length) / SR
    freqs = torch.tensor([300.0, 700.0, 1500.0, 3000.0])[:, None]
    return (0.1 * torch.sin(2 * torch.pi * freqs * t + phase))[None]


@pytest.mark.parametrize("phase_free", [True, False])
def test_best_of_n_ranks_made_up_phases_by_magnitude(tiny_tokenizer, monkeypatch, phase_free):
    """Two candidates for one mix of four tones: the true stems with their phases shifted by 90° (what a
    decoder that makes up its phase gives at best) and silence. In waveforms silence is the more consistent
    (‖0 − mix‖ / ‖mix‖ = 1 against ≈ √2); for a phase-free tokenizer the pick compares Mel magnitudes and
    keeps the tones, for a phase-aware one it keeps the waveform pick."""
    sep = _separator(tiny_tokenizer)
    monkeypatch.setattr(sep.tokenizer, "phase_free", phase_free)
    length = 2 * sep.hop_samples
    mix = _tones(length, 0.0).sum(1)
    shifted = _tones(length, torch.pi / 2)
    candidates = torch.cat([torch.zeros_like(shifted), shifted])  # (n = 2, S, T) for the one clip
    monkeypatch.setattr(sep, "decode_codes", lambda codes, length, scales=None: candidates)
    best = sep.separate(mix, temperature=1.0, samples=2)
    assert torch.equal(best, shifted if phase_free else torch.zeros_like(shifted))
    # a one-frame window is still ranked (the coarsest Mel resolution needs more samples than one frame)
    one = sep.hop_samples
    monkeypatch.setattr(sep, "decode_codes", lambda codes, length, scales=None: candidates[..., :one])
    assert torch.equal(sep.separate(mix[:, :one], temperature=1.0, samples=2), best[..., :one])


def test_switches(tiny_tokenizer):
    # a frozen encoder freezes the Conformer layers only: the input layer and the projection into the LM
    # stay a learnable adapter on the frozen features (a frozen random front would discard half of them)
    frozen = _separator(tiny_tokenizer, freeze_encoder=True, encoder_input="tokens")
    assert not any(p.requires_grad for p in frozen.conformer.parameters())
    assert not any(p.requires_grad for p in frozen.tokenizer.parameters())
    assert all(p.requires_grad for m in (frozen.front, frozen.cond_proj) for p in m.parameters())
    stems = torch.randn(2, 4, 6 * frozen.hop_samples) * 0.05
    frozen.train()
    losses = frozen(stems.sum(1), stems)
    losses["loss"].backward()
    assert set(losses) >= {"loss", "bits_per_token", "bits/vocals", "bits/other"}
    assert all(p.grad is None for p in frozen.conformer.parameters()) and frozen.cond_proj.weight.grad is not None
    assert frozen.front.weight.grad is not None and float(frozen.front.weight.grad.abs().sum()) > 0
    assert not frozen.tokenizer.training  # the frozen tokenizer stays in eval mode
    with torch.autocast("cpu", dtype=torch.bfloat16):  # targets do not depend on the trainer's autocast
        assert torch.equal(frozen.stem_codes(stems), frozen.eval().stem_codes(stems))
    # a tokenizer that normalises levels: stems keep their level within the mix in their tokens (see
    # test_stem_tokens_keep_each_stems_level_relative_to_the_mix), no gains are fitted unless asked
    level = BandTok(BandTokConfig.tiny(sample_rate=SR, level_dbfs=-20.0))
    assert not LMSeparator(LMSeparatorConfig.tiny(sample_rate=SR), level).fit_gains
    with pytest.raises(SeparatorError, match="max_steps"):
        _separator(tiny_tokenizer, window_seconds=30.0)
    with pytest.raises(SeparatorError, match="Hz"):
        LMSeparator(LMSeparatorConfig.tiny(), level)  # 24 kHz separator, 16 kHz tokenizer


def test_trained_separator_end_to_end(tiny_separators, tiny_tokenizer):
    sep = Separator.from_pretrained(tiny_separators["lm"])
    assert isinstance(sep, LMSeparator) and sep.stem_names == ["vocals", "drums", "bass", "other"]
    assert dataclasses.asdict(sep.tokenizer.config) == dataclasses.asdict(Tokenizer.from_pretrained(tiny_tokenizer).config)
    mix = torch.randn(1, int(2.3 * SR)) * 0.1  # longer than the 1 s window (16 frames = 8 kept + 2 × 4 context)
    windows = []
    out = sep.separate(mix, on_window=windows.append)
    units = -(-mix.shape[-1] // sep.hop_samples)
    assert sep.chunk_units == 8 and out.shape == (1, 4, mix.shape[-1]) and len(windows) == -(-units // 8)
    stems = torch.randn(1, 4, SR) * 0.05
    assert sep.tokenizer_ceiling(stems).shape == stems.shape


def _level_separator() -> LMSeparator:
    """A tiny separator over a tokenizer that normalises every input to -20 dBFS (as bandtok-small does)."""
    torch.manual_seed(3)
    tok = BandTok(BandTokConfig.tiny(sample_rate=SR, level_dbfs=-20.0))
    tok.train()
    tok.forward_train(torch.randn(2, 16384) * 0.1)  # moves the EMA codebook off its init
    return LMSeparator(LMSeparatorConfig.tiny(sample_rate=SR), tok.eval()).eval()


def test_stem_tokens_keep_each_stems_level_relative_to_the_mix():
    """With a level-normalising tokenizer the stems are scaled by their mix's level, not each by its own:
    the tokens still say how loud a stem is within the mix (a waveform fit cannot recover it later from
    a decoder that makes up its own phase), and only the mix's overall gain drops out."""
    sep = _level_separator()
    torch.manual_seed(4)
    stems = torch.randn(2, 4, 10 * sep.hop_samples) * torch.tensor([0.1, 0.03, 0.05, 0.02])[None, :, None]
    quiet = stems.clone()
    quiet[:, 1] *= 0.05  # the second stem 26 dB quieter in its mix
    codes = sep.stem_codes(stems)
    assert torch.equal(sep.stem_codes(4 * stems), codes)  # the mix's gain is not in the tokens
    assert not torch.equal(sep.stem_codes(quiet)[:, 1], codes[:, 1])  # a stem's level within the mix is


def test_true_tokens_give_the_tokenizer_ceiling_and_separation_follows_the_mix_gain():
    """An LM that wrote the true tokens would return exactly the tokenizer ceiling (same scale on the way in
    and out, no fitted gains), and separating a louder mix gives proportionally louder stems."""
    sep = _level_separator()
    torch.manual_seed(5)
    stems = torch.randn(2, 4, 12 * sep.hop_samples) * torch.tensor([0.1, 0.01, 0.05, 0.002])[None, :, None]
    mix = stems.sum(1)
    true_codes = sep.stem_codes(stems)
    generate = sep.generate_codes
    sep.generate_codes = lambda cond, **kw: true_codes  # an oracle LM
    try:
        est = sep.separate(mix)
    finally:
        sep.generate_codes = generate
    ceiling = sep.tokenizer_ceiling(stems)
    assert torch.allclose(est, ceiling, rtol=1e-5, atol=1e-7)
    assert torch.allclose(sep.separate(4 * mix), 4 * sep.separate(mix), rtol=1e-5, atol=1e-7)
