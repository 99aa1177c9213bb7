"""The Conformer block: shapes, the identity stack, no mixing across batch items, order."""

import torch

from musictok.nn.conformer import Conformer


def test_conformer_shapes_and_batch_independence():
    torch.manual_seed(0)
    model = Conformer(32, layers=2, heads=4, kernel=7).eval()
    x = torch.randn(3, 11, 32)
    y = model(x)
    assert y.shape == x.shape and bool(torch.isfinite(y).all())
    assert torch.allclose(model(x[1:2]), y[1:2], atol=1e-5)  # per-frame norms: no statistics across the batch
    assert torch.equal(Conformer(32, layers=0)(x), x)


def test_the_order_of_frames_matters():
    """Deterministic in eval mode, and not a bag of frames: reversing the input does not just reverse the output."""
    torch.manual_seed(1)
    model = Conformer(16, layers=1, heads=2, kernel=3).eval()
    x = torch.randn(1, 6, 16)
    a = model(x)
    assert torch.equal(a, model(x.clone()))
    assert not torch.allclose(model(x.flip(1)).flip(1), a)
