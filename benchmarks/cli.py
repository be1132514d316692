"""Output paths of the benchmark tools: checked before any work, written atomically.

The tools run for minutes; an output that cannot be written is refused before any work, as
``PROG: error: FLAG PATH: WHAT (see --help)`` with exit status 2 (:func:`check_outputs`, on
:mod:`training.outputs`, which makes the missing folders).  Outputs are written atomically
(:func:`write_texts`): a run that fails leaves an older output whole.  The flags' number types
are :mod:`training.argparsing`'s.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.files import atomic_write_bytes
from training.outputs import PathError, check_output_file, check_output_folder

__all__ = ["check_outputs", "write_texts", "image_suffixes"]


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
