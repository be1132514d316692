"""Offline despeckling of pictures, folders, DICOM files and videos (python -m engine.despeckle)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from dicom_testutil import us_dataset
from pydicom.uid import generate_uid

torch = pytest.importorskip("torch", reason="making test weights needs torch (the [train] extra)")
from engine_testutil import make_checkpoint, random_frames  # noqa: E402

from engine.despeckle import main as despeckle_main  # noqa: E402
from engine.offline import plan_outputs  # noqa: E402
from engine.onnx_export import export_checkpoint  # noqa: E402
from engine.registry import create_despeckler  # noqa: E402
from training.data import read_frames  # noqa: E402


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("offline")
    return export_checkpoint(make_checkpoint(root / "drnn.pt", seed=2), root / "drnn.onnx")


@pytest.fixture(scope="module")
def despeckler(onnx_model: Path):
    with create_despeckler("onnxruntime", onnx_model, threads=1) as d:
        yield d


def _write_dicom(path: Path, frames: np.ndarray) -> None:
    ds = us_dataset()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.SeriesDescription = "Phantom^Test", "liver sweep"
    ds.set_pixel_data(frames.astype(np.uint16) * 256, photometric_interpretation="MONOCHROME1", bits_stored=16)
    ds.WindowCenter, ds.WindowWidth = 30000, 60000
    ds.save_as(path, enforce_file_format=True)


def test_pictures_folders_dicom_and_video(tmp_path: Path, onnx_model: Path, despeckler,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in"
    (src / "scans").mkdir(parents=True)
    frames = random_frames(5, (40, 48), seed=11)
    cv2.imwrite(str(src / "x_012.png"), frames[0])
    cv2.imwrite(str(src / "scans" / "a.png"), frames[1])
    cv2.imwrite(str(src / "scans" / "b.bmp"), frames[2])
    (src / "scans" / "broken.png").write_bytes(b"not a png")
    cv2.imwrite(str(src / "tiny.png"), np.zeros((4, 4), np.uint8))  # below the backend's profile
    _write_dicom(src / "cine.dcm", 255 - np.stack(frames[:3]))  # 16-bit MONOCHROME1, read as 8-bit grey
    writer = cv2.VideoWriter(str(src / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (48, 40))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    out = tmp_path / "out"

    inputs = ["x_012.png", "scans", "cine.dcm", "clip.avi", "tiny.png", "missing.png"]
    status = despeckle_main([*(str(src / p) for p in inputs), "--output", str(out),
                             "--backend", "onnxruntime", "--weights", str(onnx_model), "--threads", "1"])
    captured = capsys.readouterr()
    assert status == 1  # three bad inputs: reported, and the rest still written
    assert "5 file(s), 11 frame(s)" in captured.out and "3 failed" in captured.out
    for name in ("broken.png", "tiny.png", "missing.png"):
        assert name in captured.err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "a.png", "b.bmp", "cine.dcm", "clip.avi", "x_012.png"]

    np.testing.assert_array_equal(cv2.imread(str(out / "x_012.png"), cv2.IMREAD_UNCHANGED), despeckler.infer(frames[0]))
    np.testing.assert_array_equal(cv2.imread(str(out / "b.bmp"), cv2.IMREAD_UNCHANGED), despeckler.infer(frames[2]))

    ds = pydicom.dcmread(out / "cine.dcm")
    assert int(ds.NumberOfFrames) == 3 and ds.SeriesDescription == "liver sweep despeckled"
    assert ds.PatientName == "Phantom^Test" and "DERIVED" in ds.ImageType
    assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.BitsStored == 8 and "WindowCenter" not in ds
    assert ds.SOPInstanceUID != pydicom.dcmread(src / "cine.dcm").SOPInstanceUID
    np.testing.assert_array_equal(ds.pixel_array, np.stack(despeckler.map(read_frames(src / "cine.dcm"))))

    source_video = list(read_frames(src / "clip.avi"))
    written_video = list(read_frames(out / "clip.avi"))
    assert len(written_video) == len(frames) and written_video[0].shape == (40, 48)
    expected = despeckler.map(source_video)
    for got, want in zip(written_video, expected, strict=True):  # Motion-JPEG is lossy: compare loosely
        assert np.mean(np.abs(got.astype(float) - want)) < 6.0
    assert cv2.VideoCapture(str(out / "clip.avi")).get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)


def test_a_one_frame_multi_frame_dicom_stays_multi_frame(tmp_path: Path, onnx_model: Path, despeckler) -> None:
    """The Multi-frame Image Storage IOD requires NumberOfFrames, also for one frame: the output keeps it."""
    frame = random_frames(1, (40, 48), seed=3)[0]
    _write_dicom(tmp_path / "one.dcm", frame[np.newaxis])
    assert int(pydicom.dcmread(tmp_path / "one.dcm").NumberOfFrames) == 1
    assert despeckle_main([str(tmp_path / "one.dcm"), "--output", str(tmp_path / "out"), "--backend", "onnxruntime",
                           "--weights", str(onnx_model), "--threads", "1"]) == 0
    ds = pydicom.dcmread(tmp_path / "out" / "one.dcm")
    assert int(ds.NumberOfFrames) == 1 and ds.SOPClassUID == pydicom.dcmread(tmp_path / "one.dcm").SOPClassUID
    np.testing.assert_array_equal(ds.pixel_array, despeckler.infer(next(read_frames(tmp_path / "one.dcm"))))


def test_refuses_to_overwrite_its_input(tmp_path: Path, onnx_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = random_frames(1, (32, 32))[0]
    cv2.imwrite(str(tmp_path / "x.png"), frame)
    status = despeckle_main([str(tmp_path / "x.png"), "--output", str(tmp_path), "--backend", "onnxruntime",
                             "--weights", str(onnx_model)])
    assert status == 1 and "refusing to overwrite the input" in capsys.readouterr().err
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "x.png"), cv2.IMREAD_UNCHANGED), frame)


def test_two_inputs_never_write_one_output(tmp_path: Path, onnx_model: Path, despeckler,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    first, second = random_frames(2, (32, 32), seed=5)
    for folder, frame in (("a", first), ("b", second)):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "x.png"), frame)
    out = tmp_path / "out"
    status = despeckle_main([str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png"), "--output", str(out),
                             "--backend", "onnxruntime", "--weights", str(onnx_model)])
    captured = capsys.readouterr()
    assert status == 1 and "1 file(s), 1 frame(s)" in captured.out and "1 failed" in captured.out
    err = [line for line in captured.err.splitlines() if "already" in line]
    assert len(err) == 1 and str(tmp_path / "b" / "x.png") in err[0] and str(tmp_path / "a" / "x.png") in err[0]
    np.testing.assert_array_equal(cv2.imread(str(out / "x.png"), cv2.IMREAD_UNCHANGED), despeckler.infer(first))
    mkv, avi = tmp_path / "a" / "clip.mkv", tmp_path / "b" / "clip.avi"  # the planned names are the final ones
    assert plan_outputs([mkv, avi], out) == [(mkv, out / "clip.avi"), (avi, out / "clip.avi")]


def test_missing_weights_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = despeckle_main([str(tmp_path), "--output", str(tmp_path / "o"), "--backend", "onnxruntime",
                             "--weights", str(tmp_path / "none.onnx")])
    assert status == 2 and "none.onnx" in capsys.readouterr().err


def test_an_output_folder_inside_an_input_folder_is_not_walked(tmp_path: Path, onnx_model: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sub").mkdir()
    for name, frame in zip(("a.png", "sub/b.png"), random_frames(2, (32, 32), seed=7), strict=True):
        cv2.imwrite(str(tmp_path / name), frame)
    out = tmp_path / "out"
    args = [str(tmp_path), "-r", "--output", str(out), "--backend", "onnxruntime", "--weights", str(onnx_model)]
    for _ in range(2):  # the second run must not despeckle the first one's outputs
        assert despeckle_main(args) == 0
        assert "2 file(s), 2 frame(s)" in capsys.readouterr().out
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["a.png", "sub/b.png"]


def test_missing_paths_and_unknown_files_say_what_is_wrong(tmp_path: Path, onnx_model: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    (tmp_path / "x.yaml").write_text("a: 1\n")
    _write_dicom(tmp_path / "study", random_frames(1, (32, 32), seed=3)[0][None])  # DICOM by its header
    missing, out = tmp_path / "no" / "scans", tmp_path / "out"
    status = despeckle_main([str(missing), str(tmp_path / "x.npz"), str(tmp_path / "x.yaml"), str(tmp_path / "study"),
                             "--output", str(out), "--backend", "onnxruntime", "--weights", str(onnx_model)])
    captured = capsys.readouterr()
    assert status == 1 and "1 file(s), 1 frame(s)" in captured.out and "3 failed" in captured.out
    assert f"failed: {missing}: no such file or folder\n" in captured.err
    for name in ("x.npz", "x.yaml"):
        assert f"failed: {tmp_path / name}: not a picture, video or DICOM file (this reads pictures .bmp" in captured.err
    assert "force=True" not in captured.err and "[Errno" not in captured.err
    assert pydicom.dcmread(out / "study").pixel_array.shape == (32, 32)


def test_output_is_checked_before_any_work(tmp_path: Path, onnx_model: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    cv2.imwrite(str(tmp_path / "x.png"), random_frames(1, (32, 32))[0])
    (tmp_path / "taken").write_text("a file")
    model = ["--backend", "onnxruntime", "--weights", str(onnx_model)]
    for output in (tmp_path / "taken", tmp_path / "taken" / "out"):
        with pytest.raises(SystemExit) as exit_:
            despeckle_main([str(tmp_path / "x.png"), str(tmp_path / "x.png"), "--output", str(output), *model])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1
        assert err.startswith(f"python -m engine.despeckle: error: --output {output}: ") and "is a file" in err

    folder = tmp_path / "result.png"  # a folder named like a picture: made, and said to be a folder
    assert despeckle_main([str(tmp_path / "x.png"), "--output", str(folder), *model]) == 0
    assert f"--output {folder} is a folder" in capsys.readouterr().err and (folder / "x.png").is_file()


def test_the_bar_counts_frames_and_no_progress_leaves_it_out(tmp_path: Path, onnx_model: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The bar counts frames, a video's from its header ahead (a picture and 3 video frames: 4)."""
    frames = random_frames(4, (32, 32))
    cv2.imwrite(str(tmp_path / "a.png"), frames[0])
    writer = cv2.VideoWriter(str(tmp_path / "b.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 32))
    for frame in frames[1:]:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    for flags, bar in (([], True), (["--no-progress"], False)):
        assert despeckle_main([str(tmp_path / "a.png"), str(tmp_path / "b.avi"), "--output", str(tmp_path / f"out{bar}"),
                               "--backend", "onnxruntime", "--weights", str(onnx_model), *flags]) == 0
        err = capsys.readouterr().err
        assert ("4/4 [" in err and "frame/s" in err and "file 2/2" in err) is bar
