"""Temporal stability (benchmarks.temporal) on frames whose speckle is partly renewed
(training.sim.elevation): the frames, the figures, and the command line with the shipped fast
model and a real classical filter; small frames."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.temporal import change_figures, main, measure_temporal
from training.sim.elevation import renewed_speckle_frames


def test_renewed_speckle_frames_decorrelate_as_asked() -> None:
    frames = renewed_speckle_frames((96, 96), seed=3, decorrelation=(0.0, 0.05, 0.3, 1.0))
    assert len(frames) == 5 and all(f.shape == (96, 96) and f.dtype == np.uint8 for f in frames)
    lit = frames[0] > 0
    figures = [change_figures(frames[0], f, lit) for f in frames[1:]]
    corr, change = [c for c, _ in figures], [d for _, d in figures]
    assert corr[0] == pytest.approx(1.0) and change[0] == 0.0  # e = 0: the same scatterers and noise draw
    assert corr[0] > corr[1] > corr[2] > corr[3]  # more of the speckle renewed, less alike
    assert change[3] > 3 * change[1]  # fully renewed: only the tissue and its interfaces are shared
    again = renewed_speckle_frames((96, 96), seed=3, probe="high", decorrelation=(0.05,))
    other = renewed_speckle_frames((96, 96), seed=4, probe="high", decorrelation=(0.05,))
    assert not np.array_equal(again[0], other[0])
    with pytest.raises(ValueError, match="decorrelation"):
        renewed_speckle_frames((32, 32), decorrelation=(1.5,))


def test_measure_temporal_figures() -> None:
    def identity(f: np.ndarray) -> np.ndarray:
        return f

    def median(f: np.ndarray) -> np.ndarray:
        return cv2.medianBlur(f, 5)

    result = measure_temporal({"identity": identity, "median": median}, phantoms=2, size=(64, 64),
                              decorrelation=(0.02, 0.3), progress=False)
    assert result["identity"]["ratio"] == pytest.approx([1.0, 1.0])
    assert result["identity"]["corr"] == pytest.approx(result["x"]["corr"])
    assert all(r < 1.0 for r in result["median"]["ratio"])  # a smoother changes less than its input
    assert result["x"]["corr"][0] > result["x"]["corr"][1]


def test_command_line_with_the_fast_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t.json"
    assert main(["--weights", "fast", "--phantoms", "1", "--size", "64x64", "--json", str(out),
                 "--figure", str(tmp_path / "t.png"), "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "| fast |" in table and "| Median |" in table and "| y (high probe) |" in table
    result = json.loads(out.read_text())
    assert set(result) >= {"x", "y", "fast", "Median", "decorrelation"} and len(result["fast"]["ratio"]) == 3
    assert cv2.imread(str(tmp_path / "t.png")) is not None


def test_command_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--baselines", "nosuch"])
    assert exc.value.code == 2 and "--baselines" in capsys.readouterr().err
    assert main(["--weights", str(tmp_path / "missing.onnx"), "--phantoms", "1", "--size", "32x32"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "missing.onnx") in err
