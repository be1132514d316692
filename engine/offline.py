"""Despeckle files offline: pictures, DICOM files (single or multi-frame) and videos.

Names are kept: ``scan/x_012.png`` -> ``OUT/x_012.png``; a folder's files land under ``OUT``
with their paths relative to the folder; where ``OUT`` lies inside a named folder, the files
under it (an earlier run's outputs) are left out of that folder's walk.  Where two inputs would
land on one output (``a/x.png`` and ``b/x.png`` named together), the first is written and the
later ones are counted as failed, each with a line naming both.  Pictures are written in their
own format, DICOM files as DICOM (8-bit MONOCHROME2, uncompressed, new series and instance UIDs,
``ImageType`` DERIVED), videos as videos at the source's frame rate (``.avi`` Motion-JPEG,
``.mp4`` MPEG-4 part 2; other containers are written as ``.avi``).  Reading uses
:mod:`training.data` (numpy, cv2, pydicom; no torch).  A file that cannot be read, despeckled or
written is logged and counted, and the run goes on with the next one; so is a missing path or a
file of none of these kinds (:func:`training.data.file_kind`), and a video that ends well before the frame
count its header declares (:func:`frames_missing`).  Each file is written to a temporary name in
the destination folder and renamed into place only when it is complete, so a failed file leaves
an existing output as it was.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from engine.base import Despeckler
from engine.files import naming, temporary_sibling
from engine.persistence import Persistence
from engine.pixels import PixelMode, resamples, spacing_for, working_pixel_mm
from engine.speckle import frames_view
from training.data import (
    VIDEO_SUFFIXES,
    DataError,
    dicom_spacing,
    file_kind,
    list_files,
    read_frames,
    total_frames,
)
from training.sim.cine import CODECS

__all__ = ["OutputError", "TruncatedVideo", "OfflineReport", "plan_outputs", "frames_missing", "file_spacing",
           "despeckle_files"]

log = logging.getLogger(__name__)


class OutputError(OSError):
    """A despeckled file could not be written."""


class TruncatedVideo(ValueError):
    """A video whose frames end before the count its header declares (cut short, or damaged)."""


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
    """``(source, destination)`` for every file named or found in a named folder; a video whose
    container has no writer here goes to ``.avi``.

    A missing input is kept (its despeckling fails and is counted); a folder without readable files
    (outside ``output``, :func:`_walk`) raises :class:`DataError`.
    """
    jobs = []
    for source in inputs:
        if source.is_dir():
            files = _walk(source, output, recursive)
            jobs += [(f, _destination(f, output / f.relative_to(source))) for f in files]
        else:
            jobs.append((source, _destination(source, output / source.name)))
    return jobs


def _walk(folder: Path, output: Path, recursive: bool) -> list[Path]:
    """:func:`training.data.list_files` of ``folder``, less the files under ``output`` where it lies
    inside ``folder`` (an earlier run's outputs, which would otherwise be despeckled again)."""
    files = list_files(folder, recursive)
    top, out = folder.resolve(), output.resolve()
    if out == top or not out.is_relative_to(top):
        return files
    kept = [f for f in files if not f.parent.resolve().is_relative_to(out)]
    if not kept:
        raise DataError(f"{folder}: no images, DICOM files or videos outside the output folder {output}")
    if len(kept) < len(files):
        log.info("%s: %d file(s) under the output folder %s left out", folder, len(files) - len(kept), output)
    return kept


def _destination(src: Path, dst: Path) -> Path:
    """``dst``, as ``.avi`` where ``src`` is a video whose suffix has no writer (:data:`CODECS`)."""
    if src.suffix.lower() in VIDEO_SUFFIXES and dst.suffix.lower() not in CODECS:
        return dst.with_suffix(".avi")
    return dst


def _video_header(path: Path) -> tuple[float, int]:
    """``(frame rate, frame count)`` from a video's header; 30 fps and 0 frames where it has none."""
    capture = cv2.VideoCapture(str(path))
    try:
        fps, count = capture.get(cv2.CAP_PROP_FPS), capture.get(cv2.CAP_PROP_FRAME_COUNT)
    finally:
        capture.release()
    return (fps if fps and fps > 0 else 30.0), (int(count) if count and count > 0 else 0)


def frames_missing(declared: int, read: int) -> int:
    """Frames missing from a video that declares ``declared`` and gave ``read``, beyond a tolerance
    (0 when within it or when the header has no count).  Some containers only estimate their count
    (from duration x frame rate), so up to 2 % of it, and at least one frame, may be missing."""
    return max(0, declared - read - max(1, -(-declared * 2 // 100)))


def _write_picture(dst: Path, tmp: Path, frames: Iterator[np.ndarray]) -> int:
    (frame,) = frames
    if not cv2.imwrite(str(tmp), frame):
        raise OutputError(f"{dst}: OpenCV cannot write this picture format")
    return 1


def _write_video(src: Path, dst: Path, tmp: Path, frames: Iterator[np.ndarray]) -> int:
    """Write ``frames`` as a video at ``tmp`` (codec from the suffix of ``dst``, which it shares);
    :class:`TruncatedVideo` if they end before the count in ``src``'s header (:func:`frames_missing`)."""
    fourcc = cv2.VideoWriter_fourcc(*CODECS[dst.suffix.lower()])
    fps, declared = _video_header(src)
    writer, count = None, 0
    try:
        for frame in frames:
            if writer is None:
                writer = cv2.VideoWriter(str(tmp), fourcc, fps, frame.shape[::-1], isColor=True)
                if not writer.isOpened():
                    raise OutputError(f"{dst}: OpenCV cannot open a video writer for it")
            writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
            count += 1
    finally:
        if writer is not None:
            writer.release()
    if frames_missing(declared, count):
        raise TruncatedVideo(f"{src}: the video ends after {count} of the {declared} frames its header declares "
                             "(cut short or damaged); not written")
    return count


#: tags that map or describe stored pixel values; wrong for the new 8-bit grey pixels.
_STALE_PIXEL_TAGS = (
    "WindowCenter", "WindowWidth", "VOILUTSequence", "VOILUTFunction", "ModalityLUTSequence",
    "RescaleIntercept", "RescaleSlope", "RescaleType", "PixelPaddingValue", "PixelPaddingRangeLimit",
    "SmallestImagePixelValue", "LargestImagePixelValue", "RedPaletteColorLookupTableDescriptor",
    "GreenPaletteColorLookupTableDescriptor", "BluePaletteColorLookupTableDescriptor",
    "RedPaletteColorLookupTableData", "GreenPaletteColorLookupTableData", "BluePaletteColorLookupTableData",
)


def _write_dicom(src: Path, tmp: Path, frames: Iterator[np.ndarray]) -> int:
    import pydicom
    from pydicom.uid import generate_uid

    stack = list(frames)
    ds = pydicom.dcmread(src)
    # a multi-frame object (NumberOfFrames present, even at 1) stays one: its IOD requires the tag
    pixels = np.stack(stack) if len(stack) > 1 or "NumberOfFrames" in ds else stack[0]
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
    ds.save_as(tmp, enforce_file_format=True)
    return len(stack)


def file_spacing(path: Path) -> tuple[float, float] | None:
    """The pixel spacing ``(row, column)`` mm a file carries: a DICOM file's own (``None`` if it has
    none); pictures and videos carry none.  The kind is :func:`training.data.file_kind`'s, as the
    readers take the file (:class:`training.data.DataError` for a file they do not read)."""
    return dicom_spacing(path) if file_kind(path) == "dicom" else None


def _persisted(frames: Iterator[np.ndarray], persistence: float, motion: float = 0.0) -> Iterator[np.ndarray]:
    """``frames`` averaged over time by :mod:`engine.persistence` (as they are for ``persistence`` 0),
    motion-adaptive with ``motion`` grey levels."""
    average = Persistence(persistence, motion)
    for frame in frames:
        yield average(frame)


def _counted(frames: Iterator[np.ndarray], bar: tqdm) -> Iterator[np.ndarray]:
    """``frames``, each counted on ``bar`` as it is read."""
    for frame in frames:
        bar.update(1)
        yield frame


def _despeckle_one(despeckler: Despeckler, src: Path, dst: Path, bar: tqdm, pixel_mm: PixelMode = "auto",
                   persistence: float = 0.0, motion: float = 0.0) -> tuple[Path, int]:
    """Despeckle ``src`` into ``dst`` (as its :func:`training.data.file_kind`), through a temporary file beside
    ``dst`` renamed onto it at the end, each frame counted on ``bar`` as it is read.  A failed file
    leaves ``dst`` as it was (absent or the old file).  ``pixel_mm``, ``persistence``, ``motion``:
    see :func:`despeckle_files`."""
    kind = file_kind(src)
    if src.resolve() == dst.resolve():
        raise OutputError(f"{dst}: refusing to overwrite the input; choose another --output folder")
    dst.parent.mkdir(parents=True, exist_ok=True)
    spacing = spacing_for(pixel_mm, lambda: file_spacing(src))
    if spacing is not None and resamples(spacing):
        log.info("%s: pixels of %g x %g mm, despeckled on square pixels of %g mm and resampled back", src, *spacing,
                 working_pixel_mm(spacing))
    view = frames_view(despeckler, pixel_mm, spacing)  # a view, not closed; a speckle window per file
    frames = _persisted(view.imap(_counted(read_frames(src), bar)), persistence, motion)
    tmp = temporary_sibling(dst)
    try:
        if kind == "picture":
            count = _write_picture(dst, tmp, frames)
        elif kind == "video":
            count = _write_video(src, dst, tmp, frames)
        else:
            count = _write_dicom(src, tmp, frames)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dst, count


def despeckle_files(
    despeckler: Despeckler, inputs: list[Path], output: Path, recursive: bool = False, pixel_mm: PixelMode = "auto",
    persistence: float = 0.0, motion: float = 0.0, progress: bool = True,
) -> OfflineReport:
    """Despeckle every file of ``inputs`` (files or folders) into ``output``; see the module doc.

    ``pixel_mm``, the frames' pixel spacing for :mod:`engine.pixels` (the model on square pixels of
    a size it was trained on): ``"auto"`` a DICOM file's own spacing, else (pictures, videos) the
    file's speckle size (:mod:`engine.speckle`: a picture by its own, a video by the median of
    recent measurements), ``"spacing"`` a DICOM file's own spacing and other files as they are,
    ``"off"`` every file as it is, ``(row_mm, col_mm)`` every file at it.
    ``persistence``: within a video or a multi-frame DICOM file, the running average of the
    despeckled frames is written (:mod:`engine.persistence`; 0: none), motion-adaptive with
    ``motion`` grey levels (0: plain).  ``progress``: a progress bar over the frames, its total
    read from the files' headers (:func:`training.data.total_frames`; none where one does not say)."""
    report = OfflineReport()
    jobs: list[tuple[Path, Path]] = []
    for source in inputs:
        try:
            jobs += plan_outputs([source], output, recursive)
        except DataError as exc:
            report.failed.append(str(exc))
            log.warning("skipping %s", exc)
    claimed: dict[Path, Path] = {}  # destination -> the source writing it
    total = total_frames(src for src, _ in jobs) if progress else None
    with tqdm(desc="despeckle", unit="frame", total=total, disable=not progress) as bar:
        for k, (src, dst) in enumerate(jobs):
            bar.set_postfix_str(f"file {k + 1}/{len(jobs)}", refresh=False)
            first = claimed.setdefault(dst.resolve(), src)
            if first != src:
                reason = (f"{src}: its output {dst} is already {first}'s; not despeckled (rename one of them, or "
                          "despeckle them into separate --output folders)")
                report.failed.append(reason)
                log.warning("failed: %s", reason)
                continue
            try:
                written, count = _despeckle_one(despeckler, src, dst, bar, pixel_mm, persistence, motion)
            except (OSError, ValueError) as exc:  # OutputError; DataError, FrameError and pydicom's errors
                reason = naming(src, exc)
                report.failed.append(reason)
                log.warning("failed: %s", reason)
                continue
            report.written.append(written)
            report.frames += count
    return report
