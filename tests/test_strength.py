"""Despeckling strength (engine.strength): the blend, any backend behind it, both command lines and
the live chain (real ZeroMQ sockets on loopback, the shipped ONNX model)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from test_stream_chain import free_endpoint, recorded_to_the_end

from engine.despeckle import main as despeckle_main
from engine.registry import create_despeckler
from engine.strength import BlendedDespeckler, blend
from stream.config import ChainConfig, OutputConfig, SourceConfig
from stream.run import main as run_main
from training.sim import simulate_pair

REPO = Path(__file__).resolve().parent.parent
ONNX = REPO / "weights" / "drnn.onnx"


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    x, _, _ = simulate_pair(3, (64, 64))
    return x


def test_blend_ends_are_exact_and_the_middle_is_the_rounded_mix() -> None:
    rng = np.random.default_rng(0)
    x, d = (rng.integers(0, 256, size=(32, 48), dtype=np.uint8) for _ in range(2))
    assert np.array_equal(blend(x, d, 1.0), d) and np.array_equal(blend(x, d, 0.0), x)
    for s in (0.5, 0.3, 0.77):
        exact = s * d.astype(np.float64) + (1 - s) * x
        assert np.abs(blend(x, d, s) - exact).max() <= 0.5 + 1e-9  # rounded to the nearest grey level
    assert blend(np.zeros((2, 2), np.uint8), np.full((2, 2), 255, np.uint8), 0.5)[0, 0] == 128
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="strength must be between 0 and 1"):
            blend(x, d, bad)
    with pytest.raises(ValueError, match="differ in shape"):
        blend(x, d[:, :40], 0.5)


def test_any_backend_at_a_strength_blends_its_own_output(frame: np.ndarray) -> None:
    with create_despeckler("onnxruntime", ONNX, device="cpu") as full, \
            create_despeckler("onnxruntime", ONNX, strength=0.5, device="cpu") as half, \
            create_despeckler("onnxruntime", ONNX, strength=0.0, device="cpu") as none:
        assert not isinstance(full, BlendedDespeckler) and isinstance(half, BlendedDespeckler)
        g = full.infer(frame)
        assert not np.array_equal(g, frame)
        assert np.array_equal(half.infer(frame), blend(frame, g, 0.5))
        assert all(np.array_equal(out, blend(frame, g, 0.5)) for out in half.map([frame] * 3))  # submit path
        assert np.array_equal(none.infer(frame), frame)
        assert "strength 0.5" in half.describe()
    with pytest.raises(RuntimeError, match="closed"):
        half.inner.infer(frame)  # closing the blend closed the backend
    with pytest.raises(ValueError, match="strength"):
        create_despeckler("identity", strength=2.0)


def test_offline_command_line_takes_a_strength_and_refuses_a_bad_one(
    frame: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "scan.png"
    cv2.imwrite(str(src), frame)
    out = tmp_path / "out"
    assert despeckle_main([str(src), "--output", str(out), "--backend", "onnxruntime", "--strength", "0"]) == 0
    assert np.array_equal(cv2.imread(str(out / "scan.png"), cv2.IMREAD_UNCHANGED), frame)
    capsys.readouterr()
    for bad in ("1.5", "half"):
        with pytest.raises(SystemExit) as exc:
            despeckle_main([str(src), "--output", str(out), "--strength", bad])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].endswith(
            f"argument --strength: strength must be a number between 0 and 1, got '{bad}' (see --help)")


def test_live_command_line_refuses_a_bad_strength(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run_main(["--strength", "-1"])
    assert exc.value.code == 2 and "strength must be a number between 0 and 1, got '-1'" in capsys.readouterr().err


@pytest.mark.parametrize("strength", [0.0, 0.25])
def test_live_chain_publishes_at_its_strength(frame: np.ndarray, tmp_path: Path, strength: float) -> None:
    folder, record = tmp_path / "scans", tmp_path / "out"
    folder.mkdir()
    for i in range(3):  # one picture three times: whichever frames the chain drops, each output is known
        cv2.imwrite(str(folder / f"img_{i}.png"), frame)
    with create_despeckler("onnxruntime", ONNX, device="cpu") as full:
        expected = blend(frame, full.infer(frame), strength)
    cfg = ChainConfig(source=SourceConfig(spec=str(folder), fps=20.0), backend="onnxruntime", weights=ONNX,
                      output=OutputConfig(publish=free_endpoint(), record=record), strength=strength,
                      status_s=0.2)
    assert all(np.array_equal(out, expected) for out in recorded_to_the_end(cfg))
