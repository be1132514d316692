"""Options and fixtures of the latency benchmarks (``pytest benchmarks --benchmark-only``).

* ``--bench-sizes 256x256,512x512``: frame sizes of every benchmark (default: 256x256, 512x512,
  600x800 and 1080x1920, except that the full DRNN on a CPU skips the two large ones unless
  ``--bench-big`` is given: about 10 s and 50 s per frame on 2 cores).
* ``--bench-rounds N``: timed rounds of the inference benchmarks (default: 3 on a CPU, 50 on a GPU).
* ``--bench-short``: the smoke mode of the test suite (``tests/test_benchmarks_smoke.py``): one
  64x64 size, a tiny DRNN, one round.  Times are meaningless there; only that the code runs is checked.

pyproject's ``addopts`` disable benchmarks for the main test suite (``--benchmark-disable``);
``--benchmark-only`` turns them back on here, so both commands work as written.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.modelfiles import ModelFiles, model_files
from engine.weights import WEIGHTS_DIR
from training.argparsing import parse_frame_size

ALL_SIZES = ((256, 256), (512, 512), (600, 800), (1080, 1920))
#: largest frame the full DRNN is benchmarked at on a CPU without --bench-big (pixels).
CPU_DEFAULT_MAX_PIXELS = 512 * 512
SHORT_SIZE = (64, 64)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("usdespeckle benchmarks")
    group.addoption("--bench-sizes", default=None, help="comma-separated HxW frame sizes (default: all four, see conftest)")
    group.addoption("--bench-big", action="store_true", default=False, help="also run the full DRNN on a CPU at 600x800 and 1080x1920")
    group.addoption("--bench-rounds", type=int, default=None, help="timed rounds per inference benchmark (default: CPU 3, GPU 50)")
    group.addoption("--bench-short", action="store_true", default=False, help="smoke mode: 64x64, tiny DRNN, one round")


def pytest_configure(config: pytest.Config) -> None:
    # Runs before pytest-benchmark's own (trylast) pytest_configure reads the options.
    if config.getoption("benchmark_only", False):
        config.option.benchmark_enable = True


def _parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    sizes = []
    for item in text.split(","):
        try:
            sizes.append(parse_frame_size(item, square=False))
        except ValueError:
            raise pytest.UsageError(f"--bench-sizes: expected HxW[,HxW...], got {item!r}") from None
    return tuple(sizes)


def sizes(config: pytest.Config) -> tuple[tuple[int, int], ...]:
    """The frame sizes of this run (see the module docstring)."""
    if config.getoption("--bench-short"):
        return (SHORT_SIZE,)
    text = config.getoption("--bench-sizes")
    return _parse_sizes(text) if text else ALL_SIZES


def _cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


@dataclass(frozen=True)
class BackendCase:
    """One backend as the benchmarks build it: ``create_despeckler(backend, weights, **options)``."""

    id: str
    backend: str
    gpu: bool
    options: dict[str, Any] = field(default_factory=dict)
    missing: Callable[[], str | None] = lambda: None
    #: a model file of its own instead of the session's :class:`ModelFiles` (the shipped INT8 file, the fast model).
    weights: Path | None = None
    #: the float32 ONNX file whose FLOPs the case is costed by, if not its own (the file an INT8 export came from).
    costed_by: Path | None = None
    #: the full DRNN's cost: on a CPU, sizes above 512x512 only with ``--bench-big``.
    full_size: bool = True


def _needs(module: str) -> Callable[[], str | None]:
    return lambda: None if importlib.util.find_spec(module) else f"{module} is not installed"


def _needs_cuda(module: str) -> Callable[[], str | None]:
    def check() -> str | None:
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed"
        return None if _cuda() else "no CUDA GPU visible to torch"

    return check


def _needs_file(path: Path, how: str) -> Callable[[], str | None]:
    return lambda: None if path.is_file() else f"{path} is not there ({how})"


def _needs_all(*checks: Callable[[], str | None]) -> Callable[[], str | None]:
    """The first reason any of ``checks`` gives, else ``None``."""
    return lambda: next((reason for reason in (check() for check in checks) if reason), None)


#: the INT8 export for CPUs (engine.int8; shipped with model version 3, or one you made).
INT8 = WEIGHTS_DIR / "drnn_int8.onnx"
#: the small model for CPUs (width 16, distilled from the shipped model; weights/MODEL_CARD.md).
FAST = WEIGHTS_DIR / "drnn_fast.onnx"
#: the fast model's checkpoint, for the torch backend on a GPU.
FAST_PT = WEIGHTS_DIR / "drnn_fast.pt"
#: the fast model's INT8 export (engine.int8, every block quantized).
FAST_INT8 = WEIGHTS_DIR / "drnn_fast_int8.onnx"
_FAST_HOW = "the fast model ships in weights/, see weights/MODEL_CARD.md"

BACKENDS = (
    BackendCase("onnxruntime-cpu", "onnxruntime", False, {"device": "cpu"}, _needs("onnxruntime")),
    BackendCase("onnxruntime-int8", "onnxruntime", False, {"device": "cpu"},
                _needs_file(INT8, "make one with python -m engine.quantize --onnx weights/drnn.onnx --out "
                           "weights/drnn_int8.onnx"),
                weights=INT8, costed_by=WEIGHTS_DIR / "drnn.onnx"),
    BackendCase("onnxruntime-fast", "onnxruntime", False, {"device": "cpu"},
                _needs_file(FAST, _FAST_HOW), weights=FAST, full_size=False),
    BackendCase("onnxruntime-fast-flip", "onnxruntime", False, {"device": "cpu", "flip_average": True},
                _needs_file(FAST, _FAST_HOW), weights=FAST, full_size=False),
    BackendCase("onnxruntime-fast-int8", "onnxruntime", False, {"device": "cpu"},
                _needs_file(FAST_INT8, _FAST_HOW), weights=FAST_INT8, costed_by=FAST, full_size=False),
    BackendCase("torch-cpu", "torch", False, {"device": "cpu"}, _needs("torch")),
    BackendCase("torch-cuda", "torch", True, {"device": "cuda"}, _needs_cuda("torch")),
    BackendCase("torch-cuda-graphs", "torch", True, {"device": "cuda", "cuda_graphs": True}, _needs_cuda("torch")),
    BackendCase("torch-cuda-graphs-fast", "torch", True, {"device": "cuda", "cuda_graphs": True},
                _needs_all(_needs_cuda("torch"), _needs_file(FAST_PT, _FAST_HOW)), weights=FAST_PT, costed_by=FAST),
    BackendCase("torch-cuda-graphs-flip", "torch", True, {"device": "cuda", "cuda_graphs": True, "flip_average": True},
                _needs_cuda("torch")),
    BackendCase("tensorrt", "tensorrt", True, {}, _needs_cuda("tensorrt")),
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    config = metafunc.config
    run_sizes = sizes(config)
    if "backend_case" in metafunc.fixturenames:
        params = []
        for case in BACKENDS:
            for h, w in run_sizes:
                marks = []
                reason = case.missing()
                big = (h * w > CPU_DEFAULT_MAX_PIXELS and case.full_size and not case.gpu
                       and not config.getoption("--bench-big"))
                if reason:
                    marks.append(pytest.mark.skip(reason=f"{case.id}: {reason}"))
                elif big and not config.getoption("--bench-sizes"):
                    marks.append(pytest.mark.skip(reason=f"{case.id} at {h}x{w}: full DRNN on a CPU is slow; run with --bench-big"))
                params.append(pytest.param(case, (h, w), id=f"{case.id}-{h}x{w}", marks=marks))
        metafunc.parametrize(("backend_case", "size"), params)
    elif "size" in metafunc.fixturenames:
        metafunc.parametrize("size", run_sizes, ids=[f"{h}x{w}" for h, w in run_sizes])


@pytest.fixture(scope="session")
def drnn_files(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    """The shipped weights, else a random full-size DRNN (tiny in --bench-short) exported once per session."""
    return model_files(tmp_path_factory.mktemp("drnn"), tiny=request.config.getoption("--bench-short"))


@pytest.fixture
def rounds(request: pytest.FixtureRequest) -> Callable[[bool], int]:
    """``rounds(gpu)``: timed rounds of an inference benchmark."""
    config = request.config

    def count(gpu: bool) -> int:
        if config.getoption("--bench-short"):
            return 1
        return config.getoption("--bench-rounds") or (50 if gpu else 3)

    return count


@pytest.fixture
def frame(size: tuple[int, int]) -> np.ndarray:
    """A ``uint8`` frame of random grey levels of the test's ``size`` (the DRNN's cost does not depend on content)."""
    return np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8)
