"""Persistence: each despeckled frame averaged with the previous outputs, as scanners average frames.

With persistence ``a`` in [0, 1) a live stream keeps the running average

    state_t = (1 - a) * D(x_t) + a * state_(t-1)          (float32)

and publishes ``round(state_t)`` (:func:`persist`): a recursive average over
frames.  A change of the scene reaches half of its size after ``ln 2 / -ln a`` frames and the
output lags by ``a / (1 - a)`` frames on average (1 frame at ``a = 0.5``, 33 ms at 30 frames/s),
while what changes at random from frame to frame, the despeckler's redrawn texture among it, is
averaged down (``docs/quality.md``, "Temporal stability", for what it measured).  The state is
kept in floating point: a recursion on rounded ``uint8`` frames would stop short of a new scene
by up to ``0.5 / (1 - a)`` grey levels for good (2 at ``a = 0.75``), a faint permanent trace of
what was there before.  ``a = 0`` publishes every frame as it comes.  The state is the caller's:
a frame of another shape starts afresh.
"""

from __future__ import annotations

import argparse

import numpy as np

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


def persist(state: np.ndarray | None, frame: np.ndarray, weight: float) -> tuple[np.ndarray | None, np.ndarray]:
    """``(new state, frame to publish)``: the ``float32`` state ``(1 - weight) frame + weight state``
    (``frame`` itself where there is no ``state`` of the same shape) and its ``uint8`` rounding;
    ``(None, frame)`` for ``weight`` 0."""
    if not check_persistence(weight):
        return None, frame
    current = frame.astype(np.float32)
    if state is not None and state.shape == frame.shape:
        w = np.float32(weight)
        current = current * (np.float32(1.0) - w) + state * w
    return current, np.clip(np.rint(current), 0, 255).astype(np.uint8)
