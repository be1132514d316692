"""Transducer models: the two probes of the paper and the beam widths their physics implies.

Units: megahertz (MHz) for frequencies, millimetres (mm) for lengths, decibels (dB) for
levels, metres per second (m/s) for the speed of sound.

Wavelength ``lambda = c / f0`` (``c`` in mm/s, ``f0`` in Hz), e.g. 0.44 mm at 3.5 MHz.

Axial resolution: the transmitted pulse is a Gaussian-windowed cosine whose amplitude
spectrum has a -6 dB full width ``B * f0`` (``B``: fractional bandwidth).  Its envelope,
mapped to depth (two-way travel, ``z = c t / 2``), has a full width at half maximum

    FWHM_axial = 2 ln 2 * lambda / (pi * B)                                 (mm)

Lateral resolution (Gaussian beams; the pulse-echo beam is the product of the transmit and
receive beams, so their widths combine as ``w^-2 = w_tx^-2 + w_rx^-2``):

* receive, dynamically focused at every depth, aperture ``D_rx(z) = min(D, z / F_rx)``::

      w_rx(z) = sqrt(2) * lambda * z / D_rx(z)

* transmit, focused at ``z_f`` with aperture ``D_tx = min(D, z_f / F_tx)``: diffraction at the
  focus, the geometric cone ``D_tx * |1 - z / z_f|`` away from it::

      w_tx(z) = sqrt((sqrt(2) * lambda * z / D_tx)**2 + (D_tx * (1 - z / z_f))**2)

* pulse-echo: ``FWHM_lateral(z) = (w_tx^-2 + w_rx^-2)^(-1/2)``, which at the focus of a
  fully open aperture is ``lambda * z / D``.

A small aperture (the phased array) therefore gives a wide, depth-growing beam and laterally
elongated speckle; a large aperture (the convex array) gives fine speckle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

__all__ = ["ProbeModel", "LOW_PROBE", "HIGH_PROBE", "PROBES", "probe_by_name", "FWHM_PER_SIGMA"]

#: full width at half maximum of a Gaussian, in standard deviations: ``2 sqrt(2 ln 2)``.
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass(frozen=True)
class ProbeModel:
    """Physical parameters of one ultrasound probe and its B-mode processing chain.

    Attributes:
        name: label used for folders and logs.
        center_mhz: centre frequency ``f0`` of the pulse (MHz).
        bandwidth: -6 dB fractional bandwidth ``B`` of the pulse spectrum (unitless, e.g. 0.6).
        aperture_mm: active aperture width ``D`` (mm).
        focus_mm: transmit focal depth ``z_f`` (mm).
        f_number_min: smallest receive F-number ``F_rx`` (unitless); the receive aperture is
            ``min(D, z / F_rx)``.
        tx_f_number: transmit F-number ``F_tx`` (unitless); the transmit aperture is
            ``min(D, z_f / F_tx)``.
        dynamic_range_db: displayed dynamic range of the log compression (dB).
        noise_db: electronic noise power at the receiver, relative to the mean echo power of
            unit-echogenicity tissue at zero depth (dB).
        tgc_db_cm_mhz: attenuation the time-gain compensation assumes (dB / cm / MHz, one way).
        gain: target grey level (0..255) of the median echo after log compression.
        sound_speed_m_s: speed of sound ``c`` (m/s).
        convex_radius_mm: radius of curvature of the array (mm); 0 for a flat phased array,
            whose beams fan out from one point (sector scan).
        fan_deg: full opening angle of the fan of beams (degrees), for fan scans.
    """

    name: str
    center_mhz: float
    bandwidth: float
    aperture_mm: float
    focus_mm: float
    f_number_min: float
    tx_f_number: float = 1.0
    dynamic_range_db: float = 60.0
    noise_db: float = -75.0
    tgc_db_cm_mhz: float = 0.5
    gain: float = 120.0
    sound_speed_m_s: float = 1540.0
    convex_radius_mm: float = 0.0
    fan_deg: float = 75.0

    def __post_init__(self) -> None:
        positive = {
            "center_mhz": self.center_mhz,
            "bandwidth": self.bandwidth,
            "aperture_mm": self.aperture_mm,
            "focus_mm": self.focus_mm,
            "f_number_min": self.f_number_min,
            "tx_f_number": self.tx_f_number,
            "dynamic_range_db": self.dynamic_range_db,
            "sound_speed_m_s": self.sound_speed_m_s,
        }
        for key, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"probe {self.name!r}: {key} must be a positive number, got {value}")
        if self.bandwidth >= 2.0:
            raise ValueError(f"probe {self.name!r}: bandwidth must be < 2 (fractional), got {self.bandwidth}")
        if self.convex_radius_mm < 0 or not 0 < self.fan_deg < 180:
            raise ValueError(f"probe {self.name!r}: need convex_radius_mm >= 0 and 0 < fan_deg < 180, "
                             f"got {self.convex_radius_mm} and {self.fan_deg}")
        if not 0 <= self.gain <= 255:
            raise ValueError(f"probe {self.name!r}: gain must be a grey level in [0, 255], got {self.gain}")

    @property
    def wavelength_mm(self) -> float:
        """``lambda = c / f0`` in mm."""
        return self.sound_speed_m_s / (self.center_mhz * 1e3)

    @property
    def axial_fwhm_mm(self) -> float:
        """Envelope FWHM of the pulse in depth: ``2 ln2 * lambda / (pi * B)`` (mm)."""
        return 2.0 * math.log(2.0) * self.wavelength_mm / (math.pi * self.bandwidth)

    def lateral_fwhm_mm(self, depth_mm: np.ndarray | float) -> np.ndarray:
        """Pulse-echo lateral beam FWHM (mm) at ``depth_mm`` (see the module docstring)."""
        z = np.maximum(np.asarray(depth_mm, dtype=np.float64), 0.5)
        lam = math.sqrt(2.0) * self.wavelength_mm
        d_rx = np.minimum(self.aperture_mm, z / self.f_number_min)
        d_tx = min(self.aperture_mm, self.focus_mm / self.tx_f_number)
        w_rx = lam * z / d_rx
        w_tx = np.hypot(lam * z / d_tx, d_tx * (1.0 - z / self.focus_mm))
        return 1.0 / np.sqrt(w_tx**-2 + w_rx**-2)

    def jittered(self, rng: np.random.Generator, amount: float = 1.0) -> ProbeModel:
        """A copy with parameters drawn around these values (``amount = 1``: a plausible spread).

        Relative spreads at ``amount = 1``: centre frequency +-12 %, bandwidth +-15 %, aperture
        +-20 %, focus +-30 %, F-numbers +-20 %; dynamic range 50..70 dB; gain +-20 grey levels;
        noise +-8 dB; speed of sound 1480..1600 m/s; convex radius +-25 %; fan angle +-15 %.
        """

        def rel(value: float, spread: float) -> float:
            return float(value * (1.0 + amount * spread * rng.uniform(-1.0, 1.0)))

        return replace(
            self,
            center_mhz=rel(self.center_mhz, 0.12),
            bandwidth=min(rel(self.bandwidth, 0.15), 1.2),
            aperture_mm=rel(self.aperture_mm, 0.20),
            focus_mm=rel(self.focus_mm, 0.30),
            f_number_min=rel(self.f_number_min, 0.20),
            tx_f_number=rel(self.tx_f_number, 0.20),
            dynamic_range_db=float(self.dynamic_range_db + amount * rng.uniform(-10.0, 10.0)),
            noise_db=float(self.noise_db + amount * rng.uniform(-8.0, 8.0)),
            gain=float(np.clip(self.gain + amount * rng.uniform(-20.0, 20.0), 40.0, 215.0)),
            sound_speed_m_s=float(np.clip(rel(self.sound_speed_m_s, 0.04), 1480.0, 1600.0)),
            convex_radius_mm=rel(self.convex_radius_mm, 0.25),
            fan_deg=float(np.clip(rel(self.fan_deg, 0.15), 30.0, 120.0)),
        )


#: Small-aperture phased array (X7-2t-like, 2-7 MHz): coarse, laterally elongated speckle; sector scan.
LOW_PROBE = ProbeModel(
    name="low", center_mhz=3.5, bandwidth=0.6, aperture_mm=12.0, focus_mm=60.0, f_number_min=1.0,
    convex_radius_mm=0.0, fan_deg=75.0,
)
#: Large-aperture convex array (RAB6-D-like, 2-8 MHz): fine speckle; 50 mm radius of curvature.
HIGH_PROBE = ProbeModel(
    name="high", center_mhz=4.5, bandwidth=0.7, aperture_mm=60.0, focus_mm=60.0, f_number_min=1.5,
    tx_f_number=2.0, convex_radius_mm=50.0, fan_deg=70.0,
)
PROBES: dict[str, ProbeModel] = {"low": LOW_PROBE, "high": HIGH_PROBE}


def probe_by_name(probe: str | ProbeModel) -> ProbeModel:
    """``"low"`` / ``"high"`` -> the preset; a :class:`ProbeModel` passes through."""
    if isinstance(probe, ProbeModel):
        return probe
    try:
        return PROBES[probe]
    except KeyError:
        raise ValueError(f"unknown probe {probe!r}; choose one of: {', '.join(PROBES)}") from None
