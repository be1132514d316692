"""Shared pieces of the baseline filters: the dtype contract, local statistics, shifts.

Every baseline takes a grey-scale ``(H, W)`` image, ``uint8`` (0..255) or float (0..1, the
DRNN's scale), and returns the same shape and dtype.  Inside, every method works on float64
grey levels 0..255, so that its parameters (thresholds, smoothing strengths) mean the same
for both input types; :func:`grey_levels` does the two conversions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from scipy import ndimage

__all__ = [
    "BaselineError",
    "grey_levels",
    "shift",
    "local_mean_var",
    "local_cov2",
    "histogram_mode",
    "edge_probability",
]


class BaselineError(ValueError):
    """A baseline filter cannot take this input (not 2-D, not numeric, bad parameter)."""


def grey_levels(func: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """Wrap ``func(u: float64 grey levels 0..255, **params) -> float64`` in the dtype contract.

    ``uint8`` in: ``u = image``; out: ``clip(rint(result), 0, 255)`` as ``uint8``.
    Float in (0..1): ``u = 255 * image``; out: ``result / 255`` in the input's float dtype.
    """

    @functools.wraps(func)
    def wrapper(image: np.ndarray, **params: object) -> np.ndarray:
        arr = np.asarray(image)
        if arr.ndim != 2:
            raise BaselineError(f"{func.__name__}: image must be grey-scale (H, W), got shape {arr.shape}")
        if arr.dtype == np.uint8:
            out = func(arr.astype(np.float64), **params)
            return np.clip(np.rint(out), 0, 255).astype(np.uint8)
        if np.issubdtype(arr.dtype, np.floating):
            out = func(arr.astype(np.float64) * 255.0, **params)
            return (out / 255.0).astype(arr.dtype)
        raise BaselineError(f"{func.__name__}: image dtype must be uint8 or float, got {arr.dtype}")

    return wrapper


def shift(u: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``v[i, j] = u[i + dy, j + dx]`` with edge replication outside the image."""
    r = max(abs(dy), abs(dx))
    if r == 0:
        return u
    p = np.pad(u, r, mode="edge")
    h, w = u.shape
    return p[r + dy : r + dy + h, r + dx : r + dx + w]


def local_mean_var(u: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population variance over the ``window x window`` box around each pixel (reflect)."""
    mean = ndimage.uniform_filter(u, window, mode="reflect")
    var = ndimage.uniform_filter(u * u, window, mode="reflect") - mean * mean
    return mean, np.maximum(var, 0.0)


def local_cov2(u: np.ndarray, window: int) -> np.ndarray:
    """Squared local coefficient of variation ``C^2 = var / mean^2`` (mean floored at 1 grey level)."""
    mean, var = local_mean_var(u, window)
    return var / np.maximum(mean, 1.0) ** 2


def histogram_mode(values: np.ndarray, bins: int = 256) -> float:
    """Mode of ``values``: the centre of the fullest of ``bins`` bins over [0, 99th percentile]."""
    hi = float(np.percentile(values, 99))
    if hi <= 0:
        return float(np.median(values))
    counts, edges = np.histogram(values, bins=bins, range=(0.0, hi))
    k = int(np.argmax(counts))
    return float(0.5 * (edges[k] + edges[k + 1]))


def edge_probability(u: np.ndarray, sigma: float = 1.5, k: float = 2.0) -> np.ndarray:
    """Soft edge map ``P = 1 - exp(-(|grad G_sigma * u| / (k * median|grad G_sigma * u|))^2)`` in [0, 1)."""
    g = ndimage.gaussian_gradient_magnitude(u, sigma, mode="reflect")
    scale = k * max(float(np.median(g)), 1e-6)
    return 1.0 - np.exp(-((g / scale) ** 2))
