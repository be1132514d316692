"""Backend registry: one place that maps a backend name to the module that implements it.

Backends are imported lazily, so ``import engine`` costs nothing and a missing optional
dependency (torch, TensorRT, CUDA bindings) only matters to the backend that needs it.

``backend="auto"`` picks, in order: TensorRT when it imports and a CUDA GPU is present, else
torch on CUDA, else ONNX Runtime on the CPU, and logs which one it chose and why.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
from pathlib import Path
from typing import Any

from engine.base import BackendUnavailable, Despeckler
from engine.flip import FlipAveragedDespeckler
from engine.levels import DEFAULT_LEVELS, level_ranges, with_levels
from engine.pixels import check_spacing, with_spacing
from engine.strength import BlendedDespeckler, check_strength
from engine.weights import is_auto_name

__all__ = ["BACKENDS", "create_backend", "create_despeckler", "choose_backend", "runs_on_cpu", "warn_other_levels",
           "BackendUnavailable"]

log = logging.getLogger(__name__)

#: name -> "module:Class"
BACKENDS: dict[str, str] = {
    "identity": "engine.backends.identity:IdentityDespeckler",
    "onnxruntime": "engine.backends.onnxruntime:OnnxRuntimeDespeckler",
    "torch": "engine.backends.torch_backend:TorchDespeckler",
    "tensorrt": "engine.backends.tensorrt:TensorRTDespeckler",
}


def _load(name: str) -> type[Despeckler]:
    try:
        target = BACKENDS[name]
    except KeyError:
        choices = ", ".join(["auto", *sorted(BACKENDS)])
        raise ValueError(f"unknown backend {name!r}; choose one of: {choices}") from None
    module, _, cls = target.partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(f"backend {name!r} cannot be imported: {exc}") from exc
    return getattr(mod, cls)


def _cuda_gpu_count() -> tuple[int, str]:
    """GPUs visible to the CUDA runtime, and how that was found out (for the log line)."""
    try:
        from engine.cuda_slots import check, cudart
    except ImportError as exc:
        return 0, f"cuda-python is not installed ({exc})"
    try:
        return int(check(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")), "cuda-python"
    except RuntimeError as exc:
        return 0, str(exc)


def choose_backend() -> tuple[str, dict[str, Any], str]:
    """``(backend, options, reason)`` for ``backend="auto"``; see the module docstring for the order."""
    reasons = []
    if importlib.util.find_spec("tensorrt") is None:
        reasons.append("TensorRT is not installed")
    else:
        gpus, how = _cuda_gpu_count()
        if gpus:
            return "tensorrt", {}, f"TensorRT is installed and {how} sees {gpus} CUDA GPU(s)"
        reasons.append(f"TensorRT is installed but no CUDA GPU is visible ({how})")
    if importlib.util.find_spec("torch") is None:
        reasons.append("torch is not installed")
    else:
        import torch

        if torch.cuda.is_available():
            return "torch", {"device": "cuda"}, "; ".join([*reasons, f"torch sees {torch.cuda.get_device_name()}"])
        reasons.append("torch sees no CUDA GPU")
    return "onnxruntime", {"device": "cpu"}, "; ".join([*reasons, "ONNX Runtime on the CPU"])


def runs_on_cpu(backend: str, options: dict[str, Any]) -> bool:
    """Whether ``backend`` built with ``options`` runs its model on the CPU: ONNX Runtime and torch
    by their ``device`` option, else its default in the backend's constructor (torch's ``"auto"``
    meaning CUDA when torch sees a GPU), TensorRT never."""
    if backend == "tensorrt":
        return False
    device = str(options.get("device", inspect.signature(_load(backend)).parameters["device"].default))
    if device == "auto":
        import torch  # the torch backend's own dependency

        return not torch.cuda.is_available()
    return device == "cpu"


def _live_weights(backend: str, options: dict[str, Any]) -> tuple[str | None, str | None]:
    """The shipped model that ``weights="auto"`` names for ``backend`` (:data:`engine.weights.AUTO`)
    and the log line that says why: ``"fast"`` where the model runs on the CPU, ``None`` (the
    default model) on a GPU, and ``(None, None)`` for the identity backend, which has no model.
    The caller logs the line once the backend is built, so that a backend that cannot start (a GPU
    asked for on a machine without one) is not first announced as running on it."""
    if backend == "identity":
        return None, None
    if runs_on_cpu(backend, options):
        return "fast", (f"weights auto -> fast: {backend} runs on the CPU, where the default model takes about "
                        "0.6 s per 256x256 frame on 2 cores (--weights default to run it anyway)")
    return None, f"weights auto -> default: {backend} runs on a GPU"


def warn_other_levels(despeckler: Despeckler, levels: str) -> None:
    """One log line where the model was trained on frames mapped to a grey-level mode (its
    ``input_levels``, from its checkpoint or export) and runs at another: it then meets frames
    unlike its training frames (the shipped fast model draws a coarser texture, ``docs/engine.md``,
    "Grey levels").  Nothing for a model trained on frames as the probe gave them (``off``)."""
    trained = despeckler.input_levels
    if despeckler.has_model and trained not in ("off", levels):
        name = Path(despeckler.weights).name if despeckler.weights is not None else despeckler.name
        log.warning("%s was trained on frames at the %s grey levels; with levels %r it meets frames unlike them "
                    "(--levels %s; docs/engine.md, 'Grey levels')", name, trained, levels, trained)


def _options_taken(cls: type, backend: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` less those the constructor of ``cls`` does not take, each named in a log line:
    what suits one machine's backend (``threads`` for the CPU) does not break ``auto`` on another."""
    taken = inspect.signature(cls).parameters
    ignored = sorted(k for k in options if k not in taken)
    if ignored:
        log.info("backend auto -> %s takes no %s; ignored", backend, ", ".join(ignored))
    return {k: v for k, v in options.items() if k in taken}


def create_backend(backend: str = "auto", weights: str | Path | None = None, **options: Any) -> Despeckler:
    """The named backend alone (``"auto"``: see :func:`choose_backend`), with no grey-level map,
    pixel resampling or blend around it: what :func:`create_despeckler` wraps, and the teacher of
    :mod:`engine.pairs`, which maps the frames itself.  ``weights`` and ``options``: as for
    :func:`create_despeckler`."""
    auto = backend == "auto"
    if auto:
        backend, chosen, reason = choose_backend()
        options = {**chosen, **options}
        log.info("backend auto -> %s: %s", backend, reason)
        if backend == "onnxruntime" and weights is None:
            log.info("the default model is heavy for a CPU (under 2 frames/s at 256x256 on 2 cores); "
                     "weights 'fast' (--weights fast) is the shipped model for CPUs, see README 'Which weights'")
    cls = _load(backend)
    if auto:
        options = _options_taken(cls, backend, options)
    chosen_why = None
    if weights is not None and is_auto_name(weights):
        weights, chosen_why = _live_weights(backend, options)
    if weights is not None:
        if not cls.has_model:
            raise ValueError(f"backend {backend!r} runs no model and takes no weights, got {weights!s}")
        options["weights"] = weights
    despeckler = cls(**options)
    if chosen_why is not None:
        log.info(chosen_why)
    return despeckler


def create_despeckler(backend: str = "auto", weights: str | Path | None = None, strength: float = 1.0,
                      spacing_mm: tuple[float, float] | None = None, levels: str = DEFAULT_LEVELS,
                      flip_average: bool = False, **options: Any) -> Despeckler:
    """Build the named backend (``"auto"``: see :func:`choose_backend`).

    ``weights`` defaults to the shipped file the backend needs (``weights/drnn.onnx`` or
    ``weights/drnn.pt``); ``"auto"`` (:data:`engine.weights.AUTO`, the live chain's default) is the
    fast model where the backend runs on the CPU (:func:`runs_on_cpu`) and the default model on a
    GPU, unless a file named ``auto`` exists; the identity backend takes none.  ``strength`` below 1 blends the
    output with the input (:mod:`engine.strength`; ``ValueError`` outside [0, 1]).
    ``spacing_mm`` (row, column mm), the pixel spacing of the frames to come, runs the model at
    square pixels of a size it was trained on (:mod:`engine.pixels`; ``ValueError`` unless both
    are > 0).  ``levels`` (``preset``, ``range`` or ``off``) maps each frame's brightness and contrast
    to the preset probes' (or, ``range``, only frames outside the model's training range into it)
    and the output back (:mod:`engine.levels`; ``ValueError`` for another word); a model trained
    at other grey levels than ``levels`` is named in a warning (:func:`warn_other_levels`).
    ``flip_average`` averages each output with the model's output on the mirrored frame
    (:mod:`engine.flip`; two model runs per frame; nothing for the identity backend).  ``options``
    go to the backend's constructor (e.g. ``device``, ``threads``, ``in_flight``, ``spec``).
    """
    strength = check_strength(strength)
    if spacing_mm is not None:
        spacing_mm = check_spacing(spacing_mm)
    level_ranges(levels)  # a bad word fails before a model is loaded
    despeckler = create_backend(backend, weights, **options)
    warn_other_levels(despeckler, levels)
    if flip_average and despeckler.has_model:
        despeckler = FlipAveragedDespeckler(despeckler)
    despeckler = with_spacing(with_levels(despeckler, levels), spacing_mm)
    return despeckler if strength == 1.0 else BlendedDespeckler(despeckler, strength)
