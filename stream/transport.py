"""ZeroMQ sockets of the chain, set up for live video.

* Publishers (``PUB``) bind; subscribers (``SUB``) connect.  A publisher never blocks: with
  ``SNDHWM = 2`` a subscriber that falls behind loses frames instead of growing a queue.
* Subscribers keep ``RCVHWM = 2``, reconnect every 100 ms (up to 1 s apart) when a publisher
  restarts, and send ZMTP heartbeats every second so a dead peer is noticed within 3 s.
* ``LINGER = 0`` everywhere: closing a socket never waits for undelivered frames.
* ``MAXMSGSIZE`` on subscribers: ZeroMQ drops a peer that sends a part larger than the limits
  before the part is allocated.
"""

from __future__ import annotations

from collections.abc import Callable

import zmq

from stream.protocol import DEFAULT_LIMITS, Limits
from stream.security import CurveKeys

__all__ = [
    "HWM",
    "TransportError",
    "check_endpoint",
    "bind_publisher",
    "connect_subscriber",
    "send",
    "receive",
    "endpoint_of",
]

#: high-water mark (messages) on every socket of the chain.
HWM = 2
RECONNECT_MS = 100
RECONNECT_MAX_MS = 1000
HEARTBEAT_MS = 1000
HEARTBEAT_TIMEOUT_MS = 3000
#: highest TCP port number.
MAX_PORT = 65535


class TransportError(RuntimeError):
    """An endpoint that cannot be bound or connected (the text names the flag and endpoint)."""


def check_endpoint(endpoint: str, *, bind: bool) -> None:
    """Raise ``ValueError`` for a ``tcp://`` endpoint whose port is not 1..65535 (``*``, a free
    port, when binding).  libzmq does not check: it binds ``:70000`` as port 4464 and connects
    to ``:99999`` without an error.  Other schemes are left to libzmq; a non-string is refused."""
    if not isinstance(endpoint, str):
        raise ValueError(f"{endpoint!r}: an endpoint is a string such as tcp://127.0.0.1:5556")
    if not endpoint.startswith("tcp://"):
        return
    _, colon, port = endpoint.rpartition(":")
    if bind and port == "*":
        return
    if not (colon and port.isascii() and port.isdigit() and 1 <= int(port) <= MAX_PORT):
        choices = f"1..{MAX_PORT} or * (a free port)" if bind else f"1..{MAX_PORT}"
        raise ValueError(f"{endpoint}: the port must be {choices}")


def _checked(endpoint: str, flag: str, *, bind: bool) -> None:
    try:
        check_endpoint(endpoint, bind=bind)
    except ValueError as exc:
        raise TransportError(f"{flag} {exc}") from None


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
    _checked(endpoint, flag, bind=True)
    sock = _socket(ctx, zmq.PUB)
    sock.sndhwm = HWM
    return _attach(sock, sock.bind, endpoint, flag, keys.apply_server if keys else None)


def connect_subscriber(
    ctx: zmq.Context,
    endpoint: str,
    keys: CurveKeys | None = None,
    limits: Limits = DEFAULT_LIMITS,
    flag: str = "--subscribe",
) -> zmq.Socket:
    """A ``SUB`` socket subscribed to everything published at ``endpoint``."""
    _checked(endpoint, flag, bind=False)
    sock = _socket(ctx, zmq.SUB)
    sock.rcvhwm = HWM
    sock.reconnect_ivl = RECONNECT_MS
    sock.reconnect_ivl_max = RECONNECT_MAX_MS
    sock.heartbeat_ttl = HEARTBEAT_TIMEOUT_MS
    sock.maxmsgsize = limits.max_message_bytes
    sock.subscribe(b"")
    return _attach(sock, sock.connect, endpoint, flag, keys.apply_client if keys else None)


def send(sock: zmq.Socket, parts: list) -> None:
    """Send one message (zero-copy) on a ``PUB`` socket without spurious drops.

    Reading ``EVENTS`` first makes libzmq process the socket's pending commands, among them the
    connection's acknowledgement of the messages it has taken.  ``send`` alone skips them when it
    is called within about a millisecond of the previous call, so with ``SNDHWM = 2`` a publisher
    sending faster than that dropped about one frame in three that its subscriber was ready for.
    """
    sock.getsockopt(zmq.EVENTS)
    sock.send_multipart(parts, copy=False)


def receive(sock: zmq.Socket, timeout_ms: int) -> list[zmq.Frame] | None:
    """The parts of the next message, or ``None`` if none arrives within ``timeout_ms``."""
    if not sock.poll(timeout_ms, zmq.POLLIN):
        return None
    return sock.recv_multipart(copy=False)


def endpoint_of(sock: zmq.Socket) -> str:
    """The endpoint a socket really bound (resolves a ``*`` port)."""
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)
