"""The TensorRT engine cache without TensorRT: keys, stale/foreign detection, atomic writes, profiles."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from engine.build import parse_config
from engine.files import sha256_file
from engine.trt_cache import (
    DEFAULT_PROFILE,
    EngineCache,
    EngineKey,
    Profile,
    parse_hw,
    read_engine_file,
)


@pytest.fixture
def key(tmp_path: Path) -> EngineKey:
    onnx = tmp_path / "drnn.onnx"
    onnx.write_bytes(b"not really onnx, but bytes to hash")
    return EngineKey(
        onnx_sha256=sha256_file(onnx),
        tensorrt_version="10.13.0",
        gpu_name="NVIDIA H100 80GB HBM3",
        compute_capability="9.0",
        sm_count=132,
        precision="fp16",
        profile=DEFAULT_PROFILE,
    )


def test_every_field_changes_the_digest(key: EngineKey) -> None:
    changes = {
        "onnx_sha256": "0" * 64,
        "tensorrt_version": "11.0.0",
        "gpu_name": "NVIDIA L4",
        "compute_capability": "8.9",
        "sm_count": 58,
        "precision": "strongly-typed",
        "profile": Profile((64, 64), (256, 256), (1080, 1920)),
    }
    digests = {key.digest()} | {dataclasses.replace(key, **{f: v}).digest() for f, v in changes.items()}
    assert len(digests) == 1 + len(changes)
    assert key.digest() == dataclasses.replace(key).digest()  # stable for equal keys


def test_store_then_load_round_trips(tmp_path: Path, key: EngineKey) -> None:
    cache = EngineCache(tmp_path / "cache")
    engine = bytes(range(256)) * 10
    path = cache.store(key, engine)
    assert path.parent == tmp_path / "cache" and path.name.startswith("drnn-")
    assert cache.load(key) == engine
    stored, body = read_engine_file(path)
    assert stored == key.as_dict() and body == engine
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


def test_stale_engine_is_not_loaded(tmp_path: Path, key: EngineKey, caplog: pytest.LogCaptureFixture) -> None:
    cache = EngineCache(tmp_path)
    new_key = dataclasses.replace(key, tensorrt_version="10.14.1")
    cache.store(key, b"old engine")
    # A file for new_key that holds an engine built for key (e.g. copied from another machine):
    cache.engine_path(new_key).write_bytes(cache.engine_path(key).read_bytes())
    with caplog.at_level(logging.WARNING, logger="engine.trt_cache"):
        assert cache.load(new_key) is None
    assert "stale" in caplog.text and "tensorrt_version" in caplog.text


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\x00\x01raw trtexec engine bytes", "bad magic"),
        (b"USDESPECKLE-TRT-1\n\x00\x00\xff\xff{}", "truncated"),
        (b"USDESPECKLE-TRT-1\n\x00\x00\x00\x02{]engine", "corrupt engine header"),
        (b"USDESPECKLE-TRT-1\n\x00\x00\x00\x0b{\"key\": {}}", "holds no engine"),
    ],
)
def test_foreign_or_broken_files_are_rebuilt(
    tmp_path: Path, key: EngineKey, caplog: pytest.LogCaptureFixture, content: bytes, reason: str
) -> None:
    cache = EngineCache(tmp_path)
    cache.engine_path(key).write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="engine.trt_cache"):
        assert cache.load(key) is None
    assert reason in caplog.text
    with pytest.raises(ValueError, match=reason):
        read_engine_file(cache.engine_path(key))


def test_missing_engine_is_a_miss(tmp_path: Path, key: EngineKey) -> None:
    assert EngineCache(tmp_path / "empty").load(key) is None


def test_timing_cache_is_per_gpu_and_version(tmp_path: Path, key: EngineKey) -> None:
    cache = EngineCache(tmp_path)
    path = cache.timing_cache_path(key)
    assert path.name == "timing-nvidia-h100-80gb-hbm3-sm9.0-trt10.13.0.cache"
    assert cache.timing_cache_path(dataclasses.replace(key, precision="fp32")) == path
    assert cache.timing_cache_path(dataclasses.replace(key, gpu_name="NVIDIA L4")) != path


def test_default_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USDESPECKLE_CACHE", str(tmp_path))
    assert EngineCache().root == tmp_path / "tensorrt"


def test_profiles_and_sizes_are_validated() -> None:
    assert parse_hw("1080x1920") == (1080, 1920) and parse_hw(" 64 X 48 ") == (64, 48)
    for bad in ("1080", "0x5", "axb", "10x10x10"):
        with pytest.raises(ValueError, match="HEIGHTxWIDTH"):
            parse_hw(bad)
    with pytest.raises(ValueError, match="width"):
        Profile((64, 64), (512, 32), (1080, 1920))
    assert str(DEFAULT_PROFILE) == "64x64 / 512x512 / 1080x1920"


def test_build_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    config = parse_config(["--onnx", "m.onnx", "--opt", "600x800", "--force"])
    assert config.onnx == Path("m.onnx") and config.force
    assert config.profile == Profile((64, 64), (600, 800), (1080, 1920))
    with pytest.raises(SystemExit) as exc:
        parse_config(["--onnx", "m.onnx", "--min", "2000x2000"])
    assert exc.value.code != 0
    assert "--min/--opt/--max" in capsys.readouterr().err
