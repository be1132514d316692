"""The chain in this process (threads), with real ZeroMQ sockets on loopback and the identity backend."""

from __future__ import annotations

import functools
import http.server
import logging
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq
from dicom_testutil import us_dataset

from stream.client import Subscriber
from stream.config import ChainConfig, OutputConfig, SourceConfig
from stream.keys import main as keys_main
from stream.pipeline import run_chain
from stream.protocol import encode_frame
from stream.security import create_keys
from stream.sinks import has_display
from stream.stages import HOST

SIM = SourceConfig(spec="sim", fps=60.0, size=(32, 32))


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


@contextmanager
def running(cfg: ChainConfig) -> Iterator[list[int]]:
    """Run the chain in a thread; stop it on exit and check that it stopped within 2 s."""
    stop, status = threading.Event(), []
    thread = threading.Thread(target=lambda: status.append(run_chain(cfg, stop)), daemon=True)
    thread.start()
    try:
        yield status
    finally:
        stop.set()
        thread.join(2.0)
        assert not thread.is_alive(), "the chain did not stop within 2 s"


def recorded_to_the_end(cfg: ChainConfig, timeout: float = 60.0) -> list[np.ndarray]:
    """Run a chain with a finite source until it ends (exit status 0); the frames it recorded as
    PNGs in the folder ``cfg.output.record``, in name order (at least one)."""
    status: list[int] = []
    thread = threading.Thread(target=lambda: status.append(run_chain(cfg, threading.Event())), daemon=True)
    thread.start()
    thread.join(timeout)
    assert status == [0]
    frames = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(cfg.output.record.glob("*.png"))]
    assert frames
    return frames


def _config(source: SourceConfig, publish: str, **options) -> ChainConfig:
    output = OutputConfig(
        publish=publish, **{k: options.pop(k) for k in ("record", "preview") if k in options}
    )
    return ChainConfig(source=source, output=output, backend="identity", status_s=0.2, **options)


def _wait_status(status: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while not status and time.monotonic() < deadline:
        time.sleep(0.05)
    return status


def _last_counts(caplog: pytest.LogCaptureFixture) -> dict[str, int]:
    lines = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert lines, "no status line was logged"
    return {k: int(v) for k, v in re.findall(r"(dropped|gaps|malformed|errors|reconnects) (\d+)", lines[-1])}


def _grabbed_meta(seq: int) -> dict:
    now = time.time_ns()
    return {
        "seq": seq,
        "source": "test",
        "host": HOST,
        "capture_mono_ns": time.monotonic_ns(),
        "capture_wall_ns": now,
        "stamps": {},
    }


def test_despeckler_survives_malformed_messages_and_odd_frames(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    grab, publish = free_endpoint(), free_endpoint()
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.linger = 0
    pub.bind(grab)
    rng = np.random.default_rng(0)
    screen = np.zeros((120, 160, 3), np.uint8)
    screen[20:100, 30:130] = rng.integers(30, 255, size=(80, 100, 1), dtype=np.uint8)
    screen[50:60, 60:80] = (0, 0, 255)
    frames = [
        rng.integers(0, 256, size=(32, 32), dtype=np.uint8),
        screen,
        rng.integers(0, 65536, size=(48, 40), dtype=np.uint16),
        np.zeros((8, 8), np.uint8),  # below the engine's 16x16 minimum: refused, counted
        rng.integers(0, 256, size=(64, 80), dtype=np.uint8),
    ]
    garbage = [
        [b"junk"],
        [b"{not json", b""],
        [b'{"seq": 1}', b"x"],
        [*encode_frame(frames[0], _grabbed_meta(0))[:1], b"short"],
    ]
    with running(_config(SourceConfig(spec=grab), publish)) as status, Subscriber(publish) as sub:
        seq = 0
        while sub.receive(0.05) is None:  # until the whole chain is connected
            pub.send_multipart(encode_frame(frames[0], _grabbed_meta(seq)))
            seq += 1
            assert seq < 200, "the chain never delivered a frame"
        while sub.receive(0.2) is not None:
            pass
        for parts in garbage:
            pub.send_multipart(parts)
        got = []
        for frame in frames:
            pub.send_multipart(encode_frame(frame, _grabbed_meta(seq)), copy=False)
            seq += 1
            received = sub.receive(1.0)
            if received is not None:
                got.append(received)
        assert not status, "the chain stopped by itself"
    assert status == [0]
    shapes = [image.shape for image, _ in got]
    assert shapes == [(32, 32), (120, 160, 3), (48, 40), (64, 80)]
    assert [image.dtype for image, _ in got] == [np.uint8] * 4
    np.testing.assert_array_equal(got[1][0][50:60, 60:80], screen[50:60, 60:80])
    np.testing.assert_array_equal(got[2][0], ((frames[2].astype(np.uint32) + 128) // 257).astype(np.uint8))
    assert set(got[0][1]["stamps"]) == {"receive", "despeckle", "publish"}
    counts = _last_counts(caplog)
    assert counts["malformed"] == len(garbage)
    assert counts["errors"] == 1
    pub.close()


def test_subscriber_survives_a_publisher_restart() -> None:
    publish = free_endpoint()
    with Subscriber(publish) as sub:
        with running(_config(SIM, publish)):
            first = sub.receive(10.0)
        assert first is not None
        while sub.receive(0.1) is not None:  # drain what the first publisher left
            pass
        with running(_config(SourceConfig(spec="sim", fps=60.0, size=(40, 40)), publish)):
            again = sub.receive(10.0)
    assert again is not None and again[0].shape == (40, 40)


def test_curve_peer_without_the_key_receives_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Only an authorized key pair receives; the refused key is named in one warning (not one per
    ZeroMQ retry), and the status line says the stream is CURVE-secured."""
    caplog.set_level(logging.INFO)
    keys, stranger = tmp_path / "keys", tmp_path / "stranger"
    create_keys(keys)
    create_keys(stranger)
    shutil.copy(keys / "server.key", stranger / "server.key")  # knows the server, but is not authorized
    publish = free_endpoint()
    with running(_config(SIM, publish, curve_keys=keys)):
        with Subscriber(publish, curve_keys=keys) as friend, Subscriber(publish) as plain:
            with Subscriber(publish, curve_keys=stranger) as unlisted:
                assert friend.receive(10.0) is not None
                assert plain.receive(1.0) is None
                assert unlisted.receive(1.5) is None
                assert friend.latest(1.0) is not None
    refused = [r.getMessage() for r in caplog.records if "a subscriber was refused" in r.getMessage()]
    assert len(refused) == 1 and str(keys / "authorized") in refused[0], refused
    assert any(" | CURVE" in r.getMessage() for r in caplog.records if " in " in r.getMessage()), caplog.text


def test_video_file_source_is_recorded_and_ends_cleanly(tmp_path: Path) -> None:
    video, record = tmp_path / "in.avi", tmp_path / "out.avi"
    _write_avi(video, 12)
    with running(_config(SourceConfig(spec=str(video), fps=40.0), free_endpoint(), record=record)) as status:
        assert _wait_status(status, 10.0) == [0], "a finite source did not end the chain"
    cap = cv2.VideoCapture(str(record))
    played = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        played += 1
        assert frame.shape == (48, 64, 3)
    assert 1 <= played <= 12


def test_frames_limit_and_headless_preview(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    record = tmp_path / "frames"
    with running(_config(SIM, free_endpoint(), frames=3, record=record, preview=True)) as status:
        assert _wait_status(status, 10.0) == [0]
    assert len(list(record.glob("*.png"))) == 3
    warned = any(r.getMessage().startswith("--preview:") for r in caplog.records)
    assert warned == (has_display() is not None)


def test_bad_start_up_fails_fast_with_one_line(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.INFO)
    cases = {
        "--source": _config(SourceConfig(spec=str(tmp_path / "missing.avi")), free_endpoint()),
        "--backend": ChainConfig(
            source=SIM, output=OutputConfig(publish=free_endpoint()), backend="nonesuch"
        ),
        "--publish": _config(SIM, "tcp://127.0.0.1:not-a-port"),
        "--curve-keys": _config(SIM, free_endpoint(), curve_keys=tmp_path / "nokeys"),
    }
    for flag, cfg in cases.items():
        caplog.clear()
        start = time.monotonic()
        assert run_chain(cfg) == 1
        assert time.monotonic() - start < 5.0
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and flag in errors[0] and "\n" not in errors[0], (flag, errors)


def test_image_folder_source_skips_a_bad_file(tmp_path: Path) -> None:
    folder, record = tmp_path / "scans", tmp_path / "out"
    folder.mkdir()
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, size=(40, 56), dtype=np.uint8) for _ in range(4)]
    for i, image in enumerate(images):
        cv2.imwrite(str(folder / f"img_{i}.png"), image)
    (folder / "img_9_broken.png").write_bytes(b"not a png")
    with running(_config(SourceConfig(spec=str(folder), fps=20.0), free_endpoint(), record=record)) as status:
        assert _wait_status(status, 10.0) == [0]
    written = sorted(record.glob("*.png"))
    assert 1 <= len(written) <= 4
    for path in written:  # identity backend: each recorded frame is one of the inputs, unchanged
        out = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert any(np.array_equal(out, image) for image in images)


def test_dicom_cine_source_carries_pixel_spacing(tmp_path: Path) -> None:
    ds = us_dataset()
    ds.set_pixel_data(
        np.random.default_rng(6).integers(0, 256, size=(30, 32, 48), dtype=np.uint8), "MONOCHROME2", 8
    )
    ds.PixelSpacing = [0.3, 0.2]
    path = tmp_path / "cine.dcm"
    ds.save_as(path, enforce_file_format=True)
    publish = free_endpoint()
    with (
        Subscriber(publish) as sub,
        running(_config(SourceConfig(spec=str(path), fps=30.0, loop=True), publish)),
    ):
        frame = sub.receive(10.0)
    assert frame is not None
    assert (
        frame[0].shape == (32, 48)
        and frame[1]["spacing_mm"] == [0.3, 0.2]
        and frame[1]["source"] == "cine.dcm"
    )


def _write_avi(path: Path, count: int, shape: tuple[int, int] = (48, 64), seed: int = 4) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (shape[1], shape[0]))
    rng = np.random.default_rng(seed)
    for _ in range(count):
        writer.write(cv2.cvtColor(rng.integers(0, 256, size=shape, dtype=np.uint8), cv2.COLOR_GRAY2BGR))
    writer.release()


def test_http_stream_that_drops_is_reopened_with_back_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    _write_avi(tmp_path / "live.avi", 5)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    def serve(port: int) -> http.server.ThreadingHTTPServer:
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", port), functools.partial(Quiet, directory=str(tmp_path))
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def retries() -> list[str]:
        return [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]

    server = serve(0)
    port = server.server_address[1]
    url = f"http://127.0.0.1:{port}/live.avi"
    publish = free_endpoint()
    with Subscriber(publish) as sub, running(_config(SourceConfig(spec=url), publish)):
        assert sub.receive(10.0) is not None
        server.shutdown()  # the stream drops: its 5 frames end and reopening is refused
        server.server_close()
        deadline = time.monotonic() + 10.0
        while not any(m.endswith("retrying in 1.0 s") for m in retries()) and time.monotonic() < deadline:
            time.sleep(0.02)
        server = serve(port)  # the stream is back
        while sub.receive(0.0) is not None:
            pass
        again = sub.receive(10.0)
    server.shutdown()
    messages = retries()
    assert messages[0].endswith("stopped delivering frames; retrying in 0.5 s")
    doubled = next(i for i, m in enumerate(messages) if m.endswith("retrying in 1.0 s"))  # a refused reopen
    assert messages[doubled].endswith("cannot open it (no such device or stream?); retrying in 1.0 s")
    assert messages[doubled - 1].endswith("retrying in 0.5 s")
    assert again is not None and again[0].shape == (48, 64)
    assert _last_counts(caplog)["reconnects"] >= 2


def test_keys_tool_writes_key_pairs_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert keys_main(["--out", str(tmp_path / "k")]) == 0
    names = sorted(p.relative_to(tmp_path / "k").as_posix() for p in (tmp_path / "k").rglob("*.key*"))
    assert names == [
        "authorized/client.key",
        "client.key",
        "client.key_secret",
        "server.key",
        "server.key_secret",
    ]
    capsys.readouterr()
    assert keys_main(["--out", str(tmp_path / "k")]) == 1
    assert "already holds" in capsys.readouterr().err


def test_frame_whose_header_cannot_take_our_stamps_is_counted_not_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    grab, publish = free_endpoint(), free_endpoint()
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.linger = 0
    pub.bind(grab)
    frame = np.zeros((32, 32), np.uint8)
    full = {**_grabbed_meta(0), "stamps": {f"stage{i}": 1 for i in range(32)}}  # the protocol's maximum

    def refused() -> bool:
        return any("not published" in r.getMessage() for r in caplog.records)

    with running(_config(SourceConfig(spec=grab), publish)) as status, Subscriber(publish) as sub:
        for seq in range(400):
            pub.send_multipart(encode_frame(frame, {**full, "seq": seq}))
            time.sleep(0.02)
            if refused():
                break
        assert refused(), "no frame with a full header reached the publisher"
        while sub.receive(0.05) is None:  # and the chain goes on with the next good frames
            seq += 1
            pub.send_multipart(encode_frame(frame, _grabbed_meta(seq)))
            assert seq < 800, "the chain stopped delivering frames"
        assert not status, "the chain stopped by itself"
    pub.close()
    assert _last_counts(caplog)["errors"] >= 1


def test_a_paused_process_prints_one_status_line_for_the_gap(caplog: pytest.LogCaptureFixture) -> None:
    """Status lines every 1 s; the loop held up for 3.5 s (a process stopped or swapped out) is
    followed by one line a period later, not by the missed ones, one per 0.1 s poll."""
    from stream.pipeline import _supervise
    from stream.stats import Stats

    caplog.set_level(logging.INFO, logger="stream")
    stop, calls = threading.Event(), []

    def done() -> bool:
        calls.append(time.monotonic())
        if len(calls) == 3:
            time.sleep(3.5)  # the pause
        return calls[-1] - calls[0] > 5.5

    _supervise(stop, Stats(), done, every=1.0)
    stamps = [r.created for r in caplog.records if r.name == "stream"]
    assert len(stamps) >= 2
    assert min(np.diff(stamps)) > 0.5, np.diff(stamps)  # no lines catching up 0.1 s apart
