"""Frame-edge check: does a despeckler draw a bright or dark seam along the frame's edges?

A convolutional network with zero padding responds differently next to the frame's edge than
it would to the same pixels with context all round.  The check measures that directly, paired:
for each frame ``F`` of a stack, ``F_in = F[m:-m, m:-m]`` (``m = MARGIN``, more than the
shipped DRNN's receptive-field radius of 22 pixels), and per side::

    seam = mean over frames and the outer 2 rows / columns of F_in of ( G(F_in) - G(F)[m:-m, m:-m] )

in grey levels: how much brighter (or darker) G draws the last pixels of a frame than the same
pixels inside a larger frame.  Being paired, it does not mix the edge response up with the
image content or with what G rightly changes (an earlier version compared ``G(x)``'s
edge-minus-inside step with the input's; on those frames the good probe's own step differed
from the input's by up to 4.9 grey levels).  A despeckler passes when ``|seam| < LIMIT`` on
every side of 8 grid-model frames (seeds 3-10) and 4 points-model frames (seeds 3-6) of
128x128 pixels from the simulator (:func:`check_frames`).  The CLI runs generators as the
engine does (:func:`benchmarks.evaluate.generator_function`), with the mirrored edge context
of :class:`engine.torch_model.FrameModel` that keeps the zero padding away from the frame.
``tests/test_engine_shipped.py``
applies it to the shipped export; the model card's snapshot choice and ``benchmarks.select``
apply it to candidates:

    python -m benchmarks.edges --weights RUN/snapshots/*.pt
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["LIMIT", "MARGIN", "SIDES", "check_frames", "seams", "worst_seam", "main"]

#: largest accepted |seam| on any side, grey levels.
LIMIT = 6.0
#: pixels cut from every side of a check frame for the inner frame.
MARGIN = 24
#: number of outer rows / columns a seam is measured on.
BAND = 2
SIDES = ("top", "bottom", "left", "right")


def check_frames() -> dict[str, np.ndarray]:
    """The low-probe frames of the check: ``{"grid": (8, 128, 128), "points": (4, 128, 128)}`` uint8."""
    from training.sim import simulate_pair

    return {
        "grid": np.stack([simulate_pair(seed, (128, 128))[0] for seed in range(3, 11)]),
        "points": np.stack([simulate_pair(seed, (128, 128), model="points")[0] for seed in range(3, 7)]),
    }


def seams(run: Callable[[np.ndarray], np.ndarray], frames: np.ndarray, margin: int = MARGIN) -> dict[str, float]:
    """Per side, ``mean(G(F_in) - G(F)[m:-m, m:-m])`` over the outer :data:`BAND` rows / columns of
    the inner frames (module doc), ``run`` despeckling one uint8 frame; grey levels."""
    a = np.asarray(frames)
    if a.ndim != 3 or min(a.shape[1:]) < 2 * (margin + 2 * BAND):
        raise ValueError(f"seams needs (N, H, W) frames of at least {2 * (margin + 2 * BAND)} pixels a side, got {a.shape}")
    inner = np.stack([run(np.ascontiguousarray(f[margin:-margin, margin:-margin])) for f in a]).astype(np.float64)
    full = np.stack([run(f) for f in a]).astype(np.float64)[:, margin:-margin, margin:-margin]
    d = inner - full
    bands = (d[:, :BAND], d[:, -BAND:], d[:, :, :BAND], d[:, :, -BAND:])
    return {side: float(b.mean()) for side, b in zip(SIDES, bands, strict=True)}


def worst_seam(run: Callable[[np.ndarray], np.ndarray],
               frames: dict[str, np.ndarray]) -> tuple[float, dict[str, dict[str, float]]]:
    """``(worst |seam|, {family: seams})`` over the families of :func:`check_frames`."""
    per = {family: seams(run, f) for family, f in frames.items()}
    return max(abs(v) for d in per.values() for v in d.values()), per


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.edges --weights W [W ...] [--limit GREY]``.  Exit status 0; 1 when some
    files could not be loaded (each reported, the others checked); 2 when none could, or for bad
    arguments."""
    from benchmarks.evaluate import load_candidates
    from training.argparsing import OneLineParser, positive_float

    ap = OneLineParser(prog="python -m benchmarks.edges", description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, nargs="+", required=True, help="generator checkpoint(s), ONNX export(s) or shipped model names (fast...)")
    ap.add_argument("--limit", type=positive_float, default=LIMIT, help="largest accepted |seam|, grey levels (default %(default)s)")
    a = ap.parse_args(argv)
    runs, failed = load_candidates(a.weights)
    if not runs:
        return 2
    frames = check_frames()
    for w, run in runs.items():
        worst, per = worst_seam(run, frames)
        detail = "; ".join(f"{fam} " + " ".join(f"{s} {v:+.1f}" for s, v in d.items()) for fam, d in per.items())
        print(f"{w}: {'OK' if worst < a.limit else 'EDGE'} (worst {worst:.1f} grey levels; {detail})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
