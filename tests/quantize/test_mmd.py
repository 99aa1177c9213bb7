"""The independence-promoting MMD statistic: ≈ 0 for independent streams, clearly > 0 for dependent ones."""

import pytest
import torch

from musictok.quantize.mmd import MMDConfig, independence_mmd, joint_and_product, mmd_squared


def _levels(dependent: bool, seed: int = 0, b: int = 8, t: int = 64, d: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(b, t, d, generator=g)
    other = torch.randn(b, t, d, generator=g)
    second = a + 0.1 * other if dependent else other
    return torch.stack([a, second], dim=2)  # (B, T, 2, D)


def test_independent_streams_give_about_zero():
    values = [float(independence_mmd(_levels(False, seed=s))) for s in range(5)]
    assert max(abs(v) for v in values) < 0.01


def test_dependent_streams_give_clearly_more():
    independent = max(abs(float(independence_mmd(_levels(False, seed=s)))) for s in range(5))
    dependent = min(float(independence_mmd(_levels(True, seed=s))) for s in range(5))
    assert dependent > 0.008 and dependent > 5 * independent


def test_scale_of_a_level_does_not_matter():
    lv = _levels(True)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    scaled = lv.clone()
    scaled[:, :, 1] *= 100.0
    assert float(independence_mmd(lv, generator=g1)) == pytest.approx(float(independence_mmd(scaled, generator=g2)), rel=1e-3)


def test_mmd_of_identical_samples_is_about_zero_and_shift_is_positive():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 3, generator=g), torch.randn(200, 3, generator=g)
    assert abs(float(mmd_squared(x, y))) < 0.02
    assert float(mmd_squared(x, y + 1.0)) > 0.1


def test_delay_alignment_finds_a_lagged_dependence():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 128, 4, generator=g)
    lagged = torch.roll(a, shifts=1, dims=1) + 0.05 * torch.randn(4, 128, 4, generator=g)  # level 1 at t = level 0 at t-1
    lv = torch.stack([a, lagged], dim=2)
    plain = float(independence_mmd(lv, MMDConfig(delay=False)))
    # with delays (0, 1) tuple t holds (q0[t], q1[t-1]) = (a[t], a[t-2]): independent again
    delayed = float(independence_mmd(lv, MMDConfig(delay=True)))
    assert abs(plain) < 0.02 and abs(delayed) < 0.02
    # the statistic with the opposite alignment (q1 shifted forward) sees the copy
    joint, product = joint_and_product(torch.stack([lagged, a], dim=2), delays=[0, 1])
    assert float(mmd_squared(joint, product)) > 0.008


def test_gradients_flow_to_the_levels():
    lv = _levels(True).requires_grad_()
    independence_mmd(lv).backward()
    assert lv.grad is not None and lv.grad.abs().sum() > 0


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError):
        independence_mmd(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError):
        joint_and_product(torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError):
        MMDConfig(weight=-1)
