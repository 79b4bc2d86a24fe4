r"""Truncated-Cauchy likelihood with a learned scale, and the weight priors.

Both follow Lucie-Smith et al. 2024, PRD 109, 063524, appendix C.

Likelihood. The true log halo mass rescaled to :math:`d \in [-1, 1]` is modelled as Cauchy
distributed about the network output :math:`y` with scale :math:`\gamma` (learned, kept positive
by learning :math:`\ln\gamma`), truncated to :math:`[-1, 1]` because the selection admits no
other values. The negative log-likelihood of one sample, up to the constant :math:`\ln\pi`, is

.. math::

    C(y) = \ln\gamma + \ln\left[1 + \left(\frac{d - y}{\gamma}\right)^2\right]
         + \ln\left[\arctan\frac{1 - y}{\gamma} - \arctan\frac{-1 - y}{\gamma}\right],
    \qquad |y| \le 1.

The network output is unbounded, so for :math:`|y| > 1` the paper replaces :math:`C` by a
superexponential wall "matched continuously at the boundary" without giving its form. Here

.. math::

    f(y) = \exp(\exp|y|) + A y^2 + B,

with :math:`s = \mathrm{sign}(y)`, :math:`A = [s\,C'(s) - e^{1+e}]/2` and
:math:`B = C(s) - e^e - A`, so that :math:`f(s) = C(s)` and :math:`f'(s) = C'(s)`. A and B depend
on :math:`d` and :math:`\gamma` and are differentiated through. The loss of a batch is the mean of
the per-sample terms.

Both branches are evaluated for every sample and one is selected, so each branch is evaluated on
inputs clamped to where it is finite: :math:`C` on :math:`y` clamped to :math:`[-1, 1]`, the wall on
:math:`|y|` clamped to :math:`[1, 4]`. Beyond :math:`|y| = 4` the wall continues along its tangent,
because :math:`\exp(\exp|y|)` overflows float32 just above :math:`|y| = 4.48`.

Priors. With weight :math:`\alpha`, the penalty added to the loss is

.. math::

    \alpha \left[ \sum_{\mathrm{conv}} \sum_p w_p^2
        + \sum_{\mathrm{dense}} \sum_q |w_q|
        + \sum_{\mathrm{dense}} \sum_i \Big(\sum_j w_{ij}^2\Big)^{1/2} \right],

a Gaussian prior on every convolution weight, a Laplacian prior on the weights of the two hidden
dense layers and a group lasso whose groups are the outgoing weights of each input unit of those
layers, which drives whole units to zero. Biases and the output layer carry no prior.
"""

import math

import torch
from torch import nn

# |y| beyond which the wall continues along its tangent (see the module docstring).
WALL_LINEAR_FROM = 4.0
_E_TO_E = math.exp(math.e)


def cauchy_term(prediction, target, gamma):
    """Return the truncated-Cauchy negative log-likelihood C(y) per sample (valid for |y| <= 1)."""
    residual = (target - prediction) / gamma
    enclosed = torch.atan((1 - prediction) / gamma) - torch.atan((-1 - prediction) / gamma)
    return torch.log(gamma) + torch.log1p(residual ** 2) + torch.log(enclosed)


def cauchy_slope(prediction, target, gamma):
    """Return dC/dy per sample, the analytic derivative of :func:`cauchy_term` in the prediction."""
    gamma_squared = gamma ** 2
    residual = target - prediction
    enclosed = torch.atan((1 - prediction) / gamma) - torch.atan((-1 - prediction) / gamma)
    enclosed_slope = gamma / (gamma_squared + (1 + prediction) ** 2) - gamma / (gamma_squared + (1 - prediction) ** 2)
    return -2 * residual / (gamma_squared + residual ** 2) + enclosed_slope / enclosed


def wall_term(prediction, target, gamma):
    """Return the superexponential term f(y) per sample (valid for |y| >= 1).

    See the module docstring for A, B and the tangent continuation beyond ``WALL_LINEAR_FROM``.
    """
    side = torch.where(prediction >= 0, torch.ones_like(prediction), -torch.ones_like(prediction))
    boundary_value = cauchy_term(side, target, gamma)
    boundary_slope = cauchy_slope(side, target, gamma)
    quadratic = (side * boundary_slope - math.e * _E_TO_E) / 2
    offset = boundary_value - _E_TO_E - quadratic

    distance = prediction.abs()
    clamped = distance.clamp(1.0, WALL_LINEAR_FROM)
    # torch.where rather than clamp, so that at exactly |y| = 4 only one side passes a gradient.
    beyond = torch.where(distance > WALL_LINEAR_FROM, distance - WALL_LINEAR_FROM, torch.zeros_like(distance))
    steep = torch.exp(torch.exp(clamped)) * (1 + torch.exp(clamped) * beyond)
    return steep + quadratic * prediction ** 2 + offset


class CauchySelectionLoss(nn.Module):
    """Truncated-Cauchy likelihood of the rescaled truth with a learned scale gamma.

    Parameters
    ----------
    initial_gamma : float
        Starting value of the Cauchy scale (half-width at half-maximum) in rescaled units.
    """

    def __init__(self, initial_gamma=0.2):
        super().__init__()
        if not initial_gamma > 0:
            raise ValueError(f"initial_gamma must be positive, got {initial_gamma}")
        self.log_gamma = nn.Parameter(torch.tensor(math.log(initial_gamma)))

    @property
    def gamma(self):
        """Cauchy scale in rescaled units, a 0-d tensor attached to the graph."""
        return torch.exp(self.log_gamma)

    def per_sample(self, prediction, target):
        """Return the loss of each sample: C(y) for |y| <= 1, the wall f(y) beyond.

        Parameters
        ----------
        prediction, target : torch.Tensor
            (B,), the network output y and the rescaled truth d in [-1, 1].
        """
        gamma = self.gamma.to(prediction.dtype)
        inside = prediction.abs() <= 1
        cauchy = cauchy_term(prediction.clamp(-1.0, 1.0), target, gamma)
        wall = wall_term(prediction, target, gamma)
        return torch.where(inside, cauchy, wall)

    def forward(self, prediction, target):
        """Return the mean loss over the batch."""
        return self.per_sample(prediction, target).mean()


def prior_penalty(model, alpha):
    """Return alpha times the weight priors of a :class:`halo_ml.model.HaloCNN` (0-d tensor).

    The sum of squared convolution weights, plus for each hidden dense layer the sum of absolute
    weights and the group lasso: the Euclidean norm of each input unit's outgoing weights.
    Biases and the output layer are not penalised.
    """
    conv = sum(layer.weight.square().sum() for layer in model.conv_layers)
    dense = 0
    for layer in model.hidden_layers:
        # nn.Linear stores weight as (out, in), so an input unit's outgoing weights are a column.
        dense = dense + layer.weight.abs().sum() + torch.linalg.vector_norm(layer.weight, dim=0).sum()
    return alpha * (conv + dense)
