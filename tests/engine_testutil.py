"""Shared helpers of the engine tests: a small, real DRNN checkpoint and test frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_checkpoint(path: Path, seed: int = 0) -> Path:
    """Save a randomly initialised DRNN(width=8, blocks=2) whose batch norms carry non-trivial
    running statistics and affine terms (so folding them is really tested)."""
    import torch

    from training.checkpoint import CKPT_FORMAT, atomic_save
    from training.models import DRNN

    gen = torch.Generator().manual_seed(seed)
    model = DRNN(width=8, blocks=2)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * (2.0 / module.weight[0].numel()) ** 0.5)
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
                module.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                module.bias.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
    payload = {"format": CKPT_FORMAT, "generator": model.state_dict(), "generator_config": model.config}
    return atomic_save(payload, path)


def random_frames(count: int, shape: tuple[int, int] = (48, 64), seed: int = 0) -> list[np.ndarray]:
    """``count`` uint8 frames of smooth random content (a blurred field plus speckle-like noise)."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        coarse = rng.random((shape[0] // 8 + 2, shape[1] // 8 + 2))
        field = np.kron(coarse, np.ones((8, 8)))[: shape[0], : shape[1]]
        noisy = field * rng.rayleigh(0.8, size=shape)
        frames.append(np.clip(noisy * 200, 0, 255).astype(np.uint8))
    return frames
