"""benchmarks.needle: needle visibility of x, y and G(x) on simulated needle pairs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="the benchmark runs generators with torch")

from benchmarks.evaluate import LABEL_STRIP  # noqa: E402
from benchmarks.metrics import ring_mask  # noqa: E402
from benchmarks.needle import evaluate_needles, main, needle_metrics  # noqa: E402
from training.data import DataError, read_image, read_pairs, read_truth  # noqa: E402
from training.sim import write_dataset  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def needles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("needle")
    write_dataset(root, count=0, size=96, seed=11, paired=True, eval_count=3, needle=True, progress=False)
    return root / "eval"


def _paint_over(image: np.ndarray, truth: dict[str, np.ndarray]) -> np.ndarray:
    """The needle replaced by the mean grey 8-16 pixels away from it (beyond the low probe's
    smear of the needle): what a despeckler that took it for speckle would give."""
    out = image.copy()
    far = ring_mask(truth["needle"], gap=8, width=8, within=~truth["interfaces"])
    out[truth["needle"]] = round(float(image[far].mean()))
    return out


def test_needle_contrast_is_positive_and_drops_when_the_needle_is_painted_over(needles: Path) -> None:
    xs, ys = read_pairs(needles)
    truths = read_truth(needles)
    for x, y, t in zip(xs, ys, truths, strict=True):
        fx, fy = needle_metrics(x, t), needle_metrics(y, t)
        assert fy["needle_cnr"] > 0.3 and fx["needle_cnr"] > 0
        lost = needle_metrics(_paint_over(x, t), t)
        assert lost["needle_cnr"] < 0.25 * fx["needle_cnr"] and lost["tip_cnr"] < 0.5 * fx["tip_cnr"]
        assert lost["needle_delta"] < 0.25 * fx["needle_delta"] and fy["needle_delta"] > 0
        busy = needle_metrics(x + np.where(np.indices(x.shape).sum(axis=0) % 2, 30.0, -30.0), t)  # +-30 grey
        assert busy["ring_std"] > fx["ring_std"] + 5 and busy["needle_cnr"] < fx["needle_cnr"]
        assert busy["needle_delta"] == pytest.approx(fx["needle_delta"], abs=2)
        dark = x.copy()
        dark[t["needle"]] = 0
        assert needle_metrics(dark, t)["needle_cnr"] < 0  # signed: a dark line is no needle
    with pytest.raises(DataError, match="--needle"):
        needle_metrics(xs[0], {k: v for k, v in truths[0].items() if not k.startswith("needle")})


def test_identity_keeps_every_needle_and_painting_over_weakens_every_one(needles: Path) -> None:
    truths = read_truth(needles)
    by_image = {x.tobytes(): t for x, t in zip(read_pairs(needles)[0], truths, strict=True)}
    res = evaluate_needles({"identity": lambda x: x, "lost": lambda x: _paint_over(x, by_image[x.tobytes()])},
                           needles, progress=False)
    assert res["identity"]["g"] == res["identity"]["x"]
    assert res["identity"]["weakened"]["needle_cnr"] == 0 and res["identity"]["weakened"]["pairs_needle_cnr"] == 3
    assert res["lost"]["weakened"]["needle_cnr"] == 3 and res["lost"]["g"]["needle_cnr"] < res["lost"]["x"]["needle_cnr"]
    assert len(res["lost"]["pairs"]["g"]["tip_cnr"]) == 3


def test_cli_runs_the_shipped_model_and_refuses_a_set_without_needles(needles: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "needle.json"
    figure = tmp_path / "needles.png"
    assert main(["--weights", str(REPO / "weights" / "drnn.onnx"), "--eval", str(needles), "--json", str(out),
                 "--figure", str(figure), "--no-progress"]) == 0
    x0 = read_pairs(needles)[0][0]
    picture = read_image(figure)  # a label strip over three pairs, x | G(x) | y
    assert picture.shape == (LABEL_STRIP + 3 * x0.shape[0], 3 * x0.shape[1])
    assert picture[:LABEL_STRIP].max() == 255 and picture[:LABEL_STRIP].min() == 0  # the labels are drawn
    res = json.loads(out.read_text())
    (only,) = res.values()
    assert set(only["g"]) == {"needle_cnr", "tip_cnr", "needle_delta", "ring_std"} and only["weakened"]["pairs_needle_cnr"] == 3
    assert "| G(x)" in capsys.readouterr().out
    plain = tmp_path / "plain"
    write_dataset(plain, count=0, size=64, seed=12, paired=True, eval_count=1, progress=False)
    assert main(["--weights", str(REPO / "weights" / "drnn.onnx"), "--eval", str(plain / "eval")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--needle" in err[0]


def test_strength_zero_measures_the_input(needles: Path, tmp_path: Path) -> None:
    out = tmp_path / "needle.json"
    assert main(["--weights", str(REPO / "weights" / "drnn.onnx"), "--eval", str(needles), "--strength", "0",
                 "--json", str(out), "--no-progress"]) == 0
    (name, res), = json.loads(out.read_text()).items()
    assert name.endswith("(strength 0)") and res["g"] == res["x"] and res["weakened"]["needle_cnr"] == 0
