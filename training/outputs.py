"""Checks on the files and folders named to a tool, made before its long work starts.

A tool that fails only when it saves, after minutes of simulation, calibration, training,
export or benchmarking, wastes the work; these checks cost a ``stat`` and one temporary file.
They raise :class:`PathError`, whose message names the flag and the path, as
``FLAG PATH: WHAT``.  Every tool's output checks are these (``training``, ``engine`` and
``benchmarks``).  Importing this module imports nothing beyond the standard library.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

__all__ = ["PathError", "readable_file", "check_output_file", "check_output_folder", "check_suffix", "figure_suffixes"]


class PathError(OSError, ValueError):
    """A file named to a tool that cannot be read, or a file or folder that cannot be written where
    it should go; the message names the flag and the path.

    Both an ``OSError`` and a ``ValueError`` (like :class:`io.UnsupportedOperation`): the tools
    that catch either, for a bad path or a bad value, catch it.
    """


def _named(path: Path, flag: str) -> str:
    return f"{flag} {path}" if flag else str(path)


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (the folder that ``mkdir -p`` would start from)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_folder(folder: Path, label: str, create: bool) -> None:
    """Raise :class:`PathError` unless files can be created in ``folder``: made now with ``create``,
    else in the closest existing ancestor it would be made in.  One temporary file is created
    and removed (permission bits alone say nothing to root, nor about ``/proc``)."""
    base = _nearest_existing(folder)
    if not base.is_dir():
        raise PathError(f"{label}: {base} is a file, not a folder")
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
            base = folder
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as exc:
        raise PathError(f"{label}: cannot create files in {folder if create else base} ({exc.strerror or exc})") from None


def readable_file(path: str | Path, flag: str = "") -> Path:
    """``path``, or :class:`PathError` (naming ``flag`` and ``path``) unless it is a file this
    process can open for reading."""
    path = Path(path)
    if path.is_dir():
        raise PathError(f"{_named(path, flag)}: is a folder, not a file")
    try:
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise PathError(f"{_named(path, flag)}: no such file") from None
    except OSError as exc:
        raise PathError(f"{_named(path, flag)}: cannot read it ({exc.strerror or exc})") from None
    return path


def check_suffix(path: str | Path, flag: str, suffixes: Iterable[str]) -> Path:
    """``path``, or :class:`PathError` unless its suffix (any case) is one of ``suffixes`` (lower
    case, with the dot): the file types its writer knows."""
    path = Path(path)
    suffixes = tuple(suffixes)
    if path.suffix.lower() not in suffixes:
        raise PathError(f"{flag} {path}: unknown file type {path.suffix or '(none)'!r}; use one of {' '.join(suffixes)}")
    return path


def check_output_folder(path: str | Path, flag: str, *, create: bool = False) -> Path:
    """``path``, or :class:`PathError` unless it is a folder files can be created in, or one that
    can be made: made now (with its parents) if ``create``, else left for the tool to make."""
    path = Path(path)
    _check_folder(path, f"{flag} {path}", create)
    return path


def check_output_file(path: str | Path, flag: str, *, suffixes: Iterable[str] | None = None,
                      create: bool = False) -> Path:
    """``path``, or :class:`PathError` unless a file can be written there: ``path`` is not a
    folder, its suffix is one of ``suffixes`` (if given, :func:`check_suffix`), and its folder
    takes new files, that folder and its parents made now if ``create``."""
    path = Path(path)
    if suffixes is not None:
        check_suffix(path, flag, suffixes)
    if path.is_dir():
        raise PathError(f"{flag} {path}: is a folder; give a file name")
    _check_folder(path.parent, f"{flag} {path}", create)
    return path


def figure_suffixes() -> tuple[str, ...]:
    """The file types matplotlib saves figures as (``.png``, ``.pdf``, ``.svg``...); imports matplotlib."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    return tuple(f".{s}" for s in sorted(FigureCanvasAgg.get_supported_filetypes()))
