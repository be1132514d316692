"""Latency of the despeckler backends on one frame size: warm-up, then percentiles per frame.

    python -m benchmarks.backends --backends onnxruntime torch --size 256x256 --frames 20

The backends despeckle the same fixed random frames one at a time, taking turns frame by frame
(``infer``, so the number is latency, not pipelined throughput); the clock is read around each call, which returns only
when the frame is back in host memory.  Reports p50 / p90 / max in milliseconds and each
backend's p50 relative to the first backend's.  Without ``--checkpoint`` the shipped weights are
used, or where they are missing a randomly initialised full-size DRNN (1.39 MFLOP per pixel, the
real architecture's cost) exported to a temporary folder (:func:`benchmarks.modelfiles.model_files`).
"""

from __future__ import annotations

import contextlib
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.modelfiles import ModelFiles, checkpoint_files, model_files, weights_for
from engine.base import BackendUnavailable, Despeckler, threads_arg
from engine.registry import create_despeckler
from engine.trt_cache import parse_hw
from engine.weights import WeightsError
from training.argparsing import OneLineParser, non_negative_int, positive_int

__all__ = ["BenchConfig", "Timing", "bench_backends", "run", "main"]


@dataclass(frozen=True)
class BenchConfig:
    backends: tuple[str, ...] = ("onnxruntime", "torch")
    size: tuple[int, int] = (256, 256)
    frames: int = 20
    warmup: int = 3
    threads: int | None = None
    checkpoint: Path | None = None
    device: str = "cpu"


@dataclass(frozen=True)
class Timing:
    backend: str
    describe: str
    ms: tuple[float, ...]

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.ms, q))


def bench_backends(despecklers: dict[str, Despeckler], frames: list[np.ndarray], warmup: int) -> list[Timing]:
    """Time ``infer`` of every despeckler on each of ``frames`` after ``warmup`` untimed calls.

    The backends take turns frame by frame, so a change in the machine's load during the run
    affects all of them alike and their ratio stays meaningful on a shared machine.
    """
    for despeckler in despecklers.values():
        for frame in frames[:warmup]:
            despeckler.infer(frame)
    ms: dict[str, list[float]] = {name: [] for name in despecklers}
    for frame in frames:
        for name, despeckler in despecklers.items():
            start = time.perf_counter()
            despeckler.infer(frame)
            ms[name].append(1e3 * (time.perf_counter() - start))
    return [Timing(name, d.describe(), tuple(ms[name])) for name, d in despecklers.items()]


def _files(config: BenchConfig, folder: Path) -> ModelFiles:
    return model_files(folder) if config.checkpoint is None else checkpoint_files(config.checkpoint, folder)


def run(config: BenchConfig) -> list[Timing]:
    """Benchmark every backend of ``config``; prints a table and returns the timings."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, config.size, dtype=np.uint8) for _ in range(config.frames)]
    options = {} if config.threads is None else {"threads": config.threads}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        files = _files(config, Path(tmp))
        despecklers = {}
        for backend in config.backends:
            path = weights_for(backend, files)
            extra = {"device": config.device, **options} if backend in ("torch", "onnxruntime") else {}
            despecklers[backend] = stack.enter_context(create_despeckler(backend, path, levels="off", **extra))
        timings = bench_backends(despecklers, frames, config.warmup)
    h, w = config.size
    print(f"{h}x{w} frames, {config.frames} timed after {config.warmup} warm-up, {platform.processor() or platform.machine()}")
    print(files.note)
    base = timings[0].percentile(50)
    for t in timings:
        print(f"{t.backend:12s} p50 {t.percentile(50):8.1f} ms  p90 {t.percentile(90):8.1f} ms  "
              f"max {max(t.ms):8.1f} ms  p50 x{t.percentile(50) / base:5.2f}  [{t.describe}]")
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m benchmarks.backends", description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["onnxruntime", "torch"], help="backends to time, first is the reference")
    parser.add_argument("--size", type=parse_hw, default=(256, 256), metavar="HxW", help="frame size (default 256x256)")
    parser.add_argument("--frames", type=positive_int, default=20, help="timed frames per backend (default %(default)s)")
    parser.add_argument("--warmup", type=non_negative_int, default=3, help="untimed frames first (default %(default)s)")
    parser.add_argument("--threads", type=threads_arg, default=None,
                        help="CPU threads of the CPU backends (default, or 0: the backend's own choice)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="generator checkpoint (default: the shipped weights, else a random full-size DRNN)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="device of the torch and onnxruntime backends (default cpu; TensorRT is always on the GPU)")
    args = parser.parse_args(argv)
    try:
        run(BenchConfig(tuple(args.backends), args.size, args.frames, args.warmup, args.threads, args.checkpoint, args.device))
    except (BackendUnavailable, WeightsError, ValueError) as exc:  # ValueError: unknown backend or option
        print(f"python -m benchmarks.backends: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
