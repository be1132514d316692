"""The one interface every despeckling backend implements.

Contract (every backend, every platform): a ``uint8`` frame of shape ``(H, W)`` in, a
``uint8`` frame of the same shape out.  The float maths (scale to [0, 1], model, clip,
scale by 255, round) happens inside the backend, so 1 byte per pixel crosses any bus.

Two ways to call it:

* ``infer(frame) -> frame``: one frame, blocking.
* ``submit(frame) -> Handle`` then ``handle.result()``: pipelined; up to ``in_flight``
  frames are on the device at once and results come back strictly in submission order.
"""

from __future__ import annotations

import abc
import argparse
import numbers
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from engine.pipeline import Pipeline

__all__ = ["BLACK", "Despeckler", "PipelinedDespeckler", "DelegatingDespeckler", "WrappedDespeckler", "Around", "Handle", "InputSpec", "FrameError",
           "BackendUnavailable", "check_threads", "threads_arg"]


#: side (pixels) of the all-black window that marks a pixel as background: the black surroundings
#: of a sector scan, which every model backend keeps black (:mod:`engine.torch_model`) and the
#: grey-level map leaves out (:mod:`engine.levels`).
BLACK = 9


class FrameError(ValueError):
    """A frame the backend cannot take: wrong dtype, channel count or size outside the profile."""


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (its library or device is missing)."""


@dataclass(frozen=True)
class InputSpec:
    """What a backend accepts: ``uint8`` ``(H, W)`` frames with ``min_hw <= (H, W) <= max_hw``."""

    min_hw: tuple[int, int] = (16, 16)
    max_hw: tuple[int, int] = (4096, 4096)
    dtype: str = "uint8"

    def check(self, frame: np.ndarray) -> np.ndarray:
        """Return ``frame`` as a C-contiguous ``uint8 (H, W)`` array or raise :class:`FrameError`."""
        if not isinstance(frame, np.ndarray):
            raise FrameError(f"frame must be a numpy array, got {type(frame).__name__}")
        if frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[:, :, 0]
        if frame.ndim != 2:
            raise FrameError(f"frame must be grey-scale (H, W), got shape {frame.shape}")
        if frame.dtype != np.uint8:
            raise FrameError(f"frame dtype must be uint8, got {frame.dtype}")
        h, w = frame.shape
        if not self.fits(h, w):
            raise FrameError(f"frame size {h}x{w} is outside the engine's profile {self.profile}")
        return np.ascontiguousarray(frame)

    def fits(self, h: int, w: int) -> bool:
        """Whether a frame of ``h`` x ``w`` pixels is inside the profile."""
        (h0, w0), (h1, w1) = self.min_hw, self.max_hw
        return h0 <= h <= h1 and w0 <= w <= w1

    @property
    def profile(self) -> str:
        """The profile as errors and help texts write it: ``"16x16 .. 4096x4096"``."""
        return "{}x{} .. {}x{}".format(*self.min_hw, *self.max_hw)


def check_threads(threads: int | None) -> int | None:
    """The CPU threads option of the CPU backends: ``None`` or ``0`` mean the backend's own choice
    (returned as ``None``), a positive count is kept; a negative one raises ``ValueError``."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 0:
        raise ValueError(f"threads must be a whole number >= 0 (0: the backend's default), got {threads!r}")
    return int(threads) or None


def threads_arg(text: str) -> int:
    """``argparse`` type of a ``--threads`` flag: a whole number >= 0 (:func:`check_threads`; 0 is
    the backend's default), else a one-line ``argparse`` error."""
    try:
        threads = int(text)
        check_threads(threads)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a whole number >= 0 (0: the backend's default), got {text!r}") from None
    return threads


class Handle(abc.ABC):
    """A submitted frame; :meth:`result` blocks until its output is ready."""

    @abc.abstractmethod
    def result(self) -> np.ndarray:
        """The despeckled ``uint8 (H, W)`` frame."""


class _DoneHandle(Handle):
    def __init__(self, out: np.ndarray) -> None:
        self._out = out

    def result(self) -> np.ndarray:
        return self._out


class Despeckler(abc.ABC):
    """Base class of the backends.  Subclasses implement :meth:`_infer` (and, where the
    hardware can overlap work, :meth:`submit`)."""

    #: registry name of the backend, e.g. ``"onnxruntime"``.
    name: str = "base"
    #: whether a model computes the output (False for the identity backend: nothing to feed at a
    #: model's pixel size or grey levels, :mod:`engine.pixels`, :mod:`engine.levels`).
    has_model: bool = True
    #: the model file the backend runs (``None`` for the identity backend).
    weights: Path | None = None
    #: the grey-level mode of :mod:`engine.levels` the model's training inputs were mapped to, as
    #: its checkpoint or ONNX export records it (``input_levels``); ``"off"``: frames as a probe
    #: gave them, or not recorded (a TensorRT engine file, a file older than the record).
    input_levels: str = "off"

    def __init__(self, spec: InputSpec | None = None, in_flight: int = 2) -> None:
        if in_flight < 1:
            raise ValueError(f"in_flight must be >= 1, got {in_flight}")
        self.input_spec = spec or InputSpec()
        self.in_flight = in_flight
        self._closed = False

    @abc.abstractmethod
    def _infer(self, frame: np.ndarray) -> np.ndarray:
        """Despeckle one frame already validated by ``input_spec.check``."""

    def infer(self, frame: np.ndarray) -> np.ndarray:
        """Despeckle one ``uint8 (H, W)`` frame and return a new ``uint8 (H, W)`` frame."""
        self._check_open()
        return self._infer(self.input_spec.check(frame))

    def submit(self, frame: np.ndarray) -> Handle:
        """Queue one frame; the default computes it at once (backends with a device override this)."""
        return _DoneHandle(self.infer(frame))

    def imap(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Despeckle ``frames`` lazily through :meth:`submit`, keeping up to ``in_flight`` pending,
        so reading the next frames overlaps the model.  Yields results in input order."""
        pending: deque[Handle] = deque()
        for frame in frames:
            pending.append(self.submit(frame))
            if len(pending) >= self.in_flight:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def map(self, frames: Iterable[np.ndarray]) -> list[np.ndarray]:
        """Despeckle an iterable of frames (see :meth:`imap`) into a list."""
        return list(self.imap(frames))

    def describe(self) -> str:
        """One line naming the backend and its device, for status lines and logs."""
        return self.name

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self.name} despeckler is closed")

    def close(self) -> None:
        """Release the backend's resources; further calls raise ``RuntimeError``."""
        self._closed = True

    def __enter__(self) -> Despeckler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ThenHandle(Handle):
    """``after(inner.result())``: a wrapped backend's handle (:class:`WrappedDespeckler`)."""

    def __init__(self, inner: Handle, after: Callable[[np.ndarray], np.ndarray]) -> None:
        self._inner, self._after = inner, after

    def result(self) -> np.ndarray:
        return self._after(self._inner.result())


#: what a :class:`WrappedDespeckler` does to one frame: the frame its ``inner`` backend gets, and
#: the function that turns ``inner``'s output into its own (``None``: the output as it is).
Around = tuple[np.ndarray, Callable[[np.ndarray], np.ndarray] | None]


class DelegatingDespeckler(Despeckler):
    """A backend built around another one (``inner``): its input checks, pipelining depth, name,
    model file and ``close`` are ``inner``'s.  Subclasses implement :meth:`_infer` (and
    :meth:`submit`) in terms of ``inner``'s."""

    def __init__(self, inner: Despeckler) -> None:
        super().__init__(inner.input_spec, inner.in_flight)
        self.inner = inner
        self.name = inner.name
        self.has_model = inner.has_model
        self.weights = inner.weights
        self.input_levels = inner.input_levels

    def close(self) -> None:
        if not self._closed:
            self.inner.close()
        super().close()


class WrappedDespeckler(DelegatingDespeckler):
    """A backend that changes the one frame another one (``inner``) takes or gives back (strength,
    pixel spacing, grey levels).  Subclasses implement :meth:`_around`; :meth:`infer` and
    :meth:`submit` (whose handle applies the ``after`` function when ``inner``'s result comes)
    follow from it."""

    @abc.abstractmethod
    def _around(self, frame: np.ndarray) -> Around:
        """``(fed, after)`` for a checked ``frame`` (:data:`Around`)."""

    def _infer(self, frame: np.ndarray) -> np.ndarray:
        fed, after = self._around(frame)
        out = self._fed_to(self.inner.infer, frame, fed)
        return out if after is None else after(out)

    def submit(self, frame: np.ndarray) -> Handle:
        self._check_open()
        frame = self.input_spec.check(frame)
        fed, after = self._around(frame)
        handle = self._fed_to(self.inner.submit, frame, fed)
        return handle if after is None else _ThenHandle(handle, after)

    def _fed_to(self, call: Callable[[np.ndarray], Any], frame: np.ndarray, fed: np.ndarray) -> Any:
        """``call(fed)``; a :class:`FrameError` of a frame this wrapper resized names the caller's frame too."""
        try:
            return call(fed)
        except FrameError as exc:
            if fed.shape[:2] == frame.shape[:2]:
                raise
            raise FrameError(f"a {frame.shape[0]}x{frame.shape[1]} frame, resized to {fed.shape[0]}x{fed.shape[1]} "
                             f"for the model ({self.describe()}): {exc}") from None


class PipelinedDespeckler(Despeckler):
    """A backend whose frames go through a :class:`engine.pipeline.Pipeline` (a worker thread on a
    CPU, CUDA slots on a GPU).  Subclasses build their model, then call :meth:`_start`."""

    _pipeline: Pipeline | None = None

    def _start(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    def submit(self, frame: np.ndarray) -> Handle:
        """Validate ``frame`` now (errors surface here) and queue it; results come in submission order."""
        self._check_open()
        return self._queue(self.input_spec.check(frame))

    def _infer(self, frame: np.ndarray) -> np.ndarray:
        return self._queue(frame).result()

    def _queue(self, frame: np.ndarray) -> Handle:
        try:
            return self._pipeline.submit(frame)
        except RuntimeError:
            self._check_open()  # closed by another thread meanwhile: say so, not the worker pool's words
            raise

    def close(self) -> None:
        if not self._closed and self._pipeline is not None:
            self._closed = True  # first: a frame submitted meanwhile is told the despeckler is closed
            self._pipeline.close()
        super().close()
