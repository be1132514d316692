"""A message over a receiver's size limit, over real ZeroMQ sockets on loopback.

libzmq refuses a part over ``MAXMSGSIZE`` and drops the connection without ever reconnecting; the
receivers of ``stream`` (a :class:`stream.client.Subscriber`, the despeckler's receiving stage) must
count the refused message as malformed, warn once, reconnect and receive the frames sent after it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import pytest
import test_reliability_stream
import zmq
from test_stream_chain import free_endpoint, running

from stream.client import Subscriber
from stream.config import ChainConfig, OutputConfig, SourceConfig
from stream.protocol import Limits, encode_frame
from stream.stages import HOST
from stream.transport import connect_subscriber, receive

#: the receivers' limit: 1 MiB of pixels; ``BIG`` is 4 MiB, ``SMALL`` far below.
LIMITS = Limits(max_pixel_bytes=2**20)
BIG = np.zeros((2048, 2048), np.uint8)
SMALL = np.full((24, 24), 9, np.uint8)
#: how long a receiver may take to get frames again after the oversized message, seconds.
RECOVER_S = 2.0

#: fixture: a test publisher on a free loopback port that queues instead of dropping.
sender = test_reliability_stream.sender

Get = Callable[[float], tuple[np.ndarray, dict] | None]


def _meta(seq: int) -> dict:
    return {
        "seq": seq,
        "source": "test",
        "host": HOST,
        "capture_mono_ns": time.monotonic_ns(),
        "capture_wall_ns": time.time_ns(),
        "stamps": {},
    }


def _until_received(pub: zmq.Socket, get: Get, seq: int, timeout: float) -> tuple[int, dict]:
    """Send ``SMALL`` frames numbered from ``seq`` until ``get`` returns one (within ``timeout`` s),
    then drain; returns the next number and the header of the first frame received."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pub.send_multipart(encode_frame(SMALL, _meta(seq)))
        seq += 1
        got = get(0.05)
        if got is not None:
            while get(0.2) is not None:
                pass
            return seq, got[1]
    pytest.fail(f"no frame received within {timeout} s (frames {seq} sent)")


def _refusals(caplog: pytest.LogCaptureFixture, endpoint: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "was refused" in r.getMessage() and endpoint in r.getMessage()
    ]


def test_subscriber_counts_oversized_messages_and_receives_the_frames_after(
    sender: zmq.Socket, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = sender.getsockopt_string(zmq.LAST_ENDPOINT)
    with Subscriber(endpoint, limits=LIMITS) as sub:
        seq, _ = _until_received(sender, sub.receive, 0, 10.0)
        for round_ in (1, 2):
            big_seq = seq
            sender.send_multipart(encode_frame(BIG, _meta(big_seq)))
            seq, meta = _until_received(sender, sub.receive, seq + 1, RECOVER_S)
            assert meta["seq"] > big_seq
            assert sub.malformed == round_
    assert sub.gaps > 0  # the oversized frames and those sent while reconnecting
    warnings = _refusals(caplog, endpoint)
    assert len(warnings) == 1, warnings  # warned once, counted twice
    assert f"over the {LIMITS.max_message_bytes}-byte limit" in warnings[0]


def test_despeckler_counts_an_oversized_message_and_despeckles_the_frames_after(
    sender: zmq.Socket, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    source, publish = sender.getsockopt_string(zmq.LAST_ENDPOINT), free_endpoint()
    cfg = ChainConfig(
        source=SourceConfig(spec=source),
        output=OutputConfig(publish=publish),
        backend="identity",
        limits=LIMITS,
        status_s=0.2,
    )
    with running(cfg) as status, Subscriber(publish) as sub:
        seq, _ = _until_received(sender, sub.receive, 0, 10.0)
        big_seq = seq
        sender.send_multipart(encode_frame(BIG, _meta(big_seq)))
        _, meta = _until_received(sender, sub.receive, seq + 1, RECOVER_S)
        assert meta["seq"] > big_seq
        assert not status, "the chain stopped"
    assert status == [0]
    assert sub.malformed == 0  # the despeckler refused it; its own subscriber never saw it
    lines = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert lines and " malformed 1 " in lines[-1], lines[-1:]
    warnings = _refusals(caplog, source)
    assert len(warnings) == 1 and warnings[0].startswith("--source "), warnings


def test_publisher_restart_is_repaired_by_zeromq_and_not_counted() -> None:
    """A dropped connection that libzmq reconnects by itself is left to it: nothing is refused."""
    endpoint = free_endpoint()
    ctx = zmq.Context()
    sub = connect_subscriber(ctx, endpoint, limits=LIMITS)

    def get(timeout: float) -> tuple[np.ndarray, dict] | None:
        parts = receive(sub, int(timeout * 1000))
        return None if parts is None else (np.empty(0), {"seq": -1})

    try:
        seq = 0
        for _ in range(2):
            pub = ctx.socket(zmq.PUB)
            pub.linger = 0
            pub.bind(endpoint)
            seq, _ = _until_received(pub, get, seq, 10.0)
            pub.close(0)
            time.sleep(0.3)  # the subscriber notices the drop; libzmq schedules its reconnection
            assert get(0.1) is None
        assert sub.refused == 0
    finally:
        sub.close()
        ctx.term()
