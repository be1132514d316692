"""Frame-edge check: does a despeckler brighten or darken the last pixels of a frame?

A convolutional network with zero padding can draw a bright or dark seam along the frame's
edges.  Per side of a stack of frames (N, H, W)::

    step = mean(outer 2 rows / columns) - mean(rows / columns 4 .. 11 from that edge)

and a generator passes when on every side ``|step(G(x)) - step(x)| < LIMIT`` grey levels, on
12 grid-model frames (seeds 3-14) and 6 points-model frames (seeds 3-8) of 96x96 pixels from
the simulator (:func:`check_frames`).  ``tests/test_engine_shipped.py`` applies it to the shipped
export (both families); the model card's snapshot choice applies it to candidates:

    python -m benchmarks.edges --weights RUN/snapshots/*.pt
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["LIMIT", "SIDES", "frame_edge_steps", "check_frames", "edge_deviation", "worst_deviation", "main"]

#: largest accepted |step(G(x)) - step(x)| on any side, grey levels.
LIMIT = 6.0
SIDES = ("top", "bottom", "left", "right")


def frame_edge_steps(frames: np.ndarray, outer: int = 2, inner: tuple[int, int] = (4, 12)) -> dict[str, float]:
    """Per side, the mean over ``frames`` (N, H, W) of the outer band minus the inner band (module doc)."""
    a = np.asarray(frames, dtype=np.float64)
    if a.ndim != 3 or min(a.shape[1:]) < 2 * inner[1]:
        raise ValueError(f"frame_edge_steps needs (N, H, W) frames of at least {2 * inner[1]} pixels a side, got {a.shape}")
    views = dict(zip(SIDES, (a, a[:, ::-1], a.transpose(0, 2, 1), a.transpose(0, 2, 1)[:, ::-1]), strict=True))
    return {side: float(v[:, :outer].mean() - v[:, inner[0]:inner[1]].mean()) for side, v in views.items()}


def check_frames() -> dict[str, np.ndarray]:
    """The low-probe frames of the check: ``{"grid": (12, 96, 96), "points": (6, 96, 96)}`` uint8."""
    from training.sim import simulate_pair

    return {
        "grid": np.stack([simulate_pair(seed, (96, 96))[0] for seed in range(3, 15)]),
        "points": np.stack([simulate_pair(seed, (96, 96), model="points")[0] for seed in range(3, 9)]),
    }


def edge_deviation(run: Callable[[np.ndarray], np.ndarray], frames: np.ndarray) -> dict[str, float]:
    """Per side ``step(G(x)) - step(x)`` in grey levels, ``run`` despeckling one uint8 frame."""
    out = np.stack([run(f) for f in frames])
    g, x = frame_edge_steps(out), frame_edge_steps(frames)
    return {side: g[side] - x[side] for side in SIDES}


def worst_deviation(run: Callable[[np.ndarray], np.ndarray],
                    frames: dict[str, np.ndarray]) -> tuple[float, dict[str, dict[str, float]]]:
    """``(worst |deviation|, {family: edge_deviation})`` over the families of :func:`check_frames`."""
    devs = {family: edge_deviation(run, f) for family, f in frames.items()}
    return max(abs(v) for d in devs.values() for v in d.values()), devs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.edges", description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, nargs="+", required=True, help="generator checkpoint(s) or ONNX export(s)")
    ap.add_argument("--limit", type=float, default=LIMIT, help="largest accepted deviation, grey levels (default %(default)s)")
    a = ap.parse_args(argv)
    from benchmarks.evaluate import LOAD_ERRORS, generator_function

    frames = check_frames()
    try:
        for w in a.weights:
            worst, devs = worst_deviation(generator_function(w), frames)
            detail = "; ".join(f"{fam} " + " ".join(f"{s} {v:+.1f}" for s, v in d.items()) for fam, d in devs.items())
            print(f"{w}: {'OK' if worst < a.limit else 'EDGE'} (worst {worst:.1f} grey levels; {detail})")
    except LOAD_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
