"""The CPU backends behind one interface: parity, odd sizes, order of pipelined results, errors."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="making test weights needs torch (the [train] extra)")
from engine_testutil import make_checkpoint, random_frames  # noqa: E402

from engine import weights as weights_module  # noqa: E402
from engine.base import BackendUnavailable, FrameError, InputSpec  # noqa: E402
from engine.onnx_export import export_checkpoint  # noqa: E402
from engine.registry import create_despeckler, runs_on_cpu  # noqa: E402
from engine.weights import WeightsError, WeightsNotFound, resolve_weights  # noqa: E402


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("backends")
    ckpt = make_checkpoint(root / "drnn.pt", seed=1)
    return {"pt": ckpt, "onnx": export_checkpoint(ckpt, root / "drnn.onnx")}


@pytest.fixture(scope="module")
def ort_despeckler(model_files: dict[str, Path]):
    with create_despeckler("onnxruntime", model_files["onnx"], threads=1, levels="off") as d:
        yield d


@pytest.fixture(scope="module")
def torch_despeckler(model_files: dict[str, Path]):
    with create_despeckler("torch", model_files["pt"], device="cpu", threads=1, levels="off") as d:
        yield d


@pytest.mark.parametrize("shape", [(37, 53), (64, 32), (16, 16)])
def test_onnxruntime_and_torch_agree_on_any_size(ort_despeckler, torch_despeckler, shape: tuple[int, int]) -> None:
    frame = random_frames(1, shape, seed=sum(shape))[0]
    a, b = ort_despeckler.infer(frame), torch_despeckler.infer(frame)
    assert a.dtype == b.dtype == np.uint8 and a.shape == b.shape == shape
    assert int(np.abs(a.astype(int) - b.astype(int)).max()) <= 1


def test_new_frame_size_mid_stream(ort_despeckler) -> None:
    sizes = [(32, 48), (48, 32), (33, 35)]
    frames = [random_frames(1, s, seed=i)[0] for i, s in enumerate(sizes)]
    outs = ort_despeckler.map([*frames, frames[0]])  # back to the first size after two others
    assert [o.shape for o in outs] == [*sizes, sizes[0]]
    np.testing.assert_array_equal(outs[3], outs[0])
    np.testing.assert_array_equal(outs[2], ort_despeckler.infer(frames[2]))


@pytest.mark.parametrize("backend", ["ort_despeckler", "torch_despeckler"])
def test_pipelined_results_come_back_in_submission_order(request: pytest.FixtureRequest, backend: str) -> None:
    despeckler = request.getfixturevalue(backend)
    frames = random_frames(12, (32, 40), seed=5)
    one_by_one = [despeckler.infer(f) for f in frames]
    assert len({o.tobytes() for o in one_by_one}) == len(frames)  # every frame gives its own output
    handles = [despeckler.submit(f) for f in frames]  # more than in_flight: submit must wait, not drop
    for handle, expected in zip(handles[::-1], one_by_one[::-1], strict=True):  # resolve out of order
        np.testing.assert_array_equal(handle.result(), expected)
    mapped = despeckler.map(frames)
    for got, expected in zip(mapped, one_by_one, strict=True):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((32, 32), np.float32), "dtype must be uint8"),
        (np.zeros((32, 32, 3), np.uint8), "grey-scale"),
        (np.zeros((8, 32), np.uint8), "outside the engine's profile"),
        ([[0, 1], [2, 3]], "numpy array"),
    ],
)
def test_bad_frames_raise_frame_error(ort_despeckler, torch_despeckler, frame, message: str) -> None:
    for despeckler in (ort_despeckler, torch_despeckler):
        with pytest.raises(FrameError, match=message):
            despeckler.infer(frame)
        with pytest.raises(FrameError, match=message):
            despeckler.submit(frame)


def test_profile_is_configurable(model_files: dict[str, Path]) -> None:
    spec = InputSpec(min_hw=(32, 32), max_hw=(64, 64))
    with create_despeckler("onnxruntime", model_files["onnx"], spec=spec, threads=1, levels="off") as d:
        assert d.infer(np.zeros((64, 32), np.uint8)).shape == (64, 32)
        with pytest.raises(FrameError, match="65x32 is outside"):
            d.infer(np.zeros((65, 32), np.uint8))


def test_corrupt_and_foreign_models_are_refused(tmp_path: Path, model_files: dict[str, Path]) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(model_files["onnx"].read_bytes()[:200])
    with pytest.raises(WeightsError, match="corrupt.onnx"):
        create_despeckler("onnxruntime", corrupt)
    foreign = tmp_path / "foreign.onnx"
    net = torch.nn.Conv2d(1, 1, 3, padding=1).eval()
    torch.onnx.export(net, (torch.rand(1, 1, 8, 8),), str(foreign), dynamo=True, external_data=False, verbose=False)
    with pytest.raises(WeightsError, match="foreign.onnx: not a despeckler export"):
        create_despeckler("onnxruntime", foreign)
    with pytest.raises(WeightsError, match=r"drnn.pt: the onnxruntime backend needs an \.onnx"):
        create_despeckler("onnxruntime", model_files["pt"])
    with pytest.raises(WeightsNotFound, match="nothing.onnx"):
        create_despeckler("onnxruntime", tmp_path / "nothing.onnx")


def test_missing_default_weights_say_how_to_get_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights_module, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(WeightsNotFound, match="python -m engine.export"):
        create_despeckler("onnxruntime")
    with pytest.raises(WeightsNotFound, match="drnn.pt"):
        create_despeckler("torch", device="cpu")


def test_shipped_model_names_resolve_to_each_backends_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``weights="fast"``: the fast model's checkpoint for torch, its ONNX file for ONNX Runtime;
    a file of that name in the working directory wins; a name without a file for the backend
    says which files the model has."""
    shipped = weights_module.WEIGHTS_DIR
    for name in ("default", "fast", "fast-int8"):
        if not (shipped / f"{weights_module.SHIPPED[name]}.onnx").is_file():
            pytest.skip(f"the {name} model is not shipped here")
    assert resolve_weights(None, (".onnx",)) == shipped / "drnn.onnx"
    assert resolve_weights("default", (".pt",)) == shipped / "drnn.pt"
    assert resolve_weights("fast", (".pt",)) == shipped / "drnn_fast.pt"
    assert resolve_weights(Path("fast"), (".onnx",)) == shipped / "drnn_fast.onnx"
    with create_despeckler("onnxruntime", "fast-int8", threads=1, levels="off") as int8, \
            create_despeckler("torch", "fast", device="cpu", threads=1, levels="off") as eager:
        assert int8.weights == shipped / "drnn_fast_int8.onnx" and eager.weights == shipped / "drnn_fast.pt"
        frame = random_frames(1, (40, 56), seed=9)[0]
        assert int8.infer(frame).shape == frame.shape and eager.infer(frame).shape == frame.shape
    with pytest.raises(WeightsNotFound, match=r"no fast-int8 weights for this backend .*drnn_fast_int8\.pt.*ships as drnn_fast_int8\.onnx"):
        create_despeckler("torch", "fast-int8", device="cpu")
    with pytest.raises(WeightsNotFound, match="weights file not found: fastest"):
        resolve_weights("fastest", (".onnx",))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fast").write_bytes(b"a file of the user's")
    assert resolve_weights("fast", (".onnx",)) == Path("fast")


def test_auto_on_a_cpu_machine_picks_onnxruntime(model_files: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: auto would not pick the CPU backend")
    with caplog.at_level("INFO", logger="engine.registry"):
        despeckler = create_despeckler("auto", model_files["onnx"], threads=1)
    with despeckler:
        assert despeckler.name == "onnxruntime"
        assert "onnxruntime" in despeckler.describe() and "cpu" in despeckler.describe()
        assert "backend auto -> onnxruntime" in caplog.text and "no CUDA GPU" in caplog.text
        assert "--weights fast" not in caplog.text  # weights given: no advice
    with pytest.raises(RuntimeError, match="closed"):
        despeckler.infer(np.zeros((32, 32), np.uint8))
    caplog.clear()
    with caplog.at_level("INFO", logger="engine.registry"), create_despeckler("auto", threads=1) as default:
        assert default.weights.name == "drnn.onnx"
    assert "weights 'fast' (--weights fast) is the shipped model for CPUs" in caplog.text


def test_auto_ignores_an_option_its_pick_does_not_take_and_says_so(
    model_files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """``auto`` may pick a backend that lacks an option meant for another (``cuda_graphs`` is the
    torch backend's; ``threads`` is not TensorRT's): the option is dropped with a log line, while
    naming the backend explicitly still refuses it."""
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: auto would not pick the CPU backend")
    frame = random_frames(1, (24, 40), seed=4)[0]
    with caplog.at_level("INFO", logger="engine.registry"):
        with create_despeckler("auto", model_files["onnx"], threads=1, cuda_graphs=True) as despeckler:
            assert despeckler.name == "onnxruntime"
            assert despeckler.infer(frame).shape == frame.shape
    assert "backend auto -> onnxruntime takes no cuda_graphs; ignored" in caplog.text
    with pytest.raises(TypeError, match="cuda_graphs"):
        create_despeckler("onnxruntime", model_files["onnx"], cuda_graphs=True)


def test_unknown_backend_names_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown backend 'tensorflow'.*onnxruntime"):
        create_despeckler("tensorflow")


def test_weights_auto_is_the_fast_model_on_a_cpu_and_the_default_on_a_gpu(
    caplog: pytest.LogCaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``weights="auto"`` (the live chain's default) follows where the model runs: the fast model's
    file for ONNX Runtime and torch on the CPU, the default model for a CUDA device or TensorRT,
    no weights for the identity backend; a file named ``auto`` wins, as for the shipped names."""
    shipped = weights_module.WEIGHTS_DIR
    if not (shipped / "drnn_fast.onnx").is_file():
        pytest.skip("the fast model is not shipped here")
    assert runs_on_cpu("onnxruntime", {}) and runs_on_cpu("torch", {"device": "cpu"})
    assert not runs_on_cpu("onnxruntime", {"device": "cuda"}) and not runs_on_cpu("torch", {"device": "cuda:0"})
    assert not runs_on_cpu("tensorrt", {})
    assert runs_on_cpu("torch", {}) == (not torch.cuda.is_available())
    with caplog.at_level("INFO", logger="engine.registry"):
        with create_despeckler("onnxruntime", "auto", threads=1) as ort, \
                create_despeckler("torch", Path("auto"), device="cpu", threads=1) as eager, \
                create_despeckler("identity", "auto") as identity:
            assert ort.weights == shipped / "drnn_fast.onnx" and eager.weights == shipped / "drnn_fast.pt"
            frame = random_frames(1, (32, 40), seed=2)[0]
            assert np.array_equal(identity.infer(frame), frame)
    assert caplog.text.count("weights auto -> fast: ") == 2
    caplog.clear()
    if not torch.cuda.is_available():  # a GPU asked for where there is none: the error, no "runs on a GPU" line
        with caplog.at_level("INFO", logger="engine.registry"), pytest.raises(BackendUnavailable, match="no CUDA GPU"):
            create_despeckler("torch", "auto", device="cuda")
        assert "weights auto" not in caplog.text
    monkeypatch.chdir(tmp_path)
    (tmp_path / "auto").write_bytes(b"a file of the user's")
    with pytest.raises(WeightsError, match="auto"):
        create_despeckler("onnxruntime", "auto")


def test_the_fast_model_without_the_preset_mapping_is_named_in_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """The shipped fast model was distilled at the preset grey levels, and its files say so
    (``input_levels``): run with ``levels`` ``off`` or ``range`` it is named in one warning; with
    ``preset``, or the default model (trained on frames as they came), nothing."""
    if not (weights_module.WEIGHTS_DIR / "drnn_fast.onnx").is_file():
        pytest.skip("the fast model is not shipped here")
    with caplog.at_level("WARNING", logger="engine.registry"):
        for weights, levels in (("fast", "preset"), ("default", "off"), ("fast", "off"), ("fast-int8", "range")):
            create_despeckler("onnxruntime", weights, levels=levels, threads=1).close()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2 and all(" was trained on frames at the preset grey levels; " in w for w in warnings)
    assert warnings[0].startswith("drnn_fast.onnx") and "levels 'off'" in warnings[0]
    assert warnings[1].startswith("drnn_fast_int8.onnx") and "levels 'range'" in warnings[1]


@pytest.mark.parametrize("options", [{"levels": "off"}, {"strength": 0.5}, {"levels": "off", "flip_average": True}])
@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_a_submitted_frame_may_be_refilled_at_once(model_files: dict[str, Path], backend: str, options: dict) -> None:
    """A grabber refills its buffer as soon as ``submit`` returns: the result is the first frame's."""
    first, second = random_frames(2, (48, 64), seed=21)
    weights = model_files["onnx" if backend == "onnxruntime" else "pt"]
    with create_despeckler(backend, weights, threads=1, **options) as d:
        expected = d.infer(first)
        buffer = first.copy()
        handle = d.submit(buffer)
        buffer[:] = second
        np.testing.assert_array_equal(handle.result(), expected)

        def refilled():
            buffer[:] = first
            yield buffer
            buffer[:] = second
            yield buffer

        np.testing.assert_array_equal(d.map(refilled())[0], expected)


def test_a_graph_that_changes_the_frame_shape_is_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from engine.onnx_export import INPUT_NAME, OUTPUT_NAME

    graph = helper.make_graph([helper.make_node("Transpose", [INPUT_NAME], [OUTPUT_NAME], perm=[1, 0])], "t",
                              [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["h", "w"])],
                              [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.UINT8, ["w", "h"])])
    path = tmp_path / "transpose.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    with create_despeckler("onnxruntime", path, levels="off") as d:
        with pytest.raises(WeightsError, match=r"transpose.onnx: not a despeckler export: a 48x64 frame came out 64x48"):
            d.infer(random_frames(1, (48, 64))[0])


def test_a_frame_resized_outside_the_profile_names_the_callers_frame(model_files: dict[str, Path]) -> None:
    with create_despeckler("onnxruntime", model_files["onnx"], spacing_mm=(1.0, 1.0), threads=1) as d:
        with pytest.raises(FrameError, match=r"a 2100x40 frame of 1 x 1 mm pixels would be resized to 4200x80 for "
                                             r"the model, outside the engine's profile"):
            d.infer(np.full((2100, 40), 100, np.uint8))


def test_options_of_the_wrong_kind_are_refused() -> None:
    with pytest.raises(ValueError, match="backend 'identity' runs no model and takes no weights, got fast"):
        create_despeckler("identity", weights="fast")
    for strength in (True, "0.5", None):
        with pytest.raises(ValueError, match="strength must be a number between 0 and 1"):
            create_despeckler("identity", strength=strength)


def test_frames_sent_while_another_thread_closes_are_told_it_is_closed(model_files: dict[str, Path]) -> None:
    """Every call that loses the race with ``close`` gets the despeckler's own "closed" error, not
    the worker pool's; the calls before it get their frames."""
    frame = random_frames(1, (32, 32), seed=5)[0]
    errors: list[str] = []
    done = []
    d = create_despeckler("onnxruntime", model_files["onnx"], threads=1, levels="off")

    def work() -> None:  # until the despeckler is closed under it
        for _ in range(100_000):
            try:
                done.append(d.infer(frame).shape)
            except RuntimeError as exc:
                errors.append(str(exc))
                return

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    d.close()
    for t in threads:
        t.join()
    assert errors == ["onnxruntime despeckler is closed"] * 3, set(errors)
    assert set(done) <= {(32, 32)}
