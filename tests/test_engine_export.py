"""ONNX export: contract, batch-norm folding, parity with torch (FP32 and FP16), bad checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="export needs torch (the [train] extra)")
onnx = pytest.importorskip("onnx", reason="export needs onnx (the [train] extra)")
import onnxruntime as ort  # noqa: E402
from engine_testutil import make_checkpoint, random_frames  # noqa: E402

from engine.checkpoint import CheckpointError, load_generator  # noqa: E402
from engine.export import main as export_main  # noqa: E402
from engine.onnx_export import (  # noqa: E402
    FP16_TOLERANCE,
    FP32_TOLERANCE,
    INPUT_NAME,
    OUTPUT_NAME,
    Parity,
    check_graph,
)
from engine.torch_model import (  # noqa: E402
    FrameModel,
    black_windows,
    count_batchnorm,
    edge_context,
    fill_background,
    fold_batchnorm,
    receptive_radius,
)
from engine.weights import WeightsError  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export")
    ckpt = make_checkpoint(root / "drnn.pt")
    assert export_main(["--checkpoint", str(ckpt), "--out", str(root / "drnn.onnx")]) == 0
    assert export_main(["--checkpoint", str(ckpt), "--out", str(root / "drnn_fp16.onnx"), "--fp16"]) == 0
    return {"ckpt": ckpt, "fp32": root / "drnn.onnx", "fp16": root / "drnn_fp16.onnx"}


def _ort(path: Path, frame: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: frame})[0]


def test_fold_batchnorm_keeps_the_function(tmp_path: Path) -> None:
    net = load_generator(make_checkpoint(tmp_path / "g.pt", seed=3))
    folded = fold_batchnorm(net)
    assert count_batchnorm(net) > 0 and count_batchnorm(folded) == 0
    x = torch.rand(1, 1, 40, 36)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), atol=1e-5, rtol=1e-4)


def test_graph_keeps_the_uint8_contract(exported: dict[str, Path]) -> None:
    for key in ("fp32", "fp16"):
        model = onnx.load(str(exported[key]))
        check_graph(model, name=key)
        assert "BatchNormalization" not in {n.op_type for n in model.graph.node}
    fp16_types = {init.data_type for init in onnx.load(str(exported["fp16"])).graph.initializer}
    assert onnx.TensorProto.FLOAT16 in fp16_types


@pytest.mark.parametrize("shape", [(64, 64), (37, 53), (96, 40), (16, 16), (17, 90)])
def test_fp32_export_matches_torch(exported: dict[str, Path], shape: tuple[int, int]) -> None:
    reference = FrameModel(load_generator(exported["ckpt"])).eval()
    for frame in random_frames(2, shape, seed=shape[0]):
        with torch.inference_mode():
            expected = reference(torch.from_numpy(frame)).numpy()
        got = _ort(exported["fp32"], frame)
        assert got.dtype == np.uint8 and got.shape == shape
        parity = Parity.measure(expected, got, FP32_TOLERANCE)
        assert parity.ok, parity


def test_fp16_export_runs_on_cpu_and_agrees(exported: dict[str, Path]) -> None:
    frame = random_frames(1, (64, 80), seed=7)[0]
    fp32, fp16 = _ort(exported["fp32"], frame), _ort(exported["fp16"], frame)
    assert fp16.dtype == np.uint8 and fp16.shape == frame.shape
    parity = Parity.measure(fp32, fp16, FP16_TOLERANCE)
    assert parity.ok, parity
    assert not np.array_equal(fp32, frame)  # the model does change the image


def test_check_graph_rejects_unfolded_batchnorm_and_float_io(tmp_path: Path) -> None:
    net = load_generator(make_checkpoint(tmp_path / "g.pt")).eval()
    x = torch.rand(1, 1, 32, 32)
    raw = tmp_path / "raw.onnx"
    torch.onnx.export(net, (x,), str(raw), dynamo=True, external_data=False, optimize=False, verbose=False)
    with pytest.raises(WeightsError, match="raw.onnx: batch norm was not folded"):
        check_graph(onnx.load(str(raw)), name=str(raw))
    float_io = tmp_path / "float_io.onnx"
    torch.onnx.export(fold_batchnorm(net), (x,), str(float_io), dynamo=True, external_data=False, verbose=False)
    with pytest.raises(WeightsError, match="float_io.onnx: expected one input named 'frame'"):
        check_graph(onnx.load(str(float_io)), name=str(float_io))


def test_foreign_and_corrupt_checkpoints_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pt: not a usdespeckle-ckpt-1"):
        load_generator(foreign)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(make_checkpoint(tmp_path / "whole.pt").read_bytes()[:300])  # a truncated download
    with pytest.raises(CheckpointError, match="corrupt.pt"):
        load_generator(corrupt)
    wrong_format = tmp_path / "wrong.pt"
    torch.save({"format": "other-1", "generator": {}, "generator_config": {}}, wrong_format)
    with pytest.raises(CheckpointError, match="other-1"):
        load_generator(wrong_format)
    mismatched = tmp_path / "mismatch.pt"
    payload = torch.load(make_checkpoint(tmp_path / "ok.pt"), weights_only=True)
    payload["generator_config"]["width"] = 16
    torch.save(payload, mismatched)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_generator(mismatched)
    assert export_main(["--checkpoint", str(foreign), "--out", str(tmp_path / "x.onnx")]) != 0
    assert "foreign.pt" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_black_surroundings_stay_black_and_isolated_black_pixels_are_despeckled(exported: dict[str, Path]) -> None:
    from scipy.ndimage import maximum_filter

    from engine.torch_model import BLACK

    frame = random_frames(1, (48, 64), seed=4)[0].copy()
    frame[frame == 0] = 1
    frame[:, :20] = 0  # a letterbox bar / the outside of a sector
    frame[30, 50] = 0  # one black pixel inside tissue
    reference = FrameModel(load_generator(exported["ckpt"])).eval()
    with torch.inference_mode():
        expected = reference(torch.from_numpy(frame)).numpy()
    got = _ort(exported["fp32"], frame)
    background = maximum_filter(frame, BLACK, mode="constant") == 0
    assert background[:, :16].all() and not background[:, 16:].any()
    assert (expected[background] == 0).all() and (got[background] == 0).all()
    assert expected[30, 50] > 0  # despeckled like its neighbours, not forced to black
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_unfolded_frame_model_is_the_same_function(exported: dict[str, Path]) -> None:
    """The latency benchmarks' eager reference (batch norm kept) computes what the engine computes."""
    from benchmarks.modelfiles import eager_baseline

    net = load_generator(exported["ckpt"])
    unfolded = FrameModel(net, fold=False).eval()
    assert count_batchnorm(unfolded) > 0 and count_batchnorm(FrameModel(net)) == 0
    frame = random_frames(1, (40, 56), seed=5)[0]
    frame[:, :12] = 0
    with torch.inference_mode():
        folded = FrameModel(net).eval()(torch.from_numpy(frame)).numpy()
        eager = unfolded(torch.from_numpy(frame)).numpy()
    assert np.abs(folded.astype(int) - eager.astype(int)).max() <= 1
    np.testing.assert_array_equal(eager_baseline(exported["ckpt"])(frame), eager)


def test_edge_context_is_the_receptive_field_and_changes_only_the_edges(exported: dict[str, Path]) -> None:
    from training.models import DRNN

    assert receptive_radius(DRNN()) == 22 and edge_context(DRNN()) == 24  # 3 + 6 x 3 + 1, rounded up to 8
    net = load_generator(exported["ckpt"])  # width 8, 2 blocks: 3 + 6 + 1 = 10 -> 16
    assert receptive_radius(net) == 10 and FrameModel(net).context == 16
    meta = ort.InferenceSession(str(exported["fp32"]), providers=["CPUExecutionProvider"]).get_modelmeta()
    assert meta.custom_metadata_map["edge_context"] == "16"
    frame = random_frames(1, (60, 70), seed=9)[0]
    with torch.inference_mode():
        mirrored = FrameModel(net).eval()(torch.from_numpy(frame)).numpy().astype(int)
        zero = FrameModel(net, context=0).eval()(torch.from_numpy(frame)).numpy().astype(int)
    inside = (slice(10, -10), slice(10, -10))  # beyond the receptive field of every edge
    assert np.abs(mirrored - zero)[inside].max() <= 1  # same arithmetic; rounding of other conv blockings at most
    assert np.mean(mirrored[inside] == zero[inside]) > 0.999
    assert np.abs(mirrored - zero)[:2].mean() > 1.0  # the outer rows do change
    with pytest.raises(ValueError, match="context must be >= 0"):
        FrameModel(net, context=-1)


def _box7() -> torch.nn.Conv2d:
    """A 7x7 mean filter with zero padding: the simplest network whose edges see the padding."""
    box = torch.nn.Conv2d(1, 1, 7, padding=3, bias=False)
    torch.nn.init.constant_(box.weight, 1 / 49)
    return box


def test_edge_context_removes_the_seam_of_zero_padding() -> None:
    """A 7x7 box filter with zero padding darkens a frame's outer 2 pixels by about a third
    (``benchmarks.edges``); with the mirrored edge context the seam is gone."""
    from benchmarks.edges import seams

    box = _box7()
    frames = np.stack(random_frames(8, (80, 80), seed=4))

    def runner(context: int | None):
        model = FrameModel(box, context=context).eval()
        return lambda f: model(torch.from_numpy(f)).numpy()

    mean = float(frames.mean())
    plain, mirrored = seams(runner(0), frames, margin=12), seams(runner(None), frames, margin=12)
    assert all(v < -0.25 * mean for v in plain.values()), plain  # the outer 2 pixels keep 4/7 and 5/7
    assert all(abs(v) < 0.05 * mean for v in mirrored.values()), mirrored  # what is left: mirrored content


def test_fill_takes_nearby_tissue_outside_and_leaves_vessels_and_other_frames_alone() -> None:
    frame = random_frames(1, (48, 72), seed=6)[0].copy()
    frame[frame == 0] = 1  # tissue without black pixels: nothing to fill
    x = torch.from_numpy(frame).float().div(255)[None, None]
    assert torch.equal(fill_background(x, *black_windows(torch.from_numpy(frame)), 6), x)
    frame[:, :24] = 0  # the outside of a sector, 24 columns from the frame's left border
    frame[20:32, 40:52] = 0  # an anechoic vessel inside tissue: black, but no straight path out
    frame[47, 60] = 0  # a black speckle pixel on the border
    x = torch.from_numpy(frame).float().div(255)[None, None]
    filled = fill_background(x, *black_windows(torch.from_numpy(frame)), 6)
    assert torch.equal(filled[..., 24:], x[..., 24:])  # vessel and border pixel untouched
    assert float(filled[..., :, :24].min()) > 0  # every black column within 6 x 4 pixels is filled
    near = filled[..., :, 18:24].mean() / x[..., :, 24:30].mean()
    assert 0.8 < float(near) < 1.2  # with the brightness of the tissue next to it


def test_fill_removes_the_darkening_next_to_black_surroundings() -> None:
    """A box filter next to a black bar: without the fill the pixels next to the bar lose part of
    their neighbourhood to the black; with it they keep the tissue's brightness."""
    box = _box7()
    frame = random_frames(1, (64, 80), seed=8)[0].copy()
    frame[frame == 0] = 1
    frame[:, :30] = 0
    with torch.inference_mode():
        filled = FrameModel(box).eval()(torch.from_numpy(frame)).numpy().astype(float)
        plain = FrameModel(box, context=0).eval()(torch.from_numpy(frame)).numpy().astype(float)
    edge, inside = (slice(None), slice(30, 32)), (slice(None), slice(36, 44))
    assert plain[edge].mean() < 0.8 * plain[inside].mean()  # darkened by the black beside it
    assert abs(filled[edge].mean() / filled[inside].mean() - 1) < 0.1
