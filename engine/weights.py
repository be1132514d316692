"""Where the shipped weights live and the errors raised when a weights file is unusable.

The repository ships ``weights/drnn.pt`` (a generator checkpoint, see :mod:`engine.checkpoint`)
and its exports ``weights/drnn.onnx`` / ``weights/drnn_fp16.onnx`` (see :mod:`engine.onnx_export`) and
``weights/drnn_int8.onnx`` (opt-in, for CPUs, last 3 residual blocks float32; see :mod:`engine.int8`),
and a small model for CPUs distilled from it, ``weights/drnn_fast.pt`` / ``weights/drnn_fast.onnx`` /
``weights/drnn_fast_int8.onnx`` (opt-in: pass it as the weights, or its name ``fast`` / ``fast-int8``,
which each backend turns into the file it reads; ``weights/MODEL_CARD.md``).
Backends that get no ``weights`` argument use these, resolved relative to the repository that holds
this package, so ``create_despeckler()`` works from any working directory.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["WEIGHTS_DIR", "SHIPPED", "AUTO", "WeightsError", "WeightsNotFound", "default_weights", "existing_file",
           "is_auto_name", "is_shipped_name", "resolve_weights", "shipped_weights"]

#: ``<repo>/weights``: the folder of the shipped weights.
WEIGHTS_DIR: Path = Path(__file__).resolve().parents[1] / "weights"

#: the shipped models by name (``--weights fast``): the stem of their files in :data:`WEIGHTS_DIR`;
#: each backend adds the suffix it reads (``.pt`` for torch, ``.onnx`` for ONNX Runtime).
SHIPPED: dict[str, str] = {"default": "drnn", "fast": "drnn_fast", "int8": "drnn_int8", "fast-int8": "drnn_fast_int8"}

#: ``--weights auto``, the live chain's default: the shipped model for the device the backend runs
#: on, ``fast`` on a CPU and ``default`` on a GPU (:func:`engine.registry.create_despeckler`).
AUTO = "auto"

_HOW_TO_GET = {
    ".pt": "train a model (python -m training.train) or copy a generator checkpoint there",
    ".onnx": "export it: python -m engine.export --checkpoint weights/drnn.pt --out weights/drnn.onnx",
    "_fp16.onnx": "export it: python -m engine.export --checkpoint weights/drnn.pt --out weights/drnn_fp16.onnx --fp16",
}


class WeightsError(RuntimeError):
    """A weights file (checkpoint, ONNX model, TensorRT engine) is corrupt or not one of ours."""


class WeightsNotFound(FileNotFoundError):
    """No weights file where one was expected; the message says how to make one."""


def shipped_weights(name: str, suffixes: tuple[str, ...]) -> Path:
    """The first of ``WEIGHTS_DIR/<stem><suffix>`` that exists for the shipped model ``name``
    (:data:`SHIPPED`), trying ``suffixes`` in order.

    Raises :class:`WeightsNotFound` naming every path tried and, for the default model, how to
    produce the first one; for the others, which of their files are there (for another backend).
    """
    stem = SHIPPED[name]
    candidates = [WEIGHTS_DIR / f"{stem}{s}" for s in suffixes]
    for path in candidates:
        if path.is_file():
            return path
    tried = ", ".join(str(p) for p in candidates)
    if name == "default":
        raise WeightsNotFound(f"no default weights found (tried {tried}); {_HOW_TO_GET.get(suffixes[0], '')}")
    present = [p.name for p in (WEIGHTS_DIR / f"{stem}{s}" for s in (".pt", ".onnx")) if p.is_file()]
    where = f"it ships as {', '.join(present)}, for another backend" if present else "it is not shipped here"
    raise WeightsNotFound(f"no {name} weights for this backend (tried {tried}); {where}")


def default_weights(suffixes: tuple[str, ...]) -> Path:
    """The first of ``WEIGHTS_DIR/drnn<suffix>`` that exists (:func:`shipped_weights` of ``default``)."""
    return shipped_weights("default", suffixes)


def is_shipped_name(weights: str | Path) -> bool:
    """Whether ``weights`` names a shipped model (:data:`SHIPPED`) rather than a file: it is one of
    the names and nothing of that name exists in the working directory (a file there wins)."""
    return str(weights) in SHIPPED and not Path(weights).exists()


def is_auto_name(weights: str | Path) -> bool:
    """Whether ``weights`` is :data:`AUTO` rather than a file: the word, with no file of that name in
    the working directory (a file there wins, as for :func:`is_shipped_name`)."""
    return str(weights) == AUTO and not Path(weights).exists()


def resolve_weights(weights: str | Path | None, suffixes: tuple[str, ...]) -> Path:
    """The file a backend that reads ``suffixes`` loads for ``weights``: ``None`` gives the default
    model; a shipped model's name (:data:`SHIPPED`: ``fast``...) gives that model's file, unless a
    file of that name exists in the working directory; anything else must be an existing file
    (:class:`WeightsNotFound` otherwise)."""
    if weights is None:
        return default_weights(suffixes)
    if is_shipped_name(weights):
        return shipped_weights(str(weights), suffixes)
    return existing_file(weights)


def existing_file(path: str | Path) -> Path:
    """``path`` as a :class:`Path`, or :class:`WeightsNotFound` if it is not a file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFound(f"weights file not found: {path}")
    return path
