"""Inference latency and pipelined throughput of every backend present, per frame size.

``test_one_frame``: ``infer(frame)`` one frame at a time, the time until the despeckled frame is
back in host memory (latency).  ``test_pipelined``: ``map`` over ``in_flight + 1`` frames (``16 in_flight + 1`` on a GPU), so
copies and compute of consecutive frames overlap where the backend can (CUDA slots); its
``extra_info`` holds ``frames_per_s = frames / median round time``.  Both record the DRNN's FLOPs
per frame (:func:`benchmarks.floor.flops_from_onnx`) and the backend's own description.  The
backends run without the engine's grey-level mapping (``levels="off"``: the network alone, as
measured before it existed); what the mapping adds per frame is ``test_bench_levels.py``'s.
"""

from __future__ import annotations

import numpy as np

from benchmarks.floor import flops_from_onnx
from benchmarks.modelfiles import weights_for
from engine.registry import create_despeckler


def _open(case, files):
    return create_despeckler(case.backend, case.weights or weights_for(case.backend, files), levels="off",
                             **case.options)


def _record(benchmark, engine, case, files, size: tuple[int, int], frames: int) -> None:
    # a case's own file is costed by itself, or by the float32 export it was made from (INT8); a
    # flip-averaged case runs it twice a frame (engine.flip)
    runs = 2 if case.options.get("flip_average") else 1
    flops = runs * flops_from_onnx(case.costed_by or case.weights or files.onnx, *size)
    note = files.note if case.weights is None else f"shipped {case.weights.name}"
    benchmark.extra_info.update(backend=engine.describe(), weights=note, gflop_per_frame=flops / 1e9, frames_per_round=frames)
    if benchmark.stats is not None:
        median = benchmark.stats.stats.median
        benchmark.extra_info.update(frames_per_s=frames / median, gflop_per_s=frames * flops / median / 1e9)


def test_one_frame(benchmark, backend_case, size, frame, drnn_files, rounds) -> None:
    with _open(backend_case, drnn_files) as engine:
        engine.infer(frame)  # warm-up: kernels chosen, buffers planned
        out = benchmark.pedantic(engine.infer, args=(frame,), rounds=rounds(backend_case.gpu), iterations=1)
        _record(benchmark, engine, backend_case, drnn_files, size, 1)
    assert out.shape == frame.shape and out.dtype == np.uint8


def test_pipelined(benchmark, backend_case, size, frame, drnn_files, rounds) -> None:
    with _open(backend_case, drnn_files) as engine:
        frames = [frame] * (engine.in_flight * (16 if backend_case.gpu else 1) + 1)
        engine.infer(frame)
        outs = benchmark.pedantic(engine.map, args=(frames,), rounds=rounds(backend_case.gpu), iterations=1)
        _record(benchmark, engine, backend_case, drnn_files, size, len(frames))
    assert len(outs) == len(frames) and all(o.shape == frame.shape for o in outs)
