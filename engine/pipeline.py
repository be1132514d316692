"""Pipelined execution on a CPU: one worker thread computes frames in submission order.

:class:`ThreadPipeline` is the CPU counterpart of :class:`engine.cuda_slots.SlotPipeline`: both
take validated frames through ``submit(frame) -> Handle`` and return results strictly in
submission order.  On a CPU the overlap is between the caller (reading, decoding, sending frames)
and the model, which releases the GIL while it computes (ONNX Runtime, torch).  At most
``in_flight`` frames are queued or running; ``submit`` blocks while that many are pending, so a
fast producer cannot grow the queue without bound.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

import numpy as np

from engine.base import Handle

__all__ = ["Pipeline", "ThreadPipeline", "FutureHandle"]


class Pipeline(Protocol):
    """What a pipelined backend drives: ordered submission of validated frames."""

    def submit(self, frame: np.ndarray) -> Handle: ...

    def close(self) -> None: ...


class FutureHandle(Handle):
    """A frame computed by a worker thread; :meth:`result` re-raises the worker's exception."""

    def __init__(self, future: Future[np.ndarray]) -> None:
        self._future = future

    def result(self) -> np.ndarray:
        return self._future.result()


class ThreadPipeline:
    """Run ``compute(frame)`` on one worker thread, first in first out.

    A single worker makes the order of completion the order of submission; ``in_flight`` bounds
    the frames queued or running.
    """

    def __init__(self, compute: Callable[[np.ndarray], np.ndarray], in_flight: int = 2, name: str = "despeckle") -> None:
        if in_flight < 1:
            raise ValueError(f"in_flight must be >= 1, got {in_flight}")
        self._compute = compute
        self._slots = threading.BoundedSemaphore(in_flight)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def _run(self, frame: np.ndarray) -> np.ndarray:
        try:
            return self._compute(frame)
        finally:
            self._slots.release()

    def submit(self, frame: np.ndarray) -> Handle:
        """Queue a copy of ``frame`` (the worker reads it later: the caller may refill its buffer
        as soon as this returns, as a frame grabber does)."""
        frame = frame.copy()
        self._slots.acquire()
        try:
            future = self._executor.submit(self._run, frame)
        except RuntimeError:
            self._slots.release()
            raise
        return FutureHandle(future)

    def close(self) -> None:
        """Finish the queued frames and stop the worker."""
        self._executor.shutdown(wait=True)
