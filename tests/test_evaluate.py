"""benchmarks.evaluate's per-image metrics on real simulated pairs (no model needed)."""

from __future__ import annotations

import pytest

from benchmarks import metrics as m
from benchmarks.evaluate import check_targets, image_metrics
from training.sim import simulate_pair


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
