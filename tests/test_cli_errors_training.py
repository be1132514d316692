"""Bad input to the training tools (train, calibrate, runlog, simulate): one line on stderr that
names the culprit, a non-zero exit, no traceback, checked before the long work, and an existing
run or output left as it was (defects 1-7, 26, 29-32, 36-38 of the bad-input audit)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="torch is in the [train] extra")

from training.calibrate import main as calibrate_main  # noqa: E402
from training.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from training.models import DRNN, Discriminator  # noqa: E402
from training.runlog import main as runlog_main  # noqa: E402
from training.sim import write_dataset  # noqa: E402
from training.simulate import main as simulate_main  # noqa: E402
from training.train import main as train_main  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
LOG_HEADER = "phase,step,unit,wall_s,loss,value\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sim")
    write_dataset(root, count=3, size=(48, 64), seed=5, paired=True, eval_count=2, progress=False)
    return root


@pytest.fixture(scope="module")
def run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real two-unit run of the quick config (checkpoints/last.pt, log.csv, config.yaml)."""
    out = tmp_path_factory.mktemp("run") / "run"
    assert train_main([*_train_args(data), "--out", str(out), "--max-steps", "2", "--set", "log_every=1"]) == 0
    return out


@pytest.fixture()
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "a_file.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return path


def _train_args(data: Path) -> list[str]:
    return ["--config", "quick", "--no-progress", "--low", str(data / "low"), "--high", str(data / "high")]


def _one_line(err: str, *culprits: str) -> str:
    """``err`` is exactly one line, without a traceback, naming every culprit."""
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    for culprit in culprits:
        assert culprit in err, (culprit, err)
    return err


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- training.train


@pytest.mark.parametrize(("setting", "culprit"), [
    ("model.width=-8", "model.width: expected a positive integer, got -8"),
    ("model.stem_kernel=4", "model.stem_kernel"),
    ("model.head_kernel=-1", "model.head_kernel"),
    ("discriminator.layers=[8x]", "discriminator.layers[0]: '8x'"),
    ("discriminator.layers=[8, 0s]", "discriminator.layers[1]: '0s'"),
    ("discriminator.layers=[]", "discriminator.layers"),
    ("discriminator.negative_slope=.nan", "discriminator.negative_slope"),
    ("threads=-1", "threads:"),
    ("log_every=0", "log_every:"),
    ("sample_every=0", "sample_every: expected a positive integer"),
    ("model.width=[8", "--set 'model.width=[8'"),
])
def test_train_bad_config_value_names_the_key(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              setting: str, culprit: str) -> None:
    assert train_main([*_train_args(data), "--out", str(tmp_path / "o"), "--set", setting]) == 2
    _one_line(capsys.readouterr().err, culprit)
    assert not (tmp_path / "o").exists()


def test_models_apply_the_same_rules(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="DRNN.stem_kernel"):
        DRNN(stem_kernel=4)
    with pytest.raises(ValueError, match="DRNN.width"):
        DRNN(width=0)
    with pytest.raises(ValueError, match="bad Discriminator layer spec '64x'"):
        Discriminator(("8", "64x"))
    assert Discriminator(("8", "16s")).layers == ("8", "16s")


def test_train_config_file_not_text_or_not_yaml_is_one_line(data: Path, tmp_path: Path, a_file: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert train_main([*_train_args(data)[2:], "--config", str(a_file), "--out", str(tmp_path / "o")]) == 2
    _one_line(capsys.readouterr().err, str(a_file), "UTF-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nmodel: {width: [\n")
    assert train_main([*_train_args(data)[2:], "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    _one_line(capsys.readouterr().err, str(bad), "not valid YAML", "line 3")


def test_train_unusable_out_is_refused_before_the_run(data: Path, tmp_path: Path, a_file: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    for out in (a_file, a_file / "run"):
        assert train_main([*_train_args(data), "--out", str(out)]) == 2
        _one_line(capsys.readouterr().err, f"--out {out}", "not a folder")


def test_fresh_run_into_an_existing_run_is_refused_and_leaves_it(data: Path, run: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    before = _digests(run)
    assert "checkpoints/last.pt" in before
    assert train_main([*_train_args(data), "--out", str(run), "--max-steps", "1"]) == 2
    _one_line(capsys.readouterr().err, f"--out {run}", "already holds a run", "--resume")
    assert _digests(run) == before


def test_resume_without_a_checkpoint_is_refused(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "never_ran"
    assert train_main([*_train_args(data), "--out", str(out), "--resume"]) == 2
    _one_line(capsys.readouterr().err, "--resume", str(out / "checkpoints" / "last.pt"))
    assert not out.exists()


def test_train_bad_flag_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        train_main(["--out", "o", "--max-steps", "-1"])
    assert exc.value.code == 2
    _one_line(capsys.readouterr().err, "--max-steps")
    with pytest.raises(SystemExit) as exc:
        train_main(["--out", "o", "--device", "tpu"])
    assert exc.value.code == 2
    _one_line(capsys.readouterr().err, "--device")


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize(("content", "detail"), [
    (bytes(range(256)) * 4, "not a torch file"),   # random bytes: torch's weights-only unpickler refuses them
    (b"this is not onnx\n", "IndexError"),          # text: torch's loader raises IndexError
    (b"", "empty file"),
], ids=["random", "text", "empty"])
def test_corrupt_checkpoint_is_named_without_unsafe_advice(tmp_path: Path, content: bytes, detail: str) -> None:
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    message = str(exc.value)
    assert str(path) in message and "not a usdespeckle-ckpt-1 file" in message and detail in message
    assert "weights_only" not in message and "\n" not in message


# --------------------------------------------------------------------------- training.calibrate


@pytest.mark.parametrize(("extra", "culprit"), [
    (["--threads", "-2"], "--threads"),
    (["--images", "0"], "--images"),
])
def test_calibrate_bad_numbers_are_one_line(run: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            extra: list[str], culprit: str) -> None:
    with pytest.raises(SystemExit) as exc:
        calibrate_main(["--weights", str(run / "checkpoints" / "last.pt"), "--pairs", str(data / "eval"),
                        "--out", str(tmp_path / "c.pt"), *extra])
    assert exc.value.code == 2
    _one_line(capsys.readouterr().err, culprit)


def test_calibrate_unusable_out_is_refused_before_calibrating(run: Path, data: Path, tmp_path: Path, a_file: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    for out, why in ((a_file / "x.pt", "not a folder"), (tmp_path, "is a folder")):
        with pytest.raises(SystemExit) as exc:
            calibrate_main(["--weights", str(run / "checkpoints" / "last.pt"), "--pairs", str(data / "eval"),
                            "--out", str(out)])
        assert exc.value.code == 2
        err = _one_line(capsys.readouterr().err, f"--out {out}", why)
        assert "logits" not in err  # refused before the generator ran


# --------------------------------------------------------------------------- training.runlog


@pytest.mark.parametrize(("text", "culprit"), [
    ("a,b\n1,2\n", "no column phase, unit, loss, value"),
    (LOG_HEADER + "g_pretrain,2,2,0.1,g_loss,0.2\ng_pretrain,4\n", "line 3: a short row"),
    (LOG_HEADER + "g_pretrain,2,2,0.1,g_loss,abc\n", "line 2: value 'abc'"),
    (LOG_HEADER + "g_pretrain,2,x,0.1,g_loss,0.5\n", "line 2: unit 'x'"),
    (LOG_HEADER, "no logged rows"),
    ("", "empty file"),
])
def test_runlog_bad_log_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                       culprit: str) -> None:
    log = tmp_path / "log.csv"
    log.write_text(text)
    with pytest.raises(SystemExit) as exc:
        runlog_main(["--log", str(log), "--out", str(tmp_path / "c.png")])
    assert exc.value.code == 2
    _one_line(capsys.readouterr().err, str(log), culprit)
    assert not (tmp_path / "c.png").exists()


def test_runlog_binary_log_names_the_file(tmp_path: Path, a_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        runlog_main(["--log", str(a_file), "--out", str(tmp_path / "c.png")])
    assert exc.value.code == 2
    _one_line(capsys.readouterr().err, str(a_file), "UTF-8")


@pytest.mark.parametrize("bad", ["under_file", "xyz", "smooth0", "smooth-3"])
def test_runlog_bad_out_or_smooth_is_refused(run: Path, tmp_path: Path, a_file: Path,
                                             capsys: pytest.CaptureFixture[str], bad: str) -> None:
    out, extra, culprit = {
        "under_file": (a_file / "c.png", [], "not a folder"),
        "xyz": (tmp_path / "c.xyz", [], "unknown file type '.xyz'"),
        "smooth0": (tmp_path / "c.png", ["--smooth", "0"], "--smooth"),
        "smooth-3": (tmp_path / "c.png", ["--smooth", "-3"], "--smooth"),
    }[bad]
    with pytest.raises(SystemExit) as exc:
        runlog_main(["--log", str(run / "log.csv"), "--out", str(out), *extra])
    assert exc.value.code == 2
    _one_line(capsys.readouterr().err, culprit)
    assert not out.exists()


def test_runlog_still_plots_a_real_log(run: Path, tmp_path: Path) -> None:
    assert runlog_main(["--log", str(run / "log.csv"), "--out", str(tmp_path / "c.png"), "--smooth", "1"]) == 0
    assert (tmp_path / "c.png").stat().st_size > 0


# --------------------------------------------------------------------------- training.simulate


def test_simulate_bad_figure_is_refused_before_the_data_set(tmp_path: Path, a_file: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "set"
    with pytest.raises(SystemExit) as exc:
        simulate_main(["--out", str(out), "--count", "1", "--size", "32", "--figure", str(tmp_path / "f.xyz")])
    assert exc.value.code == 2
    _one_line(capsys.readouterr().err, "--figure", "'.xyz'")
    assert not out.exists()
    assert simulate_main(["--out", str(out), "--count", "1", "--size", "32", "--figure", str(a_file / "f.png")]) == 1
    _one_line(capsys.readouterr().err, "--figure", "not a folder")
    assert not out.exists()


@pytest.mark.parametrize(("argv", "culprit"), [
    (["--seed", "-1"], "--seed"),
    (["--count", "0"], "--count 0"),
    (["--count", "0", "--paired"], "--count 0"),
])
def test_simulate_seed_and_empty_set_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 argv: list[str], culprit: str) -> None:
    with pytest.raises(SystemExit) as exc:
        simulate_main(["--out", str(tmp_path / "set"), "--size", "32", *argv])
    assert exc.value.code == 2
    _one_line(capsys.readouterr().err, culprit)
    assert not (tmp_path / "set").exists()


def test_simulate_count_0_with_eval_pairs_is_still_allowed(tmp_path: Path) -> None:
    assert simulate_main(["--out", str(tmp_path / "set"), "--count", "0", "--paired", "--eval-count", "1",
                          "--size", "32"]) == 0
    assert sorted(p.name for p in (tmp_path / "set" / "eval").iterdir()) == ["truth_000.npz", "x_000.png", "y_000.png"]


def test_train_help_names_every_shipped_config(capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` lists the configs ``--config`` takes by name, read from training/configs/."""
    with pytest.raises(SystemExit) as stop:
        train_main(["--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    shipped = sorted(p.stem for p in (REPO / "training" / "configs").glob("*.yaml"))
    assert {"paper", "quick", "finetune", "ship_mix"} <= set(shipped)
    assert f"named config ({', '.join(shipped)})" in text


# --------------------------------------------------------------------------- training.outputs


def test_output_checks_make_folders_only_when_asked(tmp_path: Path) -> None:
    from training.outputs import check_output_file, check_output_folder

    assert check_output_file(tmp_path / "a" / "b" / "x.json", "--json") == tmp_path / "a" / "b" / "x.json"
    assert check_output_folder(tmp_path / "c" / "d", "--out") == tmp_path / "c" / "d"
    assert list(tmp_path.iterdir()) == []  # checked, nothing made (the tool makes them later)
    check_output_file(tmp_path / "a" / "b" / "x.json", "--json", create=True)
    check_output_folder(tmp_path / "c" / "d", "--out", create=True)
    assert (tmp_path / "a" / "b").is_dir() and (tmp_path / "c" / "d").is_dir()
    assert list((tmp_path / "a" / "b").iterdir()) == [] and list((tmp_path / "c" / "d").iterdir()) == []


@pytest.mark.parametrize("create", [False, True])
def test_output_checks_refuse_a_path_under_a_file_or_a_folder_for_a_file(tmp_path: Path, a_file: Path,
                                                                         create: bool) -> None:
    from training.outputs import PathError, check_output_file, check_output_folder

    for check, path in ((check_output_file, a_file / "deeper" / "x.png"), (check_output_folder, a_file / "sub"),
                        (check_output_folder, a_file)):
        with pytest.raises(PathError, match=f"^--out {path}: {a_file} is a file, not a folder$"):
            check(path, "--out", create=create)
    with pytest.raises(PathError, match="is a folder; give a file name"):
        check_output_file(tmp_path, "--out", create=create)
    assert a_file.read_bytes().startswith(b"\x89PNG") and sorted(tmp_path.iterdir()) == [a_file]


@pytest.mark.parametrize("create", [False, True])
def test_output_checks_refuse_proc(create: bool) -> None:
    """Permission bits say nothing to root; a real file created in the folder does."""
    from training.outputs import PathError, check_output_file, check_output_folder

    with pytest.raises(PathError, match=r"^--json /proc/x\.json: cannot create files in /proc "):
        check_output_file("/proc/x.json", "--json", create=create)
    with pytest.raises(PathError, match="^--out /proc/new/deeper: cannot create files in /proc"):
        check_output_folder("/proc/new/deeper", "--out", create=create)


def test_output_file_suffixes_are_checked_first_in_any_case(tmp_path: Path) -> None:
    from training.outputs import PathError, check_output_file, figure_suffixes

    assert check_output_file(tmp_path / "f.PNG", "--figure", suffixes=(".png",)) == tmp_path / "f.PNG"
    for name, shown in (("f.xyz", "'.xyz'"), ("f", "'(none)'")):
        message = f"--figure {tmp_path / name}: unknown file type {shown}; use one of .png .svg"
        with pytest.raises(PathError, match=f"^{re.escape(message)}$"):
            check_output_file(tmp_path / name, "--figure", suffixes=(".png", ".svg"), create=True)
    assert {".png", ".pdf", ".svg"} <= set(figure_suffixes())
    assert list(tmp_path.iterdir()) == []


def test_path_error_is_caught_as_os_and_value_error(tmp_path: Path) -> None:
    """The tools' ``except OSError`` (engine, benchmarks) and ``except ValueError`` (training) both take it."""
    from training.outputs import PathError, readable_file

    assert issubclass(PathError, OSError) and issubclass(PathError, ValueError)
    with pytest.raises(PathError, match=f"^--onnx {tmp_path / 'nope.onnx'}: no such file$"):
        readable_file(tmp_path / "nope.onnx", "--onnx")
    with pytest.raises(PathError, match="is a folder, not a file"):
        readable_file(tmp_path, "--onnx")


# --------------------------------------------------------------------------- training.data.iter_frames


def test_iter_frames_reports_a_skipped_file_to_on_skip(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import cv2
    import numpy as np

    from training.data import iter_frames

    good = np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)
    assert cv2.imwrite(str(tmp_path / "a.png"), good)
    whole = (tmp_path / "a.png").read_bytes()
    (tmp_path / "b.png").write_bytes(whole[: len(whole) // 2])  # a truncated PNG
    skipped: list[tuple[Path, str]] = []
    with caplog.at_level("WARNING", logger="training.data"):
        frames = list(iter_frames(tmp_path, skip_bad=True, on_skip=lambda path, why: skipped.append((path, why))))
    assert len(frames) == 1 and np.array_equal(frames[0], good)
    assert [p for p, _ in skipped] == [tmp_path / "b.png"] and "cannot read image" in skipped[0][1]
    assert any("b.png" in r.getMessage() for r in caplog.records)  # still logged
    from training.data import DataError

    with pytest.raises(DataError, match="b.png"):  # without skip_bad the bad file raises, on_skip or not
        list(iter_frames(tmp_path, on_skip=lambda path, why: skipped.append((path, why))))
    assert len(skipped) == 1


def test_frame_sizes_parse_alike_in_every_tool(capsys: pytest.CaptureFixture[str]) -> None:
    """One parser for ``--size`` (simulate, stream, latency), ``--bench-sizes`` and TensorRT profiles."""
    from training.argparsing import parse_frame_size

    assert parse_frame_size("256") == (256, 256) and parse_frame_size(" 240 X 320 ") == (240, 320)
    for bad, rules in (("256", {"square": False}), ("7x9", {"min_side": 8}), ("axb", {}), ("1x2x3", {}), ("", {})):
        with pytest.raises(ValueError, match=repr(bad)):
            parse_frame_size(bad, **rules)
    with pytest.raises(SystemExit) as stop:
        simulate_main(["--out", "x", "--size", "15x64"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["python -m training.simulate: error: argument --size: expected N or HxW with sides >= 16, "
                   "got '15x64' (see --help)"]


def test_a_bad_override_is_blamed_on_set_and_a_bad_file_on_the_file(tmp_path: Path) -> None:
    """``--set model.width=-8`` on the valid quick.yaml names ``--set``; a file with the same bad
    value names the file, and an override that repairs it is taken."""
    from training.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"^--set model.width=-8: model.width: expected a positive integer"):
        load_config("quick", ["model.width=-8"])
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "training" / "configs" / "quick.yaml").read_text() + "\nthreads: -1\n")
    with pytest.raises(ConfigError, match=rf"^config {re.escape(str(bad))}: threads"):
        load_config(bad)
    assert load_config(bad, ["threads=1"]).threads == 1


def test_simulate_refuses_an_out_that_holds_a_data_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A second data set into the same --out would leave the first one's extra files beside it."""
    out = tmp_path / "d"
    assert simulate_main(["--out", str(out), "--count", "2", "--size", "32"]) == 0
    before = {p.name: p.read_bytes() for p in (out / "low").iterdir()}
    capsys.readouterr()
    assert simulate_main(["--out", str(out), "--count", "1", "--size", "32", "--jitter", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--out {out}: already holds a data set" in err[0]
    assert {p.name: p.read_bytes() for p in (out / "low").iterdir()} == before
