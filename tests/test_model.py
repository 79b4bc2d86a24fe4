"""Tests of the CNN's shape, size and initialisation."""

import math

import pytest
import torch

from halo_ml.loss import CauchySelectionLoss
from halo_ml.model import HaloCNN, count_parameters, pooled_size

# Parameter count published by Lucie-Smith et al. 2024 (PRD 109, 063524), gamma included.
PAPER_PARAMETERS = 2_108_258


def test_paper_parameter_count():
    model = HaloCNN(cube_size=75)
    assert count_parameters(model) == PAPER_PARAMETERS - 1
    assert count_parameters(model, CauchySelectionLoss()) == PAPER_PARAMETERS


def test_parameter_count_formula():
    channels, units, cube = (3, 4, 5, 6, 7, 8), (9, 10), 21
    model = HaloCNN(cube_size=cube, conv_channels=channels, dense_units=units)
    widths = [1, *channels]
    conv = sum(27 * widths[i] * widths[i + 1] + widths[i + 1] for i in range(6))
    flat = channels[-1] * math.ceil(21 / 32) ** 3
    dense = (flat * units[0] + units[0]) + (units[0] * units[1] + units[1]) + (units[1] + 1)
    assert count_parameters(model) == conv + dense


def test_pooling_rounds_up():
    model = HaloCNN(cube_size=75, conv_channels=(1, 1, 1, 1, 1, 1), dense_units=(2, 2))
    sizes = []
    model.pool.register_forward_hook(lambda module, inputs, output: sizes.append(output.shape[-1]))
    with torch.no_grad():
        model(torch.zeros(1, 1, 75, 75, 75))
    assert sizes == [38, 19, 10, 5, 3]
    assert pooled_size(75) == 3
    assert pooled_size(9) == 1


@pytest.mark.parametrize("cube", [5, 9, 17])
def test_output_one_value_per_cube(cube):
    model = HaloCNN(cube_size=cube, conv_channels=(2, 2, 2, 2, 2, 2), dense_units=(4, 4))
    with torch.no_grad():
        output = model(torch.randn(3, 1, cube, cube, cube))
    assert output.shape == (3,)


def test_xavier_uniform_and_zero_bias():
    torch.manual_seed(0)
    model = HaloCNN(cube_size=9, conv_channels=(8, 16, 16, 32, 32, 32), dense_units=(64, 32))
    for layer in [*model.conv_layers, *model.hidden_layers, model.output_layer]:
        weight = layer.weight.detach()
        receptive = weight[0, 0].numel()
        fan_in, fan_out = weight.shape[1] * receptive, weight.shape[0] * receptive
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        assert weight.abs().max() <= bound
        if weight.numel() > 5000:
            # A uniform distribution on [-b, b] has standard deviation b / sqrt(3).
            assert float(weight.std()) == pytest.approx(bound / math.sqrt(3), rel=0.05)
        assert torch.count_nonzero(layer.bias) == 0


def test_leaky_slope_applied():
    model = HaloCNN(cube_size=5, conv_channels=(1, 1, 1, 1, 1, 1), dense_units=(1, 1), leaky_relu_slope=0.03)
    assert model.activation.negative_slope == 0.03
    assert model.settings["leaky_relu_slope"] == 0.03


def test_invalid_widths_rejected():
    with pytest.raises(ValueError, match="conv_channels must list 6 widths"):
        HaloCNN(conv_channels=(32, 32))
    with pytest.raises(ValueError, match="dense_units must list 2 widths"):
        HaloCNN(dense_units=(256,))
