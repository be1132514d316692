"""Training pairs from a teacher model, at the grey levels the engine runs a model at.

A small model is distilled from a larger one (the teacher) on pairs ``(x, y)``: ``x`` a low-probe
frame, ``y`` the teacher's output on it.  The engine maps each frame's grey levels before the model
(:mod:`engine.levels`, ``--levels preset`` by default) and the output back, so a student meant to
run behind that map learns from frames mapped the same way:

    x = forward(frame)          (:func:`engine.levels.as_fed`: the frame's level map, or the frame
                                 itself where it needs none)
    y = teacher(x)              (no mapping back: at run time the student's output is mapped back,
                                 as the teacher's would be)

Mode ``off`` writes the frames as they are and the teacher's output on them.  The pairs are written
as ``OUT/x_NNNN.png`` / ``OUT/y_NNNN.png`` (``python -m training.train --pairs OUT``), numbered in
input order, with ``OUT/levels.json`` (:data:`training.data.LEVELS_FILE`): the mode as
``input_levels``, the teacher file, its sha256 and how it ran (``describe()``: backend,
flip averaging), and each pair's source.  The trainer records
the mode in every checkpoint and export (``input_levels``), and the engine warns when it runs the
student at other grey levels.  A file or frame that cannot be read or despeckled is logged and
counted, and the run goes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from engine.base import Despeckler, FrameError
from engine.files import atomic_write_bytes, naming, sha256_file
from engine.levels import DEFAULT_LEVELS, as_fed, level_ranges
from training.data import LEVELS_FILE, DataError, list_files, read_frames, total_frames

__all__ = ["PairsError", "PairsReport", "check_pairs_output", "teacher_pairs", "write_png"]

log = logging.getLogger(__name__)


class PairsError(OSError):
    """The output folder cannot take the pairs (it holds pairs already, or is not a folder)."""


@dataclass
class PairsReport:
    """What a run wrote: ``written`` pairs, of which ``mapped`` were at other grey levels than the
    mode's (and mapped), and ``failed``, one reason per file or frame left out."""

    written: int = 0
    mapped: int = 0
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def _high_probe_image(path: Path) -> bool:
    """``y_NNN.png`` beside its ``x_NNN.png`` and ``truth_NNN.npz``: the high probe's image of a
    paired simulator set, not a low-probe frame."""
    n = path.name[2:-4]
    return (path.name.startswith("y_") and path.suffix == ".png" and (path.parent / f"x_{n}.png").is_file()
            and (path.parent / f"truth_{n}.npz").is_file())


def _sources(inputs: Sequence[Path], recursive: bool, report: PairsReport) -> list[Path]:
    """The files of ``inputs`` (folders listed), less the high probe's images of paired simulator
    sets (:func:`_high_probe_image`: a set's ``eval/`` given as a folder gives its x images only)."""
    files: list[Path] = []
    for source in inputs:
        try:
            listed = list_files(source, recursive) if source.is_dir() else [source]
        except DataError as exc:
            report.failed.append(str(exc))
            log.warning("skipping %s", exc)
            continue
        high = {p for p in listed if _high_probe_image(p)} if source.is_dir() else set()
        if high:
            log.info("%s: a paired simulator set; its %d y_NNN.png (the high probe's images) left out", source, len(high))
        files += [p for p in listed if p not in high]
    return files


def _frames(files: Sequence[Path], report: PairsReport) -> Iterator[tuple[str, np.ndarray]]:
    """``("file#k", frame)`` for every frame of ``files``; an unreadable file is counted in ``report``."""
    for path in files:
        try:
            for k, frame in enumerate(read_frames(path)):
                yield f"{path}#{k}", frame
        except (DataError, OSError, ValueError) as exc:  # pydicom's errors are ValueErrors
            reason = naming(path, exc)
            report.failed.append(reason)
            log.warning("skipping %s", reason)


def check_pairs_output(output: str | Path) -> None:
    """:class:`PairsError` unless ``output`` is a new or pair-free folder (nothing is overwritten)."""
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise PairsError(f"{output}: not a folder; --output takes a folder for the pairs")
    if output.is_dir() and (any(output.glob("x_*.png")) or (output / LEVELS_FILE).exists()):
        raise PairsError(f"{output}: holds training pairs already; give an empty or new folder")


def write_png(path: Path, image: np.ndarray) -> None:
    """``image`` as a PNG file at ``path``, written atomically (:func:`engine.files.atomic_write_bytes`)."""
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise PairsError(f"{path}: OpenCV could not encode the image as PNG")
    atomic_write_bytes(path, data.tobytes())


def teacher_pairs(
    teacher: Despeckler,
    inputs: Sequence[str | Path],
    output: str | Path,
    levels: str = DEFAULT_LEVELS,
    *,
    recursive: bool = False,
    progress: bool = True,
) -> PairsReport:
    """Write the training pairs of every frame of ``inputs`` (pictures, DICOM files, videos or
    folders of them) into the folder ``output`` (module docstring).

    ``teacher``: the model run on the mapped frames, itself without a grey-level map (a backend of
    :func:`engine.registry.create_backend`).  ``levels``: a mode of
    :data:`engine.levels.LEVEL_MODES` (``ValueError`` otherwise).  :class:`PairsError` before any
    work if ``output`` holds pairs already or is a file (:func:`check_pairs_output`).  Where no
    frame becomes a pair, ``levels.json`` is removed again.
    """
    level_ranges(levels)  # a bad mode fails before any work
    output = Path(output)
    check_pairs_output(output)
    output.mkdir(parents=True, exist_ok=True)
    report = PairsReport()
    files = _sources([Path(p) for p in inputs], recursive, report)
    record = {"input_levels": levels, "teacher": str(teacher.weights),
              "teacher_sha256": sha256_file(teacher.weights) if teacher.weights is not None else None,
              "teacher_run": teacher.describe(),
              "complete": False, "pairs": {}}
    manifest = output / LEVELS_FILE  # first: a run cut short leaves pairs that say how they were made
    atomic_write_bytes(manifest, json.dumps(record, indent=1).encode())
    total = total_frames(files) if progress else None
    for source, frame in tqdm(_frames(files, report), desc="pairs", unit="frame", total=total, disable=not progress):
        x = as_fed(frame, levels)
        try:
            y = teacher.infer(x)
        except FrameError as exc:
            report.failed.append(f"{source}: {exc}")
            log.warning("skipping %s: %s", source, exc)
            continue
        name = f"{report.written:04d}.png"
        write_png(output / f"x_{name}", x)
        write_png(output / f"y_{name}", y)
        record["pairs"][f"x_{name}"] = source
        report.written += 1
        report.mapped += x is not frame
    if report.written == 0:  # nothing to train on: leave the folder free for another run
        manifest.unlink()
        return report
    record["complete"] = True
    atomic_write_bytes(manifest, json.dumps(record, indent=1).encode())
    return report
