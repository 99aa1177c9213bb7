"""The waveform encoder's building blocks: Snake, residual units, DAC's options, the encoder's reach."""

import math

import pytest
import torch

from musictok.nn.codec import ResidualUnit1d, Snake1d, WaveEncoder

DAC_OPTIONS = dict(res_units=3, head_blocks=0, activation="snake", weight_norm=True, output="conv")


def test_snake_reference_values_and_gradients() -> None:
    snake = Snake1d(2)
    with torch.no_grad():
        snake.alpha.copy_(torch.tensor([1.0, 2.0]).view(1, 2, 1))
    x = torch.tensor([[[0.0, math.pi / 2], [0.0, math.pi / 4]]], requires_grad=True)
    y = snake(x)
    # x + sin²(αx) / α: channel 0 (α = 1) at π/2 -> π/2 + 1; channel 1 (α = 2) at π/4 -> π/4 + 1/2
    torch.testing.assert_close(y.detach(), torch.tensor([[[0.0, math.pi / 2 + 1.0], [0.0, math.pi / 4 + 0.5]]]))
    y.sum().backward()
    # dy/dx = 1 + sin(2αx): 1 at 0, 1 + sin(π) = 1 at π/2 (α = 1), 1 + sin(π) = 1 at π/4 (α = 2)
    torch.testing.assert_close(x.grad, torch.ones_like(x))
    assert snake.alpha.grad is not None and float(snake.alpha.grad.abs().sum()) > 0
    assert snake.alpha.shape == (1, 2, 1)  # one α per channel


def test_residual_unit_default_keeps_the_bundled_layout() -> None:
    """The bundled codecs' weights load only if the SiLU unit keeps its parameter names."""
    assert set(ResidualUnit1d(8).state_dict()) == {"conv.weight", "conv.bias", "proj.weight", "proj.bias"}
    snake = set(ResidualUnit1d(8, activation="snake", weight_norm=True).state_dict())
    assert {"act1.alpha", "act2.alpha", "conv.parametrizations.weight.original0",
            "conv.parametrizations.weight.original1"} <= snake
    unit = ResidualUnit1d(8, dilation=9, activation="snake")
    assert unit(torch.randn(2, 8, 100)).shape == (2, 8, 100)


def test_dac_encoder_shapes_and_reach() -> None:
    channels, strides = (8, 16, 16, 32), (4, 4, 4)
    encoder = WaveEncoder(channels, strides, 24, **DAC_OPTIONS).double()
    wav = torch.randn(2, 32 * 64, dtype=torch.double)
    assert encoder(wav).shape == (2, 24, 32)
    assert encoder.proj.kernel_size == (3,) and sum(u.conv.dilation[0] for u in encoder.stages[1][:3]) == 13
    # measured reach: which input samples move the middle frame (random weights: no zero by accident)
    n = 64
    x = torch.randn(1, n * 64, dtype=torch.double, requires_grad=True)
    encoder(x)[0, :, n // 2].sum().backward()
    touched = (x.grad[0].abs() > 0).nonzero()
    left = n // 2 * 64 - int(touched.min())
    right = int(touched.max()) - ((n // 2 + 1) * 64 - 1)
    assert max(left, right) <= encoder.reach <= 1.5 * max(left, right)


def test_bad_encoder_options_are_refused() -> None:
    with pytest.raises(ValueError, match="activation"):
        WaveEncoder((8, 16), (4,), 8, activation="relu")
    with pytest.raises(ValueError, match="output"):
        WaveEncoder((8, 16), (4,), 8, output="linear")
