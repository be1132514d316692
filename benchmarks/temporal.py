"""Temporal stability: does a despeckler's output change more from frame to frame than its input does?

Live, consecutive frames of still tissue differ by part of their speckle (a small out-of-plane
probe motion, breathing).  A despeckler that draws its own texture may redraw it from frame to
frame ("boiling") more than the input's speckle changes.  On frames of one phantom that each
renew the fraction ``e`` of the previous frame's speckle
(:func:`training.sim.elevation.renewing_speckle_frames`) this measures, over the pixels that are
not black and the second half of each series (the first half lets a ``--persistence`` settle),
for the input ``x`` (the low probe), the high probe ``y`` and each despeckler ``G``:

    correlation      mean over consecutive frames of corr(img_(k-1), img_k)   (1: unchanged)
    change ratio     sum_k mean|G_k - G_(k-1)| / sum_k mean|x_k - x_(k-1)|    (1: changes as much as x)

``y``'s change ratio compares the high probe's own frames with the low probe's, for the same
renewed scatterers.  A filter that smooths the speckle changes less than its input (ratio below
1); a ratio above 1 is output texture that moves more than the tissue's echoes do.  With
``--persistence a`` each despeckler's outputs are averaged over frames as the live stream does
(:mod:`engine.persistence`), and what that costs on a moving scene is measured too: on the
simulator's sweep at ``--speeds`` pixels per frame, the mean difference between the published
frame and the current despeckled frame (its *trail*), beside the difference between consecutive
despeckled frames (:func:`motion_trail`), and on a biopsy needle advancing ``--speeds`` pixels per
frame into still tissue (:func:`training.sim.elevation.advancing_needle_frames`) how much of the
needle tip's grey contrast the published frame shows, against the current despeckled frame's
(:func:`needle_lag`; 1: all of it).  ``--persistence-motion M`` makes the persistence
motion-adaptive (:mod:`engine.persistence`).

    python -m benchmarks.temporal --weights default fast --markdown runs/temporal.md --figure runs/temporal.png
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from benchmarks.baselines import BASELINES
from benchmarks.cli import add_view_arguments, check_outputs, image_suffixes, view_options, write_texts
from benchmarks.evaluate import load_candidates
from benchmarks.metrics import ring_mask
from engine.persistence import MOTION_HELP, Persistence, check_motion_args, motion_arg, persistence_arg
from training.argparsing import (
    OneLineParser,
    frame_size,
    int_at_least,
    non_negative_int,
    positive_float,
    positive_int,
)
from training.sim import sweep_frames
from training.sim.elevation import advancing_needle_frames, renewing_speckle_frames

__all__ = ["RENEWAL", "change_figures", "measure_temporal", "motion_trail", "needle_lag", "markdown_table",
           "trail_table", "write_figure", "main"]

#: the renewals measured by default: a nearly still probe, a small and a larger motion per frame.
RENEWAL = (0.02, 0.1, 0.3)

PROG = "python -m benchmarks.temporal"
#: how tables and figures name the two probes' rows.
LABELS = {"x": "x (low probe, input)", "y": "y (high probe)"}


def change_figures(first: np.ndarray, later: np.ndarray, lit: np.ndarray) -> tuple[float, float]:
    """``(correlation, mean absolute change in grey levels)`` of two frames over the ``lit`` pixels."""
    a, b = first[lit].astype(np.float64), later[lit].astype(np.float64)
    return float(np.corrcoef(a, b)[0, 1]), float(np.abs(b - a).mean())


def _series_figures(images: Sequence[np.ndarray], lit: Sequence[np.ndarray]) -> tuple[float, float]:
    """``(mean correlation, summed mean absolute change)`` over consecutive frames of the second half
    of ``images``; ``lit[k]`` masks the pair ``(k - 1, k)``."""
    start = max(1, len(images) // 2)
    figures = [change_figures(images[k - 1], images[k], lit[k]) for k in range(start, len(images))]
    return float(np.mean([c for c, _ in figures])), float(np.sum([d for _, d in figures]))


def measure_temporal(runs: Mapping[str, Callable[[np.ndarray], np.ndarray]], phantoms: int = 6,
                     size: tuple[int, int] = (256, 256), renewal: Sequence[float] = RENEWAL, frames: int = 8,
                     persistence: float = 0.0, seed: int = 0, progress: bool = True, motion: float = 0.0) -> dict:
    """Means over ``phantoms`` series (seeds ``seed``, ``seed + 1``...) of ``frames`` frames each of
    the module docstring's figures: ``{"renewal": [...], "x": {"corr": [...]}, "y": {"corr": [...],
    "ratio": [...]}, name: {"corr": [...], "ratio": [...]} for each run}``, one value per renewal;
    each run's outputs averaged over frames with ``persistence`` (motion-adaptive with ``motion``)."""
    if frames < 2:
        raise ValueError(f"a series needs at least 2 frames, got {frames}")
    sums: dict[str, dict[str, np.ndarray]] = {}

    def add(name: str, key: str, i: int, value: float) -> None:
        sums.setdefault(name, {}).setdefault(key, np.zeros(len(renewal)))[i] += value / phantoms

    for n in tqdm(range(phantoms), desc="temporal", unit="phantom", disable=not progress):
        for i, e in enumerate(renewal):
            xs = renewing_speckle_frames(size, seed + n, "low", e, frames)
            ys = renewing_speckle_frames(size, seed + n, "high", e, frames)
            lit = [xs[0] > 0] + [(a > 0) | (b > 0) for a, b in zip(xs[:-1], xs[1:], strict=True)]
            corr_x, change_x = _series_figures(xs, lit)
            add("x", "corr", i, corr_x)
            corr_y, change_y = _series_figures(ys, lit)
            add("y", "corr", i, corr_y)
            add("y", "ratio", i, change_y / change_x)
            for name, run in runs.items():
                average = Persistence(persistence, motion)
                outs = [average(run(x)) for x in xs]
                corr_g, change_g = _series_figures(outs, lit)
                add(name, "corr", i, corr_g)
                add(name, "ratio", i, change_g / change_x)
    return {"renewal": [float(e) for e in renewal], "phantoms": phantoms, "frames": frames, "size": list(size),
            "persistence": persistence, "motion": motion,
            **{name: {k: v.tolist() for k, v in figs.items()} for name, figs in sums.items()}}


def motion_trail(runs: Mapping[str, Callable[[np.ndarray], np.ndarray]], persistence: float,
                 speeds: Sequence[float] = (1.0, 4.0), frames: int = 16, size: tuple[int, int] = (256, 256),
                 seed: int = 0, motion: float = 0.0) -> dict[str, dict[str, list[float]]]:
    """What persistence costs on a moving scene: on the simulator's sweep (:func:`training.sim.sweep_frames`,
    the probe moving sideways by ``speed`` pixels per frame, no breathing), over the second half of
    ``frames`` frames, ``{name: {"trail": [...], "step": [...]}}``, one value per speed: ``trail`` the
    mean absolute difference (grey levels) between the published frame and the current despeckled
    frame ``D(x_t)``, ``step`` that between consecutive despeckled frames, for comparison;
    persistence motion-adaptive with ``motion``."""
    out: dict[str, dict[str, list[float]]] = {name: {"trail": [], "step": []} for name in runs}
    for speed in speeds:  # each sweep simulated once, for every run
        sweep = sweep_frames(size, seed, "low", speed_px=speed, breathing_px=0)
        xs = [x for _, x in zip(range(frames), sweep, strict=False)]
        for name, run in runs.items():
            despeckled = [run(x) for x in xs]
            average, trail, step = Persistence(persistence, motion), [], []
            for k, d in enumerate(despeckled):
                shown = average(d)
                if k >= max(1, frames // 2):
                    trail.append(np.abs(shown.astype(np.float64) - d).mean())
                    step.append(np.abs(d.astype(np.float64) - despeckled[k - 1]).mean())
            out[name]["trail"].append(float(np.mean(trail)))
            out[name]["step"].append(float(np.mean(step)))
    return out


def needle_lag(runs: Mapping[str, Callable[[np.ndarray], np.ndarray]], persistence: float,
               speeds: Sequence[float] = (1.0, 4.0), phantoms: int = 6, frames: int = 8,
               size: tuple[int, int] = (256, 256), seed: int = 0, motion: float = 0.0) -> dict[str, list[float]]:
    """Whether persistence lags a needle: on ``phantoms`` series of ``frames`` frames of a needle
    advancing ``speed`` pixels per frame into still tissue (speckle renewing 2 % a frame), over the
    second half of each series, ``{name: [kept per speed]}`` with

        kept = sum_t (mean P_t[tip_t] - mean D_t[ring_t]) / sum_t (mean D_t[tip_t] - mean D_t[ring_t])

    ``P_t`` the published frame (persistence, motion-adaptive with ``motion``), ``D_t`` the current
    despeckled frame, ``tip_t`` the needle's last 5 mm in frame ``t`` and ``ring_t`` the pixels 2-8
    pixels around it off the needle, the current frame's surroundings in both terms, so that only
    the tip's own brightness differs: the share of the tip's grey contrast that the published
    frame shows (1: all of it; plain persistence ``a`` shows a newly reached pixel at ``1 - a``).
    Where a persistence lags little it runs above 1 on the simulator's needles (docs/quality.md)."""
    sums = {name: np.zeros((len(speeds), 2)) for name in runs}
    for i, speed in enumerate(speeds):
        for n in range(phantoms):
            series = advancing_needle_frames(size, seed + n, "low", speed, frames)
            rings = [ring_mask(tip, gap=2, width=6, within=~needle) for tip, needle in zip(series.tips, series.needles,
                                                                                        strict=True)]
            for name, run in runs.items():
                average = Persistence(persistence, motion)
                for k, (x, tip, ring) in enumerate(zip(series.frames, series.tips, rings, strict=True)):
                    d = run(x)
                    shown = average(d)
                    if k >= max(1, frames // 2) and tip.sum() >= 5 and ring.sum() >= 5:
                        level = d[ring].mean(dtype=np.float64)
                        sums[name][i] += [shown[tip].mean(dtype=np.float64) - level,
                                          d[tip].mean(dtype=np.float64) - level]
    return {name: [float(p / c) if c else float("nan") for p, c in s] for name, s in sums.items()}


def trail_table(trails: Mapping[str, Mapping[str, list[float]]], speeds: Sequence[float], persistence: float,
                motion: float = 0.0, needle: Mapping[str, list[float]] | None = None) -> str:
    """One row per despeckler: published-vs-current and frame-to-frame differences at each speed,
    and with ``needle`` (:func:`needle_lag`) the share of the advancing needle tip's contrast shown."""
    setting = f"persistence {persistence:g}" + (f", motion {motion:g}" if motion else "")
    head = " | ".join(f"{v:g} px/frame: trail / step (grey levels)" for v in speeds)
    if needle is not None:
        head += " | " + " | ".join(f"needle at {v:g} px/frame: tip contrast shown" for v in speeds)
    cols = len(speeds) * (2 if needle is not None else 1)
    lines = [f"| {setting} | {head} |", "|---" * (1 + cols) + "|"]
    for name, figs in trails.items():
        cells = " | ".join(f"{t:.1f} / {d:.1f}" for t, d in zip(figs["trail"], figs["step"], strict=True))
        if needle is not None:
            cells += " | " + " | ".join(f"{k:.2f}" for k in needle[name])
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines) + "\n"


def markdown_table(result: Mapping) -> str:
    """One row per image: correlation / change ratio at each renewal."""
    head = " | ".join(f"e = {e:g}: corr / change ratio" for e in result["renewal"])
    lines = [f"| image | {head} |", "|---" * (1 + len(result["renewal"])) + "|"]
    for name, figs in result.items():
        if not isinstance(figs, dict) or "corr" not in figs:  # the run's settings, or the moving-scene figures
            continue
        ratios = figs.get("ratio", [1.0] * len(figs["corr"]))
        cells = " | ".join(f"{c:.3f} / {r:.2f}" for c, r in zip(figs["corr"], ratios, strict=True))
        lines.append(f"| {LABELS.get(name, name)} | {cells} |")
    return "\n".join(lines) + "\n"


def write_figure(result: Mapping, path: str | Path) -> Path:
    """Correlation and change ratio against the renewal, one line per image, as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (corr, ratio) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    e = result["renewal"]
    for name, figs in result.items():
        if isinstance(figs, dict) and "corr" in figs:
            corr.plot(e, figs["corr"], marker="o", label=LABELS.get(name, name))
            ratio.plot(e, figs.get("ratio", [1.0] * len(e)), marker="o", label=LABELS.get(name, name))
    corr.set(xlabel="renewal e (fraction of the speckle renewed per frame)", ylabel="corr(frame k - 1, frame k)",
             title="how alike consecutive frames stay")
    ratio.set(xlabel="renewal e (fraction of the speckle renewed per frame)", ylabel="mean |change| / input's",
              title="how much the image changes, against the input")
    ratio.axhline(1.0, color="grey", lw=0.8, ls=":")
    ratio.legend(fontsize=8)
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """Exit status 0; 1 when some weights could not be loaded (each reported, the others measured)
    or an output could not be written; 2 for bad arguments or when no weights could be loaded."""
    p = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--weights", nargs="*", default=["default"],
                   help="generator files, ONNX exports or shipped model names; none: the filters only (default: default)")
    p.add_argument("--baselines", nargs="*", default=["median"], choices=sorted(BASELINES),
                   help="classical filters measured beside them (default: median)")
    p.add_argument("--phantoms", type=positive_int, default=6, help="phantoms, one frame series each (default: 6)")
    p.add_argument("--frames", type=int_at_least(2), default=8, help="frames per series, at least 2 (default: 8)")
    p.add_argument("--persistence", type=persistence_arg, default=0.0, metavar="A",
                   help="average each despeckler's outputs over frames as stream.run --persistence does (default: 0)")
    p.add_argument("--persistence-motion", type=motion_arg, default=0.0, metavar="M", help=MOTION_HELP)
    p.add_argument("--speeds", type=positive_float, nargs="+", default=[1.0, 4.0], metavar="PX",
                   help="with --persistence: also measure its trail on the sweep and its lag on an advancing "
                        "needle at these speeds, pixels per frame (default: 1 4)")
    p.add_argument("--size", type=frame_size(32, square=False), default=(256, 256), metavar="HxW",
                   help="frame size (default: 256x256)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the first phantom, >= 0 (default: 0)")
    add_view_arguments(p)
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("--markdown", type=Path, help="write the table here")
    p.add_argument("--figure", type=Path, help="write the two curves here, as PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    check_motion_args(p, a.persistence, a.persistence_motion)
    check_outputs(p, {"--json": (a.json, None), "--markdown": (a.markdown, None),
                      "--figure": (a.figure, image_suffixes() if a.figure else None)})
    runs, failed = load_candidates(a.weights, prefix=f"{PROG}: ", **view_options(a))
    if a.weights and not runs:
        return 2
    for name in a.baselines:
        baseline = BASELINES[name]
        runs[baseline.label] = partial(_as_grey_levels, baseline.func)
    result = measure_temporal(runs, a.phantoms, a.size, frames=a.frames, persistence=a.persistence, seed=a.seed,
                              progress=not a.no_progress, motion=a.persistence_motion)
    table = markdown_table(result)
    if a.persistence:
        result["moving"] = {"speeds_px": a.speeds, **motion_trail(runs, a.persistence, a.speeds, size=a.size,
                                                                  seed=a.seed, motion=a.persistence_motion)}
        result["needle"] = {"speeds_px": a.speeds, **needle_lag(runs, a.persistence, a.speeds, a.phantoms, size=a.size,
                                                                seed=a.seed, motion=a.persistence_motion)}
        table += "\n" + trail_table({k: v for k, v in result["moving"].items() if k != "speeds_px"}, a.speeds,
                                    a.persistence, a.persistence_motion,
                                    {k: v for k, v in result["needle"].items() if k != "speeds_px"})
    print(table, end="")
    try:
        write_texts({"--markdown": (a.markdown, table), "--json": (a.json, json.dumps(result, indent=1))})
        if a.figure:
            write_figure(result, a.figure)
    except OSError as exc:  # training.outputs.PathError names the flag
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    return 1 if failed else 0


def _as_grey_levels(func: Callable[[np.ndarray], np.ndarray], frame: np.ndarray) -> np.ndarray:
    """A baseline's output rounded to ``uint8``, as a despeckler's is."""
    return np.clip(np.rint(func(frame)), 0, 255).astype(np.uint8)


if __name__ == "__main__":
    raise SystemExit(main())
