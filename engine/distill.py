"""Write distillation pairs: each frame at the engine's grey levels and a teacher model's output on it.

    python -m engine.distill low_frames/ --output pairs/                 # teacher: the default model
    python -m training.train --config fast --pairs pairs/ --out runs/fast

Exit status 0 when every frame became a pair, 1 when any file or frame failed (each is reported),
2 when no pair could be written (no teacher, an output folder that holds pairs).  See
:mod:`engine.pairs`.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from engine.base import BackendUnavailable, threads_arg
from engine.flip import FlipAveragedDespeckler
from engine.levels import DEFAULT_LEVELS, LEVEL_MODES
from engine.pairs import PairsError, check_pairs_output, teacher_pairs
from engine.registry import BACKENDS, create_backend, warn_other_levels
from engine.weights import WeightsError, WeightsNotFound
from training.argparsing import OneLineParser, print_outcome

__all__ = ["DistillConfig", "main", "run"]


@dataclass(frozen=True)
class DistillConfig:
    inputs: tuple[Path, ...]
    output: Path
    weights: Path | None = None
    backend: str = "auto"
    levels: str = DEFAULT_LEVELS
    recursive: bool = False
    threads: int | None = None
    flip_average: bool = False
    progress: bool = True


def _parse(argv: list[str] | None) -> DistillConfig:
    parser = OneLineParser(prog="python -m engine.distill", description=__doc__.splitlines()[0])
    parser.add_argument("inputs", type=Path, nargs="+", metavar="INPUT",
                        help="low-probe pictures, DICOM files, videos or folders of them")
    parser.add_argument("--output", "-o", type=Path, required=True,
                        help="new or empty folder for x_NNNN.png / y_NNNN.png and levels.json")
    parser.add_argument("--weights", type=Path, default=None,
                        help="the teacher: a model file or a shipped model's name (default: default, weights/drnn.*)")
    parser.add_argument("--backend", default="auto", choices=["auto", *sorted(b for b in BACKENDS if b != "identity")],
                        help="inference backend of the teacher (default: auto)")
    parser.add_argument("--levels", choices=LEVEL_MODES, default=DEFAULT_LEVELS,
                        help="grey levels of the pairs: the student will run at them (preset: each frame mapped to "
                             "the preset probes' level and spread, as the engine does by default; off: frames as "
                             "they are; default: preset)")
    parser.add_argument("--recursive", "-r", action="store_true", help="also read files in sub-folders")
    parser.add_argument("--threads", type=threads_arg, default=None,
                        help="CPU threads of the CPU backends (default or 0: the backend's own choice)")
    parser.add_argument("--flip-average", action="store_true",
                        help="the teacher's output averaged with its output on the mirrored frame (engine "
                             "--flip-average): the student learns the two-run output at one run's cost")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    return DistillConfig(tuple(args.inputs), args.output, args.weights, args.backend, args.levels, args.recursive,
                         args.threads, args.flip_average, not args.no_progress)


def run(config: DistillConfig) -> int:
    """Build the teacher, write the pairs, print a summary; returns the exit status."""
    options = {} if config.threads is None or config.backend == "tensorrt" else {"threads": config.threads}
    try:
        check_pairs_output(config.output)
        teacher = create_backend(config.backend, config.weights, **options)
        if config.flip_average:
            teacher = FlipAveragedDespeckler(teacher)
    except (PairsError, BackendUnavailable, WeightsError, WeightsNotFound, ValueError) as exc:
        print(f"engine.distill: error: {exc}", file=sys.stderr)
        return 2
    with teacher:
        print(f"teacher: {teacher.describe()}; pairs at grey levels {config.levels}", file=sys.stderr)
        warn_other_levels(teacher, config.levels)
        try:
            report = teacher_pairs(teacher, config.inputs, config.output, config.levels,
                                   recursive=config.recursive, progress=config.progress)
        except OSError as exc:  # PairsError, or a write that failed (disk full, no permission)
            print(f"engine.distill: error: --output {config.output}: {exc}", file=sys.stderr)
            return 2
    print_outcome(f"{report.written} pair(s) written to {config.output} ({report.mapped} mapped to the "
                  f"{config.levels} grey levels)", report.failed)
    if report.written == 0:
        return 2
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run(_parse(argv))


if __name__ == "__main__":
    raise SystemExit(main())
