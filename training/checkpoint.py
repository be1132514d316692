"""Checkpoints: atomic writes, validated reads, and the generator-only export that ships.

Format ``usdespeckle-ckpt-1`` (agreed with the engine): a ``torch.save``'d dict with at least

* ``"format"``: ``"usdespeckle-ckpt-1"``
* ``"generator"``: the DRNN ``state_dict`` (batch-norm running statistics included)
* ``"generator_config"``: ``DRNN.config`` (the constructor's keyword arguments)
* ``"code_version"``: ``git describe`` of the code that wrote it

Training checkpoints add ``"discriminator"``, ``"discriminator_config"``, ``"opt_g"``,
``"opt_d"``, ``"phase"`` (index), ``"phase_name"``, ``"step"`` (next unit to run in that
phase), ``"pool"``, ``"anchor"`` (the ``state_dict`` of the phase's starting generator that an
``anchor`` loss term compares with, or ``None``), ``"rng"``, ``"config"`` (the resolved training
config as a plain dict) and ``"input_levels"``: the grey-level mode of :mod:`engine.levels` the
generator's training inputs were mapped to (:func:`training.data.common_levels`; a file without
it, as every file written before the record was added, reads as ``"off"``: inputs as the probe
gave them), which the engine warns about when it runs the model at other grey levels.
Every value is a tensor, number, string, list or dict, so files load with
``torch.load(weights_only=True)``: no code runs when a checkpoint is read.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CKPT_FORMAT",
    "CheckpointError",
    "atomic_save",
    "load_checkpoint",
    "export_generator",
    "load_generator",
    "build_generator",
    "generator_record",
    "GENERATOR_KEYS",
    "code_version",
    "input_levels",
]

CKPT_FORMAT = "usdespeckle-ckpt-1"
_REPO = Path(__file__).resolve().parent.parent


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint of this project; the message names the file."""


def _first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (torch's are often paragraphs)."""
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def code_version() -> str:
    """``git describe --always --dirty`` of this checkout, or ``"unknown"`` outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=_REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def atomic_save(obj: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then ``os.replace``.

    A reader sees either the old file or the complete new one, never a partial write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def load_checkpoint(path: str | Path, require: tuple[str, ...] = ("generator", "generator_config")) -> dict[str, Any]:
    """Read and validate a checkpoint on the CPU.

    Raises:
        CheckpointError: missing file, unreadable or corrupt content, a foreign ``format``,
            or a missing key from ``require``; the message names ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path}: empty file, not a {CKPT_FORMAT} file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message advises weights_only=False, which runs any code the file holds: not repeated.
        raise CheckpointError(f"checkpoint {path}: unreadable or corrupt, not a {CKPT_FORMAT} file "
                              "(not a torch file of tensors and plain data)") from exc
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, IndexError, KeyError) as exc:
        detail = _first_line(exc)
        what = type(exc).__name__ if detail == type(exc).__name__ else f"{type(exc).__name__}: {detail}"
        raise CheckpointError(f"checkpoint {path}: unreadable or corrupt, not a {CKPT_FORMAT} file ({what})") from exc
    if not isinstance(obj, dict) or obj.get("format") != CKPT_FORMAT:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"checkpoint {path}: not a {CKPT_FORMAT} file (format: {found!r})")
    missing = [k for k in require if k not in obj]
    if missing:
        raise CheckpointError(f"checkpoint {path}: missing {', '.join(missing)}")
    return obj


#: keys of a generator-only file (what ``weights/drnn.pt`` is), where the source has them.
GENERATOR_KEYS = ("format", "generator", "generator_config", "code_version", "config", "phase_name", "step",
                  "calibration", "input_levels")


def input_levels(ckpt: dict[str, Any], path: str | Path = "checkpoint") -> str:
    """The grey-level mode the generator of ``ckpt`` was trained on (its ``"input_levels"``; ``"off"``,
    inputs as the probe gave them, where the file has none); :class:`CheckpointError` naming ``path``
    if it is not a non-empty string."""
    levels = ckpt.get("input_levels", "off")
    if not isinstance(levels, str) or not levels:
        raise CheckpointError(f"checkpoint {path}: 'input_levels' must be a grey-level mode such as 'preset', "
                              f"found {levels!r}")
    return levels


def generator_record(ckpt: dict[str, Any], state: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """The :data:`GENERATOR_KEYS` of ``ckpt`` (D, optimizers, buffer and RNG states dropped), with
    the generator weights copied from ``state`` (default: ``ckpt["generator"]``).

    A finished run's checkpoint stands past its last phase (``phase`` = number of phases, ``step``
    0: the next unit, which ``--resume`` reads); its generator is that phase's last step, and the
    record's ``step`` says so."""
    slim = {k: ckpt[k] for k in GENERATOR_KEYS if k in ckpt}
    if "phase" in ckpt and "config" in ckpt:
        from training.config import config_from_dict

        phases = config_from_dict(ckpt["config"]).phases
        if ckpt["phase"] == len(phases):
            slim["step"] = phases[-1].steps()
    slim["generator"] = {k: v.detach().clone().contiguous() for k, v in (state or ckpt["generator"]).items()}
    return slim


def export_generator(checkpoint: str | Path, out: str | Path) -> Path:
    """Write the generator-only file (what ``weights/drnn.pt`` is) from a training checkpoint.

    Keeps ``format``, ``generator``, ``generator_config``, ``code_version``, ``config``, the
    phase position it was taken at, any ``calibration`` record and ``input_levels``
    (:func:`generator_record`).
    """
    return atomic_save(generator_record(load_checkpoint(checkpoint)), out)


def load_generator(path: str | Path) -> torch.nn.Module:
    """The :class:`~training.models.DRNN` stored in ``path`` (any ``usdespeckle-ckpt-1`` file),
    on the CPU, in eval mode.

    Raises:
        CheckpointError: as :func:`load_checkpoint`, or an architecture or weights that do not fit
            (the message names ``path``).
    """
    return build_generator(load_checkpoint(path), path)


def build_generator(ckpt: dict[str, Any], path: str | Path) -> torch.nn.Module:
    """The DRNN of an already loaded checkpoint ``ckpt`` (read from ``path``, named in errors), eval mode."""
    from training.models import DRNN

    config = ckpt["generator_config"]
    if not isinstance(config, dict):
        raise CheckpointError(f"checkpoint {path}: 'generator_config' must be a dict, found {type(config).__name__}")
    try:
        g = DRNN(**config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: bad 'generator_config' {config}: {_first_line(exc)}") from exc
    try:
        g.load_state_dict(ckpt["generator"], strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"checkpoint {path}: 'generator' weights do not fit DRNN({config}): {_first_line(exc)}") from exc
    return g.eval()
