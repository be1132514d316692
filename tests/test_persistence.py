"""Persistence (engine.persistence): each despeckled frame averaged with the previous outputs (a
float32 running average), in the function and in the live chain (real ZeroMQ sockets on loopback, the identity backend, a
folder source, the recorder's PNGs)."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_stream_chain import free_endpoint, recorded_to_the_end

from engine.persistence import check_persistence, persist, persistence_arg
from stream.config import ChainConfig, OutputConfig, SourceConfig


def test_persist_averages_in_floating_point() -> None:
    zeros, frame = np.zeros((4, 6), np.uint8), np.full((4, 6), 200, np.uint8)
    state, out = persist(None, zeros, 0.25)
    assert state.dtype == np.float32 and np.array_equal(out, zeros)  # the first frame as it is
    state, out = persist(state, frame, 0.25)
    assert np.array_equal(out, np.full((4, 6), 150, np.uint8))  # 0.75 * 200 + 0.25 * 0
    state, out = persist(state, frame, 0.25)
    assert np.array_equal(out, np.full((4, 6), 188, np.uint8))  # 0.75 * 200 + 0.25 * 150 = 187.5 -> 188
    assert persist(state, frame, 0.0) == (None, frame)  # no persistence: the frame itself, no state
    state, out = persist(np.zeros((4, 5), np.float32), frame, 0.5)
    assert out is not frame and np.array_equal(out, frame)  # a state of another shape: starts afresh


@pytest.mark.parametrize("weight", [0.5, 0.75])
def test_the_lag_is_weight_over_one_minus_weight_frames(weight: float) -> None:
    """A step of the scene (0 -> 200) reaches the output late by ``sum_k (1 - out_k / 200)`` frames,
    the documented ``a / (1 - a)`` (1 frame at 0.5, 3 at 0.75), within the rounding to grey levels."""
    state, _ = persist(None, np.zeros((2, 2), np.uint8), weight)
    lag, outs = 0.0, []
    for _ in range(80):
        state, out = persist(state, np.full((2, 2), 200, np.uint8), weight)
        lag += 1.0 - float(out[0, 0]) / 200.0
        outs.append(int(out[0, 0]))
    assert lag == pytest.approx(weight / (1.0 - weight), abs=0.05)
    assert outs[-1] == 200  # the running average reaches the new scene: no trace of the old one stays


@pytest.mark.parametrize("bad", [1.0, -0.1, float("nan")])
def test_bad_persistence_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="persistence"):
        check_persistence(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="persistence"):
        persistence_arg(str(bad))


def _persisted_chain(tmp_path: Path, sources: list[np.ndarray], fps: float) -> tuple[list[np.ndarray], list[int]]:
    """The frames a chain (identity backend, persistence 0.5) published from ``sources`` (a folder
    source at ``fps``), and each one's sequence number: its index in ``sources``."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(sources):
        cv2.imwrite(str(folder / f"f{i}.png"), frame)
    record = tmp_path / "rec"
    cfg = ChainConfig(source=SourceConfig(spec=str(folder), fps=fps), backend="identity", persistence=0.5,
                      output=OutputConfig(publish=free_endpoint(), record=record))
    published = recorded_to_the_end(cfg)
    return published, [int(p.stem) for p in sorted(record.glob("*.png"))]


def test_the_chain_publishes_each_frame_blended_with_the_one_before(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    sources = [rng.integers(0, 256, (24, 32), dtype=np.uint8) for _ in range(6)]
    # 10 frames/s: the publisher has 100 ms per frame, so it drops none (a dropped output would still be blended in)
    published, seqs = _persisted_chain(tmp_path, sources, fps=10.0)
    assert len(published) >= 3
    state = sources[seqs[0]].astype(np.float32)
    assert np.array_equal(published[0], sources[seqs[0]])  # nothing before it
    for k in range(1, len(published)):
        state = np.float32(0.5) * sources[seqs[k]].astype(np.float32) + np.float32(0.5) * state
        assert np.array_equal(published[k], np.rint(state).astype(np.uint8)), f"frame {seqs[k]}"
        assert not np.array_equal(published[k], sources[seqs[k]])


def test_the_chain_starts_afresh_after_a_pause(tmp_path: Path) -> None:
    """Frames captured more than PERSISTENCE_GAP_S apart (a frozen or paused source): each published
    frame is its own despeckled frame, with nothing of the scene before the pause."""
    from stream.stages import PERSISTENCE_GAP_S

    rng = np.random.default_rng(6)
    sources = [rng.integers(0, 256, (16, 16), dtype=np.uint8) for _ in range(3)]
    published, seqs = _persisted_chain(tmp_path, sources, fps=1.0 / (PERSISTENCE_GAP_S + 0.25))
    assert len(published) >= 2
    for k, frame in enumerate(published):
        assert np.array_equal(frame, sources[seqs[k]]), f"frame {seqs[k]}"


def test_offline_cine_is_persisted_frame_by_frame(tmp_path: Path) -> None:
    """``engine.despeckle --persistence`` on a DICOM cine (written losslessly): frame k of the output is
    the rounded running average of the despeckled frames; a picture is despeckled as it is."""
    import pydicom
    from dicom_testutil import us_dataset

    from engine.despeckle import main as despeckle_main
    from engine.registry import create_despeckler
    from training.sim import sweep_frames

    frames = [f for _, f in zip(range(3), sweep_frames((48, 64), seed=2, speed_px=4.0), strict=False)]
    ds = us_dataset()
    ds.set_pixel_data(np.stack(frames), "MONOCHROME2", 8)
    ds.save_as(tmp_path / "cine.dcm", enforce_file_format=True)
    cv2.imwrite(str(tmp_path / "still.png"), frames[0])
    out = tmp_path / "out"
    assert despeckle_main([str(tmp_path / "cine.dcm"), str(tmp_path / "still.png"), "-o", str(out),
                           "--weights", "fast", "--backend", "onnxruntime", "--persistence", "0.5"]) == 0
    written = pydicom.dcmread(out / "cine.dcm").pixel_array
    with create_despeckler("onnxruntime", "fast", device="cpu") as fast:
        despeckled = [fast.infer(f) for f in frames]
    state = despeckled[0].astype(np.float32)
    assert np.array_equal(written[0], despeckled[0])
    for k in (1, 2):
        state = np.float32(0.5) * despeckled[k].astype(np.float32) + np.float32(0.5) * state
        assert np.array_equal(written[k], np.rint(state).astype(np.uint8))
    assert np.array_equal(cv2.imread(str(out / "still.png"), cv2.IMREAD_GRAYSCALE), despeckled[0])
