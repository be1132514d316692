"""The filters a user tries first, straight from OpenCV (8-bit in, 8-bit out)."""

from __future__ import annotations

import cv2
import numpy as np

from benchmarks.baselines.common import grey_levels

__all__ = ["median", "bilateral", "nlm"]


def _u8(u: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(u), 0, 255).astype(np.uint8)


@grey_levels
def median(image: np.ndarray, ksize: int = 5) -> np.ndarray:
    """Median of the ``ksize x ksize`` box (``cv2.medianBlur``)."""
    return cv2.medianBlur(_u8(image), ksize).astype(np.float64)


@grey_levels
def bilateral(
    image: np.ndarray, diameter: int = 9, sigma_color: float = 40.0, sigma_space: float = 4.0
) -> np.ndarray:
    """Bilateral filter (``cv2.bilateralFilter``): weights ``exp(-d^2/2 s_space^2 - dI^2/2 s_color^2)``."""
    return cv2.bilateralFilter(_u8(image), diameter, sigma_color, sigma_space).astype(np.float64)


@grey_levels
def nlm(image: np.ndarray, h: float = 15.0, template_window: int = 7, search_window: int = 21) -> np.ndarray:
    """Non-local means of Buades et al. (``cv2.fastNlMeansDenoising``), ``h`` in grey levels."""
    return cv2.fastNlMeansDenoising(_u8(image), None, h, template_window, search_window).astype(np.float64)
