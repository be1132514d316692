"""Persistence: each despeckled frame blended with the previous output, as scanners average frames.

With persistence ``a`` in [0, 1) a live stream publishes

    out_t = round((1 - a) * D(x_t) + a * out_(t-1))

(:func:`persist`; OpenCV's ``addWeighted`` through :func:`engine.strength.blend`), a recursive
average over frames: a change of the scene reaches half of its size after ``ln 2 / -ln a``
frames and the output lags by ``a / (1 - a)`` frames on average (1 frame at ``a = 0.5``, 33 ms at
30 frames/s), while what changes at random from frame to frame, the despeckler's redrawn texture
among it, is averaged down (``docs/quality.md``, "Temporal stability", for what it measured).
``a = 0`` publishes every frame as it comes.  The state, the previous output, is the caller's: a
frame of another shape starts afresh.
"""

from __future__ import annotations

import argparse

import numpy as np

from engine.strength import blend

__all__ = ["check_persistence", "persistence_arg", "persist"]


def check_persistence(weight: float) -> float:
    """``weight`` as a float, or ``ValueError`` unless ``0 <= weight < 1``."""
    a = float(weight)
    if not 0.0 <= a < 1.0:
        raise ValueError(f"persistence must be at least 0 and below 1, got {weight}")
    return a


def persistence_arg(text: str) -> float:
    """``argparse`` type of a ``--persistence`` flag: :func:`check_persistence` of the number in ``text``."""
    try:
        return check_persistence(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"persistence must be a number from 0 up to (not including) 1, "
                                         f"got {text!r}") from None


def persist(previous: np.ndarray | None, frame: np.ndarray, weight: float) -> np.ndarray:
    """``round((1 - weight) frame + weight previous)`` (``uint8``); ``frame`` itself where there is no
    ``previous`` output of the same shape, or ``weight`` is 0."""
    if previous is None or previous.shape != frame.shape or weight == 0.0:
        return frame
    return blend(previous, frame, 1.0 - check_persistence(weight))
