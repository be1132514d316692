"""B-mode image formation: one probe images one phantom.

The chain follows a scanner's, in the order of the physics:

1. **Pulse-echo along depth.**  The radio-frequency (RF) echo of a beam line is the scatterer
   field convolved with the pulse, a Gaussian-windowed cosine at the centre frequency ``f0``.
   In depth (two-way travel) the pulse has spatial frequency ``k0 = 2 f0 / c`` (cycles/mm) and a
   Gaussian spectrum ``P(k) = exp(-(k - k0)^2 / (2 s^2)) + exp(-(k + k0)^2 / (2 s^2))`` with
   ``s = B k0 / (2 sqrt(2 ln 2))`` (``B``: -6 dB fractional bandwidth).  The convolution is a
   product in the Fourier domain of the phantom's fine scatterer grid.
2. **Envelope detection.**  The analytic signal (Hilbert transform along depth) keeps the
   positive frequencies only; shifting them by ``k0`` to base band and keeping ``Ht`` bins
   around it, tapered by a Hann window (the anti-aliasing low-pass of the display grid, cut-off
   ``1 / (2 pixel)``), gives the complex envelope (IQ) at one sample per pixel.  ``|IQ|`` is the
   envelope of the RF line.
3. **Lateral beam.**  Every depth row is convolved with the two-way lateral beam profile, a
   Gaussian (apodised aperture) of FWHM ``lambda z / D_eff`` widened away from the focus
   (:meth:`ProbeModel.lateral_fwhm_mm`), normalised to unit energy.  The width changes with
   depth: the image is filtered with the beams of a few depth bands and blended linearly
   between band centres.  (Lateral and depth filtering commute up to that slow variation.)
4. **Attenuation, noise, TGC.**  Echoes fall by ``2 f0 * integral(alpha dz)`` dB along the beam
   (``alpha`` the tissue's attenuation map, dB/cm/MHz, ``z`` in cm), so tissue behind a vessel
   or cyst is brighter; electronic noise (complex Gaussian at ``noise_db``) is added; the
   time-gain compensation multiplies back by ``2 alpha_tgc f0 z`` dB, so noise grows with depth
   and a mismatch of ``alpha`` and ``alpha_tgc`` leaves a slow brightness trend.
5. **Log compression.**  ``grey = gain + 255 (20 log10 |IQ| - m) / DR``, clipped to 0..255,
   where ``m`` is the median of ``20 log10 |IQ|`` over the image (auto-gain) and ``DR`` the
   dynamic range in dB.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import fft

from training.sim.phantom import Phantom
from training.sim.probe import FWHM_PER_SIGMA, ProbeModel, probe_by_name

__all__ = ["image_phantom", "complex_envelope", "log_compress", "SimulationError"]


class SimulationError(ValueError):
    """The phantom cannot be imaged with this probe (e.g. its grid is too coarse for ``f0``)."""


def _axial_iq(phantom: Phantom, probe: ProbeModel) -> np.ndarray:
    """Steps 1-2: complex base-band envelope ``(Ht, Wt)`` of the RF lines, one sample per pixel."""
    ht = phantom.echogenicity.shape[0]
    span_mm = ht * phantom.pixel_mm  # bin j <-> k = j / span_mm cycles/mm
    k0 = 2.0 * probe.center_mhz / (probe.sound_speed_m_s * 1e-3)
    j0 = round(k0 * span_mm)
    lo = j0 - ht // 2
    hi = lo + ht
    if hi > phantom.spectrum.shape[1]:
        raise SimulationError(
            f"probe {probe.name!r} at {probe.center_mhz:.2f} MHz needs a finer scatterer grid: "
            f"make the phantom with max_mhz >= {probe.center_mhz:.2f}"
        )
    k = np.arange(lo, hi) / span_mm
    s = probe.bandwidth * k0 / FWHM_PER_SIGMA
    pulse = np.exp(-0.5 * ((k - k0) / s) ** 2) + np.exp(-0.5 * ((k + k0) / s) ** 2)
    pulse[k <= 0] = 0.0  # analytic signal: positive frequencies only
    pulse *= 0.5 + 0.5 * np.cos(np.pi * (k - j0 / span_mm) * 2.0 * phantom.pixel_mm)  # Hann anti-aliasing
    band = phantom.spectrum[:, max(lo, 0) : hi] * (2.0 * pulse[max(lo, 0) - lo :]).astype(np.float32)
    if lo < 0:
        band = np.concatenate([np.zeros((band.shape[0], -lo), band.dtype), band], axis=1)
    iq = fft.ifft(fft.ifftshift(band, axes=1), axis=1, workers=1)  # base band, decimated to pixels
    return np.ascontiguousarray(iq.T)


def _lateral_beam(iq: np.ndarray, fwhm_px: np.ndarray, bands: int) -> np.ndarray:
    """Step 3: convolve each row with a unit-energy Gaussian of FWHM ``fwhm_px[row]``."""
    ht, wt = iq.shape
    spec = fft.fft(iq, axis=1, workers=1)
    nu = fft.fftfreq(wt).astype(np.float32)
    centres = np.linspace(0, ht - 1, bands)
    delta = float(centres[1] - centres[0])  # rows between band centres; weights fall linearly over it
    out = np.zeros_like(iq)
    for c in centres:
        lo, hi = max(0, math.floor(c - delta) + 1), min(ht - 1, math.ceil(c + delta) - 1)
        weight = 1.0 - np.abs(np.arange(lo, hi + 1) - c) / delta
        sigma = max(float(np.interp(c, np.arange(ht), fwhm_px)) / FWHM_PER_SIGMA, 0.3)
        transfer = np.exp(-2.0 * (np.pi * sigma * nu) ** 2) * math.sqrt(2.0 * math.sqrt(math.pi) * sigma)
        out[lo : hi + 1] += weight[:, None].astype(np.float32) * fft.ifft(
            spec[lo : hi + 1] * transfer.astype(np.float32), axis=1, workers=1
        )
    return out


def _path_attenuation(phantom: Phantom) -> np.ndarray:
    """One-way attenuation from the skin to every sample, ``sum(alpha * dz)`` (dB/MHz); above
    the first row the tissue has the first row's median attenuation (one value for all columns,
    so that a vessel cut by the top edge casts no column of enhancement)."""
    depth = phantom.depth_mm()
    inside = (depth > 0).astype(np.float32)[:, None] * np.float32(phantom.pixel_mm / 10.0)
    above = np.float32(np.median(phantom.attenuation[0]) * max(float(depth[0]), 0.0) / 10.0)
    return above + np.cumsum(phantom.attenuation * inside, axis=0)


def complex_envelope(phantom: Phantom, probe: ProbeModel | str, rng: np.random.Generator) -> np.ndarray:
    """Steps 1-4: the TGC-compensated complex envelope of the visible window, complex64 ``(H, W)``."""
    probe = probe_by_name(probe)
    ht = phantom.echogenicity.shape[0]
    depth = phantom.depth_mm()
    iq = _axial_iq(phantom, probe)
    fwhm_px = probe.lateral_fwhm_mm(depth) / phantom.lateral_mm()
    iq = _lateral_beam(iq, fwhm_px, bands=max(3, math.ceil(ht / 32) + 1))
    iq = phantom.crop(iq)
    echo = phantom.crop(phantom.echogenicity)
    ref = math.sqrt(float(np.mean(np.abs(iq) ** 2)) / max(float(echo.mean()), 1e-6))  # E = 1 echo rms
    z_cm = phantom.crop(np.broadcast_to(depth[:, None], phantom.echogenicity.shape))[:, :1] / 10.0
    loss = (10.0 ** (-2.0 * probe.center_mhz * phantom.crop(_path_attenuation(phantom)) / 20.0)).astype(np.float32)
    tgc = (10.0 ** (2.0 * probe.tgc_db_cm_mhz * probe.center_mhz * z_cm / 20.0)).astype(np.float32)
    noise = rng.standard_normal((iq.shape[0], 2 * iq.shape[1]), dtype=np.float32).view(np.complex64)
    noise *= np.float32(ref * 10.0 ** (probe.noise_db / 20.0) / math.sqrt(2.0))
    rx = iq * loss + noise
    rx *= tgc
    return rx.astype(np.complex64, copy=False)


def log_compress(envelope: np.ndarray, dynamic_range_db: float, gain: float) -> np.ndarray:
    """Step 5: ``uint8`` image ``gain + 255 (20 log10 env - median) / DR`` clipped to 0..255."""
    db = 20.0 * np.log10(np.maximum(envelope, np.float32(1e-12)))
    grey = gain + (255.0 / dynamic_range_db) * (db - float(np.median(db)))
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


def image_phantom(phantom: Phantom, probe: ProbeModel | str, rng: np.random.Generator) -> np.ndarray:
    """B-mode image of ``phantom`` seen by ``probe``: ``uint8 (H, W)``, same size as the window."""
    probe = probe_by_name(probe)
    env = np.abs(complex_envelope(phantom, probe, rng))
    return log_compress(env, probe.dynamic_range_db, probe.gain)
