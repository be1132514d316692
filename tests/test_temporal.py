"""Temporal stability (benchmarks.temporal) on frames whose speckle is partly renewed from frame to
frame (training.sim.elevation): the frames, the figures with and without persistence, and the
command line with the shipped fast model and a real classical filter; small frames."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.temporal import change_figures, main, measure_temporal, motion_trail, needle_lag
from training.sim.elevation import advancing_needle_frames, renewing_speckle_frames
from training.sim.phantom import make_phantom


def test_renewing_speckle_frames_decorrelate_as_asked() -> None:
    still = renewing_speckle_frames((96, 96), seed=3, renewal=0.0, count=3)
    assert len(still) == 3 and all(f.shape == (96, 96) and f.dtype == np.uint8 for f in still)
    assert np.array_equal(still[0], still[2])  # nothing renewed: the same scatterers and noise draw
    lit = still[0] > 0
    corr = {e: change_figures(*renewing_speckle_frames((96, 96), seed=3, renewal=e, count=2), lit)
            for e in (0.05, 0.3, 1.0)}
    assert corr[0.05][0] > corr[0.3][0] > corr[1.0][0]  # more of the speckle renewed, less alike
    assert corr[1.0][1] > 3 * corr[0.05][1]  # all renewed: only the tissue and its interfaces are shared
    high = renewing_speckle_frames((96, 96), seed=3, probe="high", renewal=0.05, count=2)
    assert not np.array_equal(high[0], renewing_speckle_frames((96, 96), seed=4, probe="high", count=1)[0])
    with pytest.raises(ValueError, match="renewal"):
        renewing_speckle_frames((32, 32), renewal=1.5)


def test_measure_temporal_figures_and_persistence() -> None:
    def identity(f: np.ndarray) -> np.ndarray:
        return f

    def median(f: np.ndarray) -> np.ndarray:
        return cv2.medianBlur(f, 5)

    runs = {"identity": identity, "median": median}
    result = measure_temporal(runs, phantoms=2, size=(64, 64), renewal=(0.02, 0.3), frames=4, progress=False)
    assert result["identity"]["ratio"] == pytest.approx([1.0, 1.0])
    assert result["identity"]["corr"] == pytest.approx(result["x"]["corr"])
    assert all(r < 1.0 for r in result["median"]["ratio"])  # a smoother changes less than its input
    assert result["x"]["corr"][0] > result["x"]["corr"][1]
    averaged = measure_temporal(runs, phantoms=2, size=(64, 64), renewal=(0.02, 0.3), frames=6, persistence=0.5,
                                progress=False)
    assert all(r < 0.8 for r in averaged["identity"]["ratio"])  # frames averaged: less change than the input's


def test_motion_trail_of_persistence() -> None:
    def identity(f: np.ndarray) -> np.ndarray:
        return f

    none = motion_trail({"identity": identity}, 0.0, speeds=(1.0,), frames=6, size=(48, 64))
    assert none["identity"]["trail"] == [0.0] and none["identity"]["step"][0] > 0
    half = motion_trail({"identity": identity}, 0.5, speeds=(1.0, 4.0), frames=6, size=(48, 64))["identity"]
    assert 0 < half["trail"][0] < half["trail"][1]  # a faster probe leaves a longer trail
    assert half["step"][0] < half["step"][1]


def test_advancing_needle_frames() -> None:
    """The needle grows by the asked columns a frame, reaches its full length in the last frame, and
    where it has arrived the image brightens; the rest of the scene only renews its speckle."""
    series = advancing_needle_frames((96, 128), seed=11, speed_px=3.0, count=5)
    assert len(series.frames) == len(series.needles) == len(series.tips) == 5
    columns = [int(n.any(axis=0).sum()) for n in series.needles]
    assert all(2 <= b - a <= 4 for a, b in zip(columns, columns[1:], strict=False)), columns  # ~3 columns a frame
    for needle, tip in zip(series.needles, series.tips, strict=True):
        assert tip.any() and not (tip & ~needle).any()  # the tip is the needle's own end
    whole = make_phantom(np.random.default_rng(11), (96, 128), 0.25, scatterers=False, needle=True).truth()
    last = series.needles[-1]  # full length in the last frame (the columns its centre line crosses)
    assert not (last & ~whole["needle"]).any() and (whole["needle"] & ~last).sum() <= 0.05 * last.sum()
    assert np.array_equal(series.tips[-1], whole["needle_tip"] & last)  # its tip as the simulator's truth marks it
    ends = [np.nonzero(t)[1].mean() for t in series.tips]
    assert all(abs(b - a) >= 2 for a, b in zip(ends, ends[1:], strict=False)), ends  # the tip advances
    first, last = series.frames[0].astype(float), series.frames[-1].astype(float)
    arrived = series.needles[-1] & ~series.needles[0]
    assert last[arrived].mean() > first[arrived].mean() + 10  # the needle brightens where it has reached
    assert np.array_equal(series.frames[-1], advancing_needle_frames((96, 128), seed=11, speed_px=3.0, count=5).frames[-1])
    with pytest.raises(ValueError, match="speed"):
        advancing_needle_frames((64, 64), speed_px=0.0)


def test_needle_lag_of_plain_and_motion_adaptive_persistence() -> None:
    """Plain persistence shows a fast needle's new tip late; the motion-adaptive one nearly at once,
    with no persistence exactly at once."""
    def identity(f: np.ndarray) -> np.ndarray:
        return f

    runs = {"identity": identity}
    none = needle_lag(runs, 0.0, speeds=(4.0,), phantoms=2, frames=6, size=(96, 128))["identity"]
    plain = needle_lag(runs, 0.75, speeds=(4.0,), phantoms=2, frames=6, size=(96, 128))["identity"]
    adaptive = needle_lag(runs, 0.75, speeds=(4.0,), phantoms=2, frames=6, size=(96, 128), motion=16.0)["identity"]
    assert none == [1.0]
    assert plain[0] < 0.9 and adaptive[0] > plain[0] + 0.05, (plain, adaptive)


def test_command_line_with_the_fast_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t.json"
    assert main(["--weights", "fast", "--phantoms", "1", "--frames", "2", "--size", "64x64", "--json", str(out),
                 "--figure", str(tmp_path / "t.png"), "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "| fast |" in table and "| Median |" in table and "| y (high probe) |" in table
    result = json.loads(out.read_text())
    assert set(result) >= {"x", "y", "fast", "Median", "renewal"} and len(result["fast"]["ratio"]) == 3
    assert cv2.imread(str(tmp_path / "t.png")) is not None
    assert main(["--weights", "fast", "--phantoms", "1", "--frames", "2", "--size", "64x64", "--persistence", "0.5",
                 "--speeds", "2", "--baselines", "--no-progress"]) == 0
    assert "| persistence 0.5 | 2 px/frame: trail / step (grey levels) | needle at 2 px/frame: tip contrast shown |" \
        in capsys.readouterr().out
    assert main(["--weights", "--phantoms", "1", "--frames", "2", "--size", "64x64", "--persistence", "0.5",
                 "--persistence-motion", "16", "--speeds", "2", "--no-progress", "--json", str(out)]) == 0
    assert "| persistence 0.5, motion 16 |" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["motion"] == 16 and set(result["needle"]) == {"speeds_px", "Median"}


def test_command_line_runs_the_model_at_the_pixels_given(tmp_path: Path) -> None:
    """``--pixel-mm``: frames told to be of 0.1 mm run at the working pixel (other figures), the
    input's the same; ``off`` names the run so."""
    results = {}
    for mode in ("0.1", "off"):
        out = tmp_path / f"{mode}.json"
        assert main(["--weights", "fast", "--phantoms", "1", "--frames", "2", "--size", "96x96", "--baselines",
                     "--pixel-mm", mode, "--json", str(out), "--no-progress"]) == 0
        results[mode] = json.loads(out.read_text())
    given, plain = results["0.1"], results["off"]
    assert given["x"] == plain["x"] and given["fast (pixels 0.1 x 0.1 mm)"] != plain["fast (pixels as they come)"]


@pytest.mark.parametrize(("argv", "culprit"), [(["--baselines", "nosuch"], "--baselines"),
                                               (["--frames", "1"], "--frames"),
                                               (["--persistence", "1"], "--persistence"),
                                               (["--persistence-motion", "12"], "--persistence-motion"),
                                               (["--pixel-mm", "fine"], "--pixel-mm")])
def test_bad_flags(argv: list[str], culprit: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and culprit in err


def test_weights_that_cannot_be_loaded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--weights", str(tmp_path / "missing.onnx"), "--phantoms", "1", "--size", "32x32"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "missing.onnx") in err
