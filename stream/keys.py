"""``python -m stream.keys --out DIR``: make the CURVE key pairs for ``--curve-keys DIR``."""

from __future__ import annotations

import sys
from pathlib import Path

from stream.security import SecurityError, create_keys
from training.argparsing import OneLineParser

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m stream.keys", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder to write the key files into")
    args = parser.parse_args(argv)
    try:
        files = create_keys(args.out)
    except SecurityError as exc:
        print(f"stream.keys: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"stream.keys: --out {args.out}: cannot write the key files there ({exc.strerror or exc})", file=sys.stderr)
        return 1
    for path in files:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
