"""Counters and latency percentiles of the running chain, rendered as a once-a-second status line.

Counters (``grabbed``, ``in``, ``out``, ``dropped``...) are cumulative; the line shows the frame
counters as rates over the last interval and the others as totals.  Timings are in milliseconds; their
p50/p99 are taken over the samples of the last interval only.

Refused frames are counted in ``errors`` (malformed messages in ``malformed``) through
:meth:`Stats.refuse`, which also keeps the log
short: the first refusal is logged in full, later ones are summed up once per status line; with
a refusal limit (``--frames N``) it also tells when N frames were refused before N were sent.
"""

from __future__ import annotations

import threading
import time

import numpy as np

__all__ = ["Stats"]

#: counters shown as frames per second (once they exist): grabbed by a source, received by the
#: despeckler, published.  Every other counter is shown as a running total.
RATES = ("grabbed", "in", "out")
#: totals shown on every line, zero or not, in this order.
TOTALS = ("dropped", "gaps", "malformed", "errors", "reconnects")


class Stats:
    """Thread-safe counters and timing samples shared by the stages of one process."""

    def __init__(self, refusal_limit: int | None = None, sent: str = "out") -> None:
        """``refusal_limit``: :attr:`too_many_refused` turns true if that many frames are refused
        while counter ``sent`` is still below it."""
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._samples: dict[str, list[float]] = {}
        self._last_counts: dict[str, int] = {}
        self._last_time = time.monotonic()
        #: free text appended to the status line (the backend in use, the source).
        self.label = ""
        self._refused = 0
        self._refusal_limit = refusal_limit
        self._sent = sent
        self._too_many_refused = False
        self._unreported = 0
        self._last_refusal = ""

    def add(self, counter: str, n: int = 1) -> None:
        """Increase ``counter`` by ``n``."""
        with self._lock:
            self._counts[counter] = self._counts.get(counter, 0) + n

    def observe(self, timing: str, ms: float) -> None:
        """Record one sample (milliseconds) of ``timing``."""
        with self._lock:
            self._samples.setdefault(timing, []).append(ms)

    def refuse(self, reason: str, counter: str = "errors") -> bool:
        """Count one refused frame in ``counter`` (``errors``, or ``malformed`` for a message the
        protocol refuses).  True for the first refusal of the process (log it in full); later ones
        are summed up by :meth:`refusal_summary` (log them at DEBUG)."""
        with self._lock:
            self._counts[counter] = self._counts.get(counter, 0) + 1
            self._refused += 1
            if self._refused == self._refusal_limit and self._counts.get(self._sent, 0) < self._refused:
                self._too_many_refused = True
            if self._refused == 1:
                return True
            self._unreported += 1
            self._last_refusal = reason
            return False

    @property
    def too_many_refused(self) -> bool:
        """True once ``refusal_limit`` frames were refused before as many were sent."""
        with self._lock:
            return self._too_many_refused

    def refusal_summary(self) -> str | None:
        """One line on the frames refused since the last summary (after the first), or None."""
        with self._lock:
            count, self._unreported = self._unreported, 0
            last = self._last_refusal
        return f"{count} more frame(s) refused; the last: {last}" if count else None

    def total(self, counter: str) -> int:
        """The cumulative value of ``counter``."""
        with self._lock:
            return self._counts.get(counter, 0)

    def line(self) -> str:
        """Render the status line and start a new interval.

        Rates are ``(count_now - count_at_last_line) / seconds_since_last_line``.
        """
        with self._lock:
            now = time.monotonic()
            dt = max(now - self._last_time, 1e-9)
            counts, samples = dict(self._counts), self._samples
            last, self._last_counts, self._last_time, self._samples = self._last_counts, counts, now, {}
        rates = [k for k in RATES if k in counts] or ["in"]
        parts = [" ".join(f"{k} {(counts.get(k, 0) - last.get(k, 0)) / dt:.1f}/s" for k in rates)]
        for name, values in sorted(samples.items()):
            p50, p99 = np.percentile(values, [50, 99])
            parts.append(f"{name} p50 {p50:.1f} p99 {p99:.1f} ms")
        parts.append(" ".join(f"{k} {counts.get(k, 0)}" for k in TOTALS))
        if self.label:
            parts.append(self.label)
        return " | ".join(parts)
