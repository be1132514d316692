"""The command-line tools as separate processes: split chain, signals, bad devices, OpenIGTLink."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from stream.client import Subscriber

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop_within(proc: subprocess.Popen, sig: int, limit: float = 2.0) -> tuple[float, str]:
    """Send ``sig``; return (seconds until the process exited, its stderr).  Kills it after 10 s."""
    start_time = time.monotonic()
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return time.monotonic() - start_time, err


def test_grabber_and_despeckler_processes_deliver_frames_in_order() -> None:
    grab, out = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    grabber = start(
        "stream.grabber",
        "--source",
        "sim",
        "--size",
        "48x64",
        "--fps",
        "20",
        "--publish",
        grab,
        "--status",
        "0.5",
    )
    despeckler = start(
        "stream.despeckler", "--subscribe", grab, "--publish", out, "--backend", "identity", "--status", "0.5"
    )
    try:
        with Subscriber(out) as sub:
            frames = [sub.receive(15.0) for _ in range(6)]
    finally:
        timings = {
            name: stop_within(proc, signal.SIGINT)
            for name, proc in (("grabber", grabber), ("despeckler", despeckler))
        }
    assert all(f is not None for f in frames), timings
    seqs = [meta["seq"] for _, meta in frames]
    assert seqs == sorted(seqs) and len(set(seqs)) == 6
    for image, meta in frames:
        assert image.shape == (48, 64) and image.dtype == np.uint8
        assert meta["source"] == "sim" and meta["spacing_mm"] == [0.25, 0.25]
        assert set(meta["stamps"]) == {"grab", "receive", "despeckle", "publish"}
        assert (
            meta["capture_wall_ns"] <= meta["stamps"]["grab"] <= meta["stamps"]["publish"] <= time.time_ns()
        )
    for name, proc in (("grabber", grabber), ("despeckler", despeckler)):
        seconds, err = timings[name]
        assert proc.returncode == 0, err
        assert seconds < 2.0, f"{name} took {seconds:.2f} s to stop after SIGINT"
    assert "backend identity" in timings["despeckler"][1]


SIGNAL_INSIDE_WAIT = """
import os, signal
from stream.pipeline import _Process
with _Process(None, None, None, sent="out") as proc:
    with proc.stop._cond:  # the lock stop.wait() holds between its waits
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler runs between these bytecodes, with the lock held
            pass
    print("stopped" if proc.stop.wait(5.0) else "not stopped")
"""


def test_a_signal_inside_the_stop_events_wait_still_stops_the_process() -> None:
    """A SIGINT that arrives while the main thread is inside ``stop.wait()`` holding the event's
    lock: its handler once called ``stop.set()`` right there and waited for that lock forever (a
    grabber then ignored SIGINT and SIGTERM alike); the event must still be set."""
    proc = subprocess.Popen([sys.executable, "-c", SIGNAL_INSIDE_WAIT], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail("the process hung in its SIGINT handler (killed after 30 s)")
    assert proc.returncode == 0 and out.strip() == "stopped", (out, err)


def test_missing_capture_device_is_a_clear_error() -> None:
    proc = start("stream.run", "--source", "capture7", "--backend", "identity")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "capture7" in lines[0], err


def test_run_serves_openigtlink_and_stops_on_sigterm() -> None:
    pyigtl = pytest.importorskip("pyigtl")
    port = free_port()
    proc = start(
        "stream.run",
        "--backend",
        "identity",
        "--size",
        "32x40",
        "--igtl",
        str(port),
        "--publish",
        f"tcp://127.0.0.1:{free_port()}",
    )
    client = pyigtl.OpenIGTLinkClient(host="127.0.0.1", port=port)
    try:
        message = client.wait_for_message("Despeckled", timeout=15)
    finally:
        client.stop()
        seconds, err = stop_within(proc, signal.SIGTERM)
    assert message is not None, err
    assert message.image.shape == (1, 32, 40)
    assert np.allclose(np.diag(message.ijk_to_world_matrix)[:2], 0.25)
    assert proc.returncode == 0, err
    assert seconds < 2.0, f"took {seconds:.2f} s to stop after SIGTERM"
    assert "in " in err and "latency p50" in err


def test_a_stop_while_a_network_source_opens_is_a_stop_not_an_error() -> None:
    """SIGTERM while an rtsp:// source that never answers is still opening: the open then fails,
    and that is the stop's doing: one line, exit status 0 (it was "cannot open it", status 1)."""
    with socket.socket() as server:  # accepts and never answers
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        proc = start("stream.grabber", "--source", f"rtsp://127.0.0.1:{server.getsockname()[1]}/live",
                     "--publish", f"tcp://127.0.0.1:{free_port()}")
        time.sleep(1.5)
        _, err = stop_within(proc, signal.SIGTERM)
    assert proc.returncode == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "stopped while starting (--source rtsp://" in lines[0], err


def test_a_stop_during_a_long_inference_leaves_it_behind_and_exits_0() -> None:
    """The default model on a 1024x1024 frame takes several seconds on a CPU: Ctrl-C leaves that
    inference behind and the process exits 0 at once, instead of waiting for it at the
    interpreter's exit and sometimes aborting (libstdc++'s "terminate called", status 134)."""
    proc = start("stream.run", "--weights", "default", "--size", "1024", "--fps", "5",
                 "--publish", f"tcp://127.0.0.1:{free_port()}")
    head = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the first frame's grey-level line: its inference has begun
        line = proc.stderr.readline()
        head.append(line)
        if "grey levels:" in line or not line:
            break
    time.sleep(1.0)
    seconds, err = stop_within(proc, signal.SIGINT)
    err = "".join(head) + err
    assert proc.returncode == 0, err
    assert "leaving it behind" in err and "terminate called" not in err and "Traceback" not in err, err
    assert seconds < 4.0, f"took {seconds:.2f} s to stop after SIGINT"


TORCH_BLOCKED = """
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")

sys.meta_path.insert(0, NoTorch())
from stream.run import main

status = main(sys.argv[1:])
assert "torch" not in sys.modules
raise SystemExit(status)
"""


def test_live_chain_runs_without_torch() -> None:
    args = [
        "--backend",
        "identity",
        "--size",
        "32",
        "--frames",
        "3",
        "--publish",
        f"tcp://127.0.0.1:{free_port()}",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", TORCH_BLOCKED, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "published 3 frames" in proc.stderr
