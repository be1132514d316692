"""Pixel spacing: run the model on square pixels of a size it was trained on.

The shipped models were trained on square pixels of 0.15-0.5 mm (:data:`TRAINED_PIXEL_MM`).
A frame whose spacing ``(row_mm, col_mm)`` is known is resampled, before the model, to square
pixels of

    p = clip(max(row_mm, col_mm), 0.15, 0.5)   mm

(rows scaled by ``row_mm / p``, columns by ``col_mm / p``) and the output resampled back to the
frame's own size: each axis with OpenCV's area average where it shrinks and bilinear
interpolation where it grows.  A frame of square pixels inside the range is passed through
untouched.  Fed as it is, the network draws its speckle at its own size in pixels; on pixels
twice as fine along one axis as along the other, or outside the range, its vessel contrast and
its correlation with the tissue were lower than at the working pixel on every set measured
(``docs/engine.md``, "Pixel spacing").
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import numpy as np

from engine.base import Around, Despeckler, FrameError, WrappedDespeckler
from engine.strength import inside_blend

__all__ = [
    "TRAINED_PIXEL_MM",
    "check_spacing",
    "spacing_arg",
    "pixel_mode_arg",
    "PixelMode",
    "PIXEL_WORDS",
    "PIXEL_HELP",
    "spacing_for",
    "working_pixel_mm",
    "resamples",
    "working_shape",
    "resize",
    "at_shape",
    "around_shape",
    "at_working_pixels",
    "ResampledDespeckler",
    "with_spacing",
]

#: smallest and largest square pixel (mm) of the shipped models' training data.
TRAINED_PIXEL_MM = (0.15, 0.5)
#: a working frame is never made smaller than this along either side (the engine's minimum frame).
MIN_SIDE = 16
#: the largest pixel spacing (mm) a ``--pixel-mm`` flag takes: no ultrasound frame has coarser
#: pixels, and a spacing in micrometres typed as millimetres (``100``) is caught at start-up.
MAX_FLAG_PIXEL_MM = 10.0


def check_spacing(spacing_mm: tuple[float, float] | list[float]) -> tuple[float, float]:
    """``(row_mm, col_mm)`` as two floats, or ``ValueError`` unless both are finite and > 0."""
    try:
        row, col = (float(v) for v in spacing_mm)
    except (TypeError, ValueError):
        raise ValueError(f"pixel spacing must be two numbers (row_mm, col_mm), got {spacing_mm!r}") from None
    if not (math.isfinite(row) and math.isfinite(col) and row > 0 and col > 0):
        raise ValueError(f"pixel spacing must be two finite numbers > 0 mm, got {spacing_mm!r}")
    return row, col


def _parsed_spacing(text: str) -> tuple[float, float] | None:
    """``S`` or ``ROW,COL`` as a checked spacing (:func:`check_spacing`), ``None`` if it is not one."""
    parts = text.split(",")
    try:
        values = [float(p) for p in parts] if len(parts) in (1, 2) else []
        return check_spacing(values * 2 if len(values) == 1 else values)
    except ValueError:
        return None


def _flag_spacing(spacing: tuple[float, float], text: str) -> tuple[float, float]:
    """``spacing`` unless it is above :data:`MAX_FLAG_PIXEL_MM` (a one-line ``argparse`` error)."""
    if max(spacing) > MAX_FLAG_PIXEL_MM:
        raise argparse.ArgumentTypeError(
            f"pixel spacing is in mm, at most {MAX_FLAG_PIXEL_MM:g}: got {text!r} (micrometres? 100 um is 0.1)")
    return spacing


def spacing_arg(text: str) -> tuple[float, float]:
    """``argparse`` type of a ``--pixel-mm`` flag: ``S`` (square pixels) or ``ROW,COL`` in mm, at
    most :data:`MAX_FLAG_PIXEL_MM`."""
    spacing = _parsed_spacing(text)
    if spacing is None:
        raise argparse.ArgumentTypeError(f"pixel spacing must be S or ROW,COL in mm, numbers > 0, got {text!r}")
    return _flag_spacing(spacing, text)


#: how a tool takes its frames' pixel spacing: ``"auto"`` (the spacing the frames come with, where
#: they have one, else their speckle size: :mod:`engine.speckle`), ``"spacing"`` (the spacing they
#: come with, else as they are), ``"off"`` (never resample) or ``(row_mm, col_mm)`` for every frame.
PixelMode = str | tuple[float, float]
#: the words :data:`PixelMode` takes besides a spacing.
PIXEL_WORDS = ("auto", "spacing", "off")
#: ``--help`` text of a ``--pixel-mm`` flag that takes a :data:`PixelMode`.
PIXEL_HELP = ("pixel spacing of the frames in mm: the model runs on square pixels of 0.15-0.5 mm and the output "
              "is resampled back. auto: the spacing the frames come with (DICOM, sim or a grabber's header), else "
              "their speckle size (an axis whose speckle is larger than the training frames' is shrunk for the "
              "model, docs/engine.md); spacing: the spacing they come with, else as they are; off: as they are; "
              "S or ROW,COL: that spacing [auto]")


def pixel_mode_arg(text: str) -> PixelMode:
    """``argparse`` type of ``--pixel-mm``: ``auto``, ``spacing``, ``off``, ``S`` or ``ROW,COL`` (mm,
    at most :data:`MAX_FLAG_PIXEL_MM`), as :data:`PixelMode`."""
    if text in PIXEL_WORDS:
        return text
    spacing = _parsed_spacing(text)
    if spacing is None:
        raise argparse.ArgumentTypeError(
            f"--pixel-mm must be auto, spacing, off, S or ROW,COL in mm (numbers > 0), got {text!r}")
    return _flag_spacing(spacing, text)


def spacing_for(mode: PixelMode, own: Callable[[], tuple[float, float] | None]) -> tuple[float, float] | None:
    """The spacing frames are despeckled at under ``mode``: ``None`` for ``"off"``, the spacing
    given, or for ``"auto"`` and ``"spacing"`` their own (``own()``, called only then; ``None`` where
    they carry none: ``"auto"`` then goes by their speckle size, :func:`engine.speckle.frames_view`)."""
    if mode == "off":
        return None
    if mode in ("auto", "spacing"):
        return own()
    return mode


def working_pixel_mm(spacing_mm: tuple[float, float], pixel_range: tuple[float, float] = TRAINED_PIXEL_MM) -> float:
    """``p = clip(max(row_mm, col_mm), *pixel_range)``: the square pixel (mm) the model runs on."""
    row, col = check_spacing(spacing_mm)
    return min(max(max(row, col), pixel_range[0]), pixel_range[1])


def resamples(spacing_mm: tuple[float, float], pixel_range: tuple[float, float] = TRAINED_PIXEL_MM) -> bool:
    """Whether frames of ``spacing_mm`` run on other pixels than their own (not square inside the range)."""
    work = working_pixel_mm(spacing_mm, pixel_range)
    return work != spacing_mm[0] or work != spacing_mm[1]


def working_shape(
    shape: tuple[int, int],
    spacing_mm: tuple[float, float],
    pixel_range: tuple[float, float] = TRAINED_PIXEL_MM,
) -> tuple[int, int]:
    """``(h, w)`` of a frame of ``shape`` resampled to the square working pixel (module docstring);
    ``shape`` itself when its pixels are square and inside ``pixel_range``."""
    row, col = check_spacing(spacing_mm)
    p = working_pixel_mm((row, col), pixel_range)
    h, w = shape
    return max(MIN_SIDE, round(h * row / p)), max(MIN_SIDE, round(w * col / p))


def resize(frame: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``frame`` (``uint8 (H, W)``) resampled to ``shape``, one axis at a time: area average where an
    axis shrinks, bilinear where it grows (OpenCV's area mode is nearest-neighbour on growing)."""
    import cv2  # here, not at the top: the registry imports this module, and cv2 costs ~0.3 s to import

    h, w = shape
    out = frame
    if out.shape[0] != h:
        mode = cv2.INTER_AREA if h < out.shape[0] else cv2.INTER_LINEAR
        out = cv2.resize(out, (out.shape[1], h), interpolation=mode)
    if out.shape[1] != w:
        mode = cv2.INTER_AREA if w < out.shape[1] else cv2.INTER_LINEAR
        out = cv2.resize(out, (w, h), interpolation=mode)
    return out


def at_shape(frame: np.ndarray, despeckle: Callable[[np.ndarray], np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """``despeckle`` run on ``frame`` resized to ``shape`` and its output resized back (:func:`resize`);
    ``despeckle(frame)`` itself where ``shape`` is the frame's."""
    if shape == frame.shape[:2]:
        return despeckle(frame)
    return resize(despeckle(resize(frame, shape)), frame.shape[:2])


def around_shape(frame: np.ndarray, shape: tuple[int, int]) -> Around:
    """:data:`engine.base.Around` of a wrapper that runs ``frame`` at ``shape`` (:func:`at_shape`)."""
    if shape == frame.shape[:2]:
        return frame, None
    return resize(frame, shape), lambda out: resize(out, frame.shape[:2])


def at_working_pixels(
    frame: np.ndarray,
    despeckle: Callable[[np.ndarray], np.ndarray],
    spacing_mm: tuple[float, float] | None,
    pixel_range: tuple[float, float] = TRAINED_PIXEL_MM,
) -> np.ndarray:
    """``despeckle`` (``uint8 (h, w)`` -> same) run on ``frame`` at the working pixel and resampled
    back to ``frame``'s shape; ``despeckle(frame)`` itself when ``spacing_mm`` is ``None`` or the
    frame is already at its working pixel."""
    if spacing_mm is None:
        return despeckle(frame)
    return at_shape(frame, despeckle, working_shape(frame.shape[:2], spacing_mm, pixel_range))


class ResampledDespeckler(WrappedDespeckler):
    """Any backend run at the working pixel of frames of one known ``spacing_mm`` (row, column mm;
    :func:`at_working_pixels`); pipelining, input checks and ``close`` are the wrapped backend's."""

    def __init__(
        self,
        inner: Despeckler,
        spacing_mm: tuple[float, float],
        pixel_range: tuple[float, float] = TRAINED_PIXEL_MM,
    ) -> None:
        super().__init__(inner)
        self.spacing_mm = check_spacing(spacing_mm)
        self.pixel_range = pixel_range

    def _around(self, frame: np.ndarray) -> Around:
        shape = working_shape(frame.shape, self.spacing_mm, self.pixel_range)
        if not self.inner.input_spec.fits(*shape):  # refused before a frame of that size is made
            row, col = self.spacing_mm
            raise FrameError(f"a {frame.shape[0]}x{frame.shape[1]} frame of {row:g} x {col:g} mm pixels would be "
                             f"resized to {shape[0]}x{shape[1]} for the model, outside the engine's profile "
                             f"{self.inner.input_spec.profile}: is the pixel spacing right?")
        return around_shape(frame, shape)

    def describe(self) -> str:
        row, col = self.spacing_mm
        return f"{self.inner.describe()}, pixels {row:g} x {col:g} mm"


def with_spacing(despeckler: Despeckler, spacing_mm: tuple[float, float] | None) -> Despeckler:
    """``despeckler`` run at the working pixel of frames of ``spacing_mm``: a view on the same
    backend, whose ``close`` closes it; ``despeckler`` itself for ``None`` and for a backend
    without a model (``has_model`` False: the identity backend, nothing to resample for).  A strength blend
    (:class:`engine.strength.BlendedDespeckler`) stays outermost, so the input is blended in at
    its own size, not resampled twice."""
    if spacing_mm is None or not despeckler.has_model:
        return despeckler
    return inside_blend(despeckler, lambda inner: ResampledDespeckler(inner, spacing_mm))
