"""benchmarks.edges: the frame-edge step, its deviation from the input's, and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.edges import check_frames, edge_deviation, frame_edge_steps, main

REPO = Path(__file__).resolve().parent.parent


def test_steps_of_a_bright_left_seam() -> None:
    frames = np.full((3, 40, 40), 100, np.uint8)
    frames[:, :, :2] = 110
    steps = frame_edge_steps(frames)
    assert steps["left"] == pytest.approx(10.0)
    assert steps["top"] == pytest.approx(0.0) and steps["bottom"] == pytest.approx(0.0) and steps["right"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="at least 24 pixels a side"):
        frame_edge_steps(frames[:, :20])


def test_deviation_is_the_despecklers_step_minus_the_inputs() -> None:
    frames = np.random.default_rng(0).integers(0, 200, (4, 48, 64), dtype=np.uint8)

    def darker_right_seam(x: np.ndarray) -> np.ndarray:
        out = x.copy()
        out[:, -2:] -= np.minimum(out[:, -2:], 30)
        return out

    assert all(v == pytest.approx(0.0) for v in edge_deviation(lambda x: x, frames).values())
    dev = edge_deviation(darker_right_seam, frames)
    assert -30.5 < dev["right"] < -20 and abs(dev["left"]) < 1e-9
    assert abs(dev["top"]) < 1.5 and abs(dev["bottom"]) < 1.5  # the seam is 2 of 64 columns of those bands


def test_check_frames_are_fixed_simulated_low_probe_frames() -> None:
    a, b = check_frames(), check_frames()
    assert a["grid"].shape == (12, 96, 96) and a["points"].shape == (6, 96, 96)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_cli_on_the_shipped_weights_and_a_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch", reason="checkpoints load with torch")
    assert main(["--weights", str(REPO / "weights" / "drnn.pt")]) == 0
    out = capsys.readouterr().out
    assert "drnn.pt: OK (worst" in out and "grid top" in out and "points top" in out
    assert main(["--weights", "/nonexistent/drnn.pt"]) == 2
    assert "error:" in capsys.readouterr().err
