"""The latency benchmarks keep working: each is run once in its short mode (no time is asserted),
and the compute floor's FLOP count is checked against the DRNN's formula."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.floor import FloorError, compute_floor, conv_cost, flops_from_onnx, measure_cpu
from benchmarks.latency import main as latency_main
from benchmarks.latency import percentiles
from benchmarks.modelfiles import TINY_DRNN

REPO = Path(__file__).resolve().parents[1]


def test_benchmark_suite_runs_in_short_mode() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks", "--bench-short", "-q", "-p", "no:cacheprovider", "-W", "ignore::FutureWarning"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    tail = proc.stdout[-3000:]
    assert proc.returncode == 0, tail
    passed = int(re.search(r"(\d+) passed", tail)[1])
    assert passed >= 6, tail  # protocol, hop and chain (4) plus ONNX Runtime on the CPU (2)
    assert "failed" not in tail and "error" not in tail.lower(), tail


def test_latency_tool_identity_chain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert latency_main(["--backend", "identity", "--size", "32x32", "--fps", "200", "--frames", "40", "--warmup", "5", "--out", str(out)]) == 0
    report = json.loads((out / "latency.json").read_text())
    assert report["received"] == 40
    assert set(report["stages"]) == {"hop 1", "despeckle", "hand-over", "hop 2", "end to end"}
    e2e = report["stages"]["end to end"]
    assert e2e["n"] == 40 and 0 < e2e["p50"] <= e2e["p90"] <= e2e["p99"] <= e2e["p99.9"] <= e2e["max"]
    parts = sum(report["stages"][k]["p50"] for k in ("hop 1", "despeckle", "hand-over", "hop 2"))
    assert parts <= e2e["max"] + 1.0  # the stages add up to no more than the whole (clocks agree)
    assert report["floor"] is None and report["baseline"] is None
    assert (out / "latency.png").stat().st_size > 0
    assert "end to end" in capsys.readouterr().out


def test_latency_tool_model_backend_reports_floor_and_baseline(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="making a model file needs torch")
    from engine.torch_model import edge_context
    from training.models import DRNN, drnn_flops

    out = tmp_path / "run"
    args = ["--backend", "onnxruntime", "--size", "32x32", "--fps", "100", "--frames", "5", "--warmup", "2",
            "--baseline-frames", "1", "--baseline-threads", "1", "--tiny-model", "--out", str(out)]
    assert latency_main(args) == 0
    report = json.loads((out / "latency.json").read_text())
    assert report["received"] == 5
    # the floor's FLOPs, read from the exported graph, are the DRNN's formula over the frame and
    # its mirrored edge context
    c = edge_context(DRNN(**TINY_DRNN))
    assert 0 < c < 32
    assert report["floor"]["flops"] == drnn_flops(32 + 2 * c, 32 + 2 * c, TINY_DRNN)
    assert report["floor"]["floor_s"] > 0
    assert report["baseline"]["eager_torch_fp32_ms"] > 0 and report["baseline"]["speedup"] > 0
    assert report["baseline"]["threads"] == 1


def test_latency_tool_runs_the_chain_flip_averaged(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="making a model file needs torch")
    out = tmp_path / "run"
    args = ["--backend", "onnxruntime", "--size", "32x32", "--fps", "100", "--frames", "5", "--warmup", "2",
            "--baseline-frames", "0", "--tiny-model", "--flip-average", "--out", str(out)]
    assert latency_main(args) == 0
    report = json.loads((out / "latency.json").read_text())
    assert report["received"] == 5 and report["config"]["flip_average"] is True
    assert "flip-averaged" in report["despeckler_status"]  # the despeckler process ran with the flag
    assert any("two model runs per frame" in note for note in report["notes"])


def test_latency_tool_measures_the_given_model_not_the_shipped_one(tmp_path: Path) -> None:
    """With ``--weights``, the floor counts that model's convolutions and the eager baseline runs
    the checkpoint it was exported from (found beside it by its ``checkpoint_sha256``); an ONNX
    file alone gets its floor and a note instead of the baseline."""
    pytest.importorskip("torch", reason="making a model file needs torch")
    from benchmarks.modelfiles import ModelFiles, given_files, model_files
    from engine.torch_model import edge_context
    from training.models import DRNN, drnn_flops

    made = model_files(tmp_path / "m", tiny=True)  # tiny DRNN: drnn.pt and drnn.onnx side by side
    assert given_files(made.onnx, tmp_path / "w1").checkpoint == made.checkpoint
    assert given_files(made.checkpoint, tmp_path / "w2").checkpoint == made.checkpoint
    alone = tmp_path / "alone" / "model.onnx"
    alone.parent.mkdir()
    shutil.copy(made.onnx, alone)
    assert given_files(alone, tmp_path / "w3").checkpoint is None
    assert given_files(tmp_path / "model.engine", tmp_path / "w4") == ModelFiles(
        None, None, f"model file {tmp_path / 'model.engine'}")

    c = edge_context(DRNN(**TINY_DRNN))
    for weights, baseline in ((made.onnx, True), (alone, False)):
        out = tmp_path / f"run_{baseline}"
        args = ["--backend", "onnxruntime", "--weights", str(weights), "--size", "32x32", "--fps", "100", "--frames", "3",
                "--warmup", "1", "--baseline-frames", "1", "--baseline-threads", "1", "--out", str(out)]
        assert latency_main(args) == 0
        report = json.loads((out / "latency.json").read_text())
        assert report["floor"]["flops"] == drnn_flops(32 + 2 * c, 32 + 2 * c, TINY_DRNN)  # not the shipped model's
        assert (report["baseline"] is not None) == baseline
        assert baseline or any("baseline skipped: no checkpoint" in n for n in report["notes"])


def test_latency_tool_reports_a_stage_that_dies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A despeckler that cannot start (TensorRT is not installed here) is named at once, with its exit status."""
    pytest.importorskip("torch", reason="making a model file needs torch")
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed: the despeckler would start")
    out = tmp_path / "run"
    args = ["--backend", "tensorrt", "--size", "32x32", "--frames", "5", "--warmup", "1", "--baseline-frames", "0",
            "--tiny-model", "--out", str(out)]
    assert latency_main(args) == 1
    assert f"despeckler exited with status 1; see {out / 'despeckler.log'}" in capsys.readouterr().err
    assert "tensorrt" in (out / "despeckler.log").read_text().lower()


def test_latency_tool_refuses_bad_flags(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in (["--size", "512"], ["--fps", "0"], ["--weights", "/nonexistent/model.onnx"]):
        with pytest.raises(SystemExit) as exc:
            latency_main(bad)
        assert exc.value.code == 2
        assert bad[0] in capsys.readouterr().err


def _conv_model(path: Path, layers: list[tuple[int, int, int]], stride: int = 1, context: str | None = None) -> Path:
    """An ONNX chain of float32 convolutions ``(c_out, c_in, k)`` on a (1, 1, H, W) input, with
    ``edge_context`` metadata if ``context`` is given."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, name = [], [], "x"
    for i, (c_out, c_in, k) in enumerate(layers):
        inits.append(numpy_helper.from_array(np.zeros((c_out, c_in, k, k), np.float32), f"w{i}"))
        nodes.append(helper.make_node("Conv", [name, f"w{i}"], [f"y{i}"], pads=[k // 2] * 4, strides=[stride, stride]))
        name = f"y{i}"
    graph = helper.make_graph(nodes, "convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, None, None])],
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph)
    if context is not None:
        helper.set_model_props(model, {"edge_context": context})
    onnx.save(model, str(path))
    return path


def test_floor_counts_conv_multiply_adds(tmp_path: Path) -> None:
    model = _conv_model(tmp_path / "m.onnx", [(8, 1, 7), (8, 8, 3), (1, 8, 3)])
    macs = 8 * 49 + 8 * 8 * 9 + 8 * 9
    assert flops_from_onnx(model, 60, 80) == 2 * 60 * 80 * macs
    cost = conv_cost(model)
    assert (cost.convs, cost.act_elems_per_pixel, cost.weight_bytes) == (3, (1 + 8) + (8 + 8) + (8 + 1), 4 * macs)
    with pytest.raises(FloorError, match="strides"):
        conv_cost(_conv_model(tmp_path / "strided.onnx", [(8, 1, 3)], stride=2))
    device = measure_cpu(matmul_n=256, copy_mib=8, repeats=1)
    floor = compute_floor(cost, 64, 64, device)
    assert floor.floor_s == max(floor.flops / device.peak_flops, floor.bytes / device.bandwidth)
    assert "GFLOP" in floor.line()


def test_floor_counts_the_mirrored_edge_context(tmp_path: Path) -> None:
    """A model exported with a 24-pixel edge context computes (H + 48)(W + 48) pixels; the margin
    is capped at H - 1 and W - 1 as the engine caps it; bad metadata is refused by name."""
    layers = [(8, 1, 7), (1, 8, 3)]
    macs = 8 * 49 + 8 * 9
    ctx = conv_cost(_conv_model(tmp_path / "ctx.onnx", layers, context="24"))
    assert ctx.context == 24
    assert flops_from_onnx(tmp_path / "ctx.onnx", 60, 80) == 2 * (60 + 48) * (80 + 48) * macs
    assert ctx.computed_pixels(10, 80) == (10 + 18) * (80 + 18)
    bare = conv_cost(_conv_model(tmp_path / "bare.onnx", layers))
    assert ctx.bytes(60, 80) - bare.bytes(60, 80) == 4 * ((60 + 48) * (80 + 48) - 60 * 80) * (1 + 8 + 8 + 1)
    with pytest.raises(FloorError, match="edge_context"):
        conv_cost(_conv_model(tmp_path / "bad.onnx", layers, context="wide"))


def test_floor_refuses_a_file_that_is_not_onnx(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(FloorError, match="model.onnx"):
        conv_cost(bad)


def test_percentiles() -> None:
    stats = percentiles(list(range(1, 1001)))
    assert stats["n"] == 1000 and stats["max"] == 1000
    assert stats["p50"] == pytest.approx(500.5) and stats["p99"] == pytest.approx(990.01)
    with pytest.raises(ValueError):
        percentiles([])


def test_latency_tool_takes_weights_relative_to_the_callers_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chain's stages run from the repository root; ``--weights model.onnx`` given in another
    folder is the caller's file, not a missing one in the repository."""
    pytest.importorskip("torch", reason="the floor's model files need torch")
    shutil.copy(REPO / "weights" / "drnn.onnx", tmp_path / "model.onnx")
    monkeypatch.chdir(tmp_path)
    args = ["--backend", "onnxruntime", "--weights", "model.onnx", "--size", "32x32", "--fps", "50",
            "--frames", "3", "--warmup", "1", "--baseline-frames", "0", "--out", "run"]
    assert latency_main(args) == 0
    report = json.loads((tmp_path / "run" / "latency.json").read_text())
    assert report["received"] == 3
