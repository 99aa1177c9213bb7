"""ConvNeXt 1D blocks and the 2D residual helpers: shapes (odd lengths too), init, gradients, errors."""

from __future__ import annotations

import pytest
import torch

from musictok.nn import (
    ConvNeXtBackbone,
    ConvNeXtBlock1d,
    Downsample2d,
    ResBlock2d,
    Upsample2d,
)


@pytest.mark.parametrize("length", [1, 7, 47, 128])
def test_block_keeps_shape(length: int) -> None:
    torch.manual_seed(0)
    block = ConvNeXtBlock1d(16, 48, layer_scale_init=0.5)
    x = torch.randn(2, 16, length)
    assert block(x).shape == (2, 16, length)


def test_block_with_zero_layer_scale_is_identity() -> None:
    torch.manual_seed(0)
    block = ConvNeXtBlock1d(8, 16, layer_scale_init=0.0)
    x = torch.randn(3, 8, 11)
    torch.testing.assert_close(block(x), x)
    assert ConvNeXtBlock1d(8, 16, layer_scale_init=None).gamma is None


def test_block_is_causal_free_but_local() -> None:
    # Kernel 7: a change at frame 20 reaches frames 17..23 only.
    torch.manual_seed(0)
    block = ConvNeXtBlock1d(4, 8, kernel=7)
    x = torch.randn(1, 4, 41)
    y = x.clone()
    y[..., 20] += 1.0
    changed = (block(x) - block(y)).abs().sum(1)[0] > 0
    assert changed.nonzero().flatten().tolist() == list(range(17, 24))


@pytest.mark.parametrize("length", [1, 9, 94])
def test_backbone_shapes_and_layer_scale(length: int) -> None:
    torch.manual_seed(0)
    net = ConvNeXtBackbone(in_dim=10, dim=24, intermediate_dim=64, num_layers=4)
    assert all(torch.allclose(b.gamma, torch.full((24,), 0.25)) for b in net.blocks)
    out = net(torch.randn(2, 10, length))
    assert out.shape == (2, 24, length)
    # Final LayerNorm (identity affine at init): zero mean over channels for each frame.
    torch.testing.assert_close(out.mean(1), torch.zeros(2, length), atol=1e-5, rtol=0)


def test_backbone_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    net = ConvNeXtBackbone(6, 12, 24, num_layers=2)
    (net(torch.randn(2, 6, 15)) * torch.randn(2, 12, 15)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_backbone_rejects_bad_input() -> None:
    net = ConvNeXtBackbone(6, 12, 24, num_layers=1)
    with pytest.raises(ValueError, match=r"\(B, 6, T\)"):
        net(torch.randn(2, 5, 10))
    with pytest.raises(ValueError, match="odd"):
        ConvNeXtBackbone(6, 12, 24, num_layers=1, kernel=4)


@pytest.mark.parametrize("size", [(1, 1), (7, 13), (16, 16)])
def test_resblock2d_shapes(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 12, *size)
    assert ResBlock2d(12)(x).shape == (2, 12, *size)
    assert ResBlock2d(12, out_channels=20)(x).shape == (2, 20, *size)  # 20 channels: GroupNorm(4)


def test_down_and_upsample_invert_sizes() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 8, 32, 24)
    for factor in [2, (2, 1), (4, 2)]:
        down = Downsample2d(8, 16, factor=factor)(x)
        fh, fw = (factor, factor) if isinstance(factor, int) else factor
        assert down.shape == (2, 16, 32 // fh, 24 // fw)
        assert Upsample2d(16, 8, factor=factor)(down).shape == x.shape
    with pytest.raises(ValueError, match="factor"):
        Downsample2d(8, factor=(2, 0))
