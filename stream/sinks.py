"""Extra outputs of the publisher stage: a recording, an OpenIGTLink server and a preview window.

Each sink takes ``write(source, image, meta)`` once per published frame (``source`` is the frame
before despeckling, ``image`` after) and ``close()`` once at shutdown.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import socketserver
import struct
import sys
import threading
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from engine.files import temporary_sibling
from stream.roi import to_uint8
from training.outputs import PathError, check_output_file, check_output_folder

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


#: a recording plays at the rate of its frames, measured from their capture times over its first
#: ``RATE_FRAMES`` frames, or fewer when they span ``RATE_SPAN_S`` seconds (a slow stream)...
RATE_FRAMES = 10
RATE_SPAN_S = 2.0
#: ...or at this rate when it holds a single frame (no interval to measure).
ONE_FRAME_FPS = 1.0


class Recorder:
    """Record the despeckled stream: ``PATH.avi`` (Motion-JPEG) or a folder of PNGs.

    The video plays at the rate of the frames it records, measured from their capture times
    (header ``capture_mono_ns``; the median interval) over the first ``RATE_FRAMES`` frames or
    ``RATE_SPAN_S`` seconds: the source's rate, or less when the despeckler keeps only some of its frames.  Those
    first frames wait in memory until the rate is known.  The video's frame size is that of the
    first frame; later frames of another size are resized to it.  PNG files are named by sequence
    number (``00000042.png``) and keep their own size.  A place that cannot be written is refused
    here, before any frame, by writing (and deleting) a probe file there: a Motion-JPEG video for
    ``.avi``.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        #: frames (BGR, at ``_size``) and their capture times (ns) until the rate is measured.
        self._pending: list[tuple[np.ndarray, int]] = []
        self.video = self.path.suffix.lower() in VIDEO_SUFFIXES
        if self.path.suffix and not self.video:
            raise SinkError(f"--record {path}: give a .avi file or a folder (no suffix)")
        check = check_output_file if self.video else check_output_folder
        try:  # its folder made, one file created and removed there
            check(self.path, "--record", create=True)
        except PathError as exc:
            raise SinkError(str(exc)) from None
        if self.video:
            self._probe_video()

    def _probe_video(self) -> None:
        """Open (and remove) a Motion-JPEG writer beside the recording: OpenCV may lack the codec."""
        probe = temporary_sibling(self.path)
        try:
            writer = cv2.VideoWriter(str(probe), cv2.VideoWriter_fourcc(*"MJPG"), ONE_FRAME_FPS, (16, 16))
            opened = writer.isOpened()
            writer.release()
        finally:
            probe.unlink(missing_ok=True)
        if not opened:
            raise SinkError(f"--record {self.path}: cannot open a Motion-JPEG writer in {self.path.parent}")

    def write(self, source: np.ndarray, image: np.ndarray, meta: dict[str, Any]) -> None:
        if not self.video:
            name = self.path / f"{meta['seq']:08d}.png"
            if not cv2.imwrite(str(name), to_uint8(image)):
                raise SinkError(f"--record {self.path}: cannot write {name.name}")
            return
        frame = _bgr(image)
        if self._size is None:
            self._size = (frame.shape[1], frame.shape[0])
        if (frame.shape[1], frame.shape[0]) != self._size:
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        if self._writer is not None:
            self._writer.write(frame)
            return
        self._pending.append((frame, meta["capture_mono_ns"]))
        if len(self._pending) >= RATE_FRAMES or self._pending_span_s() >= RATE_SPAN_S:
            self._start()

    def _pending_span_s(self) -> float:
        return (self._pending[-1][1] - self._pending[0][1]) / 1e9

    def _pending_fps(self) -> float:
        """The rate of the pending frames: one over the median interval between their capture
        times (a stall among them does not count), or ``ONE_FRAME_FPS`` without an interval."""
        intervals = np.diff([stamp for _, stamp in self._pending])
        intervals = intervals[intervals > 0]
        return 1e9 / float(np.median(intervals)) if intervals.size else ONE_FRAME_FPS

    def _start(self) -> None:
        """Open the video at the rate of the pending frames and write them."""
        frames, fps = len(self._pending), self._pending_fps()
        pending, self._pending = self._pending, []
        writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"MJPG"), fps, self._size)
        if not writer.isOpened():
            raise SinkError(f"--record {self.path}: cannot open a Motion-JPEG writer")
        log.info("--record %s: %.3g frames/s, measured over its first %d frame(s)", self.path, fps, frames)
        for frame, _ in pending:
            writer.write(frame)
        self._writer = writer

    def close(self) -> None:
        """Finish the file (writes the AVI index, so the file plays); a recording shorter than the
        measurement is written at the rate of the frames it has."""
        if self._pending:
            try:
                self._start()
            except SinkError as exc:
                log.error("%s", exc)
        if self._writer is not None:
            self._writer.release()
            self._writer = None


#: OpenIGTLink: the header's length and where its body size (uint64, big-endian) lies in it.
IGTL_HEADER_BYTES, IGTL_BODY_SIZE_AT = 58, 42
#: the largest message body a client may send the server (it sends commands, not images).
IGTL_MAX_CLIENT_BODY = 16 * 2**20
#: the server's send buffer per client: about a frame, so that a slow client's frames wait in no
#: growing kernel buffer but are replaced by the newest (the kernel doubles the value given).
IGTL_SEND_BUFFER = 64 * 2**10
#: seconds a client may take to accept one frame before it counts as stalled and is let go.
IGTL_STALL_S = 5.0
#: seconds each wait for a client's message lasts between sends.
IGTL_POLL_S = 0.01


class _IgtlConnection(socketserver.BaseRequestHandler):
    """One OpenIGTLink client of :class:`IgtlServer`: pyigtl's own loop (receive what the client
    sends, send the queued frame), with three changes: a client going away is one line in the log,
    not the traceback pyigtl prints; a slow client is sent the newest frame each time it has taken
    the last one (a send buffer of about one frame, :data:`IGTL_SEND_BUFFER`, and up to
    :data:`IGTL_STALL_S` s per frame; pyigtl's 10 ms dropped it and the kernel's own buffers held
    seconds of old frames); a body announced above :data:`IGTL_MAX_CLIENT_BODY` ends the connection
    before anything is allocated for it.  Then the server waits for the next client."""

    server: Any  # pyigtl.OpenIGTLinkServer

    def handle(self) -> None:
        server, peer = self.server, "{}:{}".format(*self.client_address)
        server._connected = True
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, IGTL_SEND_BUFFER)
        log.info("--igtl: client %s connected", peer)
        reason = "it closed the connection"
        try:
            while not server.communication_thread_stop_requested:
                self.request.settimeout(IGTL_POLL_S)
                pending = self._peek()
                if pending == b"":
                    break
                while pending and self._receive(server):
                    if server.communication_thread_stop_requested:
                        break
                self.request.settimeout(IGTL_STALL_S)
                try:
                    while server._send_queued_message_from_socket(self.request):
                        pass
                except TimeoutError:
                    reason = f"it took no frame for {IGTL_STALL_S:g} s"
                    break
        except OSError as exc:  # broken pipe, reset by peer, a message stalled half-way
            reason = exc.strerror or str(exc)
        except (ValueError, struct.error) as exc:
            reason = f"it sent a message pyigtl cannot read: {exc}"
        finally:
            server._communication_error_occurred()
        if not server.communication_thread_stop_requested:
            log.info("--igtl: client %s disconnected (%s)", peer, reason)

    def _receive(self, server: Any) -> bool:
        """pyigtl's receive of one message, unless its header announces a body over
        :data:`IGTL_MAX_CLIENT_BODY` (``ValueError``, naming it)."""
        try:
            header = self.request.recv(IGTL_HEADER_BYTES, socket.MSG_PEEK)
        except TimeoutError:
            header = b""
        if len(header) == IGTL_HEADER_BYTES:
            (body,) = struct.unpack_from(">Q", header, IGTL_BODY_SIZE_AT)
            if body > IGTL_MAX_CLIENT_BODY:
                raise ValueError(f"a body of {body} bytes announced, over {IGTL_MAX_CLIENT_BODY} (not OpenIGTLink?)")
        return bool(server._receive_message_from_socket(self.request))

    def _peek(self) -> bytes | None:
        """The next byte the client sent, left in the socket; ``b""`` once the client closed its
        end, None if nothing came within the socket's time-out (:data:`IGTL_POLL_S`)."""
        try:
            return self.request.recv(1, socket.MSG_PEEK)
        except TimeoutError:
            return None


class IgtlServer:
    """Serve the despeckled frames as OpenIGTLink ``IMAGE`` messages on ``127.0.0.1:port``.

    One message per published frame while a client is connected (nothing is queued for absent
    clients, and a frame not yet sent to a slow client is replaced by the next one).  Grey frames
    go out as 1-component ``uint8`` images of size ``(W, H, 1)``, BGR frames as 3-component RGB.
    The IJK-to-world matrix carries the pixel spacing (mm) when known, identity otherwise; the
    timestamp is the capture wall-clock time.  Clients are served one at a time by
    :class:`_IgtlConnection`: one that leaves is one line in the log and the next one is served.
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
            self.server = pyigtl.OpenIGTLinkServer(port=port, local_server=True, start_now=False)
        except OSError as exc:
            raise SinkError(f"--igtl {port}: cannot listen: {exc}") from exc
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        self.server.RequestHandlerClass = _IgtlConnection
        self.server.start()

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
