"""A body-wall phase screen: the arrival-time errors that fat and muscle layers of different sound
speed put on each element's signal (phase aberration), for the element-level array model.

Delay-and-sum beamforming assumes one speed of sound; the abdominal wall's layers (fat about
1,450 m/s, muscle about 1,580 m/s) advance or delay the wavefront unevenly across the aperture,
so the focus blurs and side lobes rise.  Measured through human chest and abdominal walls, the
arrival-time fluctuations are tens of nanoseconds rms with correlation lengths of a few
millimetres (chest wall: 21 ns rms, 2.5 mm; Hinkelman, Szabo and Waag, JASA 1997).  Modelled as
a thin screen on the probe's face: element ``i`` at lateral position ``u_i`` (mm) sends and
receives with an extra delay ``delta(u_i)`` (us) that the beamformer does not know.  The screen
is the same for every beam line (it moves with the sub-aperture): what a phased array, whose
whole aperture fires every line, sees; an approximation for a convex or linear array, whose
lines come from sub-apertures on different patches of the wall.

``delta`` is white noise filtered by a Gaussian, mean removed and scaled to the requested rms: its
autocorrelation is a Gaussian of FWHM ``correlation_mm`` (the filter's standard deviation is
``correlation_mm / (2 sqrt(2 ln 2) sqrt(2))``).  Both probes of a pair image one body wall, so the
screen belongs to the tissue (:class:`training.sim.points.PointField`), not to a probe: the large
aperture spans more of its fluctuations than the small one, which is why aberration costs the
high-quality probe more resolution than the low one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["PhaseScreen", "draw_screen", "CORRELATION_RANGE_MM", "MAX_RMS_NS"]

#: correlation length (autocorrelation FWHM, mm) drawn per screen when not given.
CORRELATION_RANGE_MM = (2.0, 6.0)
#: largest rms arrival-time error accepted (ns).
MAX_RMS_NS = 200.0
#: half width (mm) and sampling step (mm) of the tabulated screen: wider than any jittered aperture.
HALF_WIDTH_MM = 50.0
STEP_MM = 0.05


@dataclass(frozen=True)
class PhaseScreen:
    """Arrival-time error across the probe's face.

    Attributes:
        position_mm: float64 ``(N,)`` uniform lateral positions, centred on the beam line.
        delay_us: float64 ``(N,)`` extra one-way delay at each position (microseconds).
        rms_ns: rms of ``delay_us`` over the whole screen (nanoseconds).
        correlation_mm: FWHM of the delay's autocorrelation (mm).
    """

    position_mm: np.ndarray
    delay_us: np.ndarray
    rms_ns: float
    correlation_mm: float

    def __call__(self, u_mm: np.ndarray) -> np.ndarray:
        """Delay (us) at element positions ``u_mm`` (mm), linearly interpolated."""
        return np.interp(np.asarray(u_mm, np.float64), self.position_mm, self.delay_us)


def draw_screen(rng: np.random.Generator, rms_ns: float, correlation_mm: float | None = None) -> PhaseScreen:
    """A random screen of ``rms_ns`` nanoseconds rms and autocorrelation FWHM ``correlation_mm``
    (``None``: uniform in :data:`CORRELATION_RANGE_MM`), tabulated every :data:`STEP_MM` over
    +-:data:`HALF_WIDTH_MM`."""
    corr = float(rng.uniform(*CORRELATION_RANGE_MM)) if correlation_mm is None else float(correlation_mm)
    if not 0.0 < rms_ns <= MAX_RMS_NS or not corr > 0.0:
        raise ValueError(f"rms_ns must be in (0, {MAX_RMS_NS:g}] and correlation_mm positive, got {rms_ns}, {corr}")
    sigma = corr / (2.0 * math.sqrt(2.0 * math.log(2.0)) * math.sqrt(2.0)) / STEP_MM  # filter sd, samples
    pad = int(math.ceil(4.0 * sigma))
    n = int(round(2.0 * HALF_WIDTH_MM / STEP_MM)) + 1
    noise = ndimage.gaussian_filter1d(rng.standard_normal(n + 2 * pad), sigma, mode="wrap")[pad:pad + n]
    noise -= noise.mean()
    delay = noise * (rms_ns * 1e-3 / float(np.sqrt(np.mean(noise**2))))
    position = (np.arange(n) - (n - 1) / 2.0) * STEP_MM
    return PhaseScreen(position_mm=position, delay_us=delay, rms_ns=float(rms_ns), correlation_mm=corr)
