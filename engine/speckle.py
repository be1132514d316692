"""Speckle size: frames of unknown pixel spacing run at a speckle size the model was trained on.

The network draws and removes speckle at the size in pixels it learnt it (:mod:`engine.pixels`).
Where a frame's spacing is known the engine resamples it to a trained pixel size; a picture, a
video or a capture card carries none.  Its speckle then tells the scale: fully developed speckle
is as long as the pulse along depth and as wide as the beam across, so its size in pixels grows
as the pixels shrink.  Measured on the frame's tissue, in 32 x 32 pixel tiles (:data:`TILE`;
the tissue tiles of :func:`engine.levels.measure_tiles`, without those over 5 % black),
each tile's grey levels ``g`` less their mean give the autocovariance, normalised at lag 0 and
averaged over the tiles::

    C(dr, dc) = mean over tiles of  sum (g - mean)(g' - mean) / sum (g - mean)^2,   g' shifted by (dr, dc)

and the speckle size is its full width at half maximum along each axis, in pixels (linear
interpolation between lags)::

    (axial, lateral) = (FWHM of C(., 0), FWHM of C(0, .))

An axis whose size is above the training frames' range (:data:`SPECKLE_UPPER`, the 97.5th
percentile of x frames drawn as the training frames were) is shrunk for the model by

    f = size / upper end of the range      (to the range's edge)

rounded to a multiple of :data:`STEP` (an axis less than 1/16 above the range stays as it is),
and the output is resampled back to the frame's size (:func:`engine.pixels.resize`: area average
down, bilinear up).  A frame inside the range runs as it is; so does one whose speckle is smaller
than the training frames' (coarse pixels: below about a pixel a speckle's size is no longer
measured, only the pixel's).  In a stream the size is the median of the last measurements, taken
on every 10th frame (:class:`SpeckleScaledDespeckler`; live, on a thread of its own, so no frame
waits for one), so one frame does not change the scale.
Bringing an axis to the training frames' median instead resampled more and harmed more images;
``docs/engine.md`` "Frames without a spacing" has both measurements.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
from collections.abc import Callable

import numpy as np

from engine.base import Around, Despeckler, WrappedDespeckler
from engine.levels import measure_tiles
from engine.pixels import MIN_SIDE, PixelMode, around_shape, at_shape, at_working_pixels, with_spacing
from engine.strength import inside_blend

__all__ = [
    "TILE",
    "SPECKLE_UPPER",
    "STEP",
    "speckle_size",
    "scale_factors",
    "at_speckle_scale",
    "SpeckleScaledDespeckler",
    "with_speckle_scale",
    "frames_view",
    "picture_function",
]

log = logging.getLogger(__name__)

#: side of the square tiles (pixels) the autocovariance is measured in.
TILE = 32
#: at most this many tiles are measured per frame (evenly spread).
MAX_TILES = 128
#: tiles with more black (0) pixels than this fraction are left out (a sector's edge; a dark tail clipped at 0 is kept).
MAX_BLACK = 0.05
#: fewer tissue tiles than this, and the size is not measured (the frame runs as it is).
MIN_TILES = 4
#: 97.5th percentile of the (axial, lateral) speckle size, pixels, of 310 x frames drawn as the
#: shipped models' training frames were (``docs/engine.md`` "Frames without a spacing"): an axis
#: above it is brought to it.
SPECKLE_UPPER = (3.04, 10.67)
#: a stream's speckle size is the median over this many measurements...
WINDOW = 15
#: ... taken on every this many-th frame (4.8 ms each at 256x256, 10-11 ms from 512x512 on, on the
#: 2-core development CPU: ``benchmarks/RESULTS.md``).
EVERY = 10
#: resampling factors are multiples of this (a stream's working size does not creep frame by frame).
STEP = 0.125


def _half_width(c: np.ndarray) -> float:
    """Full width at half maximum (pixels) of a 1-D autocovariance ``c`` from lag 0 (``c[0] = 1``),
    linear between lags; ``nan`` where it stays above 0.5 over the lags measured."""
    below = np.flatnonzero(c < 0.5)
    if below.size == 0:
        return math.nan
    k = int(below[0])
    return 2.0 * (k - 1 + (c[k - 1] - 0.5) / (c[k - 1] - c[k]))


def speckle_size(frame: np.ndarray, tile: int = TILE, max_tiles: int = MAX_TILES) -> tuple[float, float] | None:
    """``(axial, lateral)`` speckle size (pixels) of a ``uint8 (H, W)`` frame (module docstring);
    ``None`` where fewer than :data:`MIN_TILES` tissue tiles of at most :data:`MAX_BLACK` black and
    not flat were found, or where the autocovariance stays above half over a tile's lags."""
    tiles = measure_tiles(frame, tile, max_tiles)
    if tiles is None:
        return None
    corners = tiles.corners[tiles.tissue]
    patches = np.stack([frame[r:r + tile, c:c + tile] for r, c in corners]) if len(corners) else np.empty((0, tile, tile))
    patches = patches[(patches == 0).mean(axis=(1, 2)) <= MAX_BLACK].astype(np.float64)
    if len(patches) < MIN_TILES:
        return None
    patches -= patches.mean(axis=(1, 2), keepdims=True)
    lag0 = np.einsum("nij,nij->n", patches, patches)
    keep = lag0 > 0
    if keep.sum() < MIN_TILES:
        return None
    patches, lag0 = patches[keep], lag0[keep]
    # C(dr, 0) and C(0, dc) only: 1-D autocovariances along each axis (zero-padded FFTs), summed
    # over the other axis, as the 2-D autocovariance is at lag 0 along that axis.
    axial_cov = np.fft.irfft(np.abs(np.fft.rfft(patches, n=2 * tile, axis=1)) ** 2, n=2 * tile, axis=1)
    lateral_cov = np.fft.irfft(np.abs(np.fft.rfft(patches, n=2 * tile, axis=2)) ** 2, n=2 * tile, axis=2)
    c_axial = (axial_cov[:, :tile, :].sum(axis=2) / lag0[:, None]).mean(axis=0)
    c_lateral = (lateral_cov[:, :, :tile].sum(axis=1) / lag0[:, None]).mean(axis=0)
    axial, lateral = _half_width(c_axial), _half_width(c_lateral)
    if not (math.isfinite(axial) and math.isfinite(lateral)):
        return None
    return axial, lateral


def scale_factors(size: tuple[float, float] | None, upper: tuple[float, float] = SPECKLE_UPPER,
                  step: float = STEP) -> tuple[float, float]:
    """``(f_rows, f_cols)``: by how much each axis shrinks for the model: ``size / upper`` rounded to a
    multiple of ``step`` where the ``size`` (pixels) is above ``upper``, else 1; ``(1, 1)`` for
    ``None`` (not measured)."""
    if size is None:
        return 1.0, 1.0
    return tuple(max(1.0, round(s / u / step) * step) if s > u else 1.0  # type: ignore[return-value]
                 for s, u in zip(size, upper, strict=True))


def _shape(shape: tuple[int, int], factors: tuple[float, float]) -> tuple[int, int]:
    return max(MIN_SIDE, round(shape[0] / factors[0])), max(MIN_SIDE, round(shape[1] / factors[1]))


def at_speckle_scale(frame: np.ndarray, despeckle: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``despeckle`` (``uint8 (h, w)`` -> same) run on ``frame`` resampled by the factors of its own
    speckle size (:func:`scale_factors`) and the output resampled back; ``despeckle(frame)`` itself
    where the frame's speckle is inside the range or not measured."""
    return at_shape(frame, despeckle, _shape(frame.shape[:2], scale_factors(speckle_size(frame))))


class SpeckleScaledDespeckler(WrappedDespeckler):
    """Any backend run at the speckle scale of the frames it is given (:func:`at_speckle_scale`), the
    size being the median of the last ``window`` measurements, taken on the first frame and then
    on every ``every``-th (``window=1, every=1``: each frame by its own); a change of frame shape
    starts afresh.  ``background``: after a shape's first frame, measure on a thread of its own, so
    a live frame never waits for a measurement (its result scales the frames that follow it);
    otherwise in line, so the same frames always give the same output.  Pipelining, input checks
    and ``close`` are the wrapped backend's."""

    def __init__(self, inner: Despeckler, window: int = WINDOW, every: int = EVERY, background: bool = False) -> None:
        if window < 1 or every < 1:
            raise ValueError(f"speckle window and interval must be >= 1 frame, got {window} and {every}")
        super().__init__(inner)
        self.every = every
        self.background = background
        self._sizes: collections.deque[tuple[float, float]] = collections.deque(maxlen=window)
        self._shape: tuple[int, int] | None = None
        self._count = 0  # frames since the shape last changed
        self._generation = 0  # bumped with the shape: a measurement of an older shape is dropped
        self._measuring: threading.Thread | None = None
        self._measured: list[tuple[int, tuple[float, float] | None]] = []  # (generation, size) from the thread
        self._lock = threading.Lock()
        self.factors: tuple[float, float] = (1.0, 1.0)

    def _update(self, frame: np.ndarray) -> None:
        if frame.shape != self._shape:
            self._shape, self.factors, self._count = frame.shape, (1.0, 1.0), 0
            self._generation += 1
            self._sizes.clear()
        with self._lock:
            done, self._measured = self._measured, []
        for generation, size in done:
            if generation == self._generation:
                self._add(size, frame.shape)
        self._count += 1
        if (self._count - 1) % self.every:
            return
        if not self.background or self._count == 1:
            self._add(speckle_size(frame), frame.shape)
        elif self._measuring is None or not self._measuring.is_alive():
            self._measuring = threading.Thread(target=self._measure, args=(frame.copy(), self._generation),
                                               name="speckle-size", daemon=True)
            self._measuring.start()

    def _measure(self, frame: np.ndarray, generation: int) -> None:
        size = speckle_size(frame)
        with self._lock:
            self._measured.append((generation, size))

    def _add(self, size: tuple[float, float] | None, shape: tuple[int, int]) -> None:
        if size is not None:
            self._sizes.append(size)
        if not self._sizes:
            return
        factors = scale_factors(tuple(np.median(np.array(self._sizes), axis=0)))
        if factors != self.factors:
            log.info("speckle size: frames of %dx%d run %s", *shape,
                     "as they are" if factors == (1.0, 1.0) else
                     f"{factors[0]:g} x fewer rows, {factors[1]:g} x fewer columns")
            self.factors = factors

    def _around(self, frame: np.ndarray) -> Around:
        self._update(frame)
        return around_shape(frame, _shape(frame.shape, self.factors))

    def describe(self) -> str:
        return f"{self.inner.describe()}, speckle scale {self.factors[0]:g} x {self.factors[1]:g}"


def with_speckle_scale(despeckler: Despeckler, window: int = WINDOW, every: int = EVERY,
                       background: bool = False) -> Despeckler:
    """``despeckler`` run at its frames' speckle scale (:class:`SpeckleScaledDespeckler`): a view on
    the same backend, whose ``close`` closes it; ``despeckler`` itself for a backend without a model
    (the identity backend).  A strength blend stays outermost."""
    if not despeckler.has_model:
        return despeckler
    return inside_blend(despeckler, lambda inner: SpeckleScaledDespeckler(inner, window, every, background))


def frames_view(despeckler: Despeckler, mode: PixelMode, spacing_mm: tuple[float, float] | None,
                window: int = WINDOW, every: int = EVERY, background: bool = False) -> Despeckler:
    """The view of ``despeckler`` that frames run through under pixel ``mode``
    (:data:`engine.pixels.PixelMode`) with ``spacing_mm`` (:func:`engine.pixels.spacing_for`): at
    square trained pixels where the spacing is known, at a trained speckle size under ``"auto"``
    where it is not, else ``despeckler`` itself."""
    if spacing_mm is not None:
        return with_spacing(despeckler, spacing_mm)
    if mode == "auto":
        return with_speckle_scale(despeckler, window, every, background)
    return despeckler


def picture_function(despeckle: Callable[[np.ndarray], np.ndarray], mode: PixelMode) -> Callable[[np.ndarray], np.ndarray]:
    """``despeckle`` (``uint8 (h, w)`` -> same) as the engine runs pictures, which carry no spacing,
    under pixel ``mode`` (:data:`engine.pixels.PixelMode`), each picture by its own: ``"auto"`` at
    its own speckle scale (:func:`at_speckle_scale`), a spacing at square trained pixels
    (:func:`engine.pixels.at_working_pixels`), ``"off"`` and ``"spacing"`` as it comes.  The
    benchmark tools run their generators through it."""
    if mode == "auto":
        return lambda frame: at_speckle_scale(frame, despeckle)
    if mode in ("off", "spacing"):
        return despeckle
    return lambda frame: at_working_pixels(frame, despeckle, mode)
