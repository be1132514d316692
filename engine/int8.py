"""Post-training INT8 quantization of an exported float32 despeckler, for CPUs.

Static quantization with ONNX Runtime's tools, QDQ format (``QuantizeLinear`` /
``DequantizeLinear`` pairs around each quantized convolution, which ONNX Runtime fuses into
integer kernels):

* convolution weights: int8, symmetric, one scale per output channel;
* activations: uint8 with a scale and zero point per tensor, fixed from calibration frames by the
  percentile method (the range that holds 99.999 % of the values seen), so a few outliers do not
  coarsen the step for everything else;
* the 7x7 stem (1 input channel) and the 3x3 head (1 output channel) stay float32: together about
  0.5 % of the multiply-adds, and the layers that see the frame's and the output's full range;
* so do the convolutions of the last ``float_blocks`` residual blocks (default: half of them,
  rounded up, 3 of the paper's 6, about half of the multiply-adds): the quantization errors of
  all earlier layers add up there and reach the output through the head.  With an
  output-calibrated model (head gain 1.26) the all-INT8 variant missed :data:`INT8_TOLERANCE` on
  a held-out frame (98.4 % of pixels within 8 grey levels; 99.1 % with the last block in
  float32, measured 2026-11-26).  The shipped models since version 3 meet it only with 3 blocks
  float32, which is how ``weights/drnn_int8.onnx`` was made (``docs/engine.md``);
  :func:`quantize_fewest_float` finds the fewest that pass for any model (the fast model's
  ``weights/drnn_fast_int8.onnx`` needs none).

The uint8 frame contract of :mod:`engine.onnx_export` is unchanged, so every CPU consumer
(``--backend onnxruntime --weights drnn_int8.onnx``) takes the file as it is.  The result is
checked before it is written: the graph contract, and agreement with the float32 model on frames
that were not used for calibration (:data:`INT8_TOLERANCE`).  Speed and quality of the shipped
INT8 file (and of version 1's) are in ``benchmarks/RESULTS.md`` and ``docs/engine.md``.

Calibration frames should look like what the model will see live: the default is simulated
low-probe frames with varied probes and phantoms (:func:`simulated_frames`); users pass frames of
their own probe (a folder, video or DICOM file) instead.  onnx and onnxruntime's quantization
tools are imported inside the functions (they are in the ``[train]`` extra's reach: export time
only, never on the live path).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from engine.base import FrameError, InputSpec
from engine.files import atomic_write_bytes, sha256_file
from engine.levels import DEFAULT_LEVELS, as_fed
from engine.onnx_export import (
    INPUT_NAME,
    Parity,
    ParityError,
    Tolerance,
    check_graph,
    check_parity,
    onnx_runner,
    read_onnx,
)
from engine.weights import WeightsError, existing_file

if TYPE_CHECKING:
    import onnx

__all__ = [
    "INT8_TOLERANCE",
    "CALIBRATION_SEED",
    "CalibrationError",
    "simulated_frames",
    "split_frames",
    "tile",
    "load_float32_export",
    "quantize_int8",
    "quantize_fewest_float",
]

#: INT8 vs the float32 export on held-out frames: 99 % of pixels within 8 grey levels.  The shipped
#: model measured a mean difference of 1.8 levels and a 99th percentile of 7 on the model card's
#: held-out pairs (docs/engine.md).
INT8_TOLERANCE = Tolerance(max_abs=8, fraction=0.99)
#: seed of the first default frame (the others follow it; :func:`split_frames` holds out every
#: 4th).  Far from the seeds of the model card's training (1000), validation (2000) and evaluation
#: (3000) sets.
CALIBRATION_SEED = 7000
#: side of the calibration and check tiles, pixels (:func:`tile`).
TILE = 256


class CalibrationError(ValueError):
    """Calibration frames that cannot be used (too few, wrong type); the text names the problem."""


def simulated_frames(count: int, size: int = 256, seed: int = CALIBRATION_SEED) -> list[np.ndarray]:
    """``count`` low-probe frames of the simulator (``jitter=1``: varied probes, gains and phantoms)."""
    from training.sim import simulate_pair

    return [simulate_pair(seed + i, size, jitter=1.0)[0] for i in range(count)]


def split_frames(frames: Sequence[np.ndarray], every: int = 4) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(calibration, held_out)``: every ``every``-th frame is held out for the check, the rest calibrate."""
    if len(frames) < 2:
        raise CalibrationError(f"need at least 2 frames (calibration and a held-out check), got {len(frames)}")
    if len(frames) < every:  # too few for the pattern: hold out the last one
        return list(frames[:-1]), [frames[-1]]
    held = [f for i, f in enumerate(frames) if i % every == every - 1]
    calib = [f for i, f in enumerate(frames) if i % every != every - 1]
    return calib, held


def tile(frame: np.ndarray, side: int = TILE) -> np.ndarray:
    """The central ``side`` x ``side`` part of ``frame`` (all of it where it is smaller).

    Calibration and the check run on tiles so that their memory does not grow with the frame
    size; the DRNN sees 45 pixels around each output pixel, so a tile shows it the same local
    statistics as the whole frame (activation ranges are per tensor, not per position).
    """
    h, w = frame.shape
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return np.ascontiguousarray(frame[top : top + side, left : left + side])


def _checked(frames: Sequence[np.ndarray], what: str) -> list[np.ndarray]:
    """``frames`` as C-contiguous uint8 (H, W) arrays of at least 16x16 (the engine's own frame
    check, any size above); the first bad one raises :class:`CalibrationError` naming it."""
    spec = InputSpec(max_hw=(1 << 16, 1 << 16))
    out = []
    for i, frame in enumerate(frames):
        try:
            out.append(spec.check(frame))
        except FrameError as exc:
            raise CalibrationError(f"{what} frame {i}: {exc}") from exc
    return out


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence onnxruntime's quantizer: it prints histogram settings to stdout and logs advice
    about pre-processing (shape inference, graph fusion) to the root logger, which the export
    has already done."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def _block_of(convs: Sequence) -> dict[str, int]:
    """The residual block of each Conv node in ``convs`` that belongs to one, found by its weights'
    name (``...blocks.<i>....``)."""
    block_of = {}
    for node in convs:
        match = re.search(r"(?:^|\.)blocks\.(\d+)\.", node.input[1])
        if match:
            block_of[node.name] = int(match.group(1))
    return block_of


def _float_convs(convs: Sequence, float_blocks: int | None) -> tuple[list[str], int]:
    """Names of the Conv nodes (``convs``, in graph order) kept float32: the stem, the head and those
    of the last ``float_blocks`` residual blocks (``None``: half of them, rounded up); and that
    number of blocks."""
    block_of = _block_of(convs)
    blocks = sorted(set(block_of.values()))
    if float_blocks is None:
        float_blocks = (len(blocks) + 1) // 2
    if float_blocks > len(blocks):
        raise WeightsError(f"float_blocks={float_blocks} but the model has {len(blocks)} residual blocks")
    keep = set(blocks[len(blocks) - float_blocks:]) if float_blocks > 0 else set()
    return [convs[0].name, *(n for n, b in block_of.items() if b in keep), convs[-1].name], float_blocks


def load_float32_export(onnx_in: str | Path) -> onnx.ModelProto:
    """The ``onnx.ModelProto`` of the float32 export ``onnx_in``, or :class:`WeightsError` naming the
    file if it is not an ONNX model, breaks the frame contract, is not float32 or lacks the DRNN's
    convolutions (:class:`~engine.weights.WeightsNotFound` if it is missing).  Cheap: run it before
    making calibration frames."""
    src = existing_file(onnx_in)
    proto = read_onnx(src)
    check_graph(proto, name=str(src))
    precision = next((p.value for p in proto.metadata_props if p.key == "precision"), "float32")
    if precision != "float32":
        raise WeightsError(f"{src}: precision is {precision}, quantize the float32 export instead")
    convs = sum(node.op_type == "Conv" for node in proto.graph.node)
    if convs < 3:
        raise WeightsError(f"{src}: expected the DRNN's convolutions, found {convs} Conv nodes")
    return proto


def quantize_int8(
    onnx_in: str | Path,
    out: str | Path,
    calibration: Sequence[np.ndarray],
    held_out: Sequence[np.ndarray],
    *,
    tolerance: Tolerance = INT8_TOLERANCE,
    float_blocks: int | None = None,
    levels: str = DEFAULT_LEVELS,
    progress: bool = True,
) -> list[Parity]:
    """Quantize the float32 export ``onnx_in`` to INT8 at ``out``; returns the held-out parities.

    ``calibration``: uint8 (H, W) frames that fix the activation ranges; ``held_out``: other
    frames on which the result must agree with ``onnx_in`` within ``tolerance`` (both are cut to
    their central :data:`TILE` x :data:`TILE` part, see :func:`tile`; else
    :class:`~engine.onnx_export.ParityError` and nothing is written).  The source's metadata
    (``checkpoint_sha256``...) is carried over; ``precision`` becomes ``int8`` and
    ``source_onnx_sha256`` / ``calibration_frames`` / ``float_blocks`` are added.
    ``float_blocks``: residual blocks at the end kept float32 (``None``: half of them, rounded up;
    module docstring).  ``levels``: the grey-level mode the model will run at
    (:data:`engine.levels.LEVEL_MODES`; the engine's default ``preset``): both kinds of frames are
    mapped as the engine will map the live ones (:func:`engine.levels.as_fed`) before they are cut,
    and the mode is recorded as ``calibration_levels``.  ``progress``: a bar over the
    calibration frames (each runs through the float32 model once).
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    src = existing_file(onnx_in)
    if not calibration or not held_out:
        raise CalibrationError("need calibration frames and held-out frames (at least one of each)")
    calibration, held_out = _checked(calibration, "calibration"), _checked(held_out, "held-out")
    calibration, held_out = [as_fed(f, levels) for f in calibration], [as_fed(f, levels) for f in held_out]
    proto = load_float32_export(src)
    meta = {p.key: p.value for p in proto.metadata_props}
    convs = [node for node in proto.graph.node if node.op_type == "Conv"]
    if float_blocks is not None and float_blocks < 0:
        raise WeightsError(f"float_blocks must be >= 0, got {float_blocks}")
    keep_float, float_blocks = _float_convs(convs, float_blocks)

    tiles = [tile(f) for f in calibration]
    bar = tqdm(total=len(tiles), desc="calibrate", unit="frame", disable=not progress)

    class _Frames(CalibrationDataReader):
        """One tile per ``collect_data`` call (``CalibStridedMinMax = 1``): onnxruntime keeps every
        intermediate tensor of the frames of one call, about 0.8 GB per 256x256 tile for the DRNN."""

        def __init__(self) -> None:
            self._todo: list[np.ndarray] = []

        def __len__(self) -> int:
            return len(tiles)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._todo = tiles[start_index:end_index]

        def get_next(self) -> dict[str, np.ndarray] | None:
            if not self._todo:
                return None
            bar.update(1)
            return {INPUT_NAME: self._todo.pop(0)}

    with tempfile.TemporaryDirectory(prefix="usdespeckle-int8-") as tmp, _quiet():
        staged = Path(tmp) / "int8.onnx"
        quantize_static(
            str(src),
            str(staged),
            _Frames(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.Percentile,
            op_types_to_quantize=["Conv"],
            nodes_to_exclude=keep_float,
            calibration_providers=["CPUExecutionProvider"],
            extra_options={"CalibStridedMinMax": 1},
        )
        quantized = onnx.load(str(staged))
    bar.close()
    quantized.doc_string = "usdespeckle DRNN int8 (QDQ, per-channel weights): uint8 (H, W) -> uint8 (H, W)"
    onnx.helper.set_model_props(quantized, {
        **meta,
        "precision": "int8",
        "source_onnx_sha256": sha256_file(src),
        "calibration_frames": str(len(calibration)),
        "calibration_levels": levels,
        "float_blocks": str(float_blocks),
    })
    check_graph(quantized, name=str(out))
    data = quantized.SerializeToString()
    report = check_parity(onnx_runner(src), onnx_runner(data), [tile(f) for f in held_out], tolerance,
                          f"INT8 output differs from {src.name} (held-out frame)",
                          "; calibrate on frames like the live ones, or keep more blocks float32 (--float-blocks)")
    atomic_write_bytes(out, data)
    return report


def quantize_fewest_float(
    onnx_in: str | Path,
    out: str | Path,
    calibration: Sequence[np.ndarray],
    held_out: Sequence[np.ndarray],
    *,
    tolerance: Tolerance = INT8_TOLERANCE,
    levels: str = DEFAULT_LEVELS,
    progress: bool = True,
) -> tuple[int, list[Parity]]:
    """The fastest INT8 file that passes the check: :func:`quantize_int8` with ``float_blocks`` =
    0, 1, ... (all blocks quantized first; frames mapped by ``levels``), writing the first that agrees with ``onnx_in`` on
    ``held_out`` within ``tolerance``; returns ``(float_blocks, parities)``.

    Each try calibrates again (ONNX Runtime's quantizer keeps no ranges between calls), so it
    costs up to ``blocks`` calibrations.  With every block float32 only the stem and head would be
    left, and they stay float32 anyway, so the tries stop one short of that: if none passes,
    :class:`~engine.onnx_export.ParityError` (with the last try's figures) is raised and nothing
    is written.
    """
    convs = [node for node in load_float32_export(onnx_in).graph.node if node.op_type == "Conv"]
    blocks = len(set(_block_of(convs).values()))
    if blocks == 0:
        raise WeightsError(f"{onnx_in}: no residual blocks found (convolution weights named ...blocks.<i>...)")
    failed: ParityError | None = None
    for float_blocks in range(blocks):
        try:
            return float_blocks, quantize_int8(onnx_in, out, calibration, held_out, tolerance=tolerance,
                                               float_blocks=float_blocks, levels=levels, progress=progress)
        except ParityError as exc:
            failed = exc
            if progress:
                tqdm.write(f"{float_blocks} of {blocks} blocks float32: {exc}")
    raise ParityError(f"no INT8 file with fewer than all {blocks} residual blocks float32 passes; "
                      f"with {blocks - 1}: {failed}")
