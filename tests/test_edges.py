"""benchmarks.edges: the paired frame-edge seam, the check frames and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from benchmarks.edges import SIDES, check_frames, main, seams

REPO = Path(__file__).resolve().parent.parent


def _speckle(n: int, size: int) -> np.ndarray:
    z = np.random.default_rng(0).rayleigh(40.0, (n, size, size))
    return np.clip(z, 0, 255).astype(np.uint8)


def test_pointwise_despeckler_has_no_seam_and_a_painted_one_is_measured() -> None:
    frames = _speckle(3, 72)
    assert all(v == 0.0 for v in seams(lambda f: 255 - f, frames, margin=12).values())

    def brighter_right_columns(f: np.ndarray) -> np.ndarray:
        out = f.astype(np.int16)
        out[:, -2:] += 20
        return np.clip(out, 0, 255).astype(np.uint8)

    s = seams(brighter_right_columns, frames, margin=12)
    assert 19.0 < s["right"] <= 20.0 and s["left"] == 0.0
    assert 0.0 < s["top"] <= 20.0 * 2 / 48 and 0.0 < s["bottom"] <= 20.0 * 2 / 48  # only the corner pixels
    with pytest.raises(ValueError, match="at least 32 pixels a side"):
        seams(brighter_right_columns, frames[:, :30], margin=12)


def test_zero_padding_darkens_the_edges_and_edge_replication_does_not() -> None:
    frames = _speckle(4, 80)
    zero = seams(lambda f: uniform_filter(f.astype(np.float32), 7, mode="constant").astype(np.uint8), frames, margin=12)
    nearest = seams(lambda f: uniform_filter(f.astype(np.float32), 7, mode="nearest").astype(np.uint8), frames, margin=12)
    mean = float(frames.mean())
    for side in SIDES:  # the outer 2 pixels of a 7-pixel box miss 3/7 and 2/7 of their neighbourhood
        assert -0.45 * mean < zero[side] < -0.25 * mean, (side, zero[side], mean)
        assert abs(nearest[side]) < 0.05 * mean, (side, nearest[side])


def test_check_frames_are_fixed_simulated_low_probe_frames() -> None:
    a, b = check_frames(), check_frames()
    assert a["grid"].shape == (8, 128, 128) and a["points"].shape == (4, 128, 128)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_cli_on_the_shipped_weights_and_a_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch", reason="checkpoints load with torch")
    assert main(["--weights", str(REPO / "weights" / "drnn.pt")]) == 0
    out = capsys.readouterr().out
    assert "drnn.pt: OK (worst" in out and "grid top" in out and "points top" in out
    assert main(["--weights", "/nonexistent/drnn.pt"]) == 2
    assert "error:" in capsys.readouterr().err
