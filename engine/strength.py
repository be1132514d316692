"""Despeckling strength: the output blended with the input, as scanners offer speckle-reduction levels.

``strength`` ``s`` in [0, 1] turns a despeckler ``D`` into

    out = round(s * D(x) + (1 - s) * x)

on ``uint8`` frames (OpenCV's ``addWeighted``: 0.3 ms for a 1080x1920 frame on the development
machine, ``benchmarks/RESULTS.md``): ``s = 1`` is the model's output unchanged, ``s = 0`` the
input unchanged.  Lower strengths bring back the input's speckle and, with it, what the model
weakens: a needle or a faint lesion (``weights/MODEL_CARD.md``, "Strength", for what each level
measured).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine.base import Around, Despeckler, WrappedDespeckler
from training.argparsing import checked_float

__all__ = ["check_strength", "strength_arg", "blend", "BlendedDespeckler", "inside_blend"]


def check_strength(strength: float) -> float:
    """``strength`` as a float, or ``ValueError`` unless it is a number (not a bool or a string) with
    ``0 <= strength <= 1``."""
    if isinstance(strength, bool) or not isinstance(strength, int | float | np.number):
        raise ValueError(f"strength must be a number between 0 and 1, got {strength!r}")
    s = float(strength)
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"strength must be between 0 and 1, got {strength}")
    return s


#: ``argparse`` type of a ``--strength`` flag: :func:`check_strength` of the number given.
strength_arg = checked_float(check_strength, "strength must be a number between 0 and 1")


def blend(frame: np.ndarray, despeckled: np.ndarray, strength: float) -> np.ndarray:
    """``round(s D + (1 - s) x)``: two ``uint8`` arrays of one shape in, a new ``uint8`` array out."""
    if frame.shape != despeckled.shape:
        raise ValueError(f"frame {frame.shape} and despeckled frame {despeckled.shape} differ in shape")
    import cv2  # here, not at the top: the registry imports this module, and cv2 costs ~0.3 s to import

    s = check_strength(strength)
    return cv2.addWeighted(despeckled, s, frame, 1.0 - s, 0.0)


class BlendedDespeckler(WrappedDespeckler):
    """Any backend at a despeckling ``strength`` below 1 (:func:`blend` of its output and its
    input); pipelining, input checks and ``close`` are the wrapped backend's."""

    def __init__(self, inner: Despeckler, strength: float) -> None:
        super().__init__(inner)
        self.strength = check_strength(strength)

    def _around(self, frame: np.ndarray) -> Around:
        kept = frame.copy()  # blended in when a submitted frame's result comes: the caller may refill its buffer
        return frame, lambda out: blend(kept, out, self.strength)

    def describe(self) -> str:
        return f"{self.inner.describe()}, strength {self.strength:g}"


def inside_blend(despeckler: Despeckler, wrap: Callable[[Despeckler], Despeckler]) -> Despeckler:
    """``wrap(despeckler)``, but with a strength blend kept outermost: the input is blended in at its
    own size and grey levels, not as the wrapper feeds the model."""
    if isinstance(despeckler, BlendedDespeckler):
        return BlendedDespeckler(wrap(despeckler.inner), despeckler.strength)
    return wrap(despeckler)
