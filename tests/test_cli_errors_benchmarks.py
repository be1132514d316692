"""Bad input to the benchmark tools: one line on stderr naming the culprit, before the long work.

Flags out of range and unusable output paths are refused at parse time (exit status 2); missing
output folders are made; a candidate file that cannot be loaded is reported and left out while
the others are measured (exit status 1, 2 if none could be loaded); ``benchmarks.quality`` skips
and counts a pair whose sizes differ, and refuses a malformed ``--roi`` once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch", reason="the benchmark tools run generators with torch")

from benchmarks import backends, edges, evaluate, latency, needle, pairplot, quality, select  # noqa: E402
from training.sim import write_dataset  # noqa: E402

TOOLS: dict[str, Callable[[list[str]], int]] = {
    "evaluate": evaluate.main, "needle": needle.main, "select": select.main, "edges": edges.main,
    "pairplot": pairplot.main, "quality": quality.main, "latency": latency.main, "backends": backends.main,
}


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two paired 64x64 simulator pairs with needle masks (for evaluate, needle and quality alike)."""
    root = tmp_path_factory.mktemp("sim")
    write_dataset(root, count=0, size=64, seed=11, paired=True, eval_count=2, needle=True, progress=False)
    return root / "eval"


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smallest model the engine runs: the export's contract (uint8 (H, W) in and out) around
    an identity, built in milliseconds (a DRNN export takes seconds)."""
    import onnx
    from onnx import TensorProto, helper

    from engine.onnx_export import INPUT_NAME, OUTPUT_NAME

    graph = helper.make_graph(
        [helper.make_node("Identity", [INPUT_NAME], [OUTPUT_NAME])], "identity",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["H", "W"])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.UINT8, ["H", "W"])])
    path = tmp_path_factory.mktemp("w") / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


@pytest.fixture(scope="module")
def bad_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bad") / "random.onnx"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


def _refused(capsys: pytest.CaptureFixture[str], tool: str, args: list[str]) -> str:
    """Run ``tool`` in-process; it must exit with status 2 through the parser, with one stderr line."""
    with pytest.raises(SystemExit) as exc:
        TOOLS[tool](args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"python -m benchmarks.{tool}: error: "), err
    return err


def test_latency_refuses_cuda_graphs_for_a_backend_without_them(capsys) -> None:
    err = _refused(capsys, "latency", ["--backend", "onnxruntime", "--cuda-graphs"])
    assert "--cuda-graphs: only the torch backend on a CUDA GPU replays CUDA graphs, not --backend onnxruntime" in err


@pytest.mark.parametrize(("tool", "args", "culprit"), [
    ("evaluate", ["--threads", "-1"], "--threads"),
    ("evaluate", ["--limit", "-1"], "--limit"),
    ("select", ["--limit", "-2"], "--limit"),
    ("select", ["--edge-limit", "nan"], "--edge-limit"),
    ("edges", ["--limit", "nan"], "--limit"),
    ("edges", ["--limit", "-1"], "--limit"),
    ("backends", ["--threads", "-1", "--backends", "torch"], "--threads"),
    ("backends", ["--frames", "0", "--backends", "identity"], "--frames"),
    ("quality", ["--figure-index", "-1", "--no-drnn"], "--figure-index"),
    ("latency", ["--backend", "nosuch"], "--backend"),
    ("latency", ["--warmup", "-1"], "--warmup"),
])
def test_bad_flag_values_are_refused_at_parse_time(capsys, tmp_path: Path, tool: str, args: list[str], culprit: str) -> None:
    # the weights and folders do not exist: a tool that got past parsing would fail on them instead
    required = {
        "evaluate": ["--weights", str(tmp_path / "w.onnx"), "--eval", str(tmp_path / "e")],
        "select": ["--weights", str(tmp_path / "w.onnx"), "--eval", str(tmp_path / "e")],
        "edges": ["--weights", str(tmp_path / "w.onnx")],
        "backends": ["--size", "32x32", "--checkpoint", str(tmp_path / "w.pt")],
        "quality": ["--eval", str(tmp_path / "e"), "--out", str(tmp_path / "q")],
        "latency": ["--out", str(tmp_path / "l")],
    }[tool]
    err = _refused(capsys, tool, [*required, *args])
    assert f"argument {culprit}:" in err and repr(args[args.index(culprit) + 1]) in err


@pytest.mark.parametrize(("tool", "flag", "name"), [
    ("evaluate", "--json", "under/x.json"),
    ("evaluate", "--markdown", "under/x.md"),
    ("evaluate", "--figure", "under/x.png"),
    ("evaluate", "--figure", "x.xyz"),
    ("evaluate", "--pairs-figure", "under/p.png"),
    ("needle", "--json", "under/x.json"),
    ("needle", "--figure", "x.xyz"),
    ("select", "--json", "under/deeper/x.json"),
    ("pairplot", "--out", "under/x.png"),
    ("pairplot", "--out", "x.xyz"),
    ("quality", "--out", "under"),
    ("quality", "--markdown", "under/q.md"),
    ("latency", "--out", "under"),
])
def test_unusable_outputs_are_refused_before_any_work(capsys, tmp_path: Path, tool: str, flag: str, name: str) -> None:
    """``under`` is a regular file; ``.xyz`` no writer knows.  The weights and sets do not exist,
    so a check made only after loading them would not be reached."""
    (tmp_path / "under").write_text("a file, not a folder\n")
    missing = str(tmp_path / "missing")
    required = {
        "evaluate": ["--weights", missing, "--eval", missing], "needle": ["--weights", missing, "--eval", missing],
        "select": ["--weights", missing, "--eval", missing], "pairplot": ["--json", missing],
        "quality": ["--eval", missing, "--no-drnn"], "latency": [],
    }[tool]
    out = tmp_path / name
    err = _refused(capsys, tool, [*required, flag, str(out)])
    assert f"{flag} {out}: " in err
    assert (f"{tmp_path / 'under'} is a file, not a folder" in err) if "under" in name else "unknown file type '.xyz'" in err
    assert (tmp_path / "under").read_text() == "a file, not a folder\n"


def test_missing_output_folders_are_made(eval_dir: Path, tiny_onnx: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "new" / "deeper"
    assert evaluate.main(["--weights", str(tiny_onnx), "--eval", str(eval_dir), "--json", str(out / "r.json"),
                          "--markdown", str(out / "md" / "t.md"), "--figure", str(out / "fig" / "f.png")]) == 0
    assert str(tiny_onnx) in json.loads((out / "r.json").read_text())
    assert "| G(x) (DRNN) |" in (out / "md" / "t.md").read_text()
    assert cv2.imread(str(out / "fig" / "f.png"), cv2.IMREAD_GRAYSCALE).shape == (evaluate.LABEL_STRIP + 2 * 64, 3 * 64)
    assert pairplot.main(["--json", str(out / "r.json"), "--out", str(tmp_path / "pp" / "pairs.png")]) == 0
    assert (tmp_path / "pp" / "pairs.png").stat().st_size > 0
    assert not list(tmp_path.rglob(".*.tmp")) and not list(tmp_path.rglob(".write-check-*"))
    capsys.readouterr()


def _one_line_about(err: str, path: Path) -> None:
    lines = [ln for ln in err.splitlines() if str(path) in ln]
    assert len(lines) == 1 and lines[0].endswith("; left out") and "Traceback" not in err, err


def test_one_unreadable_candidate_is_left_out_and_the_others_measured(eval_dir: Path, tiny_onnx: Path, bad_onnx: Path,
                                                                       tmp_path: Path, capsys) -> None:
    js = tmp_path / "e.json"
    assert evaluate.main(["--weights", str(bad_onnx), str(tiny_onnx), "--eval", str(eval_dir), "--json", str(js)]) == 1
    captured = capsys.readouterr()
    _one_line_about(captured.err, bad_onnx)
    assert f"{tiny_onnx}: " in captured.out and list(json.loads(js.read_text())) == [str(tiny_onnx)]

    js = tmp_path / "n.json"
    assert needle.main(["--weights", str(tiny_onnx), str(bad_onnx), "--eval", str(eval_dir), "--no-progress",
                        "--json", str(js)]) == 1
    _one_line_about(capsys.readouterr().err, bad_onnx)
    assert list(json.loads(js.read_text())) == [str(tiny_onnx)]

    assert edges.main(["--weights", str(bad_onnx), str(tiny_onnx)]) == 1
    captured = capsys.readouterr()
    _one_line_about(captured.err, bad_onnx)
    assert f"{tiny_onnx}: OK" in captured.out or f"{tiny_onnx}: EDGE" in captured.out


def test_select_goes_on_without_an_unreadable_candidate_or_incumbent(eval_dir: Path, tiny_onnx: Path, bad_onnx: Path,
                                                                     tmp_path: Path, capsys) -> None:
    js = tmp_path / "s.json"
    assert select.main(["--weights", str(tiny_onnx), "--incumbent", str(bad_onnx), "--eval", str(eval_dir),
                        "--edge-limit", "1000", "--no-progress", "--json", str(js)]) == 1
    captured = capsys.readouterr()
    _one_line_about(captured.err, bad_onnx)
    assert f"pick: {tiny_onnx} " in captured.out and "the incumbent could not be loaded" in captured.out
    assert json.loads(js.read_text())["pick"] == str(tiny_onnx)


def test_every_candidate_unreadable_is_status_2(eval_dir: Path, bad_onnx: Path, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "missing.pt"
    assert evaluate.main(["--weights", str(bad_onnx), str(missing), "--eval", str(eval_dir)]) == 2
    err = capsys.readouterr().err
    _one_line_about(err, bad_onnx)
    _one_line_about(err, missing)
    assert edges.main(["--weights", str(missing)]) == 2
    _one_line_about(capsys.readouterr().err, missing)


def _copy_eval(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_quality_skips_a_pair_of_two_sizes_and_names_a_corrupt_truth(eval_dir: Path, tmp_path: Path, capsys) -> None:
    bad = _copy_eval(eval_dir, tmp_path / "eval")
    y = cv2.imread(str(bad / "y_001.png"), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(bad / "x_001.png"), y[:48, :48])
    (bad / "truth_000.npz").write_bytes(b"PK\x03\x04 truncated")
    rc = quality.main(["--eval", str(bad), "--no-drnn", "--methods", "median", "--roi", "4,4,40,40",
                       "--out", str(tmp_path / "q")])
    err = capsys.readouterr().err
    assert "skipping x_001.png: shape (48, 48) differs from y_001.png (64, 64)" in err
    assert "skipping x_000.png: truth_000.npz: unreadable" in err and "Traceback" not in err
    assert rc == 2 and err.strip().splitlines()[-1].startswith("error: no usable images")


def test_quality_refuses_a_malformed_roi_once_and_a_figure_index_beyond_the_set(eval_dir: Path, tmp_path: Path,
                                                                                capsys) -> None:
    base = ["--x", str(eval_dir), "--y", str(eval_dir), "--no-drnn", "--methods", "median", "--out", str(tmp_path / "q")]
    err = _refused(capsys, "quality", [*base, "--roi", "1,2,3"])
    assert "--roi 1,2,3: expected x,y,w,h" in err and "WARN" not in err
    err = _refused(capsys, "quality", [*base, "--roi", "4,4,40,40", "--target", str(tmp_path / "nope.png")])
    assert f"--target {tmp_path / 'nope.png'}: no such mask image" in err
    (tmp_path / "trunc.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    err = _refused(capsys, "quality", [*base, "--roi", str(tmp_path / "trunc.png")])
    assert "cannot read the mask image" in err

    out = tmp_path / "fig"
    assert quality.main(["--eval", str(eval_dir), "--no-drnn", "--methods", "median", "--roi", "4,4,40,40",
                         "--figure-index", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == "error: --figure-index 2: there are only 2 usable image(s), 0..1\n"
    assert not (out / "quality.md").exists()


def test_latency_names_a_corrupt_model_file_before_starting_the_chain(bad_onnx: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert latency.main(["--backend", "onnxruntime", "--weights", str(bad_onnx), "--size", "32x32", "--frames", "2",
                         "--warmup", "0", "--baseline-frames", "0", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"benchmarks.latency: {bad_onnx}: not an ONNX model"), err
    assert not (out / "despeckler.log").exists()  # read (for the floor) before any stage started
    bad_pt = tmp_path / "bad.pt"
    bad_pt.write_bytes(b"not a checkpoint")
    assert latency.main(["--backend", "torch", "--weights", str(bad_pt), "--size", "32x32", "--frames", "2",
                         "--warmup", "0", "--baseline-frames", "0", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"benchmarks.latency: checkpoint {bad_pt}: unreadable or corrupt"), err


def test_latency_weights_by_name_is_the_file_its_backend_reads(tmp_path: Path, capsys) -> None:
    from engine.weights import SHIPPED, WEIGHTS_DIR

    if not (WEIGHTS_DIR / f"{SHIPPED['fast']}.pt").is_file():
        pytest.skip("the fast model is not shipped here")
    common = ["--out", str(tmp_path / "l")]
    assert latency.parse_args(["--backend", "torch", "--weights", "fast", *common]).weights == WEIGHTS_DIR / "drnn_fast.pt"
    assert latency.parse_args(["--backend", "onnxruntime", "--weights", "fast", *common]).weights == WEIGHTS_DIR / "drnn_fast.onnx"
    with pytest.raises(SystemExit) as exit_info:
        latency.parse_args(["--backend", "torch", "--weights", "fast-int8", *common])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--weights: no fast-int8 weights for this backend" in err[0], err
