"""Quantize an exported despeckler to INT8 for CPUs, checked against the float32 model.

    python -m engine.quantize --onnx weights/drnn.onnx --out probe_int8.onnx --calibrate my_frames/
    python -m engine.quantize --onnx weights/drnn.onnx --out probe_int8.onnx --float-blocks 2
    python -m engine.quantize --onnx weights/drnn.onnx --out probe_int8.onnx --float-blocks auto

Without ``--calibrate`` the activation ranges come from simulated low-probe frames; with it, from
the frames of a folder, video or DICOM file of your own probe (every 4th frame is held out for the
check), mapped to the grey levels the file will run at (``--levels``, the engine's default
``preset``).  ``--float-blocks auto`` tries 0, 1, ... residual blocks in float32 and writes the first
file that passes the check (the fastest; one calibration per try).  Then run it with
``--backend onnxruntime --weights OUT``.  See :mod:`engine.int8`.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

from engine.base import InputSpec
from engine.int8 import (
    CalibrationError,
    load_float32_export,
    quantize_fewest_float,
    quantize_int8,
    simulated_frames,
    split_frames,
)
from engine.levels import DEFAULT_LEVELS, LEVEL_MODES
from engine.onnx_export import ParityError
from engine.weights import WeightsError, WeightsNotFound
from training.argparsing import OneLineParser
from training.outputs import PathError, check_output_file, readable_file

__all__ = ["QuantizeConfig", "main"]


@dataclass(frozen=True)
class QuantizeConfig:
    """``frames``: calibration frames taken (simulated, or read from ``calibrate``), before the
    held-out quarter is set aside."""

    onnx: Path
    out: Path
    calibrate: Path | None = None
    frames: int = 24
    size: int = 256
    #: residual blocks kept float32; ``None``: the library's default; ``"auto"``: the fewest that pass.
    float_blocks: int | str | None = None
    #: the grey-level mode the INT8 file will run at; calibration frames are mapped as it maps them.
    levels: str = DEFAULT_LEVELS


def _parse(argv: list[str] | None) -> QuantizeConfig:
    (min_side, _), (max_side, _) = InputSpec().min_hw, InputSpec().max_hw  # the CPU backends' frame sizes
    parser = OneLineParser(prog="python -m engine.quantize", description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, required=True, help="float32 export (python -m engine.export)")
    parser.add_argument("--out", type=Path, required=True, help="INT8 ONNX file to write")
    parser.add_argument("--calibrate", type=Path, help="folder, video or DICOM file of your probe's frames "
                        "(default: simulated low-probe frames)")
    parser.add_argument("--frames", type=int, default=24, help="frames to use, a quarter held out (default %(default)s)")
    parser.add_argument("--size", type=int, default=256,
                        help=f"side of the simulated frames, {min_side}..{max_side} (default %(default)s)")
    parser.add_argument("--float-blocks", default=None,
                        help="last residual blocks kept float32: more is slower and closer to float32; auto: "
                             "the fewest that pass the check, trying 0, 1, ... (default: half of them, rounded up; "
                             "3 of the shipped model's 6, the fewest it passes with)")
    parser.add_argument("--levels", choices=LEVEL_MODES, default=DEFAULT_LEVELS,
                        help="grey levels the INT8 file will run at (the engine's --levels): calibration and check "
                             "frames are mapped the same way, as the model will see them (default: preset)")
    args = parser.parse_args(argv)
    if args.frames < 2:
        parser.error(f"--frames must be at least 2, got {args.frames}")
    if not min_side <= args.size <= max_side:
        parser.error(f"--size must be {min_side}..{max_side} pixels (the CPU backends' frame sizes), got {args.size}")
    float_blocks = args.float_blocks
    if float_blocks is not None and float_blocks != "auto":
        if not float_blocks.isdigit():
            parser.error(f"--float-blocks must be a number of blocks (0 or more) or auto, got {float_blocks!r}")
        float_blocks = int(float_blocks)
    return QuantizeConfig(args.onnx, args.out, args.calibrate, args.frames, args.size, float_blocks, args.levels)


def main(argv: list[str] | None = None) -> int:
    config = _parse(argv)
    from training.data import DataError, iter_frames

    try:
        load_float32_export(readable_file(config.onnx, "--onnx"))
        check_output_file(config.out, "--out", create=True)
        if config.calibrate is None:
            frames = simulated_frames(config.frames, config.size)
        else:
            frames = list(itertools.islice(iter_frames(config.calibrate, skip_bad=True), config.frames))
        calibration, held_out = split_frames(frames)
        print(f"calibrating on {len(calibration)} frames, checking on {len(held_out)} held-out frames ...", flush=True)
        chosen = ""
        if config.float_blocks == "auto":
            float_blocks, report = quantize_fewest_float(config.onnx, config.out, calibration, held_out,
                                                         levels=config.levels)
            chosen = f", the fewest that pass: {float_blocks} residual blocks float32"
        else:
            report = quantize_int8(config.onnx, config.out, calibration, held_out, float_blocks=config.float_blocks,
                                   levels=config.levels)
    except (PathError, DataError, CalibrationError, WeightsError, WeightsNotFound, ParityError) as exc:
        print(f"engine.quantize: error: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:  # onnx is not in the base install
        print(f"engine.quantize: error: needs the {exc.name} package: pip install -e '.[train]'", file=sys.stderr)
        return 1
    except OSError as exc:  # the write itself failed (disk full, folder removed meanwhile)
        print(f"engine.quantize: error: --out {config.out}: cannot write it ({exc.strerror or exc})", file=sys.stderr)
        return 1
    worst = min(report, key=lambda p: p.fraction_within)
    print(f"wrote {config.out} ({config.out.stat().st_size / 1e6:.2f} MB, int8{chosen}); held-out frames: at worst "
          f"{worst.fraction_within:.2%} of pixels within {worst.tolerance.max_abs} grey levels of the float32 "
          f"model (largest difference {max(p.max_abs for p in report)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
