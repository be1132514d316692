"""Quality of a trained generator on a paired simulated set (the model card's figures).

For each pair ``(x, y, truth)`` of a ``python -m training.simulate --paired`` folder the
generator despeckles ``x`` into ``g = G(x)`` and :mod:`benchmarks.metrics` measures ``x``,
``y`` and ``g``:

* ``grain_lat`` / ``grain_ax``: speckle grain, FWHM (pixels) of the autocovariance along
  columns / rows inside the homogeneous parenchyma mask;
* ``kl_y``: ``KL(p_y || p_img)`` of the grey-level PDFs in the parenchyma (64 bins, Laplace);
* ``cnr``: vessel-to-parenchyma contrast-to-noise ratio ``|mu_v - mu_t| / sqrt(s_v^2 + s_t^2)``,
  ``t`` a ring of tissue 2..8 pixels around the vessels (liver, not structures);
* ``log_corr``: Pearson correlation of ``ln(img + 1)`` with ``ln(echogenicity)`` in the liver;
* ``ssnr``: mean / std in the parenchyma.

Diagnostics of what the targets do not see (JSON and the table's notes, not targets):

* ``lesion_hyper`` / ``lesion_hypo``: how clearly the hyperechoic / hypoechoic lesions are shown,
  the signed CNR of each lesion against its tissue ring, oriented to the lesion's true polarity
  (:func:`benchmarks.metrics.lesion_contrast`), averaged over the image's lesions of that kind;
  the pairs where ``G(x)`` shows them less clearly than ``x`` are counted.

Two diagnostics of the KL figure (JSON and the table's notes, not targets):

* ``kl_y_shift``: ``KL(p_y || p_img)`` after the best constant grey shift of ``img``
  (:func:`benchmarks.metrics.shifted_kl`, |s| <= 40): what is left once a brightness offset,
  such as the high probe's own gain setting, is taken out;
* ``kl_split``: the split-half KL of the image's own parenchyma
  (:func:`benchmarks.metrics.split_half_kl`, 32-pixel checkerboard): the estimator's floor at
  half the pixels; for two full regions it is about half of this.

Fan-geometry sets (truth with ``fov_x`` / ``fov_y``) are measured where both probes image.

:func:`check_targets` compares the means with the project's targets (issue 4).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from benchmarks import metrics as m
from benchmarks.metrics import MetricError
from engine.base import BackendUnavailable
from engine.files import atomic_write_bytes
from engine.flip import flip_averaged
from engine.levels import DEFAULT_LEVELS, at_working_levels, level_ranges
from engine.pixels import PixelMode
from engine.speckle import picture_function
from engine.strength import blend, check_strength
from engine.torch_model import FrameModel
from engine.weights import SHIPPED, WeightsError, WeightsNotFound, is_shipped_name, shipped_weights
from training.checkpoint import CheckpointError, load_generator
from training.data import DataError, read_pairs, read_truth

__all__ = [
    "generator_function", "write_example", "image_metrics", "evaluate", "evaluate_many", "check_targets", "METRICS", "markdown_table",
    "measure_runs", "means", "per_pair", "count_weaker", "load_candidates", "LOAD_ERRORS", "DIAGNOSTICS", "GRAIN_MAX", "KL_MAX", "CNR_MIN",
]

#: What loading weights or a paired set can raise: reported as one line (a paired set: exit status 2;
#: one of several weights: left out, :func:`load_candidates`).
LOAD_ERRORS = (CheckpointError, DataError, MetricError, WeightsError, WeightsNotFound, BackendUnavailable)

#: Metric names in table order.
METRICS = ("grain_lat", "grain_ax", "kl_y", "cnr", "log_corr", "ssnr")
#: Diagnostics of the KL figure and of the lesions, reported beside the metrics (not in the table's columns).
DIAGNOSTICS = ("kl_y_shift", "kl_split", "lesion_hyper", "lesion_hypo")
#: The targets' bounds (issue 4): lateral grain of G(x) at most GRAIN_MAX x y's, KL(y, G(x)) at
#: most KL_MAX x KL(y, x), vessel CNR at least CNR_MIN x y's (and above x's).
GRAIN_MAX, KL_MAX, CNR_MIN = 1.25, 0.5, 0.95


def _safe(fn: Callable[[], float]) -> float:
    try:
        return fn()
    except MetricError:
        return math.nan


def image_metrics(img: np.ndarray, y: np.ndarray, truth: dict[str, np.ndarray]) -> dict[str, float]:
    """The :data:`METRICS` and :data:`DIAGNOSTICS` of one image ``img`` (``x``, ``y`` or ``G(x)``) of a pair with reference ``y``."""
    fov = truth.get("fov_x", True) & truth.get("fov_y", True)  # fan geometry: where both probes image
    par = truth["parenchyma"] & fov
    liver = truth["liver"] & fov
    tissue = liver & ~truth["structures"]
    vessels = truth["vessels"] & fov
    ring = m.ring_mask(vessels, gap=2, width=6, within=tissue)
    has_vessels = vessels.sum() >= 20 and ring.sum() >= 20
    hyper, hypo = m.lesion_contrast(img, truth["echogenicity"], truth["lesions"] & fov, tissue)
    return {
        "grain_lat": _safe(lambda: m.speckle_grain_size(img, par, axis=1)),
        "grain_ax": _safe(lambda: m.speckle_grain_size(img, par, axis=0)),
        "kl_y": _safe(lambda: m.region_kl(y, par, img, par)),
        "cnr": _safe(lambda: m.cnr(img, vessels, ring)) if has_vessels else math.nan,
        "log_corr": _safe(lambda: m.log_correlation(img, truth["echogenicity"], liver)),
        "ssnr": _safe(lambda: m.ssnr(img, par)),
        "kl_y_shift": _safe(lambda: m.shifted_kl(y, par, img, par)[0]),
        "kl_split": _safe(lambda: m.split_half_kl(img, par)),
        "lesion_hyper": hyper,
        "lesion_hypo": hypo,
    }


def generator_function(weights: str | Path, strength: float = 1.0, levels: str = DEFAULT_LEVELS,
                       flip_average: bool = False, pixel_mm: PixelMode | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """``uint8 (H, W) -> uint8 (H, W)`` despeckling with ``weights`` as the engine runs it: a
    generator checkpoint through :class:`engine.torch_model.FrameModel` (eager torch, CPU, float32:
    batch norm folded, rounding, black surroundings) or an ``.onnx`` export through the engine's ONNX
    Runtime backend (CPU), so float32, FP16 and INT8 exports are measured exactly as they run.
    ``strength`` below 1: the output blended with the input as the engine does it
    (:func:`engine.strength.blend`).  ``levels``: the engine's grey-level mode (:mod:`engine.levels`,
    its default ``"preset"`` unless told).  ``flip_average``: each output averaged with the model's
    on the mirrored frame (:mod:`engine.flip`).  ``pixel_mm`` (:data:`engine.pixels.PixelMode`;
    pictures carry no spacing): ``"auto"`` each frame at its own speckle scale
    (:mod:`engine.speckle`), a spacing at square trained pixels (:mod:`engine.pixels`), ``None``,
    ``"off"`` or ``"spacing"`` as it comes; the strength blend stays outermost, as in the engine.
    A shipped model's name (``fast``...; :data:`engine.weights.SHIPPED`) stands for its ONNX file,
    else its checkpoint."""
    if is_shipped_name(weights):
        weights = shipped_weights(str(weights), (".onnx", ".pt"))
    elif not Path(weights).is_file():
        raise WeightsNotFound(f"{weights}: no such file, nor a shipped model's name ({', '.join(SHIPPED)})")
    strength = check_strength(strength)
    levelled = _levelled_model(weights, levels, flip_average)

    viewed = picture_function(levelled, pixel_mm or "off")

    def run(image: np.ndarray) -> np.ndarray:
        out = viewed(image)
        return out if strength == 1.0 else blend(image, out, strength)

    return run


def _levelled_model(weights: str | Path, levels: str, flip_average: bool) -> Callable[[np.ndarray], np.ndarray]:
    """The model of ``weights`` with the engine's grey-level mapping and flip averaging, no strength
    blend and no resampling (:func:`generator_function` adds those around it)."""
    if Path(weights).suffix.lower() == ".onnx":
        from engine.registry import create_despeckler

        return create_despeckler("onnxruntime", weights=weights, levels=levels, flip_average=flip_average,
                                 device="cpu").infer
    ranges = level_ranges(levels)
    model = FrameModel(load_generator(weights)).eval()

    @torch.no_grad()
    def plain(image: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(np.ascontiguousarray(image))).numpy()

    net = partial(flip_averaged, despeckle=plain) if flip_average else plain
    return net if ranges is None else partial(at_working_levels, despeckle=net, level_range=ranges[0],
                                              spread_range=ranges[1])


def _pixels_name(pixel_mm: PixelMode | None) -> str:
    """How a run's name says its pixels: nothing for ``None`` and ``"auto"`` (the engine's default)."""
    if pixel_mm in (None, "auto"):
        return ""
    if pixel_mm in ("off", "spacing"):
        return " (pixels as they come)"
    return f" (pixels {pixel_mm[0]:g} x {pixel_mm[1]:g} mm)"


def load_candidates(weights: Sequence[str | Path], strength: float = 1.0, prefix: str = "error: ",
                    levels: str = DEFAULT_LEVELS, flip_average: bool = False,
                    pixel_mm: PixelMode | None = None) -> tuple[dict[str, Callable[[np.ndarray], np.ndarray]], int]:
    """``{name: generator_function(w, strength, levels, flip_average, pixel_mm)}`` in the order of
    ``weights`` (``name``: the path, plus ``" (strength s)"`` below 1, ``" (levels mode)"`` for
    another mode than the engine's default, ``" (flip-averaged)"`` and the pixels unless ``None`` or
    ``"auto"``, how results and tables name the run), for the tools that
    compare several files.  They go on without a file that cannot be loaded (:data:`LOAD_ERRORS`):
    it is reported on stderr in one line naming it (after ``prefix``) and left out.  Returns
    ``(runs, number left out)``; the tools exit with status 1 when some were left out, 2 when all were."""
    runs: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    failed = 0
    for w in weights:
        try:
            name = str(w) if strength == 1.0 else f"{w} (strength {strength:g})"
            name = name if levels == DEFAULT_LEVELS else f"{name} (levels {levels})"
            name = (f"{name} (flip-averaged)" if flip_average else name) + _pixels_name(pixel_mm)
            runs[name] = generator_function(w, strength, levels, flip_average, pixel_mm)
        except LOAD_ERRORS as exc:
            why = str(exc).rstrip(". ")
            print(f"{prefix}{why if str(w) in why else f'{w}: {why}'}; left out", file=sys.stderr)
            failed += 1
    return runs, failed


def measure_runs(runs: Mapping[str, Callable[[np.ndarray], np.ndarray]], eval_dir: str | Path,
                 measure: Callable[[np.ndarray, np.ndarray, dict[str, np.ndarray]], dict[str, float]],
                 limit: int = 0, progress: bool = True, what: str = "evaluate",
                 check_truth: Callable[[dict[str, np.ndarray]], None] | None = None,
                 ) -> dict[str, dict[str, list[dict[str, float]]]]:
    """Per-image figures of a paired set for several generators: ``{name: {"x": rows, "y": rows,
    "g": rows}}``, one row ``measure(img, y, truth)`` per pair for ``img`` = ``x``, ``y`` and
    ``runs[name](x)``.  The pairs (the first ``limit``; 0: all) are read, and ``x`` and ``y``
    measured, once for all generators; ``what`` names the progress bars.  ``check_truth`` is
    called on every truth before anything is measured (raise :class:`DataError` to refuse the set)."""
    xs, ys = read_pairs(eval_dir)
    truths = read_truth(eval_dir)
    if check_truth is not None:
        for truth in truths:
            check_truth(truth)
    n = len(xs) if limit <= 0 else min(limit, len(xs))
    pairs = list(zip(xs, ys, truths, strict=True))[:n]
    ref: dict[str, list[dict[str, float]]] = {"x": [], "y": []}
    for x, y, truth in tqdm(pairs, desc=f"{what} x, y", disable=not progress):
        ref["x"].append(measure(x, y, truth))
        ref["y"].append(measure(y, y, truth))
    return {name: {**ref, "g": [measure(run(x), y, truth)
                                for x, y, truth in tqdm(pairs, desc=f"{what} {Path(name).name}", disable=not progress)]}
            for name, run in runs.items()}


def _skipping_nan(stat: Callable[[np.ndarray], float], values: Sequence[float]) -> float:
    """``stat`` of the defined ``values`` (NaNs skipped); NaN, without numpy's warning, where none is."""
    a = np.asarray(values, dtype=np.float64)
    a = a[~np.isnan(a)]
    return float(stat(a)) if a.size else math.nan


def means(rows: Mapping[str, list[dict[str, float]]], keys: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """``{image: {key: mean over the pairs}}`` of :func:`measure_runs`'s rows, NaNs skipped (NaN
    where no pair defines it)."""
    return {name: {k: _skipping_nan(np.mean, [r[k] for r in rs]) for k in keys} for name, rs in rows.items()}


def per_pair(rows: Mapping[str, list[dict[str, float]]], keys: tuple[str, ...]) -> dict[str, dict[str, list[float]]]:
    """``{image: {key: [value per pair]}}`` (NaN where undefined), for :mod:`benchmarks.pairplot`."""
    return {name: {k: [float(r[k]) for r in rs] for k in keys} for name, rs in rows.items()}


def count_weaker(rows: Mapping[str, list[dict[str, float]]], keys: tuple[str, ...]) -> dict[str, int]:
    """Per-pair harm, which a mean over the pairs hides: for each key the number of pairs where
    ``G(x)`` scores below ``x`` (a structure that ``x`` shows and ``G(x)`` weakens or paints
    over), out of ``pairs_<key>`` pairs where both are defined (:func:`benchmarks.metrics.count_below`)."""
    out: dict[str, int] = {}
    for k in keys:
        out[k], out[f"pairs_{k}"] = m.count_below([g[k] for g in rows["g"]], [x[k] for x in rows["x"]])
    return out


def _summary(rows: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Means and per-pair medians of ``{"x": rows, "y": rows, "g": rows}`` (NaNs skipped), the
    pairs where ``G(x)`` is below ``x`` in CNR, in log-correlation and in either lesion contrast (``"worse_than_x"``,
    :func:`count_weaker`) and the per-pair figures (``"pairs"``, :func:`per_pair`)."""
    keys = METRICS + DIAGNOSTICS
    out: dict[str, dict[str, float]] = means(rows, keys)
    out["n"] = {"pairs": len(rows["x"])}
    out["worse_than_x"] = count_weaker(rows, ("cnr", "log_corr", "lesion_hyper", "lesion_hypo"))
    out["median"] = {name: {k: _skipping_nan(np.median, [r[k] for r in rs]) for k in keys} for name, rs in rows.items()}
    out["pairs"] = per_pair(rows, keys)
    return out


def evaluate_many(runs: Mapping[str, Callable[[np.ndarray], np.ndarray]], eval_dir: str | Path, limit: int = 0,
                  progress: bool = True) -> dict[str, dict[str, dict[str, float]]]:
    """:func:`evaluate` for several generators on one set: ``{name: result}`` for ``runs`` =
    ``{name: generator_function(...)}`` (:func:`measure_runs` with :func:`image_metrics`)."""
    rows = measure_runs(runs, eval_dir, image_metrics, limit, progress)
    return {name: _summary(r) for name, r in rows.items()}


def evaluate(weights: str | Path, eval_dir: str | Path, limit: int = 0, progress: bool = True) -> dict[str, dict[str, float]]:
    """Mean of each metric over the pairs of ``eval_dir`` for ``x``, ``y`` and ``g`` (NaNs skipped).

    ``weights``: see :func:`generator_function`.  Returns ``{"x": {...}, "y": {...}, "g": {...},
    "n": {"pairs": N}, "worse_than_x": {...}, "median": {"x": {...}, "y": {...}, "g": {...}},
    "pairs": {"x": {...}, "y": {...}, "g": {...}}}``: the means (which the targets use), the pairs
    where ``g`` scores below ``x`` in CNR and in log-correlation, the per-pair medians, which a few
    outlying pairs cannot move (a grain of 96 px where the tissue's own texture sets the
    autocovariance, say), and every pair's figures.
    """
    return evaluate_many({str(weights): generator_function(weights)}, eval_dir, limit, progress)[str(weights)]


#: height of the label strip above :func:`write_example`'s columns, pixels.
LABEL_STRIP = 24


def write_example(run: Callable[[np.ndarray], np.ndarray], eval_dir: str | Path, png: str | Path,
                  indices: tuple[int, ...] = (0, 1), name: str = "G") -> Path:
    """PNG with one row per pair index: ``x | run(x) | y`` at full resolution (``run``: e.g.
    :func:`generator_function`), under a strip of :data:`LABEL_STRIP` pixels that names the
    columns (``name``: the model's, for the middle one)."""
    import cv2

    xs, ys = read_pairs(eval_dir)
    rows = [np.concatenate([xs[i], run(xs[i]), ys[i]], axis=1) for i in indices if i < len(xs)]
    png = Path(png)
    if not cv2.haveImageWriter(str(png)):
        raise ValueError(f"{png}: OpenCV cannot write {png.suffix or 'files without a suffix'!r}")
    mosaic = np.concatenate(rows, axis=0)
    strip = np.zeros((LABEL_STRIP, mosaic.shape[1]), np.uint8)
    w = xs[indices[0]].shape[1] if indices[0] < len(xs) else mosaic.shape[1] // 3
    for col, text in enumerate(("x (input)", f"{name}(x)", "y (high probe)")):
        scale = min(0.5, 0.9 * w / max(cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)[0][0], 1))
        cv2.putText(strip, text, (col * w + 4, LABEL_STRIP - 8), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, 1, cv2.LINE_AA)
    ok, data = cv2.imencode(png.suffix, np.concatenate([strip, mosaic], axis=0))
    if not ok:
        raise OSError(f"{png}: OpenCV could not encode the image")
    return atomic_write_bytes(png, data.tobytes())


def check_targets(res: dict[str, dict[str, float]]) -> dict[str, tuple[bool, str]]:
    """The issue's quality targets on the means of :func:`evaluate`: name -> (met, explanation).
    A target whose figures no pair defines (NaN: frames too small for the grain's parenchyma
    tiles, no vessel for the CNR) is not met, and its explanation says it was not measured."""
    x, y, g = res["x"], res["y"], res["g"]
    grain_max, kl_max, cnr_min = GRAIN_MAX * y["grain_lat"], KL_MAX * x["kl_y"], CNR_MIN * y["cnr"]
    used = {"grain": ("grain_lat",), "kl": ("kl_y",), "cnr": ("cnr",), "log_corr": ("log_corr",)}
    unmeasured = {name: (False, f"{name}: not measured ({', '.join(keys)} undefined on every pair: too little "
                                "parenchyma or no vessel in the frames)")
                  for name, keys in used.items() if any(math.isnan(r[k]) for r in (x, y, g) for k in keys)}
    return {**{
        "grain": (g["grain_lat"] <= grain_max,
                  f"lateral grain G(x) {g['grain_lat']:.2f} px <= {GRAIN_MAX} x y {y['grain_lat']:.2f} = {grain_max:.2f}"),
        "kl": (g["kl_y"] <= kl_max,
               f"KL(y, G(x)) {g['kl_y']:.3f} <= {KL_MAX} x KL(y, x) = {kl_max:.3f}"),
        "cnr": (g["cnr"] > x["cnr"] and g["cnr"] >= cnr_min,
                f"CNR G(x) {g['cnr']:.3f} > x {x['cnr']:.3f} and >= {CNR_MIN} x y = {cnr_min:.3f}"),
        "log_corr": (g["log_corr"] > x["log_corr"],
                     f"log-correlation with truth G(x) {g['log_corr']:.3f} > x {x['log_corr']:.3f}"),
    }, **unmeasured}


def markdown_table(res: dict[str, dict[str, float]]) -> str:
    """The means as a Markdown table (rows x, y, G(x)) followed by the target checks (and the
    per-pair medians of the lateral grain where ``res`` has them)."""
    head = "| image | " + " | ".join(METRICS) + " |\n|---|" + "---|" * len(METRICS) + "\n"
    body = "".join(
        f"| {label} | " + " | ".join(f"{res[key][k]:.3f}" for k in METRICS) + " |\n"
        for key, label in (("x", "x (low probe, input)"), ("y", "y (high probe, reference)"), ("g", "G(x) (DRNN)"))
    )
    checks = "".join(f"- {'met' if ok else 'NOT met'}: {why}\n" for ok, why in check_targets(res).values())
    if "median" in res:
        med = res["median"]
        checks += ("\nPer-pair medians of the lateral grain (px): " +
                   ", ".join(f"{label} {med[key]['grain_lat']:.3f}" for key, label in (("x", "x"), ("y", "y"), ("g", "G(x)"))) + "\n")
    if "worse_than_x" in res:
        w = res["worse_than_x"]
        checks += (f"\nPairs where G(x) scores below x: CNR {w['cnr']} of {w['pairs_cnr']}, "
                   f"log-correlation {w['log_corr']} of {w['pairs_log_corr']}\n")
    if "kl_y_shift" in res["g"]:
        x, y, g = res["x"], res["y"], res["g"]
        checks += (f"\nKL diagnostics: y's split-half KL (estimator floor at half the pixels) {y['kl_split']:.4f}; "
                   f"KL(y, . + best grey shift) x {x['kl_y_shift']:.4f}, G(x) {g['kl_y_shift']:.4f}\n")
    if "lesion_hyper" in res["g"]:
        checks += _lesion_line(res)
    return head + body + "\n" + checks


def _lesion_line(res: dict[str, dict[str, float]]) -> str:
    """The table's note on the lesions (:func:`benchmarks.metrics.lesion_contrast`): the mean
    contrast of each kind in x, y and G(x), and the pairs where G(x) shows them less clearly."""
    x, y, g = res["x"], res["y"], res["g"]
    w = res.get("worse_than_x", {})
    parts = []
    for key, kind in (("lesion_hyper", "hyperechoic"), ("lesion_hypo", "hypoechoic")):
        if math.isnan(g[key]):
            parts.append(f"{kind}: none")
            continue
        weaker = f"; G(x) below x on {w[key]} of {w[f'pairs_{key}']} pairs" if key in w else ""
        parts.append(f"{kind} x {x[key]:.2f}, y {y[key]:.2f}, G(x) {g[key]:.2f}{weaker}")
    return "\nLesion contrast (signed CNR against the tissue ring, + = the true polarity): " + "; ".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.evaluate --weights W [W ...] --eval DIR [--limit N] [--markdown F] [--json F]
    [--figure F] [--pairs-figure F]``.  Exit status 0; 1 when some weights could not be loaded (each
    reported, the others evaluated) or an output could not be written; 2 for bad arguments or data."""
    import json

    from benchmarks.cli import add_view_arguments, check_outputs, image_suffixes, view_options, write_texts
    from engine.base import threads_arg
    from training.argparsing import OneLineParser, non_negative_int
    from training.outputs import figure_suffixes

    ap = OneLineParser(prog="python -m benchmarks.evaluate", description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, nargs="+", required=True,
                    help="generator file(s) (usdespeckle-ckpt-1), ONNX export(s) (run with ONNX Runtime) or shipped "
                         "model names (default, fast, int8, fast-int8)")
    ap.add_argument("--eval", type=Path, required=True, help="paired folder: x_NNN.png, y_NNN.png, truth_NNN.npz")
    ap.add_argument("--limit", type=non_negative_int, default=0, help="use the first N pairs only [0: all]")
    ap.add_argument("--markdown", type=Path, help="write the (last) table here")
    ap.add_argument("--json", type=Path, help="write every result here")
    ap.add_argument("--threads", type=threads_arg, default=0, help="torch CPU threads [0: default]")
    add_view_arguments(ap)
    ap.add_argument("--figure", type=Path, help="write x | G(x) | y of the first two pairs (last weights) here")
    ap.add_argument("--pairs-figure", type=Path,
                    help="write each pair's CNR and log-correlation, G(x) against x, here (benchmarks.pairplot)")
    a = ap.parse_args(argv)
    check_outputs(ap, {"--markdown": (a.markdown, None), "--json": (a.json, None),
                       "--figure": (a.figure, image_suffixes() if a.figure else None),
                       "--pairs-figure": (a.pairs_figure, figure_suffixes() if a.pairs_figure else None)})
    if a.threads:
        torch.set_num_threads(a.threads)
    runs, failed = load_candidates(a.weights, **view_options(a))
    if not runs:
        return 2
    try:
        results = evaluate_many(runs, a.eval, a.limit)
    except LOAD_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for w, res in results.items():
        met = sum(ok for ok, _ in check_targets(res).values())
        print(f"{w}: {met}/4 targets; " + " ".join(f"{k}={res['g'][k]:.3f}" for k in METRICS))
    last = list(runs)[-1]
    table = markdown_table(results[last])
    print(table)
    try:
        write_texts({"--markdown": (a.markdown, table), "--json": (a.json, json.dumps(results, indent=2))})
        if a.figure:
            write_example(runs[last], a.eval, a.figure, name=Path(last).stem)
        if a.pairs_figure:
            from benchmarks.pairplot import plot_pairs

            names = [Path(w).name for w in results]
            labels = names if len(set(names)) == len(names) else list(results)
            plot_pairs(dict(zip(labels, results.values(), strict=True)), a.pairs_figure, title=f"{a.eval}")
    except OSError as exc:  # training.outputs.PathError names the flag
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
