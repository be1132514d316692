"""Where frames come from: ``--source`` names one of these.

=====================  =====================================================  ======  =====
``--source``           what                                                   live    paced
=====================  =====================================================  ======  =====
``sim`` (default)      the simulator's probe sweep over a phantom             no      yes
``captureN``           ``cv2.VideoCapture(N)``, a frame grabber or webcam     yes     no
``rtsp://``/``http://`` a network video stream (FFmpeg, 5 s open/read timeout) yes     no
a video file           any file OpenCV's FFmpeg reads (``.avi``, ``.mp4``...)  no      yes
a folder               its image files in name order                          no      yes
a DICOM file           the frames of a (cine) DICOM file                      no      yes
=====================  =====================================================  ======  =====

*Live* sources are retried when they stop delivering; the others end (or start again with
``--loop``).  *Paced* sources are read at ``--fps``; live ones deliver at their own rate.
``tcp://`` and ``ipc://`` sources are not opened here: the despeckler subscribes to them.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from training.data import DICOM_SUFFIXES, DataError, dicom_spacing, iter_frames

__all__ = [
    "Source",
    "SourceError",
    "SourceStalled",
    "open_source",
    "first_frame",
    "is_subscription",
]

#: FFmpeg open and read time-outs for network streams, milliseconds.
STREAM_TIMEOUT_MS = 5000
#: longest wait for a source's first frame at start-up, seconds.
FIRST_FRAME_S = 10.0
#: pixel size of the simulator's frames, mm.
SIM_PIXEL_MM = 0.25


class SourceError(RuntimeError):
    """A source that cannot be opened or read (missing device, file or stream; unreadable data)."""


class SourceStalled(SourceError):
    """A live source that stopped delivering frames; the grabber retries it."""


@dataclass(frozen=True)
class Source:
    """A way to (re)open a stream of frames: ``frames()`` returns a fresh iterator each call."""

    name: str
    live: bool
    paced: bool
    opener: Callable[[], Iterator[np.ndarray]]
    spacing_mm: tuple[float, float] | None = None

    def frames(self) -> Iterator[np.ndarray]:
        """Open the source and iterate over its frames (``uint8``/``uint16``, grey or BGR)."""
        return self.opener()


def is_subscription(spec: str) -> bool:
    """True for a source that is another stage's publisher (``tcp://``, ``ipc://``, ``inproc://``)."""
    return spec.startswith(("tcp://", "ipc://", "inproc://"))


def _capture(target: int | str, name: str, live: bool, params: list[int]) -> Iterator[np.ndarray]:
    cap = cv2.VideoCapture(target, cv2.CAP_FFMPEG if params else cv2.CAP_ANY, params)
    try:
        if not cap.isOpened() and live:
            raise SourceStalled(f"--source {name}: cannot open it (no such device or stream?)")
        if not cap.isOpened():
            raise SourceError(f"--source {name}: OpenCV cannot read it as a video")
        while True:
            ok, frame = cap.read()
            if not ok:
                if live:
                    raise SourceStalled(f"--source {name}: stopped delivering frames")
                return
            yield frame
    finally:
        cap.release()


def _sim(size: tuple[int, int], seed: int) -> Iterator[np.ndarray]:
    from training.sim import sweep_frames

    yield from sweep_frames(size=size, seed=seed, pixel_mm=SIM_PIXEL_MM)


def _files(path: Path, on_skip: Callable[[str], None] | None) -> Iterator[np.ndarray]:
    """The frames of a file, or of a folder's files in name order
    (:func:`training.data.iter_frames`): a folder's unreadable files are logged, skipped and
    reported to ``on_skip``."""
    try:
        yield from iter_frames(path, skip_bad=True,
                               on_skip=None if on_skip is None else lambda _file, reason: on_skip(reason))
    except (OSError, ValueError) as exc:  # DataError and the readers' own
        raise SourceError(f"--source {path}: {str(exc).removeprefix(f'{path}: ')}") from exc


def open_source(
    spec: str,
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    on_skip: Callable[[str], None] | None = None,
) -> Source:
    """Resolve ``--source`` into a :class:`Source` (does not open it yet).

    ``size`` (H, W) and ``seed`` are for ``sim``.  ``on_skip(reason)`` is called for each file of
    a folder that is skipped as unreadable (after a warning is logged).  Raises
    :class:`SourceError` for a path that does not exist or a spec that names nothing known.
    """
    if spec == "sim":
        return Source(
            "sim",
            live=False,
            paced=True,
            opener=lambda: _sim(size, seed),
            spacing_mm=(SIM_PIXEL_MM, SIM_PIXEL_MM),
        )
    match = re.fullmatch(r"capture(\d+)", spec)
    if match:
        index = int(match.group(1))
        return Source(spec, live=True, paced=False, opener=lambda: _capture(index, spec, True, []))
    if spec.startswith(("rtsp://", "http://", "https://")):
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            STREAM_TIMEOUT_MS,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            STREAM_TIMEOUT_MS,
        ]
        return Source(spec, live=True, paced=False, opener=lambda: _capture(spec, spec, True, params))
    if is_subscription(spec):
        raise SourceError(f"--source {spec}: a subscription to a grabber, which stream.run and stream.despeckler take, not a grabber source")
    path = Path(spec)
    if not path.exists():
        raise SourceError(
            f"--source {spec}: no such file or folder (nor sim, captureN, rtsp://, http://)"
        )
    if path.is_dir():
        return Source(path.name or spec, live=False, paced=True, opener=lambda: _files(path, on_skip))
    if path.suffix.lower() in DICOM_SUFFIXES:
        try:
            spacing = dicom_spacing(path)
        except DataError as exc:
            raise SourceError(f"--source {exc}") from exc
        return Source(
            path.name, live=False, paced=True, opener=lambda: _files(path, on_skip), spacing_mm=spacing
        )
    return Source(path.name, live=False, paced=True, opener=lambda: _capture(str(path), spec, False, []))


def first_frame(source: Source, timeout: float = FIRST_FRAME_S) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    """Open ``source`` and read its first frame: ``(frame, iterator over the rest)``.

    The first read runs in a helper thread so that a device that opens but never delivers cannot
    hang the start: after ``timeout`` seconds it is given up (the thread is left to finish on its
    own).  Raises :class:`SourceError` (a one-line reason) if the source cannot be opened, holds
    no frames or delivers none in time.
    """
    frames = source.frames()
    result: list[np.ndarray | Exception] = []

    def read() -> None:
        try:
            result.append(next(frames))
        except Exception as exc:  # handed to the caller's thread below
            result.append(exc)

    reader = threading.Thread(target=read, name=f"first-frame {source.name}", daemon=True)
    reader.start()
    reader.join(timeout)
    if not result:
        raise SourceError(f"--source {source.name}: no frame within {timeout:g} s")
    if isinstance(result[0], StopIteration):
        hint = "" if source.live else " (is it a picture, a video or a DICOM file?)"
        raise SourceError(f"--source {source.name}: holds no frames that can be read{hint}")
    if isinstance(result[0], Exception):
        raise result[0]
    return result[0], frames
