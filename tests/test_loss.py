"""Tests of the truncated-Cauchy loss and the weight priors against direct evaluations."""

import math

import numpy as np
import pytest
import torch
from scipy import differentiate, optimize, stats

from halo_ml.loss import CauchySelectionLoss, prior_penalty
from halo_ml.model import HaloCNN


def cauchy_numpy(y, d, gamma):
    """Truncated-Cauchy negative log-likelihood (Lucie-Smith et al. 2024, eq. C2), in numpy."""
    return (np.log(gamma) + np.log(1 + ((d - y) / gamma) ** 2)
            + np.log(np.arctan((1 - y) / gamma) - np.arctan((-1 - y) / gamma)))


def wall_numpy(y, d, gamma):
    """exp(exp|y|) + A y^2 + B with A, B matched by finite differences of cauchy_numpy."""
    side = np.sign(y)
    # One-sided differences from inside the interval, where cauchy_numpy is defined.
    slope = differentiate.derivative(lambda x, target: cauchy_numpy(x, target, gamma), side,
                                     args=(d,), step_direction=-side).df
    quadratic = (side * slope - math.e * math.exp(math.e)) / 2
    offset = cauchy_numpy(side, d, gamma) - math.exp(math.e) - quadratic
    return np.exp(np.exp(np.abs(y))) + quadratic * y ** 2 + offset


def loss_of(gamma):
    """A float64 loss whose gamma equals ``gamma`` to float64 precision."""
    loss = CauchySelectionLoss(gamma).double()
    with torch.no_grad():
        loss.log_gamma.fill_(math.log(gamma))
    return loss


def loss_values(y, d, gamma, dtype=torch.float64):
    loss = loss_of(gamma).to(dtype)
    with torch.no_grad():
        return loss.per_sample(torch.tensor(y, dtype=dtype), torch.tensor(d, dtype=dtype)).numpy()


def slope_at(y, d, gamma):
    loss = loss_of(gamma)
    prediction = torch.tensor([y], dtype=torch.float64, requires_grad=True)
    loss.per_sample(prediction, torch.tensor([d], dtype=torch.float64)).sum().backward()
    return float(prediction.grad[0])


def test_gamma_positive_and_initial():
    loss = CauchySelectionLoss(0.2)
    assert float(loss.gamma.detach()) == pytest.approx(0.2)
    with torch.no_grad():
        loss.log_gamma.fill_(-50.0)
    assert float(loss.gamma.detach()) > 0


def test_cauchy_branch_matches_formula():
    y = np.array([-1.0, -0.7, -0.2, 0.0, 0.35, 0.9, 1.0])
    d = np.array([0.5, -0.9, 1.0, -1.0, 0.3, 0.95, -0.4])
    for gamma in (0.05, 0.2, 0.8):
        np.testing.assert_allclose(loss_values(y, d, gamma), cauchy_numpy(y, d, gamma), rtol=1e-12)


def test_wall_branch_matches_formula():
    y = np.array([-2.5, -1.3, -1.0001, 1.0001, 1.2, 2.0, 3.9])
    d = np.array([0.2, -1.0, 0.7, 1.0, -0.5, 0.0, 0.9])
    for gamma in (0.1, 0.26):
        np.testing.assert_allclose(loss_values(y, d, gamma), wall_numpy(y, d, gamma), rtol=1e-7)


def test_batch_loss_is_mean():
    y = torch.tensor([-1.5, -0.3, 0.4, 1.1], dtype=torch.float64)
    d = torch.tensor([-0.8, 0.1, 0.9, 0.5], dtype=torch.float64)
    loss = loss_of(0.3)
    expected = np.mean(np.concatenate([
        wall_numpy(y.numpy()[[0]], d.numpy()[[0]], 0.3),
        cauchy_numpy(y.numpy()[1:3], d.numpy()[1:3], 0.3),
        wall_numpy(y.numpy()[[3]], d.numpy()[[3]], 0.3)]))
    assert loss(y, d).item() == pytest.approx(expected, rel=1e-7)


@pytest.mark.parametrize("side", [-1.0, 1.0])
@pytest.mark.parametrize("d", [-1.0, -0.3, 0.6, 1.0])
def test_continuous_at_boundary(side, d):
    gamma = 0.23
    epsilon = 1e-9
    inside, outside = loss_values(np.array([side * (1 - epsilon), side * (1 + epsilon)]), np.array([d, d]), gamma)
    assert outside == pytest.approx(inside, abs=1e-7)
    slope_inside = slope_at(side * (1 - epsilon), d, gamma)
    slope_outside = slope_at(side * (1 + epsilon), d, gamma)
    assert slope_outside == pytest.approx(slope_inside, rel=1e-5, abs=1e-5)


def test_gradcheck_both_branches():
    loss = CauchySelectionLoss(0.3).double()
    prediction = torch.tensor([-2.2, -1.05, -0.6, 0.0, 0.45, 0.97, 1.3, 1.8], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0.1, -0.9, -0.2, 0.8, 0.5, 1.0, -0.3, 0.6], dtype=torch.float64, requires_grad=True)

    def batch_loss(prediction, target, log_gamma):
        with torch.no_grad():
            loss.log_gamma.copy_(log_gamma)
        loss.log_gamma.grad = None
        return loss.per_sample(prediction, target)

    assert torch.autograd.gradcheck(batch_loss, (prediction, target, loss.log_gamma))


def test_gradcheck_gamma():
    prediction = torch.tensor([-1.6, -0.4, 0.3, 1.2], dtype=torch.float64)
    target = torch.tensor([0.2, -0.5, 0.9, 0.4], dtype=torch.float64)
    loss = CauchySelectionLoss(0.3).double()
    assert torch.autograd.gradcheck(lambda _: loss.per_sample(prediction, target), (loss.log_gamma,))


@pytest.mark.parametrize("y", [-1e6, -50.0, -4.0, -3.999, 3.999, 4.0, 50.0, 1e6])
def test_extreme_predictions_finite(y):
    loss = CauchySelectionLoss(0.2)
    prediction = torch.tensor([y, 0.1], requires_grad=True)
    value = loss(prediction, torch.tensor([0.5, -0.2]))
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(prediction.grad).all()
    assert torch.isfinite(loss.log_gamma.grad)
    # The wall pushes a prediction outside [-1, 1] back towards the interval.
    assert math.copysign(1.0, float(prediction.grad[0])) == math.copysign(1.0, y)


def test_fitting_gamma_recovers_truth():
    true_gamma = 0.26
    generator = np.random.default_rng(7)
    n = 20000
    location = generator.uniform(-0.9, 0.9, n)
    cauchy = stats.cauchy(loc=location, scale=true_gamma)
    # Inverse-CDF draws restricted to [-1, 1]: a Cauchy truncated to the rescaled mass range.
    uniform = generator.uniform(cauchy.cdf(-1.0), cauchy.cdf(1.0))
    target = cauchy.ppf(uniform)
    assert np.all(np.abs(target) <= 1.0)

    loss = CauchySelectionLoss().double()
    prediction_t = torch.from_numpy(location)
    target_t = torch.from_numpy(target)

    def objective(log_gamma):
        with torch.no_grad():
            loss.log_gamma.fill_(log_gamma)
            return float(loss(prediction_t, target_t))

    result = optimize.minimize_scalar(objective, bounds=(math.log(0.01), math.log(2.0)), method="bounded")
    assert math.exp(result.x) == pytest.approx(true_gamma, rel=0.05)


def prior_numpy(model, alpha):
    total = 0.0
    for layer in model.conv_layers:
        total += np.sum(layer.weight.detach().numpy().astype(np.float64) ** 2)
    for layer in model.hidden_layers:
        weight = layer.weight.detach().numpy().astype(np.float64)   # (out, in)
        total += np.sum(np.abs(weight))
        for column in range(weight.shape[1]):
            total += math.sqrt(sum(value ** 2 for value in weight[:, column]))
    return alpha * total


@pytest.fixture
def small_model():
    torch.manual_seed(3)
    return HaloCNN(cube_size=9, conv_channels=(2, 3, 4, 4, 5, 5), dense_units=(6, 4))


def test_prior_matches_direct_sum(small_model):
    alpha = 10 ** -2.5
    assert prior_penalty(small_model, alpha).item() == pytest.approx(prior_numpy(small_model, alpha), rel=1e-6)


def test_prior_ignores_biases_and_output(small_model):
    before = prior_penalty(small_model, 0.01).item()
    with torch.no_grad():
        for layer in [*small_model.conv_layers, *small_model.hidden_layers, small_model.output_layer]:
            layer.bias.add_(1.0)
        small_model.output_layer.weight.mul_(3.0)
    assert prior_penalty(small_model, 0.01).item() == before


def test_prior_gradients_reach_weights(small_model):
    alpha = 0.01
    with torch.no_grad():
        small_model.hidden_layers[1].weight[:, 2] = 0.0   # a unit the group lasso has switched off
    prior_penalty(small_model, alpha).backward()
    for layer in small_model.conv_layers:
        torch.testing.assert_close(layer.weight.grad, 2 * alpha * layer.weight.detach())
    for layer in small_model.hidden_layers:
        weight = layer.weight.detach()
        norms = torch.linalg.vector_norm(weight, dim=0, keepdim=True)
        group = torch.where(norms > 0, weight / norms.clamp(min=1e-30), torch.zeros_like(weight))
        torch.testing.assert_close(layer.weight.grad, alpha * (torch.sign(weight) + group))
    assert small_model.output_layer.weight.grad is None
    assert all(layer.bias.grad is None for layer in small_model.conv_layers)
