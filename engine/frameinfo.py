"""What the engine does to your frames before the model sees them: ``python -m engine.frameinfo``.

    python -m engine.frameinfo scans/ clip.avi study.dcm
    python -m engine.frameinfo scans/ --figures frameinfo/       # also a picture per file

For each picture, DICOM file or video (its first frame) one line: its size; the level and spread
the grey-level mapping measures on it (:mod:`engine.levels`: medians over the tissue tiles, and how
many of the measured tiles count as tissue); what each ``--levels`` mode maps it to (``preset``
always, ``range`` only outside the training range); and its speckle size (axial x lateral, pixels) and its
pixel spacing where the file carries one (DICOM) with the square working pixel the model then runs
on (:mod:`engine.pixels`), else what ``--pixel-mm auto`` does by the speckle size (:mod:`engine.speckle`).  With
``--figures DIR`` a PNG per file (the file's name with ``.png``): the frame with its tissue tiles outlined in green and the tiles
left out as anechoic in red, the frame as the model sees it under ``preset``, and the grey-level
histograms of both.  Nothing is despeckled and no model is loaded.

Exit status 0 when every file was read, 1 when any could not be (each named on one line; the
others are still reported), 2 for bad flags or when the inputs hold no file at all (folders without
pictures, DICOM files or videos).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.files import naming
from engine.levels import LEVEL_MODES, Tiles, level_map, level_ranges, measure_tiles, working_levels
from engine.offline import file_spacing
from engine.pixels import resamples, working_pixel_mm
from engine.speckle import scale_factors, speckle_size
from training.argparsing import OneLineParser
from training.data import DataError, list_files, read_frames

__all__ = ["FrameInfo", "FrameInfoConfig", "frame_info", "describe", "write_figure", "file_frame", "run", "main"]

@dataclass(frozen=True)
class FrameInfo:
    """What :func:`frame_info` found: ``shape`` ``(H, W)``; ``tiles`` (``None`` for an all-black frame
    or one smaller than a tile); ``targets``, for each ``--levels`` mode that maps, the ``(level,
    spread)`` the frame is mapped to, or ``None`` where that mode leaves it as it is; the pixel
    ``spacing_mm`` ``(row, column)`` if known, and the square ``working_mm`` pixel the model runs on
    (``None`` where the frame runs as it is); its ``speckle_px`` ``(axial, lateral)`` size in pixels
    (``None``: not measured) and the ``speckle_factors`` by which ``--pixel-mm auto`` shrinks its rows
    and columns when the frame carries no spacing (:mod:`engine.speckle`)."""

    shape: tuple[int, int]
    tiles: Tiles | None
    targets: dict[str, tuple[float, float] | None]
    spacing_mm: tuple[float, float] | None = None
    working_mm: float | None = None
    speckle_px: tuple[float, float] | None = None
    speckle_factors: tuple[float, float] = (1.0, 1.0)


def frame_info(frame: np.ndarray, spacing_mm: tuple[float, float] | None = None) -> FrameInfo:
    """:class:`FrameInfo` of a ``uint8 (H, W)`` frame of pixel spacing ``spacing_mm`` (``None``: unknown)."""
    tiles = measure_tiles(frame)
    targets: dict[str, tuple[float, float] | None] = {}
    for mode in LEVEL_MODES:
        ranges = level_ranges(mode)
        if ranges is not None:  # the map level_map would make, from the tiles measured once
            work = None if tiles is None else working_levels(tiles.level, tiles.spread, *ranges)
            targets[mode] = None if tiles is None or work == (tiles.level, tiles.spread) else work
    working = working_pixel_mm(spacing_mm) if spacing_mm is not None and resamples(spacing_mm) else None
    size = speckle_size(frame)
    return FrameInfo(frame.shape[:2], tiles, targets, spacing_mm, working, size, scale_factors(size))


def describe(info: FrameInfo) -> str:
    """One line: size, level and spread, what each mode does, pixels."""
    h, w = info.shape
    parts = [f"{h}x{w}"]
    if info.tiles is None:
        parts.append("no tissue tile to measure (all black, or smaller than a tile): run as it is")
    else:
        t = info.tiles
        parts.append(f"level {t.level:.0f}, spread {t.spread:.0f} ({int(t.tissue.sum())} of {len(t.tissue)} "
                     f"tiles tissue)")
        for mode, target in info.targets.items():
            parts.append(f"{mode}: " + ("as it is" if target is None else
                                        f"to level {target[0]:.0f}, spread {target[1]:.0f}"))
    if info.speckle_px is not None:
        parts.append(f"speckle {info.speckle_px[0]:.1f} x {info.speckle_px[1]:.1f} px (axial x lateral)")
    if info.spacing_mm is None:
        f_rows, f_cols = info.speckle_factors
        parts.append("pixels: not given (" + ("run as they are" if (f_rows, f_cols) == (1.0, 1.0) else
                                              f"run with {f_rows:g} x fewer rows, {f_cols:g} x fewer columns, "
                                              "by the speckle size") + ")")
    else:
        row, col = info.spacing_mm
        parts.append(f"pixels {row:g} x {col:g} mm" + ("" if info.working_mm is None else
                                                         f" (run on {info.working_mm:g} mm pixels)"))
    return ", ".join(parts)


def write_figure(frame: np.ndarray, info: FrameInfo, path: str | Path) -> Path:
    """A PNG at ``path``: the frame with its tissue tiles (green) and anechoic tiles (red) outlined,
    the frame as the model sees it under ``preset``, and both grey-level histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    seen = frame
    lm = level_map(frame, *level_ranges("preset"))
    if lm is not None:
        seen = lm.forward(frame)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.6), layout="constrained")
    axes[0].imshow(frame, cmap="gray", vmin=0, vmax=255)
    title = "as it comes"
    if info.tiles is not None:
        for (r, c), tissue in zip(info.tiles.corners, info.tiles.tissue, strict=True):
            axes[0].add_patch(Rectangle((c - 0.5, r - 0.5), info.tiles.size, info.tiles.size, fill=False, lw=0.6,
                                        ec="lime" if tissue else "red"))
        title += (f": level {info.tiles.level:.0f}, spread {info.tiles.spread:.0f}\n"
                  "green: tissue tiles, red: tiles left out as anechoic")
    axes[0].set_title(title, fontsize=9)
    axes[1].imshow(seen, cmap="gray", vmin=0, vmax=255)
    axes[1].set_title("as the model sees it\n(--levels preset)", fontsize=9)
    bins = np.arange(1, 257)
    axes[2].hist(frame[frame > 0], bins=bins, histtype="step", label="as it comes", density=True)
    axes[2].hist(seen[seen > 0], bins=bins, histtype="step", label="as the model sees it", density=True)
    axes[2].set(xlabel="grey level", ylabel="fraction of the pixels above 0", xlim=(0, 255))
    axes[2].legend(fontsize=8)
    for ax in axes[:2]:
        ax.set_axis_off()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def file_frame(path: Path) -> tuple[np.ndarray, tuple[float, float] | None]:
    """The first frame of a picture, DICOM file or video, and its pixel spacing (a DICOM file's own;
    ``None`` otherwise).  Raises :class:`training.data.DataError` (or ``OSError``) naming the file."""
    try:
        frame = next(iter(read_frames(path)))
    except StopIteration:
        raise DataError(f"{path}: no frame in it") from None
    return frame, file_spacing(path)


@dataclass(frozen=True)
class FrameInfoConfig:
    inputs: tuple[Path, ...]
    recursive: bool = False
    figures: Path | None = None


def _parse(argv: list[str] | None) -> FrameInfoConfig:
    parser = OneLineParser(prog="python -m engine.frameinfo", description=__doc__.splitlines()[0])
    parser.add_argument("inputs", type=Path, nargs="+", metavar="INPUT", help="pictures, DICOM files, videos or folders")
    parser.add_argument("--recursive", "-r", action="store_true", help="also files in sub-folders")
    parser.add_argument("--figures", type=Path, default=None, metavar="DIR",
                        help="also write a PNG per file here: the tiles measured, the frame as the model sees it, "
                             "the histograms")
    args = parser.parse_args(argv)
    if args.figures is not None and args.figures.exists() and not args.figures.is_dir():
        parser.error(f"--figures {args.figures}: not a folder")
    return FrameInfoConfig(tuple(args.inputs), args.recursive, args.figures)


def run(config: FrameInfoConfig) -> int:
    """Report every input file (see the module docstring); returns the exit status."""
    files: list[Path] = []
    failed = 0
    for source in config.inputs:
        try:
            files += list_files(source, config.recursive) if source.is_dir() else [source]
        except DataError as exc:
            print(f"engine.frameinfo: {exc}", file=sys.stderr)
            failed += 1
    if not files:
        print("engine.frameinfo: error: no file to read among the inputs", file=sys.stderr)
        return 2
    names: set[str] = set()
    for path in files:
        try:
            frame, spacing = file_frame(path)
            info = frame_info(frame, spacing)
            figure = ""
            if config.figures is not None:
                name = _unique(path.stem, names)
                figure = f" -> {write_figure(frame, info, config.figures / f'{name}.png')}"
        except (OSError, ValueError) as exc:  # DataError, pydicom's and matplotlib's errors
            print(f"engine.frameinfo: {naming(path, exc)}", file=sys.stderr)
            failed += 1
            continue
        print(f"{path}: {describe(info)}{figure}")
    return 1 if failed else 0


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name-2``, ``name-3``...: the first not in ``taken`` (then added to it)."""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    taken.add(candidate)
    return candidate


def main(argv: list[str] | None = None) -> int:
    return run(_parse(argv))


if __name__ == "__main__":
    raise SystemExit(main())
