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

from engine.persistence import Persistence, check_motion, check_persistence, motion_arg, persistence_arg
from stream.config import ChainConfig, OutputConfig, SourceConfig


def test_persistence_averages_in_floating_point() -> None:
    zeros, frame = np.zeros((4, 6), np.uint8), np.full((4, 6), 200, np.uint8)
    average = Persistence(0.25)
    out = average(zeros)
    assert average.state.dtype == np.float32 and np.array_equal(out, zeros) and out is not zeros  # the first as it is
    assert np.array_equal(average(frame), np.full((4, 6), 150, np.uint8))  # 0.75 * 200 + 0.25 * 0
    out = average(frame)
    assert np.array_equal(out, np.full((4, 6), 188, np.uint8))  # 0.75 * 200 + 0.25 * 150 = 187.5 -> 188
    assert np.array_equal(average(frame), np.full((4, 6), 197, np.uint8)) and out[0, 0] == 188  # outputs are not reused
    assert Persistence(0.0)(frame) is frame  # no persistence: the frame itself
    assert np.array_equal(average(np.full((4, 5), 9, np.uint8)), np.full((4, 5), 9, np.uint8))  # another shape: afresh
    average.reset()
    assert np.array_equal(average(zeros), zeros)  # reset: afresh


@pytest.mark.parametrize("weight", [0.5, 0.75])
def test_the_lag_is_weight_over_one_minus_weight_frames(weight: float) -> None:
    """A step of the scene (0 -> 200) reaches the output late by ``sum_k (1 - out_k / 200)`` frames,
    the documented ``a / (1 - a)`` (1 frame at 0.5, 3 at 0.75), within the rounding to grey levels."""
    average = Persistence(weight)
    average(np.zeros((2, 2), np.uint8))
    lag, outs = 0.0, []
    for _ in range(80):
        out = average(np.full((2, 2), 200, np.uint8))
        lag += 1.0 - float(out[0, 0]) / 200.0
        outs.append(int(out[0, 0]))
    assert lag == pytest.approx(weight / (1.0 - weight), abs=0.05)
    assert outs[-1] == 200  # the running average reaches the new scene: no trace of the old one stays


def test_motion_adaptive_weights_follow_the_formula() -> None:
    """One step against the module docstring's formula, computed independently in float64:
    ``a_p = a max(0, 1 - |G_2 * (D - state)| / M)``, the output ``round(D - a_p (D - state))``;
    a colour frame gets the same in each channel."""
    import cv2

    rng = np.random.default_rng(4)
    before, frame = (rng.integers(0, 256, (40, 50), dtype=np.uint8) for _ in range(2))
    average = Persistence(0.8, motion=20.0)
    average(before)
    out = average(frame)
    diff = frame.astype(np.float64) - before
    smooth = cv2.GaussianBlur(diff, (0, 0), 2.0, borderType=cv2.BORDER_REFLECT)
    w = 0.8 * np.clip(1.0 - np.abs(smooth) / 20.0, 0.0, 1.0)
    assert (w == 0).any() and ((w > 0.1) & (w < 0.7)).any() and w.max() > 0.75  # large, middling and small changes
    assert np.abs(out.astype(np.float64) - (frame - w * diff)).max() <= 0.5 + 1e-3
    colour = Persistence(0.8, motion=20.0)
    colour(np.dstack([before] * 3))
    assert all(np.array_equal(c, out) for c in np.moveaxis(colour(np.dstack([frame] * 3)), 2, 0))


def test_motion_adaptive_persistence_passes_what_moved_and_averages_the_rest() -> None:
    """A bar appearing on still noise (a needle arriving) is published at once; the noise around it
    is averaged nearly as plain persistence averages it; ``motion`` 0 is plain persistence."""
    rng = np.random.default_rng(2)
    frames = [np.clip(100 + rng.normal(0, 6, (64, 64)), 0, 255).astype(np.uint8) for _ in range(12)]
    for f in frames[6:]:
        f[30:34, 8:56] = 230  # the bar from frame 6 on
    averages = {"plain": Persistence(0.75), "adaptive": Persistence(0.75, motion=16.0),
                "motion 0": Persistence(0.75, motion=0.0)}
    outs = {k: [a(f) for f in frames] for k, a in averages.items()}
    bar = np.s_[30:34, 8:56]
    assert np.abs(outs["adaptive"][6][bar].astype(int) - 230).max() <= 2  # at once (within a rounding)
    assert outs["plain"][6][bar].mean() < 140  # plain: a quarter of the way there
    far = np.s_[0:16, :]  # still noise away from the bar: averaged in both
    spread = {k: float(np.std([o[far].astype(float) for o in v[8:]], axis=0).mean()) for k, v in outs.items()}
    raw = float(np.std([f[far].astype(float) for f in frames[8:]], axis=0).mean())
    assert spread["adaptive"] < 0.7 * raw and spread["plain"] < spread["adaptive"], (spread, raw)
    assert all(np.array_equal(a, b) for a, b in zip(outs["motion 0"], outs["plain"], strict=True))


@pytest.mark.parametrize("bad", [1.0, -0.1, float("nan")])
def test_bad_persistence_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="persistence"):
        check_persistence(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="persistence"):
        persistence_arg(str(bad))


@pytest.mark.parametrize("bad", [-1.0, 256.0, float("nan")])
def test_bad_persistence_motion_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="motion"):
        check_motion(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="motion"):
        motion_arg(str(bad))
    with pytest.raises(ValueError, match="motion"):
        Persistence(0.5, bad)


def test_motion_without_persistence_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a persistence above 0"):
        Persistence(0.0, 16.0)


def _persisted_chain(tmp_path: Path, sources: list[np.ndarray], fps: float,
                     motion: float = 0.0, roi: tuple[int, int, int, int] | None = None) -> tuple[list[np.ndarray], list[int]]:
    """The frames a chain (identity backend, persistence 0.5, motion-adaptive with ``motion``, the
    box ``roi`` despeckled) published from ``sources`` (a folder source at ``fps``), and each one's
    sequence number: its index in ``sources``."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(sources):
        cv2.imwrite(str(folder / f"f{i}.png"), frame)
    record = tmp_path / "rec"
    cfg = ChainConfig(source=SourceConfig(spec=str(folder), fps=fps), backend="identity", persistence=0.5,
                      persistence_motion=motion, roi=roi, output=OutputConfig(publish=free_endpoint(), record=record))
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


def test_the_chain_averages_only_the_despeckled_region(tmp_path: Path) -> None:
    """Outside ``--roi`` every pixel passes through as it came (a scanner's frame counter or
    calipers must not ghost); inside it the frames are averaged as without a box."""
    rng = np.random.default_rng(9)
    sources = [rng.integers(0, 256, (40, 48), dtype=np.uint8) for _ in range(6)]
    box = np.s_[8:32, 10:40]  # roi (x, y, w, h) = (10, 8, 30, 24)
    published, seqs = _persisted_chain(tmp_path, sources, fps=10.0, roi=(10, 8, 30, 24))
    assert len(published) >= 3
    average = Persistence(0.5)
    for k, frame in enumerate(published):
        expected = sources[seqs[k]].copy()
        expected[box] = average(sources[seqs[k]][box])
        assert np.array_equal(frame, expected), f"frame {seqs[k]}"
        if k:
            assert not np.array_equal(frame[box], sources[seqs[k]][box])  # averaged inside


def test_the_chain_adapts_its_persistence_to_motion(tmp_path: Path) -> None:
    """``persistence_motion``: the chain publishes what :class:`Persistence` with that motion gives, so a
    square that jumps is shown where it is now while the still background is averaged."""
    rng = np.random.default_rng(7)
    sources = []
    for i in range(6):
        frame = np.clip(90 + rng.normal(0, 8, (32, 40)), 0, 255).astype(np.uint8)
        frame[4 + 4 * i:12 + 4 * i, 10:20] = 220
        sources.append(frame)
    published, seqs = _persisted_chain(tmp_path, sources, fps=10.0, motion=20.0)
    assert len(published) >= 3
    average = Persistence(0.5, 20.0)
    average(sources[seqs[0]])
    for k in range(1, len(published)):
        assert np.array_equal(published[k], average(sources[seqs[k]])), f"frame {seqs[k]}"
        square = np.s_[4 + 4 * seqs[k] + 2:12 + 4 * seqs[k] - 2, 12:18]
        assert published[k][square].min() >= 200  # the square where it is now, undimmed


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


@pytest.mark.parametrize("motion", [0.0, 16.0])
def test_offline_cine_is_persisted_frame_by_frame(tmp_path: Path, motion: float) -> None:
    """``engine.despeckle --persistence`` on a DICOM cine (written losslessly): frame k of the output is
    the rounded running average of the despeckled frames (with ``--persistence-motion``, what
    :class:`Persistence` gives with it); a picture is despeckled as it is."""
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
                           "--weights", "fast", "--backend", "onnxruntime", "--persistence", "0.5",
                           "--persistence-motion", str(motion)]) == 0
    written = pydicom.dcmread(out / "cine.dcm").pixel_array
    with create_despeckler("onnxruntime", "fast", device="cpu") as fast:
        despeckled = [fast.infer(f) for f in frames]
    state = despeckled[0].astype(np.float32)
    adaptive = Persistence(0.5, motion)
    adaptive(despeckled[0])
    assert np.array_equal(written[0], despeckled[0])
    for k in (1, 2):
        if motion:
            plain = np.rint(np.float32(0.5) * despeckled[k].astype(np.float32) + np.float32(0.5) * adaptive.state)
            expected = adaptive(despeckled[k])
            assert not np.array_equal(expected, plain)  # the sweep moves 4 px a frame: the motion matters here
        else:
            state = np.float32(0.5) * despeckled[k].astype(np.float32) + np.float32(0.5) * state
            expected = np.rint(state).astype(np.uint8)
        assert np.array_equal(written[k], expected)
    assert np.array_equal(cv2.imread(str(out / "still.png"), cv2.IMREAD_GRAYSCALE), despeckled[0])


@pytest.mark.parametrize("argv", [["--persistence-motion", "16"], ["--persistence", "0.5", "--persistence-motion", "x"]],
                         ids=["without persistence", "not a number"])
def test_offline_persistence_motion_refused_in_one_line(tmp_path: Path, argv: list[str],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from engine.despeckle import main as despeckle_main

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((16, 16), np.uint8))
    with pytest.raises(SystemExit) as exc:
        despeckle_main([str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "--persistence-motion" in err
    assert not (tmp_path / "out").exists()  # refused before any work
