"""What the transport costs by itself, per frame size: protocol, one ZeroMQ hop, the whole chain.

* ``test_encode`` / ``test_decode``: :func:`stream.protocol.encode_frame` and ``decode_frame`` of
  one ``uint8`` frame (both zero-copy: the cost is the JSON header and the checks).
* ``test_zmq_hop``: send one encoded frame (:func:`stream.transport.send`) on a ``PUB`` socket and receive and decode it on a
  ``SUB`` socket over TCP loopback (the sockets of :mod:`stream.transport`), one frame in flight.
* ``test_chain_identity``: one frame from a test ``PUB`` socket through ``run_chain`` (receiver,
  ``identity`` despeckler, publisher threads) to a :class:`stream.client.Subscriber`: two hops,
  two decodes, two encodes and the hand-overs between threads, all in this process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import zmq

from benchmarks.latency import free_endpoint
from stream.client import Subscriber
from stream.config import ChainConfig, OutputConfig, SourceConfig
from stream.pipeline import run_chain
from stream.protocol import decode_frame, encode_frame
from stream.stages import HOST
from stream.transport import bind_publisher, connect_subscriber, endpoint_of, receive, send

#: how long a benchmark waits for one frame before it fails, seconds.
WAIT_S = 5.0


def _meta(seq: int) -> dict:
    return {"seq": seq, "source": "bench", "host": HOST, "capture_mono_ns": time.monotonic_ns(),
            "capture_wall_ns": time.time_ns(), "stamps": {}}


def test_encode(benchmark, frame) -> None:
    parts = benchmark(encode_frame, frame, _meta(0))
    assert len(parts) == 2 and parts[1].nbytes == frame.nbytes


def test_decode(benchmark, frame) -> None:
    parts = [bytes(p) for p in encode_frame(frame, _meta(0))]
    image, meta = benchmark(decode_frame, parts)
    np.testing.assert_array_equal(image, frame)


@pytest.fixture
def hop() -> Iterator[tuple[zmq.Socket, zmq.Socket]]:
    ctx = zmq.Context()
    pub = bind_publisher(ctx, "tcp://127.0.0.1:*")
    sub = connect_subscriber(ctx, endpoint_of(pub))
    yield pub, sub
    pub.close(0)
    sub.close(0)
    ctx.term()


def _connect(send, get) -> None:
    """Send until the first frame comes back (a SUB socket misses what is sent before it joined)."""
    deadline = time.monotonic() + WAIT_S
    while get(0.05) is None:
        assert time.monotonic() < deadline, "the subscriber never received a frame"
        send()
    while get(0.1) is not None:
        pass


@pytest.fixture
def rounds(request: pytest.FixtureRequest) -> int:
    """Timed frames of the socket benchmarks: 500 (1 with ``--bench-short``)."""
    return 1 if request.config.getoption("--bench-short") else 500


def test_zmq_hop(benchmark, hop, frame, rounds) -> None:
    pub, sub = hop
    parts = encode_frame(frame, _meta(0))

    def get(timeout: float):
        got = receive(sub, int(timeout * 1000))
        return None if got is None else decode_frame(got)

    def one_hop():
        send(pub, parts)
        got = get(WAIT_S)
        assert got is not None, "a frame was lost on loopback"
        return got

    _connect(lambda: send(pub, parts), get)
    image, _ = benchmark.pedantic(one_hop, rounds=rounds)
    np.testing.assert_array_equal(image, frame)


def test_chain_identity(benchmark, frame, rounds) -> None:
    source, publish = free_endpoint(), free_endpoint()
    ctx = zmq.Context()
    pub = bind_publisher(ctx, source)
    cfg = ChainConfig(source=SourceConfig(spec=source), output=OutputConfig(publish=publish), backend="identity", status_s=60.0)
    stop, status = threading.Event(), []
    chain = threading.Thread(target=lambda: status.append(run_chain(cfg, stop)), daemon=True)
    chain.start()
    seq = iter(range(10**9))
    try:
        with Subscriber(publish, context=ctx) as sub:
            def send_one() -> None:
                send(pub, encode_frame(frame, _meta(next(seq))))

            def through():
                send_one()
                got = sub.receive(WAIT_S)
                assert got is not None, "a frame was lost in the chain"
                return got

            _connect(send_one, sub.receive)
            image, meta = benchmark.pedantic(through, rounds=rounds)
    finally:
        stop.set()
        chain.join(5.0)
        pub.close(0)
        ctx.term()
    assert status == [0]
    np.testing.assert_array_equal(image, frame)
    assert set(meta["stamps"]) == {"receive", "despeckle", "publish"}
