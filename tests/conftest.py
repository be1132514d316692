"""Shared pytest options (slow, soak and GPU tests are opt-in or skipped with a reason) and the
shipped fast model as a fixture."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")
    parser.addoption("--soak", action="store_true", default=False, help="run the bounded soak tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_slow = pytest.mark.skip(reason="slow test: run with --runslow")
    skip_soak = pytest.mark.skip(reason="soak test: run with --soak")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "soak" in item.keywords and not config.getoption("--soak"):
            item.add_marker(skip_soak)


@pytest.fixture(scope="module")
def fast():
    """The shipped fast model (``weights/drnn_fast.onnx``) on ONNX Runtime, CPU, engine defaults."""
    from engine.registry import create_despeckler

    with create_despeckler("onnxruntime", "fast", device="cpu") as d:
        yield d
