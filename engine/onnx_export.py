"""Export a DRNN to ONNX with the uint8 frame contract inside the graph, then verify it.

The exported graph maps input ``frame`` (uint8, shape ``(height, width)``, both dynamic) to output
``despeckled`` (uint8, same shape) through :class:`engine.torch_model.FrameModel`: batch norm is
folded into the convolutions before export, and the scale / clip / round / cast steps are ONNX ops,
so ONNX Runtime, TensorRT and torch all obey one contract.

Two precisions:

* FP32: for ONNX Runtime on a CPU and TensorRT 10 (which picks FP16 kernels itself with
  ``BuilderFlag.FP16``).
* FP16 (``fp16=True``): weights and activations in float16, input and output still uint8.  A
  strongly typed TensorRT network (the only kind in TensorRT 11) takes its precision from these
  types.  ONNX Runtime on a CPU runs it too (it inserts float32 casts around float16 kernels it
  lacks), which is how the tests check it.

Each export is checked (``onnx.checker``, no ``BatchNormalization`` node, the uint8 contract) and
compared with the torch float32 model on random frames (:func:`check_forward`, after timm's
``onnx_export(check_forward=True)``).  torch, onnx and onnxruntime are imported inside functions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.base import InputSpec
from engine.weights import WeightsError

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "read_onnx",
    "onnx_metadata",
    "ort_session",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "DEFAULT_OPSET",
    "MAX_EDGE_CONTEXT",
    "max_opset",
    "FP32_TOLERANCE",
    "FP16_TOLERANCE",
    "ParityError",
    "Parity",
    "Tolerance",
    "export_onnx",
    "export_checkpoint",
    "check_graph",
    "check_forward",
    "check_parity",
    "onnx_runner",
]

log = logging.getLogger(__name__)

INPUT_NAME = "frame"
OUTPUT_NAME = "despeckled"
#: ONNX opset: 18 is read by ONNX Runtime >= 1.14 and the TensorRT 10 / 11 parsers.  It is also the
#: lowest one: torch's exporter writes opset 18 and cannot convert the graph down (no adapter for
#: ``Pad``; torch 2.13 then logs a traceback and silently keeps 18).
DEFAULT_OPSET = 18
#: the largest edge context that can take effect: the context is cut to the frame's shorter side
#: less one in the graph, and the CPU backends take frames of at most 4096 pixels a side
#: (:class:`engine.base.InputSpec`).  Each 4 pixels add a fill step, so export time grows with it.
MAX_EDGE_CONTEXT = min(InputSpec().max_hw) - 1


def max_opset() -> int:
    """The highest ONNX opset the installed ``onnx`` knows (it converts the export to it)."""
    import onnx

    return onnx.defs.onnx_opset_version()


class ParityError(AssertionError):
    """An exported model disagrees with the torch model beyond the stated tolerance."""


@dataclass(frozen=True)
class Tolerance:
    """Agreement on uint8 outputs: ``|a - b| <= max_abs`` on at least ``fraction`` of the pixels."""

    max_abs: int
    fraction: float = 1.0


#: FP32 export vs torch: every pixel within 1 grey level (the rounding step may flip at .5).
FP32_TOLERANCE = Tolerance(max_abs=1, fraction=1.0)
#: FP16 export vs torch FP32: 99.9 % of pixels within 2 grey levels.
FP16_TOLERANCE = Tolerance(max_abs=2, fraction=0.999)


@dataclass(frozen=True)
class Parity:
    """How far two uint8 outputs are apart: worst pixel and the fraction within the tolerance."""

    max_abs: int
    fraction_within: float
    tolerance: Tolerance

    @property
    def ok(self) -> bool:
        return self.fraction_within >= self.tolerance.fraction

    @classmethod
    def measure(cls, a: np.ndarray, b: np.ndarray, tolerance: Tolerance) -> Parity:
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
        return cls(int(diff.max(initial=0)), float(np.mean(diff <= tolerance.max_abs)), tolerance)


def export_onnx(
    net: nn.Module,
    out: str | Path,
    *,
    fp16: bool = False,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    metadata: dict[str, str] | None = None,
    context: int | None = None,
) -> Path:
    """Export ``net`` (a DRNN in [0, 1] -> [0, 1]) as a uint8 -> uint8 ONNX model at ``out``.

    With ``check`` the file is verified by :func:`check_graph` and :func:`check_forward` against
    the float32 torch model; a failed check raises and leaves no file behind.  ``metadata`` is
    stored in the model's ``metadata_props`` (with ``precision``), readable from ONNX Runtime's
    ``get_modelmeta().custom_metadata_map``.  ``context``: the mirrored edge context of
    :class:`engine.torch_model.FrameModel` (``None``: the network's default), stored as
    ``edge_context``.  ``ValueError`` for an ``opset`` outside :data:`DEFAULT_OPSET` ..
    :func:`max_opset` or a ``context`` outside 0 .. :data:`MAX_EDGE_CONTEXT`, before any work.
    """
    import onnx
    import torch

    from engine.files import atomic_write_bytes
    from engine.torch_model import FrameModel

    if not DEFAULT_OPSET <= opset <= max_opset():
        raise ValueError(f"opset must be {DEFAULT_OPSET}..{max_opset()}, got {opset}")
    if context is not None and not 0 <= context <= MAX_EDGE_CONTEXT:
        raise ValueError(f"edge context must be 0..{MAX_EDGE_CONTEXT} pixels, got {context}")
    out = Path(out)
    model = FrameModel(net, torch.float16 if fp16 else torch.float32, context=context).eval()
    log.info("exporting %s (%s, edge context %d px: the export takes longer as it grows)", out.name,
             "float16" if fp16 else "float32", model.context)
    example = torch.randint(0, 256, (64, 48), dtype=torch.uint8)
    height, width = torch.export.Dim("height", min=2), torch.export.Dim("width", min=2)
    with torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(
            model,
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamo=True,
            external_data=False,
            dynamic_shapes={"frame": {0: height, 1: width}},
            verbose=False,
        )
    proto = program.model_proto
    written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != opset:
        raise WeightsError(f"{out}: torch exported opset {written}, not the {opset} asked for")
    precision = "float16" if fp16 else "float32"
    proto.doc_string = f"usdespeckle DRNN {precision}: uint8 (H, W) -> uint8 (H, W)"
    onnx.helper.set_model_props(proto, {"precision": precision, "edge_context": str(model.context), **(metadata or {})})
    if check:
        log.info("checking %s: its graph, and its outputs against the torch model's on 2 frames", out.name)
        check_graph(proto, name=str(out))
        reference = FrameModel(net, torch.float32, context=context).eval()
        frames = _random_frames(((64, 64), (37, 53)))
        check_forward(reference, proto.SerializeToString(), frames, FP16_TOLERANCE if fp16 else FP32_TOLERANCE)
    atomic_write_bytes(out, proto.SerializeToString())
    onnx.checker.check_model(str(out))
    return out


def export_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    *,
    fp16: bool = False,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    context: int | None = None,
) -> Path:
    """Load the generator of ``checkpoint`` (see :mod:`engine.checkpoint`) and :func:`export_onnx` it,
    recording in the model's metadata the checkpoint's name, its sha256 as ``checkpoint_sha256`` and
    the grey-level mode of its training inputs as ``input_levels`` (``off`` where it has none)."""
    from engine.checkpoint import build_generator, input_levels, load_checkpoint
    from engine.files import sha256_file

    ckpt = load_checkpoint(checkpoint)  # first: it names a missing or foreign file (CheckpointError)
    net = build_generator(ckpt, checkpoint)
    metadata = {"checkpoint": Path(checkpoint).name, "checkpoint_sha256": sha256_file(checkpoint),
                "input_levels": input_levels(ckpt, checkpoint)}
    return export_onnx(net, out, fp16=fp16, opset=opset, check=check, metadata=metadata, context=context)


def read_onnx(path: str | Path):
    """The ``onnx.ModelProto`` in the file ``path`` (which must exist), or :class:`WeightsError`
    naming it if it does not decode as an ONNX model.  Needs the ``onnx`` package."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        return onnx.load(str(path))
    except DecodeError as exc:
        raise WeightsError(f"{path}: not an ONNX model ({exc})") from None


def check_graph(proto, name: str = "model") -> None:
    """Raise :class:`WeightsError` unless ``proto`` is a valid ONNX model that keeps our contract.

    Checks: ``onnx.checker`` (full shape inference), no ``BatchNormalization`` node, one uint8
    rank-2 input ``frame`` and one uint8 rank-2 output ``despeckled`` with symbolic dimensions.
    """
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise WeightsError(f"{name}: onnx.checker rejects the model: {exc}") from exc
    ops = {node.op_type for node in proto.graph.node}
    if "BatchNormalization" in ops:
        raise WeightsError(f"{name}: batch norm was not folded (BatchNormalization node in the graph)")
    for role, values, expected in (("input", proto.graph.input, INPUT_NAME), ("output", proto.graph.output, OUTPUT_NAME)):
        if len(values) != 1 or values[0].name != expected:
            raise WeightsError(f"{name}: expected one {role} named {expected!r}, found {[v.name for v in values]}")
        tensor = values[0].type.tensor_type
        dims = tensor.shape.dim
        if tensor.elem_type != onnx.TensorProto.UINT8 or len(dims) != 2:
            raise WeightsError(f"{name}: {role} {expected!r} must be uint8 of rank 2")
        if any(d.HasField("dim_value") for d in dims):
            raise WeightsError(f"{name}: {role} {expected!r} has fixed dimensions, expected dynamic height/width")


def check_forward(
    reference: nn.Module, onnx_model: bytes | str | Path, frames: Sequence[np.ndarray], tolerance: Tolerance
) -> list[Parity]:
    """Run ``frames`` through ``reference`` (torch, uint8 -> uint8) and the ONNX model in ONNX Runtime
    on the CPU; raise :class:`ParityError` if any frame misses ``tolerance``.  Returns each frame's
    :class:`Parity`."""
    import torch

    def expected(frame: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return reference(torch.from_numpy(frame)).numpy()

    return check_parity(expected, onnx_runner(onnx_model), frames, tolerance, "ONNX output differs from torch")


def ort_session(path: str | Path, options=None, providers: Sequence[str] = ("CPUExecutionProvider",)):
    """An ONNX Runtime ``InferenceSession`` of the model file ``path`` (``options``: its
    ``SessionOptions``); :class:`WeightsError` naming the file if ONNX Runtime cannot load it."""
    import onnxruntime as ort
    from onnxruntime.capi.onnxruntime_pybind11_state import (
        Fail,
        InvalidArgument,
        InvalidGraph,
        InvalidProtobuf,
    )

    try:
        return ort.InferenceSession(str(path), options, providers=list(providers))
    except (Fail, InvalidArgument, InvalidGraph, InvalidProtobuf) as exc:
        raise WeightsError(f"{path}: onnxruntime cannot load it: {exc}") from exc


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of the ONNX model file ``path`` (``precision``, ``edge_context``,
    ``checkpoint_sha256``, ``input_levels``...), read through ONNX Runtime, which every install has
    (:func:`ort_session`, graph not optimised)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return dict(ort_session(path, opts).get_modelmeta().custom_metadata_map)


def onnx_runner(onnx_model: bytes | str | Path) -> Callable[[np.ndarray], np.ndarray]:
    """``frame -> despeckled`` through the model (file or serialized bytes) in ONNX Runtime on the CPU."""
    import onnxruntime as ort

    source = onnx_model if isinstance(onnx_model, bytes) else str(onnx_model)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return lambda frame: session.run([OUTPUT_NAME], {INPUT_NAME: frame})[0]


def check_parity(
    expected: Callable[[np.ndarray], np.ndarray],
    got: Callable[[np.ndarray], np.ndarray],
    frames: Sequence[np.ndarray],
    tolerance: Tolerance,
    what: str,
    hint: str = "",
) -> list[Parity]:
    """:class:`Parity` of ``got(frame)`` against ``expected(frame)`` for each frame; the first frame
    that misses ``tolerance`` raises :class:`ParityError` starting with ``what`` (and ending with ``hint``)."""
    report = []
    for frame in frames:
        parity = Parity.measure(expected(frame), got(frame), tolerance)
        if not parity.ok:
            raise ParityError(
                f"{what} on a {frame.shape[0]}x{frame.shape[1]} frame: "
                f"{parity.fraction_within:.4%} of pixels within {tolerance.max_abs} grey level(s), "
                f"need {tolerance.fraction:.4%} (worst {parity.max_abs}){hint}"
            )
        report.append(parity)
    return report


def _random_frames(shapes: Sequence[tuple[int, int]], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=shape, dtype=np.uint8) for shape in shapes]
