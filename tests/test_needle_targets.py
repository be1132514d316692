"""Distillation targets that keep the input's needle (engine.needle_targets): real simulated needle
pairs, real pairs of ``python -m engine.distill`` with the shipped fast ONNX model as the teacher."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.distill import main as distill
from engine.needle_targets import keep_needle, main
from training.data import LEVELS_FILE, read_truth
from training.sim import write_dataset

FAST = Path(__file__).resolve().parent.parent / "weights" / "drnn_fast.onnx"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Three 96x96 needle phantoms and their distillation pairs (the teacher's targets, not rewritten)."""
    root = tmp_path_factory.mktemp("needles")
    write_dataset(root / "sim", count=0, size=96, seed=7, paired=True, eval_count=3, needle=True, progress=False)
    assert distill([str(root / "sim" / "eval"), "--output", str(root / "pairs"), "--backend", "onnxruntime",
                    "--weights", str(FAST), "--threads", "1", "--no-progress"]) == 0
    sources = json.loads((root / "pairs" / LEVELS_FILE).read_text())["pairs"]
    # the set's folder given: its x images only, not the high probe's y images beside them
    assert [Path(s.split("#")[0]).name for s in sources.values()] == ["x_000.png", "x_001.png", "x_002.png"]
    return root / "sim" / "eval", root / "pairs"


def _copy(pairs: Path, tmp_path: Path) -> Path:
    out = tmp_path / "pairs"
    shutil.copytree(pairs, out)
    return out


def test_each_target_keeps_the_input_inside_the_needle_and_nothing_else_changes(made, tmp_path: Path) -> None:
    truth_dir, original = made
    pairs = _copy(original, tmp_path)
    assert main([str(pairs), "--truth", str(truth_dir)]) == 0
    needles = [t["needle"] for t in read_truth(truth_dir)]
    raised = 0
    for i, needle in enumerate(needles):  # engine.distill numbered the pairs in the order of the files given
        x = cv2.imread(str(pairs / f"x_{i:04d}.png"), cv2.IMREAD_UNCHANGED)
        before = cv2.imread(str(original / f"y_{i:04d}.png"), cv2.IMREAD_UNCHANGED)
        after = cv2.imread(str(pairs / f"y_{i:04d}.png"), cv2.IMREAD_UNCHANGED)
        near = cv2.dilate(needle.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        assert np.array_equal(after[~near], before[~near])
        assert np.array_equal(after[near], np.maximum(before, x)[near])
        raised += int((after != before).sum())
    assert raised > 0  # the teacher drew some needle pixels darker than its input
    record = json.loads((pairs / LEVELS_FILE).read_text())
    assert record["needle_targets"]["rewritten"] == 3 and record["needle_targets"]["pixels_raised"] == raised
    assert record["input_levels"] == "preset"  # engine.distill's record kept
    assert main([str(pairs), "--truth", str(truth_dir)]) == 0  # a second run raises nothing more
    assert json.loads((pairs / LEVELS_FILE).read_text())["needle_targets"]["pixels_raised"] == 0


def test_a_pair_without_its_truth_is_counted_and_the_others_are_done(made, tmp_path: Path, capsys) -> None:
    truth_dir, original = made
    truth = tmp_path / "truth"
    shutil.copytree(truth_dir, truth)
    (truth / "truth_001.npz").unlink()
    with np.load(truth / "truth_002.npz") as npz:  # a phantom simulated without a needle
        np.savez(truth / "truth_002.npz", **{k: npz[k] for k in npz.files if k not in ("needle", "needle_tip")})
    pairs = _copy(original, tmp_path)
    assert main([str(pairs), "--truth", str(truth)]) == 1
    out = capsys.readouterr()
    assert "1 target(s) rewritten" in out.out
    assert f"failed: x_0001.png: {truth / 'truth_001.npz'}: cannot read ground truth" in out.err
    assert f"failed: x_0002.png: {truth / 'truth_002.npz'}: no needle mask (simulate with --needle)\n" in out.err
    for i in (1, 2):  # left as they were
        assert np.array_equal(cv2.imread(str(pairs / f"y_000{i}.png")), cv2.imread(str(original / f"y_000{i}.png")))


def test_bad_folders_are_one_line_errors(made, tmp_path: Path, capsys) -> None:
    truth_dir, original = made
    assert main([str(truth_dir), "--truth", str(truth_dir)]) == 2  # not a pairs folder
    assert f"{truth_dir}: not a pairs folder of python -m engine.distill (it has no levels.json)" \
        in capsys.readouterr().err
    assert main([str(tmp_path / "nosuch"), "--truth", str(truth_dir)]) == 2
    assert "nosuch: no such folder" in capsys.readouterr().err
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "levels.json").write_text("{", encoding="utf-8")
    assert main([str(tmp_path / "broken"), "--truth", str(truth_dir)]) == 2
    assert "levels.json: not a pairs record of python -m engine.distill" in capsys.readouterr().err
    assert main([str(_copy(original, tmp_path)), "--truth", str(tmp_path / "missing")]) == 2
    assert "missing: no such folder" in capsys.readouterr().err
    with pytest.raises(ValueError, match="differ in shape"):
        keep_needle(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8), np.zeros((4, 4), bool))
