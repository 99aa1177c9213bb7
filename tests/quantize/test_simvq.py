"""SimVQ: a frozen basis, a learned linear map, the shared quantizer interface."""

from __future__ import annotations

import pytest
import torch

from musictok.quantize import SimVQ, SimVQConfig


def _data(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centers = 3.0 * torch.randn(8, 16, generator=g)
    return (centers.repeat_interleave(32, 0) + 0.3 * torch.randn(256, 16, generator=g)).view(4, 64, 16)


def test_codebook_is_frozen_basis_times_learned_map() -> None:
    vq = SimVQ(SimVQConfig(dim=16, codebook_size=64))
    trainable = [name for name, p in vq.named_parameters() if p.requires_grad]
    assert trainable == ["transform.weight"]
    torch.testing.assert_close(vq.codebook, vq.basis)  # W starts as the identity
    with torch.no_grad():
        vq.transform.weight.mul_(2.0)
    torch.testing.assert_close(vq.codebook, vq.basis @ vq.transform.weight.T)
    assert "basis" in vq.state_dict()
    torch.testing.assert_close(vq.basis.norm(dim=1).mean(), torch.tensor(1.0), atol=0.1, rtol=0)


def test_trains_and_loss_drops() -> None:
    vq = SimVQ(SimVQConfig(dim=16, codebook_size=64)).train()
    basis = vq.basis.clone()
    x = _data()
    optimizer = torch.optim.Adam(vq.parameters(), lr=0.05)
    losses = []
    for _ in range(40):
        result = vq(x)
        optimizer.zero_grad()
        result.loss.backward()
        optimizer.step()
        losses.append(result.loss.item())
    assert losses[-1] < 0.3 * losses[0], losses[::10]
    assert torch.equal(vq.basis, basis)  # frozen
    assert not torch.equal(vq.transform.weight, torch.eye(16))


def test_interface_and_invariance() -> None:
    vq = SimVQ(SimVQConfig(dim=16, codebook_size=64, seed=3)).eval()
    x = _data(1).requires_grad_(True)
    result = vq(x)
    assert result.z_q.shape == x.shape and result.codes.shape == (4, 64)
    assert set(result.losses) == {"commitment", "codebook"}
    assert 1.0 <= result.stats["perplexity"].item() <= 64.0
    assert torch.equal(vq.encode(x), result.codes)
    assert torch.equal(torch.stack([vq.encode(item) for item in x]), result.codes)
    torch.testing.assert_close(vq.decode(result.codes), result.z_q, atol=1e-6, rtol=1e-6)
    weight = torch.randn(result.z_q.shape, generator=torch.Generator().manual_seed(0))
    (result.z_q * weight).sum().backward()
    torch.testing.assert_close(x.grad, weight)  # straight-through
    with pytest.raises(ValueError, match="channels-last"):
        vq(torch.randn(3, 15))


def test_seed_fixes_basis() -> None:
    assert torch.equal(SimVQ(SimVQConfig(dim=8, seed=1)).basis, SimVQ(SimVQConfig(dim=8, seed=1)).basis)
    assert not torch.equal(SimVQ(SimVQConfig(dim=8, seed=1)).basis, SimVQ(SimVQConfig(dim=8, seed=2)).basis)
