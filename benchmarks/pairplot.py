"""Pair by pair: where a generator helps and where it harms (a figure, from evaluation results).

A mean over a set's pairs can rise while a few pairs get worse: a vessel that the input ``x``
shows, weakened or painted over with texture by ``G(x)``.  This plots every pair of one or more
:func:`benchmarks.evaluate.evaluate` results as a point (horizontal: ``x``'s figure; vertical:
``G(x)``'s) for the vessel-to-parenchyma CNR and the log-correlation with the true echogenicity,
one panel each, with the diagonal ``G(x) = x``.  Points below the diagonal are the pairs where
``G(x)`` scores below ``x`` (``worse_than_x`` of :mod:`benchmarks.evaluate`); the legend counts
them per result, ``k/n``.  Pairs where a figure is undefined (no vessel in the image) are left out.

``python -m benchmarks.pairplot --json A.json [B.json ...] --out pairs.png`` reads the JSON files
of ``python -m benchmarks.evaluate --json`` (one point colour per file, or per generator with
``--all-weights``); ``python -m benchmarks.evaluate --pairs-figure F`` draws one set directly.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.metrics import count_below
from engine.files import atomic_write_bytes

__all__ = ["PairPlotError", "PANELS", "pair_values", "harm_counts", "plot_pairs", "load_results", "main"]

#: The per-pair figures plotted, with their axis names.
PANELS = {"cnr": "vessel CNR", "log_corr": "log-correlation with the truth"}


class PairPlotError(ValueError):
    """An evaluation result without per-pair figures, or a JSON file that is not one."""


def pair_values(res: Mapping[str, Any], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, g)``: the per-pair ``metric`` of the input and of ``G(x)`` in one evaluation result,
    over the pairs where both are finite."""
    try:
        x = np.asarray(res["pairs"]["x"][metric], dtype=np.float64)
        g = np.asarray(res["pairs"]["g"][metric], dtype=np.float64)
    except (KeyError, TypeError) as exc:
        raise PairPlotError(f"no per-pair {metric!r} figures in the result (missing {exc})") from None
    if x.shape != g.shape:
        raise PairPlotError(f"per-pair {metric!r}: {x.size} figures of x against {g.size} of G(x)")
    both = np.isfinite(x) & np.isfinite(g)
    return x[both], g[both]


def harm_counts(res: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """``{metric: (k, n)}`` for the :data:`PANELS`: of the ``n`` pairs where both figures are
    defined, the ``k`` where ``G(x)`` scores below ``x`` (the legend's ``k/n``)."""
    return {metric: count_below(*pair_values(res, metric)[::-1]) for metric in PANELS}


def plot_pairs(series: Mapping[str, Mapping[str, Any]], out_png: str | Path, title: str = "") -> Path:
    """Write the figure of the module docstring for ``series`` = ``{label: evaluation result}``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not series:
        raise PairPlotError("nothing to plot: no evaluation results given")
    fig = Figure(figsize=(5.2 * len(PANELS), 4.8), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(PANELS), squeeze=False)[0]
    markers = "osD^vP*X"
    counts = {label: harm_counts(res) for label, res in series.items()}
    for ax, (metric, name) in zip(axes, PANELS.items(), strict=True):
        lo, hi = np.inf, -np.inf
        for i, (label, res) in enumerate(series.items()):
            x, g = pair_values(res, metric)
            if x.size == 0:
                continue
            below, n = counts[label][metric]
            ax.scatter(x, g, s=18, marker=markers[i // 10 % len(markers)], alpha=0.75,
                       label=f"{label}: {below}/{n} below")
            lo, hi = min(lo, x.min(), g.min()), max(hi, x.max(), g.max())
        if np.isfinite(lo):
            pad = 0.05 * (hi - lo or 1.0)
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="black", linewidth=0.8, label="G(x) = x")
            ax.set_xlim(lo - pad, hi + pad)
            ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlabel(f"x (input): {name}")
        ax.set_ylabel(f"G(x): {name}")
        ax.set_title(f"{name}, pair by pair (below the line: G(x) worse)", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out_png = Path(out_png)
    buf = io.BytesIO()
    fig.savefig(buf, format=out_png.suffix[1:].lower() or "png")
    return atomic_write_bytes(out_png, buf.getvalue())


def load_results(path: str | Path, all_weights: bool = False) -> dict[str, dict[str, Any]]:
    """``{label: result}`` from a ``benchmarks.evaluate --json`` file: its last generator labelled
    by the file's name, or every generator as ``file: generator`` with ``all_weights``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise PairPlotError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PairPlotError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(data, dict) or not data or not all(isinstance(r, dict) and "pairs" in r for r in data.values()):
        raise PairPlotError(f"{path}: not a `benchmarks.evaluate --json` file with per-pair figures")
    if not all_weights:
        return {path.stem: list(data.values())[-1]}
    return {f"{path.stem}: {Path(w).name}": res for w, res in data.items()}


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.pairplot --json F [F ...] --out PNG [--all-weights] [--title T]``."""
    import sys

    from benchmarks.cli import check_outputs
    from training.argparsing import OneLineParser
    from training.outputs import figure_suffixes

    ap = OneLineParser(prog="python -m benchmarks.pairplot", description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, nargs="+", required=True, help="`python -m benchmarks.evaluate --json` file(s)")
    ap.add_argument("--out", type=Path, required=True, help="figure to write (PNG, or another type matplotlib writes: .svg, .pdf, ...)")
    ap.add_argument("--all-weights", action="store_true", help="one colour per generator of each file [its last only]")
    ap.add_argument("--title", default="", help="figure title")
    a = ap.parse_args(argv)
    check_outputs(ap, {"--out": (a.out, figure_suffixes())})
    try:
        series: dict[str, dict[str, Any]] = {}
        for f in a.json:
            for label, res in load_results(f, a.all_weights).items():
                series[f"{f.parent.name}/{label}" if label in series else label] = res
        print(plot_pairs(series, a.out, a.title))
    except PairPlotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: --out {a.out}: cannot write it ({exc})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
