"""The TensorRT engine cache: keys, lookup and atomic writes (pure Python, no TensorRT needed).

A serialized TensorRT engine only runs on the TensorRT version and GPU model it was built for, and
only with the ONNX model, precision and shape profile it was built from.  :class:`EngineKey` holds
all of these; an engine file stores its key in a header, and :meth:`EngineCache.load` returns the
engine only when the stored key equals the wanted one, so a stale or foreign file is rebuilt,
never loaded.

Engine file layout (``<cache>/<onnx stem>-<digest[:16]>.engine``)::

    b"USDESPECKLE-TRT-1\\n" | uint32 big-endian n | n bytes of JSON header {"key": {...}} | engine

Files are written with temp file + ``os.replace`` (:func:`engine.files.atomic_write_bytes`), so
two processes building the same engine at once leave one whole file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.files import atomic_write_bytes
from training.argparsing import parse_frame_size

__all__ = [
    "Profile",
    "DEFAULT_PROFILE",
    "BuildConfig",
    "EngineKey",
    "EngineCache",
    "default_cache_dir",
    "parse_hw",
    "read_engine_file",
]

log = logging.getLogger(__name__)

_MAGIC = b"USDESPECKLE-TRT-1\n"
_LEN = struct.Struct(">I")


def parse_hw(text: str) -> tuple[int, int]:
    """``"512x640"`` -> ``(512, 640)`` (height x width); ``ValueError`` naming ``text`` otherwise."""
    try:
        return parse_frame_size(text, square=False)
    except ValueError:
        raise ValueError(f"bad frame size {text!r}: expected HEIGHTxWIDTH, e.g. 512x512") from None


@dataclass(frozen=True)
class Profile:
    """One TensorRT optimisation profile for the ``(height, width)`` input: ``min <= opt <= max``."""

    min_hw: tuple[int, int] = (64, 64)
    opt_hw: tuple[int, int] = (512, 512)
    max_hw: tuple[int, int] = (1080, 1920)

    def __post_init__(self) -> None:
        for i, axis in enumerate(("height", "width")):
            if not 1 <= self.min_hw[i] <= self.opt_hw[i] <= self.max_hw[i]:
                raise ValueError(
                    f"profile {axis}: need 1 <= min <= opt <= max, got "
                    f"{self.min_hw[i]}, {self.opt_hw[i]}, {self.max_hw[i]}"
                )

    def __str__(self) -> str:
        return " / ".join(f"{h}x{w}" for h, w in (self.min_hw, self.opt_hw, self.max_hw))


#: 64x64 up to 1080x1920 (full-HD video grabbers, portrait or landscape), tuned for 512x512.
DEFAULT_PROFILE = Profile()


@dataclass(frozen=True)
class BuildConfig:
    """What ``python -m engine.build`` builds: the ONNX model, the profile and where engines live."""

    onnx: Path
    profile: Profile = DEFAULT_PROFILE
    cache_dir: Path | None = None
    workspace_mib: int = 2048
    force: bool = False


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized engine depends on."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    sm_count: int
    precision: str
    profile: Profile

    def as_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))  # tuples -> lists, as they come back from JSON

    def digest(self) -> str:
        """sha256 of the canonical JSON of the key."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()


def default_cache_dir() -> Path:
    """``$USDESPECKLE_CACHE/tensorrt`` or ``~/.cache/usdespeckle/tensorrt``."""
    root = os.environ.get("USDESPECKLE_CACHE") or Path.home() / ".cache" / "usdespeckle"
    return Path(root) / "tensorrt"


class EngineCache:
    """Engines and timing caches under one folder (see the module docstring for the file format)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def engine_path(self, key: EngineKey, stem: str = "drnn") -> Path:
        return self.root / f"{stem}-{key.digest()[:16]}.engine"

    def timing_cache_path(self, key: EngineKey) -> Path:
        """One timing cache per TensorRT version and GPU model (TensorRT rejects others anyway)."""
        gpu = re.sub(r"[^A-Za-z0-9]+", "-", key.gpu_name).strip("-").lower()
        return self.root / f"timing-{gpu}-sm{key.compute_capability}-trt{key.tensorrt_version}.cache"

    def load(self, key: EngineKey, stem: str = "drnn") -> bytes | None:
        """The cached engine for ``key``, or ``None`` (logged with the reason) if absent, stale or foreign."""
        path = self.engine_path(key, stem)
        if not path.is_file():
            log.info("no cached engine at %s", path)
            return None
        try:
            stored, engine = read_engine_file(path)
        except ValueError as exc:
            log.warning("ignoring cached engine: %s", exc)
            return None
        if stored != key.as_dict():
            changed = sorted(k for k in stored.keys() | key.as_dict().keys() if stored.get(k) != key.as_dict().get(k))
            log.warning("cached engine %s is stale (differs in %s): rebuilding", path, ", ".join(changed))
            return None
        return engine

    def store(self, key: EngineKey, engine: bytes, stem: str = "drnn") -> Path:
        """Write ``engine`` with its key header, atomically; returns the file's path."""
        header = json.dumps({"key": key.as_dict()}, sort_keys=True).encode()
        return atomic_write_bytes(self.engine_path(key, stem), _MAGIC + _LEN.pack(len(header)) + header + engine)


def read_engine_file(path: str | Path) -> tuple[dict, bytes]:
    """``(key dict, engine bytes)`` of a cache file; ``ValueError`` naming ``path`` if it is not one."""
    data = Path(path).read_bytes()
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + _LEN.size:
        raise ValueError(f"{path}: not a usdespeckle engine file (bad magic)")
    (n,) = _LEN.unpack_from(data, len(_MAGIC))
    start = len(_MAGIC) + _LEN.size
    if start + n > len(data):
        raise ValueError(f"{path}: truncated engine file (header of {n} bytes, file of {len(data)})")
    try:
        header = json.loads(data[start : start + n])
        key = header["key"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: corrupt engine header ({exc})") from exc
    engine = data[start + n :]
    if not engine:
        raise ValueError(f"{path}: engine file holds no engine")
    return key, engine
