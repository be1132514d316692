"""Build the TensorRT FP16 engine of an exported DRNN (or find it in the engine cache).

    python -m engine.build --onnx weights/drnn_fp16.onnx
    python -m engine.build --onnx weights/drnn.onnx --min 128x128 --opt 600x800 --max 1080x1920

Prints the engine file's path.  See :mod:`engine.trt_build` and :mod:`engine.trt_cache`.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from pathlib import Path

from engine.onnx_export import read_onnx
from engine.trt_cache import DEFAULT_PROFILE, BuildConfig, Profile, parse_hw
from engine.weights import WeightsError, WeightsNotFound
from training.argparsing import OneLineParser, argument_type
from training.outputs import PathError, readable_file

__all__ = ["main", "parse_config"]


def _mib(text: str) -> int:
    try:
        mib = int(text)
    except ValueError:
        mib = 0
    if mib < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of MiB >= 1, got {text!r}")
    return mib


def parse_config(argv: list[str] | None = None) -> BuildConfig:
    """Parse the command line into a :class:`BuildConfig`."""
    p = DEFAULT_PROFILE
    parser = OneLineParser(prog="python -m engine.build", description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, required=True, help="exported model (python -m engine.export)")
    parser.add_argument("--min", type=argument_type(parse_hw), default=p.min_hw, metavar="HxW", help="smallest frame (default 64x64)")
    parser.add_argument("--opt", type=argument_type(parse_hw), default=p.opt_hw, metavar="HxW", help="frame size to tune for (default 512x512)")
    parser.add_argument("--max", type=argument_type(parse_hw), default=p.max_hw, metavar="HxW", help="largest frame (default 1080x1920)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="engine cache (default ~/.cache/usdespeckle/tensorrt)")
    parser.add_argument("--workspace-mib", type=_mib, default=2048, help="builder workspace (default %(default)s MiB)")
    parser.add_argument("--force", action="store_true", help="rebuild even if a matching engine is cached")
    args = parser.parse_args(argv)
    try:
        profile = Profile(args.min, args.opt, args.max)
    except ValueError as exc:
        parser.error(f"--min/--opt/--max: {exc}")
    return BuildConfig(args.onnx, profile, args.cache_dir, args.workspace_mib, args.force)


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:  # before TensorRT: a wrong path or file is the likelier mistake
        readable_file(config.onnx, "--onnx")
        if importlib.util.find_spec("onnx") is not None:  # the [gpu] extra alone does not bring it
            read_onnx(config.onnx)
    except PathError as exc:
        print(f"engine.build: error: {exc}", file=sys.stderr)
        return 1
    except WeightsError as exc:
        print(f"engine.build: error: --onnx {exc}", file=sys.stderr)
        return 1
    try:
        from engine.cuda_slots import CudaError
        from engine.trt_build import BuildError, get_engine
    except ImportError as exc:
        print(f"engine.build: error: TensorRT or cuda-python is not available here ({exc}); install the [gpu] extra",
              file=sys.stderr)
        return 2
    try:
        _, path = get_engine(config)
    except (BuildError, CudaError, WeightsError, WeightsNotFound) as exc:
        print(f"engine.build: error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
