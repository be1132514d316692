"""What the grey-level mapping adds per frame (:mod:`engine.levels`, around any backend, on the CPU),
per frame size: measuring a frame that needs no mapping (its tiles' level and spread), and mapping
one that does there and back (the measurement, the black-surroundings mask and two lookup tables)."""

from __future__ import annotations

import numpy as np

from engine.levels import level_map


def test_levels_measured_inside_the_range(benchmark, frame) -> None:
    inside = (frame // 4 + 100).astype(np.uint8)  # level ~132, spread ~32: inside the training range
    assert benchmark(lambda: level_map(inside)) is None


def test_levels_mapped_there_and_back(benchmark, frame) -> None:
    # uniform random grey levels: spread ~128, far above the range, so every frame is mapped
    def there_and_back() -> np.ndarray:
        lm = level_map(frame)
        return lm.back(lm.forward(frame))

    out = benchmark(there_and_back)
    assert out.shape == frame.shape and out.dtype == np.uint8
