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

import zmq

from stream.protocol import DEFAULT_LIMITS, Limits
from stream.security import CurveKeys

__all__ = ["HWM", "TransportError", "bind_publisher", "connect_subscriber", "send", "receive", "endpoint_of"]

#: high-water mark (messages) on every socket of the chain.
HWM = 2
RECONNECT_MS = 100
RECONNECT_MAX_MS = 1000
HEARTBEAT_MS = 1000
HEARTBEAT_TIMEOUT_MS = 3000


class TransportError(RuntimeError):
    """An endpoint that cannot be bound or connected (the text names the flag and endpoint)."""


def bind_publisher(
    ctx: zmq.Context, endpoint: str, keys: CurveKeys | None = None, flag: str = "--publish"
) -> zmq.Socket:
    """A ``PUB`` socket bound to ``endpoint`` (``tcp://127.0.0.1:*`` picks a free port)."""
    sock = ctx.socket(zmq.PUB)
    sock.linger = 0
    sock.sndhwm = HWM
    sock.heartbeat_ivl = HEARTBEAT_MS
    sock.heartbeat_timeout = HEARTBEAT_TIMEOUT_MS
    try:
        if keys is not None and not endpoint.startswith("inproc://"):
            keys.apply_server(sock)
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        sock.close()
        raise TransportError(f"{flag} {endpoint}: cannot bind: {exc}") from exc
    except BaseException:
        sock.close()
        raise
    return sock


def connect_subscriber(
    ctx: zmq.Context,
    endpoint: str,
    keys: CurveKeys | None = None,
    limits: Limits = DEFAULT_LIMITS,
    flag: str = "--subscribe",
) -> zmq.Socket:
    """A ``SUB`` socket subscribed to everything published at ``endpoint``."""
    sock = ctx.socket(zmq.SUB)
    sock.linger = 0
    sock.rcvhwm = HWM
    sock.reconnect_ivl = RECONNECT_MS
    sock.reconnect_ivl_max = RECONNECT_MAX_MS
    sock.heartbeat_ivl = HEARTBEAT_MS
    sock.heartbeat_timeout = HEARTBEAT_TIMEOUT_MS
    sock.heartbeat_ttl = HEARTBEAT_TIMEOUT_MS
    sock.maxmsgsize = limits.max_message_bytes
    sock.subscribe(b"")
    try:
        if keys is not None and not endpoint.startswith("inproc://"):
            keys.apply_client(sock)
        sock.connect(endpoint)
    except zmq.ZMQError as exc:
        sock.close()
        raise TransportError(f"{flag} {endpoint}: cannot connect: {exc}") from exc
    except BaseException:
        sock.close()
        raise
    return sock


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
