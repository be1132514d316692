"""Grey levels (engine.levels): frames darker, brighter, flatter or harsher than the training
frames mapped into the training range for the model and back, through the registry, the offline
command line, evaluate and the live chain (the shipped fast ONNX model, real files, real ZeroMQ
sockets on loopback)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from test_stream_chain import free_endpoint, recorded_to_the_end

from benchmarks.evaluate import main as evaluate_main
from benchmarks.metrics import speckle_grain_size
from engine.despeckle import main as despeckle_main
from engine.levels import (
    DEFAULT_LEVELS,
    PRESET_LEVELS,
    TRAINED_LEVEL,
    TRAINED_SPREAD,
    LevelledDespeckler,
    at_working_levels,
    level_map,
    level_ranges,
    tile_stats,
    with_levels,
    working_levels,
)
from engine.pixels import ResampledDespeckler, with_spacing
from engine.registry import create_despeckler
from engine.strength import BlendedDespeckler
from stream.config import ChainConfig, OutputConfig, SourceConfig
from stream.run import main as run_main
from training.sim import simulate_pair
from training.sim.dataset import write_dataset


def affine(frame: np.ndarray, offset: float, gain: float = 1.0) -> np.ndarray:
    """``clip(offset + gain * frame)`` as uint8: a probe's gain and dynamic range changed."""
    return np.clip(np.rint(offset + gain * frame.astype(np.float64)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def pairs() -> list[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
    return [simulate_pair(seed, (128, 128)) for seed in (2, 3)]


@pytest.fixture(scope="module")
def fast_off():
    with create_despeckler("onnxruntime", "fast", device="cpu", levels="off") as d:
        yield d


def test_tile_stats_follow_gain_and_contrast_and_ignore_black_surroundings(pairs) -> None:
    x = pairs[0][0]
    m, s = tile_stats(x)
    assert TRAINED_LEVEL[0] < m < TRAINED_LEVEL[1] and TRAINED_SPREAD[0] < s < TRAINED_SPREAD[1]
    m2, s2 = tile_stats(affine(x, 30.0, 0.5))
    assert m2 == pytest.approx(30 + 0.5 * m, abs=1.0) and s2 == pytest.approx(0.5 * s, abs=1.0)
    framed = np.zeros((128, 256), np.uint8)  # the frame beside as much black (a sector's outside)
    framed[:, :128] = x
    assert tile_stats(framed) == pytest.approx((m, s), abs=1.0)
    assert tile_stats(np.zeros((64, 64), np.uint8)) is None and tile_stats(x[:10, :10]) is None


def test_a_large_anechoic_region_does_not_set_the_level(pairs, fast_off) -> None:
    """A cyst or bladder over 5/8 of the frame (its speckle 100 grey levels down, dark but not black):
    the level and spread are the tissue's, and the model sees the tissue as it does without the cyst."""
    for x, _, _ in pairs:
        cyst = x.copy()
        cyst[:, :80] = affine(x[:, :80], -100.0)
        assert np.median(cyst) < tile_stats(x)[0] - 60  # most of the frame is the dark region
        m, s = tile_stats(cyst)
        assert m == pytest.approx(tile_stats(x[:, 80:])[0], abs=10.0) and s == pytest.approx(tile_stats(x[:, 80:])[1], abs=7.0)
        with_cyst = at_working_levels(cyst, fast_off.infer, *level_ranges("preset"))[:, 80 + 24:]
        alone = at_working_levels(x[:, 80:], fast_off.infer, *level_ranges("preset"))[:, 24:]
        assert np.abs(with_cyst.astype(np.float64) - alone).mean() < 7.0


def test_modes_and_their_ranges() -> None:
    assert level_ranges("range") == (TRAINED_LEVEL, TRAINED_SPREAD) and level_ranges("off") is None
    assert level_ranges("preset") == ((PRESET_LEVELS[0],) * 2, (PRESET_LEVELS[1],) * 2) and DEFAULT_LEVELS == "preset"
    with pytest.raises(ValueError, match="'loud'"):
        level_ranges("loud")
    assert working_levels(60.0, 30.0) == (TRAINED_LEVEL[0], 30.0)
    assert working_levels(150.0, 12.0) == (150.0, TRAINED_SPREAD[0])
    assert working_levels(150.0, 3.0) == (150.0, 12.0)  # a flat picture, not speckle: stretched 4x at most
    assert working_levels(120.0, 200.0, *level_ranges("preset")) == (120.0, 50.0)


def test_a_frame_inside_the_range_is_not_mapped_and_a_dark_one_is_mapped_there_and_back(pairs) -> None:
    x = pairs[0][0]
    assert level_map(x) is None
    dark = affine(x, -60.0)
    lm = level_map(dark)
    assert lm is not None and (lm.m_work, lm.s_work) == working_levels(lm.m, lm.s)
    fed = lm.forward(dark)
    lit = dark > 0  # the clipped pixels cannot come back
    assert lm.m_work == TRAINED_LEVEL[0] and np.ptp(fed[lit].astype(int) - dark[lit]) <= 1  # a shift up
    flat = affine(x, 60.0, 0.5)  # no pixel clipped: the frame fed has the working level and spread
    lm_flat = level_map(flat)
    assert tile_stats(lm_flat.forward(flat)) == pytest.approx((lm_flat.m_work, lm_flat.s_work), abs=1.0)
    assert np.abs(lm.back(fed).astype(int) - dark.astype(int))[lit].max() <= 1
    sector = dark.copy()
    sector[:, :40] = 0  # a black outside keeps its black both ways
    lm = level_map(sector)
    assert (lm.forward(sector)[:, :36] == 0).all() and (lm.back(np.full_like(sector, 200))[:, :36] == 0).all()


@pytest.mark.parametrize("mode", ["preset", "range"])
def test_the_model_on_a_dark_frame_keeps_its_fine_grain_only_with_the_mapping(pairs, fast_off, mode) -> None:
    on = with_levels(fast_off, mode)
    for x, _, truth in pairs:
        dark = affine(x, -60.0)
        par = truth["parenchyma"]
        grain_off = speckle_grain_size(fast_off.infer(dark), par, axis=1)
        grain_on = speckle_grain_size(on.infer(dark), par, axis=1)
        assert grain_on < 0.7 * grain_off, (grain_on, grain_off)
        assert grain_on < speckle_grain_size(x, par, axis=1)
    assert on.mapped == len(pairs)


def test_preset_maps_a_frame_inside_the_range_too_and_range_leaves_it(pairs, fast_off) -> None:
    x = pairs[0][0]
    preset, ranged = with_levels(fast_off, "preset"), with_levels(fast_off, "range")
    np.testing.assert_array_equal(ranged.infer(x), fast_off.infer(x))
    lm = level_map(x, *level_ranges("preset"))
    assert lm is not None and (lm.m_work, lm.s_work) == PRESET_LEVELS
    np.testing.assert_array_equal(preset.infer(x), lm.back(fast_off.infer(lm.forward(x))))
    assert preset.mapped == 1 and ranged.mapped == 0


def test_the_wrapper_is_exactly_the_backend_inside_the_range_and_the_mapping_outside(pairs, fast_off, caplog) -> None:
    caplog.set_level(logging.INFO, logger="engine.levels")
    on = LevelledDespeckler(fast_off)
    x = pairs[1][0]
    np.testing.assert_array_equal(on.infer(x), fast_off.infer(x))
    np.testing.assert_array_equal(on.submit(x).result(), fast_off.infer(x))
    flat = affine(x, 60.0, 0.5)  # a flatter frame: spread below the range
    lm = level_map(flat)
    expected = lm.back(fast_off.infer(lm.forward(flat)))
    np.testing.assert_array_equal(on.infer(flat), expected)
    np.testing.assert_array_equal(on.submit(flat).result(), expected)
    np.testing.assert_array_equal(at_working_levels(flat, fast_off.infer), expected)
    assert on.mapped == 2 and "grey levels mapped to level 85-193, spread 22-44" in on.describe()
    logged = [r.getMessage() for r in caplog.records if r.name == "engine.levels"]
    assert len(logged) == 1 and f"level {lm.m:.0f} and spread {lm.s:.0f}" in logged[0]


def test_registry_puts_the_mapping_innermost_and_checks_the_mode_first() -> None:
    with create_despeckler("onnxruntime", "fast", device="cpu", strength=0.5, spacing_mm=(0.1, 0.1)) as d:
        assert isinstance(d, BlendedDespeckler) and isinstance(d.inner, ResampledDespeckler)
        assert isinstance(d.inner.inner, LevelledDespeckler)
    with create_despeckler("onnxruntime", "fast", device="cpu", strength=0.5) as d:
        view = with_spacing(d, (0.6, 0.6))  # what the stream's stage does per spacing
        assert isinstance(view.inner, ResampledDespeckler) and isinstance(view.inner.inner, LevelledDespeckler)
    with create_despeckler("onnxruntime", "fast", device="cpu") as d:
        assert isinstance(d, LevelledDespeckler) and d.level_range == (PRESET_LEVELS[0],) * 2
    with create_despeckler("onnxruntime", "fast", device="cpu", levels="off") as d:
        assert not isinstance(d, LevelledDespeckler)
    with create_despeckler("identity") as d:
        assert d.name == "identity" and not isinstance(d, LevelledDespeckler)
    with pytest.raises(ValueError, match="grey-level mode"):
        create_despeckler("onnxruntime", "/no/such/model.onnx", levels="loud")


def test_offline_command_maps_a_dark_picture_unless_told_off(tmp_path, pairs, fast_off) -> None:
    import cv2

    dark = affine(pairs[0][0], -60.0)
    cv2.imwrite(str(tmp_path / "dark.png"), dark)
    for mode in ("preset", "off"):
        assert despeckle_main([str(tmp_path / "dark.png"), "-o", str(tmp_path / mode), "--backend", "onnxruntime",
                               "--weights", "fast", "--levels", mode]) == 0
    auto = cv2.imread(str(tmp_path / "preset" / "dark.png"), cv2.IMREAD_GRAYSCALE)
    off = cv2.imread(str(tmp_path / "off" / "dark.png"), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(off, fast_off.infer(dark))
    np.testing.assert_array_equal(auto, with_levels(fast_off).infer(dark))
    assert not np.array_equal(auto, off)


def test_evaluate_names_the_mode_and_measures_it(tmp_path, capsys) -> None:
    write_dataset(tmp_path / "set", count=0, size=64, seed=5, paired=True, eval_count=2)
    assert evaluate_main(["--weights", "fast", "--eval", str(tmp_path / "set" / "eval"), "--levels", "range",
                          "--json", str(tmp_path / "r.json")]) == 0
    assert "fast (levels range):" in capsys.readouterr().out


def test_live_chain_maps_a_dark_source(tmp_path, pairs, fast_off) -> None:
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    dark = affine(pairs[0][0], -60.0)
    cv2.imwrite(str(folder / "f0.png"), dark)
    cfg = ChainConfig(source=SourceConfig(spec=str(folder)), backend="onnxruntime", weights=Path("fast"),
                      output=OutputConfig(publish=free_endpoint(), record=tmp_path / "rec"))
    (out,) = recorded_to_the_end(cfg)
    np.testing.assert_array_equal(out, with_levels(fast_off).infer(dark))


@pytest.mark.parametrize("main", [despeckle_main, run_main, evaluate_main])
def test_a_bad_mode_is_one_line_naming_the_flag(main, tmp_path, capsys) -> None:
    argv = {despeckle_main: [str(tmp_path), "-o", str(tmp_path / "out")], run_main: [],
            evaluate_main: ["--weights", "fast", "--eval", str(tmp_path)]}[main]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--levels", "loud"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert "--levels" in err and "'loud'" in err
