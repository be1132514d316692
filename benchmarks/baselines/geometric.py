"""Geometric filters: the squeeze box filter (SBF) and the edge-aware geometric filter (EAGF).

Both nudge pixels that stand out from their neighbourhood, a little at a time, over many
iterations, so that speckle peaks and pits are flattened while larger structures stay.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from benchmarks.baselines.common import BaselineError, edge_probability, grey_levels, shift

__all__ = ["sbf", "eagf", "crimmins_pass"]

_RING = np.ones((3, 3), dtype=bool)
_RING[1, 1] = False

#: the four neighbour directions of the geometric filter: vertical, horizontal, two diagonals.
_DIRECTIONS = ((1, 0), (0, 1), (1, 1), (1, -1))


@grey_levels
def sbf(image: np.ndarray, iterations: int = 50) -> np.ndarray:
    """Squeeze box filter, after Tay, Garson, Acton & Hossack (2010). APPROXIMATION.

    Each iteration finds the local extrema (pixels ``>=`` or ``<=`` all 8 neighbours, and not
    equal to all of them) and replaces each with the mean of its 8 neighbours; every other
    pixel stays.  Repeating this squeezes the box of local grey levels toward the local
    mean.  The neighbourhood (3x3) and the iteration count are assumed, not from the paper.
    """
    if iterations < 0:
        raise BaselineError(f"sbf: iterations must be >= 0, got {iterations}")
    u = np.array(image, dtype=np.float64)
    for _ in range(iterations):
        hi = ndimage.maximum_filter(u, footprint=_RING, mode="reflect")
        lo = ndimage.minimum_filter(u, footprint=_RING, mode="reflect")
        outlier = ((u >= hi) | (u <= lo)) & (hi > lo)
        if not outlier.any():
            break
        mean8 = (ndimage.uniform_filter(u, 3, mode="reflect") * 9.0 - u) / 8.0
        u = np.where(outlier, mean8, u)
    return u


def crimmins_pass(u: np.ndarray, step: np.ndarray | float) -> np.ndarray:
    """One pass of Crimmins' (1985) geometric speckle filter, in float grey levels.

    For each of four directions, with ``a`` and ``c`` the two neighbours of pixel ``b`` on
    that line, dark pixels are raised by ``step`` under each of four rules in turn
    (``a >= b + 2 step``; ``a > b and c >= b``; ``c > b and a >= b``; ``c >= b + 2 step``),
    then light pixels are lowered by the mirrored rules (all inequalities reversed).  Each
    rule is applied to the whole image at once.  ``step`` may be an array: a per-pixel step
    size (0 freezes a pixel).
    """
    u = np.array(u, dtype=np.float64)
    for dy, dx in _DIRECTIONS:
        for sign in (1.0, -1.0):  # +1: raise dark pixels, -1: lower light pixels
            v = sign * u
            for rule in range(4):
                a, c = sign * shift(u, -dy, -dx), sign * shift(u, dy, dx)
                if rule == 0:
                    cond = a >= v + 2 * np.asarray(step)
                elif rule == 1:
                    cond = (a > v) & (c >= v)
                elif rule == 2:
                    cond = (c > v) & (a >= v)
                else:
                    cond = c >= v + 2 * np.asarray(step)
                v = v + np.where(cond, step, 0.0)
                u = sign * v
    return u


@grey_levels
def eagf(image: np.ndarray, iterations: int = 10, step: float = 1.0, edge_sigma: float = 1.5) -> np.ndarray:
    """Edge-aware geometric filter, after Mishra, Chaudhury, Sarkar & Soin (2017). APPROXIMATION.

    ``iterations`` passes of :func:`crimmins_pass` whose per-pixel step is
    ``step * (1 - P_edge)``, with ``P_edge`` the soft edge map of the input
    (:func:`~benchmarks.baselines.common.edge_probability` at ``edge_sigma``): flat speckle is
    flattened at the full rate, edges are left almost untouched.  The published filter's
    exact edge term is not reproduced.
    """
    if iterations < 0 or step <= 0:
        raise BaselineError(f"eagf: need iterations >= 0 and step > 0, got {iterations}, {step}")
    u = np.array(image, dtype=np.float64)
    per_pixel = step * (1.0 - edge_probability(u, edge_sigma))
    for _ in range(iterations):
        u = crimmins_pass(u, per_pixel)
    return u
