"""Flags shared by ``python -m stream.run``, ``stream.grabber`` and ``stream.despeckler``, and the
functions that turn parsed flags into the frozen configs of :mod:`stream.config`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from engine.base import InputSpec
from engine.flip import FLIP_HELP
from engine.levels import DEFAULT_LEVELS, LEVEL_MODES, LEVELS_HELP
from engine.persistence import MOTION_HELP, motion_arg, persistence_arg
from engine.pixels import PIXEL_HELP, pixel_mode_arg
from engine.strength import strength_arg
from stream.config import ChainConfig, GrabberConfig, OutputConfig, SourceConfig
from stream.pipeline import stage_left_behind
from stream.protocol import Limits
from stream.roi import parse_region
from stream.transport import MAX_PORT, check_endpoint
from training.argparsing import (
    argument_type,
    non_negative_int,
    parse_frame_size,
    positive_float,
    positive_int,
)

log = logging.getLogger(__name__)

__all__ = [
    "add_source_args",
    "add_despeckle_args",
    "add_common_args",
    "source_config",
    "chain_config",
    "grabber_config",
    "setup_logging",
    "endpoint",
    "exit_process",
]


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number 1..{MAX_PORT}, got {text!r}") from None
    if not 1 <= value <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"expected a port number 1..{MAX_PORT}, got {text!r}")
    return value


def endpoint(bind: bool) -> Callable[[str], str]:
    """An argparse ``type`` for a ZeroMQ endpoint (or ``--source``) that checks a ``tcp://`` port."""

    def parse(text: str) -> str:
        check_endpoint(text, bind=bind)
        return text

    return argument_type(parse)


def _output_path(text: str) -> Path:
    """An output path flag's value; an empty one (an unset variable in a launch script) is refused,
    not taken as the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty one (an unset variable?)")
    return Path(text)


def _size(text: str) -> tuple[int, int]:
    """``"256"`` -> (256, 256); ``"240x320"`` -> (240, 320) as (H, W); sides of at least
    :data:`training.sim.cine.SWEEP_MIN_SIDE` (imported here: only ``--size`` needs the simulator)."""
    from training.sim.cine import SWEEP_MIN_SIDE

    return argument_type(lambda t: parse_frame_size(t, SWEEP_MIN_SIDE),
                         f"(the simulator's smallest is {SWEEP_MIN_SIDE})")(text)


#: the frames every CPU backend takes (its profile is what ``--size`` is held to).
_ENGINE_SPEC = InputSpec()


def _engine_size(text: str) -> tuple[int, int]:
    """``--size`` where the ``sim`` frames go straight into a despeckler (``stream.run``): ``(H, W)``
    within the engine's profile (:class:`engine.base.InputSpec`), which refuses any other frame."""
    h, w = argument_type(parse_frame_size)(text)
    if not _ENGINE_SPEC.fits(h, w):
        raise argparse.ArgumentTypeError(
            f"expected N or HxW within the engine's profile {_ENGINE_SPEC.profile}, got {text!r}")
    return h, w


#: what ``--source`` names in every tool that has it; ``stream.run`` may also subscribe to a grabber.
SOURCE_KINDS = "sim | captureN | VIDEO | FOLDER | DICOM | rtsp://... | http://..."


def add_source_args(parser: argparse.ArgumentParser, subscribe: bool) -> None:
    """The source flags; ``subscribe``: ``--source tcp://HOST:PORT`` (a grabber to subscribe to)
    is offered too, which only a process with a despeckler can take, and ``--size`` is held to the
    engine's profile, as that despeckler takes its ``sim`` frames."""
    kinds = f"{SOURCE_KINDS} | tcp://HOST:PORT" if subscribe else SOURCE_KINDS
    size, sides = (_engine_size, f" within the engine's profile {_ENGINE_SPEC.profile}") if subscribe else (_size, "")
    g = parser.add_argument_group("source")
    g.add_argument("--source", type=endpoint(bind=False), default="sim", help=f"{kinds} (default: sim)")
    g.add_argument(
        "--fps", type=positive_float, default=30.0, help="frame rate of sim, files and folders (default: 30)"
    )
    g.add_argument("--size", type=size, default=(256, 256), help=f"sim frame size, N or HxW{sides} (default: 256)")
    g.add_argument("--seed", type=non_negative_int, default=0, help="sim phantom seed, >= 0 (default: 0)")
    g.add_argument("--loop", action="store_true", help="start a file or folder again at its end")


def add_despeckle_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("despeckler and outputs")
    g.add_argument(
        "--backend",
        default="auto",
        help="engine backend: auto, onnxruntime, torch, tensorrt, identity (default: auto)",
    )
    g.add_argument("--weights", type=Path, default=None,
                   help="model file, or a shipped model's name: default, fast (the fast model for CPUs), int8, "
                        "fast-int8, or auto: fast where the backend runs on the CPU, default on a GPU (default: auto)")
    g.add_argument(
        "--roi",
        type=argument_type(parse_region),
        default=None,
        help="x,y,w,h: despeckle only this box (default: whole grey frame, or the image region found on a colour screen)",
    )
    g.add_argument(
        "--strength",
        type=strength_arg,
        default=1.0,
        help="0..1: blend the despeckled frame with the input (1: the model's output, 0: the input; "
        "lower keeps more of what the model weakens, e.g. a needle; default: 1)",
    )
    g.add_argument(
        "--pixel-mm",
        type=pixel_mode_arg,
        default="auto",
        metavar="auto|spacing|off|S|ROW,COL",
        help=PIXEL_HELP,
    )
    g.add_argument("--levels", choices=LEVEL_MODES, default=DEFAULT_LEVELS, help=LEVELS_HELP)
    g.add_argument(
        "--persistence",
        type=persistence_arg,
        default=0.0,
        metavar="A",
        help="0 <= A < 1: publish the running average (1 - A) x the despeckled frame + A x the average before, averaging away "
        "texture that changes from frame to frame at the cost of a lag of A / (1 - A) frames (default: 0, none)",
    )
    g.add_argument("--persistence-motion", type=motion_arg, default=0.0, metavar="M", help=MOTION_HELP)
    g.add_argument("--flip-average", action="store_true", help=FLIP_HELP)
    g.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="torch on a CUDA GPU (--backend torch, or auto where it picks torch): replay one captured CUDA graph "
        "per frame size instead of launching every layer (faster per frame; the first frame of each size "
        "captures its graph, and each size keeps its own)",
    )
    g.add_argument(
        "--publish",
        type=endpoint(bind=True),
        default="tcp://127.0.0.1:5556",
        help="endpoint the despeckled stream is published on (default: tcp://127.0.0.1:5556)",
    )
    g.add_argument(
        "--igtl",
        type=_port,
        default=None,
        metavar="PORT",
        help="also serve OpenIGTLink IMAGE messages on 127.0.0.1:PORT (e.g. 18944)",
    )
    g.add_argument(
        "--record",
        type=_output_path,
        default=None,
        metavar="PATH",
        help="record the despeckled stream: PATH.avi (Motion-JPEG, at the frame rate measured from the "
        "capture times of its first frames) or a folder of PNGs",
    )
    g.add_argument(
        "--preview",
        action="store_true",
        help="show input | despeckled in a window (needs a display and a GUI build of OpenCV)",
    )


def add_common_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("run")
    g.add_argument(
        "--frames",
        type=positive_int,
        default=None,
        metavar="N",
        help="stop after N frames (published ones; a stand-alone grabber: read ones); stop with exit "
        "status 1 if N frames are refused first (default: run until Ctrl-C)",
    )
    g.add_argument(
        "--curve-keys",
        type=Path,
        default=None,
        metavar="DIR",
        help="encrypt and authenticate with the CURVE keys in DIR (python -m stream.keys)",
    )
    g.add_argument(
        "--max-dim",
        type=positive_int,
        default=Limits.max_dim,
        help="largest accepted frame side, pixels (default: %(default)s)",
    )
    g.add_argument(
        "--max-frame-mb",
        type=positive_float,
        default=Limits.max_pixel_bytes / 2**20,
        help="largest accepted frame, MiB (default: %(default)s)",
    )
    g.add_argument(
        "--status",
        type=positive_float,
        default=1.0,
        metavar="SECONDS",
        help="status line interval (default: 1)",
    )
    g.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log every malformed message and refused frame (default: the first one in full, "
        "then a count with each status line)",
    )


def setup_logging(verbose: bool) -> None:
    """Log lines ``HH:MM:SS message`` on stderr."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def exit_process(status: int) -> int:
    """The exit of a stream tool's process (``raise SystemExit(exit_process(main()))``): ``status``,
    unless the stop left a stage running (an inference that outlasted it,
    :func:`stream.pipeline.stage_left_behind`): then the logs and streams are flushed and the
    process leaves at once with ``os._exit(status)``.  The interpreter would otherwise wait for the
    inference's worker thread at its exit (the rest of the inference: about 12 s for the default
    model at 1024x1024 on 2 cores) and tear the inference library down while that thread still runs
    in it (libstdc++'s "terminate called", status 134)."""
    if stage_left_behind():
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def _limits(args: argparse.Namespace) -> Limits:
    return Limits(max_dim=args.max_dim, max_pixel_bytes=int(args.max_frame_mb * 2**20))


def source_config(args: argparse.Namespace, spec: str) -> SourceConfig:
    return SourceConfig(spec=spec, fps=args.fps, size=args.size, loop=args.loop, seed=args.seed)


def chain_config(args: argparse.Namespace, source: SourceConfig) -> ChainConfig:
    output = OutputConfig(publish=args.publish, igtl_port=args.igtl, record=args.record, preview=args.preview)
    return ChainConfig(
        source=source,
        output=output,
        backend=args.backend,
        weights=args.weights,
        roi=args.roi,
        strength=args.strength,
        pixel_mm=args.pixel_mm,
        levels=args.levels,
        flip_average=args.flip_average,
        cuda_graphs=args.cuda_graphs,
        persistence=args.persistence,
        persistence_motion=args.persistence_motion,
        frames=args.frames,
        curve_keys=args.curve_keys,
        limits=_limits(args),
        status_s=args.status,
    )


def grabber_config(args: argparse.Namespace) -> GrabberConfig:
    """The grabber's configuration; a warning where its ``sim`` frames are outside the engine's
    profile (the grabber takes the simulator's smallest, for consumers other than a despeckler)."""
    if args.source == "sim" and not _ENGINE_SPEC.fits(*args.size):
        log.warning("--size %dx%d: sim frames outside the engine's profile %s, which every despeckler refuses; "
                    "fine for other consumers", *args.size, _ENGINE_SPEC.profile)
    return GrabberConfig(
        source=source_config(args, args.source),
        publish=args.publish,
        frames=args.frames,
        curve_keys=args.curve_keys,
        limits=_limits(args),
        status_s=args.status,
    )
