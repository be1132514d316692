"""torch backend: eager torch on a CPU, or FP16 channels-last on CUDA through the CUDA slots.

Loads a generator checkpoint (``weights/drnn.pt`` by default, see :mod:`engine.checkpoint`) into
:class:`engine.torch_model.FrameModel` (batch norm folded, uint8 in, uint8 out).

* CPU: float32, frames through a worker thread (:class:`engine.pipeline.ThreadPipeline`).
* CUDA: float16 by default, channels-last weights (tensor-core friendly layout), frames through
  :class:`engine.cuda_slots.SlotPipeline`; torch computes on each slot's stream via
  ``torch.cuda.ExternalStream`` and reads/writes the slot's device buffers in place.  With
  ``cuda_graphs=True`` each slot captures one CUDA graph per frame size and replays it, which
  removes the per-layer launch cost (worth it for small frames).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.base import BackendUnavailable, InputSpec, PipelinedDespeckler, check_threads
from engine.checkpoint import build_generator, input_levels, load_checkpoint
from engine.pipeline import ThreadPipeline
from engine.torch_model import FrameModel
from engine.weights import resolve_weights

__all__ = ["TorchDespeckler"]

log = logging.getLogger(__name__)


class TorchDespeckler(PipelinedDespeckler):
    """Despeckle with torch.

    Args:
        weights: a generator checkpoint (default ``weights/drnn.pt``).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when available).
        fp16: compute in float16 (default: on CUDA yes, on a CPU no).
        cuda_graphs: on CUDA, replay one captured graph per slot and frame size.
        threads: CPU intra-op threads (``torch.set_num_threads``; ``None`` or 0: torch's own choice;
            ``ValueError`` if negative).
        spec: accepted frame sizes; in_flight: frames on the device (CUDA slots) or queued (CPU).
    """

    name = "torch"

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        device: str = "auto",
        fp16: bool | None = None,
        cuda_graphs: bool = False,
        threads: int | None = None,
        spec: InputSpec | None = None,
        in_flight: int = 3,
    ) -> None:
        super().__init__(spec, in_flight)
        threads = check_threads(threads)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable(f"torch backend: device {device!r} asked for but torch sees no CUDA GPU")
        if self.device.type == "cuda" and self.device.index is None:  # set_device and streams need the index
            self.device = torch.device("cuda", torch.cuda.current_device())
        if self.device.type not in ("cpu", "cuda"):
            raise ValueError(f"torch backend: device must be cpu or cuda, got {device!r}")
        if cuda_graphs and self.device.type != "cuda":
            raise ValueError("torch backend: cuda_graphs needs device='cuda'")
        self.fp16 = (self.device.type == "cuda") if fp16 is None else fp16
        self.cuda_graphs = cuda_graphs
        if threads is not None:
            torch.set_num_threads(threads)
        self.weights = resolve_weights(weights, (".pt",))
        dtype = torch.float16 if self.fp16 else torch.float32
        ckpt = load_checkpoint(self.weights)
        self.input_levels = input_levels(ckpt, self.weights)
        self.model = FrameModel(build_generator(ckpt, self.weights), dtype).eval().to(self.device)
        if self.device.type == "cuda":
            from engine.cuda_slots import SlotPipeline

            torch.cuda.set_device(self.device)
            self.model = self.model.to(memory_format=torch.channels_last)
            self._start(SlotPipeline(self._compute_slot, n_slots=in_flight, make_state=lambda _: {}))
        else:
            self._start(ThreadPipeline(self._run_cpu, in_flight, name="torch"))
        log.info("torch: %s", self.describe())

    def _run_cpu(self, frame: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(torch.from_numpy(frame)).numpy()

    def _compute_slot(self, slot: Any, h: int, w: int) -> None:
        stream = torch.cuda.ExternalStream(slot.stream.handle, device=self.device)
        with torch.inference_mode(), torch.cuda.stream(stream):
            x = torch.as_tensor(slot.dev_in.view((h, w)), device=self.device)
            out = torch.as_tensor(slot.dev_out.view((h, w)), device=self.device)
            if self.cuda_graphs:
                graph, static_in, static_out = self._graph(slot.state, (h, w), stream)
                static_in.copy_(x)
                graph.replay()
                out.copy_(static_out)
            else:
                out.copy_(self.model(x))

    def _graph(self, graphs: dict, shape: tuple[int, int], stream: torch.cuda.Stream) -> tuple:
        """The slot's CUDA graph for frames of ``shape``, captured on first use.

        Capture follows torch's recipe: warm up on a side stream (cuDNN picks its kernels), then
        record one forward pass into static input/output tensors.
        """
        if shape not in graphs:
            stream.synchronize()
            static_in = torch.zeros(shape, dtype=torch.uint8, device=self.device)
            side = torch.cuda.Stream(device=self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(3):
                    self.model(static_in)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.model(static_in)
            graphs[shape] = (graph, static_in, static_out)
        return graphs[shape]

    def describe(self) -> str:
        if self.device.type == "cuda":
            where = f"cuda ({torch.cuda.get_device_name(self.device)}), {'fp16' if self.fp16 else 'fp32'}, channels-last"
            where += ", CUDA graphs" if self.cuda_graphs else ""
        else:
            where = f"cpu, {'fp16' if self.fp16 else 'fp32'}, {torch.get_num_threads()} threads"
        return f"torch {torch.__version__} on {where}, weights {self.weights}"
