"""What a training run writes besides checkpoints: TensorBoard scalars, sample PNGs, a CSV log.

Layout under the run folder::

    RUNDIR/config.yaml          resolved config + code version (written by the trainer)
    RUNDIR/log.csv              long format: phase, step, unit, wall_s, loss, value
    RUNDIR/tb/                  TensorBoard event files (scalars ``<phase>/<loss>`` and images)
    RUNDIR/samples/<phase>_<step>.png   input | output | high-quality (or target) crop, side by side
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import torch

__all__ = ["RunLog", "read_log", "plot_curves"]


def _to_u8(t: torch.Tensor) -> np.ndarray:
    return (t.detach().float().clamp(0, 1).cpu().numpy()[0] * 255.0 + 0.5).astype(np.uint8)


class RunLog:
    """Scalars to TensorBoard and ``log.csv``; sample triptychs to PNG and TensorBoard.

    Args:
        run_dir: the run folder.
        enabled: ``False`` on ranks other than 0 of a distributed run (nothing is written).
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.run_dir / "tb"))
            (self.run_dir / "samples").mkdir(parents=True, exist_ok=True)

    def scalars(self, phase: str, step: int, unit: int, wall_s: float, losses: dict[str, float]) -> None:
        """Log one unit's losses (``unit`` counts all units of the run, the TensorBoard x axis)."""
        if not self.enabled:
            return
        for name, value in losses.items():
            self._writer.add_scalar(f"{phase}/{name}", value, unit)
        path = self.run_dir / "log.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["phase", "step", "unit", "wall_s", "loss", "value"])
            for name, value in losses.items():
                w.writerow([phase, step, unit, f"{wall_s:.1f}", name, f"{value:.6g}"])

    def sample(self, phase: str, step: int, unit: int, images: list[torch.Tensor]) -> Path | None:
        """Save the first image of each ``(N, 1, H, W)`` tensor side by side (resized to the
        first one's height) as ``samples/<phase>_<step>.png``."""
        if not self.enabled:
            return None
        tiles = [_to_u8(t[0]) for t in images]
        h = tiles[0].shape[0]
        tiles = [t if t.shape[0] == h else cv2.resize(t, (round(t.shape[1] * h / t.shape[0]), h)) for t in tiles]
        strip = np.concatenate(tiles, axis=1)
        path = self.run_dir / "samples" / f"{phase}_{step:06d}.png"
        cv2.imwrite(str(path), strip)
        self._writer.add_image(f"{phase}/samples", strip[None], unit)
        return path

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


#: the columns :func:`read_log` needs (``RunLog`` writes ``step`` and ``wall_s`` as well).
_LOG_COLUMNS = ("phase", "unit", "loss", "value")


def _number(kind: type, row: dict[str, str], column: str, where: str) -> int | float:
    """``kind(row[column])``, or a ``ValueError`` naming ``where`` and the column."""
    try:
        return kind(row[column])
    except ValueError:
        raise ValueError(f"{where}: {column} {row[column]!r} is not {'an integer' if kind is int else 'a number'}") from None


def read_log(path: str | Path) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """Read ``log.csv`` into ``{(phase, loss): (units, values)}`` (for plotting curves).

    Raises:
        ValueError: not UTF-8 text, a header without the log's columns, a short row or a value
            that is not a number, or no rows; the message names the file (and the line).
    """
    series: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        try:
            if reader.fieldnames is None:
                raise ValueError(f"{path}: empty file, not a training log.csv")
            missing = [c for c in _LOG_COLUMNS if c not in reader.fieldnames]
            if missing:
                raise ValueError(f"{path}: not a training log.csv: no column {', '.join(missing)} in its header")
            for row in reader:
                where = f"{path} line {reader.line_num}"
                if any(row[c] is None for c in _LOG_COLUMNS):
                    raise ValueError(f"{where}: a short row, expected {len(reader.fieldnames)} fields")
                units, values = series.setdefault((row["phase"], row["loss"]), ([], []))
                units.append(_number(int, row, "unit", where))
                values.append(_number(float, row, "value", where))
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: not a UTF-8 text file (byte {exc.start}), not a training log.csv") from None
        except csv.Error as exc:
            raise ValueError(f"{path} line {reader.line_num}: {exc}") from None
    if not series:
        raise ValueError(f"{path}: no logged rows")
    return {k: (np.asarray(u), np.asarray(v)) for k, (u, v) in series.items()}


def plot_curves(log_csv: str | Path, out_png: str | Path, smooth: int = 10, mark: int | None = None) -> Path:
    """Training curves from ``log.csv``: one panel per phase, every loss term against the run's
    unit counter, each smoothed by a running mean over ``smooth`` (>= 1) logged points, at most a
    quarter of the term's points (raw faint).

    ``mark``: a unit (``log.csv``'s ``unit`` column) to draw as a dashed vertical line in the
    panel of the phase that ran it (the snapshot a model was taken from, say).  Each phase's last
    unit is always logged, so a phase ran the units after the previous phase's last one up to its
    own; a unit outside 1 and the run's last logged unit raises ``ValueError``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series = read_log(log_csv)
    phases = list(dict.fromkeys(phase for phase, _ in series))
    spans: dict[str, tuple[int, int]] = {}  # phase -> first and last logged unit
    for (ph, _), (units, _) in series.items():
        lo, hi = spans.get(ph, (int(units.min()), int(units.max())))
        spans[ph] = (min(lo, int(units.min())), max(hi, int(units.max())))
    mark_phase = None
    if mark is not None:
        ran_after = 0  # the last unit of the phase before
        for ph in phases:
            if ran_after < mark <= spans[ph][1]:
                mark_phase = ph
                break
            ran_after = spans[ph][1]
        else:
            last = max(hi for _, hi in spans.values())
            raise ValueError(f"mark: unit {mark} is not one the run of {log_csv} reached (1..{last})")
    fig = Figure(figsize=(5 * len(phases), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(phases), squeeze=False)[0]
    for ax, phase in zip(axes, phases, strict=True):
        for (ph, loss), (units, values) in series.items():
            if ph != phase:
                continue
            k = max(1, min(smooth, len(values) // 4))
            smoothed = np.convolve(values, np.ones(k) / k, mode="valid")
            line = ax.plot(units[k - 1 :], smoothed, label=loss)[0]
            ax.plot(units, values, color=line.get_color(), alpha=0.2, linewidth=0.8)
        if phase == mark_phase:
            ax.axvline(mark, color="black", linestyle="--", linewidth=1.0, label=f"unit {mark}")
        ax.set_yscale("log")
        ax.set_title(phase)
        ax.set_xlabel("unit (optimizer step; GAN iteration)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    return out_png


def main(argv: list[str] | None = None) -> int:
    """``python -m training.runlog --log RUNDIR/log.csv --out curves.png``: plot training curves."""
    from training.argparsing import OneLineParser
    from training.outputs import check_output_file, figure_suffixes

    ap = OneLineParser(prog="python -m training.runlog", description="plot the training curves of a run")
    ap.add_argument("--log", type=Path, required=True, help="a run's log.csv")
    ap.add_argument("--out", type=Path, required=True, help="figure to write (.png, .pdf, .svg, ...)")
    ap.add_argument("--smooth", type=int, default=10, help="running-mean length in logged points, >= 1 [10]")
    ap.add_argument("--mark", type=int, help="draw this unit (log.csv's unit column) as a dashed line, e.g. a shipped snapshot's")
    a = ap.parse_args(argv)
    if a.smooth < 1:
        ap.error(f"--smooth must be at least 1 logged point, got {a.smooth}")
    if not a.log.is_file():
        ap.error(f"--log {a.log}: no such file")
    try:
        check_output_file(a.out, "--out", suffixes=figure_suffixes())
        print(plot_curves(a.log, a.out, a.smooth, a.mark))
    except ValueError as exc:  # PathError, and read_log's and plot_curves' errors (naming the file)
        ap.exit(2, f"{ap.prog}: error: {exc}\n")
    except OSError as exc:  # a read or write the checks could not foresee
        ap.exit(1, f"{ap.prog}: error: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
