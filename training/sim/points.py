"""A second image-formation model: discrete point scatterers and diffraction-limited beams.

The default model (:mod:`training.sim.imaging`) draws a scatterer on every sample of a fine
grid and uses Gaussian beams, so its speckle is always fully developed and its beams have no
side lobes.  A despeckler trained on one model alone may learn that model's quirks.  This
model images the *same* phantoms (echogenicity, attenuation, masks) with other physics, so
that training and evaluation can mix two simulator families:

1. **Point scatterers** at continuous random positions, ``rho`` per mm^2 (drawn per phantom,
   log-uniform, from a few to a few dozen per resolution cell: sparse regions give
   non-Rayleigh, "salty" speckle), amplitude ``sqrt(E) g`` (``g`` standard normal), plus a
   few strong point reflectors (0.1 % of them, x 4-10 in amplitude).  Each carries its
   two-way phase ``exp(-2 pi i k0 z)`` exactly (``k0 = 2 f0 / c``) and is splatted
   (bilinearly) onto a grid ``u`` times finer in depth and ``v`` times finer laterally than
   the pixels.
2. **Pulse with frequency-dependent attenuation.**  The two-way spectrum is a Hann-windowed
   ``n``-cycle burst at ``f0`` (``n`` 1.5-3) times the transducer's Gaussian response
   (fractional bandwidth ``B``); at depth ``z`` it is multiplied by
   ``exp(-2 ln(10)/20 * f * A(z))`` (``A``: one-way path attenuation in dB/MHz), so the echo's
   centre frequency falls with depth (downshift) and the axial speckle grows.
3. **Diffraction beams** (Fresnel approximation, monochromatic at ``f0``): transmit
   ``T(x) = sum_u a(u) exp(i pi u^2 (1/z - 1/z_f) / lambda) exp(-2 pi i u x / (lambda z))``
   over the transmit aperture ``min(D, z_f / F_tx)``, receive ``R(x)`` the same with dynamic
   focus (no quadratic phase) over ``min(D, z / F_rx)``; the pulse-echo beam is ``T R``, with
   its side lobes (apodisation ``a``: rectangular, Tukey or Hann, drawn per image).
4. Steps 2-3 are applied per depth band (every 32 rows) as one separable 2-D filter and
   blended linearly between band centres; attenuation of each column (posterior enhancement),
   complex noise and the TGC follow as in the default model.
5. **Detection and display**: the envelope ``|IQ|`` on the fine grid is decimated to the
   pixels, either averaged over each pixel or sampled at its centre (drawn per image), then
   log-compressed either around the median
   (``gain + 255 (dB - median) / DR``) or from the peak (``255 (dB - p99.9 + DR) / DR``:
   the brightest echoes at white), drawn per phantom (both probes of a pair alike).

Pure numpy/scipy; the paired images of :func:`training.sim.dataset.simulate_pair` share one
:class:`PointField`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import fft

from training.sim.aberration import PhaseScreen, draw_screen
from training.sim.imaging import log_compress
from training.sim.phantom import Phantom
from training.sim.probe import FWHM_PER_SIGMA, ProbeModel, probe_by_name

__all__ = ["PointField", "draw_points", "point_envelope", "image_points", "beam_profile", "pulse_spectrum",
           "aperture_weights", "banded_envelope", "draw_options", "display", "BandTransfer",
           "APODISATIONS", "DISPLAYS", "DECIMATIONS"]

#: aperture weightings a beam may be drawn with (side lobes: rect highest, Hann lowest).
APODISATIONS = ("rect", "tukey", "hann")
#: log-compression references: ``median`` (auto-gain) or ``peak`` (brightest echoes white).
DISPLAYS = ("median", "peak")
#: rows between depth-band centres of the beam and pulse filters.
BAND_ROWS = 32
#: envelope decimation to the pixel grid: ``mean`` over the pixel's fine samples, or ``sample``.
DECIMATIONS = ("mean", "sample")
#: finest depth and lateral sample spacing of the splat grid (mm).
FINE_MM = 0.08


@dataclass(frozen=True)
class PointField:
    """Point scatterers of one phantom, in full-grid pixel coordinates (margins included).

    Attributes:
        rows: float64 ``(N,)`` depth coordinate in pixels (row 0 = first row of the full grid).
        cols: float64 ``(N,)`` lateral coordinate in pixels.
        amplitude: float32 ``(N,)`` signed amplitude ``sqrt(E) g``.
        density_per_mm2: scatterers per mm^2 of tissue.
        display: log-compression reference (:data:`DISPLAYS`) of every image of these points,
            so that both probes of a pair are displayed alike.
        screen: the body wall's phase screen (:mod:`training.sim.aberration`), seen by both
            probes; imaged by the ``array`` model only.  ``None``: no aberration.
    """

    rows: np.ndarray
    cols: np.ndarray
    amplitude: np.ndarray
    density_per_mm2: float
    display: str = "median"
    screen: PhaseScreen | None = None


def draw_points(phantom: Phantom, rng: np.random.Generator, density_per_mm2: float | None = None,
                display: str | None = None, aberration_ns: float = 0.0) -> PointField:
    """Scatterers for ``phantom``: ``density_per_mm2`` (``None``: log-uniform 15..200 per mm^2),
    uniform positions, amplitude ``sqrt(E)`` times a standard normal, 0.1 % of them strong
    (x 4-10), and one coherent reflector per column on each specular interface; ``display``
    (``None``: drawn) is how their images are log-compressed; ``aberration_ns > 0`` adds a
    body-wall phase screen of that rms (:func:`training.sim.aberration.draw_screen`, drawn last,
    so a seed gives the same scatterers with and without it)."""
    ht, wt = phantom.echogenicity.shape
    px = phantom.pixel_mm
    rho = float(np.exp(rng.uniform(math.log(15.0), math.log(200.0)))) if density_per_mm2 is None else density_per_mm2
    mode = str(rng.choice(DISPLAYS)) if display is None else display
    if not rho > 0 or mode not in DISPLAYS:
        raise ValueError(f"density_per_mm2 must be positive and display one of {DISPLAYS}, got {rho}, {mode!r}")
    n = int(rng.poisson(rho * ht * wt * px * px))
    rows, cols = rng.uniform(0, ht, n), rng.uniform(0, wt, n)
    echo = phantom.echogenicity[np.minimum(rows.astype(np.int64), ht - 1), np.minimum(cols.astype(np.int64), wt - 1)]
    amp = (np.sqrt(echo) * rng.standard_normal(n)).astype(np.float32)
    strong = rng.random(n) < 1e-3
    amp[strong] *= rng.uniform(4.0, 10.0, int(strong.sum())).astype(np.float32)
    # Specular interfaces: one reflector per column, as strong as the speckle of E = `strength`^2.
    per_pixel = math.sqrt(rho * px * px)
    for row_of_column, strength in phantom.specular:
        curve = np.asarray(row_of_column, np.float64) + 0.5  # row centre, as the grid model places it
        ok = np.isfinite(curve) & (curve >= 0) & (curve < ht)
        rows = np.concatenate([rows, curve[ok]])
        cols = np.concatenate([cols, np.flatnonzero(ok) + 0.5])
        amp = np.concatenate([amp, np.full(int(ok.sum()), strength * per_pixel, np.float32)])
    screen = None if aberration_ns == 0 else draw_screen(rng, aberration_ns)  # which refuses < 0 and NaN
    return PointField(rows=rows, cols=cols, amplitude=amp, density_per_mm2=rho, display=mode, screen=screen)


def _splat(points: PointField, weights: np.ndarray, shape: tuple[int, int], u: int, v: int) -> np.ndarray:
    """Bilinear splat of complex ``weights`` onto the ``(H u, W v)`` fine grid (sample centres)."""
    hf, wf = shape[0] * u, shape[1] * v
    r, c = points.rows * u - 0.5, points.cols * v - 0.5
    r0, c0 = np.floor(r).astype(np.int64), np.floor(c).astype(np.int64)
    fr, fc = r - r0, c - c0
    grid = np.zeros(hf * wf, np.complex128)
    for dr, wr in ((0, 1.0 - fr), (1, fr)):
        for dc, wc in ((0, 1.0 - fc), (1, fc)):
            rr, cc = r0 + dr, c0 + dc
            ok = (rr >= 0) & (rr < hf) & (cc >= 0) & (cc < wf)
            idx = rr[ok] * wf + cc[ok]
            w = weights[ok] * (wr * wc)[ok]
            grid += np.bincount(idx, w.real, hf * wf) + 1j * np.bincount(idx, w.imag, hf * wf)
    return grid.reshape(hf, wf).astype(np.complex64)


def aperture_weights(kind: str, t: np.ndarray) -> np.ndarray:
    """Apodisation :data:`APODISATIONS` ``kind`` at relative aperture positions ``t`` (0..1 across
    the active aperture; 0 outside): ``rect`` 1, ``hann`` ``sin^2(pi t)``, ``tukey`` flat with
    ``sin^2`` tapers over the outer quarter on each side (50 % taper)."""
    t = np.asarray(t, np.float64)
    inside = (t >= 0.0) & (t <= 1.0)
    if kind == "rect":
        w = np.ones_like(t)
    elif kind == "hann":
        w = np.sin(np.pi * t) ** 2
    else:
        edge = np.minimum(t, 1.0 - t) / 0.25
        w = np.where(edge >= 1.0, 1.0, np.sin(0.5 * np.pi * np.clip(edge, 0.0, 1.0)) ** 2)
    return np.where(inside, w, 0.0)


def beam_profile(x_mm: np.ndarray, z_mm: float, probe: ProbeModel, apodisation: str = "rect") -> np.ndarray:
    """Pulse-echo lateral beam ``T(x) R(x)`` at lateral offsets ``x_mm`` and depth ``z_mm``
    (complex, Fresnel approximation, unit energy over the samples; see the module docstring)."""
    if apodisation not in APODISATIONS:
        raise ValueError(f"apodisation must be one of {APODISATIONS}, got {apodisation!r}")
    lam = probe.wavelength_mm
    z = max(z_mm, 1.0)
    beam = np.ones(x_mm.shape, np.complex128)
    reach = 2.0 * float(np.max(np.abs(x_mm))) + 1.0  # grating lobes of the sampled aperture beyond it
    for width, defocus in ((min(probe.aperture_mm, probe.focus_mm / probe.tx_f_number), 1.0 / z - 1.0 / probe.focus_mm),
                           (min(probe.aperture_mm, z / probe.f_number_min), 0.0)):
        n = max(64, math.ceil(width * reach / (lam * z)))
        u = (np.arange(n) + 0.5) / n * width - width / 2
        aperture = aperture_weights(apodisation, (np.arange(n) + 0.5) / n) * np.exp(1j * np.pi * u**2 * defocus / lam)
        beam *= np.exp(-2j * np.pi * np.outer(x_mm, u) / (lam * z)) @ aperture
    return beam / math.sqrt(float(np.sum(np.abs(beam) ** 2)))


def pulse_spectrum(k: np.ndarray, probe: ProbeModel, cycles: float, loss_db_mhz: float = 0.0) -> np.ndarray:
    """Two-way pulse amplitude spectrum at depth spatial frequencies ``k`` (cycles/mm; ``f = k c / 2``):
    ``|W((f - f0) n / f0)| exp(-(f - f0)^2 / 2 s^2) 10^(-2 f loss / 20)``, ``W`` the spectrum of a
    Hann window of ``n = cycles`` periods, ``s`` from the bandwidth, ``loss`` the one-way path
    attenuation (dB/MHz); zero for ``f <= 0``."""
    c_mm_us = probe.sound_speed_m_s * 1e-3
    f = k * c_mm_us / 2.0  # MHz
    f0, duration = probe.center_mhz, cycles / probe.center_mhz
    nu = (f - f0) * duration
    with np.errstate(divide="ignore", invalid="ignore"):
        burst = np.where(np.abs(np.abs(nu) - 1.0) < 1e-9, 0.5, np.sinc(nu) / (1.0 - nu**2))
    transducer = np.exp(-0.5 * ((f - f0) / (probe.bandwidth * f0 / FWHM_PER_SIGMA)) ** 2)
    spectrum = np.abs(burst) * transducer * 10.0 ** (-2.0 * f * loss_db_mhz / 20.0)
    return np.where(f > 0, spectrum, 0.0)


#: ``(depth_mm, loss_db_mhz, kz, x_mm) -> transfer``: the 2-D transfer function (fine grid, FFT
#: order) of one depth band's pulse-echo response; ``kz`` the RF depth frequency of each row bin
#: (cycles/mm), ``x_mm`` the lateral offset of each column (mm, FFT order).
BandTransfer = Callable[[float, float, np.ndarray, np.ndarray], np.ndarray]


def draw_options(rng: np.random.Generator, apodisation: str | None, cycles: float | None,
                 decimation: str | None) -> tuple[str, float, str]:
    """``(apodisation, cycles, decimation)``, each drawn from ``rng`` when ``None``; ``ValueError`` if invalid."""
    apod = str(rng.choice(APODISATIONS)) if apodisation is None else apodisation
    n_cycles = float(rng.uniform(1.5, 3.0)) if cycles is None else float(cycles)
    pick = str(rng.choice(DECIMATIONS)) if decimation is None else decimation
    if apod not in APODISATIONS or pick not in DECIMATIONS or not n_cycles > 0:
        raise ValueError(f"apodisation must be one of {APODISATIONS}, decimation one of {DECIMATIONS}, "
                         f"cycles > 0; got {apod!r}, {pick!r}, {n_cycles}")
    return apod, n_cycles, pick


def banded_envelope(phantom: Phantom, points: PointField, probe: ProbeModel, rng: np.random.Generator,
                    transfer: BandTransfer, decimation: str) -> np.ndarray:
    """Steps 1 and 4-5 around a pulse-echo response: splat ``points`` with their two-way phase,
    filter each depth band (every :data:`BAND_ROWS` rows) by ``transfer``, blend linearly between
    band centres, then column attenuation, noise, TGC and ``decimation``: the envelope ``|IQ|``
    of the visible window, float32 ``(H, W)``, one beam line per pixel column."""
    ht, wt = phantom.echogenicity.shape
    px = phantom.pixel_mm
    u = v = max(1, math.ceil(px / FINE_MM))
    depth = phantom.depth_mm()
    k0 = 2.0 * probe.center_mhz / (probe.sound_speed_m_s * 1e-3)
    z_abs = phantom.top_mm + (points.rows - phantom.margin[0]) * px
    spec = fft.fft2(_splat(points, points.amplitude * np.exp(-2j * np.pi * k0 * z_abs), (ht, wt), u, v), workers=1)

    path = np.cumsum(phantom.attenuation * (depth > 0)[:, None] * (px / 10.0), axis=0)  # dB/MHz, one way
    kz = fft.fftfreq(ht * u, d=px / u) + k0  # RF spatial frequency of each base-band bin
    x_mm = fft.fftfreq(wt * v, d=1.0 / (wt * v)) * px / v  # lateral offsets, FFT order
    rows = np.arange(ht * u)
    centres = np.linspace(0, ht * u - 1, max(3, math.ceil(ht / BAND_ROWS) + 1))
    delta = float(centres[1] - centres[0])
    iq = np.zeros((ht * u, wt * v), np.complex64)
    for c in centres:
        row = min(int(c // u), ht - 1)
        h = transfer(float(depth[row]), float(path[row].mean()), kz, x_mm)
        weight = np.clip(1.0 - np.abs(rows - c) / delta, 0.0, None).astype(np.float32)
        band = weight > 0
        iq[band] += weight[band, None] * fft.ifft2(spec * h.astype(np.complex64), workers=1)[band]
    # Column-wise attenuation relative to the band's mean (posterior enhancement), noise, TGC.
    mean_loss = 10.0 ** (-2.0 * probe.center_mhz * path.mean(axis=1) / 20.0)  # already in the pulses
    rel = 10.0 ** (-2.0 * probe.center_mhz * (path - path.mean(axis=1, keepdims=True)) / 20.0)
    iq *= np.repeat(np.repeat(rel, u, axis=0), v, axis=1).astype(np.float32)
    unattenuated = np.abs(iq) / np.repeat(mean_loss, u)[:, None]
    ref = math.sqrt(float(np.mean(unattenuated**2)) / max(float(phantom.echogenicity.mean()), 1e-6))  # E = 1 rms
    noise = rng.standard_normal((ht * u, 2 * wt * v), dtype=np.float32).view(np.complex64)
    iq += noise * np.float32(ref * 10.0 ** (probe.noise_db / 20.0) / math.sqrt(2.0))
    tgc = 10.0 ** (2.0 * probe.tgc_db_cm_mhz * probe.center_mhz * np.maximum(depth, 0.0) / 10.0 / 20.0)
    iq *= np.repeat(tgc, u)[:, None].astype(np.float32)
    env = np.abs(iq).reshape(ht, u, wt, v)[:, :, :, 0]  # beam lines one pixel apart
    env = env.mean(axis=1) if decimation == "mean" else env[:, u // 2]
    return phantom.crop(env).astype(np.float32)


def point_envelope(phantom: Phantom, points: PointField, probe: ProbeModel | str, rng: np.random.Generator,
                   *, apodisation: str | None = None, cycles: float | None = None,
                   decimation: str | None = None) -> np.ndarray:
    """Steps 1-4 and the detection of step 5: the envelope ``|IQ|`` of the visible window,
    float32 ``(H, W)``, one beam line per pixel column; per band the separable transfer
    ``pulse_spectrum(kz) x FFT(beam_profile(x))``.

    ``apodisation`` (:data:`APODISATIONS`), ``cycles`` (burst length, > 0) and ``decimation``
    (:data:`DECIMATIONS`) are drawn from ``rng`` when ``None``.
    """
    probe = probe_by_name(probe)
    apod, n_cycles, pick = draw_options(rng, apodisation, cycles, decimation)

    def transfer(depth_mm: float, loss: float, kz: np.ndarray, x_mm: np.ndarray) -> np.ndarray:
        return np.outer(pulse_spectrum(kz, probe, n_cycles, loss), fft.fft(beam_profile(x_mm, depth_mm, probe, apod)))

    return banded_envelope(phantom, points, probe, rng, transfer, pick)


def display(envelope: np.ndarray, probe: ProbeModel, mode: str) -> np.ndarray:
    """Step 5's log compression by ``mode`` (:data:`DISPLAYS`): ``median`` as
    :func:`training.sim.imaging.log_compress`, ``peak``: ``255 (dB - p99.9 + DR) / DR`` clipped
    to 0..255 (``DR`` the probe's dynamic range)."""
    if mode == "median":
        return log_compress(envelope, probe.dynamic_range_db, probe.gain)
    db = 20.0 * np.log10(np.maximum(envelope, 1e-12))
    grey = 255.0 * (db - (float(np.percentile(db, 99.9)) - probe.dynamic_range_db)) / probe.dynamic_range_db
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


def image_points(phantom: Phantom, points: PointField, probe: ProbeModel | str, rng: np.random.Generator,
                 *, apodisation: str | None = None, cycles: float | None = None,
                 decimation: str | None = None) -> np.ndarray:
    """B-mode image of ``phantom``'s ``points`` seen by ``probe``: ``uint8 (H, W)``;
    :func:`point_envelope` (same options), then :func:`display` by ``points.display``."""
    probe = probe_by_name(probe)
    env = point_envelope(phantom, points, probe, rng, apodisation=apodisation, cycles=cycles, decimation=decimation)
    return display(env, probe, points.display)
