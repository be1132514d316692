"""Malformed messages: ``decode_frame`` raises :class:`ProtocolError` and nothing else, whatever it gets.

Two generators of malformed multipart messages:

* a seeded numpy generator of mutations of valid messages, 100,000 messages in a plain loop
  (a few seconds; ``USDESPECKLE_FUZZ_MESSAGES`` changes the count);
* a hypothesis strategy of messages built from scratch: ``USDESPECKLE_FUZZ_EXAMPLES`` examples
  (default 500; 10,000 with ``--runslow``, 100,000 with ``--soak``).

Both check the other side too: a message that decodes is consistent with its header.  The size
limits are checked on the header, so a header claiming 10**9 pixels is refused without allocating.
"""

from __future__ import annotations

import json
import math
import os
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.protocol import (
    DEFAULT_LIMITS,
    DTYPES,
    PROTOCOL_VERSION,
    Limits,
    ProtocolError,
    decode_frame,
    encode_frame,
)

MESSAGES = int(os.environ.get("USDESPECKLE_FUZZ_MESSAGES", "100000"))

#: values that break a header field: wrong types, out of range, NaN and infinities, huge numbers.
BAD_VALUES: list[Any] = [
    float("nan"), float("inf"), float("-inf"), -1, 2**63, 2**64, 1e308, 1.5, True, None, "", "x" * 300,
    [], {}, [1], [1, 2, 3, 4], [0, 5], [5, 0], [10**9, 10**9], [31623, 31623], [8192, 8192, 3], [4, 4, 2],
    [4.0, 4.0], ["4", "4"], "uint8", "float32", "int16", ">u2", {"a": 1}, [[1, 2]],
]
#: JSON white space that takes any header over the default 64 KiB limit.
PADDING = b" " * (64 * 2**10)
FIELDS = ["version", "seq", "source", "host", "capture_mono_ns", "capture_wall_ns", "stamps", "shape", "dtype", "spacing_mm"]


def _valid(rng: np.random.Generator) -> list[bytes]:
    h, w = (int(v) for v in rng.integers(1, 24, size=2))
    dtype = ("uint8", "uint16")[int(rng.integers(2))]
    shape = (h, w) if rng.random() < 0.6 else (h, w, 3)
    image = rng.integers(0, 256, size=shape).astype(DTYPES[dtype])
    meta = {"seq": int(rng.integers(0, 1000)), "source": "fuzz", "host": "h", "capture_mono_ns": 1, "capture_wall_ns": 2,
            "stamps": {"grab": 3}, "spacing_mm": [0.25, 0.25]}
    return [bytes(p) for p in encode_frame(image, meta)]


def _meta_of(header: bytes) -> dict | None:
    """The header's dict, or None when an earlier mutation already broke it."""
    try:
        meta = json.loads(header)
    except (ValueError, RecursionError):
        return None
    return meta if isinstance(meta, dict) else None


def _header_with(header: bytes, rng: np.random.Generator) -> bytes:
    meta = _meta_of(header)
    if meta is None:
        return header
    field = FIELDS[int(rng.integers(len(FIELDS)))]
    action = rng.random()
    if action < 0.15:
        meta.pop(field, None)
    elif action < 0.25 and field == "stamps":
        meta["stamps"] = {"grab": BAD_VALUES[int(rng.integers(len(BAD_VALUES)))]}
    else:
        meta[field] = BAD_VALUES[int(rng.integers(len(BAD_VALUES)))]
    return json.dumps(meta).encode()  # allow_nan: writes NaN / Infinity tokens on purpose


def _mutations() -> list[Callable[[list, np.random.Generator], list]]:
    def truncate_header(m, rng):
        return [m[0][: int(rng.integers(0, len(m[0]) + 1))], m[1]]

    def flip_header_bytes(m, rng):
        head = bytearray(m[0])
        for i in rng.integers(0, max(1, len(head)), size=int(rng.integers(1, 4)) if head else 0):
            head[i] = int(rng.integers(256))
        return [bytes(head), m[1]]

    def resize_pixels(m, rng):
        n = len(m[1])
        return [m[0], m[1][: int(rng.integers(0, n + 1))] if rng.random() < 0.5 else m[1] + bytes(int(rng.integers(1, 64)))]

    def bad_field(m, rng):
        return [_header_with(m[0], rng), m[1]]

    def part_count(m, rng):
        return [[], [m[0]], [m[0], m[1], b""], [m[1], m[0]]][int(rng.integers(4))]

    def not_an_object(m, rng):
        return [[b"[1, 2]", b"3", b'"text"', b"null", b"", b"\xff\xfe", b"[" * 100000][int(rng.integers(7))], m[1]]

    def oversized_header(m, rng):
        return [m[0] + PADDING, m[1]]  # trailing white space: still valid JSON, but over the limit

    def not_bytes(m, rng):
        odd = [None, 7, "text", np.zeros((2, 3), np.float64)[:, ::2], np.array([object()]),
               np.zeros(3, dtype=[("a", "u1"), ("b", "f4")]), memoryview(np.zeros((4, 4), np.uint16))]
        parts = list(m)
        parts[int(rng.integers(2))] = odd[int(rng.integers(len(odd)))]
        return parts

    def huge_claim(m, rng):
        meta = _meta_of(m[0]) or {}
        meta["shape"] = [[31623, 31623], [8192, 8192, 3], [10**9, 1]][int(rng.integers(3))]
        return [json.dumps(meta).encode(), b"\x00" * 16]

    return [truncate_header, flip_header_bytes, resize_pixels, bad_field, part_count, not_an_object, oversized_header,
            not_bytes, huge_claim]


def check_decode(parts: Any, limits: Limits = DEFAULT_LIMITS) -> bool:
    """Decode ``parts``; True if it decoded (and is consistent), False if refused with ProtocolError.
    Any other exception propagates and fails the test."""
    try:
        image, meta = decode_frame(parts, limits)
    except ProtocolError:
        return False
    shape, dtype = tuple(meta["shape"]), DTYPES[meta["dtype"]]
    assert image.shape == shape and image.dtype == dtype and not image.flags.writeable
    assert meta["version"] == PROTOCOL_VERSION and image.nbytes == math.prod(shape) * dtype.itemsize
    return True


def fuzz_messages(count: int, seed: int = 0):
    """``count`` messages: mostly one mutation of a valid message, sometimes two, some untouched."""
    rng = np.random.default_rng(seed)
    mutations = _mutations()
    pool = [_valid(rng) for _ in range(256)]
    for _ in range(count):
        message = pool[int(rng.integers(len(pool)))]
        for _ in range(int(rng.choice([0, 1, 1, 1, 2]))):
            if len(message) != 2 or not all(isinstance(p, bytes) for p in message):
                break
            message = mutations[int(rng.integers(len(mutations)))](message, rng)
        yield message


def test_hundred_thousand_mutated_messages_raise_only_protocol_error() -> None:
    decoded = refused = 0
    for message in fuzz_messages(MESSAGES):
        if check_decode(message):
            decoded += 1
        else:
            refused += 1
    assert decoded + refused == MESSAGES
    # both outcomes are common: the generator really produces valid and malformed messages
    assert refused > MESSAGES // 2 and decoded > MESSAGES // 20, (decoded, refused)


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                 st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                           max_leaves=12)
valid_fields = {
    "version": st.just(PROTOCOL_VERSION), "seq": st.integers(0, 2**63 - 1), "source": st.text(max_size=10),
    "host": st.text(max_size=10), "capture_mono_ns": st.integers(0, 2**63 - 1), "capture_wall_ns": st.integers(0, 2**63 - 1),
    "stamps": st.dictionaries(st.text(max_size=6), st.integers(0, 2**63 - 1), max_size=3),
    "shape": st.lists(st.integers(0, 40), min_size=1, max_size=4), "dtype": st.sampled_from(["uint8", "uint16", "float32"]),
    "spacing_mm": st.one_of(st.none(), st.lists(st.floats(allow_nan=True), min_size=2, max_size=2)),
}


@st.composite
def messages(draw) -> list[Any]:
    """A header of plausible and wrong fields (each may be missing or any JSON value), a pixel part of
    about the right or a wrong length, and sometimes a wrong number or type of parts."""
    meta = {}
    for key, good in valid_fields.items():
        choice = draw(st.integers(0, 9))
        if choice < 7:
            meta[key] = draw(good)
        elif choice < 9:
            meta[key] = draw(json_values)
    header = json.dumps(meta).encode()
    if draw(st.booleans()):
        header = header[: draw(st.integers(0, len(header)))]
    shape = meta.get("shape") if isinstance(meta.get("shape"), list) else [1]
    size = math.prod(v for v in shape if isinstance(v, int) and v > 0) * (2 if meta.get("dtype") == "uint16" else 1)
    pixels = bytes(max(0, min(size + draw(st.integers(-3, 3)), 70000)))
    parts: list[Any] = [header, pixels]
    kind = draw(st.integers(0, 9))
    if kind == 0:
        parts = parts[: draw(st.integers(0, 1))]
    elif kind == 1:
        parts.append(draw(st.binary(max_size=8)))
    elif kind == 2:
        parts[draw(st.integers(0, 1))] = draw(st.one_of(st.none(), st.integers(), st.text(max_size=4), json_values))
    return parts


def _examples() -> int:
    return int(os.environ.get("USDESPECKLE_FUZZ_EXAMPLES", "500"))


@pytest.fixture
def examples(request: pytest.FixtureRequest) -> int:
    if "USDESPECKLE_FUZZ_EXAMPLES" in os.environ:
        return _examples()
    if request.config.getoption("--soak"):
        return 100_000  # about 10 minutes on 2 cores
    return 10_000 if request.config.getoption("--runslow") else _examples()


def test_hypothesis_messages_raise_only_protocol_error(examples: int) -> None:
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(messages())
    def check(parts: list[Any]) -> None:
        check_decode(parts)

    check()


def test_header_claiming_a_billion_pixels_is_refused_without_allocating() -> None:
    base = json.loads(_valid(np.random.default_rng(1))[0])
    claims = [[31623, 31623], [8192, 8192, 3], [10**9, 10**9]]
    tracemalloc.start()
    try:
        for shape in claims:
            header = json.dumps({**base, "shape": shape, "dtype": "uint16"}).encode()
            with pytest.raises(ProtocolError, match="outside|exceeds"):
                decode_frame([header, b"\x00" * 64])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024, f"refusing oversized frames allocated {peak} bytes"


def test_header_over_the_limit_is_refused_before_parsing() -> None:
    limits = Limits(max_header_bytes=1024)
    header = b"[" * 2000  # would be a RecursionError-deep JSON document if it were parsed
    with pytest.raises(ProtocolError, match="1024-byte limit"):
        decode_frame([header, b""], limits)
    message = _valid(np.random.default_rng(2))
    assert check_decode(message, Limits(max_header_bytes=len(message[0])))
    assert not check_decode(message, Limits(max_header_bytes=len(message[0]) - 1))


def test_frame_over_the_pixel_limit_is_refused() -> None:
    image = np.zeros((64, 64), np.uint16)
    parts = [bytes(p) for p in encode_frame(image, {"seq": 0, "source": "s", "host": "h", "capture_mono_ns": 0,
                                                      "capture_wall_ns": 0, "stamps": {}})]
    assert check_decode(parts, Limits(max_pixel_bytes=image.nbytes))
    with pytest.raises(ProtocolError, match="exceeds"):
        decode_frame(parts, Limits(max_pixel_bytes=image.nbytes - 1))
    with pytest.raises(ProtocolError, match="outside"):
        decode_frame(parts, Limits(max_dim=63))
