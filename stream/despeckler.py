"""``python -m stream.despeckler``: subscribe to a grabber, despeckle and publish (the second half of
``python -m stream.run``, for a grabber in another process or on another machine)."""

from __future__ import annotations

from engine.persistence import check_motion_args
from stream.cli import (
    add_common_args,
    add_despeckle_args,
    chain_config,
    endpoint,
    exit_process,
    setup_logging,
)
from stream.config import GRAB_ENDPOINT, SourceConfig
from stream.pipeline import run_chain
from training.argparsing import OneLineParser

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m stream.despeckler", description=__doc__)
    parser.add_argument(
        "--subscribe",
        type=endpoint(bind=False),
        default=GRAB_ENDPOINT,
        help=f"grabber endpoint, tcp:// or ipc:// (default: {GRAB_ENDPOINT})",
    )
    add_despeckle_args(parser)
    add_common_args(parser)
    args = parser.parse_args(argv)
    check_motion_args(parser, args.persistence, args.persistence_motion)
    if not args.subscribe.startswith(("tcp://", "ipc://")):
        parser.error(f"--subscribe must be a tcp:// or ipc:// endpoint, got {args.subscribe!r}")
    setup_logging(args.verbose)
    return run_chain(chain_config(args, SourceConfig(spec=args.subscribe)))


if __name__ == "__main__":
    raise SystemExit(exit_process(main()))
