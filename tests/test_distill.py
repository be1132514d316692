"""Distillation at the engine's grey levels, end to end: ``python -m engine.distill`` writes pairs
and ``levels.json``, the trainer records their grey-level mode in every checkpoint, the export
carries it, the backends read it, and the engine warns when a model runs at other grey levels."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the teacher and the student are torch models here")

from engine_testutil import make_checkpoint  # noqa: E402

from engine.checkpoint import load_checkpoint  # noqa: E402
from engine.distill import main as distill  # noqa: E402
from engine.flip import FlipAveragedDespeckler  # noqa: E402
from engine.levels import level_map, level_ranges  # noqa: E402
from engine.onnx_export import export_checkpoint, onnx_metadata  # noqa: E402
from engine.registry import create_backend, create_despeckler  # noqa: E402
from training.config import ConfigError, load_config  # noqa: E402
from training.data import LEVELS_FILE, DataError, common_levels, read_levels  # noqa: E402
from training.runsetup import RunOptions  # noqa: E402
from training.sim import simulate_pair  # noqa: E402
from training.trainer import train  # noqa: E402

#: the fast recipe at a size a test can run: two supervised phases of a few crops.
TINY_FAST = ["model.width=4", "model.blocks=1", "phases.0.crop=32", "phases.0.samples=4", "phases.0.batch=2",
             "phases.1.crop=32", "phases.1.samples=2", "phases.1.batch=2", "threads=1"]


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three simulated low-probe frames, one darkened (mapped further), and a file that is no image."""
    folder = tmp_path_factory.mktemp("low")
    for i in range(3):
        x = simulate_pair(10 + i, (64, 80))[0]
        cv2.imwrite(str(folder / f"f{i}.png"), x // 2 if i == 1 else x)
    (folder / "f3.png").write_bytes(b"not a picture")
    return folder


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("teacher") / "teacher.pt", seed=3)


@pytest.fixture(scope="module")
def pairs(frames: Path, teacher: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pairs") / "pairs"
    assert distill([str(frames), "--output", str(out), "--backend", "torch", "--weights", str(teacher),
                    "--threads", "1", "--no-progress"]) == 1  # the bad file is counted, the rest written
    return out


@pytest.fixture
def unmarked(pairs: Path, tmp_path: Path) -> Path:
    """A pair of ``pairs`` in a folder without ``levels.json``: frames as a probe gave them, to the trainer."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("x_0000.png", "y_0000.png"):
        (raw / name).write_bytes((pairs / name).read_bytes())
    return raw


def test_pairs_are_the_mapped_frame_and_the_teachers_output_on_it(frames: Path, teacher: Path, pairs: Path) -> None:
    record = json.loads((pairs / LEVELS_FILE).read_text())
    assert record["input_levels"] == "preset" and record["complete"] is True
    assert record["teacher"] == str(teacher) and sorted(record["pairs"]) == ["x_0000.png", "x_0001.png", "x_0002.png"]
    with create_backend("torch", teacher, device="cpu", threads=1) as model:
        for i in range(3):
            frame = cv2.imread(str(frames / f"f{i}.png"), cv2.IMREAD_GRAYSCALE)
            x = cv2.imread(str(pairs / f"x_{i:04d}.png"), cv2.IMREAD_GRAYSCALE)
            y = cv2.imread(str(pairs / f"y_{i:04d}.png"), cv2.IMREAD_GRAYSCALE)
            lm = level_map(frame, *level_ranges("preset"))
            assert lm is not None and np.array_equal(x, lm.forward(frame))
            assert np.array_equal(y, model.infer(x))  # on the mapped frame, not mapped back
            assert record["pairs"][f"x_{i:04d}.png"] == f"{frames / f'f{i}.png'}#0"


def test_levels_off_writes_the_frames_as_they_are(frames: Path, teacher: Path, tmp_path: Path) -> None:
    assert distill([str(frames / "f1.png"), "--output", str(tmp_path), "--backend", "torch", "--weights", str(teacher),
                    "--levels", "off", "--no-progress"]) == 0
    frame = cv2.imread(str(frames / "f1.png"), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(cv2.imread(str(tmp_path / "x_0000.png"), cv2.IMREAD_GRAYSCALE), frame)
    assert read_levels(tmp_path) == "off"


def test_the_progress_bar_counts_the_frames_of_videos_ahead(frames: Path, teacher: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    """The bar's total is every frame to come, a video's included (from its header)."""
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (80, 64))
    for k in range(5):
        writer.write(cv2.cvtColor(simulate_pair(30 + k, (64, 80))[0], cv2.COLOR_GRAY2BGR))
    writer.release()
    assert distill([str(video), str(frames / "f0.png"), "--output", str(tmp_path / "out"), "--backend", "torch",
                    "--weights", str(teacher), "--threads", "1"]) == 0
    assert "6/6 [" in capsys.readouterr().err


def test_a_flip_averaged_teacher_gives_its_averaged_output(frames: Path, teacher: Path, tmp_path: Path) -> None:
    assert distill([str(frames / "f0.png"), "--output", str(tmp_path), "--backend", "torch", "--weights", str(teacher),
                    "--flip-average", "--no-progress"]) == 0
    x, y = (cv2.imread(str(tmp_path / f"{k}_0000.png"), cv2.IMREAD_GRAYSCALE) for k in "xy")
    with FlipAveragedDespeckler(create_backend("torch", teacher, device="cpu", threads=1)) as model:
        assert np.array_equal(y, model.infer(x)) and not np.array_equal(y, model.inner.infer(x))
    assert json.loads((tmp_path / LEVELS_FILE).read_text())["teacher_run"].endswith(", flip-averaged")


def test_distill_refuses_a_folder_of_pairs_and_leaves_nothing_when_nothing_is_read(
        frames: Path, teacher: Path, pairs: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    before = sorted(p.name for p in pairs.iterdir())
    assert distill([str(frames), "--output", str(pairs), "--backend", "torch", "--weights", str(teacher)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"engine.distill: error: {pairs}: holds training pairs already; give an empty or new folder"
    assert sorted(p.name for p in pairs.iterdir()) == before
    empty = tmp_path / "empty"
    assert distill([str(frames / "f3.png"), "--output", str(empty), "--backend", "torch", "--weights", str(teacher),
                    "--no-progress"]) == 2
    assert "f3.png: cannot read image" in capsys.readouterr().err and not any(empty.iterdir())
    (tmp_path / "file").write_text("")
    for output, weights, message in ((tmp_path / "file", teacher, "not a folder"),
                                     (tmp_path / "new", tmp_path / "none.pt", "weights file not found")):
        assert distill([str(frames), "--output", str(output), "--backend", "torch", "--weights", str(weights)]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("engine.distill: error: ") and message in line
    assert not (tmp_path / "new").exists()


def test_levels_file_is_read_and_checked(tmp_path: Path) -> None:
    assert read_levels(tmp_path) == "off" and common_levels([]) == "off"
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / LEVELS_FILE).write_text('{"input_levels": "preset"}')
    assert common_levels([tmp_path / "a", tmp_path / "a"]) == "preset"
    with pytest.raises(DataError, match=r"different grey levels \(.*a: preset, .*: off\)"):
        common_levels([tmp_path / "a", tmp_path])
    for text in ("{not json", '{"input_levels": 3}', '["preset"]'):
        (tmp_path / LEVELS_FILE).write_text(text)
        with pytest.raises(DataError, match=LEVELS_FILE):
            read_levels(tmp_path)


def test_student_records_its_levels_and_the_engine_warns_at_others(
        pairs: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    result = train(load_config("fast", TINY_FAST), RunOptions(out=tmp_path / "run", pairs=pairs, progress=False))
    assert result.status == "finished" and result.generator is not None
    assert load_checkpoint(result.generator)["input_levels"] == "preset"
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["input_levels"] == "preset"
    assert "# input_levels: preset\n" in (tmp_path / "run" / "config.yaml").read_text()
    onnx_file = export_checkpoint(result.generator, tmp_path / "student.onnx")
    assert onnx_metadata(onnx_file)["input_levels"] == "preset"
    with caplog.at_level(logging.WARNING, logger="engine.registry"):
        for weights, backend, levels in ((onnx_file, "onnxruntime", "preset"), (result.generator, "torch", "preset"),
                                         (onnx_file, "onnxruntime", "off"), (result.generator, "torch", "range")):
            options = {"device": "cpu"} if backend == "torch" else {}
            with create_despeckler(backend, weights, levels=levels, threads=1, **options) as d:
                assert d.input_levels == "preset"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        f"{name} was trained on frames at the preset grey levels; with levels {mode!r} it meets frames unlike them "
        "(--levels preset; docs/engine.md, 'Grey levels')" for name, mode in (("student.onnx", "off"), ("generator.pt", "range"))]


def test_a_model_trained_on_frames_as_they_came_is_not_warned_about(
        teacher: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    onnx_file = export_checkpoint(teacher, tmp_path / "teacher.onnx")
    assert onnx_metadata(onnx_file)["input_levels"] == "off"
    with caplog.at_level(logging.WARNING, logger="engine.registry"):
        with create_despeckler("onnxruntime", onnx_file, levels="off", threads=1) as d:
            assert d.input_levels == "off"
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_resume_and_mixed_inputs_must_keep_one_grey_level_mode(pairs: Path, unmarked: Path, tmp_path: Path) -> None:
    cfg = load_config("fast", TINY_FAST)
    train(cfg, RunOptions(out=tmp_path / "run", pairs=pairs, progress=False, max_steps=1))
    with pytest.raises(ConfigError, match=r"trained on inputs at grey levels 'preset', this run's data are at 'off'"):
        train(cfg, RunOptions(out=tmp_path / "run", pairs=unmarked, progress=False, resume=True))
    with pytest.raises(DataError, match="different grey levels"):
        train(cfg, RunOptions(out=tmp_path / "mixed", pairs=(pairs, unmarked), progress=False))


def test_a_fine_tune_records_its_own_data_and_says_what_it_started_from(
        pairs: Path, unmarked: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = load_config("fast", TINY_FAST)
    student = train(cfg, RunOptions(out=tmp_path / "student", pairs=pairs, progress=False)).generator
    with caplog.at_level(logging.WARNING, logger="training.trainer"):
        tuned = train(cfg, RunOptions(out=tmp_path / "tuned", pairs=unmarked, progress=False, init=student)).generator
    assert load_checkpoint(tuned)["input_levels"] == "off"
    assert [r.getMessage() for r in caplog.records] == [
        f"--init {student} was trained on inputs at grey levels 'preset', this run's are at 'off', which its "
        "checkpoints record"]
