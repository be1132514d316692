"""Needle visibility: does a despeckler keep the biopsy needle that the input shows?

In intra-operative navigation the needle, and above all its tip, is what the user follows; a
despeckler that takes a needle for speckle and smooths it away is worse than none.  The
simulator draws one per phantom with ``python -m training.simulate --paired --needle`` (a
straight specular reflector entering from one side; truth masks ``needle`` and ``needle_tip``,
the last 5 mm).  For each image ``img`` (x, y or G(x)) of a pair this module measures the
signed contrast-to-noise ratio of the needle against the tissue around it::

    needle_cnr = (mu_needle - mu_ring) / sqrt(s_needle^2 + s_ring^2)

with ``ring`` the pixels 2-8 pixels from the needle, whatever tissue it crosses (a needle in a
dark lesion is seen against the lesion), but not on another specular interface (capsule,
diaphragm, vessel walls), and the same for the tip (``tip_cnr``, ring around the tip's
mask).  Signed, because a needle drawn darker than its surroundings is lost, not kept.  Per
set: the means, and the pairs where G(x)'s figure is below x's (the needle weakened).  The
CNR's two parts are reported beside it, in grey levels: the needle's contrast
``mu_needle - mu_ring`` and the spread of its surroundings ``s_ring``; a CNR that falls with
the contrast kept comes from busier surroundings, not from a fainter needle.

    python -m benchmarks.needle --weights weights/drnn.pt --eval data/needle/eval
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from benchmarks import metrics as m
from benchmarks.cli import add_view_arguments, check_outputs, image_suffixes, view_options, write_texts
from benchmarks.evaluate import (
    LOAD_ERRORS,
    count_weaker,
    load_candidates,
    means,
    measure_runs,
    per_pair,
    write_example,
)
from training.argparsing import OneLineParser
from training.data import DataError

__all__ = ["NEEDLE_METRICS", "NEEDLE_DIAGNOSTICS", "needle_metrics", "evaluate_needles", "markdown_table", "main"]

#: Figures per image, in table order; ``weakened`` counts the pairs where G(x) is below x in these.
NEEDLE_METRICS = ("needle_cnr", "tip_cnr")
#: What the needle's CNR is made of (means only): ``needle_delta = mu_needle - mu_ring`` and
#: ``ring_std = s_ring``, grey levels.  A CNR that falls with ``needle_delta`` kept means busier
#: surroundings, not a fainter needle.
NEEDLE_DIAGNOSTICS = ("needle_delta", "ring_std")

PROG = "python -m benchmarks.needle"


def require_needle(truth: Mapping[str, np.ndarray]) -> None:
    """Raise :class:`DataError` unless ``truth`` has the ``needle`` and ``needle_tip`` masks."""
    if "needle" not in truth or "needle_tip" not in truth:
        raise DataError("the truth has no needle masks: simulate the set with --needle")


def needle_metrics(image: np.ndarray, truth: Mapping[str, np.ndarray]) -> dict[str, float]:
    """:data:`NEEDLE_METRICS` and :data:`NEEDLE_DIAGNOSTICS` of one image; ``truth`` needs the
    ``needle`` and ``needle_tip`` masks."""
    require_needle(truth)
    if image.shape != truth["needle"].shape:
        raise m.MetricError(f"image {image.shape} and needle mask {truth['needle'].shape} differ in shape")
    around = ~truth["interfaces"]
    out = {}
    for key, mask in (("needle_cnr", truth["needle"]), ("tip_cnr", truth["needle_tip"])):
        ring = m.ring_mask(mask, gap=2, width=6, within=around)
        defined = mask.sum() >= 5 and ring.sum() >= 5
        out[key] = m.cnr(image, mask, ring, signed=True) if defined else float("nan")
        if key == "needle_cnr":
            img = image.astype(np.float64)
            out["needle_delta"] = float(img[mask].mean() - img[ring].mean()) if defined else float("nan")
            out["ring_std"] = float(img[ring].std()) if defined else float("nan")
    return out


def evaluate_needles(runs: Mapping[str, Callable[[np.ndarray], np.ndarray]], eval_dir: str | Path,
                     progress: bool = True) -> dict[str, dict]:
    """``{name: result}`` for generators ``runs`` on the paired needle set ``eval_dir``: ``result``
    holds the means of x, y and G(x) (``"x"``, ``"y"``, ``"g"``: ``{metric: mean}`` with the
    :data:`NEEDLE_DIAGNOSTICS`, NaNs skipped), ``"weakened"`` (pairs where G(x) is below x in
    the :data:`NEEDLE_METRICS`, of ``"pairs_<metric>"`` defined) and every pair's figures
    (``"pairs"``)."""
    rows = measure_runs(runs, eval_dir, lambda img, y, truth: needle_metrics(img, truth), progress=progress,
                        what="needles", check_truth=require_needle)
    keys = NEEDLE_METRICS + NEEDLE_DIAGNOSTICS
    return {name: {**means(r, keys), "weakened": count_weaker(r, NEEDLE_METRICS), "pairs": per_pair(r, keys)}
            for name, r in rows.items()}


def markdown_table(results: Mapping[str, dict]) -> str:
    """One row for x, one for y, one per generator: mean needle and tip CNR, the needle's grey
    contrast and its surroundings' spread (:data:`NEEDLE_DIAGNOSTICS`), weakened pairs."""
    first = next(iter(results.values()))
    lines = ["| image | needle CNR | tip CNR | needle - surroundings (grey) | surroundings std (grey) "
             "| needle weaker than in x | tip weaker than in x |",
             "|---|---|---|---|---|---|---|"]

    def figures(r: dict) -> str:
        return f"{r['needle_cnr']:.3f} | {r['tip_cnr']:.3f} | {r['needle_delta']:.1f} | {r['ring_std']:.1f}"

    for label, key in (("x (low probe, input)", "x"), ("y (high probe, reference)", "y")):
        lines.append(f"| {label} | {figures(first[key])} | | |")
    for name, res in results.items():
        w = res["weakened"]
        lines.append(f"| G(x) {name} | {figures(res['g'])} | "
                     f"{w['needle_cnr']} of {w['pairs_needle_cnr']} | {w['tip_cnr']} of {w['pairs_tip_cnr']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.needle --weights W [W ...] --eval DIR [--json F] [--markdown F] [--figure F]``.
    Exit status 0; 1 when some weights could not be loaded (each reported, the others measured) or
    an output could not be written; 2 for bad arguments or data."""
    ap = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, nargs="+", required=True,
                    help="generator file(s) (usdespeckle-ckpt-1), ONNX export(s) (run with ONNX Runtime) or shipped model names (fast...)")
    ap.add_argument("--eval", type=Path, required=True,
                    help="paired folder simulated with --needle: x_NNN.png, y_NNN.png, truth_NNN.npz")
    ap.add_argument("--json", type=Path, help="write every result here")
    ap.add_argument("--markdown", type=Path, help="write the table here")
    add_view_arguments(ap)
    ap.add_argument("--figure", type=Path,
                    help="write x | G(x) | y of the first three pairs (last weights) here, as PNG")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    check_outputs(ap, {"--json": (a.json, None), "--markdown": (a.markdown, None),
                       "--figure": (a.figure, image_suffixes() if a.figure else None)})
    runs, failed = load_candidates(a.weights, prefix=f"{PROG}: ", **view_options(a))
    if not runs:
        return 2
    try:
        results = evaluate_needles(runs, a.eval, progress=not a.no_progress)
    except LOAD_ERRORS as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    table = markdown_table(results)
    print(table, end="")
    try:
        write_texts({"--markdown": (a.markdown, table), "--json": (a.json, json.dumps(results, indent=2))})
        if a.figure:
            write_example(list(runs.values())[-1], a.eval, a.figure, indices=(0, 1, 2), name=Path(list(runs)[-1]).stem)
    except OSError as exc:  # training.outputs.PathError names the flag
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
