"""Receive the despeckled stream in navigation software: ``Subscriber(endpoint)``.

::

    from stream.client import Subscriber

    with Subscriber("tcp://127.0.0.1:5556") as sub:
        for image, meta in sub:              # blocks until the next frame
            print(meta["seq"], image.shape)

    frame = sub.latest(timeout=0.5)          # newest frame, or None after 0.5 s

The socket reconnects by itself when the publisher restarts (every 100 ms, at most 1 s apart) and
exchanges heartbeats, so a dead publisher is noticed within 3 s; nothing on this side stalls.
Malformed messages are skipped and counted in :attr:`Subscriber.malformed`; frames the publisher
numbered but this subscriber never saw are counted in :attr:`Subscriber.gaps`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from stream.protocol import DEFAULT_LIMITS, Limits, ProtocolError, SequenceTracker, decode_frame
from stream.security import CurveKeys
from stream.transport import connect_subscriber, receive

__all__ = ["Subscriber"]

Frame = tuple[np.ndarray, dict[str, Any]]


class Subscriber:
    """A subscription to a publisher of this protocol (``stream.run``, ``stream.grabber``).

    ``curve_keys``: the key directory of ``python -m stream.keys`` when the publisher runs with
    ``--curve-keys``.  Images are read-only views of the received buffers (copy to modify).
    """

    def __init__(
        self,
        endpoint: str,
        curve_keys: str | Path | None = None,
        limits: Limits = DEFAULT_LIMITS,
        context: zmq.Context | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.limits = limits
        self._ctx = context or zmq.Context.instance()
        keys = CurveKeys(Path(curve_keys)) if curve_keys is not None else None
        self._sock = connect_subscriber(self._ctx, endpoint, keys, limits, flag="Subscriber")
        self._sequence = SequenceTracker()
        self.malformed = 0
        self.gaps = 0

    def _decode(self, parts: list[zmq.Frame]) -> Frame | None:
        try:
            image, meta = decode_frame(parts, self.limits)
        except ProtocolError:
            self.malformed += 1
            return None
        self.gaps += self._sequence.update(meta)
        return image, meta

    def receive(self, timeout: float | None = None) -> Frame | None:
        """The next frame in arrival order, waiting at most ``timeout`` s (``None``: for ever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait_ms = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            parts = receive(self._sock, wait_ms)
            if parts is None:
                return None
            frame = self._decode(parts)
            if frame is not None:
                return frame

    def latest(self, timeout: float = 0.0) -> Frame | None:
        """The newest frame, discarding older ones already queued; ``None`` if none arrives within
        ``timeout`` s."""
        newest = self.receive(timeout)
        while newest is not None:
            frame = self.receive(0)
            if frame is None:
                break
            newest = frame
        return newest

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.receive(None)
            if frame is not None:
                yield frame

    def close(self) -> None:
        """Close the socket (``LINGER = 0``: returns at once)."""
        self._sock.close(linger=0)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
