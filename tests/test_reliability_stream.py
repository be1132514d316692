"""Reliability of the chain in this process, over real ZeroMQ sockets on loopback: malformed input,
oversized messages, a live source that stalls, and frames that change size, type or channels."""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq
from test_fuzz_protocol import check_decode, fuzz_messages
from test_stream_chain import free_endpoint, running

from stream.client import Subscriber
from stream.config import ChainConfig, OutputConfig, SourceConfig
from stream.protocol import Limits, encode_frame
from stream.sources import Source, SourceStalled
from stream.stages import HOST, Grabber
from stream.stats import Stats
from stream.transport import bind_publisher

#: messages of the fuzz generator sent into a running despeckler.
FUZZED = 400


def _meta(seq: int, source: str = "test") -> dict:
    return {"seq": seq, "source": source, "host": HOST, "capture_mono_ns": time.monotonic_ns(),
            "capture_wall_ns": time.time_ns(), "stamps": {}}


def _counts(caplog: pytest.LogCaptureFixture) -> dict[str, int]:
    lines = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert lines, "no status line was logged"
    return {k: int(v) for k, v in re.findall(r"(dropped|gaps|malformed|errors|reconnects) (\d+)", lines[-1])}


@pytest.fixture
def sender() -> Iterator[zmq.Socket]:
    """A test publisher that queues instead of dropping (the chain's own sockets keep HWM 2)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.linger = 0
    sock.sndhwm = 100_000
    sock.bind("tcp://127.0.0.1:*")
    yield sock
    sock.close(0)
    ctx.term()


def _join(pub: zmq.Socket, sub: Subscriber, make) -> int:
    """Send frames ``make(seq)`` until ``sub`` gets one, then drain; return the next sequence number."""
    for seq in itertools.count():
        pub.send_multipart(make(seq))
        if sub.receive(0.05) is not None:
            break
        assert seq < 200, "the chain never delivered a frame"
    while sub.receive(0.2) is not None:
        pass
    return seq + 1


def _chain(source: str, publish: str, **options) -> ChainConfig:
    return ChainConfig(source=SourceConfig(spec=source), output=OutputConfig(publish=publish), status_s=0.2, **options)


def test_despeckler_counts_fuzzed_messages_and_despeckles_the_frames_after(
    sender: zmq.Socket, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    source, publish = sender.getsockopt_string(zmq.LAST_ENDPOINT), free_endpoint()
    good = np.arange(32 * 48, dtype=np.uint32).reshape(32, 48).astype(np.uint8)
    fuzzed = [m for m in fuzz_messages(FUZZED * 3, seed=7) if m and all(isinstance(p, bytes) for p in m)][:FUZZED]
    malformed = sum(not check_decode(m) for m in fuzzed)
    with running(_chain(source, publish, backend="identity")) as status, Subscriber(publish) as sub:
        seq = _join(sender, sub, lambda s: encode_frame(good, _meta(s, "good")))
        for message in fuzzed:
            sender.send_multipart(message)
        time.sleep(0.5)  # let the receiver take them all; frames the fuzz made valid may come out
        while sub.receive(0.2) is not None:
            pass
        after = []
        for s in range(seq, seq + 5):
            sender.send_multipart(encode_frame(good, _meta(s, "good")))
            frame = sub.receive(2.0)
            assert frame is not None, "the despeckler stopped delivering after the malformed messages"
            after.append(frame)
        assert not status, "the chain stopped"
    assert status == [0]
    assert [m["seq"] for _, m in after] == list(range(seq, seq + 5))
    for image, _ in after:
        np.testing.assert_array_equal(image, good)
    assert _counts(caplog)["malformed"] == malformed
    assert malformed > FUZZED // 2


def test_subscriber_that_keeps_up_gets_every_frame(sender: zmq.Socket) -> None:
    """Each frame is sent once the previous one came out: the chain's publisher (SNDHWM 2) must not
    drop any, even though they follow each other within a millisecond."""
    source, publish = sender.getsockopt_string(zmq.LAST_ENDPOINT), free_endpoint()
    frame = np.full((24, 24), 9, np.uint8)
    with running(_chain(source, publish, backend="identity")), Subscriber(publish) as sub:
        seq = _join(sender, sub, lambda s: encode_frame(frame, _meta(s)))
        lost = []
        for s in range(seq, seq + 300):
            sender.send_multipart(encode_frame(frame, _meta(s)))
            if sub.receive(1.0) is None:
                lost.append(s)
    assert not lost, f"{len(lost)} of 300 frames lost"


def test_part_over_the_size_limit_never_reaches_the_subscriber(sender: zmq.Socket) -> None:
    """``MAXMSGSIZE``: libzmq refuses the 4 MiB part before allocating it and drops the connection
    (it does not reconnect after such a protocol error; see docs/benchmarks.md, operating notes)."""
    small = np.full((16, 16), 7, np.uint8)
    big = np.zeros((2048, 2048), np.uint8)  # 4 MiB, over this subscriber's 1 MiB limit
    with Subscriber(sender.getsockopt_string(zmq.LAST_ENDPOINT), limits=Limits(max_pixel_bytes=2**20)) as sub:
        seq = _join(sender, sub, lambda s: encode_frame(small, _meta(s)))
        sender.send_multipart(encode_frame(big, _meta(seq)))
        assert sub.receive(1.0) is None
        assert sub.malformed == 0


class _FlakyCamera:
    """A live device: delivers 3 frames, then stops; then cannot be opened once; then delivers again.
    Frames of the n-th opening are filled with n."""

    def __init__(self) -> None:
        self.opened = 0

    def frames(self) -> Iterator[np.ndarray]:
        self.opened += 1
        if self.opened == 2:
            raise SourceStalled("--source camera: cannot open it")
        for i in itertools.count():
            if self.opened == 1 and i == 3:
                raise SourceStalled("--source camera: stopped delivering frames")
            time.sleep(0.01)
            yield np.full((16, 16), self.opened, np.uint8)


def test_stalled_live_source_is_retried_with_back_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    camera = _FlakyCamera()
    source = Source("camera", live=True, paced=False, opener=camera.frames)
    ctx = zmq.Context()
    pub = bind_publisher(ctx, "tcp://127.0.0.1:*")
    stats, stop = Stats(), threading.Event()
    grabber = Grabber(source, source.frames(), pub, stats)
    with Subscriber(pub.getsockopt_string(zmq.LAST_ENDPOINT), context=ctx) as sub:
        time.sleep(0.3)  # the subscription reaches the publisher before the first frame
        thread = threading.Thread(target=grabber.run, args=(stop,), daemon=True)
        thread.start()
        start, frame = time.monotonic(), None
        while time.monotonic() - start < 5.0:
            frame = sub.receive(0.1)
            if frame is not None and frame[0][0, 0] == 3:
                break
        stop.set()
        thread.join(2.0)
    pub.close(0)
    ctx.term()
    assert not thread.is_alive()
    assert frame is not None and frame[0][0, 0] == 3, "frames did not resume after the source came back"
    assert stats.total("reconnects") == 2
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert [re.search(r"retrying in ([\d.]+) s", m)[1] for m in retries] == ["0.5", "1.0"]
    assert "reconnects 2" in stats.line()


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch", reason="exporting the test model needs torch")
    from engine_testutil import make_checkpoint

    from engine.onnx_export import export_checkpoint

    folder = tmp_path_factory.mktemp("tiny")
    return export_checkpoint(make_checkpoint(folder / "tiny.pt"), folder / "tiny.onnx")


def test_onnxruntime_chain_takes_new_sizes_types_and_channels_without_restart(sender: zmq.Socket, tiny_onnx: Path,
                                                                              caplog: pytest.LogCaptureFixture) -> None:
    from engine.registry import create_despeckler

    caplog.set_level(logging.INFO)
    rng = np.random.default_rng(3)
    frames = [
        rng.integers(0, 256, (32, 32), dtype=np.uint8),
        rng.integers(0, 256, (48, 64), dtype=np.uint8),
        rng.integers(0, 65536, (40, 24), dtype=np.uint16),
        np.repeat(rng.integers(0, 256, (36, 52, 1), dtype=np.uint8), 3, axis=2),  # grey picture as BGR
        np.zeros((8, 8), np.uint8),  # under the engine's 16 x 16 minimum: refused, counted
        rng.integers(0, 256, (20, 100), dtype=np.uint8),
    ]
    source, publish = sender.getsockopt_string(zmq.LAST_ENDPOINT), free_endpoint()
    got = []
    with running(_chain(source, publish, backend="onnxruntime", weights=tiny_onnx)), Subscriber(publish) as sub:
        seq = _join(sender, sub, lambda s: encode_frame(frames[0], _meta(s)))
        for frame in frames:
            sender.send_multipart(encode_frame(frame, _meta(seq)))
            seq += 1
            received = sub.receive(3.0)
            if received is not None:
                got.append(received[0])
    assert [g.shape for g in got] == [(32, 32), (48, 64), (40, 24), (36, 52), (20, 100)]  # all-grey BGR comes out grey
    with create_despeckler("onnxruntime", tiny_onnx) as engine:
        np.testing.assert_array_equal(got[0], engine.infer(frames[0]))
        np.testing.assert_array_equal(got[1], engine.infer(frames[1]))
        np.testing.assert_array_equal(got[2], engine.infer(((frames[2].astype(np.uint32) + 128) // 257).astype(np.uint8)))
        np.testing.assert_array_equal(got[3], engine.infer(frames[3][:, :, 0]))
        np.testing.assert_array_equal(got[4], engine.infer(frames[5]))
    assert _counts(caplog)["errors"] == 1


def test_a_subscriber_dropped_without_close_stops_its_thread() -> None:
    """Navigation code that forgets ``close()``: once the subscriber is garbage-collected its
    receiving thread stops and its socket closes, so threads do not pile up."""
    import gc

    from stream.client import Subscriber

    def receivers() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "Subscriber"}

    before = receivers()
    subs = [Subscriber("tcp://127.0.0.1:1") for _ in range(5)]  # nothing publishes there
    started = receivers() - before
    assert len(started) == 5
    del subs
    gc.collect()
    deadline = time.monotonic() + 5.0
    while any(t.is_alive() for t in started) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.is_alive() for t in started)
