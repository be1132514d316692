"""Fan scans: beams that spread from an apex, and scan conversion back to a Cartesian image.

A phased array steers every beam from the centre of its small face (a *sector*); a convex
array fires its beams perpendicular to a curved face of radius ``R``.  Both are fans of
straight lines from an apex ``R`` behind the skin (``R = 0`` for the sector)::

    x = (R + r) sin(theta),   z = (R + r) cos(theta) - R

with range ``r`` along the beam (mm below the array face) and steering angle ``theta``
(within +-fan/2).  The tissue is resampled onto a grid of ranges ``pixel_mm`` apart and
beam lines ``dtheta`` apart (arc spacing ``(R + r) dtheta`` at most one pixel at the deepest
range), scatterers are drawn on that grid, the image is formed along the beams
(:mod:`training.sim.imaging`, with the lateral beam in units of lines) and scan-converted
back to the Cartesian pixels with bilinear interpolation; outside the fan is black.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from training.sim.imaging import complex_envelope, log_compress
from training.sim.phantom import Phantom
from training.sim.probe import FWHM_PER_SIGMA, ProbeModel, probe_by_name
from training.sim.scatterers import fast_margin, scatterer_spectrum

__all__ = ["BeamGrid", "beam_grid", "image_fan", "fan_mask"]


@dataclass(frozen=True)
class BeamGrid:
    """Tissue along a probe's beams, ready for :func:`training.sim.imaging.complex_envelope`.

    Rows are ranges ``pixel_mm`` apart (``margin[0]`` hidden rows above and below), columns
    are beam lines at ``angles`` (``margin[1]`` hidden lines each side, beyond the fan);
    ``echogenicity`` and ``attenuation`` (dB/cm/MHz) are the tissue's, sampled along the beams.
    """

    echogenicity: np.ndarray
    spectrum: np.ndarray
    pixel_mm: float
    radius_mm: float
    angles: np.ndarray
    margin: tuple[int, int]
    upsample: int
    attenuation: np.ndarray

    def depth_mm(self) -> np.ndarray:
        """Range ``r`` (mm below the array face) of every row, margins included."""
        return (np.arange(self.echogenicity.shape[0]) - self.margin[0]) * self.pixel_mm

    def lateral_mm(self) -> np.ndarray:
        """Arc spacing ``(R + r) dtheta`` (mm) between neighbouring lines, per row."""
        dtheta = float(self.angles[1] - self.angles[0])
        return (self.radius_mm + np.maximum(self.depth_mm(), 0.5)) * dtheta

    def crop(self, array: np.ndarray) -> np.ndarray:
        """The rows and lines inside the fan."""
        my, mx = self.margin
        return array[my : array.shape[0] - my, mx : array.shape[1] - mx]


def _fan_extent(phantom: Phantom, probe: ProbeModel) -> tuple[float, int, int]:
    """``(r_max, rows, lines)``: deepest range that reaches the image, rows and lines inside the fan."""
    h, w = phantom.size
    px, radius = phantom.pixel_mm, probe.convex_radius_mm
    r_max = math.hypot(0.5 * w * px, phantom.top_mm + h * px + radius) - radius
    lines = math.ceil(math.radians(probe.fan_deg) * (radius + r_max) / px) + 1
    return r_max, math.ceil(r_max / px) + 1, lines


def _tissue_coordinates(phantom: Phantom, radius: float, r: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, ...]:
    """Full-grid (row, column) of the phantom at range ``r`` and angle ``theta`` (broadcast)."""
    (my, mx), (_, w) = phantom.margin, phantom.size
    x = (radius + r) * np.sin(theta)
    z = (radius + r) * np.cos(theta) - radius
    return my + (z - phantom.top_mm) / phantom.pixel_mm, mx + 0.5 * (w - 1) + x / phantom.pixel_mm


def beam_grid(phantom: Phantom, probe: ProbeModel | str, rng: np.random.Generator) -> BeamGrid:
    """Resample ``phantom`` along the beams of ``probe`` and draw the scatterers there."""
    probe = probe_by_name(probe)
    px, radius = phantom.pixel_mm, probe.convex_radius_mm
    r_max, rows, lines = _fan_extent(phantom, probe)
    half = 0.5 * math.radians(probe.fan_deg)
    dtheta = 2.0 * half / (lines - 1)
    ranges = np.linspace(10.0, max(r_max, 10.0), 16)
    sigma_lines = probe.lateral_fwhm_mm(ranges) / (FWHM_PER_SIGMA * (radius + ranges) * dtheta)
    my = fast_margin(rows, math.ceil(3.0 / px))
    mx = min(math.ceil(3.0 * float(sigma_lines.max())) + 2, lines)
    r = ((np.arange(rows + 2 * my) - my) * px)[:, None]
    angles = -half + (np.arange(lines + 2 * mx) - mx) * dtheta
    t_row, t_col = _tissue_coordinates(phantom, radius, r, angles[None, :])
    echo, att = (cv2.remap(a, t_col.astype(np.float32), t_row.astype(np.float32), cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT) for a in (phantom.echogenicity, phantom.attenuation))
    specular = []
    cols = np.arange(phantom.echogenicity.shape[1])
    for curve, strength in phantom.specular:  # where each beam crosses the interface
        f = t_row - np.interp(t_col, cols, curve)
        cross = (f[:-1] < 0) & (f[1:] >= 0)
        idx = np.argmax(cross, axis=0)
        f0 = f[idx, np.arange(f.shape[1])]
        f1 = f[idx + 1, np.arange(f.shape[1])]
        specular.append((np.where(cross.any(axis=0), idx + f0 / (f0 - f1), np.nan), strength))
    spectrum, upsample = scatterer_spectrum(rng, echo, specular, px, probe.center_mhz)
    return BeamGrid(echo, spectrum, px, radius, angles, (my, mx), upsample, att)


def _fan_map(phantom: Phantom, probe: ProbeModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every visible pixel: its (line, row) on the visible beam grid, and whether it is in the fan."""
    h, w = phantom.size
    px, radius = phantom.pixel_mm, probe.convex_radius_mm
    _, rows, lines = _fan_extent(phantom, probe)
    half = 0.5 * math.radians(probe.fan_deg)
    x = ((np.arange(w) - 0.5 * (w - 1)) * px)[None, :]
    z = (phantom.top_mm + np.arange(h) * px)[:, None]
    rho = np.hypot(x, z + radius)
    theta = np.arctan2(x, z + radius)
    r = rho - radius
    line = (theta + half) * (lines - 1) / (2.0 * half)
    row = r / px
    inside = (r >= 0) & (np.abs(theta) <= half) & (row <= rows - 1)
    return line.astype(np.float32), row.astype(np.float32), inside


def fan_mask(phantom: Phantom, probe: ProbeModel | str) -> np.ndarray:
    """Bool ``(H, W)``: the visible pixels inside ``probe``'s fan."""
    return _fan_map(phantom, probe_by_name(probe))[2]


def image_fan(phantom: Phantom, probe: ProbeModel | str, rng: np.random.Generator) -> np.ndarray:
    """Fan-shaped B-mode image of ``phantom`` seen by ``probe``: ``uint8 (H, W)``, black outside.

    The phantom's visible window is the displayed area; its first row should be the skin
    (``top_mm = 0``), where the probe touches.
    """
    probe = probe_by_name(probe)
    grid = beam_grid(phantom, probe, rng)
    env = np.abs(complex_envelope(grid, probe, rng))
    polar = log_compress(env, probe.dynamic_range_db, probe.gain).astype(np.float32)
    line, row, inside = _fan_map(phantom, probe)
    image = cv2.remap(polar, line, row, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return np.where(inside, np.rint(image), 0).astype(np.uint8)
