"""Wire format of one frame: a JSON header part and a raw pixel part (see ``stream/PROTOCOL.md``).

A message is exactly two ZeroMQ frames::

    part 0: UTF-8 JSON object, at most Limits.max_header_bytes
    part 1: the pixels, C order, little-endian, len = prod(shape) * itemsize(dtype)

The pixel part is sent with ``copy=False`` and decoded with ``np.frombuffer`` (no copy either way).
Every malformed message, whatever is wrong with it, raises :class:`ProtocolError` and nothing else;
the size limits are checked on the header before the pixel buffer is touched, so an oversized frame
is refused without allocating it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "PROTOCOL_VERSION",
    "DTYPES",
    "Limits",
    "ProtocolError",
    "OverLimit",
    "encode_frame",
    "decode_frame",
    "check_meta",
    "check_image",
    "SequenceTracker",
]

PROTOCOL_VERSION = 1

#: header name -> numpy dtype of the pixel part (always little-endian on the wire).
DTYPES: dict[str, np.dtype] = {"uint8": np.dtype("<u1"), "uint16": np.dtype("<u2")}

_CHANNELS = (1, 3)
_INT64_MAX = 2**63 - 1
_MAX_TEXT = 256
_MAX_STAMPS = 32
#: header fields every message carries; ``spacing_mm`` may be null, the rest may not.
_REQUIRED = (
    "version",
    "seq",
    "source",
    "host",
    "capture_mono_ns",
    "capture_wall_ns",
    "stamps",
    "shape",
    "dtype",
)


class ProtocolError(ValueError):
    """A message that is not a valid frame of this protocol (the text names the culprit field)."""


class OverLimit(ProtocolError):
    """A frame larger than :class:`Limits` ``max_dim`` or ``max_pixel_bytes`` allow."""


@dataclass(frozen=True)
class Limits:
    """Largest frame a peer accepts.  Defaults: 8192 px a side, 64 MiB of pixels, 64 KiB of header."""

    max_dim: int = 8192
    max_pixel_bytes: int = 64 * 2**20
    max_header_bytes: int = 64 * 2**10

    def __post_init__(self) -> None:
        for name in ("max_dim", "max_pixel_bytes", "max_header_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be >= 1, got {getattr(self, name)}")

    @property
    def max_message_bytes(self) -> int:
        """Bound for ZeroMQ's ``MAXMSGSIZE`` on receiving sockets (largest single part)."""
        return max(self.max_pixel_bytes, self.max_header_bytes)


DEFAULT_LIMITS = Limits()


def _int(meta: Mapping[str, Any], key: str, lo: int = 0) -> int:
    value = meta[key]
    if type(value) is not int or not lo <= value <= _INT64_MAX:
        raise ProtocolError(f"header field {key!r} must be an integer in [{lo}, 2**63), got {value!r:.60}")
    return value


def _text(meta: Mapping[str, Any], key: str) -> str:
    value = meta[key]
    if not isinstance(value, str) or len(value) > _MAX_TEXT:
        raise ProtocolError(f"header field {key!r} must be a string of at most {_MAX_TEXT} characters")
    return value


def _shape(value: Any, limits: Limits) -> tuple[int, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) not in (2, 3):
        raise ProtocolError(f"header field 'shape' must be [H, W] or [H, W, C], got {value!r:.60}")
    if any(type(v) is not int for v in value):
        raise ProtocolError(f"header field 'shape' must hold integers, got {value!r:.60}")
    h, w = value[0], value[1]
    if not (1 <= h <= limits.max_dim and 1 <= w <= limits.max_dim):
        raise OverLimit(f"frame size {h}x{w} is outside 1..{limits.max_dim} pixels a side")
    if len(value) == 3 and value[2] not in _CHANNELS:
        raise ProtocolError(f"frame channel count must be one of {_CHANNELS}, got {value[2]}")
    return tuple(value)


def _spacing(value: Any) -> None:
    if value is None:
        return
    ok = isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2
    ok = ok and all(type(v) in (int, float) and math.isfinite(v) and v > 0 for v in value)
    if not ok:
        raise ProtocolError(
            f"header field 'spacing_mm' must be null or [row_mm, col_mm] > 0, got {value!r:.60}"
        )


def check_meta(meta: Any, limits: Limits = DEFAULT_LIMITS) -> tuple[tuple[int, ...], np.dtype]:
    """Validate a complete header dict; return the frame's ``(shape, numpy dtype)``.

    Raises :class:`ProtocolError` naming the first bad field.
    """
    if not isinstance(meta, Mapping):
        raise ProtocolError(f"header must be a JSON object, got {type(meta).__name__}")
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise ProtocolError(f"header lacks field(s) {', '.join(missing)}")
    if meta["version"] != PROTOCOL_VERSION or type(meta["version"]) is not int:
        raise ProtocolError(
            f"protocol version {meta['version']!r:.20} is not supported (want {PROTOCOL_VERSION})"
        )
    for key in ("seq", "capture_mono_ns", "capture_wall_ns"):
        _int(meta, key)
    _text(meta, "source")
    _text(meta, "host")
    stamps = meta["stamps"]
    if not isinstance(stamps, Mapping) or len(stamps) > _MAX_STAMPS:
        raise ProtocolError(f"header field 'stamps' must be an object of at most {_MAX_STAMPS} entries")
    for name in stamps:
        if not isinstance(name, str) or len(name) > _MAX_TEXT:
            raise ProtocolError("header field 'stamps' has a key that is not a short string")
        _int(stamps, name)
    _spacing(meta.get("spacing_mm"))
    shape = _shape(meta["shape"], limits)
    dtype = DTYPES.get(meta["dtype"]) if isinstance(meta["dtype"], str) else None
    if dtype is None:
        raise ProtocolError(
            f"header field 'dtype' must be one of {sorted(DTYPES)}, got {meta['dtype']!r:.30}"
        )
    _check_bytes(shape, dtype, meta["dtype"], limits)
    return shape, dtype


def _check_bytes(shape: tuple[int, ...], dtype: np.dtype, name: str, limits: Limits) -> None:
    if math.prod(shape) * dtype.itemsize > limits.max_pixel_bytes:
        raise OverLimit(f"frame of {shape} {name} exceeds the {limits.max_pixel_bytes}-byte limit")


def _dtype_name(image: np.ndarray) -> str:
    """The header name of ``image``'s dtype; ProtocolError for a dtype the protocol lacks."""
    name = next(
        (n for n, d in DTYPES.items() if image.dtype.kind == "u" and image.dtype.itemsize == d.itemsize), None
    )
    if name is None:
        raise ProtocolError(f"image dtype {image.dtype} is not one of {sorted(DTYPES)}")
    return name


def check_image(image: np.ndarray, limits: Limits = DEFAULT_LIMITS) -> None:
    """Raise :class:`ProtocolError` if :func:`encode_frame` would refuse ``image`` for its dtype,
    shape or size under ``limits`` (whatever its header)."""
    name = _dtype_name(image)
    _check_bytes(_shape(list(image.shape), limits), DTYPES[name], name, limits)


def _reject_constant(name: str) -> None:
    raise ProtocolError(f"header holds the non-JSON number {name}")


def encode_frame(
    image: np.ndarray, meta: Mapping[str, Any], limits: Limits = DEFAULT_LIMITS
) -> list[bytes | memoryview]:
    """Encode ``image`` (``uint8``/``uint16``, ``(H, W)`` or ``(H, W, 3)``) and its header.

    ``meta`` supplies every field of the header except ``shape``, ``dtype`` and ``version``, which are
    taken from ``image``; extra keys are carried as they are.  Returns ``[header, pixels]`` where
    ``pixels`` is a memoryview of ``image`` (a contiguous copy only when ``image`` is not C-contiguous
    or not little-endian).  Raises :class:`ProtocolError` if the result would not decode.
    """
    if not isinstance(image, np.ndarray):
        raise ProtocolError(f"image must be a numpy array, got {type(image).__name__}")
    name = _dtype_name(image)
    header = {**meta, "version": PROTOCOL_VERSION, "shape": list(image.shape), "dtype": name}
    check_meta(header, limits)
    try:
        text = json.dumps(header, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"header is not JSON-serialisable: {exc}") from exc
    if len(text) > limits.max_header_bytes:
        raise ProtocolError(f"header of {len(text)} bytes exceeds the {limits.max_header_bytes}-byte limit")
    pixels = np.ascontiguousarray(image, dtype=DTYPES[name])
    return [text, memoryview(pixels).cast("B")]


def decode_frame(parts: Sequence[Any], limits: Limits = DEFAULT_LIMITS) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode ``[header, pixels]`` (bytes, memoryviews or ``zmq.Frame``) into ``(image, meta)``.

    ``image`` is a read-only view of the pixel buffer (no copy); ``meta`` is the header dict.
    Raises :class:`ProtocolError` for anything malformed: part count, header size or syntax,
    field types, NaN/inf numbers, limits, or a pixel part whose length does not match the header.
    """
    if not isinstance(parts, Sequence) or len(parts) != 2:
        count = len(parts) if isinstance(parts, Sequence) else type(parts).__name__
        raise ProtocolError(f"a frame message has 2 parts (header, pixels), got {count}")
    head, body = (_buffer(p, i) for i, p in enumerate(parts))
    if head.nbytes > limits.max_header_bytes:
        raise ProtocolError(f"header of {head.nbytes} bytes exceeds the {limits.max_header_bytes}-byte limit")
    try:
        meta = json.loads(bytes(head).decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        if isinstance(exc, ProtocolError):
            raise
        raise ProtocolError(f"header is not UTF-8 JSON: {exc}") from None
    shape, dtype = check_meta(meta, limits)
    expected = math.prod(shape) * dtype.itemsize
    if body.nbytes != expected:
        raise ProtocolError(
            f"pixel part has {body.nbytes} bytes, the header's {shape} {meta['dtype']} needs {expected}"
        )
    image = np.frombuffer(body, dtype=dtype).reshape(shape)
    image.flags.writeable = False
    return image, meta


def _buffer(part: Any, index: int) -> memoryview:
    """A flat byte view of one message part (``zmq.Frame`` exposes ``.buffer``)."""
    part = getattr(part, "buffer", part)
    try:
        view = memoryview(part)
    except TypeError:
        raise ProtocolError(f"message part {index} is not a byte buffer ({type(part).__name__})") from None
    if not view.c_contiguous:
        raise ProtocolError(f"message part {index} is not a contiguous buffer")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


class SequenceTracker:
    """Counts the frames a receiver missed, from the ``seq`` numbers of each ``source``.

    A sequence number at or below the last one means the sender restarted: counting begins anew.
    """

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def update(self, meta: Mapping[str, Any]) -> int:
        """Record a decoded header; return how many frames were skipped before it."""
        last = self._last.get(meta["source"])
        self._last[meta["source"]] = meta["seq"]
        return meta["seq"] - last - 1 if last is not None and meta["seq"] > last + 1 else 0
