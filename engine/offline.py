"""Despeckle files offline: pictures, DICOM files (single or multi-frame) and videos.

Names are kept: ``scan/x_012.png`` -> ``OUT/x_012.png``; a folder's files land under ``OUT``
with their paths relative to the folder.  Pictures are written in their own format, DICOM files as
DICOM (8-bit MONOCHROME2, uncompressed, new series and instance UIDs, ``ImageType`` DERIVED), videos
as videos at the source's frame rate (``.avi`` Motion-JPEG, ``.mp4`` MPEG-4 part 2; other
containers are written as ``.avi``).  Reading uses :mod:`training.data` (numpy, cv2, pydicom; no
torch).  A file that cannot be read, despeckled or written is logged and counted, and the run goes
on with the next one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from engine.base import Despeckler
from training.data import IMAGE_SUFFIXES, VIDEO_SUFFIXES, DataError, list_files, read_frames
from training.sim.cine import CODECS

__all__ = ["OutputError", "OfflineReport", "plan_outputs", "despeckle_files"]

log = logging.getLogger(__name__)


class OutputError(OSError):
    """A despeckled file could not be written."""


@dataclass
class OfflineReport:
    """What a run did: files written, files that failed (with the reason) and frames despeckled."""

    written: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    frames: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


def plan_outputs(inputs: list[Path], output: Path, recursive: bool = False) -> list[tuple[Path, Path]]:
    """``(source, destination)`` for every file named or found in a named folder.

    A missing input is kept (its read fails and is counted); a folder without readable files
    raises :class:`DataError`.
    """
    jobs = []
    for source in inputs:
        if source.is_dir():
            jobs += [(f, output / f.relative_to(source)) for f in list_files(source, recursive)]
        else:
            jobs.append((source, output / source.name))
    return jobs


def _video_fps(path: Path) -> float:
    capture = cv2.VideoCapture(str(path))
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    return fps if fps and fps > 0 else 30.0


def _write_picture(dst: Path, frames: Iterator[np.ndarray]) -> int:
    (frame,) = frames
    if not cv2.imwrite(str(dst), frame):
        raise OutputError(f"{dst}: OpenCV cannot write this picture format")
    return 1


def _write_video(src: Path, dst: Path, frames: Iterator[np.ndarray]) -> int:
    fourcc = cv2.VideoWriter_fourcc(*CODECS[dst.suffix.lower()])
    writer, count = None, 0
    try:
        for frame in frames:
            if writer is None:
                writer = cv2.VideoWriter(str(dst), fourcc, _video_fps(src), frame.shape[::-1], isColor=True)
                if not writer.isOpened():
                    raise OutputError(f"{dst}: OpenCV cannot open a video writer for it")
            writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
            count += 1
    finally:
        if writer is not None:
            writer.release()
    return count


#: tags that map or describe stored pixel values; wrong for the new 8-bit grey pixels.
_STALE_PIXEL_TAGS = (
    "WindowCenter", "WindowWidth", "VOILUTSequence", "VOILUTFunction", "ModalityLUTSequence",
    "RescaleIntercept", "RescaleSlope", "RescaleType", "PixelPaddingValue", "PixelPaddingRangeLimit",
    "SmallestImagePixelValue", "LargestImagePixelValue", "RedPaletteColorLookupTableDescriptor",
    "GreenPaletteColorLookupTableDescriptor", "BluePaletteColorLookupTableDescriptor",
    "RedPaletteColorLookupTableData", "GreenPaletteColorLookupTableData", "BluePaletteColorLookupTableData",
)


def _write_dicom(src: Path, dst: Path, frames: Iterator[np.ndarray]) -> int:
    import pydicom
    from pydicom.uid import generate_uid

    stack = list(frames)
    ds = pydicom.dcmread(src)
    pixels = np.stack(stack) if len(stack) > 1 else stack[0]
    ds.set_pixel_data(pixels, photometric_interpretation="MONOCHROME2", bits_stored=8)
    for keyword in _STALE_PIXEL_TAGS:  # they describe the source's pixel values, not ours
        if keyword in ds:
            delattr(ds, keyword)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SeriesDescription = f"{ds.get('SeriesDescription', '')} despeckled".strip()
    ds.DerivationDescription = "despeckled by usdespeckle (DRNN, Mishra et al.)"
    ds.save_as(dst, enforce_file_format=True)
    return len(stack)


def _despeckle_one(despeckler: Despeckler, src: Path, dst: Path) -> tuple[Path, int]:
    """Despeckle ``src`` into ``dst`` (kind from the suffix: picture, video, else DICOM, which
    :func:`training.data.read_frames` has then recognised).  A failed file leaves no output."""
    suffix = src.suffix.lower()
    if suffix in VIDEO_SUFFIXES and dst.suffix.lower() not in CODECS:
        dst = dst.with_suffix(".avi")
    if src.resolve() == dst.resolve():
        raise OutputError(f"{dst}: refusing to overwrite the input; choose another --output folder")
    dst.parent.mkdir(parents=True, exist_ok=True)
    frames = despeckler.imap(read_frames(src))
    try:
        if suffix in IMAGE_SUFFIXES:
            return dst, _write_picture(dst, frames)
        if suffix in VIDEO_SUFFIXES:
            return dst, _write_video(src, dst, frames)
        return dst, _write_dicom(src, dst, frames)
    except BaseException:
        dst.unlink(missing_ok=True)
        raise


def despeckle_files(
    despeckler: Despeckler, inputs: list[Path], output: Path, recursive: bool = False
) -> OfflineReport:
    """Despeckle every file of ``inputs`` (files or folders) into ``output``; see the module doc."""
    report = OfflineReport()
    jobs: list[tuple[Path, Path]] = []
    for source in inputs:
        try:
            jobs += plan_outputs([source], output, recursive)
        except DataError as exc:
            report.failed.append(str(exc))
            log.warning("skipping %s", exc)
    for src, dst in tqdm(jobs, desc="despeckle", unit="file"):
        try:
            written, count = _despeckle_one(despeckler, src, dst)
        except (OSError, ValueError) as exc:  # OutputError; DataError, FrameError and pydicom's errors
            reason = str(exc) if str(src) in str(exc) else f"{src}: {exc}"
            report.failed.append(reason)
            log.warning("failed: %s", reason)
            continue
        report.written.append(written)
        report.frames += count
    return report
