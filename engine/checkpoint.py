"""Load the DRNN generator from a checkpoint (format ``usdespeckle-ckpt-1``).

The format and its validated reader belong to training (:mod:`training.checkpoint`): a
``torch.save``-d dict with at least ``"format"``, ``"generator"`` (the DRNN ``state_dict``) and
``"generator_config"`` (the DRNN's constructor arguments).  The engine's export and torch backend
take the ready DRNN from :func:`training.checkpoint.load_generator` (or a loaded file's from
:func:`~training.checkpoint.build_generator`, with its :func:`~training.checkpoint.input_levels`),
re-exported here; importing this module imports torch (through training).
"""

from __future__ import annotations

from training.checkpoint import (
    CheckpointError,
    build_generator,
    input_levels,
    load_checkpoint,
    load_generator,
)

__all__ = ["CheckpointError", "build_generator", "input_levels", "load_checkpoint", "load_generator"]
