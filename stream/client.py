"""Receive the despeckled stream in navigation software: ``Subscriber(endpoint)``.

::

    from stream.client import Subscriber

    with Subscriber("tcp://127.0.0.1:5556") as sub:
        for image, meta in sub:              # the newest frame; blocks until a newer one is there
            print(meta["seq"], image.shape)

    # or, in a program with its own loop, where it polls for frames:
        frame = sub.latest(timeout=0.5)      # the newest frame not yet returned, or None after 0.5 s

A background thread takes every message off the socket as it arrives and keeps only the newest
frame, so a reader slower than the stream always gets a recent frame: nothing piles up in ZeroMQ's
queue or the kernel's TCP buffers.  Frames it replaced before they were read are counted in
:attr:`Subscriber.dropped`; frames the publisher numbered but that never arrived in
:attr:`Subscriber.gaps`; malformed messages are skipped and counted in :attr:`Subscriber.malformed`.

The socket reconnects by itself when the publisher restarts (every 100 ms, at most 1 s apart) and
exchanges heartbeats, so a dead publisher is noticed within 3 s; nothing on this side stalls.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from stream.latest import LatestSlot
from stream.protocol import DEFAULT_LIMITS, Limits, ProtocolError, SequenceTracker, decode_frame
from stream.security import CurveKeys
from stream.transport import connect_subscriber, receive

__all__ = ["Subscriber"]

Frame = tuple[np.ndarray, dict[str, Any]]

#: how often the receiving thread checks whether it should stop, milliseconds.
_POLL_MS = 100


class _Receiver:
    """The receiving thread's state: the socket (owned by the thread), the newest frame and the
    counters.  Kept apart from :class:`Subscriber`, so that the thread holds no reference to the
    subscriber and a subscriber dropped without :meth:`Subscriber.close` can stop it."""

    def __init__(self, sock: zmq.Socket, limits: Limits) -> None:
        self.limits = limits
        self.slot: LatestSlot[Frame] = LatestSlot()
        self.sequence = SequenceTracker()
        self.stop = threading.Event()
        self.malformed = 0
        self.gaps = 0
        self.dropped = 0
        self.thread = threading.Thread(target=self._loop, args=(sock,), name="Subscriber", daemon=True)
        self.thread.start()

    def _loop(self, sock: zmq.Socket) -> None:
        """Own ``sock``: decode every message, keep the newest frame; close the socket at the end."""
        try:
            while not self.stop.is_set():
                parts = receive(sock, _POLL_MS)
                if parts is None:
                    continue
                try:
                    image, meta = decode_frame(parts, self.limits)
                except ProtocolError:
                    self.malformed += 1
                    continue
                self.gaps += self.sequence.update(meta)
                if self.slot.put((image, meta)):
                    self.dropped += 1
        finally:
            sock.close(linger=0)
            self.slot.close()


class Subscriber:
    """A subscription to a publisher of this protocol (``stream.run``, ``stream.grabber``).

    ``curve_keys``: the key directory of ``python -m stream.keys`` when the publisher runs with
    ``--curve-keys``.  Images are read-only views of the received buffers (copy to modify).
    A malformed endpoint (not a string, a bad port) or key directory raises at once
    (``TransportError``, ``SecurityError``); a host that is down or whose name does not resolve is
    retried in the background, as ZeroMQ does.  Iterating waits for the next frame however long
    it takes; a loop that must notice a silent publisher polls :meth:`latest` with a timeout.
    Close it (or use it in a ``with`` block) to stop its receiving thread and close its socket at
    once; a subscriber dropped without closing is stopped when it is garbage-collected.
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
        keys = CurveKeys(Path(curve_keys), name=f"Subscriber curve_keys={str(curve_keys)!r}") if curve_keys is not None else None
        sock = connect_subscriber(
            context or zmq.Context.instance(), endpoint, keys, limits, flag="Subscriber"
        )
        self._receiver = _Receiver(sock, limits)
        weakref.finalize(self, self._receiver.stop.set)

    @property
    def malformed(self) -> int:
        """Messages skipped as not valid frames of the protocol."""
        return self._receiver.malformed

    @property
    def gaps(self) -> int:
        """Frames the publisher numbered that never arrived."""
        return self._receiver.gaps

    @property
    def dropped(self) -> int:
        """Frames replaced by a newer one before they were read."""
        return self._receiver.dropped

    def receive(self, timeout: float | None = None) -> Frame | None:
        """The newest frame not yet returned, waiting at most ``timeout`` s for one (``None``: for
        ever); ``None`` if none arrives in time or the subscriber is closed."""
        slot, stop = self._receiver.slot, self._receiver.stop
        while timeout is None and not stop.is_set():
            frame = slot.get(_POLL_MS / 1000)
            if frame is not None:
                return frame
        return slot.get(timeout or 0.0)

    def latest(self, timeout: float = 0.0) -> Frame | None:
        """The newest frame not yet returned, or ``None`` if none arrives within ``timeout`` s."""
        return self.receive(timeout)

    def __iter__(self) -> Iterator[Frame]:
        """Frames in arrival order, each the newest at the time it is taken; ends when closed."""
        while (frame := self.receive(None)) is not None:
            yield frame

    def close(self) -> None:
        """Stop the receiving thread and close the socket (``LINGER = 0``: within 0.1 s)."""
        self._receiver.stop.set()
        self._receiver.thread.join()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
