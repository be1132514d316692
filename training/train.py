"""``python -m training.train``: run a training config (the paper's schedule by default).

Examples::

    python -m training.train --config paper --low D/low --high D/high --out runs/paper
    python -m training.train --config quick --low D/low --high D/high --out runs/q --set phases.gan.iterations=10
    python -m training.train --config ship_mix --init weights/drnn.pt --pairs D/eval --twins T/twins --out runs/t
        --set phases.finetune.weights.anchor=5 --set phases.finetune.weights.temporal=20   # (one line)
    python -m training.train --out runs/paper --resume            # continue where it stopped
    torchrun --nproc_per_node=4 -m training.train --config paper ... --device cuda

A new run (no ``--resume``) into a folder that already holds one (``checkpoints/last.pt`` or
``generator.pt``) is refused, as is ``--resume`` with no ``checkpoints/last.pt``.

Exit status: 0 finished or stopped by ``--max-steps``; 130 stopped by Ctrl-C (a checkpoint
was written, ``--resume`` continues); 2 bad arguments, config, data or run folder; 1 a
failed write during the run.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from training.argparsing import OneLineParser
from training.checkpoint import CheckpointError
from training.config import ConfigError, TrainConfig, named_configs
from training.outputs import PathError

__all__ = ["TrainArgs", "parse_args", "main"]


@dataclass(frozen=True)
class TrainArgs:
    """The parsed command line."""

    config: str
    overrides: tuple[str, ...]
    out: Path
    low: Path | None
    high: Path | None
    pairs: tuple[Path, ...] | None
    resume: bool
    device: str
    max_steps: int
    progress: bool
    init: Path | None
    twins: Path | None = None


def parse_args(argv: list[str] | None = None) -> TrainArgs:
    ap = OneLineParser(prog="python -m training.train", description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="paper", help=f"named config ({', '.join(named_configs())}) or a YAML file [paper]")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key, e.g. phases.gan.iterations=100 or model.width=32 (repeatable)")
    ap.add_argument("--low", type=Path, help="folder of low-quality (small-aperture) images")
    ap.add_argument("--high", type=Path, help="folder of high-quality (large-aperture) images")
    ap.add_argument("--pairs", type=Path, nargs="+",
                    help="folder(s) of simulated x_NNN/y_NNN pairs (supervised phase), e.g. one per simulator model")
    ap.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, logs, samples")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt (its config); without it, OUT must not hold a run")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="[cpu]")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after N units in this run, with a checkpoint [0: no limit]")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--init", type=Path, help="start G from this checkpoint's generator (fine-tuning)")
    ap.add_argument("--twins", type=Path,
                    help="folder of consecutive-frame twins (a/, b/: python -m training.simulate --twins N) "
                         "for the temporal loss term")
    a = ap.parse_args(argv)
    if a.max_steps < 0:
        ap.error("--max-steps must be >= 0")
    pairs = tuple(a.pairs) if a.pairs else None
    return TrainArgs(a.config, tuple(a.overrides), a.out, a.low, a.high, pairs, a.resume, a.device,
                     a.max_steps, not a.no_progress, a.init, a.twins)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if os.environ.get("RANK", "0") == "0":  # what was read, said once under torchrun
        logging.getLogger("training").setLevel(logging.INFO)
    from training.data import DataError
    from training.runsetup import RunOptions, resolve_config
    from training.trainer import train

    opts = RunOptions(args.out, args.low, args.high, args.pairs, args.resume, args.device, args.max_steps, args.progress,
                      args.init, args.twins)
    try:
        cfg: TrainConfig = resolve_config(args.config, opts, args.overrides)
        result = train(cfg, opts)
    except (ConfigError, DataError, CheckpointError, PathError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a write the checks before the run could not foresee (disk full, say)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    done = ("already finished, no unit left to run (a --set that lengthens a phase adds units)"
            if result.status == "finished" and result.units == 0 else f"{result.status} after {result.units} units")
    if os.environ.get("RANK", "0") == "0":  # under torchrun the run's files are rank 0's
        print(f"{done}; checkpoint {result.checkpoint}" + (f"; generator {result.generator}" if result.generator else ""))
    return 130 if result.status == "interrupted" else 0


if __name__ == "__main__":
    raise SystemExit(main())
