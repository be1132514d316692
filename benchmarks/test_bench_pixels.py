"""What a known pixel spacing adds per frame when it resamples (:mod:`engine.pixels`): the frame
to its working pixel and the output back (OpenCV on the CPU, around any backend), per frame size,
for rows sampled twice as finely as columns (0.125 x 0.25 mm: rows halved, then doubled); and what
measuring a frame's speckle size costs (:mod:`engine.speckle`, frames without a spacing)."""

from __future__ import annotations

import numpy as np

from engine.pixels import resize, working_shape
from engine.speckle import speckle_size


def test_resample_there_and_back(benchmark, frame) -> None:
    shape = working_shape(frame.shape, (0.125, 0.25))
    out = benchmark(lambda: resize(resize(frame, shape), frame.shape))
    assert shape == (max(16, round(frame.shape[0] / 2)), frame.shape[1])
    assert out.shape == frame.shape and out.dtype == np.uint8


def test_speckle_measured(benchmark, frame) -> None:
    """What ``--pixel-mm auto`` costs on a frame without a spacing each time it measures the speckle
    (:func:`engine.speckle.speckle_size`; a stream measures every 10th frame)."""
    size = benchmark(speckle_size, frame)
    assert size is not None and all(s > 0 for s in size)
