"""The third image-formation model (element-level linear array, delay-and-sum): its point-spread
function measured against diffraction theory.  Speckle statistics, pairs and the CLI are tested
with the ``points`` model's tests in tests/test_sim_points.py (parametrized over both)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from beam_testutil import side_lobe_db

from training.sim import HIGH_PROBE, LOW_PROBE
from training.sim.array import das_psf, pulse_envelope

#: the high probe with equal 30 mm transmit and receive apertures at its 60 mm focus.
FOCUSED = replace(HIGH_PROBE, aperture_mm=30.0, tx_f_number=2.0, f_number_min=2.0, focus_mm=60.0)


def _lateral_db(probe, depth_mm: float, dx: np.ndarray, *, apodisation: str = "rect", cycles: float = 2.0,
                pitch: float = 0.5) -> np.ndarray:
    """Lateral profile (dB re peak) of the PSF's energy summed over depth."""
    h = das_psf(probe, depth_mm, np.arange(-24, 25) * 0.05, dx, apodisation=apodisation, cycles=cycles,
                pitch_mm=pitch * probe.wavelength_mm)
    lat = np.sqrt(np.sum(np.abs(h) ** 2, axis=0))
    return 20 * np.log10(np.maximum(lat / lat.max(), 1e-12))


def _fwhm(db: np.ndarray, step: float) -> float:
    above = np.flatnonzero(db >= 20 * np.log10(0.5))
    return float(above[-1] - above[0] + 1) * step


@pytest.mark.parametrize("probe", [LOW_PROBE, HIGH_PROBE], ids=["low", "high"])
def test_psf_width_at_the_focus_follows_diffraction(probe) -> None:
    """Lateral FWHM at the focus within 20 % of the probe's pulse-echo formula (which the grid model
    uses); the axial FWHM at least the formula's (a 2-cycle burst lengthens the Gaussian pulse)."""
    dx = np.arange(-100, 101) * 0.05
    lateral = _fwhm(_lateral_db(probe, probe.focus_mm, dx), 0.05)
    assert lateral == pytest.approx(float(probe.lateral_fwhm_mm(probe.focus_mm)), rel=0.2)
    h = np.abs(das_psf(probe, probe.focus_mm, np.arange(-60, 61) * 0.01, np.zeros(1), apodisation="rect",
                       cycles=2.0, pitch_mm=0.5 * probe.wavelength_mm))[:, 0]
    axial = _fwhm(20 * np.log10(h / h.max()), 0.01)
    assert probe.axial_fwhm_mm <= axial <= 2.0 * probe.axial_fwhm_mm


def test_narrowband_side_lobes_rect_and_hann_broadband_fills_the_nulls() -> None:
    """A long (8-cycle) burst through a rectangular aperture: two-way sinc^4 side lobes, first at
    -26.5 dB; Hann apodisation: below -40 dB; a 2-cycle burst fills the nulls (no side lobe)."""
    dx = np.arange(-150, 151) * 0.02
    assert side_lobe_db(_lateral_db(FOCUSED, 60.0, dx, cycles=8.0)) == pytest.approx(-26.5, abs=3.0)
    assert side_lobe_db(_lateral_db(FOCUSED, 60.0, dx, cycles=8.0, apodisation="hann")) < -40.0
    assert side_lobe_db(_lateral_db(FOCUSED, 60.0, dx, cycles=2.0)) == -np.inf


def test_coarse_element_pitch_raises_grating_lobes() -> None:
    """Elements two wavelengths apart send energy far off the beam (grating lobes, at
    sin(theta) = lambda / pitch before the elements' directivity): beyond 10 mm at 30 mm depth
    it is at least 10 dB above that of a half-wavelength pitch."""
    dx = np.arange(-80, 81) * 0.25
    far = np.abs(dx) > 10.0
    fine = _lateral_db(FOCUSED, 30.0, dx, pitch=0.5)[far].max()
    coarse = _lateral_db(FOCUSED, 30.0, dx, pitch=2.0)[far].max()
    assert coarse > fine + 10.0


def test_pulse_energy_falls_and_centre_frequency_drops_with_attenuation() -> None:
    """The tabulated base-band pulse: its energy falls with path loss, and its phase turns
    (the centre frequency moves below f0: negative mean base-band frequency)."""
    t, g0, e0 = pulse_envelope(LOW_PROBE, 2.0)
    _, g1, e1 = pulse_envelope(LOW_PROBE, 2.0, loss_db_mhz=3.0)
    assert e1 < 0.5 * e0
    spec0, spec1 = (np.abs(np.fft.fftshift(np.fft.fft(g))) ** 2 for g in (g0, g1))
    nu = np.fft.fftshift(np.fft.fftfreq(len(t), d=t[1] - t[0]))
    assert float(np.sum(nu * spec1) / spec1.sum()) < float(np.sum(nu * spec0) / spec0.sum()) - 0.1


@pytest.mark.parametrize("probe", [LOW_PROBE, HIGH_PROBE], ids=["low", "high"])
def test_psfs_of_neighbouring_depths_agree_in_phase(probe) -> None:
    """Depth bands are blended linearly, so the PSFs of nearby depths must add up, not cancel:
    with the scatterer's own two-way phase taken out (the splat carries it) the real part of
    their normalised inner product is near 1 (without it, the phase would turn by 4 pi dz / lambda)."""
    dz, dx = np.arange(-40, 41) * 0.05, np.arange(-40, 41) * 0.1
    a, b = (das_psf(probe, z, dz, dx, apodisation="tukey", cycles=2.0, pitch_mm=0.7 * probe.wavelength_mm)
            for z in (40.0, 40.5))
    assert float(np.real(np.vdot(a, b))) / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.9
