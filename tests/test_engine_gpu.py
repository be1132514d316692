"""GPU backends: CUDA slots with torch compute, FP16 agreement, pipelining, memory, TensorRT.

Every test here needs a CUDA GPU; the TensorRT ones also need TensorRT.  They are skipped with
the reason otherwise (the CPU suite covers the same contracts on the CPU backends).
"""

from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="GPU tests need torch")
from engine_testutil import make_checkpoint, random_frames  # noqa: E402

from engine.base import FrameError  # noqa: E402
from engine.onnx_export import FP16_TOLERANCE, Parity, export_checkpoint  # noqa: E402
from engine.registry import create_despeckler  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
HAS_CUDA_PYTHON = importlib.util.find_spec("cuda") is not None
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None

needs_cuda = pytest.mark.skipif(
    not (HAS_CUDA and HAS_CUDA_PYTHON), reason="needs a CUDA GPU and NVIDIA's cuda-python (the [gpu] extra)"
)
needs_tensorrt = pytest.mark.skipif(
    not (HAS_CUDA and HAS_CUDA_PYTHON and HAS_TENSORRT), reason="needs a CUDA GPU, cuda-python and TensorRT"
)
pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gpu")
    ckpt = make_checkpoint(root / "drnn.pt", seed=4)
    return {
        "pt": ckpt,
        "onnx": export_checkpoint(ckpt, root / "drnn.onnx"),
        "onnx16": export_checkpoint(ckpt, root / "drnn_fp16.onnx", fp16=True),
    }


@pytest.fixture(scope="module")
def cpu_reference(files: dict[str, Path]):
    with create_despeckler("onnxruntime", files["onnx"], levels="off") as d:
        yield d


def _check_in_order(despeckler, frames: list[np.ndarray]) -> None:
    one_by_one = [despeckler.infer(f) for f in frames]
    assert len({o.tobytes() for o in one_by_one}) == len(frames)
    handles = [despeckler.submit(f) for f in frames]
    for handle, expected in zip(handles, one_by_one, strict=True):
        np.testing.assert_array_equal(handle.result(), expected)


@needs_cuda
@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_torch_cuda_slots_in_order_and_fp16_agrees(files, cpu_reference, cuda_graphs: bool) -> None:
    with create_despeckler("torch", files["pt"], device="cuda", cuda_graphs=cuda_graphs, in_flight=3, levels="off") as gpu:
        assert "cuda" in gpu.describe() and "fp16" in gpu.describe()
        frames = [*random_frames(8, (64, 96), seed=1), *random_frames(4, (37, 53), seed=2)]
        _check_in_order(gpu, frames)
        for frame in random_frames(3, (256, 256), seed=3):
            parity = Parity.measure(cpu_reference.infer(frame), gpu.infer(frame), FP16_TOLERANCE)
            assert parity.ok, parity


@needs_cuda
def test_pipelined_throughput_beats_one_at_a_time() -> None:
    """The full-size shipped DRNN at 512x512, where the GPU's compute is what copies and the next
    frame's launches can hide behind.  (A tiny DRNN is bound by kernel launches; there the slots'
    bookkeeping costs more than the overlap gains.)  Median of 3 alternating rounds per mode."""
    from engine.weights import WEIGHTS_DIR

    frames = random_frames(8, (512, 512), seed=5) * 4
    with create_despeckler("torch", WEIGHTS_DIR / "drnn.pt", device="cuda", in_flight=3, levels="off") as gpu:
        gpu.map(frames[:8])  # warm-up: cuDNN autotuning, allocator
        serial, pipelined = [], []
        for _ in range(3):
            start = time.perf_counter()
            for frame in frames:
                gpu.infer(frame)
            serial.append(time.perf_counter() - start)
            start = time.perf_counter()
            gpu.map(frames)
            pipelined.append(time.perf_counter() - start)
    assert np.median(pipelined) < np.median(serial), f"pipelined {pipelined} s vs one at a time {serial} s"


@needs_cuda
def test_no_memory_growth_over_10000_frames(files) -> None:
    from engine.cuda_slots import check, cudart

    frames = random_frames(16, (64, 64), seed=6)
    with create_despeckler("torch", files["pt"], device="cuda", in_flight=3, levels="off") as gpu:
        gpu.map(frames * 10)
        torch.cuda.synchronize()
        free_before = check(cudart.cudaMemGetInfo())[0]
        allocated_before = torch.cuda.memory_allocated()
        for _ in gpu.imap(frames[i % 16] for i in range(10_000)):
            pass
        torch.cuda.synchronize()
        free_after = check(cudart.cudaMemGetInfo())[0]
        assert torch.cuda.memory_allocated() <= allocated_before
        assert free_before - free_after < 16 << 20, f"free GPU memory fell by {(free_before - free_after) >> 20} MiB"


@needs_tensorrt
def test_tensorrt_engine_builds_caches_and_agrees(files, cpu_reference, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    from engine.trt_build import STRONGLY_TYPED_ONLY
    from engine.trt_cache import Profile

    profile = Profile((32, 32), (128, 128), (256, 256))
    onnx = files["onnx16"] if STRONGLY_TYPED_ONLY else files["onnx"]
    with caplog.at_level(logging.INFO):
        with create_despeckler("tensorrt", onnx, profile=profile, cache_dir=tmp_path, levels="off") as trt_d:
            frames = [*random_frames(6, (128, 128), seed=7), *random_frames(3, (33, 250), seed=8)]
            _check_in_order(trt_d, frames)
            for frame in frames:
                parity = Parity.measure(cpu_reference.infer(frame), trt_d.infer(frame), FP16_TOLERANCE)
                assert parity.ok, parity
            with pytest.raises(FrameError, match="outside the engine's profile"):
                trt_d.infer(np.zeros((300, 64), np.uint8))
            engine_file = trt_d.engine_path
        built_at = engine_file.stat().st_mtime_ns
        with create_despeckler("tensorrt", onnx, profile=profile, cache_dir=tmp_path, levels="off") as again:
            assert again.engine_path == engine_file
    assert engine_file.stat().st_mtime_ns == built_at
    assert "using the cached engine" in caplog.text


@needs_cuda
@pytest.mark.parametrize("checkpoint", ["drnn.pt", "drnn_fast.pt"])
def test_shipped_weights_in_fp16_on_cuda_agree_with_the_cpu_export(checkpoint: str) -> None:
    """Each shipped model (not a random one) through the CUDA slots in FP16, against its float32
    ONNX export on ONNX Runtime's CPU provider, on simulated low-probe frames of two sizes."""
    from engine.weights import WEIGHTS_DIR
    from training.sim import simulate_pair

    frames = [simulate_pair(seed, size)[0] for seed, size in ((21, (256, 256)), (22, (256, 256)), (23, (200, 320)))]
    onnx = WEIGHTS_DIR / checkpoint.replace(".pt", ".onnx")
    with create_despeckler("onnxruntime", onnx, device="cpu", levels="off") as cpu, \
            create_despeckler("torch", WEIGHTS_DIR / checkpoint, device="cuda", levels="off") as gpu:
        for frame in frames:
            parity = Parity.measure(cpu.infer(frame), gpu.infer(frame), FP16_TOLERANCE)
            assert parity.ok, f"{checkpoint} on a {frame.shape} frame: {parity}"


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_weights_auto_runs_the_default_model_on_a_gpu() -> None:
    """The live chain's ``weights="auto"``: where torch runs on CUDA, the default model, not the
    fast one that ``auto`` picks for the CPU (tests/test_engine_backends.py)."""
    from engine.weights import WEIGHTS_DIR

    with create_despeckler("torch", "auto", device="cuda", levels="off") as gpu, \
            create_despeckler("torch", "auto", levels="off") as by_auto_device:
        assert gpu.weights == WEIGHTS_DIR / "drnn.pt" and by_auto_device.weights == WEIGHTS_DIR / "drnn.pt"
        frame = random_frames(1, (64, 80), seed=5)[0]
        assert gpu.infer(frame).shape == frame.shape
