"""Despeckle image files, folders, DICOM files and videos into an output folder, keeping names.

    python -m engine.despeckle scans/ clip.avi study.dcm --output despeckled/
    python -m engine.despeckle x_012.png --output out/ --backend onnxruntime --weights weights/drnn.onnx

Exit status 0 when every file was despeckled, 1 when any failed (each is reported), 2 for an
``--output`` folder that cannot be made or written to, or when no despeckler could be built.
See :mod:`engine.offline`.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from engine.base import BackendUnavailable, threads_arg
from engine.flip import FLIP_HELP
from engine.levels import DEFAULT_LEVELS, LEVEL_MODES, LEVELS_HELP
from engine.offline import despeckle_files
from engine.persistence import MOTION_HELP, check_motion_args, motion_arg, persistence_arg
from engine.pixels import PIXEL_HELP, PixelMode, pixel_mode_arg
from engine.registry import BACKENDS, create_despeckler
from engine.strength import strength_arg
from engine.weights import WeightsError, WeightsNotFound
from training.argparsing import OneLineParser, print_outcome
from training.data import DICOM_SUFFIXES, IMAGE_SUFFIXES, VIDEO_SUFFIXES
from training.outputs import PathError, check_output_folder

__all__ = ["DespeckleConfig", "main", "run"]


@dataclass(frozen=True)
class DespeckleConfig:
    inputs: tuple[Path, ...]
    output: Path
    backend: str = "auto"
    weights: Path | None = None
    recursive: bool = False
    threads: int | None = None
    strength: float = 1.0
    pixel_mm: PixelMode = "auto"
    levels: str = DEFAULT_LEVELS
    flip_average: bool = False
    persistence: float = 0.0
    persistence_motion: float = 0.0
    progress: bool = True


def _check_output(parser: OneLineParser, output: Path) -> None:
    """``parser.error`` unless files can be created in the folder ``output`` (made by the first file
    written); a warning where a folder yet to be made is named like a file the tool reads."""
    try:
        check_output_folder(output, "--output")
    except PathError as exc:
        parser.error(str(exc))
    if not output.exists() and output.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES | DICOM_SUFFIXES:
        print(f"{parser.prog}: warning: --output {output} is a folder: it is made, and the files are written "
              "into it under their own names", file=sys.stderr)


def _parse(argv: list[str] | None) -> DespeckleConfig:
    parser = OneLineParser(prog="python -m engine.despeckle", description=__doc__.splitlines()[0])
    parser.add_argument("inputs", type=Path, nargs="+", metavar="INPUT", help="pictures, DICOM files, videos or folders")
    parser.add_argument("--output", "-o", type=Path, required=True, help="folder to write the despeckled files to")
    parser.add_argument("--backend", default="auto", choices=["auto", *sorted(b for b in BACKENDS if b != "identity")],
                        help="inference backend (default: auto = TensorRT > torch CUDA > ONNX Runtime CPU)")
    parser.add_argument("--weights", type=Path, default=None, help="model file, or a shipped model's name: default, fast, int8, fast-int8 (default: default, weights/drnn.*)")
    parser.add_argument("--recursive", "-r", action="store_true", help="also despeckle files in sub-folders")
    parser.add_argument("--threads", type=threads_arg, default=None,
                        help="CPU threads of the CPU backends (default or 0: the backend's own choice, all cores "
                             "for ONNX Runtime)")
    parser.add_argument("--strength", type=strength_arg, default=1.0,
                        help="0..1: blend the output with the input (1: the model's output, 0: the input; default: 1)")
    parser.add_argument("--pixel-mm", type=pixel_mode_arg, default="auto", metavar="auto|spacing|off|S|ROW,COL",
                        help=PIXEL_HELP)
    parser.add_argument("--levels", choices=LEVEL_MODES, default=DEFAULT_LEVELS, help=LEVELS_HELP)
    parser.add_argument("--flip-average", action="store_true", help=FLIP_HELP)
    parser.add_argument("--persistence", type=persistence_arg, default=0.0, metavar="A",
                        help="0 <= A < 1: within a video or DICOM cine, the running average (1 - A) x the despeckled "
                             "frame + A x the average before is written (default: 0, none)")
    parser.add_argument("--persistence-motion", type=motion_arg, default=0.0, metavar="M", help=MOTION_HELP)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    check_motion_args(parser, args.persistence, args.persistence_motion)
    _check_output(parser, args.output)
    return DespeckleConfig(tuple(args.inputs), args.output, args.backend, args.weights, args.recursive, args.threads,
                           args.strength, args.pixel_mm, args.levels, args.flip_average, args.persistence,
                           args.persistence_motion, not args.no_progress)


def run(config: DespeckleConfig) -> int:
    """Build the despeckler, despeckle every input, print a summary; returns the exit status."""
    options = {} if config.threads is None or config.backend == "tensorrt" else {"threads": config.threads}
    try:
        despeckler = create_despeckler(config.backend, config.weights, strength=config.strength,
                                       levels=config.levels, flip_average=config.flip_average, **options)
    except (BackendUnavailable, WeightsError, WeightsNotFound, ValueError) as exc:
        print(f"engine.despeckle: error: {exc}", file=sys.stderr)
        return 2
    with despeckler:
        print(f"despeckling with {despeckler.describe()}", file=sys.stderr)
        report = despeckle_files(despeckler, list(config.inputs), config.output, config.recursive, config.pixel_mm,
                                 config.persistence, config.persistence_motion, config.progress)
    print_outcome(f"{len(report.written)} file(s), {report.frames} frame(s) written to {config.output}", report.failed)
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run(_parse(argv))


if __name__ == "__main__":
    raise SystemExit(main())
