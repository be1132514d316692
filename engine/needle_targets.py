"""Distillation targets that keep the input's needle: ``y = max(y, x)`` inside the true needle mask.

A student distilled from the default model learns to weaken a needle as its teacher does
(``weights/MODEL_CARD.md``, "Needles").  Made from the x images of paired simulator sets drawn with
``--needle``, each target of a pairs folder of ``python -m engine.distill`` is rewritten so that
inside the simulator's needle mask, dilated by ``dilate_px`` pixels, it is never darker than its
input (the frame as the engine fed it to the teacher, at the pairs' grey levels):

    y' = max(y, x)   inside dilate(needle, dilate_px)
    y' = y           elsewhere

The mask comes from the simulator's truth, not from a search of the image (which cannot tell a
needle from a straight interface, ``weights/HISTORY.md`` step 44): the student learns from examples
what a needle looks like.  Each pair's source (``levels.json``'s ``pairs``, written by
``engine.distill``) names its ``x_NNN.png``; its mask is ``truth_NNN.npz`` in the ``--truth`` folder.

    python -m training.simulate --out needles --count 0 --paired --eval-count 40 --needle --jitter 1
    python -m engine.distill needles/eval --output pairs_needles    # its x images (the low probe's)
    python -m engine.needle_targets pairs_needles --truth needles/eval
    python -m training.train --config fast --pairs other_pairs/ pairs_needles --out runs/fast

The pairs folder's ``levels.json`` records what was done (``needle_targets``).  A pair whose truth
file is missing or has no needle mask is counted, reported and left as it is (exit status 1).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from engine.files import atomic_write_bytes
from engine.pairs import write_png
from training.argparsing import OneLineParser, non_negative_int, print_outcome
from training.data import LEVELS_FILE, DataError

__all__ = ["NeedleTargetsReport", "keep_needle", "needle_targets", "main"]

_SOURCE = re.compile(r"x_(\d+)\.png(#\d+)?$")


@dataclass
class NeedleTargetsReport:
    """What :func:`needle_targets` did: pairs rewritten, pixels raised, pairs left as they were (why)."""

    rewritten: int = 0
    raised: int = 0
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def keep_needle(x: np.ndarray, y: np.ndarray, needle: np.ndarray, dilate_px: int = 1) -> np.ndarray:
    """``max(y, x)`` inside ``needle`` (bool, dilated by ``dilate_px`` pixels with a square), ``y``
    elsewhere: three arrays of one shape in, a new ``uint8`` array out."""
    if not x.shape == y.shape == needle.shape:
        raise ValueError(f"x {x.shape}, y {y.shape} and needle mask {needle.shape} differ in shape")
    mask = needle.astype(np.uint8)
    if dilate_px:
        mask = cv2.dilate(mask, np.ones((2 * dilate_px + 1,) * 2, np.uint8))
    return np.where(mask > 0, np.maximum(y, x), y).astype(np.uint8)


def _needle_of(source: str, truth: Path) -> np.ndarray:
    match = _SOURCE.search(source)
    if match is None:
        raise DataError(f"source {source!r} is not a simulator x_NNN.png")
    path = truth / f"truth_{match.group(1)}.npz"
    try:
        with np.load(path) as npz:
            needle = npz["needle"].astype(bool) if "needle" in npz.files else None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read ground truth ({exc})") from None
    if needle is None:
        raise DataError(f"{path}: no needle mask (simulate with --needle)")
    return needle


def needle_targets(pairs: str | Path, truth: str | Path, dilate_px: int = 1) -> NeedleTargetsReport:
    """Rewrite the targets of the pairs folder ``pairs`` (:func:`keep_needle`, masks from the
    ``truth_NNN.npz`` files of ``truth``) and record it in its ``levels.json``.  :class:`DataError`
    for a folder that is not ``engine.distill``'s; a pair that cannot be done is counted in the report."""
    pairs, truth = Path(pairs), Path(truth)
    record_path = pairs / LEVELS_FILE
    if not pairs.is_dir():
        raise DataError(f"{pairs}: no such folder")
    if not record_path.is_file():
        raise DataError(f"{pairs}: not a pairs folder of python -m engine.distill (it has no {LEVELS_FILE})")
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        sources = dict(record["pairs"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{record_path}: not a pairs record of python -m engine.distill ({exc})") from None
    if not truth.is_dir():
        raise DataError(f"{truth}: no such folder")
    report = NeedleTargetsReport()
    for x_name, source in sorted(sources.items()):
        x_path, y_path = pairs / x_name, pairs / ("y" + x_name[1:])
        try:
            needle = _needle_of(source, truth)
            x = cv2.imread(str(x_path), cv2.IMREAD_UNCHANGED)
            y = cv2.imread(str(y_path), cv2.IMREAD_UNCHANGED)
            if x is None or y is None:
                raise DataError(f"{x_path if x is None else y_path}: missing or unreadable")
            kept = keep_needle(x, y, needle, dilate_px)
        except (DataError, ValueError) as exc:
            report.failed.append(f"{x_name}: {exc}")
            continue
        report.raised += int((kept != y).sum())
        write_png(y_path, kept)
        report.rewritten += 1
    record["needle_targets"] = {"truth": str(truth), "dilate_px": dilate_px, "rewritten": report.rewritten,
                                "pixels_raised": report.raised}
    atomic_write_bytes(record_path, (json.dumps(record, indent=1) + "\n").encode())
    return report


def main(argv: list[str] | None = None) -> int:
    """``python -m engine.needle_targets PAIRS [PAIRS ...] --truth DIR [--dilate-px N]``.  Exit
    status 0; 1 when some pair could not be done (each reported); 2 for bad arguments or folders."""
    parser = OneLineParser(prog="python -m engine.needle_targets", description=__doc__.splitlines()[0])
    parser.add_argument("pairs", type=Path, nargs="+", metavar="PAIRS", help="pairs folder(s) of python -m engine.distill")
    parser.add_argument("--truth", type=Path, required=True,
                        help="the simulator's eval/ folder whose x_NNN.png the pairs were made from (truth_NNN.npz)")
    parser.add_argument("--dilate-px", type=non_negative_int, default=1,
                        help="widen the needle mask by this many pixels (default: 1)")
    args = parser.parse_args(argv)
    status = 0
    for folder in args.pairs:
        try:
            report = needle_targets(folder, args.truth, args.dilate_px)
        except (DataError, OSError) as exc:  # not a pairs folder, or a write that failed (disk full, no permission)
            print(f"python -m engine.needle_targets: {exc}", file=sys.stderr)
            return 2
        print_outcome(f"{folder}: {report.rewritten} target(s) rewritten, {report.raised} pixel(s) raised", report.failed)
        status = max(status, 0 if report.ok else 1)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
