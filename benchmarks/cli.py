"""Command-line pieces shared by the benchmark tools: output paths, and how a generator is run.

The tools run for minutes; an output that cannot be written is refused before any work, as
``PROG: error: FLAG PATH: WHAT (see --help)`` with exit status 2 (:func:`check_outputs`, on
:mod:`training.outputs`, which makes the missing folders).  Outputs are written atomically
(:func:`write_texts`): a run that fails leaves an older output whole.  The flags' number types
are :mod:`training.argparsing`'s.  The tools that run generators take the engine's options of
how frames are run (:func:`add_view_arguments`: ``--strength``, ``--levels``, ``--flip-average``,
``--pixel-mm``) with the engine's defaults, so a figure is measured as the engine would make it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.files import atomic_write_bytes
from engine.flip import FLIP_HELP
from engine.levels import DEFAULT_LEVELS, LEVEL_MODES, LEVELS_HELP
from engine.pixels import pixel_mode_arg
from engine.strength import strength_arg
from training.outputs import PathError, check_output_file, check_output_folder

__all__ = ["check_outputs", "write_texts", "image_suffixes", "add_view_arguments", "view_options", "PIXEL_PICTURES_HELP"]

#: ``--help`` of the tools' ``--pixel-mm``: their frames are pictures, which carry no spacing.
PIXEL_PICTURES_HELP = (
    "pixel spacing of the pictures in mm: run the model on square pixels of its training range and resample "
    "back, as the engine does for frames of a known spacing (engine.pixels); auto: pictures carry none, so each "
    "at its own speckle scale, as the engine runs frames without a spacing (engine.speckle); off (or spacing): "
    "the pictures as they are [auto]")


def check_outputs(parser: argparse.ArgumentParser, files: dict[str, tuple[Path | None, tuple[str, ...] | None]] | None = None,
                  folders: dict[str, Path | None] | None = None) -> None:
    """:func:`training.outputs.check_output_file` for ``{flag: (path, suffixes)}`` and
    :func:`~training.outputs.check_output_folder` for ``{flag: path}`` (``None`` paths: flag not
    given), missing folders made; the first problem is ``parser.error``."""
    try:
        for flag, path in (folders or {}).items():
            if path is not None:
                check_output_folder(path, flag, create=True)
        for flag, (path, suffixes) in (files or {}).items():
            if path is not None:
                check_output_file(path, flag, suffixes=suffixes, create=True)
    except PathError as exc:
        parser.error(str(exc))


def write_texts(texts: dict[str, tuple[Path | None, str]]) -> None:
    """Write each ``{flag: (path, text)}`` whose path is given, atomically
    (:func:`engine.files.atomic_write_bytes`); a :class:`training.outputs.PathError` naming the
    flag if one fails."""
    for flag, (path, text) in texts.items():
        if path is None:
            continue
        try:
            atomic_write_bytes(path, text.encode())
        except OSError as exc:
            raise PathError(f"{flag} {path}: cannot write it ({exc.strerror or exc})") from None


def image_suffixes() -> tuple[str, ...]:
    """The file types ``cv2.imwrite`` can write here."""
    import cv2

    known = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
    return tuple(s for s in known if cv2.haveImageWriter(f"x{s}"))


def add_view_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of how a tool runs its generators as the engine does, with the engine's
    defaults: ``--strength``, ``--levels``, ``--flip-average`` and ``--pixel-mm``
    (:data:`PIXEL_PICTURES_HELP`); :func:`view_options` reads them back."""
    parser.add_argument("--strength", type=strength_arg, default=1.0,
                        help="despeckling strength 0..1: G(x) blended with x as the engine does it [1: G(x)]")
    parser.add_argument("--levels", choices=LEVEL_MODES, default=DEFAULT_LEVELS, help=LEVELS_HELP)
    parser.add_argument("--flip-average", action="store_true", help=FLIP_HELP)
    parser.add_argument("--pixel-mm", type=pixel_mode_arg, default="auto", metavar="auto|off|S|ROW,COL",
                        help=PIXEL_PICTURES_HELP)


def view_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of :func:`benchmarks.evaluate.load_candidates` that the flags of
    :func:`add_view_arguments` give."""
    return {"strength": args.strength, "levels": args.levels, "flip_average": args.flip_average,
            "pixel_mm": args.pixel_mm}
