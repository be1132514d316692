"""What a despeckling strength below 1 adds per frame: :func:`engine.strength.blend` of the
despeckled frame with its input (OpenCV on the CPU, after any backend), per frame size."""

from __future__ import annotations

import numpy as np

from engine.strength import blend


def test_blend(benchmark, frame) -> None:
    despeckled = frame[::-1].copy()
    out = benchmark(blend, frame, despeckled, 0.5)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert abs(int(out[0, 0]) - (int(frame[0, 0]) + int(despeckled[0, 0])) / 2) <= 0.5
