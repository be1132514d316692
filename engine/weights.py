"""Where the shipped weights live and the errors raised when a weights file is unusable.

The repository ships ``weights/drnn.pt`` (a generator checkpoint, see :mod:`engine.checkpoint`)
and its exports ``weights/drnn.onnx`` / ``weights/drnn_fp16.onnx`` (see :mod:`engine.onnx_export`) and
``weights/drnn_int8.onnx`` (opt-in, for CPUs, last 3 residual blocks float32; see :mod:`engine.int8`),
and a small model for CPUs distilled from it, ``weights/drnn_fast.pt`` / ``weights/drnn_fast.onnx`` /
``weights/drnn_fast_int8.onnx`` (opt-in: pass it as the weights; ``weights/MODEL_CARD.md``).
Backends that get no ``weights`` argument use these, resolved relative to the repository that holds
this package, so ``create_despeckler()`` works from any working directory.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["WEIGHTS_DIR", "WeightsError", "WeightsNotFound", "default_weights", "existing_file"]

#: ``<repo>/weights``: the folder of the shipped weights.
WEIGHTS_DIR: Path = Path(__file__).resolve().parents[1] / "weights"

_HOW_TO_GET = {
    ".pt": "train a model (python -m training.train) or copy a generator checkpoint there",
    ".onnx": "export it: python -m engine.export --checkpoint weights/drnn.pt --out weights/drnn.onnx",
    "_fp16.onnx": "export it: python -m engine.export --checkpoint weights/drnn.pt --out weights/drnn_fp16.onnx --fp16",
}


class WeightsError(RuntimeError):
    """A weights file (checkpoint, ONNX model, TensorRT engine) is corrupt or not one of ours."""


class WeightsNotFound(FileNotFoundError):
    """No weights file where one was expected; the message says how to make one."""


def default_weights(suffixes: tuple[str, ...]) -> Path:
    """The first of ``WEIGHTS_DIR/drnn<suffix>`` that exists, trying ``suffixes`` in order.

    Raises :class:`WeightsNotFound` naming every path tried and how to produce the first one.
    """
    candidates = [WEIGHTS_DIR / f"drnn{s}" for s in suffixes]
    for path in candidates:
        if path.is_file():
            return path
    tried = ", ".join(str(p) for p in candidates)
    hint = _HOW_TO_GET.get(suffixes[0], "")
    raise WeightsNotFound(f"no default weights found (tried {tried}); {hint}")


def existing_file(path: str | Path) -> Path:
    """``path`` as a :class:`Path`, or :class:`WeightsNotFound` if it is not a file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFound(f"weights file not found: {path}")
    return path
