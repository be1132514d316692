"""Crops for training: where they are cut (positions) and the float tensors cut there.

Positions are integer rows ``(image, top, left)``; drawing them from a seeded
``numpy.random.Generator`` and cutting them later keeps a whole phase reproducible from
its step counter (what makes ``--resume`` exact) and costs no memory for 12,000 crops.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from training.data import DataError, cut, random_positions, read_folder, read_pairs, window_positions

__all__ = ["ImageSet", "Twins", "folder_list", "load_images", "load_pairs", "load_twins"]


class ImageSet:
    """Grey-scale ``uint8`` images held in memory, with crop helpers.

    Args:
        images: 2-D ``uint8`` arrays (any sizes).
        source: where they came from (a folder), for error messages.
    """

    def __init__(self, images: Sequence[np.ndarray], source: str) -> None:
        if not images:
            raise DataError(f"{source}: no images")
        self.images = list(images)
        self.source = source
        self.shapes = np.array([im.shape for im in self.images], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.images)

    def require(self, size: int, what: str) -> None:
        """Raise :class:`DataError` if any image is smaller than ``size x size`` (``what`` names the use)."""
        small = np.flatnonzero(self.shapes.min(axis=1) < size)
        if small.size:
            h, w = self.shapes[small[0]]
            raise DataError(
                f"{self.source}: {small.size} image(s) smaller than the {size}x{size} {what} crop "
                f"(e.g. image #{small[0]} is {h}x{w}); use smaller crops or larger images"
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
    """All images of ``folder`` (pictures, DICOM, videos: :func:`training.data.read_folder`)."""
    return ImageSet(read_folder(folder), str(folder))


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
    for folder in folders:
        fx, fy = read_pairs(folder)
        xs += fx
        ys += fy
    name = ", ".join(str(f) for f in folders)
    return ImageSet(xs, f"{name} (x)"), ImageSet(ys, f"{name} (y)")


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
