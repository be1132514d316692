"""Recalibrate a trained generator's output grey levels to a high-quality probe's (unpaired images).

    python -m training.calibrate --weights runs/ship/generator.pt --low data/low --high data/high --out gen_cal.pt
    python -m training.calibrate --weights runs/ship/generator.pt --pairs data/sim/eval --out gen_cal.pt

``--low`` and ``--high``: folders (or video / DICOM files) of the two probes' images, not
paired; whole frames count.  ``--pairs``: a ``python -m training.simulate --paired`` folder
(x, y and truth files), whose images count inside their homogeneous parenchyma only.  Fits two numbers, a gain and an offset of the generator's pre-sigmoid output, and
folds them into its head: see :mod:`training.calibration`.  Then export as usual
(``python -m engine.export``).
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

from training.argparsing import OneLineParser
from training.outputs import PathError, check_output_file

__all__ = ["CalibrateConfig", "main"]


@dataclass(frozen=True)
class CalibrateConfig:
    """``images``: frames read from each of ``low`` and ``high`` (or pairs from ``pairs``) at most, in name order."""

    weights: Path
    out: Path
    low: Path | None = None
    high: Path | None = None
    pairs: Path | None = None
    images: int = 64
    threads: int = 0


def _parse(argv: list[str] | None) -> CalibrateConfig:
    p = OneLineParser(prog="python -m training.calibrate", description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, required=True, help="generator or training checkpoint (usdespeckle-ckpt-1)")
    p.add_argument("--low", type=Path, help="low-quality probe's images: folder, video or DICOM file")
    p.add_argument("--high", type=Path, help="high-quality probe's images: folder, video or DICOM file")
    p.add_argument("--pairs", type=Path, help="instead of --low/--high: a simulated paired folder (parenchyma only)")
    p.add_argument("--out", type=Path, required=True, help="calibrated generator file to write")
    p.add_argument("--images", type=int, default=64, help="frames read from each of --low, --high (or pairs from --pairs) at most, in name order (default %(default)s)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    a = p.parse_args(argv)
    if a.images < 1:
        p.error(f"--images must be at least 1, got {a.images}")
    if a.threads < 0:
        p.error(f"--threads must be 0 (torch's choice) or more, got {a.threads}")
    unpaired = a.low is not None and a.high is not None
    if (a.pairs is None) != unpaired or (a.pairs is not None and (a.low or a.high)):
        p.error("give either --low and --high, or --pairs")
    try:  # before the calibration's minutes, not after them
        check_output_file(a.out, "--out")
    except PathError as exc:
        p.error(str(exc))
    return CalibrateConfig(a.weights, a.out, a.low, a.high, a.pairs, a.images, a.threads)


def main(argv: list[str] | None = None) -> int:
    config = _parse(argv)
    import torch

    from training.calibration import OutputCalibrationError, calibrate_checkpoint
    from training.checkpoint import CheckpointError
    from training.data import DataError, iter_frames, read_pairs, read_truth

    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        if config.pairs is not None:
            xs, ys = read_pairs(config.pairs)
            masks = [t["parenchyma"] for t in read_truth(config.pairs)][: config.images]
            cal = calibrate_checkpoint(config.weights, xs[: config.images], ys[: config.images], config.out,
                                       low_masks=masks, high_masks=masks, data=f"pairs {config.pairs}")
        else:
            low = list(itertools.islice(iter_frames(config.low, skip_bad=True), config.images))
            high = list(itertools.islice(iter_frames(config.high, skip_bad=True), config.images))
            cal = calibrate_checkpoint(config.weights, low, high, config.out,
                                       data=f"low {config.low}, high {config.high}")
    except (OutputCalibrationError, CheckpointError, DataError, OSError) as exc:  # OSError: writing --out
        print(f"training.calibrate: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {config.out}: gain {cal.gain:.4f}, offset {cal.offset:+.4f}; KL(high || G(low)) "
          f"{cal.kl_before:.4f} -> {cal.kl_after:.4f} nats on {cal.low_images} low / {cal.high_images} high images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
