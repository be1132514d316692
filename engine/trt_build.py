"""Build (or fetch from the cache) a TensorRT FP16 engine for the exported DRNN.

Written to the TensorRT 10.x / 11.x Python API; the version is read once (``packaging.version``):

* TensorRT >= 11 only builds strongly typed networks
  (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``): precision comes from the ONNX model's types,
  so build from the FP16 export (``python -m engine.export --fp16``).
* TensorRT 10 builds a weakly typed network from either export and enables
  ``BuilderFlag.FP16`` when ``builder.platform_has_fast_fp16``.

One optimisation profile (min / opt / max frame size), a persisted timing cache (later builds of
similar layers skip kernel timing), every ONNX parser error logged, and a progress bar with a time
estimate per build phase (``IProgressMonitor``).  Engines are cached by :mod:`engine.trt_cache`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import tensorrt as trt
from packaging.version import Version
from tqdm import tqdm

from engine.cuda_slots import device_properties
from engine.files import atomic_write_bytes, sha256_file
from engine.onnx_export import INPUT_NAME
from engine.trt_cache import BuildConfig, EngineCache, EngineKey, Profile
from engine.weights import WeightsError, existing_file

__all__ = ["TRT_VERSION", "STRONGLY_TYPED_ONLY", "BuildError", "engine_key", "build_engine", "get_engine"]

log = logging.getLogger(__name__)

TRT_VERSION = Version(trt.__version__)
#: TensorRT 11 removed weakly typed networks (and BuilderFlag.FP16 with them).
STRONGLY_TYPED_ONLY = TRT_VERSION >= Version("11")

_LOGGER = trt.Logger(trt.Logger.WARNING)


class BuildError(RuntimeError):
    """TensorRT could not parse the ONNX model or build an engine from it."""


def _precision(builder: trt.Builder) -> str:
    if STRONGLY_TYPED_ONLY:
        return "strongly-typed"
    return "fp16" if builder.platform_has_fast_fp16 else "fp32"


def engine_key(onnx: Path, profile: Profile, builder: trt.Builder | None = None) -> EngineKey:
    """The cache key of building ``onnx`` with ``profile`` on this GPU and TensorRT."""
    gpu = device_properties()
    return EngineKey(
        onnx_sha256=sha256_file(onnx),
        tensorrt_version=str(TRT_VERSION),
        gpu_name=gpu["gpu_name"],
        compute_capability=gpu["compute_capability"],
        sm_count=gpu["sm_count"],
        precision=_precision(builder or trt.Builder(_LOGGER)),
        profile=profile,
    )


class _Progress(trt.IProgressMonitor):
    """tqdm bars for TensorRT's build phases; the top-level bar shows elapsed time and an estimate."""

    def __init__(self) -> None:
        trt.IProgressMonitor.__init__(self)
        self._bars: dict[str, tqdm] = {}
        self._depth: dict[str, int] = {}

    def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
        depth = 0 if parent_phase is None else self._depth.get(parent_phase, 0) + 1
        self._depth[phase_name] = depth
        self._bars[phase_name] = tqdm(total=num_steps, desc=phase_name, position=depth, leave=depth == 0, unit="step")

    def step_complete(self, phase_name: str, step: int) -> bool:
        bar = self._bars.get(phase_name)
        if bar is not None:
            bar.update(step + 1 - bar.n)
        return True  # False would cancel the build

    def phase_finish(self, phase_name: str) -> None:
        bar = self._bars.pop(phase_name, None)
        self._depth.pop(phase_name, None)
        if bar is not None:
            bar.close()


def build_engine(onnx: Path, profile: Profile, timing_cache: Path, workspace_mib: int = 2048) -> bytes:
    """Parse ``onnx``, build a serialized engine for ``profile`` and update ``timing_cache``."""
    builder = trt.Builder(_LOGGER)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if STRONGLY_TYPED_ONLY else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, _LOGGER)
    if not parser.parse_from_file(str(onnx)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        for error in errors:
            log.error("ONNX parser: %s", error)
        raise BuildError(f"{onnx}: TensorRT's ONNX parser failed with {len(errors)} error(s): {'; '.join(errors)}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if not STRONGLY_TYPED_ONLY and builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        log.warning("timing cache %s does not fit this GPU/TensorRT; starting an empty one", timing_cache)
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    optimisation = builder.create_optimization_profile()
    optimisation.set_shape(INPUT_NAME, profile.min_hw, profile.opt_hw, profile.max_hw)
    config.add_optimization_profile(optimisation)
    config.progress_monitor = _Progress()
    log.info("building TensorRT %s engine from %s, profile %s (%s)", TRT_VERSION, onnx, profile, _precision(builder))
    start = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError(f"{onnx}: TensorRT failed to build an engine (see the TensorRT log above)")
    atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
    log.info("built the engine in %.1f s", time.monotonic() - start)
    return bytes(serialized)


def get_engine(config: BuildConfig) -> tuple[bytes, Path]:
    """The engine for ``config``: from the cache when its key matches, else built and cached.

    Returns ``(serialized engine, cache file)``.
    """
    onnx = existing_file(config.onnx)
    if onnx.suffix != ".onnx":
        raise WeightsError(f"{onnx}: expected an .onnx model to build a TensorRT engine from")
    cache = EngineCache(config.cache_dir)
    key = engine_key(onnx, config.profile)
    engine = None if config.force else cache.load(key, onnx.stem)
    if engine is None:
        engine = build_engine(onnx, config.profile, cache.timing_cache_path(key), config.workspace_mib)
        path = cache.store(key, engine, onnx.stem)
        log.info("cached the engine at %s", path)
    else:
        path = cache.engine_path(key, onnx.stem)
        log.info("using the cached engine %s", path)
    return engine, path
