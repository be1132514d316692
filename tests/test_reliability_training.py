"""Training survives SIGKILL at a random moment: no checkpoint is ever corrupt, ``--resume`` continues.

The trainer runs the quick config as a real process, saving a checkpoint after every unit
(``checkpoint_every_s=0``) so the kill is likely to land during a write.  Corrupt and foreign
checkpoints given to ``--resume`` are covered by ``test_train.py``; corrupt ONNX files by
``test_engine_backends.py``.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="torch is in the [train] extra")

from training.checkpoint import load_checkpoint  # noqa: E402
from training.sim import write_dataset  # noqa: E402
from training.train import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sim")
    write_dataset(root, count=3, size=(48, 64), seed=5, progress=False)
    return root


def _args(data: Path, out: Path) -> list[str]:
    return ["--config", "quick", "--no-progress", "--low", str(data / "low"), "--high", str(data / "high"), "--out", str(out),
            "--set", "checkpoint_every_s=0", "--set", "phases.gan.iterations=40"]


def _kill_at_random(data: Path, out: Path, seed: int) -> None:
    """Start training and SIGKILL it at a random unit of its 50 (plus 0..50 ms, to land mid-write).

    The kill point is chosen by progress, read from ``last.pt`` (written by atomic rename, so
    always whole), not by wall time: on a fast machine a fixed delay can outlast the run.
    """
    rng = random.Random(seed)
    target_unit = rng.randint(3, 30)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "training.train", *_args(data, out)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = out / "checkpoints" / "last.pt"
    try:
        deadline = time.monotonic() + 120
        while not (last.exists() and load_checkpoint(last)["unit"] >= target_unit):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, f"training did not reach unit {target_unit}"
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.05))
        assert proc.poll() is None, "training finished before the kill; lengthen the run"
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)])
def test_sigkill_never_leaves_a_corrupt_checkpoint_and_resume_finishes(data: Path, tmp_path: Path, seed: int) -> None:
    out = tmp_path / "run"
    _kill_at_random(data, out, seed)
    saved = sorted((out / "checkpoints").glob("*.pt"))
    assert saved, "no checkpoint"
    for path in saved:  # every complete-named file is a whole checkpoint
        ckpt = load_checkpoint(path, require=("generator", "discriminator", "phase", "step", "config"))
        assert ckpt["step"] >= 0
    killed_at = load_checkpoint(out / "checkpoints" / "last.pt")
    assert killed_at["phase"] < 3, "the kill came after the last phase"
    assert main([*_args(data, out), "--resume"]) == 0
    done = load_checkpoint(out / "checkpoints" / "last.pt")
    assert done["phase"] == 3 and done["unit"] > killed_at["unit"]  # all three phases done, continued from the kill
    assert load_checkpoint(out / "generator.pt")["generator"].keys() == killed_at["generator"].keys()


def test_a_run_killed_after_a_phase_resumes_from_that_phase_end(data: Path, tmp_path: Path) -> None:
    """With no timed checkpoint (``checkpoint_every_s`` far away), a run SIGKILLed in its second
    phase still resumes there: each phase's end writes ``last.pt`` as well as ``after_<phase>.pt``."""
    out = tmp_path / "run"
    args = ["--config", "quick", "--no-progress", "--low", str(data / "low"), "--high", str(data / "high"),
            "--out", str(out), "--set", "checkpoint_every_s=3600", "--set", "phases.d_pretrain.epochs=100000"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "training.train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    phase_end = out / "checkpoints" / "after_g_pretrain.pt"
    try:
        deadline = time.monotonic() + 120
        while not phase_end.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the first phase did not end"
            time.sleep(0.02)
        assert proc.poll() is None, "training finished before the kill"
    finally:
        proc.kill()
        proc.wait()
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert (last["phase_name"], last["unit"]) == ("d_pretrain", 8)  # quick's first phase is 8 units
    assert main([*args, "--resume", "--max-steps", "1"]) == 0
    resumed = load_checkpoint(out / "checkpoints" / "last.pt")
    assert (resumed["phase_name"], resumed["step"], resumed["unit"]) == ("d_pretrain", 1, 9)
