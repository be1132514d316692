"""The compute floor of one despeckled frame: the least time any backend could take on a device.

Roofline model, from the exported ONNX graph and two measurements of the device::

    c           = min(edge_context, H - 1, W - 1)             (the graph's mirrored margin, from its metadata)
    P           = (H + 2 c) * (W + 2 c)                       (pixels the convolutions compute)
    flops       = 2 * P * sum over Conv nodes of (C_out * C_in / groups * k_h * k_w)
    act_bytes   = P * itemsize * sum over Conv nodes of (C_in + C_out)
    io_bytes    = 2 * H * W                                   (uint8 frame in, uint8 frame out)
    compute_s   = flops / peak_flops                          (peak: a large float32 matmul)
    memory_s    = (io_bytes + weight_bytes + act_bytes) / bandwidth   (bandwidth: a large copy)
    floor_s     = max(compute_s, memory_s)

``flops`` counts multiply-adds of the convolutions only (batch norm is folded into them, the
element-wise ops are negligible) and assumes stride 1 with "same" padding, which holds for every
convolution of the DRNN (checked: a strided convolution raises).  ``act_bytes`` is what a
layer-by-layer execution reads and writes between convolutions; a fused kernel could keep some
of it in cache, so the memory term is a floor for un-fused execution.  For the paper's DRNN
``flops / (H * W)`` is 1.39 MFLOP per pixel (the formula of ``training.models.drnn_flops``),
read here from the graph so neither torch nor the training package is imported.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "ConvCost",
    "Device",
    "Floor",
    "FloorError",
    "conv_cost",
    "cpu_name",
    "flops_from_onnx",
    "measure_cpu",
    "measure_cuda",
    "compute_floor",
]


class FloorError(ValueError):
    """An ONNX file whose convolutions this model of cost cannot count (the text names the file)."""


@dataclass(frozen=True)
class ConvCost:
    """Per-pixel cost of a model's convolutions, read from its ONNX graph.

    ``macs_per_pixel``: multiply-adds per output pixel; ``act_elems_per_pixel``: activation values
    read plus written per pixel (sum of C_in + C_out); ``weight_bytes``: size of all conv weights;
    ``itemsize``: bytes per activation value (4 for float32, 2 for float16); ``context``: the
    mirrored edge context around each frame (the model's ``edge_context`` metadata; 0 if absent).
    """

    convs: int
    macs_per_pixel: int
    act_elems_per_pixel: int
    weight_bytes: int
    itemsize: int
    context: int = 0

    def computed_pixels(self, height: int, width: int) -> int:
        """``(H + 2 c) (W + 2 c)``, ``c = min(context, H - 1, W - 1)``: the frame and its margin."""
        c = min(self.context, height - 1, width - 1)
        return (height + 2 * c) * (width + 2 * c)

    def flops(self, height: int, width: int) -> float:
        """``2 * P * macs_per_pixel`` (2 FLOP per multiply-add, ``P`` :meth:`computed_pixels`)."""
        return 2.0 * self.computed_pixels(height, width) * self.macs_per_pixel

    def bytes(self, height: int, width: int) -> float:
        """``2 * H * W`` (uint8 in and out) + weights + ``P * itemsize * act_elems_per_pixel``."""
        pixels = float(self.computed_pixels(height, width))
        return 2.0 * height * width + self.weight_bytes + pixels * self.itemsize * self.act_elems_per_pixel


def _initializers(graph) -> dict[str, tuple[tuple[int, ...], int]]:
    """name -> (shape, itemsize) of every initializer and Constant node output of ``graph``."""
    from onnx import helper

    found = {t.name: (tuple(t.dims), helper.tensor_dtype_to_np_dtype(t.data_type).itemsize) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    dtype = helper.tensor_dtype_to_np_dtype(attr.t.data_type)
                    found[node.output[0]] = (tuple(attr.t.dims), dtype.itemsize)
    return found


def conv_cost(path: str | Path) -> ConvCost:
    """Count the convolutions of the ONNX model at ``path`` (see the module docstring) and read
    its edge context from the metadata.

    Raises :class:`FloorError` for an unreadable file, a model without convolutions, a weight
    that is not a constant, or a convolution with a stride other than 1.
    """
    import onnx
    from google.protobuf.message import DecodeError
    from onnx import helper

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (OSError, DecodeError) as exc:
        raise FloorError(f"{path}: not a readable ONNX model: {exc}") from exc
    constants = _initializers(model.graph)
    macs = act = weight_bytes = convs = 0
    itemsize = 4
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        if len(node.input) < 2 or node.input[1] not in constants:
            raise FloorError(f"{path}: Conv node {node.name!r} has no constant weight")
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if any(s != 1 for s in attrs.get("strides", [1])):
            raise FloorError(f"{path}: Conv node {node.name!r} has strides {attrs['strides']}; only stride 1 is counted")
        shape, itemsize = constants[node.input[1]]
        c_out, c_in_per_group, k_h, k_w = shape
        groups = int(attrs.get("group", 1))
        convs += 1
        macs += c_out * c_in_per_group * k_h * k_w
        act += c_in_per_group * groups + c_out
        weight_bytes += int(np.prod(shape)) * itemsize
    if convs == 0:
        raise FloorError(f"{path}: the model has no Conv node")
    meta = {p.key: p.value for p in model.metadata_props}
    try:
        context = int(meta.get("edge_context", "0"))
    except ValueError:
        raise FloorError(f"{path}: metadata edge_context {meta['edge_context']!r} is not a whole number") from None
    return ConvCost(convs, macs, act, weight_bytes, itemsize, max(context, 0))


def flops_from_onnx(path: str | Path, height: int, width: int) -> float:
    """FLOPs of one ``height x width`` frame through the ONNX model at ``path``."""
    return conv_cost(path).flops(height, width)


@dataclass(frozen=True)
class Device:
    """Measured peak of a device: ``peak_flops`` (FLOP/s, float32 matmul, or float16 on a GPU when
    asked) and ``bandwidth`` (bytes/s, a large copy counted as read + write)."""

    name: str
    peak_flops: float
    bandwidth: float


def _best_seconds(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def cpu_name() -> str:
    """`lscpu`'s model name and the core count, e.g. ``AMD EPYC x2``."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        import platform

        return platform.processor() or platform.machine()
    names = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")]
    return f"{names[0] if names else 'CPU'} x{len(names) or 1}"


def measure_cpu(matmul_n: int = 2048, copy_mib: int = 256, repeats: int = 5) -> Device:
    """Peak of this CPU: ``2 n^3 / t`` of a float32 ``n x n`` matmul (numpy's BLAS, all its threads)
    and ``2 * bytes / t`` of ``np.copyto`` on ``copy_mib`` MiB; best of ``repeats``."""
    rng = np.random.default_rng(0)
    a = rng.random((matmul_n, matmul_n), dtype=np.float32)
    b = rng.random((matmul_n, matmul_n), dtype=np.float32)
    out = np.empty_like(a)
    flops = 2.0 * matmul_n**3 / _best_seconds(lambda: np.matmul(a, b, out=out), repeats)
    src = np.ones(copy_mib * 2**20, np.uint8)
    dst = np.empty_like(src)
    bandwidth = 2.0 * src.nbytes / _best_seconds(lambda: np.copyto(dst, src), repeats)
    return Device(cpu_name(), flops, bandwidth)


def measure_cuda(fp16: bool = True, matmul_n: int = 8192, copy_mib: int = 1024, repeats: int = 10) -> Device:
    """Peak of the current CUDA GPU through torch: a ``n x n`` matmul (float16 with ``fp16``, else
    float32 with TF32 off) and a device-to-device copy; CUDA events time them.  Needs torch with CUDA."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("measure_cuda: torch sees no CUDA GPU")
    torch.backends.cuda.matmul.allow_tf32 = False
    dtype = torch.float16 if fp16 else torch.float32
    a = torch.randn(matmul_n, matmul_n, device="cuda", dtype=dtype)
    b = torch.randn(matmul_n, matmul_n, device="cuda", dtype=dtype)
    src = torch.empty(copy_mib * 2**20, device="cuda", dtype=torch.uint8)
    dst = torch.empty_like(src)

    def timed(fn) -> float:
        fn()
        torch.cuda.synchronize()
        best = float("inf")
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end) / 1e3)
        return best

    flops = 2.0 * matmul_n**3 / timed(lambda: torch.matmul(a, b))
    bandwidth = 2.0 * src.numel() / timed(lambda: dst.copy_(src))
    return Device(f"{torch.cuda.get_device_name()} ({'fp16' if fp16 else 'fp32'} matmul)", flops, bandwidth)


@dataclass(frozen=True)
class Floor:
    """The roofline floor of one frame (formulas in the module docstring); times in seconds."""

    height: int
    width: int
    flops: float
    bytes: float
    device: Device
    compute_s: float
    memory_s: float

    @property
    def floor_s(self) -> float:
        return max(self.compute_s, self.memory_s)

    def as_dict(self) -> dict:
        return {**asdict(self), "floor_s": self.floor_s}

    def line(self) -> str:
        """One line: FLOPs, bytes, the device's measured peaks and the floor in ms."""
        return (
            f"compute floor {self.height}x{self.width}: {self.flops / 1e9:.1f} GFLOP / {self.device.peak_flops / 1e9:.0f} GFLOP/s "
            f"= {self.compute_s * 1e3:.2f} ms; {self.bytes / 1e6:.0f} MB / {self.device.bandwidth / 1e9:.1f} GB/s "
            f"= {self.memory_s * 1e3:.2f} ms; floor {self.floor_s * 1e3:.2f} ms ({self.device.name})"
        )


def compute_floor(cost: ConvCost, height: int, width: int, device: Device) -> Floor:
    """The :class:`Floor` of ``cost`` on ``device`` for a ``height x width`` frame."""
    flops, nbytes = cost.flops(height, width), cost.bytes(height, width)
    return Floor(height, width, flops, nbytes, device, flops / device.peak_flops, nbytes / device.bandwidth)
