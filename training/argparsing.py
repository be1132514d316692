"""Command-line parsing shared by every ``python -m`` tool: errors in one line.

argparse's default ``error`` prints the whole usage block (up to a dozen lines) before the
message. :class:`OneLineParser` prints only ``PROG: error: MESSAGE (see --help)`` and exits
with status 2, as the project's tools do for every bad input. Importing this module imports
nothing beyond the standard library (the live pipeline installs without torch).
"""

from __future__ import annotations

import argparse
from typing import NoReturn

__all__ = ["OneLineParser"]


class OneLineParser(argparse.ArgumentParser):
    """An ``argparse.ArgumentParser`` whose errors are one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")
