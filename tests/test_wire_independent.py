"""The two wire formats of ``python -m stream.run``, decoded from their documentation alone.

Navigation software in other languages reads the despeckled frames from the ZeroMQ stream
(``stream/PROTOCOL.md``) or as OpenIGTLink ``IMAGE`` messages (``--igtl``, docs/stream.md and the
OpenIGTLink specification: Documents/Protocol/header.md, image.md and timestamp.md of the
OpenIGTLink repository).  This test decodes both with nothing but ``zmq``, ``socket``, ``json``,
``struct`` and ``numpy``: it never imports the project's own encoders or decoders
(``stream.protocol``, ``stream.client``, ``stream.sinks``) nor ``pyigtl``, so that it fails when
the bytes on the wire and the documents part ways.
"""

from __future__ import annotations

import json
import math
import signal
import socket
import struct
import threading
import time

import numpy as np
import pytest

zmq = pytest.importorskip("zmq", reason="pyzmq is not installed: the ZeroMQ stream cannot be subscribed to")

# The suite's helpers to start a command as a process (PYTHONPATH, cwd) and pick free ports.
from test_stream_processes import free_port, start, stop_within  # noqa: E402

HEIGHT, WIDTH = 64, 80
FRAMES = 75  # at the simulator's default 30 frames/s: 2.5 s of stream
SIM_SPACING_MM = [0.25, 0.25]  # PROTOCOL.md and docs/stream.md: "the simulator's 0.25 mm"

# --- the ZeroMQ frame protocol, as stream/PROTOCOL.md describes it -------------------------------

MAX_HEADER_BYTES = 64 * 1024
MAX_PIXEL_BYTES = 64 * 1024 * 1024
ITEMSIZE = {"uint8": 1, "uint16": 2}
INT_FIELDS = ("version", "seq", "capture_mono_ns", "capture_wall_ns")
STAGES = ("grab", "receive", "despeckle", "publish")  # in the order the stages handle a frame


def _no_constants(name: str) -> float:
    raise ValueError(f"the header holds {name}, which PROTOCOL.md forbids")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def decode_zmq_frame(parts: list[bytes]) -> tuple[dict, np.ndarray]:
    """Check one message against every rule of PROTOCOL.md; return (header, pixels)."""
    assert len(parts) == 2, f"a message has exactly two parts, not {len(parts)}"
    raw_header, pixels = parts
    assert len(raw_header) <= MAX_HEADER_BYTES
    meta = json.loads(raw_header.decode("utf-8"), parse_constant=_no_constants)
    assert isinstance(meta, dict), "the header is one JSON object"

    assert meta["version"] == 1
    for field in INT_FIELDS:
        assert _is_int(meta[field]) and 0 <= meta[field] < 2**63, (field, meta[field])
    for field in ("source", "host"):
        assert isinstance(meta[field], str) and len(meta[field]) <= 256, (field, meta[field])
    stamps = meta["stamps"]
    assert isinstance(stamps, dict) and len(stamps) <= 32
    for stage, stamp in stamps.items():
        assert isinstance(stage, str) and _is_int(stamp) and 0 <= stamp < 2**63, (stage, stamp)

    shape = meta["shape"]
    assert isinstance(shape, list) and len(shape) in (2, 3) and all(_is_int(side) for side in shape)
    assert all(1 <= side <= 8192 for side in shape[:2])
    channels = shape[2] if len(shape) == 3 else 1
    assert channels in (1, 3)
    assert meta["dtype"] in ITEMSIZE
    expected = shape[0] * shape[1] * channels * ITEMSIZE[meta["dtype"]]
    assert expected <= MAX_PIXEL_BYTES
    assert len(pixels) == expected, f"pixel part of {len(pixels)} bytes, the header promises {expected}"

    spacing = meta.get("spacing_mm")  # "may be absent"
    assert spacing is None or (
        isinstance(spacing, list) and len(spacing) == 2 and all(isinstance(v, (int, float)) for v in spacing)
    )
    # row-major (C order), little-endian, channels interleaved
    dtype = np.dtype(meta["dtype"]).newbyteorder("<")
    image = np.frombuffer(pixels, dtype=dtype).reshape(shape)
    return meta, image


# --- OpenIGTLink, as its specification describes it ----------------------------------------------

IGTL_HEADER = struct.Struct(">H12s20sQQQ")  # 58 bytes, big-endian
IMAGE_HEADER = struct.Struct(">HBBBB3H12f3H3H")  # 72 bytes, big-endian
IGTL_SCALARS = {2: "i1", 3: "u1", 4: "i2", 5: "u2", 6: "i4", 7: "u4", 10: "f4", 11: "f8"}
ECMA_182 = 0x42F0E1EBA9EA3693
MASK64 = (1 << 64) - 1


def _crc64_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 56
        for _ in range(8):
            crc = ((crc << 1) ^ ECMA_182) & MASK64 if crc >> 63 else (crc << 1) & MASK64
        table.append(crc)
    return table


CRC64_TABLE = _crc64_table()


def crc64_ecma182(data: bytes) -> int:
    """CRC-64 with the ECMA-182 polynomial, MSB first, initial value 0, no final XOR."""
    crc = 0
    for byte in data:
        crc = CRC64_TABLE[(crc >> 56) ^ byte] ^ ((crc << 8) & MASK64)
    return crc


def _padded_ascii(field: bytes) -> str:
    """A char[N] field: ASCII, "unused spaces are padded with 0"."""
    text, _, padding = field.partition(b"\0")
    assert padding.strip(b"\0") == b"", f"bytes after the terminating 0 in {field!r}"
    return text.decode("ascii")


def igtl_timestamp_ns(stamp: int) -> int:
    """Seconds since 1970 in the high 32 bits, the fraction of a second in the low 32 bits."""
    return (stamp >> 32) * 1_000_000_000 + (((stamp & 0xFFFFFFFF) * 1_000_000_000) >> 32)


def decode_igtl_header(raw: bytes) -> dict:
    version, kind, device, stamp, body_size, crc = IGTL_HEADER.unpack(raw)
    return {
        "version": version,
        "type": _padded_ascii(kind),
        "device": _padded_ascii(device),
        "timestamp_ns": igtl_timestamp_ns(stamp),
        "body_size": body_size,
        "crc": crc,
    }


def decode_igtl_image(header: dict, body: bytes) -> dict:
    """The content of an IMAGE body: its 72-byte image header and the voxels as (k, j, i[, c])."""
    content = body
    if header["version"] >= 2:  # version 2 header: extended header first, metadata after the content
        (extended_size,) = struct.unpack_from(">H", body)
        assert 12 <= extended_size <= len(body)
        content = body[extended_size:]
    (version, components, scalar, endian, coordinate, *rest) = IMAGE_HEADER.unpack_from(content)
    size, matrix, offset, subsize = rest[0:3], rest[3:15], rest[15:18], rest[18:21]
    assert scalar in IGTL_SCALARS, f"scalar type {scalar}"
    assert endian in (1, 2), f"endian {endian} (1: big, 2: little)"
    dtype = np.dtype(IGTL_SCALARS[scalar]).newbyteorder(">" if endian == 1 else "<")
    # the sub-volume is what the message carries
    count = subsize[0] * subsize[1] * subsize[2] * components
    data = content[IMAGE_HEADER.size : IMAGE_HEADER.size + count * dtype.itemsize]
    assert len(data) == count * dtype.itemsize, "the body ends before the voxels do"
    voxels = np.frombuffer(data, dtype=dtype).reshape(subsize[2], subsize[1], subsize[0], components)
    return {
        "version": version,
        "components": components,
        "scalar": scalar,
        "endian": endian,
        "coordinate": coordinate,
        "size": tuple(size),
        "t": np.array(matrix[0:3]),  # direction of i (columns); its length: pixel size along i
        "s": np.array(matrix[3:6]),  # direction of j (rows); its length: pixel size along j
        "n": np.array(matrix[6:9]),  # normal (k); its length: slice thickness
        "p": np.array(matrix[9:12]),  # centre of the image, mm
        "offset": tuple(offset),
        "subsize": tuple(subsize),
        "content_bytes": IMAGE_HEADER.size + len(data),
        "voxels": voxels,
    }


def _recv_exactly(sock: socket.socket, count: int, stop: threading.Event) -> bytes | None:
    chunks, left = [], count
    while left:
        try:
            chunk = sock.recv(min(left, 1 << 20))
        except TimeoutError:
            if stop.is_set():
                return None
            continue
        if not chunk:
            return None  # the server closed the connection
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_igtl(port: int, messages: list, stop: threading.Event, errors: list) -> None:
    """Connect (retrying while the server starts), then keep (header, raw header, body, wall ns)."""
    try:
        deadline = time.monotonic() + 15.0
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=0.2)
                break
            except OSError:
                if stop.is_set() or time.monotonic() > deadline:
                    return
                time.sleep(0.05)
        with sock:
            while not stop.is_set():
                raw = _recv_exactly(sock, IGTL_HEADER.size, stop)
                if raw is None:
                    return
                header = decode_igtl_header(raw)
                assert header["body_size"] < 1 << 24, f"implausible body size {header['body_size']}"
                body = _recv_exactly(sock, header["body_size"], stop)
                if body is None:
                    return
                messages.append((header, raw, body, time.time_ns()))
    except Exception as exc:  # reported by the test, not lost in the thread
        errors.append(exc)


# --- the test -------------------------------------------------------------------------------------


def test_crc64_matches_the_ecma_182_check_value() -> None:
    # CRC-64/ECMA-182 of b"123456789" (the catalogue's check value): our decoder's CRC is right.
    assert crc64_ecma182(b"123456789") == 0x6C40DF5F0B497347


def test_both_wire_formats_decode_from_their_documentation_alone() -> None:
    igtl_port, pub_port = free_port(), free_port()
    proc = start(
        "stream.run",
        "--backend",
        "identity",
        "--frames",
        str(FRAMES),
        "--size",
        f"{HEIGHT}x{WIDTH}",
        "--igtl",
        str(igtl_port),
        "--publish",
        f"tcp://127.0.0.1:{pub_port}",
    )
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    # the socket options PROTOCOL.md asks of subscribers
    sub.setsockopt(zmq.RCVHWM, 2)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RECONNECT_IVL, 100)
    sub.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
    sub.setsockopt(zmq.MAXMSGSIZE, MAX_PIXEL_BYTES)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"tcp://127.0.0.1:{pub_port}")

    received: list[tuple[list[bytes], int, int]] = []  # (parts, wall ns, monotonic ns) on arrival
    igtl: list = []
    stop, errors = threading.Event(), []
    reader = threading.Thread(target=read_igtl, args=(igtl_port, igtl, stop, errors), daemon=True)
    reader.start()
    deadline = time.monotonic() + 15.0
    try:
        while time.monotonic() < deadline:
            if sub.poll(100):
                received.append((sub.recv_multipart(), time.time_ns(), time.monotonic_ns()))
            elif proc.poll() is not None:
                break  # --frames: the chain published its frames and stopped
    finally:
        stop.set()
        reader.join(2.0)
        sub.close()
        ctx.term()
        if proc.poll() is None:
            _, err = stop_within(proc, signal.SIGTERM)
        else:
            _, err = proc.communicate()
    assert not errors, errors
    assert proc.returncode == 0, err

    # (1) ZeroMQ, per PROTOCOL.md
    assert len(received) >= 3, f"{len(received)} ZeroMQ frames arrived\n{err}"
    frames = []
    for parts, wall_ns, mono_ns in received:
        meta, image = decode_zmq_frame(parts)
        assert meta["shape"] == [HEIGHT, WIDTH] and image.shape == (HEIGHT, WIDTH)
        assert meta["dtype"] == "uint8", "despeckled frames are always uint8"
        assert meta["source"] == "sim"
        assert meta["spacing_mm"] == SIM_SPACING_MM
        assert set(STAGES) <= set(meta["stamps"]), meta["stamps"]
        times = [meta["capture_wall_ns"], *(meta["stamps"][stage] for stage in STAGES)]
        assert times == sorted(times), f"capture, {', '.join(STAGES)} out of order: {times}"
        assert 0 <= wall_ns - meta["stamps"]["publish"] < 5e9, "publish stamp is not the wall clock of now"
        # the grabber ran on this host, so its monotonic clock is ours
        assert meta["host"] == socket.gethostname()
        assert 0 <= mono_ns - meta["capture_mono_ns"] < 5e9
        frames.append((meta, image))
    seqs = [meta["seq"] for meta, _ in frames]
    assert all(b > a for a, b in zip(seqs, seqs[1:], strict=False)), f"seq not increasing: {seqs}"
    for (m1, _), (m2, _) in zip(frames, frames[1:], strict=False):
        wall, mono = m2["capture_wall_ns"] - m1["capture_wall_ns"], m2["capture_mono_ns"] - m1["capture_mono_ns"]
        assert wall > 0 and mono > 0
        assert abs(wall - mono) < 20e6, "the wall and monotonic capture times disagree by > 20 ms"
    assert any(int(image.max()) > int(image.min()) for _, image in frames), "constant frames"

    # (2) OpenIGTLink IMAGE, per the OpenIGTLink specification
    assert len(igtl) >= 3, f"{len(igtl)} OpenIGTLink messages arrived\n{err}"
    by_capture = {meta["capture_wall_ns"]: image for meta, image in frames}
    matched, stamps = 0, []
    for header, raw, body, wall_ns in igtl:
        assert header["version"] in (1, 2), f"header version {header['version']}"
        assert raw[2:14].rstrip(b"\0") == b"IMAGE" and header["type"] == "IMAGE"
        assert header["device"] == "Despeckled"  # docs/stream.md: device name `Despeckled`
        assert header["body_size"] == len(body)
        assert crc64_ecma182(body) == header["crc"], "CRC64 of the body differs from the header's"
        image = decode_igtl_image(header, body)
        if header["version"] == 1:
            assert image["content_bytes"] == len(body), "bytes after the voxels in a version 1 body"
        assert image["version"] in (1, 2)
        assert image["size"] == (WIDTH, HEIGHT, 1), "size is (i, j, k) = (columns, rows, slices)"
        assert image["offset"] == (0, 0, 0) and image["subsize"] == image["size"], "not the whole image"
        assert image["components"] == 1, "grey frames are 1-component images"
        assert image["scalar"] == 3, "scalar type 3 is uint8"
        assert image["coordinate"] == 2, "docs/stream.md: the LPS coordinate system (2; 1 is RAS)"
        # docs/stream.md: the matrix carries the pixel spacing in mm; the length of T is the pixel size
        # along i (columns: spacing_mm[1]), the length of S along j (rows: spacing_mm[0])
        t, s, n = image["t"], image["s"], image["n"]
        assert math.isclose(np.linalg.norm(t), SIM_SPACING_MM[1], rel_tol=1e-6)
        assert math.isclose(np.linalg.norm(s), SIM_SPACING_MM[0], rel_tol=1e-6)
        assert np.linalg.norm(n) > 0, "the slice thickness (length of N) is 0"
        assert abs(t @ s) < 1e-6 and abs(t @ n) < 1e-6 and abs(s @ n) < 1e-6, "axes not orthogonal"
        assert np.allclose(t / np.linalg.norm(t), [1, 0, 0]) and np.allclose(s / np.linalg.norm(s), [0, 1, 0])
        assert math.isclose(np.linalg.norm(n), 1.0, rel_tol=1e-6), "docs/stream.md: 1 mm along k"
        # docs/stream.md: the first pixel at the origin, so the centre is half the image away
        centre = [(WIDTH - 1) / 2 * SIM_SPACING_MM[1], (HEIGHT - 1) / 2 * SIM_SPACING_MM[0], 0.0]
        np.testing.assert_allclose(image["p"], centre, atol=1e-4)
        pixels = image["voxels"][0, :, :, 0]
        assert pixels.shape == (HEIGHT, WIDTH) and pixels.dtype == np.uint8
        assert int(pixels.max()) > int(pixels.min()), "a constant image"
        # docs/stream.md: "the timestamp is the capture time" (the header's capture_wall_ns)
        stamp = header["timestamp_ns"]
        assert 0 <= wall_ns - stamp < 5e9, "the timestamp is not a plausible wall-clock time"
        stamps.append(stamp)
        nearest = min(by_capture, key=lambda capture: abs(capture - stamp))
        if abs(nearest - stamp) < 2_000:  # float seconds in the sender: well under a microsecond off
            matched += 1
            np.testing.assert_array_equal(pixels, by_capture[nearest])
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), "timestamps not increasing"
    assert matched >= 3, f"only {matched} of {len(igtl)} IMAGE messages matched a ZeroMQ frame's capture time"
