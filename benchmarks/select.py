"""Pick a snapshot: the model card's selection rule over several validation sets.

For every generator file (checkpoint or ONNX export) the frame-edge check
(:mod:`benchmarks.edges`) and, on every paired validation set, :func:`benchmarks.evaluate.evaluate`
and the issue's four targets (:func:`benchmarks.evaluate.check_targets`).  A missed target's
relative shortfall (0 when met)::

    grain     g_lat / (1.25 y_lat) - 1
    kl        KL(y, g) / (0.5 KL(y, x)) - 1
    cnr       1 - CNR_g / max(CNR_x, 0.95 CNR_y)
    log_corr  1 - r_g / r_x

The rule (fixed before any held-out set is looked at): among the files that pass the edge check,
the one that meets the most targets over all sets; ties go to the smallest summed shortfall on
the missed targets other than KL (which every candidate so far misses everywhere).  With
``--incumbent`` (the shipped weights) the pick replaces it only if it meets strictly more targets.
The table also shows, outside the rule, how many pairs each file harms (vessel CNR or
log-correlation below x's, summed over the sets: ``worse_than_x`` of
:func:`benchmarks.evaluate.evaluate`).
Each file runs as the model it is, at the engine's default grey levels, on the pictures as they
come (no ``--pixel-mm`` view): the rule judges the weights on validation sets drawn at the
training pixels, where the engine's pixel views leave the frames as they are (docs/engine.md).

    python -m benchmarks.select --weights RUN/snapshots/*.pt --incumbent weights/drnn.pt \\
        --eval data/val_a/eval data/val_b/eval --json select.json
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from benchmarks.cli import check_outputs, write_texts
from benchmarks.edges import LIMIT, check_frames, worst_seam
from benchmarks.evaluate import (
    CNR_MIN,
    GRAIN_MAX,
    KL_MAX,
    LOAD_ERRORS,
    check_targets,
    evaluate_many,
    load_candidates,
)
from training.argparsing import OneLineParser, non_negative_int, positive_float
from training.outputs import PathError

__all__ = ["Candidate", "shortfalls", "score", "rank", "pick", "markdown", "main"]

#: the targets of :func:`benchmarks.evaluate.check_targets`, one flag letter each.
TARGETS = {"grain": "G", "kl": "K", "cnr": "C", "log_corr": "L"}


def shortfalls(res: dict[str, dict[str, float]]) -> dict[str, float]:
    """Relative shortfall of each target (module docstring) on the means of one set; 0 when met."""
    x, y, g = res["x"], res["y"], res["g"]
    need_cnr = max(x["cnr"], CNR_MIN * y["cnr"])
    return {
        "grain": max(0.0, g["grain_lat"] / (GRAIN_MAX * y["grain_lat"]) - 1.0),
        "kl": max(0.0, g["kl_y"] / (KL_MAX * x["kl_y"]) - 1.0) if x["kl_y"] > 0 else 0.0,
        "cnr": max(0.0, 1.0 - g["cnr"] / need_cnr) if need_cnr > 0 else 0.0,
        "log_corr": max(0.0, 1.0 - g["log_corr"] / x["log_corr"]) if x["log_corr"] > 0 else 0.0,
    }


@dataclass(frozen=True)
class Candidate:
    """One generator file measured: worst frame-edge seam (grey levels, :mod:`benchmarks.edges`), per
    set the targets met (``{set: {target: bool}}``) and the shortfalls (``{set: {target: float}}``);
    ``harmed``: pairs where G(x) scores below x in vessel CNR, plus those in log-correlation, over
    all sets (the rule's last tie-break)."""

    weights: str
    edge_worst: float
    met: dict[str, dict[str, bool]]
    shortfall: dict[str, dict[str, float]]
    harmed: int = 0

    @property
    def total(self) -> int:
        return sum(sum(m.values()) for m in self.met.values())

    @property
    def non_kl_shortfall(self) -> float:
        return sum(v for s in self.shortfall.values() for k, v in s.items() if k != "kl")


def score(weights: str, edge_worst: float, results: dict[str, dict[str, dict[str, float]]]) -> Candidate:
    """A :class:`Candidate` from ``results`` = ``{set: evaluate(...)}``."""
    return Candidate(
        weights=weights, edge_worst=edge_worst,
        met={s: {k: bool(ok) for k, (ok, _) in check_targets(r).items()} for s, r in results.items()},
        shortfall={s: shortfalls(r) for s, r in results.items()},
        harmed=sum(r["worse_than_x"]["cnr"] + r["worse_than_x"]["log_corr"] for r in results.values()),
    )


def rank(candidates: list[Candidate], limit: float = LIMIT) -> list[Candidate]:
    """Edge-clean first, then most targets met, then smallest non-KL shortfall, then fewest
    harmed pairs (two files that both meet every non-KL target tie at shortfall 0)."""
    return sorted(candidates, key=lambda c: (c.edge_worst >= limit, -c.total, c.non_kl_shortfall, c.harmed))


def pick(candidates: list[Candidate], incumbent: str | None = None, limit: float = LIMIT) -> Candidate | None:
    """The rule's choice, ``None`` if no file passes the edge check.  With ``incumbent`` (one of the
    candidates' ``weights``): the incumbent, unless it fails the edge check or the best other
    edge-clean file meets strictly more targets."""
    clean = [c for c in rank(candidates, limit) if c.edge_worst < limit]
    if incumbent is None:
        return clean[0] if clean else None
    current = next((c for c in candidates if c.weights == incumbent), None)
    if current is None:
        raise ValueError(f"incumbent {incumbent} is not among the candidates")
    challenger = next((c for c in clean if c.weights != incumbent), None)
    if current.edge_worst >= limit:
        return challenger
    return challenger if challenger is not None and challenger.total > current.total else current


def markdown(candidates: list[Candidate], limit: float = LIMIT) -> str:
    """One row per file (best first): edges, the targets met per set as flags (``GKCL``, ``.`` for
    a miss), the total, the non-KL shortfall and the harmed pairs."""
    ranked = rank(candidates, limit)
    sets = list(ranked[0].met) if ranked else []
    head = "| weights | edges | " + " | ".join(sets) + " | met | shortfall | harmed |\n|---|---|" + "---|" * (len(sets) + 3) + "\n"
    rows = []
    for c in ranked:
        flags = [("".join(TARGETS[k] if ok else "." for k, ok in c.met[s].items())) for s in sets]
        edge = f"{'ok' if c.edge_worst < limit else 'EDGE'} {c.edge_worst:.1f}"
        rows.append(f"| {c.weights} | {edge} | " + " | ".join(flags)
                    + f" | {c.total}/{4 * len(sets)} | {c.non_kl_shortfall:.3f} | {c.harmed} |\n")
    return head + "".join(rows)


def _set_names(dirs: list[Path]) -> list[str]:
    """Short unique names for the sets: the folder above ``eval/`` (or the folder itself)."""
    names = [d.parent.name if d.name == "eval" else d.name for d in dirs]
    return names if len(set(names)) == len(names) else [str(d) for d in dirs]


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.select --weights W [W ...] --eval DIR [DIR ...] [--incumbent W] [--json F]``.
    Exit status 0; 1 when some files could not be loaded (each reported, the rule applied to the
    others) or the JSON could not be written; 2 for bad arguments or data."""
    ap = OneLineParser(prog="python -m benchmarks.select", description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, nargs="+", required=True, help="candidate generator files (checkpoints or ONNX) or shipped model names (fast...)")
    ap.add_argument("--eval", type=Path, nargs="+", required=True, help="paired validation folders (x_NNN.png, y_NNN.png, truth_NNN.npz)")
    ap.add_argument("--incumbent", type=Path, help="the weights in use: replaced only by a file that meets more targets")
    ap.add_argument("--limit", type=non_negative_int, default=0, help="use the first N pairs of each set [0: all]")
    ap.add_argument("--edge-limit", type=positive_float, default=LIMIT, help="edge check, grey levels (default %(default)s)")
    ap.add_argument("--json", type=Path, help="write every file's figures here")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    check_outputs(ap, {"--json": (a.json, None)})
    files = list(dict.fromkeys([*a.weights, *([a.incumbent] if a.incumbent else [])]))
    names = _set_names(a.eval)
    runs, failed = load_candidates(files)
    if not runs:
        return 2
    incumbent = str(a.incumbent) if a.incumbent and str(a.incumbent) in runs else None
    frames = check_frames()
    try:
        edges = {w: worst_seam(run, frames)[0]
                 for w, run in tqdm(runs.items(), desc="edge check", unit="file", disable=a.no_progress)}
        per_set = {n: evaluate_many(runs, d, a.limit, progress=not a.no_progress)
                   for n, d in zip(names, a.eval, strict=True)}
    except LOAD_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    raw = {w: {n: per_set[n][w] for n in names} for w in edges}
    candidates = [score(w, edges[w], raw[w]) for w in edges]
    print(markdown(candidates, a.edge_limit))
    chosen = pick(candidates, incumbent, a.edge_limit)
    lost = "; the incumbent could not be loaded: picked among the others" if a.incumbent and incumbent is None else ""
    print((f"pick: {chosen.weights} ({chosen.total} targets)" if chosen else "pick: none (every file fails the edge check)") + lost)
    if a.json:
        try:
            write_texts({"--json": (a.json, json.dumps({"pick": chosen.weights if chosen else None,
                                                        "candidates": [asdict(c) for c in candidates], "results": raw},
                                                       indent=2))})
        except PathError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {a.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
