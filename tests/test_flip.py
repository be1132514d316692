"""Flip averaging (engine.flip): the formula, any backend behind it, the benchmarks' generators, both
command lines and the live chain (real ZeroMQ sockets on loopback, the shipped fast ONNX model)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from test_stream_chain import free_endpoint, recorded_to_the_end

from benchmarks.evaluate import generator_function, load_candidates
from benchmarks.temporal import measure_temporal
from engine.despeckle import main as despeckle_main
from engine.flip import FlipAveragedDespeckler, flip_averaged, mean_mirrored, mirror
from engine.registry import create_despeckler
from stream.cli import add_common_args, add_despeckle_args, add_source_args, chain_config, source_config
from stream.config import ChainConfig, OutputConfig, SourceConfig
from training.argparsing import OneLineParser
from training.sim import simulate_pair

REPO = Path(__file__).resolve().parent.parent
FAST = REPO / "weights" / "drnn_fast.onnx"


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    x, _, _ = simulate_pair(5, (64, 72))
    return x


def test_mean_mirrored_is_the_rounded_average_of_the_output_and_the_mirrored_one() -> None:
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, size=(32, 48), dtype=np.uint8) for _ in range(2))
    exact = (a.astype(np.float64) + b[:, ::-1]) / 2
    assert np.abs(mean_mirrored(a, b) - exact).max() <= 0.5 + 1e-9
    assert np.array_equal(mirror(a)[:, 0], a[:, -1]) and mirror(a).flags.c_contiguous
    with pytest.raises(ValueError, match="differ in shape"):
        mean_mirrored(a, b[:, :40])


def test_flip_averaging_keeps_a_mirror_symmetric_filter_and_averages_an_asymmetric_one(frame: np.ndarray) -> None:
    def median(x: np.ndarray) -> np.ndarray:
        return cv2.medianBlur(x, 5)  # the same for a frame and its mirror: M D(M x) = D(x)

    assert np.array_equal(flip_averaged(frame, median), median(frame))

    def right(x: np.ndarray) -> np.ndarray:  # moves the picture one column right (edge column repeated)
        return np.concatenate([x[:, :1], x[:, :-1]], axis=1)

    exact = (frame[:, :-2].astype(np.float64) + frame[:, 2:]) / 2  # one right, its mirror one left: the neighbours' mean
    assert np.abs(flip_averaged(frame, right)[:, 1:-1] - exact).max() <= 0.5 + 1e-9


def test_any_backend_flip_averaged_runs_the_frame_and_its_mirror(frame: np.ndarray) -> None:
    with create_despeckler("onnxruntime", FAST, levels="off", device="cpu") as plain, \
            create_despeckler("onnxruntime", FAST, levels="off", flip_average=True, device="cpu") as flipped:
        assert isinstance(flipped, FlipAveragedDespeckler) and not isinstance(plain, FlipAveragedDespeckler)
        g, g_mirror = plain.infer(frame), plain.infer(mirror(frame))
        assert not np.array_equal(g, mirror(g_mirror))  # the network draws differently for the mirror
        expected = mean_mirrored(g, g_mirror)
        assert np.array_equal(flipped.infer(frame), expected)
        assert all(np.array_equal(out, expected) for out in flipped.map([frame] * 3))  # the submit path
        assert flipped.describe().endswith(", flip-averaged") and flipped.weights == plain.weights
    with pytest.raises(RuntimeError, match="closed"):
        flipped.inner.infer(frame)  # closing the wrapper closed the backend
    with create_despeckler("identity", flip_average=True) as identity:  # nothing to average
        assert not isinstance(identity, FlipAveragedDespeckler) and np.array_equal(identity.infer(frame), frame)


def test_flip_averaged_output_changes_less_from_frame_to_frame() -> None:
    """The fast model's drawn texture on speckle renewing between frames (benchmarks.temporal's
    change ratio): flip-averaged, its frames change less (measured at 256x256 in docs/engine.md)."""
    runs, failed = load_candidates(["fast"], flip_average=True)
    assert failed == 0 and list(runs) == ["fast (flip-averaged)"]
    runs["fast"] = generator_function("fast")
    result = measure_temporal(runs, phantoms=2, size=(64, 64), renewal=(0.02, 0.1), frames=3, progress=False)
    for plain, flipped in zip(result["fast"]["ratio"], result["fast (flip-averaged)"]["ratio"], strict=True):
        assert flipped < 0.95 * plain


def test_the_torch_path_of_the_benchmarks_averages_as_the_engine_does(frame: np.ndarray) -> None:
    pytest.importorskip("torch", reason="the checkpoint path needs torch")
    plain = generator_function(REPO / "weights" / "drnn_fast.pt", levels="off")
    flipped = generator_function(REPO / "weights" / "drnn_fast.pt", levels="off", flip_average=True)
    assert np.array_equal(flipped(frame), mean_mirrored(plain(frame), plain(mirror(frame))))


def test_offline_command_line(frame: np.ndarray, tmp_path: Path) -> None:
    src, out = tmp_path / "scan.png", tmp_path / "out"
    cv2.imwrite(str(src), frame)
    assert despeckle_main([str(src), "-o", str(out), "--backend", "onnxruntime", "--weights", "fast",
                           "--levels", "off", "--flip-average"]) == 0
    with create_despeckler("onnxruntime", FAST, levels="off", device="cpu") as plain:
        expected = flip_averaged(frame, plain.infer)
    assert np.array_equal(cv2.imread(str(out / "scan.png"), cv2.IMREAD_UNCHANGED), expected)


def test_live_chain_publishes_flip_averaged_frames(frame: np.ndarray, tmp_path: Path) -> None:
    folder, record = tmp_path / "scans", tmp_path / "out"
    folder.mkdir()
    for i in range(3):  # one picture three times: whichever frames the chain drops, each output is known
        cv2.imwrite(str(folder / f"img_{i}.png"), frame)
    with create_despeckler("onnxruntime", FAST, flip_average=True, device="cpu") as flipped:
        expected = flipped.infer(frame)  # with the engine's default grey levels, as the chain runs it
    cfg = ChainConfig(source=SourceConfig(spec=str(folder), fps=20.0), backend="onnxruntime", weights=FAST,
                      output=OutputConfig(publish=free_endpoint(), record=record), flip_average=True, status_s=0.2)
    assert all(np.array_equal(out, expected) for out in recorded_to_the_end(cfg))


def test_both_live_command_lines_take_the_flag() -> None:
    """``stream.run`` and ``stream.despeckler`` share ``add_despeckle_args`` and ``chain_config``."""
    parser = OneLineParser(prog="python -m stream.run")
    add_source_args(parser, subscribe=True)
    add_despeckle_args(parser)
    add_common_args(parser)
    for argv, expected in (([], False), (["--flip-average"], True)):
        args = parser.parse_args(argv)
        assert chain_config(args, source_config(args, args.source)).flip_average is expected
