"""Frames as they come off a scanner, made ready for the despeckler: pure array functions.

A grabber may deliver the whole scanner screen: the grey-scale B-mode image plus text, rulers and
colour (Doppler) overlays, as ``uint8 (H, W, 3)`` BGR.  Only the grey B-mode region is despeckled;
every other pixel is passed through byte-identical:

* a pixel is *grey* when ``max(B, G, R) - min(B, G, R) <= grey_tolerance`` (default 4 grey
  levels, which absorbs the chroma error of JPEG/H.264 video of a grey image; saturated overlays
  differ by tens of levels);
* the *image region* is the bounding box of the largest connected component of the grey pixels
  brighter than ``black_level``, after a morphological closing (``close_px`` square) that joins
  the dark gaps between speckles; it must cover at least ``min_fraction`` of the frame;
* inside that box the grey value ``Y = round(0.299 R + 0.587 G + 0.114 B)`` (``= R = G = B`` for
  exact grey pixels) is despeckled and written into all three channels of the grey pixels only.

``uint16`` frames are scaled to ``uint8`` by ``round(x / 257)`` (65535 -> 255); a 1-channel frame
is despeckled whole unless a region is given.  Nothing here knows about sockets or threads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from engine.base import FrameError

__all__ = [
    "Region",
    "ScreenOptions",
    "to_uint8",
    "find_image_region",
    "despeckle_frame",
    "parse_region",
    "check_region",
]

#: (x, y, w, h) in pixels: column and row of the top-left corner, width and height.
Region = tuple[int, int, int, int]


@dataclass(frozen=True)
class ScreenOptions:
    """How the image region of a scanner screen is found (see the module docstring)."""

    grey_tolerance: int = 4
    black_level: int = 8
    close_px: int = 9
    min_fraction: float = 0.05


def parse_region(text: str) -> Region:
    """Parse ``"x,y,w,h"`` (non-negative integers, ``w, h >= 1``) into a :data:`Region`."""
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--roi must be x,y,w,h (four integers), got {text!r}") from None
    if min(x, y) < 0 or min(w, h) < 1:
        raise ValueError(f"--roi needs x, y >= 0 and w, h >= 1, got {text!r}")
    return x, y, w, h


def to_uint8(image: np.ndarray) -> np.ndarray:
    """``uint8`` as it is; ``uint16`` scaled by ``round(x / 257)``; any other dtype is a FrameError."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    raise FrameError(f"frame dtype {image.dtype} is neither uint8 nor uint16")


def _spread_and_low(bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel ``max(B, G, R) - min(B, G, R)`` and ``min(B, G, R)`` (OpenCV: ~15x numpy's speed)."""
    b, g, r = cv2.split(bgr)
    low = cv2.min(cv2.min(b, g), r)
    return cv2.subtract(cv2.max(cv2.max(b, g), r), low), low


def find_image_region(bgr: np.ndarray, options: ScreenOptions = ScreenOptions()) -> Region | None:
    """The bounding box of the grey B-mode image on a BGR screen, or ``None`` if there is none.

    The connected components are labelled on the closed mask shrunk by ``k = max(1, min(H, W) // 256)``
    (any set pixel in a ``k x k`` cell counts); the largest one's box, grown by ``k``, is then
    tightened to the set pixels of the full-resolution mask inside it.
    """
    return _find_region(*_spread_and_low(bgr), options)


def _find_region(spread: np.ndarray, low: np.ndarray, options: ScreenOptions) -> Region | None:
    grey = ((spread <= options.grey_tolerance) & (low > options.black_level)).astype(np.uint8)
    kernel = np.ones((options.close_px, options.close_px), np.uint8)
    closed = cv2.morphologyEx(grey, cv2.MORPH_CLOSE, kernel)
    rows, cols = closed.shape
    k = max(1, min(rows, cols) // 256)
    small = (
        cv2.resize(closed, (-(-cols // k), -(-rows // k)), interpolation=cv2.INTER_AREA) > 0
        if k > 1
        else closed
    )
    count, _, stats, _ = cv2.connectedComponentsWithStats(small.astype(np.uint8), connectivity=8)
    if count < 2:
        return None
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h, area = (int(v) for v in stats[best])
    if area * k * k < options.min_fraction * rows * cols:
        return None
    x0, y0 = max(0, (x - 1) * k), max(0, (y - 1) * k)
    x1, y1 = min(cols, (x + w + 1) * k), min(rows, (y + h + 1) * k)
    bx, by, bw, bh = cv2.boundingRect(closed[y0:y1, x0:x1])
    return x0 + bx, y0 + by, bw, bh


def check_region(region: Region, shape: tuple[int, ...]) -> None:
    """Raise :class:`engine.base.FrameError` unless ``region`` lies wholly inside a frame of
    ``shape`` ``(H, W, ...)``: a box that does not fit is refused, not cut to the frame."""
    x, y, w, h = region
    rows, cols = shape[0], shape[1]
    if x + w > cols or y + h > rows:
        raise FrameError(
            f"--roi {x},{y},{w},{h} (x,y,w,h) reaches outside the frame of {cols}x{rows} pixels (WxH)"
        )


def despeckle_frame(
    image: np.ndarray,
    despeckle: Callable[[np.ndarray], np.ndarray],
    region: Region | None = None,
    options: ScreenOptions = ScreenOptions(),
) -> np.ndarray:
    """Despeckle the grey image in ``image`` with ``despeckle`` (``uint8 (h, w)`` -> same).

    ``image``: ``uint8``/``uint16``, ``(H, W)``, ``(H, W, 1)`` or BGR ``(H, W, 3)``.  ``region``
    restricts the work to a box; without it a grey frame is despeckled whole and a BGR screen's
    image region is found by :func:`find_image_region`.  A BGR frame whose pixels are all grey is
    treated as a grey frame.  Returns a new ``uint8`` array: ``(H, W)`` for grey input, ``(H, W, 3)``
    for a colour screen.  Raises :class:`engine.base.FrameError` for a frame it cannot handle.
    """
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
        raise FrameError(
            f"frame must be an (H, W) or (H, W, C) array, got {getattr(image, 'shape', type(image))}"
        )
    image = to_uint8(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] != 3:
        raise FrameError(f"frame must have 1 or 3 (BGR) channels, got {image.shape[2]}")
    if image.ndim == 3:
        spread, low = _spread_and_low(image)
        mask = spread <= options.grey_tolerance
        if mask.all():
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 2:
        if region is None:
            return despeckle(image)
        check_region(region, image.shape)
        x, y, w, h = region
        out = image.copy()
        out[y : y + h, x : x + w] = despeckle(image[y : y + h, x : x + w])
        return out
    if region is None:
        region = _find_region(spread, low, options)
        if region is None:
            raise FrameError("colour frame has no grey-scale image region (give --roi x,y,w,h)")
    check_region(region, image.shape)
    x, y, w, h = region
    box = image[y : y + h, x : x + w]
    clean = despeckle(cv2.cvtColor(box, cv2.COLOR_BGR2GRAY))
    out = image.copy()
    keep = mask[y : y + h, x : x + w, np.newaxis]
    np.copyto(out[y : y + h, x : x + w], cv2.cvtColor(clean, cv2.COLOR_GRAY2BGR), where=keep)
    return out
