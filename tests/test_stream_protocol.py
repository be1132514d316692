"""The wire format: round trips, zero copy, and ProtocolError for malformed messages."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stream.latest import LatestSlot
from stream.protocol import Limits, ProtocolError, SequenceTracker, decode_frame, encode_frame


def _meta(seq: int = 7) -> dict:
    return {
        "seq": seq,
        "source": "test",
        "host": "here",
        "capture_mono_ns": 123_456_789,
        "capture_wall_ns": 1_700_000_000_000_000_000,
        "stamps": {"grab": 1_700_000_000_000_000_001},
        "spacing_mm": [0.2, 0.25],
    }


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((48, 64), np.uint8), ((48, 64), np.uint16), ((30, 40, 3), np.uint8), ((1, 1), np.uint8)],
)
def test_round_trip_keeps_pixels_and_metadata(shape, dtype) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)
    parts = encode_frame(image, _meta())
    assert len(parts) == 2
    out, meta = decode_frame([bytes(p) for p in parts])
    np.testing.assert_array_equal(out, image)
    assert out.dtype == dtype
    assert {k: meta[k] for k in _meta()} == _meta()
    assert meta["shape"] == list(shape) and meta["version"] == 1


def test_pixels_are_neither_copied_on_encode_nor_on_decode() -> None:
    image = np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)
    header, pixels = encode_frame(image, _meta())
    assert np.shares_memory(np.frombuffer(pixels, np.uint8), image)
    buffer = bytearray(bytes(pixels))
    out, _ = decode_frame([header, buffer])
    assert np.shares_memory(out, np.frombuffer(buffer, np.uint8))
    assert not out.flags.writeable


def _header(**changes) -> dict:
    meta = {**_meta(), "version": 1, "shape": [4, 4], "dtype": "uint8"}
    meta.update(changes)
    return {k: v for k, v in meta.items() if v is not ...}


def _parts(header: dict | bytes, body: bytes = bytes(16)) -> list[bytes]:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return [text, body]


MALFORMED = {
    "one part": [json.dumps(_header()).encode()],
    "three parts": [*_parts(_header()), b""],
    "not a list": b"frame",
    "not JSON": _parts(b"{seq: 1"),
    "not UTF-8": _parts(b'{"seq": "\xff"}'),
    "JSON array": _parts(b"[1, 2]"),
    "deeply nested": _parts(b"[" * 50_000 + b"]" * 50_000),
    "NaN timestamp": _parts(json.dumps(_header(capture_wall_ns=float("nan"))).encode()),
    "inf stamp": _parts(json.dumps(_header(stamps={"grab": float("inf")})).encode()),
    "float timestamp": _parts(_header(capture_mono_ns=1.5)),
    "bool seq": _parts(_header(seq=True)),
    "negative seq": _parts(_header(seq=-1)),
    "huge seq": _parts(_header(seq=2**64)),
    "string source too long": _parts(_header(source="x" * 1000)),
    "missing field": _parts(_header(host=...)),
    "wrong version": _parts(_header(version=2)),
    "shape of 4 axes": _parts(_header(shape=[1, 2, 2, 4])),
    "two channels": _parts(_header(shape=[2, 4, 2])),
    "zero height": _parts(_header(shape=[0, 4]), b""),
    "float shape": _parts(_header(shape=[4.0, 4])),
    "unknown dtype": _parts(_header(dtype="float32"), bytes(64)),
    "pixels too short": _parts(_header(), bytes(15)),
    "pixels too long": _parts(_header(), bytes(17)),
    "bad spacing": _parts(_header(spacing_mm=[-1, 0.2])),
    "stamps not an object": _parts(_header(stamps=[1, 2])),
    "part not bytes": [json.dumps(_header()).encode(), 12],
}


@pytest.mark.parametrize("parts", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_message_raises_protocol_error(parts) -> None:
    with pytest.raises(ProtocolError):
        decode_frame(parts)


def test_frame_above_the_limits_is_refused_before_reading_pixels() -> None:
    limits = Limits(max_dim=1024, max_pixel_bytes=2**20, max_header_bytes=512)
    with pytest.raises(ProtocolError, match="outside 1..1024"):
        decode_frame(_parts(_header(shape=[100_000, 100_000]), b""), limits)
    with pytest.raises(ProtocolError, match="byte limit"):
        decode_frame(_parts(_header(shape=[1024, 1024, 3]), b""), limits)
    with pytest.raises(ProtocolError, match="header of"):
        decode_frame(_parts(_header(source="x" * 200, host="y" * 200)), limits)


@pytest.mark.parametrize(
    ("image", "meta"),
    [
        (np.zeros((4, 4), np.float32), _meta()),
        (np.zeros((4, 4, 2), np.uint8), _meta()),
        (np.zeros((4, 4), np.uint8), {**_meta(), "seq": "1"}),
        (np.zeros((4, 4), np.uint8), {**_meta(), "extra": float("nan")}),
    ],
    ids=["float32", "two channels", "string seq", "NaN extra field"],
)
def test_encode_refuses_what_decode_would_refuse(image, meta) -> None:
    with pytest.raises(ProtocolError):
        encode_frame(image, meta)


def test_sequence_tracker_counts_skipped_frames_and_restarts() -> None:
    tracker = SequenceTracker()
    seen = [tracker.update({"source": "a", "seq": s}) for s in (0, 1, 4, 5, 0, 2)]
    assert seen == [0, 0, 2, 0, 0, 1]


def test_latest_slot_keeps_only_the_newest_item() -> None:
    slot: LatestSlot[int] = LatestSlot()
    assert [slot.put(i) for i in range(3)] == [False, True, True]
    assert slot.get(0.0) == 2
    assert slot.get(0.01) is None
    slot.close()
    assert slot.get(1.0) is None
