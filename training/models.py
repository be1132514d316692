"""The despeckling residual network (generator) and its discriminator.

Both follow Mishra et al., "Unsupervised Despeckling", Section II-A, Figs. 1-2.

DRNN (generator G), Fig. 1::

    x (N,1,H,W) in [0, 1]
    -> Conv 7x7, 64 ch -> BatchNorm -> ReLU                        (stem)
    -> 6 x ResBlock                                               (body)
         ResBlock(h) = B(h) + S(h)
         B = 3 x [Conv 3x3, 64 ch -> BatchNorm -> ReLU]
         S = Conv 1x1, 64 ch  (the "weighted shortcut": a learned linear map)
    -> Conv 3x3, 1 ch -> sigmoid                                  (head)
    -> x_hat (N,1,H,W) in [0, 1]

Every convolution uses "same" padding and stride 1, so the network is fully
convolutional: any H x W in, the same H x W out.  The paper does not name the
output non-linearity; a sigmoid keeps the output in [0, 1] as the data are.

Cost: 49*64 + 18*9*64*64 + 6*64*64 + 9*64 multiply-adds per pixel, i.e. about
1.39 MFLOP per pixel (2 FLOP per multiply-add), about 91 GFLOP for a 256x256 frame;
see :func:`drnn_flops`.

Discriminator D, Fig. 2: 3x3 convolutions with LeakyReLU(0.2); stride-2
convolutions instead of pooling, the channel count doubled after each one;
global average pooling after the last convolution; one fully connected unit
with a sigmoid.  Any input size of at least 2**(number of stride-2 layers)
pixels works.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from training.config import ConfigError, DiscriminatorConfig, ModelConfig, check_model, parse_layer

__all__ = ["DRNN", "Discriminator", "ResBlock", "drnn_flops", "DEFAULT_D_LAYERS"]

#: Discriminator layout: width of each 3x3 convolution, "s" marks stride 2.
DEFAULT_D_LAYERS: tuple[str, ...] = DiscriminatorConfig.layers


_DEFAULT_DRNN_CONFIG = dataclasses.asdict(ModelConfig())


def _conv_bn_relu(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ResBlock(nn.Module):
    """``y = B(x) + S(x)``: three conv-BN-ReLU layers plus a learned 1x1 shortcut."""

    def __init__(self, channels: int = 64, convs: int = 3, kernel: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(*[_conv_bn_relu(channels, channels, kernel) for _ in range(convs)])
        self.shortcut = nn.Conv2d(channels, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class DRNN(nn.Module):
    """Despeckling residual network (the generator).

    Args:
        width: channels of every hidden convolution (paper: 64).
        blocks: number of ResNet blocks (paper: 6).
        convs_per_block: convolutions in each block (paper: 3).
        stem_kernel: kernel size of the first convolution (paper: 7).
        head_kernel: kernel size of the final convolution (paper: not stated; 3).

    Input and output: ``(N, 1, H, W)`` float tensors in [0, 1], any H and W.
    """

    def __init__(
        self,
        width: int = ModelConfig.width,
        blocks: int = ModelConfig.blocks,
        convs_per_block: int = ModelConfig.convs_per_block,
        stem_kernel: int = ModelConfig.stem_kernel,
        head_kernel: int = ModelConfig.head_kernel,
    ) -> None:
        super().__init__()
        check_model(ModelConfig(width=width, blocks=blocks, convs_per_block=convs_per_block, stem_kernel=stem_kernel,
                                head_kernel=head_kernel), "DRNN")
        self.config = {
            "width": width,
            "blocks": blocks,
            "convs_per_block": convs_per_block,
            "stem_kernel": stem_kernel,
            "head_kernel": head_kernel,
        }
        self.stem = _conv_bn_relu(1, width, stem_kernel)
        self.blocks = nn.Sequential(*[ResBlock(width, convs_per_block) for _ in range(blocks)])
        self.head = nn.Conv2d(width, 1, head_kernel, padding=head_kernel // 2)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid output ``z = head(blocks(stem(x)))``, shape ``(N, 1, H, W)``."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"DRNN expects a (N, 1, H, W) tensor, got shape {tuple(x.shape)}")
        return self.head(self.blocks(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


def drnn_flops(height: int, width_px: int, config: dict | None = None) -> float:
    """FLOPs (2 per multiply-add) of one DRNN forward pass on an ``height x width_px`` frame.

    Counts convolutions only (batch norm folds into them at inference):
    ``2 * H * W * (k_s^2 * C + B * (L * 9 * C^2 + C^2) + k_h^2 * C)``.
    """
    cfg = {**_DEFAULT_DRNN_CONFIG, **(config or {})}
    c, k_s, k_h = cfg["width"], cfg["stem_kernel"], cfg["head_kernel"]
    per_pixel = k_s * k_s * c + cfg["blocks"] * (cfg["convs_per_block"] * 9 * c * c + c * c) + k_h * k_h * c
    return 2.0 * height * width_px * per_pixel


class Discriminator(nn.Module):
    """CNN that scores how much an image looks like a high-quality-probe image.

    Args:
        layers: width of each 3x3 convolution in order; a trailing ``"s"`` makes it
            stride 2.  Default ``64-64s-128-128s-256-256s-512-512s`` (after
            Radford et al., as the paper cites).
        negative_slope: LeakyReLU slope (paper: 0.2).

    ``forward`` returns ``D(x) = sigmoid(logits(x))`` of shape ``(N, 1)``; train
    with :meth:`logits` and ``BCEWithLogitsLoss`` for numerical stability.

    Convolutions start from He initialisation for the LeakyReLU (weights
    ``N(0, 2 / ((1 + a^2) k^2 C_in))``, ``a`` the negative slope, biases 0), which keeps the
    activations' scale through the eight layers; the paper does not state one.  With
    PyTorch's default (``std = 1 / sqrt(3 k^2 C_in)``) the default D's last features carry
    a few per cent of the input's standard deviation, its output is nearly the same for every
    image, and on the simulator's crops it stayed at chance for 60 Adam steps at lr 2e-4,
    where this start began to separate the two probes' crops after about 90
    (``weights/MODEL_CARD.md``, unsupervised variant).
    """

    def __init__(
        self, layers: Sequence[str] = DEFAULT_D_LAYERS, negative_slope: float = DiscriminatorConfig.negative_slope
    ) -> None:
        super().__init__()
        if not layers:
            raise ValueError("Discriminator needs at least one layer")
        convs: list[nn.Module] = []
        cin = 1
        for spec in layers:
            try:
                cout, stride = parse_layer(spec)
            except ConfigError as exc:
                raise ValueError(f"bad Discriminator layer spec {exc}") from None
            conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
            nn.init.kaiming_normal_(conv.weight, a=negative_slope, nonlinearity="leaky_relu")
            nn.init.zeros_(conv.bias)
            convs += [conv, nn.LeakyReLU(negative_slope, inplace=True)]
            cin = cout
        self.layers = tuple(str(s) for s in layers)
        self.features = nn.Sequential(*convs)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, 1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid score, shape ``(N, 1)``."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"Discriminator expects a (N, 1, H, W) tensor, got shape {tuple(x.shape)}")
        return self.fc(self.pool(self.features(x)).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))
