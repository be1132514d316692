"""ONNX Runtime backend: the CPU default (and CUDA through ONNX Runtime's provider, if installed).

Runs the exported uint8 -> uint8 graph of :mod:`engine.onnx_export`.  Tuning for a CPU:
graph optimisation level ``ORT_ENABLE_ALL`` (constant folding, Conv+Add / Conv+Relu fusions,
layout transforms), a fixed intra-op thread count, sequential execution (the DRNN is a chain, so
inter-op parallelism buys nothing), and the memory-pattern planner, which reuses buffers across
frames of one size.  Frames go through a worker thread (:class:`engine.pipeline.ThreadPipeline`):
``InferenceSession.run`` releases the GIL, so the caller's I/O overlaps the model.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from engine.base import BackendUnavailable, InputSpec, PipelinedDespeckler, check_threads
from engine.onnx_export import INPUT_NAME, OUTPUT_NAME, ort_session
from engine.pipeline import ThreadPipeline
from engine.weights import WeightsError, resolve_weights

__all__ = ["OnnxRuntimeDespeckler", "session_options"]

log = logging.getLogger(__name__)

_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def session_options(threads: int | None = None, spin: bool = True) -> ort.SessionOptions:
    """Session options tuned for the DRNN on a CPU.

    ``threads``: intra-op threads (``None`` or 0: every core ``os.cpu_count()`` reports;
    ``ValueError`` if negative, :func:`engine.base.check_threads`).  ``spin=False``
    lets idle worker threads sleep instead of busy-waiting between frames: slightly more latency,
    much less CPU burnt when the despeckler shares the machine with the grabber and publisher.
    """
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = check_threads(threads) or os.cpu_count() or 1
    opts.inter_op_num_threads = 1
    opts.enable_mem_pattern = True
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return opts


class OnnxRuntimeDespeckler(PipelinedDespeckler):
    """Despeckle with ONNX Runtime.

    Args:
        weights: an ONNX model exported by :mod:`engine.export` (default ``weights/drnn.onnx``).
        device: ``"cpu"`` or ``"cuda"`` (needs the ``onnxruntime-gpu`` build).
        threads: intra-op threads (``None`` or 0: all cores; ``ValueError`` if negative).
        spin: let idle threads busy-wait (lower latency, more CPU); see :func:`session_options`.
        spec: accepted frame sizes (default :class:`InputSpec`).
        in_flight: frames queued or running at once through :meth:`submit`.
    """

    name = "onnxruntime"

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        device: str = "cpu",
        threads: int | None = None,
        spin: bool = True,
        spec: InputSpec | None = None,
        in_flight: int = 2,
    ) -> None:
        super().__init__(spec, in_flight)
        if device not in _PROVIDERS:
            raise ValueError(f"onnxruntime device must be one of {sorted(_PROVIDERS)}, got {device!r}")
        provider = _PROVIDERS[device]
        if provider not in ort.get_available_providers():
            raise BackendUnavailable(
                f"onnxruntime has no {provider} here (available: {', '.join(ort.get_available_providers())})"
            )
        self.weights = resolve_weights(weights, (".onnx",))
        if self.weights.suffix != ".onnx":
            raise WeightsError(
                f"{self.weights}: the onnxruntime backend needs an .onnx model; "
                f"export one with python -m engine.export --checkpoint {self.weights} --out model.onnx"
            )
        self.options = session_options(threads, spin)
        self._session = ort_session(self.weights, self.options, [provider])
        self._check_contract()
        self.input_levels = self._session.get_modelmeta().custom_metadata_map.get("input_levels", "off")
        self.device = device
        self._start(ThreadPipeline(self._run, in_flight, name="onnxruntime"))
        log.info("onnxruntime: %s", self.describe())

    def _check_contract(self) -> None:
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        ok = (
            len(inputs) == 1 and len(outputs) == 1
            and inputs[0].name == INPUT_NAME and outputs[0].name == OUTPUT_NAME
            and inputs[0].type == outputs[0].type == "tensor(uint8)"
            and len(inputs[0].shape) == len(outputs[0].shape) == 2
        )
        if not ok:
            found = [(t.name, t.type, t.shape) for t in (*inputs, *outputs)]
            raise WeightsError(
                f"{self.weights}: not a despeckler export (need uint8 (H, W) {INPUT_NAME!r} -> "
                f"{OUTPUT_NAME!r}), found {found}"
            )

    def _run(self, frame: np.ndarray) -> np.ndarray:
        (out,) = self._session.run([OUTPUT_NAME], {INPUT_NAME: frame})
        if out.shape != frame.shape:  # the graph's dimensions are symbolic: checked on the first frames
            raise WeightsError(f"{self.weights}: not a despeckler export: a {frame.shape[0]}x{frame.shape[1]} frame "
                               f"came out {'x'.join(map(str, out.shape))}")
        return out

    def describe(self) -> str:
        return (
            f"onnxruntime {ort.__version__} on {self.device} ({self._session.get_providers()[0]}, "
            f"{self.options.intra_op_num_threads} threads), weights {self.weights}"
        )
