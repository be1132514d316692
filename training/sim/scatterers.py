"""The random scatterer field of a phantom, kept as its Fourier transform along depth."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import fft

__all__ = ["scatterer_spectrum", "fast_margin", "MIN_SOUND_SPEED_M_S"]

#: slowest speed of sound a probe may assume; sets how fine the scatterer grid must be.
MIN_SOUND_SPEED_M_S = 1450.0


def fast_margin(rows: int, margin: int) -> int:
    """The smallest margin ``>= margin`` for which ``rows + 2 * margin`` has only the prime factors
    2, 3 and 5, so that the FFTs along depth stay fast (a large prime factor slows them tenfold)."""
    while fft.next_fast_len(rows + 2 * margin, real=True) != rows + 2 * margin:
        margin += 1
    return margin


def scatterer_spectrum(rng: np.random.Generator, echo: np.ndarray, specular: Sequence[tuple[np.ndarray, float]],
                       px: float, max_mhz: float) -> tuple[np.ndarray, int]:
    """FFT along depth of ``sqrt(E) * u`` on the fine grid plus the specular reflectors.

    ``u`` are independent zero-mean, unit-variance scatterer amplitudes (uniform on 256
    levels, fast to draw); every resolution cell sums well over a hundred of them, so the
    echo is Gaussian (central limit theorem) and its envelope Rayleigh-distributed.

    The fine grid has ``a = floor(2 px k_max + 1) + 1`` samples per pixel, where
    ``k_max = 2 max_mhz / c_min`` (cycles/mm) is the highest two-way spatial frequency of a
    probe's centre frequency, so that the band ``k0 +- 1 / (2 px)`` lies below the Nyquist
    limit ``a / (2 px)``.  Only the bins up to that band are kept.

    Args:
        rng: source of randomness.
        echo: ``(rows, columns)`` echogenicity; rows are depth (or range) samples ``px`` apart.
        specular: ``(rows, strength)`` per interface: its row (float, NaN where absent) in
            every column and its amplitude.
        px: depth spacing of the rows (mm).
        max_mhz: highest centre frequency to support (MHz).

    Returns ``(spectrum, a)``: complex64 ``(columns, n_bins)`` and the oversampling factor.
    """
    ht, wt = echo.shape
    k_max = 2.0 * max_mhz / (MIN_SOUND_SPEED_M_S * 1e-3)  # cycles / mm
    upsample = math.floor(2.0 * px * k_max + 1.0) + 1
    n_fine = upsample * ht
    field_ = np.frombuffer(rng.bytes(wt * n_fine), np.int8).astype(np.float32).reshape(wt, n_fine)
    unit = 1.0 / math.sqrt((256.0**2 - 1.0) / 12.0)  # standard deviation of the 256 levels
    field_.reshape(wt, ht, upsample)[...] *= (np.sqrt(echo) * unit).T[:, :, None]
    cols = np.arange(wt)
    for curve, strength in specular:  # coherent reflectors: one per column, split between 2 samples
        pos = (np.asarray(curve, dtype=np.float64) + 0.5) * upsample
        there = np.isfinite(pos)
        pos = np.where(there, pos, -10.0)
        i0 = np.floor(pos).astype(np.int64)
        frac = (pos - i0).astype(np.float32)
        amp_spec = strength * math.sqrt(upsample)
        for idx, wgt in ((i0, 1.0 - frac), (i0 + 1, frac)):
            ok = there & (idx >= 0) & (idx < n_fine)
            field_[cols[ok], idx[ok]] += amp_spec * wgt[ok]
    n_bins = min(n_fine // 2 + 1, math.ceil((k_max + 1.0 / px) * ht * px) + 2)
    spectrum = fft.rfft(field_, axis=1, workers=1)[:, :n_bins]
    return spectrum.astype(np.complex64), upsample
