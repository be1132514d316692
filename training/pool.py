"""History buffer of generated images for the discriminator (Shrivastava et al., CVPR 2017).

Mishra et al. (Sec. II-B): half of each D minibatch is high-quality images, a quarter is
fresh ``G(x)``, a quarter comes from a buffer of ``G(x)`` generated in earlier iterations;
after every iteration the buffer replaces old samples with current ones, as many as a
quarter of the minibatch.  Like CycleGAN's ``ImagePool``, but drawing and refreshing are two
separate calls so the trainer controls the proportions.

Randomness comes from the caller's ``numpy.random.Generator`` so a run seeded by its step
counter replays identically after a resume; :meth:`state_dict` holds the buffer itself.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["ImagePool"]


class ImagePool:
    """Fixed-capacity buffer of image tensors of one shape ``(1, H, W)``, kept on the CPU.

    Args:
        capacity: the most images the buffer holds (the paper does not state it).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"ImagePool capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._images: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self._images)

    def sample(self, n: int, rng: np.random.Generator) -> torch.Tensor | None:
        """``min(n, len(self))`` distinct stored images chosen uniformly, as ``(k, 1, H, W)``;
        ``None`` when the buffer is empty or ``n == 0``."""
        k = min(n, len(self._images))
        if k == 0:
            return None
        idx = rng.choice(len(self._images), size=k, replace=False)
        return torch.stack([self._images[i] for i in idx])

    def push(self, images: torch.Tensor, rng: np.random.Generator) -> None:
        """Store ``images`` ``(k, 1, H, W)``: appended while there is room, then each one
        replaces a uniformly chosen old entry."""
        for img in images.detach().to("cpu", torch.float32):
            if len(self._images) < self.capacity:
                self._images.append(img.clone())
            else:
                self._images[int(rng.integers(len(self._images)))] = img.clone()

    def state_dict(self) -> dict:
        """Capacity and contents, for checkpoints."""
        stored = torch.stack(self._images) if self._images else torch.empty(0)
        return {"capacity": self.capacity, "images": stored}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.capacity = int(state["capacity"])
        self._images = [img.clone() for img in state["images"]] if state["images"].numel() else []
