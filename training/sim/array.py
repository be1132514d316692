"""A third image-formation model: an element-level linear array with delay-and-sum beamforming.

The ``points`` model (:mod:`training.sim.points`) forms its beams in the Fresnel approximation,
monochromatic and separable (pulse along depth times beam across).  This model computes each
depth band's point-spread function from the array's elements instead, so that the coupling of
depth and lateral position that real beamforming has (the tilted tails of an out-of-focus
wavefront, the dynamic aperture growing with depth, element directivity, the discrete
element pitch) is in the speckle.  It images the same phantoms and point scatterers
(:func:`training.sim.points.draw_points`), band by band as the ``points`` model does
(:func:`training.sim.points.banded_envelope`); a model trained on the other two families
can be checked on it.

Geometry (2-D, depth ``z`` down, lateral ``x``; times in microseconds, ``c`` in mm/us): one
beam line per pixel column, each fired by a sub-aperture centred on the line; elements of
pitch ``p`` (drawn per image, ``lambda / 2 .. lambda``) and width ``0.9 p``, directivity
``sinc(0.9 p sin(theta) / lambda) cos(theta)``, cylindrical spreading ``r^-1/2`` per leg.

* **Transmit**, focused at ``z_f`` by the aperture ``min(D, z_f / F_tx)`` (apodisation
  ``a_i``), element ``i`` at ``u_i`` fired at ``d_i = (z_f - sqrt(z_f^2 + u_i^2)) / c``; at a
  scatterer ``s`` the base-band transmit field is
  ``TX_s(t) = sum_i a_i dir_i r_is^-1/2 g(t - tau_i) exp(-2 pi i f0 tau_i)``,
  ``tau_i = d_i + r_is / c`` and ``g`` the two-way base-band pulse (the inverse transform of
  :func:`training.sim.points.pulse_spectrum` around ``f0``, with this depth's attenuation).
* **Receive**, dynamic focus and aperture ``min(D, z / F_rx)`` (apodisation ``w_j`` stretched
  over it): the output at depth ``z`` sums element ``j``'s echo at
  ``t_j(z) = (z + sqrt(z^2 + v_j^2)) / c``,
  ``IQ(z) = sum_j w_j dir_j rho_j^-1/2 TX_s(t_j - rho_j / c) exp(2 pi i f0 (t_j - rho_j / c - 2 z / c))``
  (``rho_j`` element ``j`` to the scatterer), demodulated at ``2 z / c``.

For a scatterer at the band's centre depth and every line offset and output depth around it
this gives the band's complex PSF; its energy is set to that of the attenuated pulse
(so the depth's loss and the spectrum's downshift stay, as in the ``points`` model), it is
multiplied by ``exp(2 pi i k0 z_b)`` (``k0 = 2 f0 / c``: the splat already carries each
scatterer's own two-way phase ``exp(-2 pi i k0 z)``, and neighbouring bands, which are blended,
must agree in phase) and the band's image is the splatted scatterer field convolved with it.

Optionally the tissue has a body wall that aberrates (:mod:`training.sim.aberration`): each
element's transmit and receive paths get the screen's extra delay, which the beamformer does not
compensate.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import fft

from training.sim.aberration import PhaseScreen
from training.sim.phantom import Phantom
from training.sim.points import (
    PointField,
    aperture_weights,
    banded_envelope,
    display,
    draw_options,
    pulse_spectrum,
)
from training.sim.probe import FWHM_PER_SIGMA, ProbeModel, probe_by_name

__all__ = ["pulse_envelope", "das_psf", "array_envelope", "image_array", "PITCH_RANGE"]

#: element pitch drawn per image, in wavelengths of the centre frequency.
PITCH_RANGE = (0.5, 1.0)
#: element width as a fraction of the pitch (the rest is kerf).
FILL = 0.9


def pulse_envelope(probe: ProbeModel, cycles: float, loss_db_mhz: float = 0.0) -> tuple[np.ndarray, np.ndarray, float]:
    """The two-way base-band pulse ``g`` tabulated: ``(t_us, g, energy)``, ``g(t) = sum_f S(f)
    exp(2 pi i (f - f0) t) df`` with ``S`` :func:`pulse_spectrum` (``loss_db_mhz`` of one-way
    path attenuation), ``t`` in steps of ``1 / (32 f0)`` over the pulse's support, ``energy =
    sum S^2`` over the frequency grid (relative depth loss, downshift included)."""
    f0 = probe.center_mhz
    c = probe.sound_speed_m_s * 1e-3
    f = np.linspace(0.0, 3.0 * f0, 769)[1:]
    spectrum = pulse_spectrum(2.0 * f / c, probe, cycles, loss_db_mhz)
    sigma_t = FWHM_PER_SIGMA / (2.0 * math.pi * probe.bandwidth * f0)  # the transducer's envelope (us)
    half = cycles / f0 + 4.0 * sigma_t
    t = np.arange(-half, half + 1e-12, 1.0 / (32.0 * f0))
    g = (spectrum[None, :] * np.exp(2j * np.pi * np.outer(t, f - f0))).sum(axis=1) * (f[1] - f[0])
    return t, g, float(np.sum(spectrum**2))


def _interp(t_grid: np.ndarray, values: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Linear interpolation of complex ``values`` (``(..., n)`` on the uniform ``t_grid``) at ``t``
    (same leading shape, any trailing size); zero outside the grid."""
    step = float(t_grid[1] - t_grid[0])
    pos = (t - t_grid[0]) / step
    i0 = np.floor(pos).astype(np.int64)
    frac = pos - i0
    ok = (i0 >= 0) & (i0 < len(t_grid) - 1)
    i0 = np.clip(i0, 0, len(t_grid) - 2)
    lo = np.take_along_axis(values, i0.reshape(values.shape[:-1] + (-1,)), axis=-1).reshape(t.shape)
    hi = np.take_along_axis(values, (i0 + 1).reshape(values.shape[:-1] + (-1,)), axis=-1).reshape(t.shape)
    return np.where(ok, lo + frac * (hi - lo), 0.0)


def _directivity(lateral_mm: np.ndarray, r_mm: np.ndarray, width_mm: float, lam: float) -> np.ndarray:
    sin_t = lateral_mm / r_mm
    return np.sinc(width_mm * sin_t / lam) * np.sqrt(np.clip(1.0 - sin_t**2, 0.0, 1.0))


def _elements(aperture_mm: float, pitch_mm: float) -> np.ndarray:
    """Element centres (mm) of an aperture of about ``aperture_mm``, centred on 0."""
    n = max(1, round(aperture_mm / pitch_mm))
    return (np.arange(n) - (n - 1) / 2.0) * pitch_mm


def das_psf(probe: ProbeModel, depth_mm: float, dz_mm: np.ndarray, dx_mm: np.ndarray, *, apodisation: str,
            cycles: float, pitch_mm: float, loss_db_mhz: float = 0.0, screen: PhaseScreen | None = None) -> np.ndarray:
    """Complex base-band PSF ``h(dz, dx)`` of a scatterer at ``depth_mm``: rows the output
    depths ``depth_mm + dz_mm`` (1-D array), columns the beam lines at lateral offsets ``dx_mm``
    from it; energy ``sum |h|^2`` equal to the pulse's (see :func:`pulse_envelope`), the
    scatterer's own phase ``exp(-2 pi i k0 depth)`` taken out (module docstring).  A body-wall
    ``screen`` (:mod:`training.sim.aberration`) adds its delay ``delta(u)`` to every element's
    transmit (``tau_i + delta(u_i)``) and receive path (``t_j - rho_j / c - delta(v_j)``), unknown
    to the beamformer."""
    lam = probe.wavelength_mm
    c = probe.sound_speed_m_s * 1e-3
    f0 = probe.center_mhz
    width = FILL * pitch_mm
    zb = max(depth_mm, 1.0)
    t_g, g, energy = pulse_envelope(probe, cycles, loss_db_mhz)

    # Transmit: field at the scatterer for every line, tabulated in time.
    u = _elements(min(probe.aperture_mm, probe.focus_mm / probe.tx_f_number), pitch_mm)
    a = aperture_weights(apodisation, (u - u[0] + 0.5 * pitch_mm) / (len(u) * pitch_mm))
    d = (probe.focus_mm - np.sqrt(probe.focus_mm**2 + u**2)) / c
    lat = dx_mm[:, None] + u[None, :]  # element to scatterer, lateral (lines x elements)
    r = np.hypot(zb, lat)
    tau = d[None, :] + r / c + (0.0 if screen is None else screen(u)[None, :])
    amp = a[None, :] * _directivity(lat, r, width, lam) / np.sqrt(r) * np.exp(-2j * np.pi * f0 * tau)
    z_out = zb + np.asarray(dz_mm, np.float64)
    v = _elements(min(probe.aperture_mm, float(z_out.max()) / probe.f_number_min), pitch_mm)
    lat_rx = dx_mm[:, None] + v[None, :]  # rx element to scatterer, lateral (lines x rx elements)
    rho = np.hypot(zb, lat_rx)
    t_j = (z_out[:, None] + np.sqrt(z_out[:, None] ** 2 + v[None, :] ** 2)) / c  # (depths, rx elements)
    arg = t_j[None, :, :] - rho[:, None, :] / c  # (lines, depths, rx elements)
    if screen is not None:
        arg = arg - screen(v)[None, None, :]
    step = 1.0 / (16.0 * f0)
    t_tx = np.arange(float(arg.min()) - step, float(arg.max()) + 2 * step, step)
    tx = np.zeros((len(dx_mm), len(t_tx)), np.complex128)
    for i in range(len(u)):  # one transmit element at a time: (lines, times)
        tx += amp[:, i : i + 1] * _interp(t_g, np.broadcast_to(g, (len(dx_mm), len(g))),
                                          t_tx[None, :] - tau[:, i : i + 1])
    field = _interp(t_tx, tx, arg.reshape(len(dx_mm), -1)).reshape(arg.shape)

    # Receive: dynamic aperture, directivity, delay-and-sum, demodulation at 2 z / c.
    d_rx = np.minimum(probe.aperture_mm, z_out / probe.f_number_min)  # (depths,)
    w = aperture_weights(apodisation, (v[None, :] + d_rx[:, None] / 2.0) / d_rx[:, None])  # (depths, rx)
    gain = _directivity(lat_rx, rho, width, lam) / np.sqrt(rho)  # (lines, rx)
    phase = np.exp(2j * np.pi * f0 * (arg - 2.0 * z_out[None, :, None] / c))
    psf = np.einsum("mnj,nj,mj->nm", field * phase, w, gain)
    norm = math.sqrt(energy / max(float(np.sum(np.abs(psf) ** 2)), 1e-300))
    return psf * norm * np.exp(4j * np.pi * f0 * zb / c)


def array_envelope(phantom: Phantom, points: PointField, probe: ProbeModel | str, rng: np.random.Generator,
                   *, apodisation: str | None = None, cycles: float | None = None,
                   decimation: str | None = None, pitch_wavelengths: float | None = None) -> np.ndarray:
    """The envelope ``|IQ|`` of the visible window, float32 ``(H, W)``: the ``points`` model's
    pipeline (:func:`training.sim.points.banded_envelope`) with each band's transfer the FFT of
    :func:`das_psf` (through ``points.screen``, the body wall's, if it has one).  Options not
    given are drawn from ``rng`` (``pitch_wavelengths`` uniform in :data:`PITCH_RANGE`)."""
    probe = probe_by_name(probe)
    apod, n_cycles, pick = draw_options(rng, apodisation, cycles, decimation)
    pitch = float(rng.uniform(*PITCH_RANGE)) if pitch_wavelengths is None else float(pitch_wavelengths)
    if not pitch > 0:
        raise ValueError(f"pitch_wavelengths must be positive, got {pitch}")
    pitch_mm = pitch * probe.wavelength_mm
    c = probe.sound_speed_m_s * 1e-3

    def transfer(depth_mm: float, loss: float, kz: np.ndarray, x_mm: np.ndarray) -> np.ndarray:
        n_rows, n_cols = len(kz), len(x_mm)
        dz = 1.0 / (n_rows * abs(float(kz[1] - kz[0])))  # fine depth step (mm)
        dx = abs(float(x_mm[1] - x_mm[0]))
        reach_z = c * (n_cycles / probe.center_mhz) + 1.0  # pulse length plus out-of-focus spread
        reach_x = 5.0 * float(probe.lateral_fwhm_mm(max(depth_mm, 1.0))) + 1.0
        if points.screen is not None:  # aberration scatters energy over angles of about lambda / correlation
            reach_x += max(depth_mm, 1.0) * probe.wavelength_mm / points.screen.correlation_mm
        nz = min(math.ceil(reach_z / dz), (n_rows - 1) // 2)
        nx = min(math.ceil(reach_x / dx), (n_cols - 1) // 2)
        iz, ix = np.arange(-nz, nz + 1), np.arange(-nx, nx + 1)
        psf = das_psf(probe, depth_mm, iz * dz, ix * dx, apodisation=apod, cycles=n_cycles,
                      pitch_mm=pitch_mm, loss_db_mhz=loss, screen=points.screen)
        grid = np.zeros((n_rows, n_cols), np.complex128)
        grid[np.ix_(iz % n_rows, ix % n_cols)] = psf
        return fft.fft2(grid, workers=1)

    return banded_envelope(phantom, points, probe, rng, transfer, pick)


def image_array(phantom: Phantom, points: PointField, probe: ProbeModel | str, rng: np.random.Generator,
                **options: object) -> np.ndarray:
    """B-mode image of ``phantom``'s ``points`` seen by ``probe`` through the element-level array:
    ``uint8 (H, W)``; :func:`array_envelope` (``options`` passed on), then
    :func:`training.sim.points.display` by ``points.display``."""
    probe = probe_by_name(probe)
    return display(array_envelope(phantom, points, probe, rng, **options), probe, points.display)
