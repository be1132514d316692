"""Pixel spacing (engine.pixels): the model run on square pixels of its training range, through the
registry, the offline command line, DICOM files and the live chain (real ZeroMQ sockets on
loopback, the shipped fast ONNX model)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from dicom_testutil import us_dataset
from test_stream_chain import free_endpoint, recorded_to_the_end

from engine.base import FrameError
from engine.despeckle import main as despeckle_main
from engine.offline import despeckle_files
from engine.pixels import (
    ResampledDespeckler,
    at_working_pixels,
    pixel_mode_arg,
    resamples,
    resize,
    spacing_arg,
    with_spacing,
    working_shape,
)
from engine.registry import create_despeckler
from engine.speckle import SpeckleScaledDespeckler, at_speckle_scale
from engine.strength import BlendedDespeckler, blend
from stream.config import ChainConfig, OutputConfig, SourceConfig
from stream.run import main as run_main
from stream.stages import DespeckleStage
from stream.stats import Stats
from training.sim import simulate_pair

REPO = Path(__file__).resolve().parent.parent
FAST = REPO / "weights" / "drnn_fast.onnx"


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    x, _, _ = simulate_pair(3, (64, 64))
    return cv2.resize(x, (64, 128), interpolation=cv2.INTER_LINEAR)  # rows sampled twice as finely


def test_spacing_flags_take_one_or_two_positive_numbers_and_the_three_modes() -> None:
    assert spacing_arg("0.2") == (0.2, 0.2) and spacing_arg("0.1,0.3") == (0.1, 0.3)
    assert [pixel_mode_arg(w) for w in ("auto", "spacing", "off")] == ["auto", "spacing", "off"]
    assert pixel_mode_arg("0.4") == (0.4, 0.4)
    for bad in ("0", "-1,0.2", "wide", "0.1,0.2,0.3", "nan", "inf,0.2", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="got"):
            pixel_mode_arg(bad)
    assert spacing_arg("10") == (10.0, 10.0)
    for micrometres in ("100", "0.1,150", "1e9"):  # a spacing in um typed as mm: refused at start-up
        for parse in (spacing_arg, pixel_mode_arg):
            with pytest.raises(argparse.ArgumentTypeError, match=r"in mm, at most 10: got .*micrometres"):
                parse(micrometres)


def test_a_spacing_that_would_blow_a_frame_beyond_the_profile_is_refused_before_resizing(fast, frame) -> None:
    """A DICOM file's spacing in the wrong units (no flag checks it) costs no giant frame: the frame
    is refused, naming its size, the working size and the profile, before it is resized."""
    with create_despeckler("onnxruntime", FAST, spacing_mm=(9.0, 9.0), device="cpu") as coarse:
        with pytest.raises(FrameError, match=r"^a 256x240 frame of 9 x 9 mm pixels would be resized to 4608x4320"):
            coarse.infer(np.zeros((256, 240), np.uint8))
        with pytest.raises(FrameError, match="outside the engine's profile 16x16 .. 4096x4096"):
            coarse.submit(np.zeros((256, 256), np.uint8))
        assert coarse.infer(np.zeros((32, 40), np.uint8)).shape == (32, 40)  # 576x720 fits: run


def test_working_shape_makes_pixels_square_inside_the_trained_range() -> None:
    assert working_shape((256, 256), (0.25, 0.25)) == (256, 256)  # square, in range: as it is
    assert working_shape((200, 100), (0.15, 0.5)) == (60, 100)  # rows to the coarser 0.5 mm
    assert working_shape((512, 256), (0.125, 0.25)) == (256, 256)
    assert working_shape((240, 240), (0.1, 0.1)) == (160, 160)  # finer than 0.15 mm: down to 0.15
    assert working_shape((100, 100), (0.65, 0.65)) == (130, 130)  # coarser than 0.5 mm: up to 0.5
    assert working_shape((20, 400), (0.05, 0.3)) == (16, 400)  # never below the engine's 16 pixels
    with pytest.raises(ValueError, match="pixel spacing"):
        working_shape((64, 64), (0.0, 0.2))
    assert not resamples((0.25, 0.25)) and not resamples((0.5, 0.5)) and not resamples((0.15, 0.15))
    assert resamples((0.125, 0.25)) and resamples((0.1, 0.1)) and resamples((0.65, 0.65))


def test_resize_there_and_back_keeps_a_smooth_frame() -> None:
    yy, xx = np.mgrid[0:128, 0:96]
    smooth = (128 + 100 * np.sin(yy / 9.0) * np.cos(xx / 7.0)).astype(np.uint8)
    back = resize(resize(smooth, (64, 96)), smooth.shape)
    assert back.dtype == np.uint8 and back.shape == smooth.shape
    assert np.abs(back.astype(int) - smooth.astype(int)).mean() < 2.0
    assert resize(smooth, smooth.shape) is smooth


def test_a_backend_given_a_spacing_runs_the_model_at_the_working_pixel(fast, frame: np.ndarray) -> None:
    expected = resize(fast.infer(resize(frame, (64, 64))), frame.shape)
    assert not np.array_equal(expected, fast.infer(frame))
    with create_despeckler("onnxruntime", FAST, spacing_mm=(0.125, 0.25), device="cpu") as spaced, \
            create_despeckler("onnxruntime", FAST, spacing_mm=(0.125, 0.25), strength=0.5, device="cpu") as half, \
            create_despeckler("onnxruntime", FAST, spacing_mm=(0.25, 0.25), device="cpu") as square:
        assert isinstance(spaced, ResampledDespeckler) and "pixels 0.125 x 0.25 mm" in spaced.describe()
        assert np.array_equal(spaced.infer(frame), expected)
        assert all(np.array_equal(out, expected) for out in spaced.map([frame] * 3))  # submit path
        assert isinstance(half, BlendedDespeckler) and isinstance(half.inner, ResampledDespeckler)
        assert np.array_equal(half.infer(frame), blend(frame, expected, 0.5))  # the input blended at its own size
        assert np.array_equal(square.infer(frame), fast.infer(frame))  # square, in range: passed through
    with pytest.raises(RuntimeError, match="closed"):
        spaced.inner.infer(frame)  # closing the view closed the backend
    with pytest.raises(ValueError, match="pixel spacing"):
        create_despeckler("identity", spacing_mm=(-0.1, 0.2))


def test_with_spacing_keeps_the_blend_outermost_and_leaves_identity_alone(fast, frame: np.ndarray) -> None:
    view = with_spacing(BlendedDespeckler(fast, 0.25), (0.125, 0.25))
    assert isinstance(view, BlendedDespeckler) and isinstance(view.inner, ResampledDespeckler)
    assert view.inner.inner is fast and view.strength == 0.25
    assert with_spacing(fast, None) is fast
    with create_despeckler("identity") as identity:
        assert with_spacing(identity, (0.1, 0.3)) is identity
    assert np.array_equal(at_working_pixels(frame, fast.infer, None), fast.infer(frame))


def _dicom(path: Path, frames: np.ndarray, spacing: list[float]) -> Path:
    ds = us_dataset()
    ds.set_pixel_data(frames, "MONOCHROME2", 8)
    ds.PixelSpacing = spacing
    ds.save_as(path, enforce_file_format=True)
    return path


def test_offline_takes_a_dicom_files_own_spacing_or_the_one_given(fast, frame: np.ndarray, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    import pydicom

    src = _dicom(tmp_path / "cine.dcm", np.stack([frame, frame[::-1]]), [0.125, 0.25])
    png = tmp_path / "scan.png"
    cv2.imwrite(str(png), frame)
    spaced = [at_working_pixels(f, fast.infer, (0.125, 0.25)) for f in (frame, frame[::-1])]
    plain = [fast.infer(f) for f in (frame, frame[::-1])]
    cases = {"auto": (spaced, at_speckle_scale(frame, fast.infer)),  # a picture carries no spacing: its speckle
             "spacing": (spaced, plain[0]), "off": (plain, plain[0]), (0.125, 0.25): (spaced, spaced[0])}
    for mode, (dicom_expected, png_expected) in cases.items():
        out = tmp_path / f"out_{mode}"
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="engine.offline"):
            report = despeckle_files(fast, [src, png], out, pixel_mm=mode)
        assert report.ok and report.frames == 3
        told = [r.getMessage() for r in caplog.records if "square pixels" in r.getMessage()]
        resampled = {"auto": [src], "spacing": [src], "off": [], (0.125, 0.25): [src, png]}[mode]  # a line per file
        assert told == [f"{f}: pixels of 0.125 x 0.25 mm, despeckled on square pixels of 0.25 mm and resampled back"
                        for f in resampled], mode
        written = pydicom.dcmread(out / "cine.dcm")
        assert np.array_equal(written.pixel_array, np.stack(dicom_expected)), mode
        assert [float(v) for v in written.PixelSpacing] == [0.125, 0.25]
        assert np.array_equal(cv2.imread(str(out / "scan.png"), cv2.IMREAD_UNCHANGED), png_expected), mode


def test_command_lines_refuse_a_bad_spacing_in_one_line(frame: np.ndarray, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "scan.png"
    cv2.imwrite(str(src), frame)
    assert despeckle_main([str(src), "-o", str(tmp_path / "out"), "--weights", "fast", "--pixel-mm", "0.125,0.25"]) == 0
    capsys.readouterr()
    for main, args in ((despeckle_main, [str(src), "-o", str(tmp_path / "out")]), (run_main, [])):
        with pytest.raises(SystemExit) as exc:
            main([*args, "--pixel-mm", "0.1,x"])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--pixel-mm must be auto, spacing, off, S or ROW,COL in mm" in err[0] and "'0.1,x'" in err[0]


def test_the_despeckle_stage_takes_the_frames_spacing_as_its_mode_says(fast, frame: np.ndarray, caplog) -> None:
    meta = {"spacing_mm": [0.1, 0.3]}
    stage = DespeckleStage(fast, None, None, Stats())  # type: ignore[arg-type]  # no slots: engine_for only
    with caplog.at_level(logging.INFO, logger="stream.stages"):
        view = stage.engine_for(meta)
        assert stage.engine_for(meta) is view and isinstance(view, ResampledDespeckler)
    assert view.spacing_mm == (0.1, 0.3)
    told = [r.getMessage() for r in caplog.records if "square pixels" in r.getMessage()]
    assert told == ["frames of 0.1 x 0.3 mm pixels are despeckled on square pixels of 0.3 mm and resampled back"]
    assert isinstance(stage.engine_for({"spacing_mm": None}), SpeckleScaledDespeckler)  # auto: by the speckle
    for mode in ("off", "spacing"):
        assert DespeckleStage(fast, None, None, Stats(), pixel_mm=mode).engine_for(  # type: ignore[arg-type]
            {"spacing_mm": None}) is fast
    square = stage.engine_for({"spacing_mm": [0.25, 0.25]})  # in range: frames pass through
    assert np.array_equal(square.infer(frame), fast.infer(frame))
    assert np.array_equal(view.infer(frame), at_working_pixels(frame, fast.infer, (0.1, 0.3)))
    assert DespeckleStage(fast, None, None, Stats(), pixel_mm="off").engine_for(meta) is fast  # type: ignore[arg-type]
    given = DespeckleStage(fast, None, None, Stats(), pixel_mm=(0.5, 0.5)).engine_for(meta)  # type: ignore[arg-type]
    assert given.spacing_mm == (0.5, 0.5)


def test_live_chain_despeckles_a_dicom_cine_at_its_pixel_spacing(fast, frame: np.ndarray, tmp_path: Path) -> None:
    src = _dicom(tmp_path / "cine.dcm", np.stack([frame] * 3), [0.125, 0.25])
    expected = at_working_pixels(frame, fast.infer, (0.125, 0.25))
    record = tmp_path / "out"
    cfg = ChainConfig(source=SourceConfig(spec=str(src), fps=20.0), backend="onnxruntime", weights=FAST,
                      output=OutputConfig(publish=free_endpoint(), record=record), status_s=0.2)
    assert all(np.array_equal(out, expected) for out in recorded_to_the_end(cfg))


def test_evaluate_measures_a_set_at_a_given_pixel_spacing(tmp_path: Path) -> None:
    import json

    from benchmarks.evaluate import main as evaluate_main
    from training.sim import write_dataset

    write_dataset(tmp_path / "set", count=0, size=96, seed=14, paired=True, eval_count=2)
    results = {}
    for i, (flags, name) in enumerate(((["--pixel-mm", "off"], "fast (pixels as they come)"),
                                       (["--pixel-mm", "0.125,0.25"], "fast (pixels 0.125 x 0.25 mm)"))):
        out = tmp_path / f"{i}.json"
        assert evaluate_main(["--weights", "fast", "--eval", str(tmp_path / "set" / "eval"), "--json", str(out),
                              *flags]) == 0
        written = json.loads(out.read_text())
        assert list(written) == [name]
        results[name] = written[name]
    plain, spaced = results.values()
    assert plain["x"] == spaced["x"]  # the same pairs
    assert plain["g"] != spaced["g"]  # another output


def test_dicom_spacing_reads_pixel_spacing_or_the_ultrasound_region_and_ignores_nonsense(tmp_path: Path) -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from training.data import dicom_spacing

    frames = np.zeros((2, 32, 48), dtype=np.uint8)
    assert dicom_spacing(_dicom(tmp_path / "a.dcm", frames, [0.3, 0.2])) == (0.3, 0.2)
    assert dicom_spacing(_dicom(tmp_path / "zero.dcm", frames, [0, 0])) is None
    ds = us_dataset()
    ds.set_pixel_data(frames, "MONOCHROME2", 8)
    region = Dataset()
    region.PhysicalDeltaX, region.PhysicalDeltaY = 0.02, -0.015  # cm per pixel; the sign is the direction
    ds.SequenceOfUltrasoundRegions = Sequence([region])
    ds.save_as(tmp_path / "region.dcm", enforce_file_format=True)
    assert dicom_spacing(tmp_path / "region.dcm") == pytest.approx((0.15, 0.2))
    ds = us_dataset()
    ds.set_pixel_data(frames, "MONOCHROME2", 8)
    ds.save_as(tmp_path / "none.dcm", enforce_file_format=True)
    assert dicom_spacing(tmp_path / "none.dcm") is None
