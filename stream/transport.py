"""ZeroMQ sockets of the chain, set up for live video.

* Publishers (``PUB``) bind; subscribers (``SUB``) connect.  A publisher never blocks: with
  ``SNDHWM = 2`` a subscriber that falls behind loses frames instead of growing a queue.
* Subscribers keep ``RCVHWM = 2``, reconnect every 100 ms (up to 1 s apart) when a publisher
  restarts, and send ZMTP heartbeats every second so a dead peer is noticed within 3 s.
* ``LINGER = 0`` everywhere: closing a socket never waits for undelivered frames.
* ``MAXMSGSIZE`` on subscribers: ZeroMQ refuses a part larger than the limits before it is
  allocated and drops that connection.  libzmq never reconnects after such a protocol error, so a
  subscriber is a :class:`Subscription` that watches its socket's monitor and reconnects itself;
  :func:`receive` reports the refused message as :class:`MessageTooLarge`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import zmq
from zmq.utils.monitor import recv_monitor_message

from stream.protocol import DEFAULT_LIMITS, Limits, ProtocolError
from stream.security import CurveKeys

__all__ = [
    "HWM",
    "TransportError",
    "MessageTooLarge",
    "Subscription",
    "bind_publisher",
    "connect_subscriber",
    "send",
    "receive",
    "endpoint_of",
]

log = logging.getLogger(__name__)

#: high-water mark (messages) on every socket of the chain.
HWM = 2
RECONNECT_MS = 100
RECONNECT_MAX_MS = 1000
HEARTBEAT_MS = 1000
HEARTBEAT_TIMEOUT_MS = 3000
#: while messages flow, a subscription reads its monitor at most this often, seconds (an idle one
#: reads it after every poll that timed out).
WATCH_S = 0.1
#: after a dropped connection, how long libzmq gets to schedule its own reconnection, ms.
GRACE_MS = 50
#: the monitor events a subscription needs (all others are never queued).
_WATCHED = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECT_RETRIED


class TransportError(RuntimeError):
    """An endpoint that cannot be bound or connected (the text names the flag and endpoint)."""


class MessageTooLarge(ProtocolError):
    """ZeroMQ refused a message with a part over the subscriber's ``MAXMSGSIZE`` and dropped the
    connection; the :class:`Subscription` has already reconnected when this is raised."""


def _socket(ctx: zmq.Context, kind: int) -> zmq.Socket:
    sock = ctx.socket(kind)
    sock.linger = 0
    sock.heartbeat_ivl = HEARTBEAT_MS
    sock.heartbeat_timeout = HEARTBEAT_TIMEOUT_MS
    return sock


def _attach(
    sock: zmq.Socket,
    attach: Callable[[str], object],
    endpoint: str,
    flag: str,
    secure: Callable[[zmq.Socket], None] | None,
) -> zmq.Socket:
    """Apply CURVE (not on ``inproc://``) and bind or connect; close the socket on any failure."""
    try:
        if secure is not None and not endpoint.startswith("inproc://"):
            secure(sock)
        attach(endpoint)
    except BaseException as exc:
        sock.close()
        if isinstance(exc, zmq.ZMQError):
            raise TransportError(f"{flag} {endpoint}: cannot {attach.__name__}: {exc}") from exc
        raise
    return sock


def bind_publisher(
    ctx: zmq.Context, endpoint: str, keys: CurveKeys | None = None, flag: str = "--publish"
) -> zmq.Socket:
    """A ``PUB`` socket bound to ``endpoint`` (``tcp://127.0.0.1:*`` picks a free port)."""
    sock = _socket(ctx, zmq.PUB)
    sock.sndhwm = HWM
    return _attach(sock, sock.bind, endpoint, flag, keys.apply_server if keys else None)


class Subscription:
    """A ``SUB`` socket subscribed to everything published at ``endpoint``, and its monitor.

    libzmq answers a message part over ``MAXMSGSIZE`` by dropping the connection and, as that is
    a protocol error, never reconnects: the subscriber would wait for ever.  A connection that
    completed its handshake (``EVENT_HANDSHAKE_SUCCEEDED``) and is dropped (``EVENT_DISCONNECTED``)
    without libzmq scheduling a reconnection within ``GRACE_MS`` (``EVENT_CONNECT_RETRIED``) is
    therefore reconnected here, with ``disconnect`` then ``connect`` (libzmq ignores a second
    ``connect`` alone).  Drops libzmq repairs itself (a publisher that restarts, missed heartbeats)
    are left to it, and so are failed handshakes (a CURVE key that is not authorized).
    Made by :func:`connect_subscriber`; use from one thread at a time; :meth:`close` (or
    destroying the context) closes both sockets.
    """

    def __init__(self, ctx: zmq.Context, endpoint: str, limits: Limits, flag: str) -> None:
        self.endpoint = endpoint
        self.flag = flag
        self.max_bytes = limits.max_message_bytes
        #: messages refused over ``max_bytes`` so far.
        self.refused = 0
        #: ``time.monotonic()`` from which :func:`receive` reads the monitor before polling.
        self.watch_due = 0.0
        self._live = False
        self.socket = sock = _socket(ctx, zmq.SUB)
        sock.rcvhwm = HWM
        sock.reconnect_ivl = RECONNECT_MS
        sock.reconnect_ivl_max = RECONNECT_MAX_MS
        sock.heartbeat_ttl = HEARTBEAT_TIMEOUT_MS
        sock.maxmsgsize = self.max_bytes
        sock.subscribe(b"")
        self._monitor = sock.get_monitor_socket(_WATCHED)

    def watch(self) -> None:
        """Read the monitor's events; after a drop libzmq will not repair, reconnect and raise
        :class:`MessageTooLarge` (logged as a warning the first time only)."""
        self.watch_due = time.monotonic() + WATCH_S
        dropped = False
        while self._monitor.poll(GRACE_MS if dropped else 0, zmq.POLLIN):
            event = recv_monitor_message(self._monitor)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._live = True
            elif event == zmq.EVENT_DISCONNECTED:
                dropped, self._live = self._live, False
            else:  # EVENT_CONNECT_RETRIED: libzmq reconnects by itself
                dropped = False
        if not dropped:
            return
        try:
            self.socket.disconnect(self.endpoint)
        except zmq.ZMQError as exc:
            if exc.errno != zmq.ENOENT:  # ENOENT: libzmq has already forgotten the endpoint
                raise
        self.socket.connect(self.endpoint)
        self.refused += 1
        message = (
            f"{self.flag} {self.endpoint}: a message part over the {self.max_bytes}-byte limit "
            "(MAXMSGSIZE) was refused and ZeroMQ dropped the connection; reconnected"
        )
        if self.refused == 1:
            log.warning("%s (further ones are only counted as malformed)", message)
        raise MessageTooLarge(message)

    def close(self, linger: int | None = 0) -> None:
        """Close the socket and its monitor (``LINGER = 0`` unless told otherwise)."""
        self.socket.close(linger=linger)
        self._monitor.close(linger=0)


def connect_subscriber(
    ctx: zmq.Context,
    endpoint: str,
    keys: CurveKeys | None = None,
    limits: Limits = DEFAULT_LIMITS,
    flag: str = "--subscribe",
) -> Subscription:
    """A :class:`Subscription` to everything published at ``endpoint``."""
    sub = Subscription(ctx, endpoint, limits, flag)
    try:
        _attach(sub.socket, sub.socket.connect, endpoint, flag, keys.apply_client if keys else None)
    except BaseException:
        sub.close()
        raise
    return sub


def send(sock: zmq.Socket, parts: list) -> None:
    """Send one message (zero-copy) on a ``PUB`` socket without spurious drops.

    Reading ``EVENTS`` first makes libzmq process the socket's pending commands, among them the
    connection's acknowledgement of the messages it has taken.  ``send`` alone skips them when it
    is called within about a millisecond of the previous call, so with ``SNDHWM = 2`` a publisher
    sending faster than that dropped about one frame in three that its subscriber was ready for.
    """
    sock.getsockopt(zmq.EVENTS)
    sock.send_multipart(parts, copy=False)


def receive(sub: Subscription, timeout_ms: int) -> list[zmq.Frame] | None:
    """The parts of the next message, or ``None`` if none arrives within ``timeout_ms``.

    Raises :class:`MessageTooLarge` once per message refused over the size limit, when the
    subscription has reconnected.  The monitor is read after every poll that timed out and, while
    messages flow, at most every ``WATCH_S`` (no extra system call per message).
    """
    if time.monotonic() >= sub.watch_due:
        sub.watch()
    if sub.socket.poll(timeout_ms, zmq.POLLIN):
        return sub.socket.recv_multipart(copy=False)
    sub.watch()
    return None


def endpoint_of(sock: zmq.Socket) -> str:
    """The endpoint a socket really bound (resolves a ``*`` port)."""
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)
