"""Writing the quality comparison: the Markdown page, the CSV table and the Fig. 4 figure.

:func:`write_outputs` turns a :class:`benchmarks.quality.QualityRun` into ``quality.md``
(provenance, the table in the shape of the paper's Table I with this project's extra columns,
notes, orderings, and the paper's own Table I for orientation), ``quality.csv`` and
``quality_fig4.png`` (matplotlib, Agg backend).
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import os
import platform
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from benchmarks import metrics as M

if TYPE_CHECKING:
    from benchmarks.quality import QualityConfig, QualityRun

__all__ = [
    "PAPER_TABLE_I",
    "PAPER_REFERENCE_SSNR",
    "COLUMNS",
    "BETA_SIGMA",
    "markdown_table",
    "markdown_report",
    "orderings",
    "write_csv",
    "write_figure",
    "write_outputs",
]

#: the paper's Table I (other images: compare orderings, not values): SSNR x_hat, KL(x, x_hat), KL(y, x_hat).
PAPER_TABLE_I: tuple[tuple[str, str, str, str], ...] = (
    ("Input (no filter)", "7.2990", "0", "0.7512"),
    ("DPAD", "9.7542", "31.7018", "31.5043"),
    ("OBNLM", "25.529", "9.5010", "0.9810"),
    ("SBF", "20.5514", "8.8660", "1.5440"),
    ("RTAD", "9.3614", "1.9490", "0.7325"),
    ("ADMSS", "7.3641", "0.3242", "0.7547"),
    ("EAGF", "19.3142", "5.4180", "1.0210"),
    ("EPPRSRAD", "7.5651", "0.3428", "0.7183"),
    ("Proposed (DRNN)", "12.016", "3.0570", "0.2107"),
)
PAPER_REFERENCE_SSNR = "18.2451"

#: (key, Markdown header, format) of the table's columns after the method name.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("ssnr", "SSNR x̂", ".3f"),
    ("kl_x", "KL(x, x̂)", ".4f"),
    ("kl_y", "KL(y, x̂)", ".4f"),
    ("enl", "ENL", ".1f"),
    ("grain_axial", "grain axial (px)", ".2f"),
    ("grain_lateral", "grain lateral (px)", ".2f"),
    ("cnr", "CNR", ".3f"),
    ("gcnr", "gCNR", ".3f"),
    ("beta", "β", ".3f"),
    ("ssim", "SSIM", ".4f"),
    ("psnr", "PSNR (dB)", ".2f"),
    ("log_corr", "log-corr", ".4f"),
    ("ms", "ms / image", ".1f"),
)
#: std (pixels) of the Laplacian of Gaussian in the table's edge preservation beta.
BETA_SIGMA = 2.0


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` where there is one, else the machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _simulator_line(cfg: QualityConfig) -> str:
    """`` Simulator: ...`` from the ``simulate.yaml`` that ``python -m training.simulate`` leaves beside ``eval/``."""
    meta = cfg.eval_dir.parent / "simulate.yaml" if cfg.eval_dir is not None else None
    if meta is None or not meta.is_file():
        return ""
    try:
        info = yaml.safe_load(meta.read_text()) or {}
        c = info.get("config", {})
        return (
            f" Simulator version {info.get('simulator_version', '?')}, seed {c.get('seed')}, "
            f"jitter {c.get('jitter')}, pixel {c.get('pixel_mm')} mm (`{meta}`)."
        )
    except (yaml.YAMLError, AttributeError) as exc:
        return f" (unreadable {meta}: {exc})"


def _distribution_note(cfg: QualityConfig) -> str:
    """Whether a paired set is of the DRNN's training distribution, as far as the folder tells: a
    set with the ``simulate.yaml`` of ``python -m training.simulate`` is; of any other the report
    cannot say (another simulator's pairs, a user's phantom scans)."""
    if cfg.eval_dir is not None and (cfg.eval_dir.parent / "simulate.yaml").is_file():
        return ("- The DRNN was trained on images of this same simulator (other seeds; see `weights/MODEL_CARD.md`), "
                "so this is an in-distribution comparison; the baselines' parameters were not tuned to it.")
    return ("- This set has no `simulate.yaml` beside it, so it was not made by `python -m training.simulate`, "
            "the only source of the DRNN's training images (`weights/MODEL_CARD.md`): the comparison may be out "
            "of the DRNN's training distribution; the baselines' parameters were not tuned to it either.")


def _fmt(value: float, spec: str) -> str:
    return "—" if math.isnan(value) else ("inf" if math.isinf(value) else format(value, spec))


def markdown_table(run: QualityRun) -> str:
    """Table I in Markdown, with this project's extra columns."""
    head = "| Method | " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    rule = "| --- |" + " ---: |" * len(COLUMNS)
    rows = [head, rule]
    for res in run.results:
        s = res.summary()
        rows.append(f"| {res.label} | " + " | ".join(_fmt(s[k], f) for k, _, f in COLUMNS) + " |")
    return "\n".join(rows)


def markdown_report(run: QualityRun, cfg: QualityConfig, command: Sequence[str] = ()) -> str:
    """The whole Markdown page: provenance, our table, notes, and the paper's Table I."""
    mode = (
        f"paired simulator set `{cfg.eval_dir}`"
        if run.paired
        else f"unpaired images `{cfg.x_dir}` / `{cfg.y_dir}`"
    )
    h, w = run.figure["x"].shape
    lines = [
        "# Quality: the paper's Table I on this project's data",
        "",
        f"Generated by `python -m benchmarks.quality {' '.join(command)}` on "
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, commit `{_git_commit()}`, "
        f"{_cpu_name()} ({os.cpu_count()} logical CPUs, shared), {platform.system()}, Python {platform.python_version()}.",
        "",
        f"Data: {mode}, {run.images} image(s), the first {w}x{h}"
        + (f", {run.bad} item(s) skipped (unreadable or without a region)" if run.bad else "")
        + ". Means over the images; run time is the median per image on this machine's CPU."
        + _simulator_line(cfg)
        + f" Figure: `{cfg.out / 'quality_fig4.png'}` (image {cfg.figure_index}).",
    ]
    if run.drnn_note:
        lines += ["", f"**{run.drnn_note}.**"]
    lines += ["", markdown_table(run), "", "Notes:", ""]
    lines += [
        f"- Region: {'the `parenchyma` mask of the simulator truth' if cfg.roi is None else f'`{cfg.roi}`'}; "
        f"SSNR averages mean/std over {cfg.window}x{cfg.window} windows inside it; ENL = SSNR² per image, averaged over the images.",
        f"- KL(p‖q) = Σ p ln(p/q) in nats over {cfg.bins} grey-level bins with Laplace smoothing; "
        "KL(x, x̂) = KL(p_x ‖ p_x̂), KL(y, x̂) = KL(p_y ‖ p_x̂)"
        + (" with y the paired high-probe image." if run.paired else " with p_y pooled over all y images."),
        "- Grain: FWHM of the autocovariance in the region (axial = rows, lateral = columns).",
        "- CNR/gCNR: "
        + ("vessel lumen against the liver's pixels 2-8 px from it (city-block)." if run.paired
           else "`--target` against the pixels 2-8 px from it (city-block)."),
        f"- β: correlation of Laplacians of Gaussian (σ = {BETA_SIGMA:g} px) with "
        + ("ln(true echogenicity) in the liver" if run.paired else "the input x")
        + " (after Sattar et al.).",
        "- SSIM/PSNR against y; log-corr: Pearson correlation of ln(x̂ + 1) with ln(true echogenicity) in the liver."
        if run.paired else "- SSIM, PSNR and log-corr need paired images with a truth: empty (—) here.",
        "- Reading the table: higher is better for CNR, gCNR, β, SSIM, PSNR and log-corr; lower for KL(y, x̂) and "
        "the run time; SSNR x̂, ENL and the grain are best close to the reference y's (a plain smoothing filter "
        "raises SSNR and ENL and coarsens the grain far beyond them); KL(x, x̂) says how far x̂ moved from the input.",
    ]
    if any(r.note for r in run.results):
        lines.append("- `*`: an approximation of the published method (see `docs/quality.md`):")
    if run.paired and not run.drnn_note:
        lines.insert(-1, _distribution_note(cfg))
    lines += [f"  - {r.label}: {r.note}" for r in run.results if r.note]
    failures = [f"{r.label} {r.failures} ({', '.join(sorted(r.failed))})" for r in run.results if r.failures]
    if failures:
        lines.append(
            "- Metric values left out (undefined on an image, e.g. a flat region): "
            + ", ".join(failures)
            + "."
        )
    lines += ["", "## Orderings", "", *orderings(run)]
    lines += [
        "",
        "## The paper's Table I, for orientation",
        "",
        "Mishra et al. measured these on two liver images of their own scanners (one region each), not on "
        "this data: compare the orderings, not the values.",
        f"Their reference image y has SSNR {PAPER_REFERENCE_SSNR}.",
        "",
        "| Method | SSNR x̂ | KL(x, x̂) | KL(y, x̂) |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [f"| {n} | {a} | {b} | {c} |" for n, a, b, c in PAPER_TABLE_I]
    paper = sorted(PAPER_TABLE_I, key=lambda row: float(row[3]))
    lines += ["", "Their ordering by KL(y, x̂), closest first: " + ", ".join(row[0] for row in paper) + "."]
    return "\n".join(lines) + "\n"


def orderings(run: QualityRun) -> list[str]:
    """Markdown bullets ranking the methods (not the input or reference rows) by the key metrics."""
    rows = {r.label: r.summary() for r in run.results}
    methods = [r.label for r in run.results if r.name not in ("input", "reference")]
    ref = next((rows[r.label] for r in run.results if r.name == "reference"), None)

    def rank(key: str, score: Callable[[dict[str, float]], float]) -> str:
        ranked = sorted((m for m in methods if math.isfinite(score(rows[m]))), key=lambda m: score(rows[m]))
        return ", ".join(f"{m} ({_fmt(rows[m][key], '.3g')})" for m in ranked) or "—"

    out = [f"- KL(y, x̂), closest to the reference PDF first: {rank('kl_y', lambda v: v['kl_y'])}."]
    if ref is not None:
        out.append(
            f"- SSNR closest to the reference's ({_fmt(ref['ssnr'], '.3g')}) first: "
            f"{rank('ssnr', lambda v: abs(v['ssnr'] - ref['ssnr']))}."
        )
        out.append(
            f"- Lateral grain closest to the reference's ({_fmt(ref['grain_lateral'], '.3g')} px) first: "
            f"{rank('grain_lateral', lambda v: abs(v['grain_lateral'] - ref['grain_lateral']))}."
        )
        inp = rows[run.results[0].label]
        out.append(
            f"- On this data the input's KL(y, x) is {_fmt(inp['kl_y'], '.3g')}: "
            + (
                "the two probes' grey-level PDFs nearly coincide, so KL(y, x̂) mostly measures how far a "
                "method moves away from the input's PDF; grain size and SSNR tell the probes apart."
                if inp["kl_y"] < 0.05
                else "the two probes' grey-level PDFs differ, as in the paper."
            )
        )
    out.append(f"- SSIM against y, highest first: {rank('ssim', lambda v: -v['ssim'])}.")
    below = below_input(run, "log_corr")
    if below:
        out.append("- Images where a method's log-corr falls below the input's, fewest first: "
                   + ", ".join(f"{m} ({k} of {n})" for m, (k, n) in sorted(below.items(), key=lambda i: i[1][0])) + ".")
    out.append(f"- Run time per image, fastest first: {rank('ms', lambda v: v['ms'])}.")
    return out


def below_input(run: QualityRun, key: str) -> dict[str, tuple[int, int]]:
    """Per method (not the input or reference rows): ``(k, n)``, the images where its ``key`` is
    below the input's, out of the ``n`` where both are finite (:func:`benchmarks.metrics.count_below`).
    Empty when the input has no finite ``key`` (no truth)."""
    inp = run.results[0].values.get(key, [])
    if not any(math.isfinite(v) for v in inp):
        return {}
    return {r.label: M.count_below(r.values.get(key, []), inp)
            for r in run.results if r.name not in ("input", "reference")}


def write_csv(run: QualityRun, path: Path) -> None:
    """One row per method: its summary values at full precision and its approximation note."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "label", *[k for k, _, _ in COLUMNS], "approximation_note"])
        for res in run.results:
            s = res.summary()
            writer.writerow([res.name, res.label, *[repr(s[k]) for k, _, _ in COLUMNS], res.note])


def write_figure(run: QualityRun, cfg: QualityConfig, path: Path) -> None:
    """Fig. 4: input, reference and each output, each above its PDF overlaid on those of x and y."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_data = run.figure
    region = fig_data["region"]
    panels = [("x", "input x")] + ([("y", "reference y")] if "y" in fig_data else [])
    panels += [(r.name, r.label) for r in run.results if r.name in fig_data and r.name not in ("x", "y")]
    cols = min(len(panels), 5)
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(
        2 * rows,
        cols,
        figsize=(2.8 * cols, 4.1 * rows),
        squeeze=False,
        gridspec_kw={"height_ratios": [3, 1.2] * rows},
        layout="constrained",
    )
    centres, pdf_x = M.intensity_pdf(fig_data["x"], region, cfg.bins)
    width = centres[1] - centres[0]
    pdf_y = M.intensity_pdf(fig_data["y"], region, cfg.bins)[1] if "y" in fig_data else None
    pdfs = {key: M.intensity_pdf(fig_data[key], region, cfg.bins)[1] for key, _ in panels if key not in ("x", "y")}
    top = 1.08 * max(float(p.max()) for p in [pdf_x, *([pdf_y] if pdf_y is not None else []), *pdfs.values()]) / width
    for i in range(rows * cols):
        ax_img, ax_pdf = axes[2 * (i // cols), i % cols], axes[2 * (i // cols) + 1, i % cols]
        if i >= len(panels):
            ax_img.axis("off")
            ax_pdf.axis("off")
            continue
        key, label = panels[i]
        img = fig_data[key]
        ax_img.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax_img.contour(region, levels=[0.5], colors="yellow", linewidths=0.6)
        ax_img.set_title(label, fontsize=9)
        ax_img.set_xticks([])
        ax_img.set_yticks([])
        ax_pdf.plot(centres, pdf_x / width, color="tab:red", lw=1, label="x")
        if pdf_y is not None:
            ax_pdf.plot(centres, pdf_y / width, color="tab:green", lw=1, label="y")
        if key not in ("x", "y"):
            ax_pdf.plot(centres, pdfs[key] / width, color="k", lw=1.3, label="x̂")
        ax_pdf.set_xlim(0, 255)
        ax_pdf.set_ylim(0, top)  # one scale for every panel, so the curves compare across them
        if i % cols == 0:
            ax_pdf.set_ylabel("density (1/grey level)", fontsize=7)
        ax_pdf.tick_params(labelsize=7)
        ax_pdf.legend(fontsize=7, frameon=False)
        ax_pdf.set_xlabel("grey level", fontsize=7)
    fig.suptitle("Despeckled outputs and grey-level PDFs in the region (yellow)", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(run: QualityRun, cfg: QualityConfig, command: Sequence[str] = ()) -> None:
    """``quality.md``, ``quality.csv``, ``quality_fig4.png`` in ``cfg.out`` (and ``cfg.markdown``)."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    report = markdown_report(run, cfg, command)
    (cfg.out / "quality.md").write_text(report)
    if cfg.markdown is not None:
        cfg.markdown.parent.mkdir(parents=True, exist_ok=True)
        cfg.markdown.write_text(report)
    write_csv(run, cfg.out / "quality.csv")
    write_figure(run, cfg, cfg.out / "quality_fig4.png")
