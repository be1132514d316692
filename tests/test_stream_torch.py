"""The chain with the torch backend and a shipped model by name (``weights="fast"``), on the CPU
and, where there is one, on a CUDA GPU (FP16 through the CUDA slots, with and without CUDA graphs):
what it publishes is what the model's float32 ONNX export computes, within the backend's tolerance."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from test_stream_chain import free_endpoint, running

torch = pytest.importorskip("torch", reason="the torch backend needs torch (the [train] extra)")

from engine.onnx_export import FP16_TOLERANCE, FP32_TOLERANCE, Parity  # noqa: E402
from engine.registry import create_despeckler  # noqa: E402
from engine.weights import WEIGHTS_DIR  # noqa: E402
from stream.client import Subscriber  # noqa: E402
from stream.config import ChainConfig, OutputConfig, SourceConfig  # noqa: E402
from stream.sources import SIM_PIXEL_MM  # noqa: E402

HAS_CUDA = torch.cuda.is_available() and importlib.util.find_spec("cuda") is not None
GPU_MARKS = [
    pytest.mark.gpu,
    pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU and NVIDIA's cuda-python (the [gpu] extra)"),
]
DEVICES = [
    pytest.param("cpu", FP32_TOLERANCE, id="cpu"),
    pytest.param("cuda", FP16_TOLERANCE, id="cuda", marks=GPU_MARKS),
    pytest.param("cuda-graphs", FP16_TOLERANCE, id="cuda-graphs", marks=GPU_MARKS),
]


@pytest.mark.parametrize(("device", "tolerance"), DEVICES)
def test_chain_on_torch_publishes_what_the_fast_models_export_computes(device: str, tolerance) -> None:
    if not (WEIGHTS_DIR / "drnn_fast.pt").is_file():
        pytest.skip("the fast model is not shipped here")
    publish = free_endpoint()
    cfg = ChainConfig(source=SourceConfig(spec="sim", fps=10.0, size=(64, 80)), output=OutputConfig(publish=publish),
                      backend="torch", weights=Path("fast"), cuda_graphs=device == "cuda-graphs")
    if device == "cpu" and torch.cuda.is_available():
        pytest.skip("--backend torch picks the GPU on this machine; the cuda case covers it")
    got = []
    with Subscriber(publish) as sub, running(cfg):
        while len(got) < 3:
            received = sub.receive(60.0)
            assert received is not None, "no frame within 60 s"
            got.append(received)
    from training.sim import sweep_frames

    wanted = {meta["seq"] for _, meta in got}
    sources = {i: f for i, f in zip(range(max(wanted) + 1), sweep_frames(size=(64, 80), seed=0, pixel_mm=SIM_PIXEL_MM),
                                    strict=False) if i in wanted}
    with create_despeckler("onnxruntime", WEIGHTS_DIR / "drnn_fast.onnx", device="cpu") as reference:
        for image, meta in got:
            assert image.shape == (64, 80) and image.dtype == np.uint8
            parity = Parity.measure(reference.infer(sources[meta["seq"]]), image, tolerance)
            assert parity.ok, f"frame {meta['seq']} on {device}: {parity}"
