"""Crops for training: where they are cut (positions) and the float tensors cut there.

Positions are integer rows ``(image, top, left)``; drawing them from a seeded
``numpy.random.Generator`` and cutting them later keeps a whole phase reproducible from
its step counter (what makes ``--resume`` exact) and costs no memory for 12,000 crops.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from training.data import (
    DataError,
    cut,
    eval_x_paths,
    iter_named_frames,
    random_positions,
    read_pairs,
    window_positions,
)

__all__ = ["ImageSet", "Twins", "folder_list", "load_images", "load_pairs", "load_twins"]

log = logging.getLogger(__name__)


class ImageSet:
    """Grey-scale ``uint8`` images held in memory, with crop helpers.

    Args:
        images: 2-D ``uint8`` arrays (any sizes).
        source: where they came from (a folder), for error messages.
        names: each image's name (its file), for error messages; default ``image #i``.
    """

    def __init__(self, images: Sequence[np.ndarray], source: str, names: Sequence[str] | None = None) -> None:
        if not images:
            raise DataError(f"{source}: no images")
        self.images = list(images)
        self.source = source
        self.names = list(names) if names is not None else [f"image #{i}" for i in range(len(self.images))]
        self.shapes = np.array([im.shape for im in self.images], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.images)

    def fingerprint(self) -> str:
        """A digest of the images in order (their shapes and pixels, BLAKE2b): the same data give the
        same string wherever they are stored; what ``--resume`` compares (a checkpoint's crops are
        positions in these images)."""
        digest = hashlib.blake2b(digest_size=16)
        for im in self.images:
            digest.update(np.asarray(im.shape, dtype=np.int64).tobytes())
            digest.update(np.ascontiguousarray(im).tobytes())
        return f"{len(self.images)} images, {digest.hexdigest()}"

    def require(self, size: int, what: str) -> None:
        """Raise :class:`DataError` if any image is smaller than ``size x size`` (``what`` names the use)."""
        small = np.flatnonzero(self.shapes.min(axis=1) < size)
        if small.size:
            listed = ", ".join(f"{self.names[i]} is {self.shapes[i][0]}x{self.shapes[i][1]}" for i in small[:3])
            more = f" and {small.size - 3} more" if small.size > 3 else ""
            raise DataError(
                f"{self.source}: {small.size} image(s) smaller than the {size}x{size} {what} crop "
                f"({listed}{more}); use smaller crops or larger images"
            )

    def random_positions(self, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` random crops of ``size`` (:func:`training.data.random_positions`); ``(n, 3)``."""
        return random_positions(self.shapes, size, n, rng)

    def window_positions(self, size: int, overlap: float) -> np.ndarray:
        """Every moving-window crop (:func:`training.data.window_positions`); ``(m, 3)``."""
        return window_positions(self.shapes, size, overlap)

    def crops(self, positions: np.ndarray, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Cut ``size x size`` crops at ``positions``; ``(n, 1, size, size)`` float32 in [0, 1]."""
        return torch.from_numpy(cut(self.images, positions, size)).to(device).unsqueeze(1).float().div_(255.0)


def load_images(folder: str | Path) -> ImageSet:
    """All images of ``folder`` (pictures, DICOM, videos; its own files, not its sub-folders':
    :func:`training.data.iter_named_frames`).  A file that cannot be read is logged and skipped;
    one line tells how many images were read and how many files skipped (a folder with no readable
    image raises :class:`DataError`)."""
    skipped: list[Path] = []
    named = list(iter_named_frames(folder, skip_bad=True, on_skip=lambda path, _: skipped.append(path)))
    subfolders = sorted(p.name for p in Path(folder).iterdir() if p.is_dir()) if Path(folder).is_dir() else []
    log.info("%s: %d image(s) read%s%s", folder, len(named),
             f", {len(skipped)} unreadable file(s) skipped" if skipped else "",
             f"; its sub-folders are not read ({', '.join(subfolders[:3])}{', ...' if len(subfolders) > 3 else ''})"
             if subfolders else "")
    return ImageSet([frame for _, frame in named], str(folder), [name for name, _ in named])


def folder_list(folders: str | Path | Sequence[str | Path]) -> list[str | Path]:
    """One folder or several (``--pairs A B``) as a list, in the order given."""
    return [folders] if isinstance(folders, str | Path) else list(folders)


def load_pairs(folders: str | Path | Sequence[str | Path]) -> tuple[ImageSet, ImageSet]:
    """The ``x_NNN`` / ``y_NNN`` pairs of one folder or of several (joined in the order given) as
    two aligned :class:`ImageSet` (x, y); e.g. one paired set per simulator family."""
    folders = folder_list(folders)
    if not folders:
        raise DataError("no folder of pairs given")
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    names: list[str] = []
    for folder in folders:
        fx, fy = read_pairs(folder)
        xs += fx
        ys += fy
        names += [str(p) for p in eval_x_paths(folder)]
    name = ", ".join(str(f) for f in folders)
    return ImageSet(xs, f"{name} (x)", names), ImageSet(ys, f"{name} (y)", [_partner(n) for n in names])


def _partner(x_name: str) -> str:
    """The name of ``x_NNN``'s partner ``y_NNN`` in the same folder."""
    path = Path(x_name)
    return str(path.with_name("y" + path.name[1:]))


@dataclass(frozen=True)
class Twins:
    """Two consecutive frames ``a``, ``b`` of the same phantoms seen by both probes, aligned
    image by image: ``x_a``, ``y_a``, ``x_b``, ``y_b`` (the ``temporal`` loss term's data)."""

    x_a: ImageSet
    y_a: ImageSet
    x_b: ImageSet
    y_b: ImageSet

    def crops(self, positions: np.ndarray, size: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
        """The same crops of the four sets (:meth:`ImageSet.crops`): ``(x_a, y_a, x_b, y_b)``."""
        return tuple(s.crops(positions, size, device) for s in (self.x_a, self.y_a, self.x_b, self.y_b))


def load_twins(folder: str | Path) -> Twins:
    """The twins of ``folder`` (``a/`` and ``b/``, each ``x_NNN`` / ``y_NNN`` pairs with the same names,
    as ``python -m training.simulate --twins N`` writes them).

    Raises:
        DataError: a missing ``a/`` or ``b/``, other pair counts, or a frame whose shape differs
            from its twin's.
    """
    folder = Path(folder)
    missing = [name for name in ("a", "b") if not (folder / name).is_dir()]
    if missing:
        raise DataError(f"{folder}: no {' or '.join(m + '/' for m in missing)} folder of twins "
                        "(python -m training.simulate --twins N writes twins/a and twins/b)")
    x_a, y_a = read_pairs(folder / "a")
    x_b, y_b = read_pairs(folder / "b")
    if len(x_a) != len(x_b):
        raise DataError(f"{folder}: {len(x_a)} pairs in a/ but {len(x_b)} in b/; twins come in aligned pairs")
    for i, (first, second) in enumerate(zip(x_a, x_b, strict=True)):
        if first.shape != second.shape:
            raise DataError(f"{folder}: twin #{i} is {first.shape} in a/ but {second.shape} in b/")
    return Twins(*(ImageSet(images, f"{folder}/{name}")
                   for images, name in ((x_a, "a (x)"), (y_a, "a (y)"), (x_b, "b (x)"), (y_b, "b (y)"))))
