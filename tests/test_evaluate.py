"""benchmarks.evaluate's per-image metrics on real simulated pairs (no model needed)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks import metrics as m
from benchmarks.evaluate import check_targets, evaluate_many, image_metrics, markdown_table
from training.sim import simulate_pair, write_dataset


def test_fan_pairs_are_measured_where_both_probes_image() -> None:
    x, y, truth = simulate_pair(seed=5, size=(128, 128), geometry="fan", depth_mm=60.0)
    fov = truth["fov_x"] & truth["fov_y"]
    assert (truth["liver"] & ~fov).any(), "this phantom's liver reaches outside the fans"
    spoiled = x.copy()
    spoiled[~fov] = 255  # what lies outside the fans must not count
    got = image_metrics(spoiled, y, truth)
    assert got["log_corr"] == pytest.approx(m.log_correlation(x, truth["echogenicity"], truth["liver"] & fov))
    assert got == pytest.approx(image_metrics(x, y, truth), nan_ok=True)


def test_window_pairs_use_the_whole_masks_and_targets_compare_means() -> None:
    x, y, truth = simulate_pair(seed=6, size=(96, 96))
    assert "fov_x" not in truth
    got = image_metrics(x, y, truth)
    assert got["log_corr"] == pytest.approx(m.log_correlation(x, truth["echogenicity"], truth["liver"]))
    assert got["kl_y"] > 0 and image_metrics(y, y, truth)["kl_y"] == 0.0
    res = {"x": got, "y": image_metrics(y, y, truth), "g": image_metrics(y, y, truth)}
    verdicts = check_targets(res)
    assert verdicts["kl"][0] and verdicts["grain"][0]  # y itself meets the grain and KL targets


def test_pairs_where_the_output_scores_below_the_input_are_counted(tmp_path: Path) -> None:
    """A mean over the pairs can hide a few harmed ones; ``worse_than_x`` counts them."""
    write_dataset(tmp_path / "set", count=0, size=96, seed=12, paired=True, eval_count=3)
    rng = np.random.default_rng(0)

    def noisy(x: np.ndarray) -> np.ndarray:  # strong added noise: lower CNR and log-correlation on every pair
        return np.clip(x + rng.normal(0.0, 80.0, x.shape), 0, 255).astype(np.uint8)

    res = evaluate_many({"same": lambda x: x.copy(), "noisy": noisy}, tmp_path / "set" / "eval", progress=False)
    same, harm = res["same"]["worse_than_x"], res["noisy"]["worse_than_x"]
    assert harm["pairs_cnr"] >= 1 and harm["pairs_log_corr"] == 3
    assert {k: same[k] for k in ("cnr", "pairs_cnr", "log_corr", "pairs_log_corr")} == {
        "cnr": 0, "pairs_cnr": harm["pairs_cnr"], "log_corr": 0, "pairs_log_corr": 3}
    assert harm["cnr"] == harm["pairs_cnr"] and harm["log_corr"] == 3
    assert f"CNR {harm['cnr']} of {harm['pairs_cnr']}, log-correlation 3 of 3" in markdown_table(res["noisy"])


def test_lesions_shown_less_clearly_than_in_x_are_counted(tmp_path: Path) -> None:
    """The lesion diagnostics: an output that fills the lesions with their surroundings' grey
    shows both kinds less clearly than x on every pair that has them (the targets' CNR, on the
    vessels, does not see it); x itself shows them with their true polarity."""
    folder = tmp_path / "eval"
    folder.mkdir()
    fill: dict[bytes, tuple[np.ndarray, float]] = {}  # x's bytes -> its lesions, its tissue's median grey
    for i, seed in enumerate((7, 16, 2)):  # hyper- and hypoechoic lesions (7), hyper (16), hypo (2)
        x, y, truth = simulate_pair(seed=seed, size=(128, 128))
        cv2.imwrite(str(folder / f"x_{i:03d}.png"), x)
        cv2.imwrite(str(folder / f"y_{i:03d}.png"), y)
        np.savez_compressed(folder / f"truth_{i:03d}.npz", **truth)
        fill[x.tobytes()] = truth["lesions"], float(np.median(x[truth["liver"] & ~truth["structures"]]))

    def filled(x: np.ndarray) -> np.ndarray:  # each lesion painted with the tissue's median grey
        lesions, grey = fill[x.tobytes()]
        return np.where(lesions, np.uint8(round(grey)), x)

    res = evaluate_many({"same": lambda x: x.copy(), "filled": filled}, folder, progress=False)
    assert res["same"]["x"]["lesion_hyper"] > 0 and res["same"]["x"]["lesion_hypo"] > 0
    worse = res["filled"]["worse_than_x"]
    assert (worse["lesion_hyper"], worse["pairs_lesion_hyper"], worse["lesion_hypo"], worse["pairs_lesion_hypo"]) == (2, 2, 2, 2)
    assert res["same"]["worse_than_x"]["lesion_hyper"] == 0 == res["same"]["worse_than_x"]["lesion_hypo"]
    assert "G(x) below x on 2 of 2 pairs" in markdown_table(res["filled"])


def test_a_shipped_models_name_is_its_onnx_file(tmp_path: Path) -> None:
    """``--weights fast`` in the evaluation tools: the fast model's ONNX export, figure for figure."""
    from benchmarks.evaluate import generator_function
    from engine.weights import WEIGHTS_DIR

    if not (WEIGHTS_DIR / "drnn_fast.onnx").is_file():
        pytest.skip("the fast model is not shipped here")
    write_dataset(tmp_path / "set", count=0, size=96, seed=13, paired=True, eval_count=2)
    res = evaluate_many({"by name": generator_function("fast"),
                         "by file": generator_function(WEIGHTS_DIR / "drnn_fast.onnx")},
                        tmp_path / "set" / "eval", progress=False)
    assert res["by name"]["g"] == res["by file"]["g"]
    assert res["by name"]["g"] != res["by name"]["x"]  # it despeckled


def test_a_figure_no_pair_defines_is_not_measured_and_not_met(recwarn) -> None:
    """Frames too small for the grain's parenchyma tiles give NaN on every pair: its mean is NaN
    without numpy's warning, its target is not met and says it was not measured, and the other
    targets are checked as before."""
    from benchmarks.evaluate import means

    rows = {k: [{"grain_lat": np.nan, "kl_y": kl, "cnr": cnr, "log_corr": r}] * 2
            for k, kl, cnr, r in (("x", 0.2, 1.0, 0.5), ("y", 0.0, 1.2, 0.6), ("g", 0.05, 1.3, 0.7))}
    res = means(rows, ("grain_lat", "kl_y", "cnr", "log_corr"))
    assert np.isnan(res["g"]["grain_lat"]) and res["g"]["cnr"] == 1.3
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    verdicts = check_targets(res)
    assert verdicts["grain"] == (False, "grain: not measured (grain_lat undefined on every pair: too little "
                                        "parenchyma or no vessel in the frames)")
    assert verdicts["kl"][0] and verdicts["cnr"][0] and verdicts["log_corr"][0]


def test_weights_that_are_neither_a_file_nor_a_shipped_name_are_named(tmp_path: Path, capsys) -> None:
    from benchmarks.evaluate import main

    write_dataset(tmp_path / "set", count=0, size=64, seed=3, paired=True, eval_count=1, progress=False)
    assert main(["--weights", str(tmp_path / "nosuch"), "--eval", str(tmp_path / "set" / "eval")]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'nosuch'}: no such file, nor a shipped model's name "
                                       "(default, fast, int8, fast-int8); left out\n")
