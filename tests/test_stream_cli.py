"""The flags of ``python -m stream.run`` refuse at start-up what the engine would refuse frame by frame
at run time, and log nothing untrue before they do.  Real CLI calls, the identity backend, small
frames, ``tcp://127.0.0.1:*`` (a free port)."""

from __future__ import annotations

import logging

import pytest

from engine.base import InputSpec
from stream.run import main as run_main

#: the engine's profile as the runtime refusal (:meth:`engine.base.InputSpec.check`) writes it.
PROFILE = "{}x{} .. {}x{}".format(*InputSpec().min_hw, *InputSpec().max_hw)
FREE = "tcp://127.0.0.1:*"


def _size_below_and_above() -> list[str]:
    """Sizes with a side one pixel under the engine's smallest or over its largest."""
    (h0, w0), (h1, w1) = InputSpec().min_hw, InputSpec().max_hw
    return [f"{h0 - 1}x{w0}", f"{h0}x{w0 - 1}", f"{h1 + 1}x{w0}", f"{h0}x{w1 + 1}", str(min(h0, w0) - 1)]


@pytest.mark.parametrize("size", _size_below_and_above())
def test_run_refuses_a_sim_size_outside_the_engines_profile_at_start(
    capsys: pytest.CaptureFixture[str], size: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_main(["--size", size, "--frames", "3", "--publish", FREE])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --size" in err and PROFILE in err and repr(size) in err, err


def test_run_help_gives_the_engines_profile(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run_main(["--help"])
    assert f"profile {PROFILE}" in " ".join(capsys.readouterr().out.split())


def test_run_streams_the_engines_smallest_frame(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    h0, w0 = InputSpec().min_hw
    assert run_main(["--backend", "identity", "--size", f"{h0}x{w0}", "--frames", "1", "--fps", "200",
                     "--publish", FREE]) == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or "refused" in r.getMessage()]


def test_cuda_graphs_on_torch_without_a_gpu_says_nothing_of_a_gpu_first(caplog: pytest.LogCaptureFixture) -> None:
    """The GPU is looked for before the weights are chosen for one: the only line is the error."""
    torch = pytest.importorskip("torch", reason="the torch backend needs torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: tests/test_stream_torch.py runs the chain with CUDA graphs")
    caplog.set_level(logging.INFO)
    argv = ["--backend", "torch", "--cuda-graphs", "--size", "32", "--frames", "1", "--publish", FREE]
    assert run_main(argv) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "GPU" in m and not m.startswith("--backend torch --cuda-graphs: ")], messages
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["--backend torch --cuda-graphs: torch sees no CUDA GPU to replay CUDA graphs on"], errors
