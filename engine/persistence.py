"""Persistence: each despeckled frame averaged with the previous outputs, as scanners average frames.

With persistence ``a`` in [0, 1) a live stream keeps the running average

    state_t = (1 - a) * D(x_t) + a * state_(t-1)          (float32)

and publishes ``round(state_t)`` (:class:`Persistence`): a recursive average over
frames.  A change of the scene reaches half of its size after ``ln 2 / -ln a`` frames and the
output lags by ``a / (1 - a)`` frames on average (1 frame at ``a = 0.5``, 33 ms at 30 frames/s),
while what changes at random from frame to frame, the despeckler's redrawn texture among it, is
averaged down (``docs/quality.md``, "Temporal stability", for what it measured).  The state is
kept in floating point: a recursion on rounded ``uint8`` frames would stop short of a new scene
by up to ``0.5 / (1 - a)`` grey levels for good (2 at ``a = 0.75``), a faint permanent trace of
what was there before.  ``a = 0`` publishes every frame as it comes.  A :class:`Persistence` owns
its state and work buffers (one per stream or file); a frame of another shape, or
:meth:`Persistence.reset`, starts afresh.

*Motion-adaptive* persistence (``motion = M`` grey levels, as scanners adapt theirs) gives each
pixel its own weight from how far the new frame has moved away from the running average there,

    d = G_s * (D(x_t) - state_(t-1))          (Gaussian of s = 2 pixels' standard deviation)
    a_p = a * max(0, 1 - |d_p| / M)

so that where something moved (a needle advancing, a vessel's edge) the new frame shows at once,
while the redrawn texture, which the smoothing averages down to a few grey levels, is averaged
over frames as before.  ``M = 0`` is plain persistence.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from training.argparsing import checked_float

__all__ = ["MOTION_HELP", "MOTION_SIGMA_PX", "Persistence", "check_motion", "check_motion_args", "check_persistence",
           "motion_arg", "persistence_arg"]

#: standard deviation (pixels) of the Gaussian that smooths the change before motion-adaptive persistence weighs it.
MOTION_SIGMA_PX = 2.0
#: help of the ``--persistence-motion`` flags.
MOTION_HELP = ("with --persistence: motion-adaptive persistence, each pixel averaged less the more the frame has "
               "moved away from the running average there, not at all from M grey levels (smoothed over 2 "
               "pixels) up: a needle or a moved probe shows at once while still texture is averaged "
               "(e.g. --persistence 0.9 --persistence-motion 16; default: 0, plain persistence)")


def check_persistence(weight: float) -> float:
    """``weight`` as a float, or ``ValueError`` unless ``0 <= weight < 1``."""
    a = float(weight)
    if not 0.0 <= a < 1.0:
        raise ValueError(f"persistence must be at least 0 and below 1, got {weight}")
    return a


#: ``argparse`` type of a ``--persistence`` flag: :func:`check_persistence` of the number given.
persistence_arg = checked_float(check_persistence, "persistence must be a number from 0 up to (not including) 1")


def check_motion(motion: float) -> float:
    """``motion`` (grey levels) as a float, or ``ValueError`` unless ``0 <= motion <= 255``."""
    m = float(motion)
    if not 0.0 <= m <= 255.0:
        raise ValueError(f"persistence motion must be from 0 to 255 grey levels, got {motion}")
    return m


#: ``argparse`` type of a ``--persistence-motion`` flag: :func:`check_motion` of the number given.
motion_arg = checked_float(check_motion, "persistence motion must be a number of grey levels from 0 to 255")


def check_motion_args(parser: argparse.ArgumentParser, persistence: float, motion: float) -> None:
    """``parser.error`` (exit status 2, one line) for flags :class:`Persistence` refuses: a
    ``--persistence-motion`` without ``--persistence``."""
    try:
        Persistence(persistence, motion)
    except ValueError as exc:
        parser.error(f"--persistence-motion: {exc}")


class Persistence:
    """The running average of one stream's frames (module docstring): ``weight`` ``a`` in [0, 1),
    ``motion`` ``M`` in grey levels (0: plain persistence).  Calling it with a ``uint8`` frame
    (``(H, W)`` or ``(H, W, C)``) returns the frame to publish, a new ``uint8`` array; the
    ``float32`` state and the work buffers are kept between calls and written in place (a
    1080x1920 frame allocates no float buffer after the first), so one object serves one stream."""

    def __init__(self, weight: float, motion: float = 0.0) -> None:
        self.weight, self.motion = check_persistence(weight), check_motion(motion)
        if self.motion and not self.weight:
            raise ValueError(f"persistence motion {motion:g} needs a persistence above 0 (it adapts the persistence)")
        self.state: np.ndarray | None = None  # float32 running average
        self._diff = self._weights = np.empty(0, np.float32)

    def reset(self) -> None:
        """Forget the running average: the next frame is published as it comes."""
        self.state = None

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        a = self.weight
        if not a:
            return frame
        if self.state is None or self.state.shape != frame.shape:
            self.state = frame.astype(np.float32)
            self._diff, self._weights = np.empty_like(self.state), np.empty_like(self.state)
            return frame.copy()
        if self.motion:  # OpenCV's vector loops, in place: several times numpy's time with new arrays
            diff, w = self._diff, self._weights
            cv2.subtract(frame, self.state, dst=diff, dtype=cv2.CV_32F)  # D(x_t) - state
            cv2.GaussianBlur(diff, (0, 0), MOTION_SIGMA_PX, dst=w, borderType=cv2.BORDER_REFLECT)
            np.abs(w, out=w)
            cv2.addWeighted(w, -a / self.motion, w, 0.0, a, dst=w)  # a (1 - |d| / M)
            np.maximum(w, 0.0, out=w)  # (cv2.max with a number would clip the first channel only)
            cv2.multiply(w, diff, dst=w)
            cv2.subtract(frame, w, dst=self.state, dtype=cv2.CV_32F)  # D(x_t) - a_p (D(x_t) - state)
        else:
            cv2.addWeighted(frame, 1.0 - a, self.state, a, 0.0, dst=self.state, dtype=cv2.CV_32F)
        return cv2.convertScaleAbs(self.state)  # rounded to the nearest grey level, saturated at 255
