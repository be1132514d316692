"""Flip averaging: a despeckler's output averaged with its output on the mirrored frame.

For a despeckler ``D`` and the left-right mirror ``M`` (the columns reversed)

    out = round((D(x) + M D(M x)) / 2)

on ``uint8`` frames (each output already rounded by its backend; OpenCV's ``addWeighted``, so the
result lies within 1 grey level of averaging the two float outputs).  A B-mode frame's lateral
axis has no preferred direction, so ``M x`` is as true an image of the tissue as ``x``; its depth
axis has one (attenuation, focus), so there is no up-down flip.  A network draws its texture
differently for ``x`` and ``M x``: the average keeps what both draw (the tissue) and weakens what
they draw differently (texture that also changes from frame to frame).  It costs two model runs
per frame.  What it measured with version 5 and the fast model: ``docs/engine.md``, "Flip
averaging".
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine.base import DelegatingDespeckler, Handle

__all__ = ["FLIP_HELP", "mirror", "mean_mirrored", "flip_averaged", "FlipAveragedDespeckler"]

#: help of the ``--flip-average`` flag of every command line that despeckles.
FLIP_HELP = ("average each output with the model's output on the left-right mirrored frame: steadier texture from "
             "frame to frame and more contrast, but coarser texture; two model runs per frame (default: off)")


def mirror(frame: np.ndarray) -> np.ndarray:
    """``M frame``: a new C-contiguous array with the columns (axis 1) reversed."""
    return np.ascontiguousarray(frame[:, ::-1])


def mean_mirrored(out: np.ndarray, out_of_mirror: np.ndarray) -> np.ndarray:
    """``round((out + M out_of_mirror) / 2)``: ``out = D(x)`` and ``out_of_mirror = D(M x)``, two
    ``uint8`` arrays of one shape, in; a new ``uint8`` array out."""
    if out.shape != out_of_mirror.shape:
        raise ValueError(f"the two outputs differ in shape: {out.shape} and {out_of_mirror.shape}")
    import cv2  # here, not at the top: the registry imports this module, and cv2 costs ~0.3 s to import

    return cv2.addWeighted(out, 0.5, mirror(out_of_mirror), 0.5, 0.0)


def flip_averaged(frame: np.ndarray, despeckle: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``round((D(x) + M D(M x)) / 2)`` for any ``uint8 -> uint8`` function ``despeckle``."""
    return mean_mirrored(despeckle(frame), despeckle(mirror(frame)))


class _PairHandle(Handle):
    """The frame and its mirror in flight; :meth:`result` averages their outputs."""

    def __init__(self, out: Handle, out_of_mirror: Handle) -> None:
        self._out, self._out_of_mirror = out, out_of_mirror

    def result(self) -> np.ndarray:
        return mean_mirrored(self._out.result(), self._out_of_mirror.result())


class FlipAveragedDespeckler(DelegatingDespeckler):
    """Any backend, flip-averaged (module docstring): each frame and its mirror go to ``inner``;
    :meth:`submit` queues both, so a pipelined backend computes them back to back."""

    def _infer(self, frame: np.ndarray) -> np.ndarray:
        return flip_averaged(frame, self.inner.infer)

    def submit(self, frame: np.ndarray) -> Handle:
        self._check_open()
        frame = self.input_spec.check(frame)
        return _PairHandle(self.inner.submit(frame), self.inner.submit(mirror(frame)))

    def describe(self) -> str:
        return f"{self.inner.describe()}, flip-averaged"
