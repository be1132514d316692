"""TensorRT backend: the FP16 engine, pipelined over CUDA slots (one execution context per slot).

Given an ``.onnx`` model, the engine comes from :func:`engine.trt_build.get_engine` (built once,
then loaded from the cache while the ONNX file, TensorRT, GPU, precision and profile are the
same); given a ``.engine`` / ``.plan`` file, that engine is deserialized as it is.  Per frame, on
the slot's stream: ``set_input_shape``, ``set_tensor_address`` (input and output),
``execute_async_v3``; see :class:`engine.cuda_slots.SlotPipeline` for copies and ordering.
The accepted frame sizes are the engine's optimisation profile.
"""

from __future__ import annotations

import logging
from pathlib import Path

import tensorrt as trt

from engine.base import BackendUnavailable, FrameError, InputSpec, PipelinedDespeckler
from engine.cuda_slots import CudaError, Slot, SlotPipeline, check, cudart, device_properties
from engine.onnx_export import INPUT_NAME, OUTPUT_NAME, onnx_metadata
from engine.trt_build import STRONGLY_TYPED_ONLY, TRT_VERSION, get_engine
from engine.trt_cache import DEFAULT_PROFILE, BuildConfig, Profile, read_engine_file
from engine.weights import WeightsError, resolve_weights

__all__ = ["TensorRTDespeckler"]

log = logging.getLogger(__name__)

_RUNTIME_LOGGER = trt.Logger(trt.Logger.WARNING)


class EngineError(RuntimeError):
    """TensorRT refused to enqueue a frame."""


def _engine_bytes(path: Path) -> bytes:
    """Engine bytes of a cache file (our header) or of a raw ``trtexec`` / ``.plan`` file."""
    try:
        return read_engine_file(path)[1]
    except ValueError:
        return path.read_bytes()


class TensorRTDespeckler(PipelinedDespeckler):
    """Despeckle with a TensorRT engine on a CUDA GPU.

    Args:
        weights: ``.onnx`` (built / cached) or ``.engine`` / ``.plan``.  Default: the shipped FP16
            export on TensorRT >= 11 (strongly typed), the FP32 export on TensorRT 10.
        profile: frame sizes the engine is built for (ignored for a ready engine file).
        cache_dir: engine cache folder (default ``~/.cache/usdespeckle/tensorrt``).
        in_flight: CUDA slots, i.e. frames on the GPU at once.
    """

    name = "tensorrt"

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        profile: Profile = DEFAULT_PROFILE,
        cache_dir: str | Path | None = None,
        in_flight: int = 3,
    ) -> None:
        try:
            gpus = int(check(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount"))
        except CudaError as exc:
            raise BackendUnavailable(f"tensorrt backend: no usable CUDA GPU ({exc})") from exc
        if gpus == 0:
            raise BackendUnavailable("tensorrt backend: no CUDA GPU visible")
        self.weights = resolve_weights(weights, ("_fp16.onnx", ".onnx") if STRONGLY_TYPED_ONLY else (".onnx", "_fp16.onnx"))
        if self.weights.suffix == ".onnx":
            self.input_levels = onnx_metadata(self.weights).get("input_levels", "off")
            data, self.engine_path = get_engine(BuildConfig(self.weights, profile, Path(cache_dir) if cache_dir else None))
        else:
            data, self.engine_path = _engine_bytes(self.weights), self.weights
        self._runtime = trt.Runtime(_RUNTIME_LOGGER)
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise WeightsError(f"{self.engine_path}: TensorRT {TRT_VERSION} cannot deserialize this engine")
        super().__init__(self._profile_spec(), in_flight)
        self._start(SlotPipeline(self._compute, n_slots=in_flight, make_state=self._context))
        log.info("tensorrt: %s", self.describe())

    def _profile_spec(self) -> InputSpec:
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        if sorted(names) != sorted([INPUT_NAME, OUTPUT_NAME]):
            raise WeightsError(f"{self.engine_path}: engine tensors {names}, expected {INPUT_NAME!r} and {OUTPUT_NAME!r}")
        for name in names:
            if self._engine.get_tensor_dtype(name) != trt.DataType.UINT8 or len(self._engine.get_tensor_shape(name)) != 2:
                raise WeightsError(f"{self.engine_path}: tensor {name!r} is not uint8 (H, W)")
        lo, _, hi = self._engine.get_tensor_profile_shape(INPUT_NAME, 0)
        return InputSpec(min_hw=(lo[0], lo[1]), max_hw=(hi[0], hi[1]))

    def _context(self, index: int) -> trt.IExecutionContext:
        context = self._engine.create_execution_context()
        if context is None:
            raise EngineError(f"TensorRT could not create execution context {index} (out of GPU memory?)")
        return context

    def _compute(self, slot: Slot, h: int, w: int) -> None:
        context: trt.IExecutionContext = slot.state
        if not context.set_input_shape(INPUT_NAME, (h, w)):
            raise FrameError(f"frame size {h}x{w} is outside the engine's profile")
        context.set_tensor_address(INPUT_NAME, slot.dev_in.ptr)
        context.set_tensor_address(OUTPUT_NAME, slot.dev_out.ptr)
        if not context.execute_async_v3(slot.stream.handle):
            raise EngineError(f"execute_async_v3 failed on a {h}x{w} frame (see the TensorRT log)")

    def describe(self) -> str:
        spec = self.input_spec
        return (
            f"tensorrt {TRT_VERSION} on cuda ({device_properties()['gpu_name']}), {self.in_flight} slots, profile "
            f"{spec.min_hw[0]}x{spec.min_hw[1]}..{spec.max_hw[0]}x{spec.max_hw[1]}, engine {self.engine_path}"
        )
