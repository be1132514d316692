"""``python -m training.simulate``: write simulated two-probe data, a sweep video, a figure.

Examples::

    python -m training.simulate --out data/sim --count 400 --size 256 --paired --jitter 1
    python -m training.simulate --out data/fan --count 100 --geometry fan --depth-mm 140
    python -m training.simulate --out data/pts --count 400 --paired --jitter 1 --model points
    python -m training.simulate --out data/arr --count 0 --paired --eval-count 30 --jitter 1 --model array
    python -m training.simulate --out data/abr --count 0 --paired --eval-count 30 --model array --aberration 40
    python -m training.simulate --out data/twins --count 0 --twins 128 --jitter 1
    python -m training.simulate --cine sweep.avi --cine-frames 300
    python -m training.simulate --figure docs/images/simulator_example.png
"""

from __future__ import annotations

import sys
from argparse import Namespace
from pathlib import Path

from training.argparsing import OneLineParser, frame_size
from training.sim.dataset import GEOMETRIES, MODELS, SimulateConfig, run

__all__ = ["main", "parse_args"]


def _unused_flag(args: Namespace) -> str | None:
    """One line naming a flag the user gave that the other flags leave unused, or ``None``: the
    flags whose default is ``None`` are refused where nothing would read them, not ignored."""
    for given, used, message in (
        (args.eval_count is not None, args.paired, "--eval-count needs --paired (only --paired writes eval/)"),
        (args.depth_mm is not None, args.geometry == "fan",
         "--depth-mm needs --geometry fan (the window geometry's pixel is --pixel-mm)"),
        (args.pixel_mm is not None, args.geometry != "fan",
         "--pixel-mm does not apply to --geometry fan (a fan image's pixel is --depth-mm / its height)"),
        (args.pixel_mm is not None, args.out is not None or args.figure is not None,
         "--pixel-mm needs --out or --figure (the --cine sweep is at 0.25 mm pixels)"),
        (args.renewal is not None, args.twins > 0,
         "--renewal needs --twins N (it sets how much of a twin's speckle is renewed)"),
        (args.cine_frames is not None, args.cine is not None, "--cine-frames needs --cine (the video it sets the length of)"),
        (args.jitter is not None, args.out is not None,
         "--jitter needs --out (it draws the probes of a data set's images; --figure and --cine show the preset probes)"),
    ):
        if given and not used:
            return message
    return None


def parse_args(argv: list[str] | None = None) -> SimulateConfig:
    """Command line -> :class:`SimulateConfig`; a bad flag prints one line and exits with status 2."""
    p = OneLineParser(prog="python -m training.simulate", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="data set folder: writes low/, high/ (and eval/ with --paired)")
    p.add_argument("--count", type=int, default=40, help="images per probe (default 40)")
    p.add_argument("--size", type=frame_size(16), default=(256, 256), help="image size N or HxW pixels (default 256)")
    p.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    p.add_argument("--paired", action="store_true", help="also write eval/: x, y and truth of the same phantoms")
    p.add_argument("--eval-count", type=int, default=None, help="with --paired: pairs in eval/ (default: --count)")
    p.add_argument("--jitter", type=float, default=None,
                   help="with --out: spread of probe parameters and pixel size per image, 0..2 (default 0: the presets)")
    p.add_argument("--pixel-mm", type=float, default=None,
                   help=f"pixel spacing in mm, window geometry (default {SimulateConfig.pixel_mm:g})")
    p.add_argument("--geometry", choices=GEOMETRIES, default="window",
                   help="window: tissue rectangle, beams straight down (default); fan: the whole sector / convex scan")
    p.add_argument("--model", choices=MODELS, default="grid",
                   help="image formation: grid (scatterer on every fine-grid sample, Gaussian beams; default), "
                        "points (point scatterers of random density, diffraction beams) or array (the same points "
                        "through an element-level array, delay-and-sum); points and array: window geometry only")
    p.add_argument("--aberration", type=float, default=0.0, metavar="NS",
                   help="array model: rms arrival-time error (ns) of a body-wall phase screen in front of both "
                        "probes, e.g. 20-60 (default 0: none)")
    p.add_argument("--needle", action="store_true",
                   help="put a biopsy needle (a bright straight reflector from one side) into every phantom; "
                        "the truth files get needle and needle_tip masks (window geometry)")
    p.add_argument("--twins", type=int, default=0, metavar="N",
                   help="also write N pairs of consecutive frames of one phantom (twins/a, twins/b: x and y each), "
                        "part of the speckle renewed between them, for the temporal loss term (grid model, window)")
    p.add_argument("--renewal", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="with --twins: range of the fraction of speckle a twin's second frame renews, drawn "
                        "log-uniformly (default {:g} {:g})".format(*SimulateConfig.renewal))
    p.add_argument("--depth-mm", type=float, default=None,
                   help=f"depth shown by fan images in mm (default {SimulateConfig.depth_mm:g})")
    p.add_argument("--cine", type=Path, help="write a video of the low probe sweeping a phantom (.avi or .mp4): the "
                                             "grid model's preset probe at 0.25 mm pixels, --size and --seed")
    p.add_argument("--cine-frames", type=int, default=None,
                   help=f"with --cine: frames in the video (default {SimulateConfig.cine_frames})")
    p.add_argument("--figure", type=Path, help="write a figure (.png, .pdf, .svg...) with low, high and truth side by side")
    args = p.parse_args(argv)
    if args.out is None and args.cine is None and args.figure is None:
        p.error("nothing to do: give --out, --cine and/or --figure")
    unused = _unused_flag(args)
    if unused:
        p.error(unused)
    given = {"pixel_mm": args.pixel_mm, "depth_mm": args.depth_mm, "jitter": args.jitter,
             "cine_frames": args.cine_frames, "renewal": None if args.renewal is None else tuple(args.renewal)}
    try:
        return SimulateConfig(out=args.out, count=args.count, size=args.size, seed=args.seed, paired=args.paired,
                              eval_count=args.eval_count, geometry=args.geometry,
                              cine=args.cine, figure=args.figure, model=args.model,
                              aberration_ns=args.aberration, needle=args.needle, twins=args.twins,
                              **{k: v for k, v in given.items() if v is not None})
    except ValueError as exc:
        p.error(str(exc))
    raise AssertionError("unreachable")  # p.error exits


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        written = run(config)
    except (OSError, ValueError) as exc:
        print(f"training.simulate: error: {exc}", file=sys.stderr)
        return 1
    print("wrote " + ", ".join(f"{k}: {v}" for k, v in written.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
