"""The 3D convolutional network that maps a cube around a particle to its halo mass.

Architecture (Lucie-Smith et al. 2024, PRD 109, 063524, appendix B): six 3x3x3 convolutions
with stride 1 and zero padding that keeps the size, a LeakyReLU after each, a 2x2x2 max-pooling
after convolutions 2 to 6 with the output size rounded up (75 -> 38 -> 19 -> 10 -> 5 -> 3 voxels),
then two dense hidden layers with the same activation and a linear output of one unit: the halo
mass rescaled to [-1, 1]. Weights are Xavier-uniform and biases zero. With the published widths
and a 75^3 input the network has 2,108,257 weights and biases. The loss's learned Cauchy scale
brings the total to the published 2,108,258, which only the rounded-up pooling reproduces.
"""

import torch
from torch import nn

POOLED_CONVOLUTIONS = 5


def pooled_size(cube_size, n_pools=POOLED_CONVOLUTIONS):
    """Return the side in voxels after ``n_pools`` 2x2x2 max-poolings that round the size up."""
    size = cube_size
    for _ in range(n_pools):
        size = (size + 1) // 2
    return size


class HaloCNN(nn.Module):
    """3D CNN from a (B, 1, c, c, c) cube to a (B,) prediction of the rescaled log halo mass.

    Parameters
    ----------
    cube_size : int
        Side of the input cube in voxels.
    conv_channels : sequence of 6 int
        Output channels of the six convolutions.
    dense_units : sequence of 2 int
        Units of the two hidden dense layers.
    leaky_relu_slope : float
        Slope of the LeakyReLU for negative inputs.
    """

    def __init__(self, cube_size=75, conv_channels=(32, 32, 64, 128, 128, 128),
                 dense_units=(256, 128), leaky_relu_slope=0.03):
        super().__init__()
        if len(conv_channels) != POOLED_CONVOLUTIONS + 1:
            raise ValueError(f"conv_channels must list {POOLED_CONVOLUTIONS + 1} widths, got {list(conv_channels)}")
        if len(dense_units) != 2:
            raise ValueError(f"dense_units must list 2 widths, got {list(dense_units)}")
        if cube_size < 1:
            raise ValueError(f"cube_size must be at least 1 voxel, got {cube_size}")

        self.settings = {
            "cube_size": int(cube_size),
            "conv_channels": [int(width) for width in conv_channels],
            "dense_units": [int(width) for width in dense_units],
            "leaky_relu_slope": float(leaky_relu_slope),
        }

        widths = [1, *self.settings["conv_channels"]]
        self.conv_layers = nn.ModuleList(
            nn.Conv3d(widths[index], widths[index + 1], kernel_size=3, stride=1, padding=1)
            for index in range(len(widths) - 1))
        self.pool = nn.MaxPool3d(kernel_size=2, stride=2, ceil_mode=True)
        self.activation = nn.LeakyReLU(negative_slope=leaky_relu_slope)

        flat_units = widths[-1] * pooled_size(cube_size) ** 3
        units = [flat_units, *self.settings["dense_units"]]
        self.hidden_layers = nn.ModuleList(
            nn.Linear(units[index], units[index + 1]) for index in range(len(units) - 1))
        self.output_layer = nn.Linear(units[-1], 1)

        self.reset_parameters()

    def reset_parameters(self):
        """Draw Xavier-uniform weights and set every bias to zero."""
        for layer in [*self.conv_layers, *self.hidden_layers, self.output_layer]:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, cubes):
        """Predict the rescaled log halo mass of each cube.

        Parameters
        ----------
        cubes : torch.Tensor
            (B, 1, c, c, c), standardised inputs.

        Returns
        -------
        torch.Tensor
            (B,), unbounded; the loss keeps it inside [-1, 1].
        """
        x = cubes
        for index, conv in enumerate(self.conv_layers):
            x = self.activation(conv(x))
            if index > 0:
                x = self.pool(x)
        x = torch.flatten(x, start_dim=1)
        for layer in self.hidden_layers:
            x = self.activation(layer(x))
        return self.output_layer(x).squeeze(-1)


def count_parameters(*modules):
    """Return the number of trainable scalars in ``modules`` together."""
    return sum(parameter.numel() for module in modules
               for parameter in module.parameters() if parameter.requires_grad)
