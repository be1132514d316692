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
diaphragm, vessel walls), and the same for the tip (``tip_cnr``, ring around the tip's mask).  Signed, because a needle drawn
darker than its surroundings is lost, not kept.  Per set: the means, and the pairs where
G(x)'s figure is below x's (the needle weakened).

    python -m benchmarks.needle --weights weights/drnn.pt --eval data/needle/eval
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from tqdm import tqdm

from benchmarks import metrics as m
from benchmarks.evaluate import LOAD_ERRORS, generator_function
from training.data import DataError, read_pairs, read_truth

__all__ = ["NEEDLE_METRICS", "needle_metrics", "evaluate_needles", "markdown_table", "main"]

#: Figures per image, in table order.
NEEDLE_METRICS = ("needle_cnr", "tip_cnr")


def needle_metrics(image: np.ndarray, truth: Mapping[str, np.ndarray]) -> dict[str, float]:
    """:data:`NEEDLE_METRICS` of one image; ``truth`` needs the ``needle`` and ``needle_tip`` masks."""
    if "needle" not in truth or "needle_tip" not in truth:
        raise DataError("the truth has no needle masks: simulate the set with --needle")
    if image.shape != truth["needle"].shape:
        raise m.MetricError(f"image {image.shape} and needle mask {truth['needle'].shape} differ in shape")
    around = ~truth["interfaces"]
    out = {}
    for key, mask in (("needle_cnr", truth["needle"]), ("tip_cnr", truth["needle_tip"])):
        ring = m.ring_mask(mask, gap=2, width=6, within=around)
        out[key] = m.cnr(image, mask, ring, signed=True) if mask.sum() >= 5 and ring.sum() >= 5 else float("nan")
    return out


def evaluate_needles(runs: Mapping[str, Callable[[np.ndarray], np.ndarray]], eval_dir: str | Path,
                     progress: bool = True) -> dict[str, dict]:
    """``{name: result}`` for generators ``runs`` on the paired needle set ``eval_dir``: ``result``
    holds the means of x, y and G(x) (``"x"``, ``"y"``, ``"g"``: ``{metric: mean}``, NaNs
    skipped), ``"weakened"`` (pairs where G(x) is below x, of ``"pairs_<metric>"`` defined) and
    every pair's figures (``"pairs"``)."""
    xs, ys = read_pairs(eval_dir)
    truths = read_truth(eval_dir)
    ref = {"x": [needle_metrics(x, t) for x, t in zip(xs, truths, strict=True)],
           "y": [needle_metrics(y, t) for y, t in zip(ys, truths, strict=True)]}
    results = {}
    for name, run in runs.items():
        g = [needle_metrics(run(x), t) for x, t in tqdm(list(zip(xs, truths, strict=True)),
                                                        desc=f"needles {Path(name).name}", disable=not progress)]
        rows = {**ref, "g": g}
        res: dict = {k: {key: float(np.nanmean([r[key] for r in rs])) for key in NEEDLE_METRICS}
                     for k, rs in rows.items()}
        res["weakened"] = {}
        for key in NEEDLE_METRICS:
            below, defined = m.count_below([r[key] for r in g], [r[key] for r in ref["x"]])
            res["weakened"][key], res["weakened"][f"pairs_{key}"] = below, defined
        res["pairs"] = {k: {key: [r[key] for r in rs] for key in NEEDLE_METRICS} for k, rs in rows.items()}
        results[name] = res
    return results


def markdown_table(results: Mapping[str, dict]) -> str:
    """One row for x, one for y, one per generator: mean needle and tip CNR, weakened pairs."""
    first = next(iter(results.values()))
    lines = ["| image | needle CNR | tip CNR | needle weaker than in x | tip weaker than in x |",
             "|---|---|---|---|---|"]
    for label, key in (("x (low probe, input)", "x"), ("y (high probe, reference)", "y")):
        lines.append(f"| {label} | {first[key]['needle_cnr']:.3f} | {first[key]['tip_cnr']:.3f} | | |")
    for name, res in results.items():
        w = res["weakened"]
        lines.append(f"| G(x) {name} | {res['g']['needle_cnr']:.3f} | {res['g']['tip_cnr']:.3f} | "
                     f"{w['needle_cnr']} of {w['pairs_needle_cnr']} | {w['tip_cnr']} of {w['pairs_tip_cnr']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.needle --weights W [W ...] --eval DIR [--json F] [--markdown F]``."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.needle", description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, nargs="+", required=True,
                    help="generator file(s) (usdespeckle-ckpt-1) or ONNX export(s) (run with ONNX Runtime)")
    ap.add_argument("--eval", type=Path, required=True,
                    help="paired folder simulated with --needle: x_NNN.png, y_NNN.png, truth_NNN.npz")
    ap.add_argument("--json", type=Path, help="write every result here")
    ap.add_argument("--markdown", type=Path, help="write the table here")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    try:
        results = evaluate_needles({str(w): generator_function(w) for w in a.weights}, a.eval,
                                   progress=not a.no_progress)
    except LOAD_ERRORS as exc:
        print(f"python -m benchmarks.needle: {exc}", file=sys.stderr)
        return 2
    table = markdown_table(results)
    print(table, end="")
    if a.markdown:
        a.markdown.write_text(table)
    if a.json:
        a.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
