"""File helpers: atomic writes (readers never see a half-written model or engine) and hashes.

The checks the command-line tools make on their input and output paths before any long work are
:mod:`training.outputs` (:func:`~training.outputs.readable_file`,
:func:`~training.outputs.check_output_file`)."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

__all__ = ["atomic_write_bytes", "naming", "sha256_file", "temporary_sibling"]


def temporary_sibling(path: str | Path) -> Path:
    """An unused hidden name beside ``path`` ending in its suffix (``.x.png`` -> ``.x.<random>.tmp.png``),
    not created: writers that pick the format from the suffix (OpenCV) write there, then
    ``os.replace`` it onto ``path``, and the file gets the mode the umask gives any new file."""
    path = Path(path)
    while True:
        tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")
        if not tmp.exists():
            return tmp


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temp file beside ``path``, fsync it, then ``os.replace`` it onto ``path``.

    ``os.replace`` is atomic on POSIX and Windows when both names are on one file system, so a
    concurrent reader sees either the old file or the whole new one.  The file is created with mode
    ``0o666`` less the umask, like any other new file (``0o644`` under the usual umask ``022``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def naming(path: str | Path, exc: BaseException) -> str:
    """``exc``'s message as a one-line report about the file ``path``: as it is where it names the
    file already (the readers' errors do), else prefixed with ``path: ``."""
    return str(exc) if str(path) in str(exc) else f"{path}: {exc}"
