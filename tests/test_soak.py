"""Bounded soak test (``pytest --soak``): the whole chain at full rate for minutes, nothing leaks.

A grabber process (simulator, 64 x 64, paced at 1,000 frames/s: as fast as it goes here) and a
despeckler process (identity) stream to a subscriber that reads every frame, while a second
subscriber connects and disconnects every second.  After a warm-up, and again at the end, each
process's resident memory (``VmRSS``), open file descriptors (``/proc/<pid>/fd``) and threads
(``Threads``) are read; memory may grow by ``RSS_MARGIN_KIB``, descriptors and threads not at all
(a short-lived connection may hold 2 descriptors at the moment of reading).
``USDESPECKLE_SOAK_S`` sets the duration (default 120 s).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from test_reliability_processes import RSS_MARGIN_KIB, chain

from stream.client import Subscriber

SOAK_S = float(os.environ.get("USDESPECKLE_SOAK_S", "120"))
WARMUP_S = 10.0


def usage(pid: int) -> dict[str, int]:
    """``rss_kib``, ``fds`` and ``threads`` of process ``pid`` (Linux ``/proc``)."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss_kib": int(status["VmRSS"].split()[0]), "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": int(status["Threads"])}


@pytest.mark.soak
def test_chain_at_full_rate_leaks_nothing(tmp_path: Path) -> None:
    with chain(tmp_path, size="64x64", fps="1000") as (grabber, despeckler, publish), Subscriber(publish) as sub:
        pids = {"grabber": grabber.proc.pid, "despeckler": despeckler.proc.pid, "subscriber": os.getpid()}
        assert sub.receive(30.0) is not None
        start, received, before, churn = time.monotonic(), 0, None, time.monotonic()
        while time.monotonic() - start < SOAK_S:
            frame = sub.receive(5.0)
            assert frame is not None, f"the stream stopped after {time.monotonic() - start:.0f} s"
            received += 1
            if before is None and time.monotonic() - start >= WARMUP_S:
                before = {name: usage(pid) for name, pid in pids.items()}
            if time.monotonic() - churn >= 1.0:  # a client that comes and goes
                with Subscriber(publish) as visitor:
                    visitor.receive(1.0)
                churn = time.monotonic()
        after = {name: usage(pid) for name, pid in pids.items()}
    assert received >= SOAK_S * 50, f"only {received} frames in {SOAK_S:.0f} s"
    for name in pids:
        grown = after[name]["rss_kib"] - before[name]["rss_kib"]
        assert grown <= RSS_MARGIN_KIB, f"{name}: RSS grew by {grown} KiB ({before[name]} -> {after[name]})"
        assert after[name]["fds"] <= before[name]["fds"] + 2, f"{name}: file descriptors {before[name]} -> {after[name]}"
        assert after[name]["threads"] <= before[name]["threads"], f"{name}: threads {before[name]} -> {after[name]}"
