"""Bad input to the ``python -m stream.*`` tools: one line naming the culprit and a non-zero exit,
checked at parse time or start-up where it can be; at run time, refused frames and skipped files
are counted and logged without a flood.  Real ZeroMQ sockets on loopback, real processes for the
two-process chain, the identity backend and small frames throughout."""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq
from test_stream_chain import free_endpoint, running

from stream.config import ChainConfig, OutputConfig, SourceConfig
from stream.despeckler import main as despeckler_main
from stream.grabber import main as grabber_main
from stream.keys import main as keys_main
from stream.protocol import Limits
from stream.run import main as run_main
from stream.transport import TransportError, bind_publisher, check_endpoint

ROOT = Path(__file__).resolve().parents[1]
Main = Callable[[list[str]], int]


def _one_line_error(capsys: pytest.CaptureFixture[str], main: Main, argv: list[str]) -> str:
    """Run ``main(argv)``, expect a parse error: exit status 2 and one line on stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "usage:" not in err and ": error: " in err, err
    return err


@pytest.mark.parametrize(
    ("main", "argv", "culprit"),
    [
        (run_main, ["--igtl", "70000"], "--igtl"),
        (despeckler_main, ["--igtl", "65536"], "--igtl"),
        (run_main, ["--publish", "tcp://127.0.0.1:70000"], "--publish"),
        (grabber_main, ["--publish", "tcp://127.0.0.1:99999"], "--publish"),
        (despeckler_main, ["--subscribe", "tcp://127.0.0.1:99999"], "--subscribe"),
        (despeckler_main, ["--subscribe", "udp://127.0.0.1:5"], "--subscribe"),
        (run_main, ["--source", "tcp://127.0.0.1:0"], "--source"),
        (run_main, ["--size", "4"], "--size"),
        (grabber_main, ["--size", "64x7"], "--size"),
        (grabber_main, ["--seed", "-1"], "--seed"),
        (run_main, ["--seed", "-1"], "--seed"),
        (run_main, ["--pixel-mm", "100"], "--pixel-mm"),  # micrometres typed as mm
        (run_main, ["--record", ""], "--record"),  # an unset $OUT: not the current folder
        (run_main, ["--fps", "0"], "--fps"),
        (run_main, ["--persistence", "1"], "--persistence"),
        (despeckler_main, ["--persistence", "-0.5"], "--persistence"),
        (run_main, ["--persistence-motion", "16"], "--persistence-motion"),
        (despeckler_main, ["--persistence", "0.5", "--persistence-motion", "-1"], "--persistence-motion"),
        (grabber_main, ["--frames", "-1"], "--frames"),
        (keys_main, [], "--out"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_bad_flag_is_one_line_naming_it_and_exit_2(
    capsys: pytest.CaptureFixture[str], main: Main, argv: list[str], culprit: str
) -> None:
    err = _one_line_error(capsys, main, argv)
    assert culprit in err
    if culprit == "--size":  # the real minimum: the engine's for the whole chain, the simulator's for a grabber
        assert ("16x16 .. 4096x4096" if main is run_main else ">= 8") in err


def test_tcp_ports_are_checked_where_libzmq_does_not() -> None:
    for good in ("tcp://127.0.0.1:1", "tcp://127.0.0.1:65535", "tcp://*:5556", "ipc:///tmp/x", "inproc://a"):
        check_endpoint(good, bind=False)
    check_endpoint("tcp://127.0.0.1:*", bind=True)
    for bad in ("tcp://127.0.0.1:*", "tcp://127.0.0.1:0", "tcp://127.0.0.1:65536", "tcp://127.0.0.1"):
        with pytest.raises(ValueError, match="port must be"):
            check_endpoint(bad, bind=False)
    with pytest.raises(ValueError, match="an endpoint is a string such as tcp://"):
        check_endpoint(None, bind=False)  # type: ignore[arg-type]
    from stream.client import Subscriber

    with pytest.raises(TransportError, match="^Subscriber None: an endpoint is a string"):
        Subscriber(None)  # type: ignore[arg-type]
    ctx = zmq.Context()
    try:  # libzmq alone would bind this as port 4464
        with pytest.raises(TransportError, match=r"^--publish tcp://127\.0\.0\.1:70000: the port must be"):
            bind_publisher(ctx, "tcp://127.0.0.1:70000")
    finally:
        ctx.destroy(linger=0)


def test_the_simulators_smallest_frame_streams(caplog: pytest.LogCaptureFixture) -> None:
    """A stand-alone grabber streams the simulator's smallest frames, saying that a despeckler
    refuses them; frames within the engine's profile get no such line."""
    caplog.set_level(logging.INFO)
    for size, warned in (("8", True), ("16", False)):
        caplog.clear()
        assert grabber_main(["--size", size, "--frames", "2", "--fps", "200", "--publish", free_endpoint()]) == 0
        assert (f"--size {size}x{size}: sim frames outside the engine's profile" in caplog.text) is warned


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def _last_status(caplog: pytest.LogCaptureFixture) -> dict[str, int]:
    lines = [r.getMessage() for r in caplog.records if " malformed " in r.getMessage()]
    assert lines, "no status line was logged"
    return {k: int(v) for k, v in re.findall(r"(dropped|gaps|malformed|errors|reconnects) (\d+)", lines[-1])}


def _sim_run(*flags: str) -> list[str]:
    return ["--backend", "identity", "--size", "32", "--fps", "200", "--publish", free_endpoint(), *flags]


@pytest.mark.parametrize("where", ["in /proc", "folder in /proc", "under a file", "a folder named .avi"])
def test_record_where_nothing_can_be_written_fails_before_any_stage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    if where.startswith(("in /proc", "folder in /proc")) and not Path("/proc/self").is_dir():
        pytest.skip("no /proc here")
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "dir.avi").mkdir()
    record = {
        "in /proc": Path("/proc/rec.avi"),
        "folder in /proc": Path("/proc/recorded"),
        "under a file": tmp_path / "file.txt" / "rec.avi",
        "a folder named .avi": tmp_path / "dir.avi",
    }[where]
    caplog.set_level(logging.INFO)
    # a missing --source as well: --record is checked first, before the source is opened
    assert run_main(_sim_run("--frames", "3", "--record", str(record), "--source", str(tmp_path / "no"))) == 1
    errors = _errors(caplog)
    assert len(errors) == 1 and errors[0].startswith(f"--record {record}:") and "\n" not in errors[0], errors
    assert not any("publishing" in r.getMessage() for r in caplog.records)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.avi", "file.txt"]
    assert not any(tmp_path.joinpath("dir.avi").iterdir())


def test_record_leaves_only_the_recording(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    assert run_main(_sim_run("--frames", "3", "--record", str(tmp_path / "out.avi"))) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["out.avi"]  # no probe file left behind
    cap = cv2.VideoCapture(str(tmp_path / "out.avi"))
    assert cap.read()[0]
    cap.release()


def _png(path: Path, side: int, seed: int) -> None:
    image = np.random.default_rng(seed).integers(0, 256, size=(side, side), dtype=np.uint8)
    assert cv2.imwrite(str(path), image)


def test_files_skipped_from_a_source_folder_are_counted_in_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    _png(folder / "a.png", 32, 0)
    (folder / "b.png").write_bytes(b"not a png")
    (folder / "c.png").write_bytes(b"")
    _png(folder / "d.png", 32, 1)
    caplog.set_level(logging.INFO)
    assert grabber_main(["--source", str(folder), "--fps", "200", "--publish", free_endpoint()]) == 0
    assert _last_status(caplog)["errors"] == 2
    skipped = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(skipped) == 2 and "b.png" in skipped[0] and "c.png" in skipped[1]
    caplog.clear()
    assert run_main(["--backend", "identity", "--source", str(folder), "--fps", "200",
                     "--publish", free_endpoint()]) == 0
    assert _last_status(caplog)["errors"] == 2


@pytest.mark.parametrize("main", [run_main, grabber_main], ids=["run", "grabber"])
def test_frame_limit_that_refuses_the_first_frame_fails_at_start(
    caplog: pytest.LogCaptureFixture, main: Main
) -> None:
    caplog.set_level(logging.INFO)
    flags = ["--size", "32", "--fps", "200", "--publish", free_endpoint(), "--max-dim", "8"]
    start = time.monotonic()
    assert main(flags if main is grabber_main else ["--backend", "identity", *flags]) == 1
    assert time.monotonic() - start < 10.0
    errors = _errors(caplog)
    assert len(errors) == 1 and "--max-dim" in errors[0] and "32x32" in errors[0], errors


def test_a_grabbers_sim_size_above_its_max_dim_is_refused_before_drawing(caplog: pytest.LogCaptureFixture) -> None:
    """``--size 100000`` was a 94 GiB phantom and a traceback: the size is refused as its first frame
    would be, before anything is drawn."""
    caplog.set_level(logging.INFO)
    assert grabber_main(["--size", "100000", "--frames", "1", "--publish", free_endpoint()]) == 1
    errors = _errors(caplog)
    assert len(errors) == 1 and "--max-dim" in errors[0] and "100000x100000" in errors[0], errors


def test_roi_that_does_not_fit_the_first_frame_fails_at_start(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    assert run_main(_sim_run("--frames", "3", "--roi", "0,0,100,100")) == 1
    errors = _errors(caplog)
    assert len(errors) == 1 and errors[0].startswith("--roi 0,0,100,100") and "32x32" in errors[0], errors


@pytest.fixture
def growing_folder(tmp_path: Path) -> Path:
    """A 16x16 picture, then six 40x40 ones: under ``--max-dim 32`` the first frame passes the
    start-up check and every later one is refused at run time."""
    folder = tmp_path / "growing"
    folder.mkdir()
    _png(folder / "a.png", 16, 0)
    for i in range(6):
        _png(folder / f"b{i}.png", 40, i + 1)
    return folder


def test_refused_frames_are_logged_once_then_summed_up_per_status_line(
    growing_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    source = SourceConfig(spec=str(growing_folder), fps=300.0, loop=True)
    cfg = ChainConfig(
        source=source,
        output=OutputConfig(publish=free_endpoint()),
        backend="identity",
        limits=Limits(max_dim=32),
        status_s=0.25,
    )
    with running(cfg) as status:
        time.sleep(1.5)
        assert not status, "the chain stopped by itself"
    messages = [r.getMessage() for r in caplog.records]
    full = [m for m in messages if "refused: frame size 40x40" in m and "more frame(s)" not in m]
    summaries = [m for m in messages if "more frame(s) refused" in m]
    status_lines = [m for m in messages if " malformed " in m]
    assert len(full) == 1 and "further refusals" in full[0], full
    assert 1 <= len(summaries) <= len(status_lines)
    refused = _last_status(caplog)["errors"]
    assert refused > 50 and len(messages) < 40, (refused, len(messages))


def test_frames_limit_stops_a_run_whose_frames_are_refused(
    growing_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    argv = ["--backend", "identity", "--source", str(growing_folder), "--loop", "--fps", "300",
            "--publish", free_endpoint(), "--max-dim", "32", "--frames", "3"]
    start = time.monotonic()
    assert run_main(argv) == 1
    assert time.monotonic() - start < 10.0
    errors = _errors(caplog)
    assert len(errors) == 1 and errors[0].startswith("--frames 3: ") and "refused" in errors[0], errors
    caplog.clear()
    assert run_main([*argv[:-4], "--frames", "3"]) == 0  # the same run within the default limits


ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


@contextmanager
def grabber_process(*flags: str) -> Iterator[str]:
    """A ``python -m stream.grabber`` process publishing ``sim`` with ``flags``; yields its endpoint."""
    grab = free_endpoint()
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream.grabber", "--publish", grab, *flags],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        yield grab
    finally:
        proc.terminate()
        proc.wait(10)


def despeckler_process(grab: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """A stand-alone ``stream.despeckler`` (identity backend) on the grabber at ``grab``, run to
    its end (30 s at most) with ``flags``."""
    return subprocess.run(
        [sys.executable, "-m", "stream.despeckler", "--subscribe", grab, "--publish", free_endpoint(),
         "--backend", "identity", *flags],
        env=ENV, capture_output=True, text=True, timeout=30,
    )


def test_roi_that_stops_fitting_at_run_time_is_counted_in_two_processes() -> None:
    """stream.grabber publishes 32x32 frames; stream.despeckler, with a --roi too large for them,
    refuses every one: one full line, then counts, and --frames 3 ends it with exit status 1."""
    with grabber_process("--size", "32", "--fps", "100") as grab:
        despeckler = despeckler_process(grab, "--roi", "0,0,100,100", "--frames", "3", "--status", "0.3")
    err = despeckler.stderr.splitlines()
    assert despeckler.returncode == 1, despeckler.stderr
    full = [line for line in err if "reaches outside the frame of 32x32" in line and "more frame" not in line]
    assert len(full) == 1 and "--roi 0,0,100,100" in full[0] and "further refusals" in full[0], err
    stopped = " --frames 3: 3 frames were refused before 3 were sent; stopping"
    assert [line for line in err if line.endswith(stopped)], err
    assert "Traceback" not in despeckler.stderr and len(err) < 12, err


def test_despeckler_with_a_smaller_max_dim_says_why_and_ends() -> None:
    """Over a stand-alone despeckler's --max-dim, the grabber's every frame is a malformed message:
    logged once in full (naming the flags), summed up per status line, and --frames ends the run."""
    with grabber_process("--size", "64", "--fps", "100") as grab:
        despeckler = despeckler_process(grab, "--max-dim", "32", "--frames", "40", "--status", "0.2")
    err = despeckler.stderr.splitlines()
    full = [line for line in err if re.match(r"\S+ malformed message refused: frame size 64x64 is outside 1\.\.32 ", line)]
    assert len(full) == 1 and "--max-dim" in full[0] and "counted in malformed" in full[0], err
    assert any(re.search(r" \d+ more frame\(s\) refused; the last: malformed message", line) for line in err), err
    assert despeckler.returncode == 1, err
    assert [line for line in err if line.endswith(" --frames 40: 40 frames were refused before 40 were sent; stopping")]
    assert int(re.findall(r" malformed (\d+)", err[-1])[0]) >= 40 and len(err) < 40, err


def test_recording_plays_at_the_grabbers_rate(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """stream.despeckler has no --fps: its recording takes the rate of the frames it records, here
    a grabber's --fps 10 (it was 30 whatever the source)."""
    caplog.set_level(logging.INFO)
    record = tmp_path / "d.avi"
    with grabber_process("--size", "32", "--fps", "10") as grab:
        assert despeckler_main(["--subscribe", grab, "--publish", free_endpoint(), "--backend", "identity",
                                "--record", str(record), "--frames", "14"]) == 0
    cap = cv2.VideoCapture(str(record))
    fps, frames = cap.get(cv2.CAP_PROP_FPS), cap.get(cv2.CAP_PROP_FRAME_COUNT)
    cap.release()
    assert fps == pytest.approx(10.0, abs=0.5) and frames == 14, (fps, frames)
    assert any(re.match(rf"--record {re.escape(str(record))}: (9\.\d+|10\.?\d*) frames/s, measured", r.getMessage())
               for r in caplog.records)


def test_recording_of_one_process_plays_at_its_fps(tmp_path: Path) -> None:
    record = tmp_path / "r.avi"
    assert run_main(_sim_run("--fps", "40", "--frames", "12", "--record", str(record))) == 0
    cap = cv2.VideoCapture(str(record))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(40.0, abs=2.0)
    cap.release()


def _igtl_run(size: int) -> tuple[int, subprocess.Popen]:
    """``python -m stream.run`` (identity backend, sim frames of ``size`` at 30 frames/s) serving
    OpenIGTLink on a free port: (the port, the process, its stderr piped)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream.run", "--backend", "identity", "--size", str(size), "--fps", "30",
         "--igtl", str(port), "--publish", free_endpoint(), "--status", "0.5"],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    return port, proc


def test_openigtlink_client_leaving_is_one_line_and_the_stream_goes_on() -> None:
    """pyigtl prints a BrokenPipeError traceback when a client goes away; the stream logs one line
    per client and serves the next one."""
    pyigtl = pytest.importorskip("pyigtl")
    port, proc = _igtl_run(32)
    shapes = []
    try:
        for _ in range(2):  # the second client is served after the first one left
            client = pyigtl.OpenIGTLinkClient(host="127.0.0.1", port=port)
            try:
                message = client.wait_for_message("Despeckled", timeout=15)
            finally:
                client.stop()
            shapes.append(None if message is None else message.image.shape)
            time.sleep(0.3)  # frames keep coming while no client is connected
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert shapes == [(1, 32, 32), (1, 32, 32)], err
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Broken pipe" not in err and "Error while" not in err, err
    left = [line for line in err.splitlines() if " --igtl: client 127.0.0.1:" in line and "disconnected" in line]
    assert len(left) == 2, err


def _igtl_message(sock: socket.socket) -> tuple[float, int]:
    """One OpenIGTLink message read off ``sock`` by the specification alone: (its time stamp, s; body bytes)."""
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "the server closed the connection"
            data += chunk
        return data
    header = exactly(58)
    seconds, fraction = struct.unpack_from(">II", header, 34)
    (size,) = struct.unpack_from(">Q", header, 42)
    exactly(size)
    return seconds + fraction / 2**32, size


def test_a_slow_openigtlink_client_gets_the_newest_frames_and_a_bogus_header_is_one_line() -> None:
    """A viewer reading 4 frames/s from a 30 frames/s stream is kept and sent the newest frame each
    time (frames replaced, not queued in socket buffers: consecutive time stamps far apart); a
    client announcing a terabyte body is let go in one line, no traceback, and the next is served."""
    port, proc = _igtl_run(256)
    try:
        bogus = struct.pack(">H12s20sQQQ", 1, b"STRING", b"x", 0, 10**12, 0)
        assert len(bogus) == 58
        deadline = time.monotonic() + 30
        while True:  # the server is up once a frame comes
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as first:
                    _igtl_message(first)
                break
            except (ConnectionRefusedError, ConnectionResetError, AssertionError):
                assert time.monotonic() < deadline, "no OpenIGTLink server came up"
                time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as bad:
            bad.sendall(bogus)
            while bad.recv(1 << 16):  # frames may come first; then the server closes the connection
                pass
        stamps = []
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            for _ in range(14):
                stamps.append(_igtl_message(slow)[0])
                time.sleep(0.25)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    gaps = np.diff(stamps[4:])  # once the buffers along the way are full
    assert np.median(gaps) > 3 / 30, (gaps, err)  # not frame after frame: replaced by newer ones
    assert "Traceback" not in err and "MemoryError" not in err, err
    lines = [line for line in err.splitlines() if " --igtl: client " in line and "disconnected" in line]
    assert any("a body of 1000000000000 bytes announced" in line for line in lines), err
    assert not any("took no frame" in line or "timed out" in line for line in lines), err


@pytest.mark.parametrize("problem", ["missing", "not a model", "identity"])
def test_weights_error_names_weights(tmp_path: Path, caplog: pytest.LogCaptureFixture, problem: str) -> None:
    weights = tmp_path / ("nosuch.onnx" if problem == "missing" else "junk.onnx")
    if problem != "missing":
        weights.write_bytes(b"not an ONNX model")
    backend = "identity" if problem == "identity" else "onnxruntime"
    caplog.set_level(logging.INFO)
    argv = ["--backend", backend, "--weights", str(weights), "--size", "32", "--frames", "1",
            "--publish", free_endpoint()]
    assert run_main(argv) == 1
    errors = _errors(caplog)
    assert len(errors) == 1 and errors[0].startswith("--weights") and str(weights) in errors[0], errors
    assert "--backend onnxruntime" not in errors[0]


def test_cuda_graphs_with_a_backend_that_cannot_replay_them(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    argv = ["--backend", "onnxruntime", "--cuda-graphs", "--size", "32", "--frames", "1", "--publish", free_endpoint()]
    assert run_main(argv) == 1
    assert _errors(caplog) == ["--cuda-graphs: only the torch backend on a CUDA GPU replays CUDA graphs, "
                               "not --backend onnxruntime"], _errors(caplog)


def test_cuda_graphs_on_torch_without_a_gpu(caplog: pytest.LogCaptureFixture) -> None:
    torch = pytest.importorskip("torch", reason="the torch backend needs torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: tests/test_stream_torch.py runs the chain with CUDA graphs")
    caplog.set_level(logging.INFO)
    argv = ["--backend", "torch", "--cuda-graphs", "--size", "32", "--frames", "1", "--publish", free_endpoint()]
    assert run_main(argv) == 1
    errors = _errors(caplog)
    assert len(errors) == 1 and errors[0].startswith("--backend torch --cuda-graphs: ") and "CUDA" in errors[0], errors


def test_cuda_graphs_under_auto_on_a_cpu_is_ignored_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    """``auto`` suits the machine it runs on: where it picks a backend without CUDA graphs the flag is
    named in one log line and the chain runs."""
    torch = pytest.importorskip("torch", reason="auto's choice is checked through torch")
    if torch.cuda.is_available():
        pytest.skip("auto picks torch on CUDA here, which takes the flag")
    caplog.set_level(logging.INFO)
    publish = free_endpoint()
    assert run_main(["--cuda-graphs", "--weights", "fast", "--size", "32", "--frames", "2", "--publish", publish]) == 0
    messages = [r.getMessage() for r in caplog.records]
    assert "backend auto -> onnxruntime takes no cuda_graphs; ignored" in messages and not _errors(caplog)


def test_weights_that_is_neither_a_file_nor_a_shipped_name(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    assert run_main(["--weights", "fastest", "--size", "32", "--frames", "1", "--publish", free_endpoint()]) == 1
    errors = _errors(caplog)
    assert errors == ["--weights fastest: no such file, nor a shipped model's name (default, fast, int8, fast-int8, auto)"], errors


def test_grabber_help_offers_only_the_sources_it_takes(capsys: pytest.CaptureFixture[str]) -> None:
    helps = {}
    for name, main in (("grabber", grabber_main), ("run", run_main)):
        with pytest.raises(SystemExit) as exit_info:
            main(["--help"])
        assert exit_info.value.code == 0
        helps[name] = " ".join(capsys.readouterr().out.split())
    assert "tcp://HOST:PORT" not in helps["grabber"] and "rtsp://..." in helps["grabber"]
    assert "tcp://HOST:PORT" in helps["run"]


def test_keys_tool_names_an_out_it_cannot_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    assert keys_main(["--out", str(tmp_path / "file" / "keys")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--out {tmp_path / 'file' / 'keys'}: cannot write the key files there" in err


def test_a_source_file_without_frames_says_what_it_should_be(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "fake.png").write_text("not a picture")
    with caplog.at_level(logging.ERROR):
        assert run_main(["--source", str(tmp_path / "fake.png"), "--frames", "1"]) != 0
    assert "--source fake.png: holds no frames that can be read (is it a picture, a video or a DICOM file?)" \
        in caplog.text


def test_keys_tool_writes_secret_keys_for_the_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        assert keys_main(["--out", str(tmp_path / "k")]) == 0
    finally:
        os.umask(old)
    modes = {
        p.relative_to(tmp_path / "k").as_posix(): stat.S_IMODE(p.stat().st_mode)
        for p in (tmp_path / "k").rglob("*.key*")
    }
    assert modes == {
        "server.key_secret": 0o600,
        "client.key_secret": 0o600,
        "server.key": 0o644,
        "client.key": 0o644,
        "authorized/client.key": 0o644,
    }


def test_a_bad_authorized_key_stops_the_publisher_and_a_loose_secret_key_is_warned_about(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """One unreadable ``authorized/*.key`` made the authenticator refuse every client while the
    grabber ran on: now it is named in one line and the grabber does not start (exit status 1);
    an empty ``authorized/`` likewise; a secret key others may read is named in a warning."""
    assert keys_main(["--out", str(tmp_path / "k")]) == 0
    argv = ["--curve-keys", str(tmp_path / "k"), "--frames", "2", "--size", "32", "--fps", "100", "--publish", free_endpoint()]
    (tmp_path / "k" / "server.key_secret").chmod(0o644)
    with caplog.at_level(logging.WARNING):
        assert grabber_main(argv) == 0
    assert "server.key_secret is a secret key that others may read (mode 644); chmod 600 " in caplog.text
    for broken, problem in (("nav2.key", "cannot read key file"), (None, "holds no *.key public key")):
        caplog.clear()
        for old in (tmp_path / "k" / "authorized").glob("*.key"):
            old.unlink()
        if broken:
            shutil.copy(tmp_path / "k" / "client.key", tmp_path / "k" / "authorized" / "client.key")
            (tmp_path / "k" / "authorized" / broken).write_text("")  # a copy that failed
        with caplog.at_level(logging.ERROR):
            assert grabber_main(argv) == 1
        assert len(_errors(caplog)) == 1 and problem in _errors(caplog)[0], _errors(caplog)
        assert (broken or "authorized") in _errors(caplog)[0]


def test_a_missing_key_folder_is_named_as_the_caller_gave_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The command line's ``--curve-keys``; a Python caller's ``curve_keys`` argument (there is no flag)."""
    from stream.client import Subscriber
    from stream.security import SecurityError

    with pytest.raises(SecurityError, match=r"^Subscriber curve_keys='.*nosuch': missing key file .*server\.key"):
        Subscriber(free_endpoint(), curve_keys=tmp_path / "nosuch")
    with caplog.at_level(logging.ERROR):
        assert grabber_main(["--curve-keys", str(tmp_path / "nosuch"), "--frames", "1", "--publish", free_endpoint()]) == 1
    assert _errors(caplog) == [f"--curve-keys: missing folder of allowed client keys {tmp_path / 'nosuch' / 'authorized'}"]


def test_a_despeckler_says_when_its_grabber_falls_silent_and_when_it_is_back(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-alone despeckler whose grabber dies showed only ``in 0.0/s``: now one warning after
    SILENCE_S (1 s here) naming the endpoint, and one line when a grabber publishes there again."""
    from test_stream_chain import running

    from stream import stages

    monkeypatch.setattr(stages, "SILENCE_S", 1.0)
    caplog.set_level(logging.INFO)
    grab = free_endpoint()
    cfg = ChainConfig(source=SourceConfig(spec=grab), backend="identity", status_s=0.5,
                      output=OutputConfig(publish=free_endpoint()))

    def grabber() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "stream.grabber", "--publish", grab, "--size", "32",
                                 "--fps", "30"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_for(text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in caplog.text:
            assert time.monotonic() < deadline, f"no line with {text!r}: {caplog.text}"
            time.sleep(0.1)

    with running(cfg):
        first = grabber()
        try:
            deadline = time.monotonic() + 20  # frames flowing once a status line counts them
            while not any(re.match(r"in [1-9]", r.getMessage()) for r in caplog.records):
                assert time.monotonic() < deadline, caplog.text
                time.sleep(0.1)
        finally:
            first.terminate()
            first.wait(10)
        wait_for(f"no frames from {grab} for 1 s (has the grabber stopped?)")
        second = grabber()
        try:
            wait_for(f"frames from {grab} again, after ")
        finally:
            second.terminate()
            second.wait(10)
    assert caplog.text.count("no frames from") == 1
