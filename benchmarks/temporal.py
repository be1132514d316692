"""Temporal stability: does a despeckler's output change more between two frames than its input does?

Live, consecutive frames of the same tissue differ by part of their speckle (a small out-of-plane
probe motion, breathing).  A despeckler that draws its own texture may redraw it from frame to
frame ("boiling") more than the input's speckle changes.  On frames of one phantom whose speckle
is partly renewed (:func:`training.sim.elevation.renewed_speckle_frames`: decorrelation ``e``,
the fraction of the scattered power renewed) this measures, over the pixels that are not black,
for the input ``x`` (the low probe), the high probe ``y`` and each despeckler ``G``:

    correlation      corr(img_0, img_e)                       (1: unchanged)
    change ratio     mean|G(x_e) - G(x_0)| / mean|x_e - x_0|  (1: changes as much as its input)

``y``'s change ratio compares the high probe's own frames with the low probe's, for the same
renewed scatterers.  A filter that smooths the speckle changes less than its input (ratio below
1); a ratio above 1 is output texture that moves more than the tissue's echoes do.

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
from benchmarks.cli import check_outputs, image_suffixes, write_texts
from benchmarks.evaluate import load_candidates
from engine.levels import DEFAULT_LEVELS, LEVEL_MODES, LEVELS_HELP
from engine.strength import strength_arg
from training.argparsing import OneLineParser, frame_size, positive_int
from training.sim.elevation import renewed_speckle_frames

__all__ = ["DECORRELATION", "change_figures", "measure_temporal", "markdown_table", "write_figure", "main"]

#: the decorrelations measured by default: a nearly still probe, a small and a larger motion.
DECORRELATION = (0.02, 0.1, 0.3)

PROG = "python -m benchmarks.temporal"
#: how tables and figures name the two probes' rows.
LABELS = {"x": "x (low probe, input)", "y": "y (high probe)"}


def change_figures(first: np.ndarray, later: np.ndarray, lit: np.ndarray) -> tuple[float, float]:
    """``(correlation, mean absolute change in grey levels)`` of two frames over the ``lit`` pixels."""
    a, b = first[lit].astype(np.float64), later[lit].astype(np.float64)
    return float(np.corrcoef(a, b)[0, 1]), float(np.abs(b - a).mean())


def measure_temporal(runs: Mapping[str, Callable[[np.ndarray], np.ndarray]], phantoms: int = 6,
                     size: tuple[int, int] = (256, 256), decorrelation: Sequence[float] = DECORRELATION,
                     seed: int = 0, progress: bool = True) -> dict:
    """Means over ``phantoms`` phantoms (seeds ``seed``, ``seed + 1``...) of the module docstring's
    figures: ``{"decorrelation": [...], "x": {"corr": [...]}, "y": {"corr": [...], "ratio": [...]},
    name: {"corr": [...], "ratio": [...]} for each run}``, one value per decorrelation."""
    sums: dict[str, dict[str, np.ndarray]] = {}

    def add(name: str, key: str, values: list[float]) -> None:
        sums.setdefault(name, {}).setdefault(key, np.zeros(len(decorrelation)))
        sums[name][key] += np.asarray(values) / phantoms

    for k in tqdm(range(phantoms), desc="temporal", unit="phantom", disable=not progress):
        xs = renewed_speckle_frames(size, seed + k, "low", decorrelation)
        ys = renewed_speckle_frames(size, seed + k, "high", decorrelation)
        lit = [(xs[0] > 0) | (x > 0) for x in xs[1:]]
        x_fig = [change_figures(xs[0], x, m) for x, m in zip(xs[1:], lit, strict=True)]
        add("x", "corr", [c for c, _ in x_fig])
        y_fig = [change_figures(ys[0], y, m) for y, m in zip(ys[1:], lit, strict=True)]
        add("y", "corr", [c for c, _ in y_fig])
        add("y", "ratio", [d / dx for (_, d), (_, dx) in zip(y_fig, x_fig, strict=True)])
        for name, run in runs.items():
            outs = [run(x) for x in xs]
            g_fig = [change_figures(outs[0], g, m) for g, m in zip(outs[1:], lit, strict=True)]
            add(name, "corr", [c for c, _ in g_fig])
            add(name, "ratio", [d / dx for (_, d), (_, dx) in zip(g_fig, x_fig, strict=True)])
    return {"decorrelation": [float(e) for e in decorrelation], "phantoms": phantoms, "size": list(size),
            **{name: {k: v.tolist() for k, v in figs.items()} for name, figs in sums.items()}}


def markdown_table(result: Mapping) -> str:
    """One row per image: correlation / change ratio at each decorrelation."""
    head = " | ".join(f"e = {e:g}: corr / change ratio" for e in result["decorrelation"])
    lines = [f"| image | {head} |", "|---" * (1 + len(result["decorrelation"])) + "|"]
    for name, figs in result.items():
        if not isinstance(figs, dict):
            continue
        ratios = figs.get("ratio", [1.0] * len(figs["corr"]))
        cells = " | ".join(f"{c:.3f} / {r:.2f}" for c, r in zip(figs["corr"], ratios, strict=True))
        lines.append(f"| {LABELS.get(name, name)} | {cells} |")
    return "\n".join(lines) + "\n"


def write_figure(result: Mapping, path: str | Path) -> Path:
    """Correlation and change ratio against the decorrelation, one line per image, as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (corr, ratio) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    e = result["decorrelation"]
    for name, figs in result.items():
        if isinstance(figs, dict):
            corr.plot(e, figs["corr"], marker="o", label=LABELS.get(name, name))
            ratio.plot(e, figs.get("ratio", [1.0] * len(e)), marker="o", label=LABELS.get(name, name))
    corr.set(xlabel="decorrelation e (fraction of the speckle renewed)", ylabel="corr(frame 0, frame e)",
             title="how alike two frames stay")
    ratio.set(xlabel="decorrelation e (fraction of the speckle renewed)", ylabel="mean |change| / input's",
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
    p.add_argument("--size", type=frame_size(32, square=False), default=(256, 256), metavar="HxW",
                   help="frame size (default: 256x256)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first phantom (default: 0)")
    p.add_argument("--strength", type=strength_arg, default=1.0, help="despeckling strength 0..1 (default: 1)")
    p.add_argument("--levels", choices=LEVEL_MODES, default=DEFAULT_LEVELS, help=LEVELS_HELP)
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("--markdown", type=Path, help="write the table here")
    p.add_argument("--figure", type=Path, help="write the two curves here, as PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    check_outputs(p, {"--json": (a.json, None), "--markdown": (a.markdown, None),
                      "--figure": (a.figure, image_suffixes() if a.figure else None)})
    runs, failed = load_candidates(a.weights, a.strength, prefix=f"{PROG}: ", levels=a.levels)
    if a.weights and not runs:
        return 2
    for name in a.baselines:
        baseline = BASELINES[name]
        runs[baseline.label] = partial(_as_grey_levels, baseline.func)
    result = measure_temporal(runs, a.phantoms, a.size, seed=a.seed, progress=not a.no_progress)
    table = markdown_table(result)
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
