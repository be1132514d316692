"""Command-line parsing shared by every ``python -m`` tool: errors in one line, and number types.

argparse's default ``error`` prints the whole usage block (up to a dozen lines) before the
message. :class:`OneLineParser` prints only ``PROG: error: MESSAGE (see --help)`` and exits
with status 2, as the project's tools do for every bad input.  :func:`positive_int`,
:func:`non_negative_int` and :func:`positive_float` are the ``type=`` of count and rate flags,
refused as ``argument FLAG: expected WHAT, got 'TEXT'``; :func:`frame_size` is that of frame
size flags (``256`` or ``240x320``, parsed by :func:`parse_frame_size`).  :func:`print_outcome` is how
the tools that work through many files end: a summary and each failure.  Importing this module imports
nothing beyond the standard library (the live pipeline installs without torch).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TypeVar

__all__ = ["OneLineParser", "positive_int", "non_negative_int", "int_at_least", "positive_float", "parse_frame_size", "frame_size",
           "argument_type", "checked_float", "print_outcome"]

N = TypeVar("N", int, float)
T = TypeVar("T")


class OneLineParser(argparse.ArgumentParser):
    """An ``argparse.ArgumentParser`` whose errors are one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _number(kind: Callable[[str], N], what: str, ok: Callable[[N], bool]) -> Callable[[str], N]:
    """An argparse ``type``: ``kind(text)`` when ``ok`` holds for it, else the one-line
    ``expected WHAT, got 'TEXT'``."""

    def parse(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


#: argparse types: an integer >= 1; an integer >= 0; a finite float > 0 (NaN and inf refused).
positive_int = _number(int, "a positive integer", lambda v: v >= 1)
non_negative_int = _number(int, "an integer >= 0", lambda v: v >= 0)


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer of at least ``minimum`` (``expected an integer >= N``)."""
    return _number(int, f"an integer >= {minimum}", lambda v: v >= minimum)

positive_float = _number(float, "a positive number", lambda v: math.isfinite(v) and v > 0)


def parse_frame_size(text: str, min_side: int = 1, square: bool = True) -> tuple[int, int]:
    """``"HxW"`` -> ``(H, W)`` in pixels (spaces and an upper-case ``X`` allowed), and with
    ``square`` also ``"N"`` -> ``(N, N)``; ``ValueError`` naming ``text`` unless both sides are
    at least ``min_side``."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", text)
    form = "N or HxW" if square else "HxW"
    if not match or (match[2] is None and not square):
        raise ValueError(f"expected {form} pixels, got {text!r}")
    h, w = int(match[1]), int(match[2] or match[1])
    if min(h, w) < min_side:
        raise ValueError(f"expected {form} with sides >= {min_side}, got {text!r}")
    return h, w


def argument_type(parse: Callable[[str], T], hint: str = "") -> Callable[[str], T]:
    """An argparse ``type`` from ``parse``, a function that raises ``ValueError`` for bad text:
    its message (plus `` hint``) becomes the one-line ``argument FLAG: MESSAGE``."""

    def checked(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{exc} {hint}" if hint else str(exc)) from None

    return checked


def checked_float(check: Callable[[float], float], what: str) -> Callable[[str], float]:
    """An argparse ``type``: ``check(float(text))``, where ``check`` raises ``ValueError`` for a value
    out of its range; else the one-line ``WHAT, got 'TEXT'``."""

    def parse(text: str) -> float:
        try:
            return check(float(text))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what}, got {text!r}") from None

    return parse


def frame_size(min_side: int = 1, square: bool = True) -> Callable[[str], tuple[int, int]]:
    """An argparse ``type`` for frame sizes: :func:`parse_frame_size` with these rules."""
    return argument_type(lambda text: parse_frame_size(text, min_side, square))


def print_outcome(summary: str, failed: Sequence[str]) -> None:
    """``SUMMARY; N failed`` on stdout, then ``  failed: WHY`` on stderr for each failure: how the
    tools that work through many files (and keep going past bad ones) end."""
    print(f"{summary}; {len(failed)} failed")
    for failure in failed:
        print(f"  failed: {failure}", file=sys.stderr)
