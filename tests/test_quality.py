"""``python -m benchmarks.quality`` on tiny real inputs: simulator pairs, image folders, a tiny ONNX DRNN."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.quality import main
from benchmarks.quality_report import PAPER_TABLE_I
from training.sim import simulate_pair


def _write_eval(folder: Path, pairs: int = 2, size: int = 96) -> Path:
    """``pairs`` simulator pairs whose parenchyma holds at least 400 pixels (seeds from 0 up)."""
    folder.mkdir(parents=True, exist_ok=True)
    i = 0
    for seed in range(50):
        x, y, truth = simulate_pair(seed, size)
        if truth["parenchyma"].sum() < 400:
            continue
        cv2.imwrite(str(folder / f"x_{i:03d}.png"), x)
        cv2.imwrite(str(folder / f"y_{i:03d}.png"), y)
        np.savez_compressed(folder / f"truth_{i:03d}.npz", **truth)
        i += 1
        if i == pairs:
            return folder
    raise AssertionError(f"the simulator gave fewer than {pairs} images with parenchyma at size {size}")


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        return {row["method"]: row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_eval(tmp_path_factory.mktemp("sim") / "eval")


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = pytest.importorskip("torch", reason="exporting a DRNN needs torch")
    from engine.onnx_export import export_onnx
    from training.models import DRNN

    torch.manual_seed(0)
    return export_onnx(
        DRNN(width=4, blocks=1, convs_per_block=1).eval(), tmp_path_factory.mktemp("w") / "tiny.onnx"
    )


def test_paired_run_writes_table_csv_and_figure(eval_dir: Path, tmp_path: Path, capsys) -> None:
    out, md = tmp_path / "out", tmp_path / "QUALITY.md"
    rc = main(["--eval", str(eval_dir), "--no-drnn", "--methods", "srad,median", "--window", "7",
               "--out", str(out), "--markdown", str(md)])  # fmt: skip
    assert rc == 0
    rows = _rows(out / "quality.csv")
    assert list(rows) == ["input", "reference", "srad", "median"]
    assert float(rows["input"]["kl_x"]) == 0.0 and float(rows["reference"]["kl_y"]) == 0.0
    assert float(rows["srad"]["ssnr"]) > 1.5 * float(rows["input"]["ssnr"])  # despeckling raises SSNR
    assert float(rows["srad"]["kl_x"]) > 0.0
    assert math.isnan(float(rows["reference"]["ssim"]))  # y against itself is left out
    assert 0.0 < float(rows["median"]["ssim"]) < 1.0 and float(rows["median"]["ms"]) > 0.0
    # the reference probe's grain is finer laterally than the input probe's (the simulator's point)
    assert float(rows["reference"]["grain_lateral"]) < float(rows["input"]["grain_lateral"])
    report = md.read_text()
    assert report == (out / "quality.md").read_text()
    assert "DRNN not run (--no-drnn)" in report and "| SRAD |" in report
    assert all(name in report for name, *_ in PAPER_TABLE_I) and "orderings" in report
    fig = cv2.imread(str(out / "quality_fig4.png"))
    assert fig is not None and fig.shape[1] > 600
    assert "| Median |" in capsys.readouterr().out


def test_drnn_runs_through_the_engine(eval_dir: Path, tiny_onnx: Path, tmp_path: Path) -> None:
    rc = main(["--eval", str(eval_dir), "--backend", "onnxruntime", "--weights", str(tiny_onnx),
               "--methods", "eagf", "--window", "7", "--out", str(tmp_path)])  # fmt: skip
    assert rc == 0
    rows = _rows(tmp_path / "quality.csv")
    assert list(rows) == ["input", "reference", "drnn", "eagf"]
    assert rows["eagf"]["label"] == "EAGF*" and rows["eagf"]["approximation_note"]
    assert float(rows["drnn"]["ms"]) > 0.0 and math.isfinite(float(rows["drnn"]["kl_x"]))


def test_the_report_says_in_distribution_only_for_the_projects_simulator(eval_dir: Path, tiny_onnx: Path,
                                                                         tmp_path: Path) -> None:
    """A paired set without ``training.simulate``'s ``simulate.yaml`` (another simulator's pairs)
    is not called in-distribution; one with it is."""
    shutil.copytree(eval_dir, tmp_path / "set" / "eval")
    for made_here in (False, True):
        if made_here:
            (tmp_path / "set" / "simulate.yaml").write_text("simulator_version: 1\nconfig: {seed: 0}\n")
        assert main(["--eval", str(tmp_path / "set" / "eval"), "--backend", "onnxruntime", "--weights", str(tiny_onnx),
                     "--methods", "median", "--window", "7", "--out", str(tmp_path / f"out{made_here}"),
                     "--no-progress"]) == 0
        report = (tmp_path / f"out{made_here}" / "quality.md").read_text()
        assert ("so this is an in-distribution comparison" in report) is made_here
        assert ("may be out of the DRNN's training distribution" in report) is not made_here


def test_a_shipped_models_name_runs_that_model(eval_dir: Path, tmp_path: Path) -> None:
    from engine.weights import WEIGHTS_DIR

    if not (WEIGHTS_DIR / "drnn_fast.onnx").is_file():
        pytest.skip("the fast model is not shipped here")
    drnn = {}
    for weights in ("fast", str(WEIGHTS_DIR / "drnn_fast.onnx")):
        out = tmp_path / Path(weights).name
        assert main(["--eval", str(eval_dir), "--backend", "onnxruntime", "--weights", weights, "--limit", "1",
                     "--methods", "median", "--window", "7", "--out", str(out)]) == 0  # fmt: skip
        rows = _rows(out / "quality.csv")
        assert list(rows) == ["input", "reference", "drnn", "median"]
        assert rows["drnn"]["label"] == f"DRNN ({weights})"  # the row names the model it ran
        drnn[weights] = {k: v for k, v in rows["drnn"].items() if k not in ("ms", "label")}
    assert drnn["fast"] == drnn[str(WEIGHTS_DIR / "drnn_fast.onnx")]  # the name ran that very file


def test_several_weights_give_one_row_each(eval_dir: Path, tiny_onnx: Path, tmp_path: Path) -> None:
    from benchmarks.quality import drnn_rows

    assert drnn_rows([]) == [("drnn", "DRNN (this project)", None)]
    assert drnn_rows([Path("fast")]) == [("drnn", "DRNN (fast)", Path("fast"))]
    assert [k for k, _, _ in drnn_rows([Path("default"), Path("fast-int8"), Path("a/fast_int8.onnx")])] == [
        "drnn", "drnn_fast_int8", "drnn_fast_int8_"]
    assert main(["--eval", str(eval_dir), "--backend", "onnxruntime", "--weights", str(tiny_onnx), "fast",
                 "--limit", "1", "--methods", "median", "--window", "7", "--out", str(tmp_path)]) == 0  # fmt: skip
    rows = _rows(tmp_path / "quality.csv")
    assert list(rows) == ["input", "reference", "drnn", "drnn_fast", "median"]
    assert rows["drnn"]["label"] == f"DRNN ({tiny_onnx})" and rows["drnn_fast"]["label"] == "DRNN (fast)"
    assert rows["drnn"]["kl_x"] != rows["drnn_fast"]["kl_x"]  # two models, two results


def test_missing_weights_name_the_file_and_the_way_out(eval_dir: Path, tmp_path: Path, capsys) -> None:
    """Refused at parse time, before any image is read."""
    missing = tmp_path / "nope.onnx"
    with pytest.raises(SystemExit) as stop:
        main(["--eval", str(eval_dir), "--backend", "onnxruntime", "--weights", str(missing), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and str(missing) in err and "--no-drnn" in err
    assert err.count("\n") == 1 and "skipping" not in err


def test_unpaired_regions_are_refused_with_a_paired_set(eval_dir: Path, tmp_path: Path, capsys) -> None:
    for flag in ("--roi-y", "--target"):
        with pytest.raises(SystemExit) as stop:
            main(["--eval", str(eval_dir), flag, "1,1,8,8", "--no-drnn", "--out", str(tmp_path)])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and "for unpaired runs" in err and err.count("\n") == 1


def test_unpaired_folders_with_a_rectangle_roi(tmp_path: Path) -> None:
    xs, ys = tmp_path / "x", tmp_path / "y"
    xs.mkdir()
    ys.mkdir()
    for seed in (3, 4):
        x, y, _ = simulate_pair(seed, 80)  # the regions are rectangles: any phantom will do
        cv2.imwrite(str(xs / f"a{seed}.png"), x)
        cv2.imwrite(str(ys / f"b{seed}.jpg"), y)
    (xs / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    rc = main(["--x", str(xs), "--y", str(ys), "--roi", "10,20,50,40", "--target", "30,30,12,12",
               "--no-drnn", "--methods", "median", "--window", "7", "--out", str(out)])  # fmt: skip
    assert rc == 0
    rows = _rows(out / "quality.csv")
    assert list(rows) == ["input", "reference", "median"]  # the reference images' own figures, as in the paper
    ref = rows["reference"]
    assert all(math.isfinite(float(ref[k])) for k in ("ssnr", "enl", "kl_y", "grain_lateral"))
    assert all(math.isnan(float(ref[k])) for k in ("kl_x", "cnr", "ssim", "log_corr"))
    assert "SSNR closest to the reference's" in (out / "quality.md").read_text()
    assert math.isnan(float(rows["median"]["ssim"])) and math.isnan(float(rows["median"]["log_corr"]))
    assert math.isfinite(float(rows["median"]["kl_y"])) and math.isfinite(float(rows["median"]["cnr"]))
    assert "1 item(s) skipped" in (out / "quality.md").read_text()
    # a --target outside the --roi (the vessel is not in the homogeneous patch): its CNR is
    # measured against its own surroundings, not left empty
    out2 = tmp_path / "out2"
    rc = main(["--x", str(xs), "--y", str(ys), "--roi", "40,40,30,30", "--target", "4,4,10,10",
               "--no-drnn", "--methods", "median", "--window", "7", "--out", str(out2)])  # fmt: skip
    assert rc == 0 and math.isfinite(float(_rows(out2 / "quality.csv")["input"]["cnr"]))


def test_unpaired_masks_zero_rectangles_and_black_bands(tmp_path: Path, capsys) -> None:
    """A JPEG mask counts from grey level 128 (its compression noise stays out), a rectangle of zero
    width is named as such, and a black band inside the region no longer turns SSNR and ENL into inf."""
    xs, ys = tmp_path / "x", tmp_path / "y"
    xs.mkdir()
    ys.mkdir()
    for seed in (3, 4):
        x, y, _ = simulate_pair(seed, 80)
        x[:, 30:36] = 0  # a black band through the region
        cv2.imwrite(str(xs / f"a{seed}.png"), x)
        cv2.imwrite(str(ys / f"b{seed}.png"), y)
    mask = np.zeros((80, 80), np.uint8)
    mask[20:60, 10:70] = 255
    cv2.imwrite(str(tmp_path / "roi.jpg"), mask, [cv2.IMWRITE_JPEG_QUALITY, 50])
    assert (cv2.imread(str(tmp_path / "roi.jpg"), cv2.IMREAD_GRAYSCALE) > 0).sum() > mask.astype(bool).sum()
    from benchmarks.quality import _region

    np.testing.assert_array_equal(_region(str(tmp_path / "roi.jpg"), (80, 80), "--roi"), mask.astype(bool))
    out = tmp_path / "out"
    assert main(["--x", str(xs), "--y", str(ys), "--roi", str(tmp_path / "roi.jpg"), "--no-drnn", "--methods",
                 "median", "--window", "7", "--out", str(out)]) == 0  # fmt: skip
    rows = _rows(out / "quality.csv")
    assert all(math.isfinite(float(rows[m][k])) for m in ("input", "median") for k in ("ssnr", "enl"))
    assert main(["--x", str(xs), "--y", str(ys), "--roi", "10,10,0,5", "--no-drnn", "--methods", "median",
                 "--out", str(tmp_path / "out2")]) == 2  # fmt: skip
    assert "--roi 10,10,0,5: the rectangle's width and height must be > 0" in capsys.readouterr().err


def test_an_image_without_parenchyma_is_skipped_and_counted(eval_dir: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "eval"
    folder.mkdir()
    for f in eval_dir.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    with np.load(folder / "truth_001.npz") as npz:
        truth = {k: npz[k] for k in npz.files}
    truth["parenchyma"][:] = False
    np.savez_compressed(folder / "truth_001.npz", **truth)
    rc = main(
        [
            "--eval",
            str(folder),
            "--no-drnn",
            "--methods",
            "median",
            "--window",
            "7",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 0
    assert "skipping x_001.png: the parenchyma mask is empty" in capsys.readouterr().err
    assert "1 image(s), the first 96x96, 1 item(s) skipped" in (tmp_path / "o" / "quality.md").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--roi", "90,0,20,20"], "--roi 90,0,20,20: rectangle outside"),
        (["--methods", "srad,bogus"], "--methods: unknown bogus"),
        (["--window", "8"], "--window must be an odd number"),
        (["--eval", "PARENT"], "no x_NNN.png files (a paired eval/ set of python -m training.simulate); did you mean"),
    ],
)
def test_bad_arguments_are_one_line_errors(eval_dir: Path, tmp_path: Path, capsys, extra, message) -> None:
    with pytest.raises(SystemExit) as exc_info:
        extra = [str(eval_dir.parent) if a == "PARENT" else a for a in extra]  # the set's folder, not its eval/
        rc = main(["--eval", str(eval_dir), "--no-drnn", "--out", str(tmp_path), *extra])
        raise SystemExit(rc)
    assert exc_info.value.code == 2
    assert message in capsys.readouterr().err


def test_images_where_a_method_falls_below_the_input_are_counted() -> None:
    from benchmarks.quality import MethodResult, QualityRun
    from benchmarks.quality_report import below_input, orderings

    def result(name: str, label: str, log_corr: list[float]) -> MethodResult:
        return MethodResult(name, label, values={"log_corr": log_corr})

    run = QualityRun([result("input", "Input", [0.5, 0.6, 0.7]), result("reference", "y", [0.1, 0.1, 0.1]),
                      result("a", "A", [0.4, 0.7, math.nan]), result("b", "B", [0.6, 0.5, 0.6])],
                     {}, True, 3, 0, "")
    assert below_input(run, "log_corr") == {"A": (1, 2), "B": (2, 3)}  # the reference row is not a method
    assert "falls below the input's, fewest first: A (1 of 2), B (2 of 3)." in "\n".join(orderings(run))
    no_truth = QualityRun([result("input", "Input", [math.nan] * 3), result("a", "A", [0.4] * 3)], {}, False, 3, 0, "")
    assert below_input(no_truth, "log_corr") == {}
