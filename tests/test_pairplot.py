"""benchmarks.pairplot: per-pair figures of evaluation results, read back from real JSON files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.pairplot import PairPlotError, harm_counts, load_results, main, pair_values, plot_pairs


def _result(x_cnr: list[float], g_cnr: list[float], x_lc: list[float], g_lc: list[float]) -> dict:
    pairs = {"x": {"cnr": x_cnr, "log_corr": x_lc}, "y": {"cnr": x_cnr, "log_corr": x_lc}, "g": {"cnr": g_cnr, "log_corr": g_lc}}
    return {"g": {}, "pairs": pairs}


def test_pair_values_drop_undefined_pairs_and_keep_the_order() -> None:
    res = _result([1.0, math.nan, 2.0], [1.5, 3.0, 1.0], [0.5, 0.6, 0.7], [0.6, 0.5, 0.8])
    x, g = pair_values(res, "cnr")
    assert x.tolist() == [1.0, 2.0] and g.tolist() == [1.5, 1.0]
    with pytest.raises(PairPlotError, match="no per-pair 'cnr' figures"):
        pair_values({"g": {}}, "cnr")
    with pytest.raises(PairPlotError, match="2 figures of x against 3 of G"):
        pair_values(_result([1.0, 2.0], [1.0, 2.0, 3.0], [0.1], [0.1]), "cnr")


def test_figure_counts_the_pairs_below_the_diagonal(tmp_path: Path) -> None:
    good = _result([1.0, 1.2, 1.4], [1.5, 1.6, 1.9], [0.5, 0.6, 0.7], [0.6, 0.7, 0.8])
    bad = _result([1.0, 1.2, 1.4], [0.5, 1.6, 1.0], [0.5, 0.6, 0.7], [0.4, 0.7, 0.8])
    assert harm_counts(good) == {"cnr": (0, 3), "log_corr": (0, 3)}
    assert harm_counts(bad) == {"cnr": (2, 3), "log_corr": (1, 3)}
    png = plot_pairs({"good": good, "bad": bad}, tmp_path / "p.png", title="two sets")
    img = cv2.imread(str(png))
    assert img.shape[1] >= 2 * 500 and (img < 250).any()
    (tmp_path / "good.json").write_text(json.dumps({"w.pt": good}))
    (tmp_path / "bad.json").write_text(json.dumps({"a.pt": good, "b.pt": bad}))
    assert list(load_results(tmp_path / "bad.json")) == ["bad"]  # the file's last generator
    assert list(load_results(tmp_path / "bad.json", all_weights=True)) == ["bad: a.pt", "bad: b.pt"]
    assert main(["--json", str(tmp_path / "good.json"), str(tmp_path / "bad.json"), "--out", str(tmp_path / "cli.png")]) == 0
    assert cv2.imread(str(tmp_path / "cli.png")).shape == img.shape
    # Figures differ with the data: a different set of points gives a different picture.
    assert not np.array_equal(cv2.imread(str(plot_pairs({"good": good}, tmp_path / "one.png"))), img)


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "old.json").write_text(json.dumps({"w.pt": {"g": {"cnr": 1.0}}}))
    for name, why in (("missing.json", "no such file"), ("broken.json", "not a JSON file"),
                      ("old.json", "with per-pair figures")):
        assert main(["--json", str(tmp_path / name), "--out", str(tmp_path / "x.png")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and why in err and err.count("\n") == 1
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(PairPlotError, match="nothing to plot"):
        plot_pairs({}, tmp_path / "x.png")
