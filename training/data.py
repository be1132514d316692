"""Reading ultrasound images from disk and cutting training crops.  numpy, cv2 and pydicom only.

Readers return grey-scale ``uint8 (H, W)`` frames whatever the file holds:

* pictures (PNG, JPEG, TIFF, BMP): colour -> grey (ITU-R BT.601 luma), 16-bit -> the top 8 bits,
  floating point -> min..max stretched to 0..255;
* DICOM (single frame or multi-frame cine): MONOCHROME2 as is, MONOCHROME1 inverted, RGB and
  YBR converted to grey, PALETTE COLOR through its lookup table; more than 8 bits stored ->
  ``value * 255 / (2**BitsStored - 1)``;
* videos (AVI, MP4, ...): every frame, or every ``every``-th.

Crops follow the paper: random crops (``random_crops``) and a moving window with 50 %
overlap (``window_crops``).  :class:`CropSource` keeps a folder's images in memory and cuts
either kind.  Every problem is a :class:`DataError` (a ``ValueError``) naming the file.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

__all__ = [
    "DataError",
    "IMAGE_SUFFIXES",
    "DICOM_SUFFIXES",
    "VIDEO_SUFFIXES",
    "FileKind",
    "file_kind",
    "to_uint8",
    "read_image",
    "read_frames",
    "count_frames",
    "total_frames",
    "dicom_spacing",
    "iter_frames",
    "iter_named_frames",
    "list_files",
    "read_folder",
    "eval_x_paths",
    "read_pairs",
    "read_truth",
    "LEVELS_FILE",
    "read_levels",
    "common_levels",
    "random_positions",
    "window_positions",
    "cut",
    "random_crops",
    "window_crops",
    "CropSource",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
VIDEO_SUFFIXES = frozenset({".avi", ".mp4", ".mov", ".mkv", ".mpg", ".mpeg", ".wmv", ".m4v"})


class DataError(ValueError):
    """An input the data layer cannot use: unreadable file, empty folder, image smaller than a crop."""


def to_uint8(array: np.ndarray, bits: int | None = None) -> np.ndarray:
    """Grey values to ``uint8``: ``uint8`` as is; integers ``* 255 / (2**bits - 1)`` (``bits``:
    the stored bit depth, by default the dtype's); floats stretched from min..max to 0..255."""
    a = np.asarray(array)
    if a.dtype == np.uint8:
        return a
    if np.issubdtype(a.dtype, np.integer):
        top = float(2 ** (bits or a.dtype.itemsize * 8) - 1)
        return np.clip(np.rint(a.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating) or a.dtype == np.bool_:
        a = a.astype(np.float64)
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        scaled = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        return np.clip(np.rint(np.nan_to_num(scaled)), 0, 255).astype(np.uint8)
    raise DataError(f"cannot convert pixels of type {a.dtype} to grey levels")


def _grey(frame: np.ndarray, rgb: bool) -> np.ndarray:
    """``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` -> ``(H, W)`` in the same dtype."""
    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 1:
        return frame[:, :, 0]
    if frame.ndim == 3 and frame.shape[2] in (3, 4):
        if frame.dtype not in (np.uint8, np.uint16, np.float32):
            frame = frame.astype(np.float32)
        code = {(3, True): cv2.COLOR_RGB2GRAY, (3, False): cv2.COLOR_BGR2GRAY,
                (4, True): cv2.COLOR_RGBA2GRAY, (4, False): cv2.COLOR_BGRA2GRAY}[(frame.shape[2], rgb)]
        return cv2.cvtColor(np.ascontiguousarray(frame), code)
    raise DataError(f"unexpected pixel array shape {frame.shape}")


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


#: how the readers take a file (:func:`file_kind`).
FileKind = Literal["picture", "dicom", "video"]


def file_kind(path: str | Path) -> FileKind:
    """How the readers take ``path``: a picture by its suffix, DICOM by its suffix or its header
    (a file of any suffix with ``DICM`` at byte 128), a video by its suffix.  :class:`DataError`
    for a missing path or a file of none of these kinds (naming what is read)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "picture"
    if _is_dicom(path):
        return "dicom"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    raise DataError(f"{path}: not a picture, video or DICOM file (this reads pictures {' '.join(sorted(IMAGE_SUFFIXES))}; "
                    f"videos {' '.join(sorted(VIDEO_SUFFIXES))}; DICOM {' '.join(sorted(DICOM_SUFFIXES))} or any file "
                    f"with a DICOM header): unknown file type {suffix!r}")


def dicom_spacing(path: str | Path) -> tuple[float, float] | None:
    """A DICOM file's pixel spacing ``(row_mm, col_mm)``: ``PixelSpacing``, else the first
    ultrasound region's ``PhysicalDeltaY``, ``PhysicalDeltaX`` (cm) x 10; ``None`` when it has
    neither, or values that are not two numbers > 0 (logged).  :class:`DataError` for a file
    pydicom cannot read."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable DICOM file ({exc})") from exc
    spacing = None
    try:
        if "PixelSpacing" in ds:
            spacing = tuple(float(v) for v in ds.PixelSpacing)
        elif ds.get("SequenceOfUltrasoundRegions"):
            r = ds.SequenceOfUltrasoundRegions[0]
            if "PhysicalDeltaX" in r and "PhysicalDeltaY" in r:
                spacing = (abs(float(r.PhysicalDeltaY)) * 10.0, abs(float(r.PhysicalDeltaX)) * 10.0)
    except (TypeError, ValueError):  # a malformed value: as good as none
        spacing = (math.nan, math.nan)
    if spacing is not None and not (len(spacing) == 2 and all(math.isfinite(v) and v > 0 for v in spacing)):
        log.warning("%s: pixel spacing %s is not two numbers > 0 mm; ignored", path, spacing)
        return None
    return spacing


def _dicom_frames(path: Path, every: int) -> Iterator[np.ndarray]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable DICOM file ({exc})") from exc
    if "PixelData" not in ds:
        raise DataError(f"{path}: DICOM file has no pixel data")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    try:
        pixels = ds.pixel_array  # pydicom converts YBR to RGB
        if photometric == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            pixels = apply_color_lut(pixels, ds)
    except (ValueError, NotImplementedError, RuntimeError, AttributeError) as exc:  # codec, LUT, size
        raise DataError(f"{path}: cannot decode DICOM pixel data ({type(exc).__name__}: {exc})") from exc
    colour = int(ds.get("SamplesPerPixel", 1)) > 1 or photometric == "PALETTE COLOR"
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames == 1:
        pixels = pixels[None]
    bits = 16 if photometric == "PALETTE COLOR" else int(ds.get("BitsStored", 8))
    if pixels.ndim != (4 if colour else 3):
        raise DataError(f"{path}: unexpected DICOM pixel array shape {pixels.shape} for {frames} frame(s)")
    for i in range(0, frames, every):
        frame = to_uint8(_grey(pixels[i], rgb=True) if colour else pixels[i], bits)
        yield 255 - frame if photometric == "MONOCHROME1" else frame


def _video_frames(path: Path, every: int) -> Iterator[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DataError(f"{path}: cannot open video (unknown codec or not a video)")
    try:
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index % every == 0:
                yield to_uint8(_grey(frame, rgb=False))
            index += 1
    finally:
        capture.release()
    if index == 0:
        raise DataError(f"{path}: video holds no readable frames")


def _picture(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"{path}: cannot read image (missing, truncated or not an image)")
    if image.dtype == np.uint16 and 0 < int(image.max()) < 4096:
        log.warning("%s: a 16-bit picture whose largest value is %d (12-bit data?): read as 16-bit it comes out "
                    "dark, at most grey level %d; scale it to the full 16-bit range first", path, int(image.max()),
                    int(np.rint(int(image.max()) * 255 / 65535)))
    return to_uint8(_grey(image, rgb=False))


def read_frames(path: str | Path, every: int = 1) -> Iterator[np.ndarray]:
    """Every ``every``-th ``uint8 (H, W)`` frame of one file: picture (1 frame), DICOM or video."""
    path = Path(path)
    if every < 1:
        raise DataError(f"every must be >= 1, got {every}")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    kind = file_kind(path)
    if kind == "picture":
        yield _picture(path)
    elif kind == "dicom":
        yield from _dicom_frames(path, every)
    else:
        yield from _video_frames(path, every)


def count_frames(path: str | Path, every: int = 1) -> int | None:
    """How many frames :func:`read_frames` will give for ``path`` with ``every``, read from headers
    only (for a progress bar's total): 1 for a picture, ``NumberOfFrames`` for DICOM, the
    container's frame count for a video (which some containers state only roughly).  ``None`` where
    the file does not say (a video without a count, a file that cannot be read: :func:`read_frames`
    reports it when it is read)."""
    path = Path(path)
    try:
        kind = file_kind(path)
    except DataError:
        return None
    if kind == "picture":
        return 1
    if kind == "dicom":
        import pydicom
        from pydicom.errors import InvalidDicomError

        try:
            frames = int(pydicom.dcmread(path, stop_before_pixels=True).get("NumberOfFrames", 1) or 1)
        except (InvalidDicomError, OSError, EOFError, TypeError, ValueError):
            return None
    else:
        capture = cv2.VideoCapture(str(path))
        try:
            frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
        finally:
            capture.release()
        if frames <= 0:
            return None
    return -(-frames // every)


def total_frames(paths: Iterable[str | Path]) -> int | None:
    """The frames :func:`read_frames` will give for all of ``paths`` (:func:`count_frames`; a
    progress bar's total), ``None`` where any file does not say."""
    counts = [count_frames(path) for path in paths]
    return None if None in counts else sum(counts)  # type: ignore[arg-type]


def read_image(path: str | Path, frame: int = 0) -> np.ndarray:
    """One ``uint8 (H, W)`` image: a picture, or frame number ``frame`` of a DICOM file or video."""
    for i, image in enumerate(read_frames(path)):
        if i == frame:
            return image
    raise DataError(f"{path}: has no frame {frame}")


def list_files(folder: str | Path, recursive: bool = False) -> list[Path]:
    """Readable files of a folder (pictures, DICOM, videos), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    known = IMAGE_SUFFIXES | DICOM_SUFFIXES | VIDEO_SUFFIXES
    files = sorted(p for p in candidates if p.is_file() and (p.suffix.lower() in known or _is_dicom(p)))
    if not files:
        nested = not recursive and any(p.is_dir() for p in folder.iterdir())
        raise DataError(f"{folder}: no images, DICOM files or videos"
                        + (" (its sub-folders are not read here)" if nested else ""))
    return files


def iter_frames(source: str | Path, every: int = 1, *, skip_bad: bool = False, recursive: bool = False,
                on_skip: Callable[[Path, str], None] | None = None) -> Iterator[np.ndarray]:
    """Frames of a file, or of every file in a folder in name order.

    With ``skip_bad``, a folder's unreadable files are logged and skipped (a folder with no
    readable frame at all still raises), and ``on_skip(path, reason)`` is called for each after
    the log line (to count them); without it the first bad file raises :class:`DataError`.
    """
    for _, frame in iter_named_frames(source, every, skip_bad=skip_bad, recursive=recursive, on_skip=on_skip):
        yield frame


def iter_named_frames(source: str | Path, every: int = 1, *, skip_bad: bool = False, recursive: bool = False,
                      on_skip: Callable[[Path, str], None] | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, frame)`` for each frame of :func:`iter_frames` (same arguments): ``name`` is the
    file's path, followed by `` frame #i`` for the later frames of a cine or video, for messages
    that name the culprit."""
    source = Path(source)
    if source.is_file():
        for i, frame in enumerate(read_frames(source, every)):
            yield _frame_name(source, i * every), frame
        return
    if not source.exists():
        raise DataError(f"{source}: no such file or folder")
    produced = bad = 0
    for path in list_files(source, recursive):
        try:
            for i, frame in enumerate(read_frames(path, every)):
                produced += 1
                yield _frame_name(path, i * every), frame
        except DataError as exc:
            if not skip_bad:
                raise
            bad += 1
            log.warning("skipping %s", exc)
            if on_skip is not None:
                on_skip(path, str(exc))
    if produced == 0:
        raise DataError(f"{source}: none of its files could be read ({bad} bad)")


def _frame_name(path: Path, index: int) -> str:
    return str(path) if index == 0 else f"{path} frame #{index}"


def read_folder(folder: str | Path, every: int = 1, *, skip_bad: bool = False) -> list[np.ndarray]:
    """All frames of a folder's files as a list of ``uint8 (H, W)`` arrays."""
    return list(iter_frames(folder, every, skip_bad=skip_bad))


def eval_x_paths(folder: str | Path) -> list[Path]:
    """The ``x_NNN.png`` files of a paired set, sorted; ``DataError`` naming the folder when it is
    missing or holds none (with a hint when its ``eval/`` does)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    xs = sorted(folder.glob("x_*.png"))
    if not xs:
        hint = f"; did you mean {folder / 'eval'}?" if any((folder / "eval").glob("x_*.png")) else ""
        raise DataError(f"{folder}: no x_NNN.png files (a paired eval/ set of python -m training.simulate){hint}")
    return xs


def read_pairs(folder: str | Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The paired set ``x_NNN.png`` / ``y_NNN.png`` of ``folder`` as two aligned lists."""
    xs, ys = [], []
    for x_path in eval_x_paths(folder):
        y_path = x_path.with_name("y" + x_path.name[1:])
        if not y_path.is_file():
            raise DataError(f"{x_path}: its partner {y_path.name} is missing")
        xs.append(read_image(x_path))
        ys.append(read_image(y_path))
        if xs[-1].shape != ys[-1].shape:
            raise DataError(f"{x_path}: shape {xs[-1].shape} differs from {y_path.name} {ys[-1].shape}")
    return xs, ys


#: the file in a folder of training images that says how their grey levels were prepared: a JSON
#: object whose ``"input_levels"`` names the grey-level mode of :mod:`engine.levels` the low-probe
#: images (the generator's inputs) were mapped to, e.g. ``"preset"`` (``python -m engine.distill``
#: writes it).  A folder without one holds images as the probe gave them: ``"off"``.
LEVELS_FILE = "levels.json"


def read_levels(folder: str | Path) -> str:
    """The grey-level mode the images of ``folder`` were mapped to (:data:`LEVELS_FILE`; ``"off"``
    where the folder has no such file); :class:`DataError` naming the file if it is not a JSON object
    with a non-empty string ``"input_levels"``."""
    path = Path(folder) / LEVELS_FILE
    if not path.is_file():
        return "off"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable ({exc})") from None
    levels = record.get("input_levels") if isinstance(record, dict) else None
    if not isinstance(levels, str) or not levels:
        raise DataError(f"{path}: expected a JSON object with a grey-level mode as \"input_levels\", got {record!r:.80}")
    if record.get("complete") is False:
        log.warning("%s: the run that wrote these pairs did not finish; training on the pairs it wrote", path)
    return levels


def common_levels(folders: Iterable[str | Path]) -> str:
    """The one grey-level mode (:func:`read_levels`) of the generator's input ``folders``; ``"off"``
    for none.  :class:`DataError` where they differ: a model learns one mapping of its inputs."""
    found = {str(folder): read_levels(folder) for folder in folders}
    modes = set(found.values())
    if len(modes) > 1:
        listed = ", ".join(f"{folder}: {mode}" for folder, mode in found.items())
        raise DataError(f"the generator's input folders were prepared at different grey levels ({listed}); "
                        f"prepare them alike ({LEVELS_FILE}, python -m engine.distill)")
    return modes.pop() if modes else "off"


def read_truth(folder: str | Path) -> list[dict[str, np.ndarray]]:
    """The ``truth_NNN.npz`` of each pair of :func:`read_pairs`: echogenicity and bool masks."""
    out = []
    for x_path in eval_x_paths(folder):
        t_path = x_path.with_name("truth" + x_path.name[1:]).with_suffix(".npz")
        try:
            with np.load(t_path) as npz:
                out.append({k: npz[k] for k in npz.files})
        except (OSError, ValueError) as exc:
            raise DataError(f"{t_path}: cannot read ground truth ({exc})") from exc
    return out


def _shapes(images: Sequence[np.ndarray], size: int, names: Sequence[str] | None) -> np.ndarray:
    if not len(images):
        raise DataError("no images to crop")
    if size < 1:
        raise DataError(f"crop size must be >= 1, got {size}")
    shapes = np.array([im.shape[:2] for im in images], dtype=np.int64)
    small = np.flatnonzero(shapes.min(axis=1) < size)
    if small.size:
        i = int(small[0])
        name = names[i] if names else f"image #{i}"
        raise DataError(f"{name}: {shapes[i, 0]}x{shapes[i, 1]} is smaller than the {size}x{size} crop "
                        f"({small.size} image(s) too small)")
    return shapes


def random_positions(shapes: np.ndarray, size: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random crops: image uniform, top-left uniform inside it; ``(count, 3)`` int64
    rows ``(image, top, left)``.  ``shapes``: ``(n, 2)`` image heights and widths."""
    shapes = np.asarray(shapes, dtype=np.int64)
    img = rng.integers(len(shapes), size=count)
    tops = rng.integers(shapes[img, 0] - size + 1)
    lefts = rng.integers(shapes[img, 1] - size + 1)
    return np.stack([img, tops, lefts], axis=1).astype(np.int64)


def _starts(length: int, size: int, stride: int) -> list[int]:
    starts = list(range(0, length - size + 1, stride))
    return starts if starts[-1] == length - size else [*starts, length - size]


def window_positions(shapes: np.ndarray, size: int, overlap: float = 0.5) -> np.ndarray:
    """Moving-window crops with stride ``round(size * (1 - overlap))``, the last row and column
    flush with the image edge; ``(m, 3)`` int64 rows ``(image, top, left)``."""
    if not 0.0 <= overlap < 1.0:
        raise DataError(f"overlap must be in [0, 1), got {overlap}")
    stride = max(1, round(size * (1.0 - overlap)))
    rows = [(i, t, c) for i, (h, w) in enumerate(np.asarray(shapes, dtype=np.int64))
            for t in _starts(int(h), size, stride) for c in _starts(int(w), size, stride)]
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def cut(images: Sequence[np.ndarray], positions: np.ndarray, size: int) -> np.ndarray:
    """``(n, size, size)`` crops of ``images`` at ``positions`` rows ``(image, top, left)``."""
    return np.stack([images[i][t : t + size, c : c + size] for i, t, c in positions])


def random_crops(images: Sequence[np.ndarray], size: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random ``size x size`` crops, ``(count, size, size)`` in the images' dtype."""
    return cut(images, random_positions(_shapes(images, size, None), size, count, rng), size)


def window_crops(image: np.ndarray, size: int, overlap: float = 0.5) -> np.ndarray:
    """All moving-window ``size x size`` crops of one image with ``overlap`` (paper: 0.5)."""
    return cut([image], window_positions(_shapes([image], size, None), size, overlap), size)


class CropSource:
    """Images held in memory as ``uint8 (H, W)``, from which training crops are cut.

    Args:
        source: a folder or file (read with :func:`iter_frames`), a list of files, or arrays.
        size: side of the square crops (pixels); every image must be at least this large.
        every: keep every ``every``-th frame of DICOM cines and videos.
        overlap: overlap of the moving-window crops (paper: 0.5).
        skip_bad: log and skip unreadable files in a folder instead of raising.

    ``len(source)`` and ``source[i]`` address the moving-window crops (a map-style data
    set); :meth:`sample` draws random crops.
    """

    def __init__(self, source: str | Path | Iterable[str | Path] | Sequence[np.ndarray], size: int, *,
                 every: int = 1, overlap: float = 0.5, skip_bad: bool = False) -> None:
        self.images, self.names = self._load(source, every, skip_bad)
        self.size = int(size)
        self.shapes = _shapes(self.images, self.size, self.names)
        self.positions = window_positions(self.shapes, self.size, overlap)

    @staticmethod
    def _load(source: str | Path | Iterable[str | Path] | Sequence[np.ndarray], every: int,
              skip_bad: bool) -> tuple[list[np.ndarray], list[str]]:
        if isinstance(source, str | Path):
            named = list(iter_named_frames(source, every, skip_bad=skip_bad))
            return [frame for _, frame in named], [name for name, _ in named]
        items = list(source)
        if items and all(isinstance(x, np.ndarray) for x in items):
            for i, im in enumerate(items):
                if im.ndim != 2 or im.dtype != np.uint8:
                    raise DataError(f"image #{i}: expected uint8 (H, W), got {im.dtype} {im.shape}")
            return items, [f"image #{i}" for i in range(len(items))]
        images, names = [], []
        for path in items:
            for i, frame in enumerate(read_frames(path, every)):
                images.append(frame)
                names.append(f"{path} frame #{i}")
        if not images:
            raise DataError("no images given")
        return images, names

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> np.ndarray:
        i, t, c = self.positions[index]
        return self.images[i][t : t + self.size, c : c + self.size]

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` random crops, ``uint8 (count, size, size)``."""
        return cut(self.images, random_positions(self.shapes, self.size, count, rng), self.size)
