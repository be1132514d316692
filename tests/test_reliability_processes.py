"""Reliability of the chain as separate processes: stage restarts, slow consumers, shutdown, default binds.

Each stage is a real ``python -m stream.*`` process; the test process is the subscriber.  Memory
is read from ``/proc/<pid>/status`` (``VmRSS``), so these tests need Linux.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_stream_chain import free_endpoint

from stream.client import Subscriber
from stream.config import GRAB_ENDPOINT, PUBLISH_ENDPOINT
from stream.stages import latency_ms

ROOT = Path(__file__).resolve().parents[1]
#: a restarted stage's subscribers must get frames again within this long, seconds.
RESUME_S = 2.0
#: allowed growth of a process's resident memory from warm-up to the end of a run, KiB.
RSS_MARGIN_KIB = 8 * 1024

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")


class Stage:
    """A ``python -m`` stage whose stderr goes to a log file."""

    def __init__(self, log: Path, *args: str) -> None:
        self.log, self.args = log, args
        self._offset = log.stat().st_size if log.exists() else 0
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with open(log, "ab") as sink:
            self.proc = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)

    def wait_for_line(self, text: str, timeout: float = 30.0) -> float:
        """Wait until the log holds ``text`` after this start; return the monotonic time it was seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return time.monotonic()
            assert self.proc.poll() is None, f"{self.args[0]} exited: {self.output()[-2000:]}"
            time.sleep(0.02)
        raise AssertionError(f"{self.args[0]} never logged {text!r}: {self.output()[-2000:]}")

    def output(self) -> str:
        """What this start of the stage has logged so far."""
        return self.log.read_bytes()[self._offset :].decode(errors="replace")

    def rss_kib(self) -> int:
        return rss_kib(self.proc.pid)

    def stop(self, sig: int = signal.SIGINT) -> float:
        """Send ``sig``; return the seconds until the process exited (killed after 10 s)."""
        start = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return time.monotonic() - start


def rss_kib(pid: int) -> int:
    """``VmRSS`` of process ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


@contextmanager
def chain(tmp_path: Path, size: str = "32x32", fps: str = "200", backend: str = "identity") -> Iterator[tuple[Stage, Stage, str]]:
    """A grabber and a despeckler process; yields them and the despeckled stream's endpoint."""
    grab, publish = free_endpoint(), free_endpoint()
    grabber = Stage(tmp_path / "grabber.log", "stream.grabber", "--source", "sim", "--size", size, "--fps", fps, "--publish", grab, "--status", "0.5")
    despeckler = Stage(tmp_path / "despeckler.log", "stream.despeckler", "--subscribe", grab, "--publish", publish,
                       "--backend", backend, "--status", "0.5")
    try:
        yield grabber, despeckler, publish
    finally:
        for stage in (despeckler, grabber):
            stage.stop()


def _first_frame_after(sub: Subscriber, since: float, timeout: float = 30.0) -> float:
    """Seconds from ``since`` (monotonic) until ``sub`` gets a frame captured after ``since``."""
    deadline = time.monotonic() + timeout
    since_ns = int(since * 1e9)
    while time.monotonic() < deadline:
        frame = sub.receive(0.05)
        if frame is not None and frame[1]["capture_mono_ns"] > since_ns:
            return time.monotonic() - since
    raise AssertionError(f"no new frame within {timeout} s")


def test_killed_stages_restart_and_the_subscriber_resumes(tmp_path: Path) -> None:
    with chain(tmp_path) as (grabber, despeckler, publish), Subscriber(publish) as sub:
        assert sub.receive(30.0) is not None
        for stage in (despeckler, grabber):
            stage.proc.send_signal(signal.SIGKILL)
            stage.proc.wait(5)
            killed = time.monotonic()
            while sub.receive(0.2) is not None:  # what was in flight before the kill
                pass
            restarted = Stage(stage.log, *stage.args)
            if stage is despeckler:
                despeckler = restarted
            else:
                grabber = restarted
            ready = restarted.wait_for_line("publishing")
            resumed = _first_frame_after(sub, killed)
            assert time.monotonic() - ready <= RESUME_S, (
                f"{stage.args[0]}: frames resumed {time.monotonic() - ready:.2f} s after the restarted process was ready"
            )
            assert resumed < 30.0
        image, meta = sub.receive(5.0)
        assert image.shape == (32, 32) and meta["seq"] >= 0
        for stage in (despeckler, grabber):
            seconds = stage.stop(signal.SIGTERM)
            assert stage.proc.returncode == 0, stage.log.read_text()[-2000:]
            assert seconds < 2.0, f"{stage.args[0]} took {seconds:.2f} s to stop after SIGTERM"


def run_slow_consumer(tmp_path: Path, frames: int) -> dict:
    """Stream ``frames`` small frames as fast as the chain goes while the subscriber reads 10x slower
    than the stream; return RSS per process after warm-up and at the end, and the latencies seen."""
    with chain(tmp_path, fps="2000") as (grabber, despeckler, publish), Subscriber(publish) as sub:
        start_seq = sub.receive(30.0)[1]["seq"]
        t0 = time.monotonic()
        while sub.receive(5.0)[1]["seq"] < start_seq + 500:  # warm-up, and the stream's rate
            pass
        rate = 500 / (time.monotonic() - t0)
        period = 10.0 / rate
        rss0 = {"grabber": grabber.rss_kib(), "despeckler": despeckler.rss_kib(), "subscriber": rss_kib(os.getpid())}
        latencies, last_seq, got = [], start_seq, 0
        while last_seq < start_seq + 500 + frames:
            time.sleep(period)
            frame = sub.latest(5.0)
            assert frame is not None, "the stream stopped"
            latencies.append(latency_ms(frame[1]))
            last_seq, got = frame[1]["seq"], got + 1
        rss1 = {"grabber": grabber.rss_kib(), "despeckler": despeckler.rss_kib(), "subscriber": rss_kib(os.getpid())}
    return {"rate": rate, "rss0": rss0, "rss1": rss1, "latencies": latencies, "got": got}


def check_memory(result: dict) -> None:
    for name, before in result["rss0"].items():
        grown = result["rss1"][name] - before
        assert grown <= RSS_MARGIN_KIB, f"{name}: RSS grew by {grown} KiB (from {before} KiB)"


def check_latency(result: dict) -> None:
    """Latest frame wins: what the slow reader gets is recent, not a backlog that keeps growing."""
    latencies = np.asarray(result["latencies"])
    period_ms = 10e3 / result["rate"]
    assert np.percentile(latencies, 99) <= 20 * period_ms + 50, (np.percentile(latencies, [50, 99]), period_ms)


@pytest.fixture(scope="module")
def slow_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_slow_consumer(tmp_path_factory.mktemp("slow"), frames=2_000)


def test_slow_consumer_keeps_memory_bounded(slow_run: dict) -> None:
    check_memory(slow_run)


def test_slow_consumer_gets_recent_frames(slow_run: dict) -> None:
    check_latency(slow_run)


@pytest.fixture(scope="module")
def long_slow_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_slow_consumer(tmp_path_factory.mktemp("slow10k"), frames=10_000)


@pytest.mark.soak
def test_slow_consumer_over_ten_thousand_frames_keeps_memory_bounded(long_slow_run: dict) -> None:
    check_memory(long_slow_run)


@pytest.mark.soak
def test_slow_consumer_over_ten_thousand_frames_gets_recent_frames(long_slow_run: dict) -> None:
    check_latency(long_slow_run)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_the_chain_and_leaves_a_playable_recording(tmp_path: Path, sig: int) -> None:
    record = tmp_path / "out.avi"
    run = Stage(tmp_path / "run.log", "stream.run", "--source", "sim", "--size", "48x64", "--fps", "60", "--backend", "identity",
                "--publish", free_endpoint(), "--record", str(record), "--status", "0.5")
    try:
        run.wait_for_line("publishing")
        run.wait_for_line("out ")  # a status line: frames are being written
        time.sleep(0.5)
    finally:
        seconds = run.stop(sig)
    assert run.proc.returncode == 0, run.log.read_text()[-2000:]
    assert seconds < 2.0, f"took {seconds:.2f} s to stop"
    cap = cv2.VideoCapture(str(record))
    indexed = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))  # from the AVI index, written on close
    cap.set(cv2.CAP_PROP_POS_FRAMES, indexed - 1)
    ok, last = cap.read()
    cap.release()
    assert indexed >= 5, f"the recording holds {indexed} frames"
    assert ok and last.shape == (48, 64, 3), "the last recorded frame does not decode"


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp writes them) of the sockets listening on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.append(address)
    return found


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return not _listening(port)


def test_default_endpoints_listen_on_loopback_only(tmp_path: Path) -> None:
    ports = [int(GRAB_ENDPOINT.rsplit(":", 1)[1]), int(PUBLISH_ENDPOINT.rsplit(":", 1)[1])]
    if not all(_port_free(p) for p in ports):
        pytest.skip(f"a default port {ports} is in use on this machine")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        igtl = s.getsockname()[1]
    grabber = Stage(tmp_path / "grabber.log", "stream.grabber", "--size", "32x32")
    run = Stage(tmp_path / "run.log", "stream.run", "--backend", "identity", "--size", "32x32", "--igtl", str(igtl))
    try:
        for stage in (grabber, run):
            stage.wait_for_line("publishing")
        for port in [*ports, igtl]:
            assert _listening(port) == ["0100007F"], f"port {port} listens on {_listening(port)}, not only 127.0.0.1"
    finally:
        for stage in (grabber, run):
            stage.stop()
