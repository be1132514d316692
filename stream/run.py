"""``python -m stream.run``: grab, despeckle and publish in one process (the main command).

With no flags: the simulator's probe sweep at 30 frames/s, the ``auto`` backend with the shipped
weights, despeckled frames published on ``tcp://127.0.0.1:5556`` and a status line every second.
"""

from __future__ import annotations

import argparse

from engine.persistence import check_motion_args
from stream.cli import (
    add_common_args,
    add_despeckle_args,
    add_source_args,
    chain_config,
    exit_process,
    setup_logging,
    source_config,
)
from stream.pipeline import run_chain
from training.argparsing import OneLineParser

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="python -m stream.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_source_args(parser, subscribe=True)
    add_despeckle_args(parser)
    add_common_args(parser)
    args = parser.parse_args(argv)
    check_motion_args(parser, args.persistence, args.persistence_motion)
    setup_logging(args.verbose)
    return run_chain(chain_config(args, source_config(args, args.source)))


if __name__ == "__main__":
    raise SystemExit(exit_process(main()))
