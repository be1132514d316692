"""The stages of the chain, each the body of one thread: grab, receive, despeckle, publish.

::

    Grabber   source --(paced)--> encode --> PUB
    Receiver  SUB --> decode --> [latest slot]            (malformed messages counted, skipped)
    Despeckle [latest slot] --> roi.despeckle_frame --> [latest slot]
    Publisher [latest slot] --> encode --> PUB, recorder, OpenIGTLink, preview

Every loop waits with a time-out of at most ``POLL_S`` and checks the shared ``stop`` event, so
setting it ends all stages within a fraction of a second.  A stage that falls behind only ever
sees the newest frame: older ones are dropped and counted.  A frame a stage refuses is counted
in ``errors``, a message the protocol refuses in ``malformed``; only the first refusal is logged
in full, the rest at DEBUG (``-v``) and in a summary with each status line
(:meth:`stream.stats.Stats.refuse`).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from engine.base import Despeckler, FrameError
from engine.persistence import Persistence
from engine.pixels import PixelMode, check_spacing, resamples, spacing_for, working_pixel_mm
from engine.speckle import frames_view
from stream.latest import LatestSlot
from stream.protocol import (
    DEFAULT_LIMITS,
    Limits,
    OverLimit,
    ProtocolError,
    SequenceTracker,
    decode_frame,
    encode_frame,
)
from stream.roi import Region, despeckle_frame
from stream.sinks import Sink, SinkError
from stream.sources import Source, SourceError, SourceStalled
from stream.stats import Stats
from stream.transport import endpoint_of, receive, send

__all__ = ["Item", "Grabber", "Receiver", "DespeckleStage", "Publisher", "POLL_S", "HOST"]

log = logging.getLogger(__name__)

#: longest wait of any stage before it checks the stop event again, seconds.
POLL_S = 0.1
#: a subscription silent for this long after frames came is named in a warning, seconds.
SILENCE_S = 5.0
#: this machine's name: monotonic clock readings are comparable only between stages on one host.
HOST = socket.gethostname()
#: back-off between attempts to reopen a live source: 0.5 s, doubled per failure, at most 8 s.
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 8.0
#: what a receiver adds to a refusal of a frame over its limits.
OVER_LIMIT_HINT = " (over this stage's --max-dim/--max-frame-mb; give every stage the same limits)"


@dataclass
class Item:
    """A frame moving between threads: the pixels, the header and the frame before despeckling."""

    image: np.ndarray
    meta: dict[str, Any]
    source: np.ndarray | None = None


def _stamp(meta: dict[str, Any], stage: str) -> None:
    meta.setdefault("stamps", {})[stage] = time.time_ns()


def _refuse(stats: Stats, message: str, counter: str = "errors") -> None:
    """Count a refused frame in ``counter``; log the first in full and the others at DEBUG only."""
    if stats.refuse(message, counter):
        log.warning("%s (further refusals: counted in %s, summed up with the status line)", message, counter)
    else:
        log.debug("%s", message)


def latency_ms(meta: dict[str, Any]) -> float:
    """Capture-to-now in ms: monotonic clock on the capturing host, wall clock across hosts."""
    if meta["host"] == HOST:
        return (time.monotonic_ns() - meta["capture_mono_ns"]) / 1e6
    return (time.time_ns() - meta["capture_wall_ns"]) / 1e6


@dataclass
class Grabber:
    """Read a source, at ``fps`` if the source is paced, and publish each frame on ``sock``.

    A live source that stalls is reopened with exponential back-off (counted as ``reconnects``);
    a finite source ends the stage, or starts again when ``loop`` is set.
    """

    source: Source
    frames: Iterator[np.ndarray]
    sock: zmq.Socket
    stats: Stats
    fps: float = 30.0
    loop: bool = False
    max_frames: int | None = None
    limits: Limits = DEFAULT_LIMITS
    seq: int = 0

    def run(self, stop: threading.Event) -> None:
        period = 1.0 / self.fps if self.source.paced and self.fps > 0 else 0.0
        due = time.monotonic()
        retry = RETRY_FIRST_S
        since_open = 1  # the first frame was read before this stage started
        while not stop.is_set() and (self.max_frames is None or self.seq < self.max_frames):
            try:
                frame = next(self.frames)
            except StopIteration:
                if not self.loop or since_open == 0:
                    log.info("--source %s: end of stream after %d frames", self.source.name, self.seq)
                    return
                self.frames, since_open = self.source.frames(), 0
                continue
            except SourceStalled as exc:
                self.stats.add("reconnects")
                log.warning("%s; retrying in %.1f s", exc, retry)
                if stop.wait(retry):
                    return
                retry = min(2 * retry, RETRY_MAX_S)
                self.frames, since_open = self.source.frames(), 0
                continue
            except SourceError as exc:
                self.stats.add("errors")
                log.error("%s; end of stream", exc)
                return
            retry, since_open = RETRY_FIRST_S, since_open + 1
            if period:
                due += period
                if stop.wait(max(0.0, due - time.monotonic())):
                    return
                due = max(due, time.monotonic() - period)
            self.publish(frame)

    def publish(self, frame: np.ndarray) -> None:
        """Stamp, encode and send one frame (an unencodable frame is counted in ``errors``)."""
        meta = {
            "seq": self.seq,
            "source": self.source.name,
            "host": HOST,
            "capture_mono_ns": time.monotonic_ns(),
            "capture_wall_ns": time.time_ns(),
            "stamps": {},
            "spacing_mm": list(self.source.spacing_mm) if self.source.spacing_mm else None,
        }
        _stamp(meta, "grab")
        self.seq += 1
        try:
            parts = encode_frame(frame, meta, self.limits)
        except ProtocolError as exc:
            _refuse(self.stats, f"--source {self.source.name}: frame {meta['seq']} refused: {exc}")
            return
        send(self.sock, parts)
        self.stats.add("grabbed")


@dataclass
class Receiver:
    """Take frames off a ``SUB`` socket into a latest-frame slot; count malformed ones and gaps.
    A subscription to another process that falls silent for :data:`SILENCE_S` after frames came
    is named in one warning, and its return in one line (the status line alone says ``in 0.0/s``)."""

    sock: zmq.Socket
    slot: LatestSlot[Item]
    stats: Stats
    limits: Limits = DEFAULT_LIMITS
    sequence: SequenceTracker = field(default_factory=SequenceTracker)
    last_arrival: float = 0.0
    _silent: bool = False  # warned that frames stopped coming

    def run(self, stop: threading.Event) -> None:
        endpoint = endpoint_of(self.sock)
        remote = not endpoint.startswith("inproc://")  # in one process the grabber says what it lacks
        while not stop.is_set():
            parts = receive(self.sock, int(POLL_S * 1000))
            now = time.monotonic()
            if parts is None:
                if remote and self.last_arrival and not self._silent and now - self.last_arrival > SILENCE_S:
                    self._silent = True
                    log.warning("no frames from %s for %.0f s (has the grabber stopped?); waiting for it", endpoint,
                                SILENCE_S)
                continue
            if self._silent:
                self._silent = False
                log.info("frames from %s again, after %.1f s", endpoint, now - self.last_arrival)
            self.last_arrival = now
            try:
                image, meta = decode_frame(parts, self.limits)
            except ProtocolError as exc:
                hint = OVER_LIMIT_HINT if isinstance(exc, OverLimit) else ""
                _refuse(self.stats, f"malformed message refused: {exc}{hint}", counter="malformed")
                continue
            gaps = self.sequence.update(meta)
            if gaps:
                self.stats.add("gaps", gaps)
            _stamp(meta, "receive")
            self.stats.add("in")
            if self.slot.put(Item(image, meta)):
                self.stats.add("dropped")


def _work(
    stage: DespeckleStage | Publisher,
    inbox: LatestSlot[Item],
    stop: threading.Event,
    handle: Callable[[Item], bool],
) -> bool:
    """Feed the newest item of ``inbox`` to ``handle`` until ``stop`` is set (returns True) or
    ``handle`` returns False (returns False); ``stage.busy`` is True while an item is handled."""
    while not stop.is_set():
        item = inbox.get(POLL_S)
        if item is None:
            continue
        stage.busy = True
        try:
            if not handle(item):
                return False
        finally:
            stage.busy = False
    return True


#: persistence starts afresh when consecutive frames were captured further apart than this (s): a
#: frozen, paused or reconnected source.
PERSISTENCE_GAP_S = 1.0


@dataclass
class DespeckleStage:
    """Despeckle the newest received frame; frames it cannot take are counted in ``errors``.
    ``pixel_mm``: the frames' pixel spacing, for :mod:`engine.pixels` (``"auto"``: each frame's
    ``spacing_mm`` header, else the frames' speckle size, :mod:`engine.speckle`; ``"spacing"``: the
    header, else as they come; ``"off"``; or ``(row_mm, col_mm)``).  ``persistence``: the outputs'
    running average is published (:mod:`engine.persistence`; 0: none; motion-adaptive with
    ``persistence_motion`` grey levels), started afresh after a pause or a change of source
    (:meth:`_after_pause`)."""

    engine: Despeckler
    inbox: LatestSlot[Item]
    outbox: LatestSlot[Item]
    stats: Stats
    region: Region | None = None
    pixel_mm: PixelMode = "auto"
    persistence: float = 0.0
    persistence_motion: float = 0.0
    busy: bool = False
    _views: dict[tuple[float, float] | None, Despeckler] = field(default_factory=dict)  # None: by the speckle
    _average: Persistence = field(init=False)  # the running average of persistence
    _last_capture: tuple[str, int] | None = None  # (source, capture_mono_ns) of the last frame

    def __post_init__(self) -> None:
        self._average = Persistence(self.persistence, self.persistence_motion)

    def run(self, stop: threading.Event) -> None:
        _work(self, self.inbox, stop, self.process)

    def spacing(self, meta: dict[str, Any]) -> tuple[float, float] | None:
        """The pixel spacing the frame of ``meta`` is despeckled at, or None (as it comes)."""
        given = meta.get("spacing_mm")
        return spacing_for(self.pixel_mm, lambda: None if given is None else check_spacing(given))

    def engine_for(self, meta: dict[str, Any]) -> Despeckler:
        """:attr:`engine` as it runs frames of ``meta``'s spacing (:func:`engine.speckle.frames_view`;
        one view per spacing, announced in a log line when it resamples; under ``"auto"`` frames
        without one go by their speckle size, through one view whose recent measurements start
        afresh with the frame shape)."""
        spacing = self.spacing(meta)
        if spacing is None and self.pixel_mm != "auto":
            return self.engine
        if spacing not in self._views:
            self._views[spacing] = frames_view(self.engine, self.pixel_mm, spacing, background=True)
            if spacing is not None and resamples(spacing):
                log.info("frames of %g x %g mm pixels are despeckled on square pixels of %g mm and resampled back",
                         *spacing, working_pixel_mm(spacing))
        return self._views[spacing]

    def _after_pause(self, meta: dict[str, Any]) -> bool:
        """Whether ``meta``'s frame comes from another source than the last one, or was captured more
        than :data:`PERSISTENCE_GAP_S` before or after it (persistence then starts afresh)."""
        last, self._last_capture = self._last_capture, (meta["source"], meta["capture_mono_ns"])
        return last is not None and (last[0] != meta["source"] or
                                     abs(meta["capture_mono_ns"] - last[1]) > PERSISTENCE_GAP_S * 1e9)

    def process(self, item: Item) -> bool:
        """Despeckle one frame into the outbox; always asks for the next one (returns True)."""
        start = time.perf_counter()

        def averaged(image: np.ndarray) -> np.ndarray:
            """The despeckled image region, averaged: overlays outside it pass through as they are."""
            out = self.engine_for(item.meta).infer(image)
            if self._after_pause(item.meta):  # counted only for frames taken, as before the region average
                self._average.reset()  # an old scene must not show through a frozen or reconnected source's next frame
            return self._average(out)

        try:
            out = despeckle_frame(item.image, averaged, self.region)
        except FrameError as exc:
            _refuse(self.stats, f"frame {item.meta['seq']} from {item.meta['source']} refused: {exc}")
            return True
        self.stats.observe("infer", (time.perf_counter() - start) * 1e3)
        _stamp(item.meta, "despeckle")
        if self.outbox.put(Item(out, item.meta, item.image)):
            self.stats.add("dropped")
        return True


@dataclass
class Publisher:
    """Publish despeckled frames on ``sock`` and hand them to the sinks; stop after ``max_frames``."""

    sock: zmq.Socket
    inbox: LatestSlot[Item]
    stats: Stats
    sinks: list[Sink] = field(default_factory=list)
    max_frames: int | None = None
    limits: Limits = DEFAULT_LIMITS
    published: int = 0
    busy: bool = False

    def run(self, stop: threading.Event) -> None:
        if not _work(self, self.inbox, stop, self.publish):
            log.info("published %d frames (--frames); stopping", self.published)
            stop.set()

    def publish(self, item: Item) -> bool:
        """Publish one frame and feed the sinks; False once ``max_frames`` frames are out."""
        _stamp(item.meta, "publish")
        try:  # e.g. a sender's header already full of stamps, with no room for ours
            parts = encode_frame(item.image, item.meta, self.limits)
        except ProtocolError as exc:
            _refuse(self.stats, f"frame {item.meta['seq']} from {item.meta['source']} not published: {exc}")
            return True
        send(self.sock, parts)
        self.stats.observe("latency", latency_ms(item.meta))
        self.stats.add("out")
        self.published += 1
        for sink in list(self.sinks):
            try:
                sink.write(item.source if item.source is not None else item.image, item.image, item.meta)
            except SinkError as exc:
                self.stats.add("errors")
                log.error("%s; this output is switched off", exc)
                self.sinks.remove(sink)
                sink.close()
        return self.max_frames is None or self.published < self.max_frames
