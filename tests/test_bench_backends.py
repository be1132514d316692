"""The backend latency benchmark runs end to end on a tiny model (timings are not asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the benchmark exports a model with torch")
from engine_testutil import make_checkpoint  # noqa: E402

from benchmarks.backends import BenchConfig, run  # noqa: E402


def test_bench_times_every_backend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = BenchConfig(("onnxruntime", "torch"), (32, 40), frames=3, warmup=1, threads=1,
                         checkpoint=make_checkpoint(tmp_path / "g.pt"))
    timings = run(config)
    assert [t.backend for t in timings] == ["onnxruntime", "torch"]
    assert all(len(t.ms) == 3 and min(t.ms) > 0 for t in timings)
    out = capsys.readouterr().out
    assert "32x40 frames, 3 timed after 1 warm-up" in out and "p50 x 1.00" in out


def test_cli_reports_an_unusable_backend_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.backends import main

    assert main(["--backends", "nope", "--size", "32x32", "--frames", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m benchmarks.backends: unknown backend 'nope'") and "\n" not in err
    if not torch.cuda.is_available():
        assert main(["--backends", "torch", "--device", "cuda", "--size", "32x32", "--frames", "1"]) == 2
        assert "sees no CUDA GPU" in capsys.readouterr().err
