"""Optimized Bayesian non-local means (OBNLM) with the Pearson distance (Coupe et al. 2009)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from benchmarks.baselines.common import BaselineError, grey_levels, local_mean_var

__all__ = ["obnlm"]


@grey_levels
def obnlm(
    image: np.ndarray,
    search_radius: int = 5,
    patch_radius: int = 2,
    h: float = 1.0,
    gamma: float = 0.5,
    mean_ratio: float = 0.95,
    var_ratio: float = 0.5,
) -> np.ndarray:
    """Bayesian non-local means for speckle, after Coupe, Hellier, Kervrann & Barillot (2009). APPROXIMATION.

    Speckle model ``u = v + v^gamma eta``; the Pearson distance between the patches around
    pixels i and j (``(2 patch_radius + 1)^2`` pixels, mean over the patch) is
    ``d(i, j) = mean_k (u(i + k) - u(j + k))^2 / u(j + k)^(2 gamma)``, the weight
    ``w(i, j) = exp(-d(i, j) / h_eff^2)`` with ``h_eff^2 = h^2 * 2 sigma^2`` and ``sigma^2`` the
    median over the image of the local ``var / mean^(2 gamma)`` (5x5), so that two patches of
    the same tissue weigh about ``exp(-1/h^2)``.  ``v(i) = sum_j w(i, j) u(j) / sum_j w(i, j)``
    over the ``(2 search_radius + 1)^2`` search window; the centre pixel weighs as much as its
    best neighbour.  Pre-selection (the "optimized" part): patch j only counts when
    ``mean_ratio < mu_i / mu_j < 1 / mean_ratio`` and ``var_ratio < s2_i / s2_j < 1 / var_ratio``
    (patch means and variances).  Pixelwise, not blockwise, and ``h`` scaled by a median noise
    estimate rather than chosen per image.
    """
    if search_radius < 1 or patch_radius < 0 or h <= 0 or not (0 < mean_ratio < 1 and 0 < var_ratio < 1):
        raise BaselineError(
            f"obnlm: need search_radius >= 1, patch_radius >= 0, h > 0, ratios in (0, 1); got "
            f"{search_radius}, {patch_radius}, {h}, {mean_ratio}, {var_ratio}"
        )
    u = np.maximum(np.asarray(image, dtype=np.float64), 1.0)
    patch = 2 * patch_radius + 1
    pmean, pvar = local_mean_var(u, patch)
    pvar = np.maximum(pvar, 1e-6)
    mean, var = local_mean_var(u, 5)
    sigma2 = max(float(np.median(var / mean ** (2 * gamma))), 1e-6)
    h2 = h * h * 2.0 * sigma2
    r = search_radius
    padded = np.pad(u, r, mode="reflect")
    pm_pad, pv_pad = np.pad(pmean, r, mode="reflect"), np.pad(pvar, r, mode="reflect")
    rows, cols = u.shape
    acc = np.zeros_like(u)
    wsum = np.zeros_like(u)
    wmax = np.zeros_like(u)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy == 0 and dx == 0:
                continue
            window = (slice(r + dy, r + dy + rows), slice(r + dx, r + dx + cols))
            v = padded[window]
            mr, vr = pmean / pm_pad[window], pvar / pv_pad[window]
            keep = (mr > mean_ratio) & (mr < 1 / mean_ratio) & (vr > var_ratio) & (vr < 1 / var_ratio)
            d = ndimage.uniform_filter((u - v) ** 2 / v ** (2 * gamma), patch, mode="reflect")
            w = np.where(keep, np.exp(-d / h2), 0.0)
            acc += w * v
            wsum += w
            np.maximum(wmax, w, out=wmax)
    wmax = np.where(wsum > 0, wmax, 1.0)
    return (acc + wmax * u) / (wsum + wmax)
