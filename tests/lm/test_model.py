"""TokenLM and sampling: causality, KV-cache equivalence, overfitting, sampling filters, configs."""

import pytest
import torch

from musictok.lm import (
    IGNORE_INDEX,
    TokenLM,
    TokenLMConfig,
    filter_logits,
    make_pattern,
    sample,
)
from musictok.tokens import StreamSpec, TokenLayout

RVQ = TokenLayout((StreamSpec("rvq", 50.0, (8, 16, 8), slot_axis="residual"),))
BANDS = TokenLayout((StreamSpec("bands", 23.4375, (12,) * 4, slot_axis="band", shared_codebook=True),))


def tiny(rope: str = "1d", **overrides) -> TokenLMConfig:
    return TokenLMConfig.preset("tiny", rope=rope, n_embd=32, max_steps=128, **overrides)


def random_codes(layout: TokenLayout, frames: int, batch: int = 2, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.stack([torch.randint(0, k, (batch, frames), generator=g) for k in s.codebook_sizes], dim=-1)
            for s in layout.streams]


def model_for(pattern, rope: str, seed: int = 0, **overrides) -> TokenLM:
    torch.manual_seed(seed)
    return TokenLM.from_pattern(tiny(rope, **overrides), pattern).eval()


CASES = [("delay", RVQ, "1d"), ("flatten", RVQ, "1d"), ("band-grid", BANDS, "2d"), ("parallel", BANDS, "1d")]


@pytest.mark.parametrize("name,layout,rope", CASES)
def test_a_future_input_never_changes_earlier_logits(name, layout, rope):
    p = make_pattern(name, layout, 5)
    model = model_for(p, rope)
    inputs, _, positions = p.build(random_codes(layout, 5))
    t0 = p.num_steps // 2
    changed = inputs.clone()
    changed[:, t0:] = (changed[:, t0:] + 1) % p.vocab.input_vocab_size
    with torch.no_grad():
        a, b = model(inputs, positions).logits, model(changed, positions).logits
    torch.testing.assert_close(a[:, :t0], b[:, :t0], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, t0:], b[:, t0:])


@pytest.mark.parametrize("name,layout,rope", CASES)
def test_greedy_generation_is_the_same_with_and_without_the_kv_cache(name, layout, rope):
    p = make_pattern(name, layout, 4)
    model = model_for(p, rope, seed=1)
    with_cache = model.generate(p, 2, temperature=0.0, use_cache=True)
    without = model.generate(p, 2, temperature=0.0, use_cache=False)
    assert torch.equal(with_cache, without)
    assert torch.equal(with_cache == IGNORE_INDEX, (p.cells < 0).expand_as(with_cache))
    codes = p.revert(with_cache)  # every sampled id lies in its cell's codebook
    assert [c.shape for c in codes] == [(2, 4, s.num_slots) for s in layout.streams]


def test_chunked_forward_with_a_cache_equals_one_full_forward():
    p = make_pattern("band-grid", BANDS, 3)
    model = model_for(p, "2d")
    inputs, _, positions = p.build(random_codes(BANDS, 3))
    with torch.no_grad():
        full = model(inputs, positions).logits
        cache = model.new_cache(p.num_steps)
        parts, t = [], 0
        for n in (3, 1, 5, p.num_steps - 9):  # first chunk square, then one step, then rectangular masks
            parts.append(model(inputs[:, t: t + n], positions[t: t + n], cache=cache).logits)
            t += n
    assert cache.length == p.num_steps
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-5)


def test_prefix_is_kept_and_continued():
    p = make_pattern("delay", RVQ, 4)
    model = model_for(p, "1d")
    targets = p.build(random_codes(RVQ, 4)).targets
    out = model.generate(p, prefix=targets[:, :3], temperature=0.0)
    assert torch.equal(out[:, :3], targets[:, :3])
    # the continuation is the greedy one given the prefix: check the first generated step by hand
    inputs, _, positions = p.build(p.revert(out))
    with torch.no_grad():
        logits = model(inputs[:, :4], positions[:4]).logits[:, 3]
    ranges = p.target_ranges[3]
    vocab = torch.arange(logits.shape[-1])
    logits = logits.masked_fill((vocab < ranges[:, :1]) | (vocab >= ranges[:, 1:]), float("-inf"))
    valid = p.cells[3] >= 0
    assert torch.equal(out[:, 3][:, valid], logits.argmax(-1)[:, valid])


def test_a_tiny_model_overfits_a_tiny_token_set():
    p = make_pattern("delay", RVQ, 12)
    inputs, targets, positions = p.build(random_codes(RVQ, 12, batch=1, seed=3))
    torch.manual_seed(0)
    model = TokenLM.from_pattern(TokenLMConfig.preset("tiny", max_steps=64), p)
    opt = torch.optim.AdamW(model.optimizer_groups(0.0), lr=1e-2)
    for _ in range(200):
        loss = model(inputs, positions, targets).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        out = model(inputs, positions, targets)
    assert out.loss.item() < 0.1
    nll = out.per_token_nll
    assert nll.shape == targets.shape and bool((nll[targets == IGNORE_INDEX] == 0).all())
    assert out.loss.item() == pytest.approx(nll.sum().item() / int((targets != IGNORE_INDEX).sum()), rel=1e-5)
    # the memorised sequence is what greedy decoding reproduces
    assert torch.equal(p.revert(model.generate(p, temperature=0.0))[0], p.revert(targets)[0])


def test_shared_vocabulary_tied_heads_and_bf16_autocast():
    p = make_pattern("parallel", BANDS, 3)
    assert p.shared_vocab
    model = model_for(p, "1d", tie_embeddings=True)
    assert len(model.embeddings) == 1 and model.heads is None and model.column_gain is not None
    inputs, targets, positions = p.build(random_codes(BANDS, 3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(inputs, positions, targets)
    assert out.logits.dtype == torch.float32 and torch.isfinite(out.loss)
    out.loss.backward()
    assert model.embeddings[0].weight.grad is not None


def test_logits_beyond_a_columns_vocabulary_are_minus_infinity():
    p = make_pattern("parallel", RVQ, 2)
    model = model_for(p, "1d")
    inputs, _, positions = p.build(random_codes(RVQ, 2))
    logits = model(inputs, positions).logits
    assert logits.shape == (2, 2, 3, 16)
    assert bool(torch.isneginf(logits[:, :, 0, 8:]).all()) and bool(torch.isfinite(logits[:, :, 1]).all())


def test_configs_presets_and_user_errors():
    for name in ("tiny", "small", "base"):
        cfg = TokenLMConfig.preset(name)
        assert TokenLMConfig.from_dict(cfg.to_dict()) == cfg
    assert TokenLMConfig.preset("tiny").hidden_dim == 192
    with pytest.raises(ValueError, match="choose one of"):
        TokenLMConfig.preset("huge")
    with pytest.raises(ValueError, match="divisible by 4"):
        TokenLMConfig(n_embd=12, n_head=2, rope="2d")
    p = make_pattern("band-grid", BANDS, 2)
    with pytest.raises(ValueError, match="rope='2d'"):
        TokenLM.from_pattern(tiny("1d"), p)
    model = model_for(p, "2d")
    inputs, _, positions = p.build(random_codes(BANDS, 2))
    with pytest.raises(ValueError, match="positions"):
        model(inputs, positions[:, :1])
    with pytest.raises(ValueError, match="SequencePattern.build"):
        model(inputs + 100, positions)
    with pytest.raises(ValueError, match="max_steps"):
        model.new_cache(1000)
    with pytest.raises(ValueError, match="vocabulary"):
        model.generate(make_pattern("flatten", RVQ, 2))


# ------------------------------------------------------------------------------------------------ sampling
def test_top_k_one_is_argmax_and_temperature_zero_is_greedy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 10, generator=g)
    assert torch.equal(sample(logits, temperature=1.3, top_k=1, generator=g), logits.argmax(-1))
    assert torch.equal(sample(logits, temperature=0.0), logits.argmax(-1))


def test_top_p_keeps_the_smallest_set_with_enough_mass():
    probs = torch.tensor([0.05, 0.5, 0.3, 0.15])
    logits = probs.log()
    kept = lambda p: torch.isfinite(filter_logits(logits, top_p=p)).tolist()
    assert kept(0.5) == [False, True, False, False]  # 0.5 alone reaches 0.5
    assert kept(0.6) == [False, True, True, False]  # 0.5 + 0.3
    assert kept(0.79) == [False, True, True, False]
    assert kept(0.81) == [False, True, True, True]
    assert kept(1.0) == [True] * 4
    assert kept(0.01) == [False, True, False, False]  # the most probable entry always stays
    # sampling never leaves the nucleus, and a generator makes it reproducible
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = sample(logits.expand(500, 4), top_p=0.6, generator=g1)
    assert set(a.tolist()) == {1, 2}
    assert torch.equal(a, sample(logits.expand(500, 4), top_p=0.6, generator=g2))


def test_top_k_and_top_p_compose_and_validate():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    assert torch.isfinite(filter_logits(logits, top_k=3, top_p=1.0)).tolist() == [[True, True, True, False]]
    with pytest.raises(ValueError, match="top_k"):
        filter_logits(logits, top_k=0)
    with pytest.raises(ValueError, match="top_p"):
        filter_logits(logits, top_p=1.5)
    with pytest.raises(ValueError, match="temperature"):
        sample(logits, temperature=-1.0)


def test_padded_causal_attention_is_exact(monkeypatch):
    """Training windows padded to whole attention blocks (752 -> 768 steps) give the logits and gradients
    of the unpadded sequence: the padded steps come after every real one."""
    import musictok.lm.model as lm_model

    assert [lm_model.causal_padding(n) for n in (100, 256, 300, 752, 760, 768, 1000)] == [0, 0, 0, 16, 8, 0, 24]
    p = make_pattern("band-grid", BANDS, 188)  # 752 steps
    torch.manual_seed(0)
    model = TokenLM.from_pattern(TokenLMConfig.preset("tiny", rope="2d", n_embd=32, max_steps=752), p)
    inputs, targets, positions = p.build(random_codes(BANDS, 188, batch=1))

    def run():
        model.zero_grad()
        out = model(inputs, positions, targets)
        out.loss.backward()
        return out.logits.detach(), [q.grad.clone() for q in model.parameters()]

    padded = run()
    monkeypatch.setattr(lm_model, "causal_padding", lambda steps: 0)
    plain = run()
    torch.testing.assert_close(padded[0], plain[0], rtol=1e-5, atol=1e-5)
    for a, b in zip(padded[1], plain[1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name,layout,rope", CASES)
def test_without_logits_the_loss_nll_and_gradients_are_the_same(name, layout, rope):
    p = make_pattern(name, layout, 6)
    model = model_for(p, rope)
    inputs, targets, positions = p.build(random_codes(layout, 6))
    targets = targets.clone()
    targets[:, :3] = IGNORE_INDEX  # an unscored context: its steps need no head
    full = model(inputs, positions, targets)
    full.loss.backward()
    grads = [q.grad.clone() for q in model.parameters()]
    model.zero_grad()
    lean = model(inputs, positions, targets, keep_logits=False)
    lean.loss.backward()
    assert lean.logits is None
    assert torch.allclose(lean.loss, full.loss, atol=1e-6) and torch.allclose(lean.per_token_nll, full.per_token_nll, atol=1e-5)
    assert all(torch.allclose(q.grad, g, atol=1e-6) for q, g in zip(model.parameters(), grads))
