"""The deployable form of the DRNN: batch norm folded, uint8 frame in, uint8 frame out.

Every backend shares one contract (see :mod:`engine.base`).  :class:`FrameModel` puts the
pre- and post-processing inside the network so that the ONNX export, the TensorRT engine and
the torch backend all compute exactly::

    x   = float(frame) / 255                      (H, W) uint8 -> (1, 1, H, W) in [0, 1]
    x   = fill(x)                                 the black outside of a sector: nearby tissue
    x_c = mirror(x, c)                            c = min(context, H - 1, W - 1) pixels on every side
    y   = DRNN(x_c)[c:c + H, c:c + W]             (1, 1, H, W), computed in ``dtype``
    out = uint8(round(255 * clip(float32(y), 0, 1)))
    out = 0 where the frame is 0 over the whole BLACK x BLACK window around the pixel

The second line is the edge context.  A convolutional network pads each layer with zeros, so
next to the frame's edge it sees darkness that is not there, and the shipped DRNN drew seams
there: its outer two rows up to 8 grey levels darker (version 3), and 18 for a fine-tune with
more vessel contrast, than the same pixels inside a larger frame (``benchmarks.edges``).  With
the frame mirrored (``reflect``: the edge pixel is not repeated) by the network's receptive-field
radius the zero padding cannot reach the frame, and those seams fell to 2.4 and 3.8 grey levels,
while the validation figures stayed (2026-11-26, model card).  It costs
``(H + 2c)(W + 2c) / (H W) - 1`` more compute: +40 % at 256x256, +20 % at 512x512, +7 % at
1080x1920 with ``c = 24``.

The fill does for a sector's border what the mirror does for the frame's: the black outside of
a sector scan is as false a darkness as zero padding, and version 4 drew a bright rim along a
sector's straight edges (its outer 3 pixels 16.8 grey levels above those 6-12 pixels inside, 8
validation sector scans; -1.6 with the fill, vessel CNR and log-correlation there within 0.01).
Outside pixels are the black ones with an all-black straight path along their row or column to
the frame's border (four running sums of the lit pixels) that lie within ``BLACK // 2`` pixels
of an all-black ``BLACK x BLACK`` window, so neither the black lumen of a vessel inside tissue
nor a black speckle pixel on the border is one; they take the mean of their known neighbours in
a 9x9 box, 4 pixels further each step, for ``ceil(context / 4)`` steps.  A frame without such
pixels is unchanged.

The last line keeps what the scanner leaves black black: the surroundings of a sector scan,
letterbox bars.  The shipped DRNN never saw such regions in training and lifts them to about
7 grey levels (10 before its output calibration; measured outside the fans of 5 simulated sector
scans, 2026-11-26).  A whole window must be black, so the isolated black pixels of anechoic
tissue (17 % of the vessel pixels of simulated low-probe frames are 0) are despeckled as usual.

The scale back to grey levels is done in float32 even for a float16 network, so the only
float16 error is the network's own.  This module imports torch: load it only where torch is.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from engine.base import BLACK

__all__ = ["BLACK", "FrameModel", "fold_batchnorm", "count_batchnorm", "receptive_radius", "edge_context",
           "black_windows", "fill_background"]


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every ``Conv2d -> BatchNorm2d`` pair fused into one conv.

    For a conv ``W, b`` followed by batch norm ``(gamma, beta, mu, var, eps)``, with
    ``s = gamma / sqrt(var + eps)`` per output channel: ``W' = s * W`` and ``b' = s * (b - mu) + beta``
    (``b = 0`` when the conv has no bias).  The batch norm becomes ``nn.Identity``.  Pairs are found
    inside ``nn.Sequential`` containers, which is where the DRNN keeps them.  ``model`` is unchanged.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        for (_, first), (bn_name, second) in zip(children, children[1:], strict=False):
            if isinstance(first, nn.Conv2d) and isinstance(second, nn.BatchNorm2d):
                fused = fuse_conv_bn_eval(first, second)
                first.weight, first.bias = fused.weight, fused.bias
                setattr(module, bn_name, nn.Identity())
    return folded


def count_batchnorm(model: nn.Module) -> int:
    """Number of ``BatchNorm2d`` modules left in ``model``."""
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def receptive_radius(model: nn.Module) -> int:
    """``sum over Conv2d of dilation * (kernel - 1) / 2`` (the larger axis): the receptive-field
    radius of a chain of stride-1 convolutions, an upper bound where branches run side by side
    (the DRNN: 3 (stem) + 18 x 1 (blocks) + 0 (1x1 shortcuts) + 1 (head) = 22 pixels)."""
    return sum(
        max(d * (k - 1) // 2 for k, d in zip(m.kernel_size, m.dilation, strict=True))
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    )


def edge_context(model: nn.Module) -> int:
    """The default edge context of :class:`FrameModel`: :func:`receptive_radius` rounded up to a
    multiple of 8 pixels (so frames of a multiple of 8 stay one after padding): 24 for the DRNN."""
    return -(-receptive_radius(model) // 8) * 8


def black_windows(frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lit, background)`` of ``frame`` (H, W), both (1, 1, H, W): its non-zero pixels (float32
    0/1) and the pixels whose whole ``BLACK x BLACK`` window is black (bool)."""
    lit = (frame > 0).to(torch.float32)[None, None]
    return lit, nn.functional.max_pool2d(lit, BLACK, stride=1, padding=BLACK // 2) <= 0


def fill_background(x: torch.Tensor, lit: torch.Tensor, background: torch.Tensor, steps: int) -> torch.Tensor:
    """``x`` (1, 1, H, W) with the outside of its frame (module docstring; ``lit`` and
    ``background`` from :func:`black_windows`) filled from nearby tissue: each step sets the
    unknown pixels with a known one in their 9x9 box to the mean of those."""
    straight = (
        (lit.cumsum(-1) == 0)
        | (lit.flip(-1).cumsum(-1).flip(-1) == 0)
        | (lit.cumsum(-2) == 0)
        | (lit.flip(-2).cumsum(-2).flip(-2) == 0)
    )
    near = nn.functional.max_pool2d(background.to(torch.float32), BLACK, stride=1, padding=BLACK // 2) > 0
    outside = straight & near
    known = (~outside).to(x.dtype)
    v = x * known
    for _ in range(steps):
        total = nn.functional.avg_pool2d(v, 9, stride=1, padding=4, count_include_pad=False)
        share = nn.functional.avg_pool2d(known, 9, stride=1, padding=4, count_include_pad=False)
        grow = (known == 0) & (share > 0)
        v = torch.where(grow, total / share.clamp_min(1e-3), v)
        known = torch.where(grow, torch.ones_like(known), known)
    return v


class FrameModel(nn.Module):
    """``uint8 (H, W)`` frame in, ``uint8 (H, W)`` despeckled frame out (formula in the module doc).

    Args:
        net: the DRNN (or any ``(1, 1, H, W) -> (1, 1, H, W)`` network with outputs in [0, 1]);
            it is copied, batch norm folded and cast to ``dtype``.
        dtype: the network's compute precision, ``torch.float32`` or ``torch.float16``.
        fold: fold batch norm (the deployable form); ``False`` keeps the network as trained, for
            the eager reference of the latency benchmarks.
        context: pixels of mirrored edge context on every side (module docstring); ``None``:
            :func:`edge_context` of ``net``; 0: none (zero padding reaches the frame's edge).
    """

    def __init__(
        self, net: nn.Module, dtype: torch.dtype = torch.float32, fold: bool = True, context: int | None = None
    ) -> None:
        super().__init__()
        if dtype not in (torch.float32, torch.float16):
            raise ValueError(f"FrameModel dtype must be float32 or float16, got {dtype}")
        if context is not None and context < 0:
            raise ValueError(f"FrameModel context must be >= 0 pixels, got {context}")
        self.dtype = dtype
        self.context = edge_context(net) if context is None else int(context)
        self.net = (fold_batchnorm(net) if fold else copy.deepcopy(net).eval()).to(dtype)

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        h, w = frame.shape
        x = frame.to(self.dtype).div(255.0).unsqueeze(0).unsqueeze(0)
        lit, background = black_windows(frame)
        if self.context:  # symbolic under torch.export: one graph for every frame size
            x = fill_background(x, lit, background, -(-self.context // 4))
            c = torch.sym_min(self.context, torch.sym_min(h - 1, w - 1))
            x = nn.functional.pad(x, (c, c, c, c), mode="reflect")
            y = self.net(x)[..., c : c + h, c : c + w]
        else:
            y = self.net(x)
        y = y.squeeze(0).squeeze(0).to(torch.float32)
        out = y.clamp(0.0, 1.0).mul(255.0).round()
        return torch.where(background[0, 0], torch.zeros_like(out), out).to(torch.uint8)
