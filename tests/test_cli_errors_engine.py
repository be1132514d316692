"""Bad input to the engine's command-line tools (engine.export, quantize, despeckle, build): one line
on stderr naming the culprit, a non-zero exit, no traceback, and existing outputs left alone."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="making test weights needs torch (the [train] extra)")
pytest.importorskip("onnx", reason="exporting needs onnx (the [train] extra)")
from engine_testutil import make_checkpoint, random_frames  # noqa: E402

from engine.backends.onnxruntime import session_options  # noqa: E402
from engine.backends.torch_backend import TorchDespeckler  # noqa: E402
from engine.base import Despeckler, FrameError, check_threads  # noqa: E402
from engine.build import main as build_main  # noqa: E402
from engine.despeckle import main as despeckle_main  # noqa: E402
from engine.export import main as export_main  # noqa: E402
from engine.offline import despeckle_files, frames_missing  # noqa: E402
from engine.onnx_export import MAX_EDGE_CONTEXT, export_onnx  # noqa: E402
from engine.quantize import main as quantize_main  # noqa: E402


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def one_line(err: str, *culprits: str) -> str:
    """The single stderr line, checked to name every culprit and to be no traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and all(c in lines[0] for c in culprits), err
    return lines[0]


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small real checkpoint, its ONNX export made by ``python -m engine.export`` under umask 022,
    and a file of random bytes."""
    root = tmp_path_factory.mktemp("engine_cli")
    ckpt = make_checkpoint(root / "drnn.pt", seed=3)
    with umask(0o022):
        assert export_main(["--checkpoint", str(ckpt), "--out", str(root / "drnn.onnx")]) == 0
    (root / "random.onnx").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return {"pt": ckpt, "onnx": root / "drnn.onnx", "random": root / "random.onnx"}


# -- engine.export --------------------------------------------------------------------------------

def test_export_writes_a_file_that_follows_the_umask(models: dict[str, Path]) -> None:
    assert stat.S_IMODE(models["onnx"].stat().st_mode) == 0o644
    assert [p.name for p in models["onnx"].parent.iterdir() if p.name.startswith(".")] == []


def test_export_missing_checkpoint_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert export_main(["--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "m.onnx")]) == 1
    one_line(capsys.readouterr().err, "--checkpoint", "nope.pt", "no such file")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("out, what", [("file.png/x.onnx", "is a file, not a folder"), ("folder", "is a folder")])
def test_export_unusable_out_is_refused_before_exporting(models: dict[str, Path], tmp_path: Path, out: str, what: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file.png").write_bytes(b"KEEP")
    (tmp_path / "folder").mkdir()
    assert export_main(["--checkpoint", str(models["pt"]), "--out", str(tmp_path / out)]) == 1
    one_line(capsys.readouterr().err, "--out", str(tmp_path / out), what)
    assert (tmp_path / "file.png").read_bytes() == b"KEEP" and list((tmp_path / "folder").iterdir()) == []


@pytest.mark.parametrize("flag, value", [("--opset", "99"), ("--opset", "17"), ("--opset", "0"),
                                         ("--edge-context", "100000"), ("--edge-context", str(MAX_EDGE_CONTEXT + 1)),
                                         ("--edge-context", "-8")])
def test_export_out_of_range_flags_exit_2_at_parse_time(models: dict[str, Path], tmp_path: Path, flag: str,
                                                        value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        export_main(["--checkpoint", str(models["pt"]), "--out", str(tmp_path / "x.onnx"), flag, value])
    assert exit_info.value.code == 2
    one_line(capsys.readouterr().err, flag, value)
    assert not (tmp_path / "x.onnx").exists()


def test_export_library_refuses_bad_opset_and_context_before_work(tmp_path: Path) -> None:
    from training.checkpoint import load_generator

    net = load_generator(make_checkpoint(tmp_path / "c.pt"))
    with pytest.raises(ValueError, match="opset must be 18"):
        export_onnx(net, tmp_path / "a.onnx", opset=17)
    with pytest.raises(ValueError, match=f"0..{MAX_EDGE_CONTEXT}"):
        export_onnx(net, tmp_path / "b.onnx", context=MAX_EDGE_CONTEXT + 1)
    assert not list(tmp_path.glob("*.onnx"))


def test_export_help_states_the_edge_context_bound(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        export_main(["--help"])
    assert f"at most {MAX_EDGE_CONTEXT}" in " ".join(capsys.readouterr().out.split())


# -- engine.quantize ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["random.onnx", "text.onnx", "drnn.pt"])
def test_quantize_a_file_that_is_not_onnx_is_one_line(models: dict[str, Path], tmp_path: Path, name: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    bad = {"random.onnx": models["random"], "drnn.pt": models["pt"]}.get(name, tmp_path / name)
    if name == "text.onnx":
        bad.write_text("this is not a model\n")
    out = tmp_path / "q.onnx"
    out.write_bytes(b"OLD")
    assert quantize_main(["--onnx", str(bad), "--out", str(out), "--size", "32", "--frames", "4"]) == 1
    one_line(capsys.readouterr().err, str(bad), "not an ONNX model")
    assert out.read_bytes() == b"OLD"


@pytest.mark.parametrize("size", ["0", "4", "15", "5000"])
def test_quantize_size_out_of_range_exits_2(models: dict[str, Path], tmp_path: Path, size: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        quantize_main(["--onnx", str(models["onnx"]), "--out", str(tmp_path / "q.onnx"), "--size", size])
    assert exit_info.value.code == 2
    one_line(capsys.readouterr().err, "--size", size)


@pytest.mark.parametrize("out, what", [("file.png/x.onnx", "is a file, not a folder"), ("folder", "is a folder")])
def test_quantize_unusable_out_is_refused(models: dict[str, Path], tmp_path: Path, out: str, what: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file.png").write_bytes(b"KEEP")
    (tmp_path / "folder").mkdir()
    assert quantize_main(["--onnx", str(models["onnx"]), "--out", str(tmp_path / out), "--size", "32",
                          "--frames", "4"]) == 1
    one_line(capsys.readouterr().err, "--out", what)


def test_quantize_writes_a_file_that_follows_the_umask(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "int8.onnx"
    with umask(0o022):
        assert quantize_main(["--onnx", str(models["onnx"]), "--out", str(out), "--size", "32", "--frames", "4"]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["int8.onnx"]


# -- --threads: one meaning for onnxruntime and torch -----------------------------------------------

@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
@pytest.mark.parametrize("threads", ["-1", "-8", "two"])
def test_despeckle_bad_threads_exit_2_for_every_backend(models: dict[str, Path], tmp_path: Path, backend: str,
                                                        threads: str, capsys: pytest.CaptureFixture[str]) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), random_frames(1, (32, 32))[0])
    weights = models["onnx" if backend == "onnxruntime" else "pt"]
    with pytest.raises(SystemExit) as exit_info:
        despeckle_main([str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--backend", backend,
                        "--weights", str(weights), "--threads", threads])
    assert exit_info.value.code == 2
    one_line(capsys.readouterr().err, "--threads", threads)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_despeckle_threads_0_is_the_backend_default(models: dict[str, Path], tmp_path: Path, backend: str) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), random_frames(1, (32, 32))[0])
    weights = models["onnx" if backend == "onnxruntime" else "pt"]
    assert despeckle_main([str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--backend", backend,
                           "--weights", str(weights), "--threads", "0"]) == 0
    assert (tmp_path / "out" / "a.png").is_file()


def test_backends_refuse_negative_threads(models: dict[str, Path]) -> None:
    assert check_threads(None) is None and check_threads(0) is None and check_threads(3) == 3
    with pytest.raises(ValueError, match="threads must be"):
        session_options(-1)
    with pytest.raises(ValueError, match="threads must be"):
        TorchDespeckler(models["pt"], device="cpu", threads=-1)


# -- engine.despeckle: failed files leave existing outputs alone; truncated videos fail -------------

def _write_avi(path: Path, count: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 32))
    for frame in random_frames(count, (32, 32), seed=5):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()


def test_despeckle_failed_picture_keeps_the_old_output(models: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    cv2.imwrite(str(src / "a.png"), random_frames(1, (32, 32))[0])
    good = cv2.imencode(".png", random_frames(1, (32, 32), seed=1)[0])[1].tobytes()
    (src / "b.png").write_bytes(good[: len(good) // 2])  # truncated: unreadable
    (out / "b.png").write_bytes(b"KEEP")
    with umask(0o022):
        status = despeckle_main([str(src), "-o", str(out), "--backend", "onnxruntime", "--weights", str(models["onnx"]),
                                 "--threads", "1"])
    assert status == 1 and "b.png" in capsys.readouterr().err
    assert (out / "b.png").read_bytes() == b"KEEP"
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]  # no temporary file left
    assert stat.S_IMODE((out / "a.png").stat().st_mode) == 0o644


class _FailsAtFrame(Despeckler):
    """Returns frames unchanged until frame ``n``, which it refuses: a failure in the middle of a video."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n, self.seen = n, 0

    def _infer(self, frame: np.ndarray) -> np.ndarray:
        self.seen += 1
        if self.seen == self.n:
            raise FrameError("simulated failure")
        return frame.copy()


def test_despeckle_failure_mid_video_keeps_the_old_output(tmp_path: Path) -> None:
    _write_avi(tmp_path / "clip.avi", 12)
    out = tmp_path / "out"
    out.mkdir()
    (out / "clip.avi").write_bytes(b"OLD VIDEO")
    report = despeckle_files(_FailsAtFrame(6), [tmp_path / "clip.avi"], out)
    assert not report.ok and "simulated failure" in report.failed[0]
    assert (out / "clip.avi").read_bytes() == b"OLD VIDEO" and [p.name for p in out.iterdir()] == ["clip.avi"]
    assert despeckle_files(_FailsAtFrame(99), [tmp_path / "clip.avi"], out).ok  # the same video, whole
    assert cv2.VideoCapture(str(out / "clip.avi")).get(cv2.CAP_PROP_FRAME_COUNT) == 12


def test_despeckle_truncated_video_fails_naming_file_and_counts(models: dict[str, Path], tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    whole = tmp_path / "whole.avi"
    _write_avi(whole, 20)
    src = tmp_path / "in"
    src.mkdir()
    data = whole.read_bytes()
    (src / "cut.avi").write_bytes(data[: len(data) // 2])
    capture = cv2.VideoCapture(str(src / "cut.avi"))
    declared, readable = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0
    while capture.read()[0]:
        readable += 1
    capture.release()
    assert declared == 20 and 0 < readable < 18  # the header still says 20: a real truncated file
    out = tmp_path / "out"
    status = despeckle_main([str(src), str(whole), "-o", str(out), "--backend", "onnxruntime",
                             "--weights", str(models["onnx"]), "--threads", "1"])
    captured = capsys.readouterr()
    assert status == 1 and "1 file(s), 20 frame(s)" in captured.out and "1 failed" in captured.out
    failed = [line for line in captured.err.splitlines() if line.startswith("  failed:")]
    assert len(failed) == 1 and "cut.avi" in failed[0] and f"{readable} of the 20 frames" in failed[0]
    assert sorted(p.name for p in out.iterdir()) == ["whole.avi"]


@pytest.mark.parametrize("declared, read, missing", [
    (20, 20, 0), (20, 19, 0), (20, 18, 1), (20, 9, 10), (100, 98, 0), (100, 97, 1), (0, 5, 0), (10, 12, 0)])
def test_frames_missing_allows_containers_that_estimate_their_count(declared: int, read: int, missing: int) -> None:
    assert frames_missing(declared, read) == missing


# -- engine.build ---------------------------------------------------------------------------------

def test_build_names_a_missing_onnx_before_looking_for_tensorrt(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert build_main(["--onnx", str(tmp_path / "nope.onnx")]) == 1
    assert "TensorRT" not in one_line(capsys.readouterr().err, "--onnx", "nope.onnx", "no such file")
    assert build_main(["--onnx", str(tmp_path)]) == 1
    one_line(capsys.readouterr().err, "--onnx", "is a folder")
    (tmp_path / "random.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    assert build_main(["--onnx", str(tmp_path / "random.onnx")]) == 1
    assert "TensorRT" not in one_line(capsys.readouterr().err, "--onnx", "random.onnx", "not an ONNX model")


@pytest.mark.parametrize("mib", ["0", "-1", "lots"])
def test_build_workspace_must_be_positive(models: dict[str, Path], mib: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_main(["--onnx", str(models["onnx"]), "--workspace-mib", mib])
    assert exit_info.value.code == 2
    one_line(capsys.readouterr().err, "--workspace-mib", mib)
