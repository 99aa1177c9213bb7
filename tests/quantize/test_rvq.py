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


# ---------------------------------------------------------------- factorised codes (DAC) and buffered k-means
DIM, LEVELS, CODES = 32, 6, 64


def _structured(n: int, seed: int) -> torch.Tensor:
    """``(n, DIM)`` latents with a decaying spectrum (variance halves every 4 directions) and 16 clusters:
    the shape of an encoder's output, where a few directions carry most of the energy."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(DIM, DIM, generator=torch.Generator().manual_seed(99)))[0]
    scales = 2.0 ** (-torch.arange(DIM) / 4)
    centers = torch.randn(16, DIM, generator=torch.Generator().manual_seed(98)) * scales
    points = centers[torch.randint(0, 16, (n,), generator=g)] + 0.5 * torch.randn(n, DIM, generator=g) * scales
    return points @ basis.T


def _factorised(pca_init: bool = True, **options) -> ResidualVQ:
    quantizer = VQConfig(dim=DIM, codebook_size=CODES, codebook_dim=8, lookup="l2norm", use_ema=False,
                         pca_init=pca_init, weight_norm=True)
    return ResidualVQ(RVQConfig(quantizer, num_quantizers=LEVELS, kmeans_vectors=2048, **options))


def _prefix_errors(rvq: ResidualVQ, x: torch.Tensor) -> list[float]:
    """Relative squared error of decoding with the first 1..L levels."""
    rvq.eval()
    return [(rvq(x, n_quantizers=n).z_q - x).pow(2).mean().item() / x.pow(2).mean().item()
            for n in range(1, LEVELS + 1)]


def _fill(rvq: ResidualVQ) -> None:
    rvq.train()
    for seed in range(3):  # 3 × 1024 >= 2048 vectors: the third call initialises
        rvq(_structured(1024, seed).view(2, 512, DIM))


def test_kmeans_buffer_passes_through_then_initialises_every_level() -> None:
    rvq = _factorised().train()
    x = _structured(1024, 0).view(2, 512, DIM)
    first = rvq(x)
    assert torch.equal(first.z_q, x) and not first.codes.any() and float(first.loss) == 0.0
    assert not any(bool(layer.initted) for layer in rvq.layers)
    assert rvq.state_dict()["kmeans_gathered"].shape == (1024, DIM)
    rvq(_structured(1024, 1).view(2, 512, DIM))
    third = rvq(_structured(1024, 2).view(2, 512, DIM))  # buffer full: init, then quantize this batch
    assert all(bool(layer.initted) for layer in rvq.layers) and not rvq.gathering
    assert "kmeans_gathered" not in rvq.state_dict()  # an exported model does not carry the buffer
    assert third.codes.shape == (2, 512, LEVELS) and float(third.stats["utilization"].min()) > 0.5


def test_a_run_resumed_while_gathering_initialises_from_the_same_vectors() -> None:
    straight, resumed = _factorised().train(), _factorised().train()
    straight(_structured(1024, 0).view(2, 512, DIM))
    resumed.load_state_dict(copy.deepcopy(straight.state_dict()))  # a checkpoint taken mid-buffer
    for seed in (1, 2):
        straight(_structured(1024, seed).view(2, 512, DIM))
        resumed(_structured(1024, seed).view(2, 512, DIM))
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_factorised_levels_shape_range_and_magnitude() -> None:
    rvq = _factorised()
    _fill(rvq)
    rvq.eval()
    x = _structured(512, 5).view(4, 128, DIM)
    result = rvq(x)
    assert result.codes.shape == (4, 128, LEVELS) and result.levels.shape == (4, 128, LEVELS, DIM)
    assert 0 <= int(result.codes.min()) and int(result.codes.max()) < CODES
    codewords = rvq.layers[0].codebook.detach().norm(dim=-1)
    assert float(codewords.std()) > 0.1 * float(codewords.mean())  # raw codewords, not unit-norm
    norms = result.levels.norm(dim=-1).mean(dim=(0, 1))  # each level's output shrinks with the residual
    assert all(a > b for a, b in zip(norms.tolist(), norms[1:].tolist())), norms
    torch.testing.assert_close(rvq.decode(result.codes), result.z_q, atol=1e-5, rtol=1e-5)


def test_every_factorised_level_shrinks_the_residual_after_init() -> None:
    x = _structured(4096, 7)
    rvq = _factorised()
    _fill(rvq)
    errors = _prefix_errors(rvq, x)
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[0] < 0.5 and errors[-1] < 0.2 * errors[0]
    # DAC's random projections: a fresh level adds a rank-8 map of the residual in an unrelated direction,
    # so more levels make it worse until training aligns W_out with W_in (what pca_init avoids)
    random = _factorised(pca_init=False)
    _fill(random)
    random_errors = _prefix_errors(random, x)
    assert random_errors[-1] > random_errors[0] > 1.0, random_errors


def test_trained_factorised_rvq_still_shrinks_with_every_level() -> None:
    """A few hundred steps of the DAC losses (codebook + commitment, no EMA) with quantizer dropout keep every
    prefix useful: the error falls with each added level."""
    torch.manual_seed(0)
    rvq = _factorised(quantizer_dropout=0.5, dropout_mode="share")
    _fill(rvq)
    optimizer = torch.optim.Adam(rvq.parameters(), lr=3e-3)
    rvq.train()
    for step in range(150):
        x = _structured(512, 100 + step).view(8, 64, DIM)
        result = rvq(x)
        loss = (result.z_q - x).pow(2).mean() + result.loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    errors = _prefix_errors(rvq, _structured(4096, 7))
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.2 * errors[0]


def test_share_dropout_drops_a_fixed_share_of_the_batch_in_training_only() -> None:
    quantizer = VQConfig(dim=DIM, codebook_size=CODES)
    rvq = ResidualVQ(RVQConfig(quantizer, num_quantizers=8, quantizer_dropout=0.5, dropout_mode="share")).train()
    x = torch.randn(8, 4, DIM)
    short = [int((rvq._dropout_levels(x) < 8).sum()) for _ in range(400)]
    # floor(0.5 · 8) = 4 items draw n ~ U{1..8}: at most 4 use fewer levels, 3.5 on average
    assert max(short) == 4 and sum(short) / len(short) == pytest.approx(3.5, abs=0.2)
    bernoulli = ResidualVQ(RVQConfig(quantizer, num_quantizers=8, quantizer_dropout=0.5)).train()
    assert max(int((bernoulli._dropout_levels(x) < 8).sum()) for _ in range(400)) > 4
    x = torch.randn(8, 64, DIM, generator=torch.Generator().manual_seed(0))  # 512 vectors: no level is exact
    rvq(x)  # first-batch k-means
    step = int(rvq.step)
    used = (rvq(x).levels.abs().sum(-1) > 0).sum(-1)[:, 0]  # levels per item
    rvq.step.fill_(step)  # the draw is seeded by the step: redraw the one that forward pass made
    drawn = rvq._dropout_levels(x)
    assert torch.equal(used, drawn)  # forward quantised each item with exactly the levels drawn for it
    assert int((drawn < 8).sum()) <= 4 and int((drawn == 8).sum()) >= 4  # the other half keeps every level
    rvq.eval()
    assert bool(((rvq(x).levels.abs().sum(-1) > 0).sum(-1) == 8).all())


def test_rvq_options_are_checked() -> None:
    quantizer = VQConfig(dim=4, codebook_size=8)
    with pytest.raises(ValueError, match="dropout_mode"):
        RVQConfig(quantizer, dropout_mode="fixed")
    with pytest.raises(ValueError, match="kmeans_init"):
        RVQConfig(VQConfig(dim=4, codebook_size=8, kmeans_init=False), kmeans_vectors=100)
