"""Extra outputs of the publisher stage: a recording, an OpenIGTLink server and a preview window.

Each sink takes ``write(source, image, meta)`` once per published frame (``source`` is the frame
before despeckling, ``image`` after) and ``close()`` once at shutdown.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from stream.roi import to_uint8

__all__ = ["Sink", "SinkError", "Recorder", "IgtlServer", "Preview", "has_display"]

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".avi",)


class SinkError(RuntimeError):
    """An output that cannot be opened (the text names the flag)."""


class Sink(Protocol):
    def write(self, source: np.ndarray, image: np.ndarray, meta: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def _bgr(image: np.ndarray) -> np.ndarray:
    image = to_uint8(image)
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image


class Recorder:
    """Record the despeckled stream: ``PATH.avi`` (Motion-JPEG at ``fps``) or a folder of PNGs.

    The video's frame size is that of the first frame; later frames of another size are resized
    to it.  PNG files are named by sequence number (``00000042.png``) and keep their own size.
    """

    def __init__(self, path: Path, fps: float) -> None:
        self.path = Path(path)
        self.fps = fps
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.video = self.path.suffix.lower() in VIDEO_SUFFIXES
        if self.path.suffix and not self.video:
            raise SinkError(f"--record {path}: give a .avi file or a folder (no suffix)")
        target = self.path.parent if self.video else self.path
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"--record {path}: cannot create {target}: {exc}") from exc

    def write(self, source: np.ndarray, image: np.ndarray, meta: dict[str, Any]) -> None:
        if not self.video:
            name = self.path / f"{meta['seq']:08d}.png"
            if not cv2.imwrite(str(name), to_uint8(image)):
                raise SinkError(f"--record {self.path}: cannot write {name.name}")
            return
        frame = _bgr(image)
        if self._writer is None:
            self._size = (frame.shape[1], frame.shape[0])
            self._writer = cv2.VideoWriter(
                str(self.path), cv2.VideoWriter_fourcc(*"MJPG"), self.fps, self._size
            )
            if not self._writer.isOpened():
                raise SinkError(f"--record {self.path}: cannot open a Motion-JPEG writer")
        if (frame.shape[1], frame.shape[0]) != self._size:
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(frame)

    def close(self) -> None:
        """Finish the file (writes the AVI index, so the file plays)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class IgtlServer:
    """Serve the despeckled frames as OpenIGTLink ``IMAGE`` messages on ``127.0.0.1:port``.

    One message per published frame while a client is connected (nothing is queued for absent
    clients, and a frame not yet sent to a slow client is replaced by the next one).  Grey frames go out as 1-component ``uint8`` images of size ``(W, H, 1)``, BGR frames as
    3-component RGB.  The IJK-to-world matrix carries the pixel spacing (mm) when known, identity
    otherwise; the timestamp is the capture wall-clock time.
    """

    def __init__(self, port: int, device_name: str = "Despeckled") -> None:
        import pyigtl

        self._pyigtl = pyigtl
        self.device_name = device_name
        if threading.current_thread() is not threading.main_thread():
            raise SinkError(f"--igtl {port}: pyigtl's server can only be started from the main thread")
        # pyigtl installs its own SIGINT/SIGTERM handlers; the caller's handlers stay in charge.
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.server = pyigtl.OpenIGTLinkServer(port=port, local_server=True)
        except OSError as exc:
            raise SinkError(f"--igtl {port}: cannot listen: {exc}") from exc
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    def write(self, source: np.ndarray, image: np.ndarray, meta: dict[str, Any]) -> None:
        if not self.server.is_connected():
            return
        voxels = image[np.newaxis] if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)[np.newaxis]
        matrix = np.eye(4)
        spacing = meta.get("spacing_mm")
        if spacing:
            matrix[0, 0], matrix[1, 1] = spacing[1], spacing[0]
        message = self._pyigtl.ImageMessage(
            np.ascontiguousarray(voxels),
            ijk_to_world_matrix=matrix,
            timestamp=meta["capture_wall_ns"] / 1e9,
            device_name=self.device_name,
        )
        with self.server.lock_outgoing_messages:  # latest frame wins here too: drop unsent ones
            self.server.outgoing_messages.clear()
        self.server.send_message(message, wait=False)

    def close(self) -> None:
        self.server.stop()


def has_display() -> str | None:
    """``None`` if OpenCV can open windows here, else the one-line reason it cannot."""
    if re.search(r"GUI:\s+NONE", cv2.getBuildInformation()):
        return "this OpenCV build has no GUI (opencv-python-headless); install opencv-python for --preview"
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "no display (DISPLAY is not set)"
    return None


class Preview:
    """A window showing ``input | despeckled`` side by side; Esc or q in the window stops nothing,
    it only closes the preview (the stream goes on)."""

    WINDOW = "usdespeckle: input | despeckled"

    def __init__(self) -> None:
        reason = has_display()
        if reason is not None:
            raise SinkError(f"--preview: {reason}")
        self.open = True

    def write(self, source: np.ndarray, image: np.ndarray, meta: dict[str, Any]) -> None:
        if not self.open:
            return
        left, right = _bgr(source), _bgr(image)
        if left.shape != right.shape:
            left = cv2.resize(left, (right.shape[1], right.shape[0]), interpolation=cv2.INTER_AREA)
        cv2.imshow(self.WINDOW, cv2.hconcat([left, right]))
        if cv2.waitKey(1) & 0xFF in (27, ord("q")):
            self.close()

    def close(self) -> None:
        if self.open:
            cv2.destroyWindow(self.WINDOW)
            self.open = False
