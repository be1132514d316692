"""Backend registry: one place that maps a backend name to the module that implements it.

Backends are imported lazily, so ``import engine`` costs nothing and a missing optional
dependency (torch, TensorRT, CUDA bindings) only matters to the backend that needs it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from engine.base import Despeckler

__all__ = ["BACKENDS", "create_despeckler", "BackendUnavailable"]


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (its library or device is missing)."""


#: name -> "module:Class"
BACKENDS: dict[str, str] = {
    "identity": "engine.backends.identity:IdentityDespeckler",
}


def _load(name: str) -> type[Despeckler]:
    try:
        target = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; choose one of: {', '.join(sorted(BACKENDS))}") from None
    module, _, cls = target.partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(f"backend {name!r} cannot be imported: {exc}") from exc
    return getattr(mod, cls)


def create_despeckler(backend: str = "identity", weights: str | Path | None = None, **options: Any) -> Despeckler:
    """Build the named backend.  ``weights`` is ignored by backends that have none."""
    cls = _load(backend)
    if weights is not None:
        options["weights"] = weights
    return cls(**options)
