"""Typed training configuration: versioned YAML validated against frozen dataclasses.

A config is a list of phases run in order; each phase names its ``kind``, the one step
function that trains it:

* ``reconstruct``: G learns to reproduce its input, ``L = w.l1 * E|G(x) - x|`` (paper eq. 1).
* ``discriminate``: D alone, BCE with high-quality crops as 1 and ``G(x)`` as 0 (eq. 2).
* ``gan``: per iteration ``d_steps`` D steps (eq. 2; the D minibatch mixes real crops,
  fresh ``G(x)`` and a history buffer) then ``g_steps`` G steps on eq. (3),
  ``w.adv * -log D(G(x)) + w.l1 * L1(G(x), x) + w.ms_ssim * L_MS-SSIM(G(x), x)``.
* ``supervised`` (beyond the paper): G on simulated pairs ``(x, y)`` with
  ``w.l1 * L1(G(x), y) + w.ms_ssim * L_MS-SSIM(G(x), y) + w.hist * W1(hist) + w.spectrum * ...``.

Any phase that trains G may add ``w.temporal * E|(G(x_b) - G(x_a)) - (y_b - y_a)|`` on twins,
two consecutive frames of one phantom whose speckle partly renewed between them (``--twins``,
:mod:`training.sim.elevation`): G's output should change from frame to frame as the high
probe's image does, not redraw its texture.

Length: ``epochs * ceil(samples / batch)`` optimizer steps for epoch phases (``samples``
random crops drawn once, reshuffled every epoch; for ``discriminate`` half of them are
real and half fake, batch ``d_batch``), ``iterations`` for ``gan``.

Loading: :func:`load_config` reads ``training/configs/<name>.yaml`` or a path, applies
``key=value`` overrides (``model.width=8``, ``phases.gan.lr_g=1e-7``, ``phases.0.batch=4``),
and raises :class:`ConfigError` naming the offending key.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ConfigError",
    "ModelConfig",
    "DiscriminatorConfig",
    "MsSsimConfig",
    "LossWeights",
    "PhaseConfig",
    "TrainConfig",
    "PHASE_KINDS",
    "SPECTRUM_WINDOWS",
    "CONFIG_DIR",
    "named_configs",
    "CONFIG_VERSION",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "apply_overrides",
    "config_with_overrides",
    "check_model",
    "check_discriminator",
    "parse_layer",
]

CONFIG_VERSION = 1
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
PHASE_KINDS = ("reconstruct", "discriminate", "gan", "supervised")
#: Tapers the spectrum loss can apply to a crop before its FFT (see :func:`training.losses.spectrum_loss`).
SPECTRUM_WINDOWS = ("none", "hann")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key (e.g. ``phases[2].lr_g``)."""


@dataclass(frozen=True)
class ModelConfig:
    """DRNN hyper-parameters (see :class:`training.models.DRNN`); defaults are the paper's."""

    width: int = 64
    blocks: int = 6
    convs_per_block: int = 3
    stem_kernel: int = 7
    head_kernel: int = 3


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Discriminator layout (see :class:`training.models.Discriminator`)."""

    layers: tuple[str, ...] = ("64", "64s", "128", "128s", "256", "256s", "512", "512s")
    negative_slope: float = 0.2


@dataclass(frozen=True)
class MsSsimConfig:
    """MS-SSIM of Zhao et al.: Gaussian sigmas (pixels) and the stabilising constants."""

    sigmas: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
    c1: float = 0.01
    c2: float = 0.01


@dataclass(frozen=True)
class LossWeights:
    """Weights of the G loss terms; a zero weight skips the term.

    ``anchor``: ``E|G(x) - G0(x)|``, ``G0`` a frozen copy of G as it entered the phase (the
    ``--init`` weights in a fine-tune), its batch norm in G's mode (each minibatch's statistics,
    or the running ones with ``freeze_bn``) so the term starts at 0: holds a fine-tune near the
    model it started from wherever the new data do not pull it away ("learning without
    forgetting", Li and Hoiem, 2017).

    ``temporal``: ``E|(G(x_b) - G(x_a)) - (y_b - y_a)|`` on a minibatch of twins (the same crop of two
    consecutive frames ``a``, ``b`` seen by both probes), as many crops as the phase's ``batch``.
    """

    adv: float = 0.0
    l1: float = 0.0
    ms_ssim: float = 0.0
    hist: float = 0.0
    spectrum: float = 0.0
    anchor: float = 0.0
    temporal: float = 0.0


@dataclass(frozen=True)
class PhaseConfig:
    """One training phase.  ``crop``/``batch``/``lr_g`` are G's, ``d_crop``/``d_batch``/``lr_d`` D's.

    ``crops``: ``random`` (``samples`` crops at random places, drawn once per phase) or
    ``window`` (every crop of a moving window with ``overlap``; ``gan`` draws from these).
    ``real_fraction`` / ``pool_fraction``: shares of the D minibatch taken from high-quality
    crops and from the history buffer; the rest is fresh ``G(x)``.
    ``spectrum_window``: taper of the spectrum loss, one of :data:`SPECTRUM_WINDOWS`.
    ``freeze_bn``: G's batch normalisation layers normalise with, and keep, their running
    statistics in this phase (evaluation mode) instead of each minibatch's; for fine-tuning a
    trained generator with small batches, whose statistics would otherwise drift with each few
    crops (the running estimate follows the last ~10 minibatches at momentum 0.1).
    """

    name: str
    kind: str
    crop: int = 192
    d_crop: int = 128
    batch: int = 16
    d_batch: int = 80
    lr_g: float = 1e-4
    lr_d: float = 1e-6
    betas: tuple[float, ...] = (0.9, 0.999)
    crops: str = "random"
    samples: int = 0
    overlap: float = 0.5
    epochs: int = 0
    iterations: int = 0
    g_steps: int = 1
    d_steps: int = 1
    real_fraction: float = 0.5
    pool_fraction: float = 0.0
    pool_size: int = 0
    spectrum_window: str = "none"
    freeze_bn: bool = False
    weights: LossWeights = field(default_factory=LossWeights)

    def uses_d(self) -> bool:
        """Whether this phase needs the discriminator."""
        return self.kind in ("discriminate", "gan")

    def steps(self) -> int:
        """Number of units (optimizer steps; GAN iterations) this phase runs."""
        if self.kind == "gan":
            return self.iterations
        batch = self.d_batch if self.kind == "discriminate" else self.batch
        return self.epochs * math.ceil(self.samples / batch)


@dataclass(frozen=True)
class TrainConfig:
    """The whole run: models, loss constants, phases, and bookkeeping.

    ``amp``: autocast to bfloat16 on CUDA (ignored on CPU).  ``threads``: torch intra-op
    threads on CPU (0 = torch's default).  ``checkpoint_every_s``: seconds between
    ``last.pt`` checkpoints; ``snapshot_every_s``: seconds between kept copies (0 = none).
    """

    phases: tuple[PhaseConfig, ...]
    version: int = CONFIG_VERSION
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    ms_ssim: MsSsimConfig = field(default_factory=MsSsimConfig)
    amp: bool = True
    threads: int = 0
    log_every: int = 10
    sample_every: int = 200
    checkpoint_every_s: float = 300.0
    snapshot_every_s: float = 0.0


# --------------------------------------------------------------------------- parsing


#: ``1e-4``: PyYAML (YAML 1.1) reads exponent notation without a dot as a string.
_EXPONENT_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert lists to tuples."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return _build(tp, value, key)
    if origin is tuple:
        (item_tp, _) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        return tuple(_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{key}: unsupported annotation {tp}")  # the schema has no unions
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and _EXPONENT_FLOAT.match(value):
        return float(value)
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # "64" written as 64 in a layer list
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    return value


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            where = f"{prefix}.{k}" if prefix else str(k)
            raise ConfigError(f"{where}: unknown key (known: {', '.join(sorted(names))})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        if f.name in data:
            kwargs[f.name] = _convert(data[f.name], hints[f.name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}: required key is missing")
    return cls(**kwargs)


def _check_phase(p: PhaseConfig, key: str) -> None:
    def bad(name: str, why: str) -> ConfigError:
        return ConfigError(f"{key}.{name}: {why}")

    if p.kind not in PHASE_KINDS:
        raise bad("kind", f"{p.kind!r} is not one of {', '.join(PHASE_KINDS)}")
    if p.crops not in ("random", "window"):
        raise bad("crops", f"{p.crops!r} is not 'random' or 'window'")
    if p.spectrum_window not in SPECTRUM_WINDOWS:
        raise bad("spectrum_window", f"{p.spectrum_window!r} is not one of {', '.join(SPECTRUM_WINDOWS)}")
    for name in ("crop", "d_crop", "batch", "d_batch", "g_steps", "d_steps"):
        if getattr(p, name) < 1:
            raise bad(name, "must be >= 1")
    for name in ("lr_g", "lr_d"):
        if not getattr(p, name) > 0:
            raise bad(name, "must be > 0")
    if len(p.betas) != 2 or not all(0 <= b < 1 for b in p.betas):
        raise bad("betas", "must be two numbers in [0, 1)")
    if not 0 <= p.overlap < 1:
        raise bad("overlap", "must be in [0, 1)")
    if p.kind == "gan":
        if p.iterations < 1:
            raise bad("iterations", "a gan phase needs iterations >= 1")
        if not 0 < p.real_fraction < 1 or not 0 <= p.pool_fraction < 1 - p.real_fraction:
            raise bad("pool_fraction", "need 0 < real_fraction < 1 and 0 <= pool_fraction < 1 - real_fraction")
        if p.pool_fraction > 0 and p.pool_size < 1:
            raise bad("pool_size", "a history buffer (pool_fraction > 0) needs pool_size >= 1")
        if p.d_crop > p.crop:
            raise bad("d_crop", f"D crop {p.d_crop} is larger than G crop {p.crop}")
        n_real, n_hist = round(p.d_batch * p.real_fraction), round(p.d_batch * p.pool_fraction)
        if n_real < 1 or p.d_batch - n_real - n_hist < 1:
            raise bad("d_batch", f"{p.d_batch} leaves no real or no fresh fake image in the D minibatch")
    else:
        if p.epochs < 1:
            raise bad("epochs", f"a {p.kind} phase needs epochs >= 1")
        if p.crops == "random" and p.samples < 1:
            raise bad("samples", "random crops need samples >= 1")
    if p.kind == "discriminate" and p.d_crop > p.crop:
        raise bad("d_crop", f"D crop {p.d_crop} is larger than G crop {p.crop}")
    if p.kind == "discriminate" and p.d_batch < 2:
        raise bad("d_batch", "a discriminate phase needs d_batch >= 2 (half real, half fake)")
    w = p.weights
    if min(dataclasses.astuple(w)) < 0:
        raise bad("weights", "loss weights must be >= 0")
    if p.kind in ("reconstruct", "supervised", "gan") and sum(dataclasses.astuple(w)) == 0:
        raise bad("weights", f"a {p.kind} phase needs at least one positive loss weight")
    if p.kind == "discriminate" and w.temporal:
        raise bad("weights", "temporal is a loss of G; a discriminate phase does not train G")


_LAYER_SPEC = re.compile(r"([0-9]+)(s?)")


def parse_layer(spec: str) -> tuple[int, int]:
    """``(channels, stride)`` of a discriminator layer spec: ``"64"`` is (64, 1), ``"64s"`` (64, 2).

    Raises:
        ConfigError: anything else, or 0 channels (the message quotes ``spec``).
    """
    match = _LAYER_SPEC.fullmatch(str(spec))
    if match is None or int(match[1]) < 1:
        raise ConfigError(f"{spec!r}: expected a width such as '64', or '64s' for stride 2")
    return int(match[1]), 2 if match[2] else 1


def check_model(model: ModelConfig, prefix: str = "model") -> None:
    """The generator's rules (:class:`training.models.DRNN` applies them too): positive sizes,
    positive odd kernels.  Raises :class:`ConfigError` naming ``prefix.key``."""
    for name in ("width", "blocks", "convs_per_block"):
        value = getattr(model, name)
        if value < 1:
            raise ConfigError(f"{prefix}.{name}: expected a positive integer, got {value}")
    for name in ("stem_kernel", "head_kernel"):
        value = getattr(model, name)
        if value < 1 or value % 2 == 0:
            raise ConfigError(f"{prefix}.{name}: expected a positive odd integer (a centred kernel), got {value}")


def check_discriminator(d: DiscriminatorConfig, prefix: str = "discriminator") -> None:
    """The discriminator's rules (:class:`training.models.Discriminator` applies them too): one
    or more layers, each as :func:`parse_layer` reads it, and a finite LeakyReLU slope."""
    if not d.layers:
        raise ConfigError(f"{prefix}.layers: at least one layer is needed")
    for i, spec in enumerate(d.layers):
        try:
            parse_layer(spec)
        except ConfigError as exc:
            raise ConfigError(f"{prefix}.layers[{i}]: {exc}") from None
    if not math.isfinite(d.negative_slope):
        raise ConfigError(f"{prefix}.negative_slope: expected a finite number, got {d.negative_slope}")


def config_from_dict(data: Mapping[str, Any]) -> TrainConfig:
    """Validate a plain mapping (parsed YAML) into a :class:`TrainConfig`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: expected a mapping at the top level, got {type(data).__name__}")
    if data.get("version") != CONFIG_VERSION:
        raise ConfigError(f"version: expected {CONFIG_VERSION}, got {data.get('version')!r}")
    cfg = _build(TrainConfig, data, "")
    if not cfg.phases:
        raise ConfigError("phases: at least one phase is needed")
    names = [p.name for p in cfg.phases]
    for i, p in enumerate(cfg.phases):
        _check_phase(p, f"phases[{i}]")
        if names.count(p.name) > 1:
            raise ConfigError(f"phases[{i}].name: {p.name!r} is used twice")
    check_model(cfg.model)
    check_discriminator(cfg.discriminator)
    if not cfg.ms_ssim.sigmas or min(cfg.ms_ssim.sigmas) <= 0:
        raise ConfigError("ms_ssim.sigmas: need one or more positive sigmas")
    if cfg.threads < 0:
        raise ConfigError(f"threads: expected 0 (torch's default) or more, got {cfg.threads}")
    for name in ("log_every", "sample_every"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name}: expected a positive integer, got {getattr(cfg, name)}")
    return cfg


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain, YAML-ready dict (tuples become lists); ``config_from_dict`` inverts it."""

    def plain(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node: Any = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            index = next((i for i, p in enumerate(node) if isinstance(p, dict) and p.get("name") == part), None)
            if index is None and part.isdigit() and int(part) < len(node):
                index = int(part)
            if index is None:
                raise ConfigError(f"--set {dotted}: no phase named or numbered {part!r} at {where}")
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ConfigError(f"--set {dotted}: {where} is not a mapping or list")


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error in one line: what is wrong and where (its message draws the line in a block)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        return f"{exc.context + ': ' if exc.context else ''}{exc.problem}{where}"
    return " ".join(str(exc).split())


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key=value`` strings (values parsed as YAML) to a raw config mapping, in place."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML: {_yaml_problem(exc)}") from None
        _set_path(data, key.strip(), value)
    return data


def named_configs() -> list[str]:
    """The configs ``--config`` takes by name: the stems of ``training/configs/*.yaml``, sorted."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def config_with_overrides(data: dict[str, Any], overrides: Iterable[str], source: str) -> TrainConfig:
    """The config of the mapping ``data`` (read from ``source``, e.g. ``config PATH``) with the
    ``--set`` ``overrides``.  A :class:`ConfigError` names ``--set`` when ``data`` alone is a
    valid config and the overrides make it wrong, else ``source``."""
    overrides = tuple(overrides)
    updated = apply_overrides(copy.deepcopy(data), overrides)  # its errors name the --set item
    try:
        return config_from_dict(updated)
    except ConfigError as exc:
        culprit = source
        if overrides:
            try:
                config_from_dict(data)
                culprit = f"--set {' '.join(overrides)}"
            except ConfigError:
                pass
        raise ConfigError(f"{culprit}: {exc}") from None


def load_config(name_or_path: str | Path, overrides: Iterable[str] = ()) -> TrainConfig:
    """Load a named config (one of :func:`named_configs`: ``training/configs/<name>.yaml``)
    or a YAML file, apply ``overrides`` and validate."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml") and not path.exists():
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(named_configs())
        raise ConfigError(f"config {str(name_or_path)!r}: no such file {path} (named configs: {known})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config {path}: not a UTF-8 text file (byte {exc.start}); a config is YAML text") from None
    except OSError as exc:
        raise ConfigError(f"config {path}: cannot read it ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path}: not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: expected a mapping at the top level")
    return config_with_overrides(data, overrides, f"config {path}")
