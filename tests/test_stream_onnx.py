"""The chain with a real (tiny) DRNN in ONNX Runtime, instead of the identity backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_stream_chain import free_endpoint, running

from engine.registry import create_despeckler
from stream.client import Subscriber
from stream.config import ChainConfig, OutputConfig, SourceConfig
from stream.sources import SIM_PIXEL_MM

torch = pytest.importorskip("torch", reason="making test weights needs torch (the [train] extra)")
pytest.importorskip("onnxruntime", reason="the onnxruntime backend needs onnxruntime")
from engine_testutil import make_checkpoint  # noqa: E402

from engine.onnx_export import export_checkpoint  # noqa: E402


def test_chain_publishes_what_onnxruntime_computes(tmp_path: Path) -> None:
    model = export_checkpoint(make_checkpoint(tmp_path / "drnn.pt", seed=3), tmp_path / "drnn.onnx")
    publish = free_endpoint()
    cfg = ChainConfig(
        source=SourceConfig(spec="sim", fps=10.0, size=(32, 40)),
        output=OutputConfig(publish=publish),
        backend="onnxruntime",
        weights=model,
    )
    with Subscriber(publish) as sub, running(cfg):
        received = sub.receive(30.0)
    assert received is not None
    image, meta = received
    assert image.shape == (32, 40) and image.dtype == np.uint8
    # the same model run directly must give the same frame as the chain published
    from training.sim import sweep_frames

    frames = sweep_frames(size=(32, 40), seed=0, pixel_mm=SIM_PIXEL_MM)
    source = next(f for i, f in enumerate(frames) if i == meta["seq"])
    with create_despeckler("onnxruntime", model) as engine:
        np.testing.assert_array_equal(image, engine.infer(source))


@pytest.mark.parametrize("weights", [None, Path("default")])
def test_chain_runs_the_fast_model_on_a_cpu_unless_told(weights: Path | None) -> None:
    """The live chain's weights default to ``auto``: with ONNX Runtime on the CPU it publishes the
    shipped fast model's output; ``--weights default`` runs the default model there."""
    from engine.weights import WEIGHTS_DIR
    from training.sim import sweep_frames

    expected = WEIGHTS_DIR / ("drnn_fast.onnx" if weights is None else "drnn.onnx")
    if not expected.is_file():
        pytest.skip(f"{expected.name} is not shipped here")
    publish = free_endpoint()
    cfg = ChainConfig(source=SourceConfig(spec="sim", fps=10.0, size=(32, 40)), output=OutputConfig(publish=publish),
                      backend="onnxruntime", weights=weights)
    with Subscriber(publish) as sub, running(cfg):
        received = sub.receive(30.0)
    assert received is not None
    image, meta = received
    source = next(f for i, f in enumerate(sweep_frames(size=(32, 40), seed=0, pixel_mm=SIM_PIXEL_MM))
                  if i == meta["seq"])
    with create_despeckler("onnxruntime", expected) as engine:
        np.testing.assert_array_equal(image, engine.infer(source))
