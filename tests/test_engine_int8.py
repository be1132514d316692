"""INT8 quantization (engine.int8, python -m engine.quantize) on a small real DRNN export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

pytest.importorskip("torch", reason="making the float32 export needs torch (the [train] extra)")
onnx = pytest.importorskip("onnx", reason="quantizing needs onnx (the [train] extra)")

from engine_testutil import make_checkpoint, random_frames  # noqa: E402

from engine.backends.onnxruntime import OnnxRuntimeDespeckler  # noqa: E402
from engine.checkpoint import load_generator  # noqa: E402
from engine.files import sha256_file  # noqa: E402
from engine.int8 import (  # noqa: E402
    TILE,
    CalibrationError,
    _float_convs,
    quantize_fewest_float,
    quantize_int8,
    split_frames,
    tile,
)
from engine.levels import as_fed  # noqa: E402
from engine.onnx_export import INPUT_NAME, OUTPUT_NAME, ParityError, Tolerance, export_checkpoint, export_onnx  # noqa: E402
from engine.quantize import main  # noqa: E402
from engine.weights import WeightsError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fp32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("int8")
    return export_checkpoint(make_checkpoint(root / "drnn.pt"), root / "drnn.onnx")


def _run(path: Path, frame: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: frame})[0]


def onnx_meta(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_quantized_model_keeps_the_frame_contract_and_agrees_with_float32(fp32: Path, tmp_path: Path) -> None:
    out = tmp_path / "int8.onnx"
    calibration, held_out = random_frames(6, seed=1), random_frames(2, (40, 52), seed=2)
    report = quantize_int8(fp32, out, calibration, held_out, progress=False)
    assert len(report) == 2 and all(p.ok for p in report)
    proto = onnx.load(str(out))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > 0
    made_by = {out: node.op_type for node in proto.graph.node for out in node.output}
    weights_int8 = [made_by.get(n.input[1]) == "DequantizeLinear" for n in proto.graph.node if n.op_type == "Conv"]
    # DRNN(width=8, blocks=2): stem, 2 x (3 convs + 1x1 shortcut), head; the last block stays float32
    assert weights_int8 == [False] + [True] * 4 + [False] * 4 + [False]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["float_blocks"] == "1"
    assert meta["precision"] == "int8" and meta["source_onnx_sha256"] == sha256_file(fp32)
    assert meta["checkpoint_sha256"] == onnx_meta(fp32)["checkpoint_sha256"] and meta["calibration_frames"] == "6"
    assert meta["calibration_levels"] == "preset"
    frame = as_fed(random_frames(1, (33, 47), seed=3)[0])  # any size, uint8 in and out, as the engine feeds it
    with OnnxRuntimeDespeckler(out, threads=1) as engine:
        got = engine.infer(frame)
    assert got.dtype == np.uint8 and got.shape == frame.shape
    diff = np.abs(got.astype(int) - _run(fp32, frame).astype(int))
    assert np.mean(diff <= 8) >= 0.99


def test_calibration_frames_are_mapped_to_the_grey_levels_it_will_run_at(fp32: Path, tmp_path: Path) -> None:
    """The activation ranges come from frames as the engine will feed them: dark frames quantized
    with ``levels="preset"`` give the graph that their mapped versions give with ``off``, and not
    the one the dark frames give as they are; the file records the mode."""
    dark = [f // 3 for f in random_frames(6, seed=1)]
    held = [f // 3 for f in random_frames(2, (40, 52), seed=2)]
    assert all(as_fed(f) is not f for f in dark + held)  # every one of them is mapped
    loose = Tolerance(max_abs=255, fraction=0.0)
    runs = {"preset": (dark, held, "preset"), "premapped": ([as_fed(f) for f in dark], [as_fed(f) for f in held], "off"),
            "raw": (dark, held, "off")}
    graphs = {}
    for name, (calibration, check, levels) in runs.items():
        out = quantize_int8(fp32, tmp_path / f"{name}.onnx", calibration, check, tolerance=loose, levels=levels,
                            progress=False) and tmp_path / f"{name}.onnx"
        assert onnx_meta(out)["calibration_levels"] == levels
        graphs[name] = onnx.load(str(out)).graph.SerializeToString()
    assert graphs["preset"] == graphs["premapped"] != graphs["raw"]


def test_a_tolerance_it_misses_writes_nothing(fp32: Path, tmp_path: Path) -> None:
    out = tmp_path / "int8.onnx"
    with pytest.raises(ParityError, match="held-out frame"):
        quantize_int8(fp32, out, random_frames(4, seed=1), random_frames(1, seed=2),
                      tolerance=Tolerance(max_abs=0, fraction=1.0), progress=False)
    assert not out.exists()


def test_float_blocks_choose_the_float32_residual_blocks(fp32: Path, tmp_path: Path) -> None:
    calibration, held_out = random_frames(4, seed=1), random_frames(1, seed=2)
    loose = Tolerance(max_abs=255, fraction=0.0)  # structure only here; accuracy is tested above
    for blocks, want in ((0, [False] + [True] * 8 + [False]), (2, [False] * 10)):
        out = quantize_int8(fp32, tmp_path / f"f{blocks}.onnx", calibration, held_out, tolerance=loose,
                            float_blocks=blocks, progress=False)
        assert out and (tmp_path / f"f{blocks}.onnx").is_file()
        proto = onnx.load(str(tmp_path / f"f{blocks}.onnx"))
        made_by = {o: node.op_type for node in proto.graph.node for o in node.output}
        got = [made_by.get(n.input[1]) == "DequantizeLinear" for n in proto.graph.node if n.op_type == "Conv"]
        assert got == want, blocks
    for blocks, match in ((3, "has 2 residual blocks"), (-1, "must be >= 0")):
        with pytest.raises(WeightsError, match=match):
            quantize_int8(fp32, tmp_path / "x.onnx", calibration, held_out, float_blocks=blocks, progress=False)
    assert not (tmp_path / "x.onnx").exists()


def test_auto_writes_the_fewest_float32_blocks_that_pass(fp32: Path, tmp_path: Path) -> None:
    """``quantize_fewest_float`` against each block count's own result: under a tolerance that
    0 float32 blocks miss and 1 meets, it writes the 1-block file; when every try misses, nothing."""
    calibration, held_out = random_frames(4, seed=1), random_frames(1, seed=2)
    loose = Tolerance(max_abs=255, fraction=0.0)
    worst = [quantize_int8(fp32, tmp_path / f"b{k}.onnx", calibration, held_out, tolerance=loose,
                           float_blocks=k, progress=False)[0].max_abs for k in (0, 1)]
    assert worst[1] < worst[0]  # the last block in float32 brings it closer (the premise of the test)
    between = Tolerance(max_abs=worst[1], fraction=1.0)
    blocks, report = quantize_fewest_float(fp32, tmp_path / "auto.onnx", calibration, held_out,
                                           tolerance=between, progress=False)
    assert blocks == 1 and report[0].ok and report[0].max_abs == worst[1]
    assert onnx_meta(tmp_path / "auto.onnx")["float_blocks"] == "1"
    assert (tmp_path / "auto.onnx").read_bytes() == (tmp_path / "b1.onnx").read_bytes()
    loose_enough = Tolerance(max_abs=worst[0], fraction=1.0)  # 0 blocks pass: the first try wins
    assert quantize_fewest_float(fp32, tmp_path / "auto0.onnx", calibration, held_out,
                                 tolerance=loose_enough, progress=False)[0] == 0
    with pytest.raises(ParityError, match="no INT8 file with fewer than all 2 residual blocks float32 passes"):
        quantize_fewest_float(fp32, tmp_path / "none.onnx", calibration, held_out,
                              tolerance=Tolerance(max_abs=worst[1] - 1, fraction=1.0), progress=False)
    assert not (tmp_path / "none.onnx").exists()


def test_cli_float_blocks_auto_names_its_choice(fp32: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "auto_cli.onnx"
    assert main(["--onnx", str(fp32), "--out", str(out), "--frames", "4", "--size", "64", "--float-blocks", "auto"]) == 0
    printed = capsys.readouterr().out
    blocks = onnx_meta(out)["float_blocks"]
    assert f"the fewest that pass: {blocks} residual blocks float32" in printed
    for bad in ("two", "-1"):
        with pytest.raises(SystemExit) as exit_info:
            main(["--onnx", str(fp32), "--out", str(tmp_path / "x.onnx"), f"--float-blocks={bad}"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert "--float-blocks" in err and bad in err and len(err.splitlines()) == 1


def test_default_keeps_half_the_residual_blocks_float32_three_of_the_shipped_six() -> None:
    """The default is the fewest float32 blocks with which the shipped model passes its check
    (docs/engine.md): 3 of its 6, found in the shipped float32 export's graph."""
    import onnx

    convs = [n for n in onnx.load(str(REPO / "weights" / "drnn.onnx")).graph.node if n.op_type == "Conv"]
    names, blocks = _float_convs(convs, None)
    assert blocks == 3
    # stem and head, plus 3 blocks of 3 convolutions and a 1x1 shortcut each
    assert len(names) == 2 + 3 * 4 and names[0] == convs[0].name and names[-1] == convs[-1].name
    assert _float_convs(convs, 1)[1] == 1 and len(_float_convs(convs, 0)[0]) == 2


def test_refuses_a_float16_export_and_bad_frames(fp32: Path, tmp_path: Path) -> None:
    half = export_onnx(load_generator(make_checkpoint(tmp_path / "g.pt")), tmp_path / "half.onnx", fp16=True)
    frames = random_frames(3)
    with pytest.raises(WeightsError, match="precision is float16"):
        quantize_int8(half, tmp_path / "a.onnx", frames[:2], frames[2:], progress=False)
    with pytest.raises(CalibrationError, match="calibration frame 1: frame dtype must be uint8"):
        quantize_int8(fp32, tmp_path / "b.onnx", [frames[0], frames[1].astype(np.float32)], frames[2:], progress=False)
    with pytest.raises(CalibrationError, match="held-out frame 0: frame size 8x8 is outside"):
        quantize_int8(fp32, tmp_path / "c.onnx", frames[:2], [np.zeros((8, 8), np.uint8)], progress=False)
    with pytest.raises(CalibrationError, match="at least 2 frames"):
        split_frames(frames[:1])
    frames = random_frames(8)
    calib, held = split_frames(frames)
    assert (len(calib), len(held)) == (6, 2) and held[0] is frames[3] and held[1] is frames[7]
    calib, held = split_frames(frames[:2])  # held-out frames are never calibration frames
    assert len(calib) == len(held) == 1 and calib[0] is frames[0] and held[0] is frames[1]


def test_cli_calibrates_on_a_folder_of_pictures(fp32: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(random_frames(5, (48, 64), seed=4)):
        cv2.imwrite(str(folder / f"f_{i}.png"), frame)
    (folder / "broken.png").write_bytes(b"not a png")  # skipped and logged, not fatal
    out = tmp_path / "cli_int8.onnx"
    assert main(["--onnx", str(fp32), "--out", str(out), "--calibrate", str(folder)]) == 0
    assert out.is_file() and "int8" in capsys.readouterr().out


@pytest.mark.parametrize("args, culprit", [
    (["--onnx", "{tmp}/missing.onnx"], "missing.onnx"),
    (["--onnx", "{fp32}", "--calibrate", "{tmp}/empty"], "empty"),
])
def test_cli_bad_input_is_one_line_and_exit_1(fp32: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              args: list[str], culprit: str) -> None:
    (tmp_path / "empty").mkdir()
    argv = [a.format(tmp=tmp_path, fp32=fp32) for a in args] + ["--out", str(tmp_path / "x.onnx"), "--frames", "2"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("engine.quantize:") and culprit in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.onnx").exists()


def test_frames_of_mixed_sizes_calibrate_through_central_tiles(fp32: Path, tmp_path: Path) -> None:
    big = np.arange(300 * 700, dtype=np.int64).reshape(300, 700).astype(np.uint8)
    cut = tile(big)
    assert cut.shape == (TILE, TILE) and cut[0, 0] == big[22, 222] and cut.flags["C_CONTIGUOUS"]
    small = random_frames(1, (40, 52))[0]
    assert tile(small).shape == small.shape and np.array_equal(tile(small), small)
    frames = [*random_frames(2, (48, 64), seed=5), random_frames(1, (300, 30), seed=6)[0], random_frames(1, (33, 47), seed=7)[0]]
    report = quantize_int8(fp32, tmp_path / "mixed.onnx", frames, random_frames(1, (64, 48), seed=8), progress=False)
    assert report[0].ok and (tmp_path / "mixed.onnx").is_file()
