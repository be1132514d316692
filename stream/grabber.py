"""``python -m stream.grabber``: publish a source's frames for a despeckler in another process or
on another machine (``python -m stream.despeckler --subscribe ENDPOINT``)."""

from __future__ import annotations

from stream.cli import add_common_args, add_source_args, endpoint, exit_process, grabber_config, setup_logging
from stream.config import GRAB_ENDPOINT
from stream.pipeline import run_grabber
from training.argparsing import OneLineParser

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m stream.grabber", description=__doc__)
    add_source_args(parser, subscribe=False)
    parser.add_argument(
        "--publish",
        type=endpoint(bind=True),
        default=GRAB_ENDPOINT,
        help=f"endpoint to publish the frames on (default: {GRAB_ENDPOINT})",
    )
    add_common_args(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    return run_grabber(grabber_config(args))


if __name__ == "__main__":
    raise SystemExit(exit_process(main()))
