"""What persistence adds per frame: one :class:`engine.persistence.Persistence` step, the despeckled
frame averaged into the running average (on the host after any backend), plain and motion-adaptive,
per frame size; the frames alternate between two random ones, so that every step has a change to
average (the same frame again and again would settle the average on it)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from engine.persistence import Persistence


@pytest.mark.parametrize("motion", [0.0, 16.0], ids=["plain", "motion-adaptive"])
def test_persist(benchmark, frame, motion: float) -> None:
    other = frame[::-1].copy()
    frames = itertools.cycle([other, frame])
    average = Persistence(0.75, motion)
    average(next(frames))  # the first frame starts the average; every timed step averages
    out = benchmark(lambda: average(next(frames)))
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert not np.array_equal(out, frame) and not np.array_equal(out, other)  # averaged, not passed through
