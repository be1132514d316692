"""Load the DRNN generator from a checkpoint (format ``usdespeckle-ckpt-1``).

The format and its validated reader belong to training (:mod:`training.checkpoint`): a
``torch.save``-d dict with at least ``"format"``, ``"generator"`` (the DRNN ``state_dict``) and
``"generator_config"`` (the DRNN's constructor arguments).  This module turns such a file into a
ready DRNN for export and the torch backend; it imports torch (through training).
"""

from __future__ import annotations

from pathlib import Path

from training.checkpoint import CheckpointError, load_checkpoint
from training.models import DRNN

__all__ = ["CheckpointError", "load_generator"]


def load_generator(path: str | Path) -> DRNN:
    """The DRNN stored in checkpoint ``path``, on the CPU, in eval mode.

    Raises :class:`CheckpointError` (naming ``path``) for a missing, corrupt or foreign file, an
    unknown architecture argument, or weights that do not fit the architecture.
    """
    payload = load_checkpoint(path, require=("generator", "generator_config"))
    config = payload["generator_config"]
    if not isinstance(config, dict):
        raise CheckpointError(f"checkpoint {path}: 'generator_config' must be a dict, found {type(config).__name__}")
    try:
        model = DRNN(**config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: bad 'generator_config' {config}: {exc}") from exc
    try:
        model.load_state_dict(payload["generator"], strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"checkpoint {path}: 'generator' weights do not fit DRNN({config}): {exc}") from exc
    return model.eval()
