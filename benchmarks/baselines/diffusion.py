"""The anisotropic-diffusion family: one solver, five diffusion coefficients.

Solver (Yu & Acton 2002, eq. 58): explicit steps of ``du/dt = div(c grad u)`` with reflecting
(Neumann) borders,

    u <- u + (dt / 4) [c_S (u_S - u) + c (u_N - u) + c_E (u_E - u) + c (u_W - u)]

where ``u_N, u_S, u_W, u_E`` are the four neighbours and ``c_S, c_E`` the coefficient at the
south and east neighbours.  The flux between two pixels is the same seen from either side,
so the mean grey level is conserved; with ``0 <= c <= 1`` the scheme is stable for
``dt <= 1``.  Each method only supplies ``c`` from the current image:

* SRAD (Yu & Acton 2002): ``c = 1 / (1 + (q^2 - q0^2) / (q0^2 (1 + q0^2)))`` from the
  instantaneous coefficient of variation ``q``.
* DPAD (Aja-Fernandez & Alberola-Lopez 2006): Kuan's coefficient
  ``c = (1 + 1/C_i^2) / (1 + 1/C_n^2)`` with ``C_i^2`` the local var/mean^2 over a window and
  ``C_n^2`` the mode of its distribution.
* RTAD (after Deng et al. 2011, approximation): DPAD's coefficient from Rayleigh-trimmed
  local statistics.
* ADMSS (after Ramos-Llorden et al. 2015, approximation): the probability that a pixel is
  fully developed speckle, low-passed in time (the "memory").
* EPPRSRAD (after Mishra et al. 2017, approximation): SRAD's coefficient damped by an edge
  probability and by the pixel's relative echogenicity.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from benchmarks.baselines.common import (
    BaselineError,
    edge_probability,
    grey_levels,
    histogram_mode,
    local_cov2,
    local_mean_var,
    shift,
)

__all__ = ["diffuse", "srad", "dpad", "rtad", "admss", "epprsrad", "srad_q2", "kuan_coefficient"]

#: ``coefficient(u, step) -> c``: the diffusion coefficient for the current image.
Coefficient = Callable[[np.ndarray, int], np.ndarray]


def diffuse(u: np.ndarray, coefficient: Coefficient, steps: int, dt: float) -> np.ndarray:
    """Run ``steps`` explicit diffusion steps of size ``dt`` (see the module docstring).

    ``coefficient`` is clipped to [0, 1] at every step.
    """
    if steps < 0 or not 0 < dt <= 1:
        raise BaselineError(f"diffusion needs steps >= 0 and 0 < dt <= 1, got steps={steps}, dt={dt}")
    u = np.array(u, dtype=np.float64)
    for step in range(steps):
        c = np.clip(coefficient(u, step), 0.0, 1.0)
        flux = (
            shift(c, 1, 0) * (shift(u, 1, 0) - u)
            + c * (shift(u, -1, 0) - u)
            + shift(c, 0, 1) * (shift(u, 0, 1) - u)
            + c * (shift(u, 0, -1) - u)
        )
        u += 0.25 * dt * flux
    return u


def srad_q2(u: np.ndarray) -> np.ndarray:
    """Yu & Acton's instantaneous coefficient of variation squared (eq. 31).

    ``q^2 = (1/2 (|grad u|/u)^2 - 1/16 (lap u / u)^2) / (1 + 1/4 lap u / u)^2`` with one-sided
    differences for ``|grad u|^2`` and the 4-neighbour Laplacian; ``u`` floored at 1.
    """
    v = np.maximum(u, 1.0)
    n, s, w, e = shift(v, -1, 0), shift(v, 1, 0), shift(v, 0, -1), shift(v, 0, 1)
    grad2 = ((s - v) ** 2 + (v - n) ** 2 + (e - v) ** 2 + (v - w) ** 2) / (v * v)
    lap = (n + s + w + e - 4.0 * v) / v
    return np.maximum(0.5 * grad2 - lap * lap / 16.0, 0.0) / (1.0 + 0.25 * lap) ** 2


def _srad_coefficient(q2: np.ndarray, q02: float) -> np.ndarray:
    """``c(q) = 1 / (1 + (q^2 - q0^2) / (q0^2 (1 + q0^2)))`` (Yu & Acton eq. 33)."""
    q02 = max(q02, 1e-8)
    return 1.0 / (1.0 + (q2 - q02) / (q02 * (1.0 + q02)))


def kuan_coefficient(ci2: np.ndarray, cn2: float) -> np.ndarray:
    """Kuan-filter diffusion coefficient ``c = (1 + 1/C_i^2) / (1 + 1/C_n^2)`` (DPAD, eq. 13)."""
    cn2 = max(cn2, 1e-8)
    return (1.0 + 1.0 / np.maximum(ci2, 1e-8)) / (1.0 + 1.0 / cn2)


@grey_levels
def srad(image: np.ndarray, steps: int = 100, dt: float = 0.5, window: int = 5) -> np.ndarray:
    """Speckle reducing anisotropic diffusion (Yu & Acton 2002).

    ``q0^2(t)``, the speckle scale of a homogeneous area at time t, is estimated at each step
    as the median over the image of the local var/mean^2 in ``window x window`` boxes.
    """
    return diffuse(
        image, lambda u, _: _srad_coefficient(srad_q2(u), float(np.median(local_cov2(u, window)))), steps, dt
    )


@grey_levels
def dpad(image: np.ndarray, steps: int = 100, dt: float = 0.5, window: int = 5) -> np.ndarray:
    """Detail preserving anisotropic diffusion (Aja-Fernandez & Alberola-Lopez 2006).

    ``C_i^2`` = local var/mean^2 over ``window x window``; ``C_n^2`` = its mode (histogram of
    256 bins), re-estimated at every step; ``c = (1 + 1/C_i^2) / (1 + 1/C_n^2)``.
    """

    def coefficient(u: np.ndarray, _: int) -> np.ndarray:
        ci2 = local_cov2(u, window)
        return kuan_coefficient(ci2, histogram_mode(ci2))

    return diffuse(image, coefficient, steps, dt)


def _rayleigh_trimmed_cov2(u: np.ndarray, window: int, trim: float) -> np.ndarray:
    """Local var/mean^2 over the window's samples that a Rayleigh fit does not reject.

    Per window: ``s^2 = sum v^2 / (2 n)`` (Rayleigh maximum likelihood); keep samples inside
    ``[F^-1(trim/2), F^-1(1 - trim/2)]`` with ``F^-1(p) = s sqrt(-2 ln(1 - p))``.
    """
    r = window // 2
    win = sliding_window_view(np.pad(u, r, mode="reflect"), (window, window)).reshape(*u.shape, -1)
    scale = np.sqrt(np.mean(win * win, axis=-1) / 2.0)[..., None]
    lo = scale * np.sqrt(-2.0 * np.log1p(-trim / 2.0))
    hi = scale * np.sqrt(-2.0 * np.log(trim / 2.0))
    keep = (win >= lo) & (win <= hi)
    n = np.maximum(keep.sum(axis=-1), 1)
    mean = np.where(keep, win, 0.0).sum(axis=-1) / n
    var = np.where(keep, (win - mean[..., None]) ** 2, 0.0).sum(axis=-1) / n
    return var / np.maximum(mean, 1.0) ** 2


@grey_levels
def rtad(
    image: np.ndarray, steps: int = 60, dt: float = 0.5, window: int = 5, trim: float = 0.1
) -> np.ndarray:
    """Rayleigh-trimmed anisotropic diffusion, after Deng, Wang & Shen (2011). APPROXIMATION.

    DPAD's coefficient with ``C_i^2`` from :func:`_rayleigh_trimmed_cov2` (the ``trim``
    fraction of the fitted Rayleigh's mass outside the kept interval) and ``C_n^2`` their
    median.  The trimming follows the paper's idea; the exact coupling into the diffusion
    is not taken from it.
    """

    def coefficient(u: np.ndarray, _: int) -> np.ndarray:
        ci2 = _rayleigh_trimmed_cov2(u, window, trim)
        return kuan_coefficient(ci2, float(np.median(ci2)))

    return diffuse(image, coefficient, steps, dt)


@grey_levels
def admss(
    image: np.ndarray,
    steps: int = 60,
    dt: float = 0.5,
    window: int = 5,
    memory: float = 4.0,
    spread: float = 1.0,
) -> np.ndarray:
    """Anisotropic diffusion with memory based on speckle statistics, after Ramos-Llorden et al. (2015). APPROXIMATION.

    Speckle statistics: ``C_i^2`` = local var/mean^2 over ``window x window``, ``C_n^2`` its
    mode (the speckle-only value); the probability that a pixel is pure speckle is
    ``p = exp(-z^2 / 2)`` with ``z = max(C_i^2 - C_n^2, 0) / (spread C_n^2)``, i.e. a
    Gaussian tolerance of ``spread`` noise levels above the speckle-only value.  Memory:
    ``c <- c + (dt / memory) (p - c)``, starting from ``c = p``.  The published method uses
    a tensor coefficient and a Gamma-mixture tissue model; this is a scalar stand-in.
    """
    state: dict[str, np.ndarray] = {}

    def coefficient(u: np.ndarray, _: int) -> np.ndarray:
        ci2 = local_cov2(u, window)
        cn2 = max(histogram_mode(ci2), 1e-8)
        p = np.exp(-0.5 * (np.maximum(ci2 - cn2, 0.0) / (cn2 * spread)) ** 2)
        c = state.get("c", p)
        state["c"] = c + (dt / memory) * (p - c)
        return state["c"]

    return diffuse(image, coefficient, steps, dt)


@grey_levels
def epprsrad(
    image: np.ndarray,
    steps: int = 100,
    dt: float = 0.5,
    window: int = 5,
    edge_sigma: float = 1.5,
    relativity: float = 2.0,
) -> np.ndarray:
    """Edge probability and pixel relativity based SRAD, after Mishra et al. (2017). APPROXIMATION.

    ``c = c_SRAD(q, q0) (1 - P_edge) (1 - (mu / 255)^relativity)``: SRAD's coefficient
    (q0 as in :func:`srad`), damped where :func:`~benchmarks.baselines.common.edge_probability`
    (Gaussian gradient at ``edge_sigma``) is high and where the local mean ``mu`` is bright,
    so that high-echogenicity tissue is filtered less, as the method intends.
    """

    def coefficient(u: np.ndarray, _: int) -> np.ndarray:
        mean, _var = local_mean_var(u, window)
        c = _srad_coefficient(srad_q2(u), float(np.median(local_cov2(u, window))))
        return c * (1.0 - edge_probability(u, edge_sigma)) * (1.0 - np.clip(mean / 255.0, 0, 1) ** relativity)

    return diffuse(image, coefficient, steps, dt)
