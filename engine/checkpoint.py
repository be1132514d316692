"""Read and write DRNN generator checkpoints (format ``usdespeckle-ckpt-1``).

A checkpoint is a ``torch.save``-d dict with at least::

    {"format": "usdespeckle-ckpt-1",
     "generator": DRNN.state_dict(),
     "generator_config": DRNN(...).config}   # kwargs of training.models.DRNN

Training checkpoints carry more keys (discriminator, optimisers, config); the shipped
``weights/drnn.pt`` carries only these three.  torch is imported inside the functions.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.files import atomic_write_bytes
from engine.weights import WeightsError, existing_file

if TYPE_CHECKING:
    from training.models import DRNN

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "load_generator", "read_checkpoint", "save_generator"]

CHECKPOINT_FORMAT = "usdespeckle-ckpt-1"
_REQUIRED = ("format", "generator", "generator_config")


class CheckpointError(WeightsError):
    """A checkpoint file that is corrupt, foreign or does not match the DRNN it describes."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load the checkpoint dict from ``path`` (tensors on the CPU) and check its format keys."""
    import torch

    path = existing_file(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, found {type(payload).__name__}")
    missing = [k for k in _REQUIRED if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: not a usdespeckle checkpoint, missing key(s) {', '.join(missing)}")
    if payload["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {payload['format']!r}, expected {CHECKPOINT_FORMAT!r}")
    return payload


def load_generator(path: str | Path) -> DRNN:
    """The DRNN stored in checkpoint ``path``, on the CPU, in eval mode.

    Raises :class:`CheckpointError` (naming ``path``) for a corrupt or foreign file, an unknown
    architecture argument or weights that do not fit the architecture.
    """
    from training.models import DRNN

    payload = read_checkpoint(path)
    config = payload["generator_config"]
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: 'generator_config' must be a dict, found {type(config).__name__}")
    try:
        model = DRNN(**config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad 'generator_config' {config}: {exc}") from exc
    try:
        model.load_state_dict(payload["generator"], strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: 'generator' weights do not fit DRNN({config}): {exc}") from exc
    return model.eval()


def save_generator(model: DRNN, path: str | Path) -> Path:
    """Write ``model`` as a generator-only checkpoint, atomically (temp file + ``os.replace``)."""
    import torch

    payload = {
        "format": CHECKPOINT_FORMAT,
        "generator": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "generator_config": dict(model.config),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write_bytes(path, buffer.getvalue())
