"""The paper's quality comparison (Table I, Fig. 4) on the project's data, DRNN against the baselines.

Two kinds of input:

* paired (``--eval DIR``, the simulator's ``eval/`` folder): ``x_NNN.png`` (small-aperture
  probe), ``y_NNN.png`` (large-aperture probe, same scatterers) and ``truth_NNN.npz``
  (``echogenicity`` and bool masks; the region is ``parenchyma`` unless ``--roi`` is given,
  the contrast target the ``vessels`` lumen).  Every metric applies.
* unpaired (``--x DIR --y DIR``, your own images): regions from ``--roi`` (``x,y,w,h`` or a
  mask image) and ``--roi-y``; KL(y, x_hat) compares with the pooled PDF of all y images; the
  contrast metrics need ``--target``.  Reference-based metrics (SSIM, PSNR, log-correlation)
  are left empty; a row "Reference y" gives the y images' own SSNR, ENL, grain and KL to the
  pooled PDF (:func:`reference_row`), the figures the outputs are compared with.

Every method (the DRNN through :func:`engine.registry.create_despeckler`, each picture at its own
speckle scale unless ``--pixel-mm`` says otherwise, as the engine runs pictures; and the
baselines of :mod:`benchmarks.baselines`) runs on every x image; the per-image metrics are averaged
(mean over the images where they are defined) and the run time per image is the median.
Writes ``quality.md``, ``quality.csv`` and ``quality_fig4.png`` to ``--out`` (:mod:`benchmarks.quality_report`).

    python -m benchmarks.quality --eval data/sim/eval --out runs/quality --markdown benchmarks/QUALITY.md
"""

from __future__ import annotations

import math
import re
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, fields
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from benchmarks import metrics as M
from benchmarks.baselines import BASELINES, get_baseline
from benchmarks.cli import PIXEL_PICTURES_HELP, check_outputs
from benchmarks.quality_report import BETA_SIGMA, COLUMNS, markdown_table, write_outputs
from engine.base import BackendUnavailable, Despeckler
from engine.pixels import PixelMode, pixel_mode_arg
from engine.speckle import picture_function
from engine.weights import SHIPPED, is_shipped_name
from training.argparsing import OneLineParser, non_negative_int, positive_int
from training.data import DataError, eval_x_paths, read_image

__all__ = [
    "QualityConfig",
    "QualityError",
    "QualityRun",
    "Sample",
    "MethodResult",
    "reference_row",
    "evaluate",
    "run_quality",
    "load_eval",
    "load_unpaired",
    "main",
]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class QualityError(RuntimeError):
    """The evaluation cannot start: a missing folder, unreadable region, missing weights."""


@dataclass(frozen=True)
class QualityConfig:
    """Everything one evaluation run needs; built by :func:`main` from the command line."""

    out: Path
    eval_dir: Path | None = None
    x_dir: Path | None = None
    y_dir: Path | None = None
    roi: str | None = None
    roi_y: str | None = None
    target: str | None = None
    methods: tuple[str, ...] = tuple(BASELINES)
    drnn: bool = True
    backend: str = "auto"
    #: DRNN weights, one table row each (files or shipped model names); empty: the default model.
    weights: tuple[Path, ...] = ()
    limit: int | None = None
    bins: int = M.DEFAULT_BINS
    window: int = M.DEFAULT_SSNR_WINDOW
    markdown: Path | None = None
    figure_index: int = 0
    #: how the DRNN takes the pictures' pixel spacing (:func:`engine.speckle.picture_function`).
    pixel_mm: PixelMode = "auto"
    progress: bool = True


@dataclass
class Sample:
    """One input image with its region; ``y``/``truth`` only for paired data."""

    name: str
    x: np.ndarray
    region: np.ndarray
    y: np.ndarray | None = None
    truth: dict[str, np.ndarray] | None = None
    target: np.ndarray | None = None


@dataclass
class MethodResult:
    """The per-image metric values and run times of one method."""

    name: str
    label: str
    note: str = ""
    values: dict[str, list[float]] = field(default_factory=dict)
    failures: int = 0
    #: the metrics that were left out at least once (their keys).
    failed: set[str] = field(default_factory=set)

    def add(self, key: str, fn: Callable[[], float]) -> None:
        """Record ``fn()``; a :class:`~benchmarks.metrics.MetricError` counts as a failure (NaN)."""
        try:
            value = fn()
        except M.MetricError:
            value, self.failures = math.nan, self.failures + 1
            self.failed.add(key)
        self.values.setdefault(key, []).append(value)

    def summary(self) -> dict[str, float]:
        """Mean of each metric over the images where it is finite (median for ``ms``)."""
        out = {}
        for key, _, _ in COLUMNS:
            v = np.asarray(self.values.get(key, []), dtype=np.float64)
            v = v[~np.isnan(v)] if key in ("ssnr", "enl") else v[np.isfinite(v)]  # inf SSNR: a flat window
            out[key] = float(np.median(v) if key == "ms" else np.mean(v)) if v.size else math.nan
        return out


def _read_grey(path: Path) -> np.ndarray:
    """The picture at ``path`` as the engine reads it (:func:`training.data.read_image`: colour to grey,
    16-bit by its top 8 bits, with a warning where it uses only 12 of them)."""
    try:
        return read_image(path)
    except DataError as exc:
        raise QualityError(str(exc)) from None  # it names the file


def _rectangle(spec: str) -> tuple[int, int, int, int] | None:
    """``x,y,w,h`` -> the four integers; ``None`` if ``spec`` is not four comma-separated integers."""
    parts = spec.split(",")
    if len(parts) == 4 and all(p.strip().lstrip("-").isdigit() for p in parts):
        x, y, w, h = (int(p) for p in parts)
        return x, y, w, h
    return None


def check_region_spec(spec: str, flag: str) -> None:
    """Refuse, before any image is read, a region that is neither ``x,y,w,h`` nor a readable mask image."""
    if _rectangle(spec) is not None:
        return
    if "," in spec and not Path(spec).exists():
        raise QualityError(f"{flag} {spec}: expected x,y,w,h (four integers, pixels) or a mask image")
    if not Path(spec).is_file():
        raise QualityError(f"{flag} {spec}: no such mask image (or give x,y,w,h in pixels)")
    if cv2.imread(spec, cv2.IMREAD_GRAYSCALE) is None:
        raise QualityError(f"{flag} {spec}: cannot read the mask image")


def _region(spec: str | None, shape: tuple[int, int], flag: str) -> np.ndarray | None:
    """``x,y,w,h`` (pixels) or a mask image (grey level 128 or more = inside, so that a JPEG's
    compression noise around a black and white mask stays out) -> bool mask of ``shape``."""
    if spec is None:
        return None
    rect = _rectangle(spec)
    if rect is not None:
        x, y, w, h = rect
        if w <= 0 or h <= 0:
            raise QualityError(f"{flag} {spec}: the rectangle's width and height must be > 0")
        if x < 0 or y < 0 or x + w > shape[1] or y + h > shape[0]:
            raise QualityError(f"{flag} {spec}: rectangle outside the {shape[1]}x{shape[0]} image")
        mask = np.zeros(shape, bool)
        mask[y : y + h, x : x + w] = True
        return mask
    mask = _read_grey(Path(spec)) >= 128
    if mask.shape != shape:
        raise QualityError(
            f"{flag} {spec}: mask is {mask.shape[1]}x{mask.shape[0]}, images are {shape[1]}x{shape[0]}"
        )
    if not mask.any():
        raise QualityError(f"{flag} {spec}: mask is empty")
    return mask


def load_eval(
    folder: Path, limit: int | None = None, roi: str | None = None
) -> tuple[list[Sample], list[str]]:
    """The simulator's paired evaluation set; returns ``(samples, why each skipped item was skipped)``."""
    try:
        xs = eval_x_paths(folder)
    except DataError as exc:
        raise QualityError(f"--eval {exc}") from None
    samples, skipped = [], []
    for xp in xs[:limit]:
        stem = xp.stem[2:]
        yp, tp = xp.with_name(f"y_{stem}.png"), xp.with_name(f"truth_{stem}.npz")
        try:
            x, y = _read_grey(xp), _read_grey(yp)
            if y.shape != x.shape:
                raise QualityError(f"shape {x.shape} differs from {yp.name} {y.shape}")
            truth = _read_truth(tp, x.shape, roi is None)
            region = _region(roi, x.shape, "--roi")
            region = truth["parenchyma"].astype(bool) if region is None else region
            if not region.any():
                raise QualityError("the parenchyma mask is empty (pass --roi)")
        except QualityError as exc:
            skipped.append(_skip(xp, exc))
            continue
        samples.append(Sample(stem, x, region, y, truth, truth.get("vessels")))
    return samples, skipped


def _read_truth(path: Path, shape: tuple[int, ...], need_parenchyma: bool) -> dict[str, np.ndarray]:
    """The arrays of a ``truth_NNN.npz``, each of the image's ``shape``; a :class:`QualityError`
    naming the file if it cannot be read, lacks a needed ``parenchyma`` mask, or a 2-D array does not fit the image."""
    try:
        with np.load(path) as npz:
            truth = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # missing, not .npz, pickled objects, truncated
        raise QualityError(f"{path.name}: unreadable or not an .npz of plain arrays ({str(exc).split('. ')[0]})") from None
    if need_parenchyma and "parenchyma" not in truth:
        raise QualityError(f"{path.name}: no 'parenchyma' mask (pass --roi)")
    wrong = [k for k, v in truth.items() if v.ndim == 2 and v.shape != shape]  # the masks and echogenicity
    if wrong:
        raise QualityError(f"{path.name}: {wrong[0]} has shape {truth[wrong[0]].shape}, the image {shape}")
    return truth


def _skip(path: Path, exc: Exception) -> str:
    """Report a skipped item on stderr and return the message."""
    msg = f"skipping {path.name}: {exc}"
    tqdm.write(msg, file=sys.stderr)
    return msg


def _image_files(folder: Path, flag: str) -> list[Path]:
    files = (
        sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        if Path(folder).is_dir()
        else []
    )
    if not files:
        raise QualityError(f"{flag} {folder}: no images ({', '.join(_IMAGE_SUFFIXES)})")
    return files


def load_unpaired(cfg: QualityConfig) -> tuple[list[Sample], list[tuple[np.ndarray, np.ndarray]], list[str]]:
    """Your own images: ``(x samples, [(y image, y region)], why each skipped item was skipped)``."""
    if cfg.roi is None:
        raise QualityError("--x/--y need --roi x,y,w,h or --roi MASK.png (a homogeneous region)")
    samples, refs, skipped = [], [], []
    for flag, folder in (("--x", cfg.x_dir), ("--y", cfg.y_dir)):
        for path in _image_files(folder, flag)[: cfg.limit]:
            try:
                img = _read_grey(path)
                if flag == "--x":
                    region = _region(cfg.roi, img.shape, "--roi")
                    samples.append(
                        Sample(path.stem, img, region, target=_region(cfg.target, img.shape, "--target"))
                    )
                else:
                    refs.append((img, _region(cfg.roi_y or cfg.roi, img.shape, "--roi-y")))
            except QualityError as exc:
                skipped.append(_skip(path, exc))
    if not samples or not refs:
        raise QualityError(f"no usable {'x' if not samples else 'y'} images; {skipped[0] if skipped else ''}")
    return samples, refs, skipped


def _drnn(cfg: QualityConfig, weights: Path | None) -> Despeckler:
    """The DRNN through the engine, or a :class:`QualityError` that says why not and what to do."""
    from engine.registry import create_despeckler
    from engine.weights import WeightsError

    try:
        return create_despeckler(cfg.backend, weights=weights)
    except BackendUnavailable as exc:
        raise QualityError(
            f"DRNN unavailable ({exc}); choose another --backend, or --no-drnn for the baselines only"
        ) from exc
    except (FileNotFoundError, WeightsError, ValueError) as exc:
        raise QualityError(
            f"DRNN unavailable ({exc}); pass --weights PATH, or --no-drnn for the baselines only"
        ) from exc


def drnn_rows(weights: Sequence[Path]) -> list[tuple[str, str, Path | None]]:
    """``(key, label, weights)`` of each DRNN row: one ``drnn`` row "DRNN (this project)" for no
    weights (the default model); else ``drnn`` for the first and ``drnn_<name>`` for the others,
    each labelled with the weights as given (``DRNN (fast)``)."""
    if not weights:
        return [("drnn", "DRNN (this project)", None)]
    rows: list[tuple[str, str, Path | None]] = []
    for i, w in enumerate(weights):
        key = "drnn" if i == 0 else "drnn_" + re.sub(r"[^a-z0-9]+", "_", Path(w).stem.lower()).strip("_")
        while key in {k for k, _, _ in rows}:
            key += "_"
        rows.append((key, f"DRNN ({w})", w))
    return rows


@dataclass(frozen=True)
class _Method:
    """A table row: ``run`` maps an input image to the output; ``None`` shows the sample's own image."""

    key: str
    label: str
    note: str = ""
    run: Callable[[np.ndarray], np.ndarray] | None = None


def _score(
    res: MethodResult,
    out: np.ndarray,
    s: Sample,
    pdf_y: np.ndarray,
    cfg: QualityConfig,
    is_reference: bool = False,
) -> None:
    """Append every metric of output ``out`` of sample ``s`` to ``res``."""
    r = s.region
    _, pdf_x = M.intensity_pdf(s.x, r, cfg.bins)
    _, pdf_o = M.intensity_pdf(out, r, cfg.bins)
    res.add("ssnr", lambda: M.ssnr(out, r, cfg.window))
    res.add("enl", lambda: M.enl(out, r, cfg.window))
    res.add("kl_x", lambda: M.kl_divergence(pdf_x, pdf_o))
    res.add("kl_y", lambda: M.kl_divergence(pdf_y, pdf_o))
    res.add("grain_axial", lambda: M.speckle_grain_size(out, r, 0))
    res.add("grain_lateral", lambda: M.speckle_grain_size(out, r, 1))
    if s.target is not None and s.target.any():
        # paired: the parenchyma around the vessel; unpaired: all around --target (the --roi, a
        # patch of homogeneous tissue, usually lies elsewhere)
        within = None if s.truth is None else s.truth.get("liver", r)
        ring = M.ring_mask(s.target, within=within)
        res.add("cnr", lambda: M.cnr(out, s.target, ring))
        res.add("gcnr", lambda: M.gcnr(out, s.target, ring))
    truth = s.truth or {}
    if "echogenicity" in truth:
        log_e = np.log(np.maximum(truth["echogenicity"], 1e-3))
        res.add("beta", lambda: M.edge_preservation(log_e, out, truth.get("liver"), BETA_SIGMA))
        res.add("log_corr", lambda: M.log_correlation(out, truth["echogenicity"], truth.get("liver")))
    else:
        res.add("beta", lambda: M.edge_preservation(s.x, out, None, BETA_SIGMA))
    if s.y is not None and not is_reference:
        res.add("ssim", lambda: M.ssim(s.y, out))
        res.add("psnr", lambda: M.psnr(s.y, out))


def reference_row(refs: Sequence[tuple[np.ndarray, np.ndarray]], pooled_y: np.ndarray,
                  cfg: QualityConfig) -> MethodResult:
    """Unpaired runs: the figures of the reference images themselves (``refs``: each y image with
    its ``--roi-y`` region), the row the paper's "reference SSNR" is: SSNR, ENL, the grain and
    KL(p_y pooled, p_y of each image); the metrics that compare with x or need a truth stay empty."""
    res = MethodResult("reference", "Reference y (your high probe)")

    def score(y: np.ndarray, region: np.ndarray) -> None:
        res.values.setdefault("ms", []).append(math.nan)
        res.add("ssnr", lambda: M.ssnr(y, region, cfg.window))
        res.add("enl", lambda: M.enl(y, region, cfg.window))
        res.add("kl_y", lambda: M.kl_divergence(pooled_y, M.intensity_pdf(y, region, cfg.bins)[1]))
        res.add("grain_axial", lambda: M.speckle_grain_size(y, region, 0))
        res.add("grain_lateral", lambda: M.speckle_grain_size(y, region, 1))

    for y, region in refs:
        score(y, region)
    return res


@dataclass
class QualityRun:
    """What :func:`run_quality` measured: one :class:`MethodResult` per row, the figure's images."""

    results: list[MethodResult]
    figure: dict[str, np.ndarray]
    paired: bool
    images: int
    bad: int
    drnn_note: str


def evaluate(cfg: QualityConfig) -> QualityRun:
    """Run every method on every image and score it (writes nothing)."""
    for name in cfg.methods:
        get_baseline(name)  # unknown names fail before any work
    paired = cfg.eval_dir is not None
    if paired:
        samples, skipped = load_eval(cfg.eval_dir, cfg.limit, cfg.roi)
        if not samples:
            raise QualityError(f"no usable images in --eval {cfg.eval_dir}; {skipped[0]}")
        refs = [(s.y, s.region) for s in samples]
    else:
        samples, refs, skipped = load_unpaired(cfg)
    if cfg.figure_index >= len(samples):
        raise QualityError(f"--figure-index {cfg.figure_index}: there are only {len(samples)} usable image(s), "
                           f"0..{len(samples) - 1}")
    pooled_y = np.mean([M.intensity_pdf(y, m, cfg.bins)[1] for y, m in refs], axis=0)

    fig_sample = samples[cfg.figure_index]
    figure = {"x": fig_sample.x, "region": fig_sample.region}
    if fig_sample.y is not None:
        figure["y"] = fig_sample.y
    results = []
    with ExitStack() as stack:
        methods = [_Method("input", "Input (no filter)")]
        if paired:
            methods.append(_Method("reference", "Reference y (high probe)"))
        if cfg.drnn:
            for key, label, weights in drnn_rows(cfg.weights):
                despeckler = stack.enter_context(_drnn(cfg, weights))
                methods.append(_Method(key, label, run=picture_function(despeckler.infer, cfg.pixel_mm)))
        for name in cfg.methods:
            b = get_baseline(name)
            methods.append(_Method(b.name, b.display, b.note if b.approximation else "", b))
        with tqdm(total=len(methods) * len(samples), desc="quality", unit="image", disable=not cfg.progress) as bar:
            for m in methods:
                bar.set_postfix_str(m.key)
                res = MethodResult(m.key, m.label, m.note)
                for s in samples:
                    if m.run is None:
                        out, ms = (s.y if m.key == "reference" else s.x), math.nan
                    else:
                        t0 = time.perf_counter()
                        out = m.run(s.x)
                        ms = 1e3 * (time.perf_counter() - t0)
                        if s is fig_sample:
                            figure[m.key] = out
                    res.values.setdefault("ms", []).append(ms)
                    pdf_y = M.intensity_pdf(s.y, s.region, cfg.bins)[1] if paired else pooled_y
                    _score(res, out, s, pdf_y, cfg, m.key == "reference")
                    bar.update()
                results.append(res)
                if m.key == "input" and not paired:
                    results.append(reference_row(refs, pooled_y, cfg))
    drnn_note = "" if cfg.drnn else "DRNN not run (--no-drnn)"
    return QualityRun(results, figure, paired, len(samples), len(skipped), drnn_note)


def run_quality(cfg: QualityConfig, command: Sequence[str] = ()) -> QualityRun:
    """:func:`evaluate`, then :func:`write_outputs`; ``command`` (the CLI arguments) goes in the report."""
    run = evaluate(cfg)
    write_outputs(run, cfg, command)
    return run


def parse_args(argv: Sequence[str] | None = None) -> QualityConfig:
    """Command line -> :class:`QualityConfig`."""
    p = OneLineParser(prog="python -m benchmarks.quality", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--eval",
        type=Path,
        dest="eval_dir",
        help="paired simulator folder (x_NNN.png, y_NNN.png, truth_NNN.npz)",
    )
    src.add_argument(
        "--x", type=Path, dest="x_dir", help="folder of low-quality images (unpaired; needs --y and --roi)"
    )
    p.add_argument("--y", type=Path, dest="y_dir", help="folder of high-quality reference images (unpaired)")
    p.add_argument("--roi", help="homogeneous region of the x images: x,y,w,h in pixels, or a mask image")
    p.add_argument("--roi-y", help="region of the y images (default: --roi)")
    p.add_argument(
        "--target", help="unpaired: region for CNR/gCNR against its surroundings (x,y,w,h or mask)"
    )
    p.add_argument(
        "--methods",
        default=",".join(BASELINES),
        help=f"comma-separated baselines (default: all: {','.join(BASELINES)})",
    )
    p.add_argument("--no-drnn", action="store_true", help="run the baselines only")
    p.add_argument(
        "--backend", default="auto", help="engine backend for the DRNN (auto, onnxruntime, torch, tensorrt)"
    )
    p.add_argument(
        "--weights", type=Path, nargs="+", default=(),
        help="DRNN weights, files or shipped model names (default, fast, int8, fast-int8), one table row "
             "each (default: default)"
    )
    p.add_argument("--pixel-mm", type=pixel_mode_arg, default="auto", metavar="auto|off|S|ROW,COL",
                   help=PIXEL_PICTURES_HELP)
    p.add_argument("--limit", type=positive_int, help="use the first N images only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--bins", type=int, default=M.DEFAULT_BINS, help="histogram bins over 0..255 (default %(default)s)"
    )
    p.add_argument(
        "--window",
        type=int,
        default=M.DEFAULT_SSNR_WINDOW,
        help="SSNR window side, odd (default %(default)s)",
    )
    p.add_argument(
        "--out", type=Path, default=Path("runs/quality"), help="output folder (default %(default)s)"
    )
    p.add_argument(
        "--markdown", type=Path, help="also write the Markdown report here (e.g. benchmarks/QUALITY.md)"
    )
    p.add_argument(
        "--figure-index", type=non_negative_int, default=0,
        help="which image the figure shows, counted from 0 (default %(default)s)",
    )
    a = p.parse_args(argv)
    if a.x_dir is not None and a.y_dir is None:
        p.error("--x needs --y (a folder of reference images)")
    if a.eval_dir is not None and (a.roi_y is not None or a.target is not None):
        p.error("--roi-y and --target are for unpaired runs (--x/--y); --eval takes its regions from the truth masks")
    for w in a.weights:
        if not w.is_file() and not is_shipped_name(w):
            p.error(f"--weights {w}: no such file, nor a shipped model's name ({', '.join(SHIPPED)}); "
                    "give the DRNN's weights, or --no-drnn for the baselines only")
    a.weights = tuple(a.weights)
    if a.window < 3 or a.window % 2 == 0:
        p.error(f"--window must be an odd number >= 3, got {a.window}")
    if a.bins < 2:
        p.error(f"--bins must be >= 2, got {a.bins}")
    methods = tuple(m.strip().lower() for m in a.methods.split(",") if m.strip())
    unknown = [m for m in methods if m not in BASELINES]
    if unknown:
        p.error(f"--methods: unknown {', '.join(unknown)}; choose from {','.join(BASELINES)}")
    try:
        for flag, spec in (("--roi", a.roi), ("--roi-y", a.roi_y), ("--target", a.target)):
            if spec is not None:
                check_region_spec(spec, flag)
    except QualityError as exc:
        p.error(str(exc))
    check_outputs(p, {"--markdown": (a.markdown, None)}, folders={"--out": a.out})
    given = {f.name: getattr(a, f.name) for f in fields(QualityConfig) if f.name not in ("methods", "drnn", "progress")}
    return QualityConfig(**given, methods=methods, drnn=not a.no_drnn, progress=not a.no_progress)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cfg = parse_args(argv)
    try:
        run = evaluate(cfg)
    except QualityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        write_outputs(run, cfg, argv)
    except OSError as exc:
        print(f"error: cannot write the report: {exc}", file=sys.stderr)
        return 1
    print(markdown_table(run))
    print(
        f"wrote {cfg.out / 'quality.md'}, quality.csv, quality_fig4.png"
        + (f" and {cfg.markdown}" if cfg.markdown else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
