"""Speckle size (engine.speckle): frames of unknown pixel spacing run at a speckle size the model
was trained on: the measurement on speckle of known size and on simulator frames, the factors, the
stream's window, the offline command line, the live stage, the evaluation tool and frameinfo (the
shipped fast ONNX model, real files)."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.despeckle import main as despeckle_main
from engine.frameinfo import describe, frame_info
from engine.offline import despeckle_files
from engine.pixels import ResampledDespeckler, at_working_pixels, resize
from engine.registry import create_despeckler
from engine.speckle import (
    SPECKLE_UPPER,
    STEP,
    SpeckleScaledDespeckler,
    at_speckle_scale,
    frames_view,
    picture_function,
    scale_factors,
    speckle_size,
    with_speckle_scale,
)
from engine.strength import BlendedDespeckler, blend
from stream.stages import DespeckleStage
from stream.stats import Stats
from training.sim import simulate_pair

REPO = Path(__file__).resolve().parent.parent
FAST = REPO / "weights" / "drnn_fast.onnx"


def speckle(shape: tuple[int, int], sigma: tuple[float, float], seed: int = 0) -> np.ndarray:
    """Fully developed speckle of a known size: complex Gaussian noise low-passed by a Gaussian of
    ``sigma`` (rows, columns) pixels, envelope log-compressed at 50 dB around grey level 128."""
    rng = np.random.default_rng(seed)
    field = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    smooth = (cv2.GaussianBlur(field.real, (0, 0), sigma[1], sigmaY=sigma[0])
              + 1j * cv2.GaussianBlur(field.imag, (0, 0), sigma[1], sigmaY=sigma[0]))
    db = 20 * np.log10(np.abs(smooth) + 1e-12)
    return np.clip(128 + (db - np.median(db)) * 255 / 50, 1, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def tissue() -> np.ndarray:
    """A simulator frame at the training pixel (0.25 mm, preset probes)."""
    x, _, _ = simulate_pair(5, (128, 128))
    return x


@pytest.fixture(scope="module")
def fine(tissue: np.ndarray) -> np.ndarray:
    """The same tissue with rows sampled 2.5 times as finely (0.1 mm along depth)."""
    return cv2.resize(tissue, (128, 320), interpolation=cv2.INTER_LINEAR)


def test_the_size_follows_the_speckle_along_each_axis() -> None:
    base = speckle((256, 256), (1.0, 2.0))
    taller = speckle((256, 256), (2.0, 2.0))
    wider = speckle((256, 256), (1.0, 4.0))
    (ax, lat), (ax_t, lat_t), (ax_w, lat_w) = (speckle_size(f) for f in (base, taller, wider))
    assert 1.6 < ax_t / ax < 2.4 and 0.85 < lat_t / lat < 1.15  # twice the correlation along rows
    assert 1.6 < lat_w / lat < 2.4 and 0.85 < ax_w / ax < 1.15  # twice along columns
    assert lat > ax  # wider than tall, as drawn


def test_nothing_to_measure_gives_none_and_no_resampling() -> None:
    assert speckle_size(np.zeros((128, 128), np.uint8)) is None  # all black
    assert speckle_size(np.full((20, 20), 120, np.uint8)) is None  # smaller than a tile
    assert scale_factors(None) == (1.0, 1.0)


def test_factors_bring_an_axis_above_the_range_to_its_upper_end_in_steps() -> None:
    assert scale_factors(SPECKLE_UPPER) == (1.0, 1.0) and scale_factors((1.0, 1.0)) == (1.0, 1.0)
    f_rows, f_cols = scale_factors((2.3 * SPECKLE_UPPER[0], 0.5 * SPECKLE_UPPER[1]))
    assert f_cols == 1.0 and f_rows == pytest.approx(2.3, abs=STEP / 2) and (f_rows / STEP).is_integer()
    assert scale_factors((SPECKLE_UPPER[0], 1.8 * SPECKLE_UPPER[1])) == (1.0, pytest.approx(1.8, abs=STEP / 2))
    assert scale_factors((1.05 * SPECKLE_UPPER[0], SPECKLE_UPPER[1])) == (1.0, 1.0)  # within half a step: as it is


def test_a_simulator_frame_runs_as_it_is_and_finer_rows_are_shrunk(tissue: np.ndarray, fine: np.ndarray) -> None:
    assert scale_factors(speckle_size(tissue)) == (1.0, 1.0)
    f_rows, f_cols = scale_factors(speckle_size(fine))
    assert f_rows >= 1.5 and f_cols == 1.0


def test_at_speckle_scale_runs_the_model_on_the_shrunk_frame_and_gives_the_frame_back(
        fast, tissue: np.ndarray, fine: np.ndarray) -> None:
    assert np.array_equal(at_speckle_scale(tissue, fast.infer), fast.infer(tissue))  # passed through
    seen: list[tuple[int, int]] = []

    def model(frame: np.ndarray) -> np.ndarray:
        seen.append(frame.shape)
        return fast.infer(frame)

    out = at_speckle_scale(fine, model)
    f_rows, _ = scale_factors(speckle_size(fine))
    assert seen == [(round(fine.shape[0] / f_rows), fine.shape[1])] and out.shape == fine.shape
    assert np.array_equal(out, resize(fast.infer(resize(fine, seen[0])), fine.shape))


def test_the_stream_view_takes_the_median_of_recent_frames_and_starts_afresh_on_a_new_shape(
        fast, tissue: np.ndarray, fine: np.ndarray, caplog: pytest.LogCaptureFixture) -> None:
    view = SpeckleScaledDespeckler(fast, window=3, every=1)
    with caplog.at_level(logging.INFO, logger="engine.speckle"):
        assert np.array_equal(view.infer(tissue), fast.infer(tissue)) and view.factors == (1.0, 1.0)
        expected = at_speckle_scale(fine, fast.infer)
        assert np.array_equal(view.infer(fine), expected)  # a new shape: its own measurement alone
        assert view.factors == scale_factors(speckle_size(fine)) and view.factors[0] > 1
        flat = np.full_like(fine, 120)  # nothing to measure: the window's median stands
        assert np.array_equal(view.infer(flat), resize(fast.infer(resize(flat, expected_shape(fine, view))),
                                                       fine.shape))
        outs = view.map([fine] * 3)  # the submit path, in order
        assert all(np.array_equal(o, expected) for o in outs)
    told = [r.getMessage() for r in caplog.records if r.name == "engine.speckle"]
    assert told == [f"speckle size: frames of 320x128 run {view.factors[0]:g} x fewer rows, 1 x fewer columns"]
    assert "speckle scale" in view.describe()
    for bad in ({"window": 0}, {"every": 0}):
        with pytest.raises(ValueError, match="window and interval"):
            SpeckleScaledDespeckler(fast, **bad)


def test_the_stream_view_measures_every_nth_frame(fast, fine: np.ndarray) -> None:
    x, _, _ = simulate_pair(6, fine.shape)  # the training pixel, in the fine frame's shape
    assert scale_factors(speckle_size(x)) == (1.0, 1.0)
    view = SpeckleScaledDespeckler(fast, window=1, every=4)
    view.infer(fine)
    shrunk = view.factors
    assert shrunk[0] > 1
    for _ in range(3):  # frames 2-4 are not measured: the scale stands
        view.infer(x)
        assert view.factors == shrunk
    view.infer(x)  # frame 5 is
    assert view.factors == (1.0, 1.0)


def expected_shape(frame: np.ndarray, view: SpeckleScaledDespeckler) -> tuple[int, int]:
    return round(frame.shape[0] / view.factors[0]), round(frame.shape[1] / view.factors[1])


def test_a_live_view_measures_on_its_own_thread_and_scales_the_frames_after(fast, fine: np.ndarray) -> None:
    x, _, _ = simulate_pair(6, fine.shape)  # the training pixel, in the fine frame's shape
    view = SpeckleScaledDespeckler(fast, window=1, every=1, background=True)
    view.infer(fine)  # a shape's first frame is measured at once
    shrunk = view.factors
    assert shrunk[0] > 1
    assert np.array_equal(view.infer(x), resize(fast.infer(resize(x, expected_shape(x, view))), x.shape))
    assert view._measuring is not None and view._measuring.name == "speckle-size"  # x measured aside, not waited for
    for _ in range(100):  # its result scales a later frame
        view._measuring.join(timeout=5)
        view.infer(x)
        if view.factors == (1.0, 1.0):
            break
    assert view.factors == (1.0, 1.0)
    assert np.array_equal(view.infer(x), fast.infer(x))


def test_views_keep_the_blend_outermost_and_follow_the_pixel_mode(fast, fine: np.ndarray) -> None:
    half = with_speckle_scale(BlendedDespeckler(fast, 0.5))
    assert isinstance(half, BlendedDespeckler) and isinstance(half.inner, SpeckleScaledDespeckler)
    assert np.array_equal(half.infer(fine), blend(fine, at_speckle_scale(fine, fast.infer), 0.5))
    with create_despeckler("identity") as identity:
        assert with_speckle_scale(identity) is identity
    assert isinstance(frames_view(fast, "auto", None), SpeckleScaledDespeckler)
    assert isinstance(frames_view(fast, "auto", (0.1, 0.3)), ResampledDespeckler)  # a known spacing wins
    assert frames_view(fast, "spacing", None) is fast and frames_view(fast, "off", None) is fast


def test_offline_auto_shrinks_a_picture_by_its_speckle_and_spacing_leaves_it(fast, fine: np.ndarray,
                                                                            tmp_path: Path) -> None:
    src = tmp_path / "scan.png"
    cv2.imwrite(str(src), fine)
    for mode, expected in (("auto", at_speckle_scale(fine, fast.infer)), ("spacing", fast.infer(fine))):
        report = despeckle_files(fast, [src], tmp_path / mode, pixel_mm=mode)
        assert report.ok and report.frames == 1
        assert np.array_equal(cv2.imread(str(tmp_path / mode / "scan.png"), cv2.IMREAD_UNCHANGED), expected), mode
    assert despeckle_main([str(src), "-o", str(tmp_path / "cli"), "--weights", "fast"]) == 0  # auto by default
    assert np.array_equal(cv2.imread(str(tmp_path / "cli" / "scan.png"), cv2.IMREAD_UNCHANGED),
                          at_speckle_scale(fine, fast.infer))


def test_the_despeckle_stage_runs_frames_without_a_spacing_by_their_speckle(fast, fine: np.ndarray) -> None:
    stage = DespeckleStage(fast, None, None, Stats())  # type: ignore[arg-type]  # no slots: engine_for only
    view = stage.engine_for({"spacing_mm": None})
    assert isinstance(view, SpeckleScaledDespeckler) and stage.engine_for({"spacing_mm": None}) is view
    assert np.array_equal(view.infer(fine), at_speckle_scale(fine, fast.infer))
    assert isinstance(stage.engine_for({"spacing_mm": [0.1, 0.3]}), ResampledDespeckler)  # a known spacing wins
    spacing = DespeckleStage(fast, None, None, Stats(), pixel_mm="spacing")  # type: ignore[arg-type]
    assert spacing.engine_for({"spacing_mm": None}) is fast


def finer_rows(folder: Path, size: int = 96, rows: int = 240) -> Path:
    """A paired set of ``size`` pixels with its rows then sampled ``rows / size`` times as finely
    (pictures and truth masks): pictures whose speckle is longer than the training frames'."""
    for path in sorted(folder.glob("*.png")):
        cv2.imwrite(str(path), cv2.resize(cv2.imread(str(path), 0), (size, rows), interpolation=cv2.INTER_LINEAR))
    for path in sorted(folder.glob("truth_*.npz")):
        truth = dict(np.load(path))
        for k, v in truth.items():
            if v.ndim == 2:
                truth[k] = cv2.resize(v.astype(np.float32), (size, rows), interpolation=cv2.INTER_NEAREST).astype(v.dtype)
        np.savez_compressed(path, **truth)
    return folder


def test_evaluate_runs_pictures_at_their_speckle_scale_unless_told(tmp_path: Path) -> None:
    from benchmarks.evaluate import main as evaluate_main
    from training.sim import write_dataset

    write_dataset(tmp_path / "set", count=0, size=96, seed=14, paired=True, eval_count=2)
    eval_dir = finer_rows(tmp_path / "set" / "eval")
    results = {}
    for flags, name in (([], "fast"), (["--pixel-mm", "off"], "fast (pixels as they come)")):
        out = tmp_path / f"{len(flags)}.json"
        assert evaluate_main(["--weights", "fast", "--eval", str(eval_dir), "--json", str(out), *flags]) == 0
        results[name] = json.loads(out.read_text())[name]
    scaled, plain = results.values()
    assert scaled["x"] == plain["x"] and scaled["g"] != plain["g"]  # the same pairs, another output


def test_the_picture_function_is_the_engines_view_of_a_picture(fast, fine: np.ndarray) -> None:
    assert np.array_equal(picture_function(fast.infer, "auto")(fine), at_speckle_scale(fine, fast.infer))
    run = fast.infer
    assert picture_function(run, "off") is run and picture_function(run, "spacing") is run
    given = picture_function(fast.infer, (0.1, 0.25))(fine)
    assert np.array_equal(given, at_working_pixels(fine, fast.infer, (0.1, 0.25)))
    assert not np.array_equal(given, fast.infer(fine))


def test_the_needle_and_quality_tools_run_pictures_as_the_engine_does(tmp_path: Path) -> None:
    """On pictures of finer rows both tools' DRNN outputs follow ``--pixel-mm``: by the speckle
    unless ``off``; the input's figures are the same either way."""
    from benchmarks.needle import main as needle_main
    from benchmarks.quality import main as quality_main
    from training.sim import write_dataset

    write_dataset(tmp_path / "nd", count=0, size=96, seed=15, paired=True, eval_count=2, needle=True,
                  progress=False)
    eval_dir = finer_rows(tmp_path / "nd" / "eval")
    needle, quality = {}, {}
    for mode in ("auto", "off"):
        out = tmp_path / f"needle_{mode}.json"
        assert needle_main(["--weights", "fast", "--eval", str(eval_dir), "--json", str(out), "--pixel-mm", mode,
                            "--no-progress"]) == 0
        needle[mode] = json.loads(out.read_text())
        assert quality_main(["--eval", str(eval_dir), "--weights", "fast", "--methods", "median", "--pixel-mm", mode,
                             "--out", str(tmp_path / f"q_{mode}")]) == 0
        with open(tmp_path / f"q_{mode}" / "quality.csv", newline="") as f:  # figures without the run time
            quality[mode] = {row["method"]: {k: v for k, v in row.items() if k != "ms"} for row in csv.DictReader(f)}
    name = "fast (pixels as they come)"
    assert needle["auto"]["fast"]["x"] == needle["off"][name]["x"]
    assert needle["auto"]["fast"]["g"] != needle["off"][name]["g"]
    assert quality["auto"]["input"] == quality["off"]["input"] and quality["auto"]["median"] == quality["off"]["median"]
    assert quality["auto"]["drnn"] != quality["off"]["drnn"]


def test_the_evaluation_function_blends_outside_the_resampling_as_the_engine_does(fast, fine: np.ndarray) -> None:
    from benchmarks.evaluate import generator_function

    scaled = at_speckle_scale(fine, fast.infer)
    assert np.array_equal(generator_function("fast", pixel_mm="auto")(fine), scaled)
    half = generator_function("fast", strength=0.5, pixel_mm="auto")(fine)
    assert np.array_equal(half, blend(fine, scaled, 0.5))  # the input blended in at its own size
    with create_despeckler("onnxruntime", FAST, strength=0.5, device="cpu") as engine:
        assert np.array_equal(half, with_speckle_scale(engine, window=1, every=1).infer(fine))
    assert np.array_equal(generator_function("fast", pixel_mm="off")(fine), fast.infer(fine))


def test_frameinfo_tells_the_speckle_size_and_what_auto_does(tissue: np.ndarray, fine: np.ndarray) -> None:
    plain, finer = frame_info(tissue), frame_info(fine)
    assert finer.speckle_factors == scale_factors(speckle_size(fine)) and plain.speckle_factors == (1.0, 1.0)
    assert "pixels: not given (run as they are)" in describe(plain)
    assert (f"pixels: not given (run with {finer.speckle_factors[0]:g} x fewer rows, 1 x fewer columns, by the "
            "speckle size)") in describe(finer)
    assert "speckle" in describe(finer) and "(axial x lateral)" in describe(finer)
    given = frame_info(fine, (0.1, 0.25))
    assert "by the speckle size" not in describe(given)  # a known spacing: the pixels decide
