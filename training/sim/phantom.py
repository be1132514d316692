"""Random liver phantoms: an echogenicity map, a field of random scatterers, ground-truth masks.

A phantom covers a rectangle of tissue seen from above: rows are depth, columns are the
lateral position, both sampled every ``pixel_mm`` millimetres; the first visible row lies
``top_mm`` below the skin.  A hidden margin on every side lets the imaging model convolve
without edge effects.

Echogenicity ``E`` (unitless) is the mean backscattered power relative to normal liver
parenchyma (``E = 1``).  The tissue holds

* parenchyma: ``E = exp(s1 * n1 + s2 * n2)``, ``n1`` a smooth field (scale ~15-40 mm),
  ``n2`` a fine texture (scale ~0.8-3 mm), each of unit variance;
* the abdominal wall above a curved liver capsule: layers of fat and muscle with lateral
  striation, fascia lines between them, and the capsule itself as a bright specular line;
* vessels: anechoic lumens (``E`` ~ 0.0003-0.005), seen as elliptic cross-sections or as curved,
  tapering, sometimes branching tubes; some (portal veins) with a bright echogenic wall;
* lesions: irregular blobs with soft edges, hypo- (``E`` x 0.1-0.5) or hyperechoic
  (``E`` x 2-6), some with a hypoechoic halo, and anechoic cysts;
* attenuation: a map (liver 0.4-0.65 dB/cm/MHz, wall 0.6-1.0, blood 0.18, cysts 0.05), so
  that tissue behind vessels and cysts is brighter (posterior enhancement);
* sometimes the diaphragm: a bright curved band near the bottom.

Scatterers live on a grid ``upsample`` times finer in depth than the pixels (fine enough to
carry the radio-frequency signal): each sample is ``sqrt(E) * u`` with ``u`` independent,
zero-mean and of unit variance (sums of many give Gaussian echoes and Rayleigh-distributed
envelopes), plus coherent reflectors of constant amplitude along the specular interfaces.  The phantom keeps the Fourier transform of this field along
depth, which every probe then filters (:mod:`training.sim.imaging`); two probes imaging one
phantom see the same scatterers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np

from training.sim.scatterers import fast_margin, scatterer_spectrum

if TYPE_CHECKING:
    from training.sim.points import PointField

__all__ = ["Phantom", "make_phantom", "needle_tip", "MASK_NAMES", "TIP_MM"]

#: the boolean masks every phantom carries (plus ``"liver"`` and ``"interfaces"``).
MASK_NAMES = ("vessels", "lesions", "structures", "parenchyma")
#: length of a needle's tip (its mask ``needle_tip``), mm from the end of its centre line.
TIP_MM = 5.0


@dataclass(frozen=True)
class Phantom:
    """Tissue for the imaging model (arrays include the hidden margin).

    Attributes:
        echogenicity: float32 ``(Ht, Wt)`` mean backscattered power, parenchyma ~ 1.
        masks: bool ``(Ht, Wt)`` maps: ``vessels``, ``lesions``, ``interfaces``, ``structures``
            (their union), ``liver`` and ``parenchyma`` (liver at least ``margin_mm`` away from
            every structure).
        spectrum: complex64 ``(Wt, n_bins)``, the FFT along depth of the fine scatterer field
            (bins ``j`` at spatial frequency ``j / (Ht * pixel_mm)`` cycles/mm); ``None`` when
            made with ``scatterers=False`` (fan scans draw their own on the beam grid).
        specular: ``(rows, strength)`` of each specular interface: its row (full grid, float)
            in every column, and its reflector amplitude.
        pixel_mm: pixel spacing, both directions (mm).
        top_mm: depth of the first visible row below the skin (mm).
        margin: hidden ``(rows, columns)`` on each side of the visible window.
        upsample: fine depth samples per pixel of the scatterer grid.
        attenuation: float32 ``(Ht, Wt)`` attenuation (dB / cm / MHz, one way): liver 0.4-0.65,
            abdominal wall 0.6-1.0, blood 0.18, cysts 0.05.
        params: the drawn texture parameters (log standard deviations), for logs.
        points: point scatterers for the ``points`` image-formation model
            (:func:`training.sim.points.draw_points`), or ``None``.
    """

    echogenicity: np.ndarray
    masks: dict[str, np.ndarray]
    spectrum: np.ndarray | None
    pixel_mm: float
    top_mm: float
    margin: tuple[int, int]
    upsample: int
    attenuation: np.ndarray
    specular: tuple[tuple[np.ndarray, float], ...] = ()
    params: dict[str, float] = field(default_factory=dict)
    points: PointField | None = None

    @property
    def size(self) -> tuple[int, int]:
        """Visible ``(H, W)`` in pixels."""
        my, mx = self.margin
        ht, wt = self.echogenicity.shape
        return ht - 2 * my, wt - 2 * mx

    def depth_mm(self) -> np.ndarray:
        """Depth (mm) of every row of the full grid, margins included."""
        ht = self.echogenicity.shape[0]
        return self.top_mm + (np.arange(ht, dtype=np.float64) - self.margin[0]) * self.pixel_mm

    def lateral_mm(self) -> np.ndarray:
        """Lateral sample spacing (mm) of every row: ``pixel_mm`` on this Cartesian grid."""
        return np.full(self.echogenicity.shape[0], self.pixel_mm)

    def crop(self, array: np.ndarray) -> np.ndarray:
        """The visible window of a full-grid array."""
        (my, mx), (h, w) = self.margin, self.size
        return array[my : my + h, mx : mx + w]

    def truth(self) -> dict[str, np.ndarray]:
        """Ground truth of the visible window: ``echogenicity`` (float32) and the bool masks."""
        out = {"echogenicity": np.ascontiguousarray(self.crop(self.echogenicity))}
        out.update({name: np.ascontiguousarray(self.crop(m)) for name, m in self.masks.items()})
        return out


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale_px: tuple[float, float]) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian field with correlation lengths ``scale_px`` (rows, cols)."""
    h, w = shape
    ch = max(2, math.ceil(h / max(scale_px[0], 1.0)) + 1)
    cw = max(2, math.ceil(w / max(scale_px[1], 1.0)) + 1)
    coarse = rng.standard_normal((ch, cw)).astype(np.float32)
    out = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    out -= out.mean()
    return out / max(float(out.std()), 1e-6)


def _curve(rng: np.random.Generator, width: int, y0: float, bend_px: float) -> np.ndarray:
    """A smooth random curve ``y(x)``: a parabola of random sign plus a gentle sine."""
    x = np.linspace(-1.0, 1.0, width)
    xc = rng.uniform(-0.5, 0.5)
    y = y0 + bend_px * rng.uniform(-1.0, 1.0) * (x - xc) ** 2
    y += 0.1 * bend_px * np.sin(2 * np.pi * rng.uniform(0.2, 0.7) * x + rng.uniform(0, 2 * np.pi))
    return y


def _band(dist: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian line profile ``exp(-d^2 / (2 sigma^2))`` of a signed distance map."""
    return np.exp(-0.5 * (dist / sigma_px) ** 2, dtype=np.float32)


def _tube_path(rng: np.random.Generator, start: np.ndarray, heading: float, length_px: float) -> np.ndarray:
    """A smooth random walk of ``length_px`` from ``start`` (x, y) with slowly turning heading."""
    steps = max(4, int(length_px / 6))
    turn = np.cumsum(rng.normal(0.0, 0.08, steps)) + rng.uniform(-0.02, 0.02) * np.arange(steps)
    angles = heading + turn
    step = length_px / steps
    pts = start + np.cumsum(np.stack([np.cos(angles), np.sin(angles)], axis=1) * step, axis=0)
    return np.vstack([start, pts])


def _draw_vessels(rng: np.random.Generator, shape: tuple[int, int], px: float,
                  liver_top: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lumen and wall fractions in [0, 1] (float32) for 1-6 random vessels."""
    h, w = shape
    lumen = np.zeros(shape, np.uint8)
    wall = np.zeros(shape, np.uint8)
    shift = 4  # cv2 fixed-point bits: sub-pixel drawing
    scale = 1 << shift
    for _ in range(int(rng.integers(1, 7))):
        walled = rng.random() < 0.45
        t = max(1, round(rng.uniform(0.5, 1.3) / px))
        cx = rng.uniform(0.05, 0.95) * w
        cy_min = float(liver_top[int(np.clip(cx, 0, w - 1))]) + 3.0 / px
        if cy_min >= h - 4:
            continue
        cy = rng.uniform(cy_min, h - 1)
        if rng.random() < 0.5:  # cross-section: an ellipse
            a = rng.uniform(1.5, 8.0) / px
            b = a / rng.uniform(1.0, 1.8)
            ang = rng.uniform(0, 180)
            centre = (int(cx * scale), int(cy * scale))
            if walled:
                cv2.ellipse(wall, centre, (int((a + t) * scale), int((b + t) * scale)), ang, 0, 360, 255, -1,
                            cv2.LINE_AA, shift)
            cv2.ellipse(lumen, centre, (int(a * scale), int(b * scale)), ang, 0, 360, 255, -1, cv2.LINE_AA, shift)
            continue
        width = rng.uniform(2.0, 10.0) / px  # longitudinal: a curved, tapering tube with branches
        path = _tube_path(rng, np.array([cx, cy]), rng.uniform(0, 2 * np.pi), rng.uniform(0.4, 1.2) * w)
        branches = [(path, width)]
        for _ in range(int(rng.integers(0, 3))):
            i = int(rng.integers(1, len(path) - 1))
            d = path[i] - path[i - 1]
            heading = math.atan2(d[1], d[0]) + rng.choice([-1, 1]) * rng.uniform(0.4, 1.0)
            branches.append((_tube_path(rng, path[i], heading, rng.uniform(0.2, 0.5) * w),
                             width * rng.uniform(0.4, 0.8)))
        for pts, wid in branches:
            taper = np.linspace(1.0, rng.uniform(0.5, 1.0), len(pts) - 1)
            for k in range(len(pts) - 1):
                seg = (pts[k : k + 2] * scale).astype(np.int32).reshape(-1, 1, 2)
                thick = max(1, round(wid * taper[k]))
                if walled:
                    cv2.polylines(wall, [seg], False, 255, thick + 2 * t, cv2.LINE_AA, shift)
                cv2.polylines(lumen, [seg], False, 255, thick, cv2.LINE_AA, shift)
    lum = lumen.astype(np.float32) / 255.0
    return lum, np.clip(wall.astype(np.float32) / 255.0 - lum, 0.0, 1.0)


def _draw_lesions(rng: np.random.Generator, shape: tuple[int, int], px: float, liver_top: np.ndarray,
                  echo: np.ndarray, att: np.ndarray) -> np.ndarray:
    """Draw 0-3 lesions into ``echo`` and ``att`` (in place); return their union (fraction in [0, 1]).

    Kinds: hypoechoic (40 %: ``E`` x 0.1-0.5) and hyperechoic (40 %: ``E`` x 2-6) solid lesions
    with their own texture and attenuation x 0.8-1.3; cysts (20 %: ``E`` x 0.002-0.02, sharp
    edge, attenuation 0.05 dB/cm/MHz, hence posterior enhancement).
    """
    h, w = shape
    union = np.zeros(shape, np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(int(rng.choice([0, 1, 1, 2, 3]))):
        r0 = rng.uniform(3.0, 15.0) / px
        cx = rng.uniform(0.1, 0.9) * w
        cy_min = float(liver_top[int(np.clip(cx, 0, w - 1))]) + r0
        if cy_min >= h - 2:
            continue
        cy = rng.uniform(cy_min, max(cy_min + 1, h - 0.3 * r0))
        theta = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        radius = r0 * (1 + sum(rng.uniform(0, 0.12) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
                               for k in range(2, 6)))
        radius *= np.where(np.cos(theta - rng.uniform(0, 2 * np.pi)) > 0, 1.0, rng.uniform(0.7, 1.0))
        poly = np.stack([cx + radius * np.cos(theta), cy + radius * np.sin(theta)], axis=1)
        canvas = np.zeros(shape, np.uint8)
        cv2.fillPoly(canvas, [(poly * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
        kind = rng.choice(["hypo", "hyper", "cyst"], p=[0.4, 0.4, 0.2])
        edge_mm = rng.uniform(0.1, 0.3) if kind == "cyst" else rng.uniform(0.2, 1.5)
        body = cv2.GaussianBlur(canvas.astype(np.float32) / 255.0, (0, 0), edge_mm / px)
        if kind == "cyst":
            contrast, texture, alpha = rng.uniform(0.002, 0.02), 1.0, np.float32(0.05)
        else:
            contrast = rng.uniform(0.1, 0.5) if kind == "hypo" else rng.uniform(2.0, 6.0)
            texture = np.exp(0.3 * _smooth_noise(rng, shape, (1.5 / px, 1.5 / px)))
            alpha = att * np.float32(rng.uniform(0.8, 1.3))
        att += body * (alpha - att)
        factor = 1.0 + body * (contrast * texture - 1.0)
        if rng.random() < 0.3:  # hypoechoic halo around a "target" lesion
            dist = np.hypot(xx - cx, yy - cy) - r0
            halo = _band(dist - rng.uniform(0.8, 2.0) / px, rng.uniform(0.5, 1.2) / px) * (1 - body)
            factor *= 1.0 - 0.6 * halo
            body = np.maximum(body, halo)
        echo *= factor
        union = np.maximum(union, body)
    return union


def _abdominal_wall(rng: np.random.Generator, shape: tuple[int, int], depth_px: float, bend_px: float,
                    px: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The capsule curve, the liver fraction below it, the wall's echogenicity above it (four
    laterally striated layers of 3-12 mm) and the interface bands (fascia lines and capsule)."""
    capsule = _curve(rng, shape[1], depth_px, bend_px)
    d = capsule[None, :] - np.arange(shape[0], dtype=np.float32)[:, None]  # pixels above the capsule
    wall_echo = np.full(shape, rng.uniform(0.3, 0.6), np.float32)
    striae = np.exp(0.35 * _smooth_noise(rng, shape, (0.8 / px, rng.uniform(6, 20) / px)))
    interfaces = np.zeros(shape, np.float32)
    edge = 0.0
    for level in rng.uniform(0.25, 1.0, size=4):
        thick = rng.uniform(3.0, 12.0) / px
        wall_echo[(d > edge) & (d <= edge + thick)] = level
        interfaces = np.maximum(interfaces, _band(d - edge - thick, rng.uniform(0.15, 0.4) / px) * rng.uniform(0.3, 0.8))
        edge += thick
    liver = np.clip(0.5 - d, 0.0, 1.0)
    interfaces = np.maximum(interfaces * (1.0 - liver), _band(d, rng.uniform(0.2, 0.5) / px))
    return capsule, liver, wall_echo * striae, interfaces


def _draw_needle(rng: np.random.Generator, shape: tuple[int, int], margin: tuple[int, int], px: float,
                 top_row: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A biopsy needle: a straight specular segment entering the window from its left or right
    edge 10-35 degrees below the horizontal, its tip 35-75 % of the way across.

    Returns ``(rows, shaft, tip)``: the needle's row (full grid, float) in every column it
    crosses (NaN elsewhere), for :func:`training.sim.scatterers.scatterer_spectrum`, and its
    masks (about 1 mm wide; ``tip`` the shaft within :data:`TIP_MM` of the line's end, :func:`needle_tip`).
    """
    (my, mx), (ht, wt) = margin, shape
    h, w = ht - 2 * my, wt - 2 * mx
    angle = math.radians(rng.uniform(10.0, 35.0))
    reach = rng.uniform(0.35, 0.75) * w  # visible columns the needle crosses
    entry = rng.uniform(min(max(top_row, my + 0.1 * h), my + 0.5 * h), my + 0.6 * h)  # where it enters the window
    step = math.tan(angle)
    cols = np.arange(wt, dtype=np.float64)
    left = rng.random() < 0.5
    along = cols - mx if left else (mx + w - 1) - cols  # visible columns from the entry edge
    rows = entry + step * along
    inside = (along <= reach) & (rows < ht - 1)
    rows = np.where(inside, rows, np.nan)
    last = int(np.nanargmax(np.where(inside, along, np.nan)))  # the tip's column
    canvas = np.zeros(shape, np.uint8)
    thick = max(1, round(1.0 / px))
    start = (0, round(entry - step * mx)) if left else (wt - 1, round(entry - step * mx))
    tip_pt = (last, round(float(rows[last])))
    cv2.line(canvas, start, tip_pt, 1, thickness=thick)
    shaft = canvas > 0
    return rows, shaft, needle_tip(shaft, (tip_pt[1], tip_pt[0]), px)


def needle_tip(shaft: np.ndarray, tip: tuple[int, int], px: float) -> np.ndarray:
    """The needle's tip mask: the pixels of the bool mask ``shaft`` within :data:`TIP_MM` of the
    point ``tip`` (row, column; the end of the needle's centre line), on pixels of ``px`` mm."""
    rr, cc = np.indices(shaft.shape)
    return shaft & ((rr - tip[0]) ** 2 + (cc - tip[1]) ** 2 <= (TIP_MM / px) ** 2)


def make_phantom(
    rng: np.random.Generator,
    size: tuple[int, int] = (256, 256),
    pixel_mm: float = 0.25,
    top_mm: float | None = None,
    *,
    max_mhz: float = 6.0,
    margin_mm: tuple[float, float] = (3.0, 8.0),
    parenchyma_margin_mm: float = 3.0,
    scatterers: bool = True,
    with_capsule: bool | None = None,
    structures: bool = True,
    needle: bool = False,
) -> Phantom:
    """Draw a random liver phantom whose visible window is ``size = (H, W)`` pixels.

    Args:
        rng: source of randomness.
        size: visible ``(H, W)`` in pixels.
        pixel_mm: pixel spacing (mm).
        top_mm: depth of the first visible row (mm); random in 5..35 mm when ``None``.
        max_mhz: highest probe centre frequency this phantom must support (MHz); sets the
            depth oversampling of the scatterer grid.
        margin_mm: hidden (depth, lateral) margin on each side (mm); must exceed the widest
            lateral beam's reach (3 sigma).
        parenchyma_margin_mm: distance (mm) that the ``parenchyma`` mask keeps from structures.
        scatterers: draw the scatterer field (``False``: tissue only, for fan scans).
        with_capsule: show the abdominal wall and liver capsule; ``None``: in 80 % of phantoms.
        structures: ``False`` gives parenchyma only (no wall, diaphragm, lesions or vessels),
            for measuring speckle statistics.
        needle: add a biopsy needle (:func:`_draw_needle`: a straight specular reflector from
            one side, amplitude 40-80 against the liver capsule's 2-6; masks ``needle`` and
            ``needle_tip``), drawn after the tissue so that the tissue is the one drawn without it.
    """
    h, w = int(size[0]), int(size[1])
    if h < 8 or w < 8:
        raise ValueError(f"phantom size must be at least 8x8 pixels, got {h}x{w}")
    if not pixel_mm > 0:
        raise ValueError(f"pixel_mm must be positive, got {pixel_mm}")
    px = float(pixel_mm)
    top = float(rng.uniform(5.0, 35.0)) if top_mm is None else float(top_mm)
    my, mx = (math.ceil(m / px) for m in margin_mm)
    my = fast_margin(h, my)
    ht, wt = h + 2 * my, w + 2 * mx
    shape = (ht, wt)
    rows = np.arange(ht, dtype=np.float32)[:, None]

    # Parenchyma: smooth variation times fine texture.
    s1, s2 = rng.uniform(0.08, 0.35), rng.uniform(0.05, 0.35)
    att = np.full(shape, rng.uniform(0.4, 0.65), np.float32)
    fine = rng.uniform(0.8, 3.0) / px
    echo = np.exp(s1 * _smooth_noise(rng, shape, (rng.uniform(15, 40) / px,) * 2)
                  + s2 * _smooth_noise(rng, shape, (fine, fine * rng.uniform(1.0, 2.0))))

    # Liver capsule and abdominal wall above it (absent in 20 % of windows).
    interfaces = np.zeros(shape, np.float32)
    specular: list[tuple[np.ndarray, float]] = []
    if structures and ((rng.random() < 0.8) if with_capsule is None else with_capsule):
        capsule, liver, wall_echo, interfaces = _abdominal_wall(rng, shape, my + rng.uniform(0.05, 0.35) * h,
                                                                 rng.uniform(0.0, 0.15) * h, px)
        echo = echo * liver + wall_echo * (1.0 - liver) + rng.uniform(4.0, 15.0) * interfaces
        att += (1.0 - liver) * (rng.uniform(0.6, 1.0) - att)
        specular.append((capsule, rng.uniform(2.0, 6.0)))
    else:
        capsule = np.full(wt, -1.0)
        liver = np.ones(shape, np.float32)

    # Diaphragm near the bottom of deep windows (30 %).
    if structures and rng.random() < 0.3:
        dia = _curve(rng, wt, my + rng.uniform(0.75, 0.95) * h, -rng.uniform(0.05, 0.2) * h)
        dd = rows - dia[None, :]
        below = np.clip(dd + 0.5, 0.0, 1.0)
        band = _band(dd, rng.uniform(0.4, 1.0) / px)
        echo = echo * (1 - below) + below * rng.uniform(0.1, 0.3) * echo + rng.uniform(8.0, 25.0) * band
        liver = liver * (1 - below)
        interfaces = np.maximum(interfaces, band)
        specular.append((dia, rng.uniform(3.0, 8.0)))

    lesions = lumen = np.zeros(shape, np.float32)
    if structures:
        lesions = _draw_lesions(rng, shape, px, capsule + 1.0 / px, echo, att) * liver
        lumen, wall = _draw_vessels(rng, shape, px, capsule + 1.0 / px)
        lumen, wall = lumen * liver, wall * liver
        echo = echo * (1 - lumen) + rng.uniform(0.0003, 0.005) * lumen  # blood
        att += lumen * (0.18 - att)
        echo = echo * (1 - wall) + rng.uniform(3.0, 6.0) * wall
        interfaces = np.maximum(interfaces, wall)

    masks = {"vessels": lumen > 0.5, "lesions": lesions > 0.5, "interfaces": interfaces > 0.5}
    masks["structures"] = masks["vessels"] | masks["lesions"] | masks["interfaces"]
    if needle:
        below_capsule = float(np.nanmax(capsule)) + 2.0 / px  # 2 mm under the capsule's deepest row
        rows_n, masks["needle"], masks["needle_tip"] = _draw_needle(rng, shape, (my, mx), px, below_capsule)
        masks["structures"] |= masks["needle"]
        specular.append((rows_n, rng.uniform(40.0, 80.0)))
    masks["liver"] = liver > 0.5
    free = (masks["liver"] & ~masks["structures"]).astype(np.uint8)
    dist_px = cv2.distanceTransform(free, cv2.DIST_L2, 3)
    masks["parenchyma"] = dist_px * px >= parenchyma_margin_mm

    echo = echo.astype(np.float32)
    spectrum, upsample = scatterer_spectrum(rng, echo, specular, px, max_mhz) if scatterers else (None, 0)
    return Phantom(
        echogenicity=echo,
        masks=masks,
        spectrum=spectrum,
        pixel_mm=px,
        top_mm=top,
        margin=(my, mx),
        upsample=upsample,
        attenuation=att.astype(np.float32),
        specular=tuple(specular),
        params={"parenchyma_sigma": float(s1), "texture_sigma": float(s2)},
    )
