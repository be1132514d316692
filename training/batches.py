"""Crops for training: where they are cut (positions) and the float tensors cut there.

Positions are integer rows ``(image, top, left)``; drawing them from a seeded
``numpy.random.Generator`` and cutting them later keeps a whole phase reproducible from
its step counter (what makes ``--resume`` exact) and costs no memory for 12,000 crops.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch


class DataError(ValueError):
    """TEMPORARY until training.data lands."""


def read_folder(folder):
    files = sorted(Path(folder).glob("*.png"))
    if not Path(folder).is_dir():
        raise DataError(f"{folder}: no such folder")
    if not files:
        raise DataError(f"{folder}: no images")
    return [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files]


def read_pairs(folder):
    xs = sorted(Path(folder).glob("x_*.png"))
    if not xs:
        raise DataError(f"{folder}: no x_NNN.png")
    return ([cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in xs],
            [cv2.imread(str(f.with_name("y" + f.name[1:])), cv2.IMREAD_GRAYSCALE) for f in xs])

__all__ = ["ImageSet", "load_images", "load_pairs"]


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
        """``n`` crops of ``size``: image uniform, top-left uniform inside it; ``(n, 3)`` int64."""
        img = rng.integers(len(self.images), size=n)
        tops = rng.integers(self.shapes[img, 0] - size + 1)
        lefts = rng.integers(self.shapes[img, 1] - size + 1)
        return np.stack([img, tops, lefts], axis=1).astype(np.int64)

    def window_positions(self, size: int, overlap: float) -> np.ndarray:
        """Every crop of a moving window with stride ``round(size * (1 - overlap))`` (the last
        row and column flush with the image edge); ``(m, 3)`` int64."""
        stride = max(1, round(size * (1.0 - overlap)))
        rows = []
        for i, (h, w) in enumerate(self.shapes):
            tops = _starts(int(h), size, stride)
            lefts = _starts(int(w), size, stride)
            grid = np.stack(np.meshgrid(tops, lefts, indexing="ij"), axis=-1).reshape(-1, 2)
            rows.append(np.column_stack([np.full(len(grid), i), grid]))
        return np.concatenate(rows).astype(np.int64)

    def crops(self, positions: np.ndarray, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Cut ``size x size`` crops at ``positions``; ``(n, 1, size, size)`` float32 in [0, 1]."""
        batch = np.stack([self.images[i][t : t + size, c : c + size] for i, t, c in positions])
        return torch.from_numpy(batch).to(device).unsqueeze(1).float().div_(255.0)


def _starts(length: int, size: int, stride: int) -> np.ndarray:
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return np.asarray(starts)


def load_images(folder: str | Path) -> ImageSet:
    """All images of ``folder`` (see :func:`training.data.read_folder`) as an :class:`ImageSet`."""
    return ImageSet(read_folder(folder), str(folder))


def load_pairs(folder: str | Path) -> tuple[ImageSet, ImageSet]:
    """The ``x_NNN`` / ``y_NNN`` pairs of ``folder`` as two aligned :class:`ImageSet` (x, y)."""
    xs, ys = read_pairs(folder)
    for k, (a, b) in enumerate(zip(xs, ys, strict=True)):
        if a.shape != b.shape:
            raise DataError(f"{folder}: pair #{k} has x {a.shape} but y {b.shape}")
    return ImageSet(xs, f"{folder} (x)"), ImageSet(ys, f"{folder} (y)")
