"""The CPU pipeline: first in first out, bounded, and a failing frame fails only its own handle."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from engine.pipeline import ThreadPipeline


def _slow_negative(frame: np.ndarray) -> np.ndarray:
    time.sleep(0.001 * (int(frame[0, 0]) % 5))  # uneven compute times must not reorder results
    if frame[0, 0] == 13:
        raise ValueError("frame 13 is cursed")
    return 255 - frame


def test_results_in_submission_order_and_errors_stay_with_their_frame() -> None:
    pipeline = ThreadPipeline(_slow_negative, in_flight=3)
    try:
        frames = [np.full((4, 4), i, np.uint8) for i in range(20)]
        handles = [pipeline.submit(f) for f in frames]
        for i, handle in enumerate(handles):
            if i == 13:
                with pytest.raises(ValueError, match="cursed"):
                    handle.result()
            else:
                np.testing.assert_array_equal(handle.result(), 255 - frames[i])
    finally:
        pipeline.close()


def test_submit_blocks_while_in_flight_frames_are_pending() -> None:
    gate = threading.Event()

    def wait_for_gate(frame: np.ndarray) -> np.ndarray:
        gate.wait(timeout=10)
        return frame

    pipeline = ThreadPipeline(wait_for_gate, in_flight=2)
    try:
        first = [pipeline.submit(np.zeros((2, 2), np.uint8)) for _ in range(2)]
        third: list = []
        submitter = threading.Thread(target=lambda: third.append(pipeline.submit(np.ones((2, 2), np.uint8))))
        submitter.start()
        submitter.join(timeout=0.3)
        assert submitter.is_alive() and not third  # the third frame waits for a free place
        gate.set()
        submitter.join(timeout=10)
        assert not submitter.is_alive()
        np.testing.assert_array_equal(third[0].result(), np.ones((2, 2), np.uint8))
        assert all(h.result().sum() == 0 for h in first)
    finally:
        gate.set()
        pipeline.close()


def test_in_flight_must_be_positive() -> None:
    with pytest.raises(ValueError, match="in_flight must be >= 1"):
        ThreadPipeline(_slow_negative, in_flight=0)
