"""Source models on pixels: a CNN (L x [3x3 conv, ReLU], pooling, linear) and an MLP.

Both accept the NTK parameterisation (``ntk_init=True``): weights and biases are drawn N(0, 1) and
the layer output is scaled by ``sigma_w / sqrt(fan_in)`` (and ``sigma_b``), so the empirical NTK
has a finite infinite-width limit (the analytic kernel in ``reprog_core.ntk.analytic``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

RELU_SIGMA_W = math.sqrt(2.0)  # He gain: keeps activations O(1) through ReLU layers


class NTKLinear(nn.Module):
    """``y = sigma_w / sqrt(fan_in) * W x + sigma_b * b`` with W, b ~ N(0, 1).

    Shapes: x (N, fan_in) -> y (N, fan_out).
    """

    def __init__(
        self, fan_in: int, fan_out: int, sigma_w: float = RELU_SIGMA_W, sigma_b: float = 0.1
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fan_out, fan_in))
        self.bias = nn.Parameter(torch.randn(fan_out))
        self.w_scale = sigma_w / math.sqrt(fan_in)
        self.b_scale = sigma_b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.w_scale, self.bias * self.b_scale)


class NTKConv2d(nn.Module):
    """3x3 same-padding convolution in the NTK parameterisation (fan_in = C_in * 9).

    Shapes: x (N, C_in, H, W) -> (N, C_out, H, W).
    """

    def __init__(
        self, c_in: int, c_out: int, sigma_w: float = RELU_SIGMA_W, sigma_b: float = 0.1
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, 3, 3))
        self.bias = nn.Parameter(torch.randn(c_out))
        self.w_scale = sigma_w / math.sqrt(c_in * 9)
        self.b_scale = sigma_b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.w_scale, self.bias * self.b_scale, padding=1)


def _linear(fan_in: int, fan_out: int, ntk_init: bool, sigma_w: float = RELU_SIGMA_W) -> nn.Module:
    return NTKLinear(fan_in, fan_out, sigma_w) if ntk_init else nn.Linear(fan_in, fan_out)


def _conv(c_in: int, c_out: int, ntk_init: bool) -> nn.Module:
    return NTKConv2d(c_in, c_out) if ntk_init else nn.Conv2d(c_in, c_out, 3, padding=1)


class ConvStack(nn.Module):
    """L x [3x3 conv, ReLU], adaptive average pooling to ``pool`` x ``pool``, a linear read-out.

    Used on pixels (``in_channels=3``) and as the trainable head on frozen CLIP feature maps.
    Shapes: x (N, in_channels, H, W) -> logits (N, n_classes).
    """

    def __init__(
        self,
        in_channels: int,
        depth: int,
        width: int,
        n_classes: int,
        ntk_init: bool = False,
        pool: int = 4,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(depth):
            layers += [_conv(c, width, ntk_init), nn.ReLU()]
            c = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.readout = _linear(width * pool * pool, n_classes, ntk_init, sigma_w=1.0)
        self.depth, self.width, self.n_classes = depth, width, n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.pool(self.features(x)).flatten(1))


class PixelCNN(nn.Module):
    """The ``cnn`` source family: a ``ConvStack`` on centred pixels. x (N, 3, s, s) in [0, 1]."""

    def __init__(
        self, input_size: int, depth: int, width: int, n_classes: int, ntk_init: bool = False
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.net = ConvStack(3, depth, width, n_classes, ntk_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x - 0.5)


class PixelMLP(nn.Module):
    """The ``mlp`` source family: L hidden [linear, ReLU] layers then a linear read-out.

    x (N, 3, s, s) in [0, 1] -> logits (N, n_classes). With ``centre=False`` and ``ntk_init=True``
    it is exactly the network whose infinite-width NTK ``ntk.analytic.relu_mlp_ntk`` computes.
    """

    def __init__(
        self,
        input_size: int,
        depth: int,
        width: int,
        n_classes: int,
        ntk_init: bool = False,
        centre: bool = True,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.centre = centre
        dims = [3 * input_size * input_size] + [width] * depth
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [_linear(a, b, ntk_init), nn.ReLU()]
        self.hidden = nn.Sequential(*layers)
        self.readout = _linear(dims[-1], n_classes, ntk_init, sigma_w=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = (x - 0.5 if self.centre else x).flatten(1)
        return self.readout(self.hidden(h))


def count_params(module: nn.Module, trainable: bool | None = None) -> int:
    """Number of parameters (all, only trainable, or only frozen)."""
    return sum(
        p.numel() for p in module.parameters() if trainable is None or p.requires_grad == trainable
    )
