"""ResidualVQ: coarse-to-fine error, prefix decoding, per-level streams, quantizer dropout."""

from __future__ import annotations

import copy

import pytest
import torch

from musictok.quantize import ResidualVQ, RVQConfig, VQConfig


def _fitted_rvq(levels: int = 4, dropout: float = 0.0, **options) -> tuple[ResidualVQ, torch.Tensor]:
    """An RVQ whose levels were k-means-initialised on the residuals of one training batch."""
    quantizer = VQConfig(dim=8, codebook_size=32, **options)
    config = RVQConfig(quantizer, num_quantizers=levels, quantizer_dropout=dropout)
    rvq = ResidualVQ(config).train()
    x = torch.randn(4, 128, 8, generator=torch.Generator().manual_seed(0))
    rvq(x)
    return rvq.eval(), x


def test_more_levels_lower_error() -> None:
    rvq, x = _fitted_rvq(levels=4)
    errors = [(rvq(x, n_quantizers=n).z_q - x).pow(2).mean().item() for n in range(1, 5)]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.5 * errors[0]
    assert errors[0] < x.pow(2).mean().item()  # even one level beats the zero vector


def test_decode_with_fewer_levels() -> None:
    rvq, x = _fitted_rvq(levels=4)
    codes = rvq.encode(x)
    assert codes.shape == (4, 128, 4) and codes.dtype == torch.long
    assert torch.equal(rvq.encode(x, n_quantizers=2), codes[..., :2])  # prefixes agree
    for n in (1, 2, 4):
        expected = rvq(x, n_quantizers=n).z_q
        torch.testing.assert_close(rvq.decode(codes[..., :n]), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="L'"):
        rvq.decode(torch.zeros(3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="n_quantizers"):
        rvq(x, n_quantizers=5)


def test_levels_are_exposed() -> None:
    rvq, x = _fitted_rvq(levels=3)
    result = rvq(x)
    assert result.levels is not None
    assert result.levels.shape == (4, 128, 3, 8)
    assert result.codes.shape == (4, 128, 3)
    torch.testing.assert_close(result.levels.sum(-2), result.z_q)
    for i in range(3):
        torch.testing.assert_close(result.levels[..., i, :], rvq.layers[i].decode(result.codes[..., i]))
    assert result.stats["perplexity"].shape == (3,) and result.stats["utilization"].shape == (3,)


def test_residual_streams_are_what_each_level_quantizes() -> None:
    rvq, x = _fitted_rvq(levels=4, dropout=0.5, codebook_dim=4)
    rvq.train()  # no dropout and no codebook update in the streams, even in training mode
    before = copy.deepcopy(rvq.state_dict())
    x = x.clone().requires_grad_()
    inputs = rvq.residual_streams(x)
    remainders = rvq.residual_streams(x, remainders=True)
    assert inputs.shape == remainders.shape == (4, 128, 4, 8)
    assert all(torch.equal(before[k], v) for k, v in rvq.state_dict().items())
    rvq.eval()
    levels = rvq(x.detach()).levels
    torch.testing.assert_close(inputs[..., 0, :], x.detach())  # r_1 = x
    torch.testing.assert_close(inputs[..., :-1, :] - inputs[..., 1:, :], levels[..., :-1, :].detach())
    torch.testing.assert_close(remainders[..., :-1, :], inputs[..., 1:, :])  # AudioCraft's: x - sum_{j<=k} q_j
    torch.testing.assert_close(remainders[..., -1, :], x.detach() - levels.sum(-2))
    codes = rvq.encode(x.detach())  # the code of level k is the nearest codeword to r_k
    for k, layer in enumerate(rvq.layers):
        assert torch.equal(layer.encode(inputs[..., k, :].detach()), codes[..., k])
    (g,) = torch.autograd.grad(inputs[..., 3, :].sum(), x)  # the quantized vectors are detached
    torch.testing.assert_close(g, torch.ones_like(x))


def test_straight_through_gradient_is_identity() -> None:
    rvq, x = _fitted_rvq(levels=3)
    rvq.train()
    x = x.clone().requires_grad_(True)
    result = rvq(x)
    weight = torch.randn(result.z_q.shape, generator=torch.Generator().manual_seed(2))
    (result.z_q * weight).sum().backward()
    torch.testing.assert_close(x.grad, weight)


def test_quantizer_dropout_only_in_training() -> None:
    rvq, x = _fitted_rvq(levels=4, dropout=1.0)
    rvq.train()
    x = torch.randn(16, 10, 8, generator=torch.Generator().manual_seed(5))
    before = copy.deepcopy(rvq)  # training updates the codebooks after quantizing
    train = rvq(x)
    assert train.codes.shape == (16, 10, 4)
    active = (train.levels.abs().sum(-1) > 0).sum(-1)  # (B, N) levels used per vector
    assert (active == active[:, :1]).all()  # a whole item shares one prefix
    assert active.float().mean().item() < 4
    assert len(set(active[:, 0].tolist())) > 1  # items draw different prefixes
    torch.testing.assert_close(train.stats["active_levels"], active.float().mean())
    # Dropped levels contribute nothing: z_q is the sum of the kept prefix.
    for b in range(16):
        kept = int(active[b, 0])
        expected = before.decode(train.codes[b, :, :kept])
        torch.testing.assert_close(train.z_q[b], expected, atol=1e-5, rtol=1e-5)

    rvq.eval()
    evaluated = rvq(x)
    assert evaluated.stats["active_levels"].item() == 4.0
    assert (evaluated.levels.abs().sum(-1) > 0).all()
    # An explicit number of levels overrides dropout in training too.
    rvq.train()
    assert rvq(x, n_quantizers=2).stats["active_levels"].item() == 2.0


def test_dropout_draws_are_seeded() -> None:
    a, _ = _fitted_rvq(levels=4, dropout=0.5)
    b, _ = _fitted_rvq(levels=4, dropout=0.5)
    x = torch.randn(16, 3, 8, generator=torch.Generator().manual_seed(1))
    a.train()
    b.train()
    assert torch.equal(a(x).levels, b(x).levels)


def test_eval_is_batch_invariant() -> None:
    rvq, x = _fitted_rvq(levels=4, codebook_dim=4)
    assert torch.equal(rvq.encode(x), torch.stack([rvq.encode(item) for item in x]))


def test_config_from_dict() -> None:
    config = RVQConfig.from_dict({"quantizer": {"dim": 8, "codebook_size": 16}, "num_quantizers": 2})
    rvq = ResidualVQ(config)
    assert rvq.codebooks.shape == (2, 16, 8)
    assert rvq.layers[1].config.seed == rvq.layers[0].config.seed + 1
    assert not torch.equal(rvq.layers[0].embed, rvq.layers[1].embed)
