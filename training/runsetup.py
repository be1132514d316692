"""What a training run needs before its first step: where the data are and how to run
(:class:`RunOptions`), a run folder it may write in (:func:`check_run_folder`), the folders its
phases read, checked against every crop size (:func:`load_data`), and the recipe to run, fresh
or stored in a checkpoint (:func:`resolve_config`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from training.batches import ImageSet, Twins, folder_list, load_images, load_pairs, load_twins
from training.checkpoint import load_checkpoint
from training.config import ConfigError, TrainConfig, config_with_overrides, load_config
from training.data import common_levels
from training.outputs import check_output_folder

__all__ = ["RunOptions", "RunData", "check_run_folder", "load_data", "resolve_config"]

#: files that mark a folder as holding a run (a checkpoint to resume, or a finished run's generator).
_RUN_MARKERS = ("checkpoints/last.pt", "generator.pt")


@dataclass(frozen=True)
class RunOptions:
    """Where the data are and how to run (everything that is not the recipe).

    ``max_steps``: stop after this many units in this invocation (0: run to the end).
    ``init``: start G from the generator of this checkpoint (e.g. to fine-tune shipped weights);
    ignored on resume.  ``twins``: folder of consecutive-frame twins (``a/``, ``b/``) for the
    ``temporal`` loss term.
    """

    out: Path
    low: Path | None = None
    high: Path | None = None
    pairs: Path | tuple[Path, ...] | None = None
    resume: bool = False
    device: str = "cpu"
    max_steps: int = 0
    progress: bool = True
    init: Path | None = None
    twins: Path | None = None


@dataclass
class RunData:
    """The image sets a run's phases read (``None``: no phase needs it), and ``input_levels``, the
    grey-level mode the generator's inputs were mapped to (:func:`training.data.common_levels`;
    ``"off"``: as the probe gave them), which every checkpoint records."""

    low: ImageSet | None
    high: ImageSet | None
    pair_x: ImageSet | None
    pair_y: ImageSet | None
    twins: Twins | None = None
    input_levels: str = "off"

    def fingerprints(self) -> dict[str, str]:
        """:meth:`training.batches.ImageSet.fingerprint` of each set the run reads, by name (``low``,
        ``pair_x``, ``twins.x_a``...): every checkpoint records them, and ``--resume`` refuses other data."""
        sets = {"low": self.low, "high": self.high, "pair_x": self.pair_x, "pair_y": self.pair_y}
        if self.twins is not None:
            sets.update({f"twins.{k}": getattr(self.twins, k) for k in ("x_a", "y_a", "x_b", "y_b")})
        return {name: images.fingerprint() for name, images in sets.items() if images is not None}


def check_run_folder(opts: RunOptions) -> None:
    """Refuse, before any work, a run folder the run cannot write in, a fresh run into a folder
    that holds one (it would overwrite ``last.pt`` and mix two runs' files), or ``resume`` with
    no ``checkpoints/last.pt`` to continue.

    Raises:
        PathError: ``opts.out`` is a file, lies under one, or its folder refuses new files.
        ConfigError: a fresh run into an existing run, or ``resume`` without a checkpoint.
    """
    out = Path(opts.out)
    check_output_folder(out, "--out")
    last = out / "checkpoints" / "last.pt"
    if opts.resume:
        if not last.is_file():
            raise ConfigError(f"--resume: no checkpoint {last} to continue; leave out --resume to start a new run")
        return
    held = [name for name in _RUN_MARKERS if (out / name).exists()]
    if held:
        raise ConfigError(f"--out {out}: already holds a run ({', '.join(held)}); continue it with --resume, "
                          "or give another folder")


def load_data(cfg: TrainConfig, opts: RunOptions) -> RunData:
    """Read the folders the phases need and check every crop fits; fail before training starts."""
    kinds = {p.kind for p in cfg.phases}
    users = {"--low": {"reconstruct", "discriminate", "gan"}, "--high": {"discriminate", "gan"}}
    need_low, need_high = (bool(kinds & users[flag]) for flag in ("--low", "--high"))
    for flag, given in (("--low", opts.low), ("--high", opts.high)):
        if kinds & users[flag] and given is None:
            raise ConfigError(f"{flag}: required by phase kinds {sorted(kinds & users[flag])}")
    if "supervised" in kinds and opts.pairs is None:
        raise ConfigError("--pairs: required by the supervised phase (a folder of x_NNN/y_NNN pairs)")
    temporal = [p.name for p in cfg.phases if p.weights.temporal > 0]
    if temporal and opts.twins is None:
        raise ConfigError(f"--twins: required by the temporal loss term of phase(s) {', '.join(temporal)} "
                          "(a folder of twins: python -m training.simulate --twins N)")
    pairs = folder_list(opts.pairs) if "supervised" in kinds else []
    g_inputs = [*pairs, *([opts.low] if need_low else []), *([opts.twins] if temporal else [])]
    data = RunData(
        load_images(opts.low) if need_low else None,
        load_images(opts.high) if need_high else None,
        *(load_pairs(pairs) if pairs else (None, None)),
        load_twins(opts.twins) if temporal else None,
        common_levels(g_inputs),
    )
    for p in cfg.phases:
        if p.weights.temporal > 0:
            data.twins.x_a.require(p.crop, f"{p.name} twin")
        if p.kind == "supervised":
            data.pair_x.require(p.crop, f"{p.name} G-input")
        else:
            data.low.require(p.crop, f"{p.name} G-input")
        if p.uses_d():
            data.high.require(p.d_crop, f"{p.name} D-input")
    return data


def resolve_config(config: str | Path, opts: RunOptions, overrides: tuple[str, ...] = ()) -> TrainConfig:
    """The config to run: the named config or YAML file ``config`` with ``overrides``, or on
    ``--resume`` the config stored in ``OUT/checkpoints/last.pt`` (plus ``overrides``; ``config``
    is then ignored).  Checks the run folder first (:func:`check_run_folder`)."""
    check_run_folder(opts)
    last = Path(opts.out) / "checkpoints" / "last.pt"
    if not opts.resume:
        return load_config(config, overrides)
    stored = load_checkpoint(last, require=("config",))["config"]
    return config_with_overrides(stored, overrides, f"config stored in {last}")
