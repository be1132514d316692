"""Assemble stages into a running process: :func:`run_chain` (despeckler + publisher, with an
in-process grabber) and :func:`run_grabber` (a grabber alone).

Start-up checks everything that can be wrong with the command line first (outputs, source and
its first frame against ``--max-dim``/``--max-frame-mb``/``--roi``, weights, endpoints) and
returns 1 with a one-line error; nothing hangs.  Then the stages run in
daemon threads while the calling thread prints the status line every ``status_s`` seconds.
SIGINT and SIGTERM set one shared stop event: every stage notices it within ``POLL_S`` and the
process closes its outputs and sockets (``LINGER = 0``) and returns within about a second.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import zmq

from engine.base import Despeckler, FrameError
from engine.registry import create_despeckler
from engine.weights import AUTO, SHIPPED, WeightsError, WeightsNotFound, is_auto_name, is_shipped_name
from stream.config import ChainConfig, GrabberConfig, SourceConfig, cuda_graphs_refusal
from stream.latest import LatestSlot
from stream.protocol import Limits, ProtocolError, check_image
from stream.roi import Region, check_region
from stream.security import CurveKeys, SecurityError, start_authenticator
from stream.sinks import IgtlServer, Preview, Recorder, Sink, SinkError
from stream.sources import SourceError, first_frame, is_subscription, open_source
from stream.stages import POLL_S, DespeckleStage, Grabber, Item, Publisher, Receiver
from stream.stats import Stats
from stream.transport import TransportError, bind_publisher, connect_subscriber, endpoint_of

__all__ = ["run_chain", "run_grabber", "BackendError", "stage_left_behind"]

log = logging.getLogger("stream")

#: in-process link between the grabber and despeckler threads of ``python -m stream.run``.
INPROC = "inproc://grabbed"
#: how long shutdown waits for the stage threads, seconds (a CPU inference of a 256x256 frame
#: takes about 1 s on 2 cores; SIGINT must end the process within 2 s).
JOIN_S = 1.5
#: after a finite source ends, the chain stops once nothing has moved for this long, seconds.
DRAIN_S = 0.3

#: set once a shutdown left a stage's thread running (:func:`stage_left_behind`).
_LEFT_BEHIND = threading.Event()


def stage_left_behind() -> bool:
    """Whether a shutdown in this process left a stage running past :data:`JOIN_S` (an inference
    that outlasted the stop): the process should then leave without waiting for it
    (:func:`stream.cli.exit_process`)."""
    return _LEFT_BEHIND.is_set()


class BackendError(RuntimeError):
    """``--backend``/``--weights`` name a despeckler that cannot be built here."""


#: what start-up reports as a one-line error and exit status 1.
_STARTUP_ERRORS = (SourceError, TransportError, SecurityError, SinkError, BackendError)


class _Threads:
    """Stage threads sharing one stop event; a stage that raises stops them all."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.threads: dict[str, threading.Thread] = {}
        self.failed: list[str] = []

    def start(self, name: str, stage: Any) -> None:
        def body() -> None:
            try:
                stage.run(self.stop)
            except Exception:
                log.exception("stage %s failed", name)
                self.failed.append(name)
                self.stop.set()

        thread = threading.Thread(target=body, name=f"stream-{name}", daemon=True)
        self.threads[name] = thread
        thread.start()

    def alive(self, name: str) -> bool:
        return self.threads[name].is_alive()

    def when_ended(self, name: str, close: Callable[[], None]) -> Callable[[], None]:
        """``close`` wrapped to run only if thread ``name`` has ended (or never started): an engine
        is not closed under an inference still running in a thread left behind."""

        def guarded() -> None:
            thread = self.threads.get(name)
            if thread is None or not thread.is_alive():
                close()

        return guarded

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s in all for every thread; True if all ended."""
        deadline = time.monotonic() + timeout
        for thread in self.threads.values():
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self.threads.values())


def _route_signals(stop: threading.Event, stack: ExitStack) -> None:
    """Route SIGINT/SIGTERM to ``stop`` (main thread only) until ``stack`` closes.

    The handler sets ``stop`` from a thread of its own: Python runs it in the main thread between
    two bytecodes, possibly inside ``stop.wait()`` while that holds the event's lock, and
    ``stop.set()`` there would wait for that lock forever (the process then ignored every later
    SIGINT and SIGTERM)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(*_: object) -> None:
        threading.Thread(target=stop.set, name="signal", daemon=True).start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        stack.callback(signal.signal, sig, signal.signal(sig, handler))


def _log_status(stats: Stats) -> None:
    """The summary of the frames refused since the last status line, if any, then the status line."""
    summary = stats.refusal_summary()
    if summary is not None:
        log.warning("%s", summary)
    log.info(stats.line())


def _supervise(stop: threading.Event, stats: Stats, done: Callable[[], bool], every: float) -> None:
    """Print the status line every ``every`` s until ``stop`` is set or ``done()`` turns true; after
    a pause of the process (stopped, swapped out) one line covers the whole gap, not one per
    missed period."""
    due = time.monotonic() + every
    while not stop.wait(POLL_S):
        if done():
            return
        now = time.monotonic()
        if now >= due:
            _log_status(stats)
            due += every
            if due <= now:  # a pause missed periods: the next line a period from now, no burst
                due = now + every


def _check_first(name: str, frame: np.ndarray, limits: Limits, region: Region | None) -> None:
    """Refuse at start-up a first frame that the stages would refuse: one over the limits, or one
    that ``--roi`` does not fit.  Later frames are checked as they come (and counted)."""
    try:
        check_image(frame, limits)
        if region is not None:
            check_region(region, frame.shape)
    except ProtocolError as exc:
        raise SourceError(
            f"--source {name}: first frame refused: {exc} (see --max-dim, --max-frame-mb)"
        ) from exc
    except FrameError as exc:
        raise SourceError(f"{exc}: the first frame of --source {name}") from exc


def _grabber(
    cfg: SourceConfig,
    sock: zmq.Socket,
    stats: Stats,
    frames: int | None,
    limits: Limits,
    region: Region | None = None,
) -> Grabber:
    if cfg.spec == "sim":  # a size the limits refuse is refused before its phantom is drawn
        _check_first(cfg.spec, np.broadcast_to(np.uint8(0), cfg.size), limits, region)
    source = open_source(cfg.spec, cfg.size, cfg.seed, on_skip=lambda _: stats.add("errors"))
    first, rest = first_frame(source)
    _check_first(source.name, first, limits, region)
    stats.label = f"source {source.name}"
    return Grabber(source, itertools.chain([first], rest), sock, stats, cfg.fps, cfg.loop, frames, limits)


def _sinks(cfg: ChainConfig, stack: ExitStack, threads: _Threads) -> list[Sink]:
    sinks: list[Sink] = []
    out = cfg.output
    if out.record is not None:
        sinks.append(Recorder(out.record))
    if out.igtl_port is not None:
        sinks.append(IgtlServer(out.igtl_port))
    if out.preview:
        try:
            sinks.append(Preview())
        except SinkError as exc:
            log.warning("%s; going on without it", exc)
    for sink in sinks:
        stack.callback(threads.when_ended("publish", sink.close))
    return sinks


def _open_engine(cfg: ChainConfig) -> Despeckler:
    """The despeckler; an error names ``--weights`` (or ``--cuda-graphs``) when it is at fault."""
    options = {}
    if cfg.cuda_graphs:
        refusal = cuda_graphs_refusal(cfg.backend)
        if refusal:
            raise BackendError(refusal)
        options["cuda_graphs"] = True
        if cfg.backend == "torch":
            options["device"] = "cuda"
    if cfg.weights is not None:
        if not cfg.weights.is_file() and not is_shipped_name(cfg.weights) and not is_auto_name(cfg.weights):
            raise BackendError(f"--weights {cfg.weights}: no such file, nor a shipped model's name "
                               f"({', '.join([*SHIPPED, AUTO])})")
        if cfg.backend == "identity" and not is_auto_name(cfg.weights):
            raise BackendError(f"--weights {cfg.weights}: --backend identity takes no weights")
    try:
        return create_despeckler(cfg.backend, cfg.weights or AUTO, strength=cfg.strength, levels=cfg.levels,
                                 flip_average=cfg.flip_average, **options)
    except (WeightsError, WeightsNotFound) as exc:  # its text names the file
        raise BackendError(f"--weights: {exc}" if cfg.weights else f"--backend {cfg.backend}: {exc}") from exc
    except (ValueError, RuntimeError, OSError) as exc:
        flags = f"--backend {cfg.backend}" + (" --cuda-graphs" if cfg.cuda_graphs else "")
        raise BackendError(f"{flags}: {exc}") from exc


class _Process:
    """What one process of the chain shares: the stop event (set by SIGINT/SIGTERM), the stats, the
    stage threads, the ZeroMQ context and sockets, and the closers of outputs, engine and
    authenticator.  Use as a context manager; :meth:`shutdown` (also on leaving) closes it all once."""

    def __init__(
        self, stop: threading.Event | None, curve_keys: Path | None, frames: int | None, sent: str
    ) -> None:
        self.stop = stop or threading.Event()
        self.keys = CurveKeys(curve_keys) if curve_keys else None
        self.frames = frames
        self.stats = Stats(refusal_limit=frames, sent=sent)
        self.threads = _Threads(self.stop)
        self.ctx = zmq.Context()
        self.stack = ExitStack()
        self.sockets: list[zmq.Socket] = []
        self._authenticating = False
        self._status: int | None = None

    def __enter__(self) -> _Process:
        # OpenCV's and FFmpeg's own messages would repeat our one-line errors in other words.
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET, read at each open
        _route_signals(self.stop, self.stack)
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    @property
    def secure_label(self) -> str:
        """``"CURVE"`` for the status line where ``--curve-keys`` encrypts and authenticates, else ``""``."""
        return "" if self.keys is None else "CURVE"

    def bind(self, endpoint: str, flag: str = "--publish") -> zmq.Socket:
        """A publisher on ``endpoint``; in secure mode the authenticator starts with the first one."""
        if self.keys is not None and not self._authenticating and not endpoint.startswith("inproc://"):
            self.stack.callback(start_authenticator(self.ctx, self.keys).stop)
            self._authenticating = True
        self.sockets.append(bind_publisher(self.ctx, endpoint, self.keys, flag))
        return self.sockets[-1]

    def connect(self, endpoint: str, limits: Limits, flag: str) -> zmq.Socket:
        self.sockets.append(connect_subscriber(self.ctx, endpoint, self.keys, limits, flag))
        return self.sockets[-1]

    def fail(self, exc: Exception) -> int:
        """Report a start-up error in one line and close; returns exit status 1.  A start-up cut
        short by Ctrl-C or SIGTERM (a network source still opening when the signal came, whose
        open then fails) is a stop, not an error: one line, exit status 0."""
        if self.stop.is_set():
            log.info("stopped while starting (%s)", exc)
            return self.shutdown()
        log.error("%s", exc)
        self._status = 1
        return self.shutdown()

    def run_until(self, done: Callable[[], bool], every: float) -> int:
        """Print the status line every ``every`` s until stopped or ``done()``; then shut down.

        With ``frames`` (``--frames N``) the run also ends, with exit status 1, once N frames were
        refused before N were sent: a stream whose every frame is refused stops.
        """
        _supervise(self.stop, self.stats, lambda: self.stats.too_many_refused or done(), every)
        if self.stats.too_many_refused:
            n = self.frames
            log.error("--frames %d: %d frames were refused before %d were sent; stopping", n, n, n)
            self._status = 1
        return self.shutdown()

    def shutdown(self) -> int:
        """Stop the stages (waiting up to ``JOIN_S``), print the last status line, close outputs,
        engine, authenticator, sockets and context.  Sockets of a thread left behind are left to
        the process exit.  Returns the exit status: 1 after a start-up error or a failed stage."""
        if self.stack is None:
            return self._status or 0
        self.stop.set()
        joined = self.threads.join(JOIN_S)
        if self.threads.threads:
            _log_status(self.stats)
        if not joined:
            log.warning("a stage did not stop within %.1f s; leaving it behind", JOIN_S)
            _LEFT_BEHIND.set()
        self.stack.close()
        self.stack = None
        if joined:
            for sock in self.sockets:
                sock.close(linger=0)
            self.ctx.destroy(linger=0)
        if self._status is None:
            self._status = 1 if self.threads.failed else 0
        return self._status


def run_chain(cfg: ChainConfig, stop: threading.Event | None = None) -> int:
    """Run grab (unless subscribing) -> despeckle -> publish until ``stop``, a signal, ``cfg.frames``
    published frames (or as many refused first) or the end of a finite source.  Returns the exit
    status (0 ok, 1 error)."""
    with _Process(stop, cfg.curve_keys, cfg.frames, sent="out") as proc:
        try:
            sinks = _sinks(cfg, proc.stack, proc.threads)
            grabber, upstream = None, cfg.source.spec
            if not is_subscription(upstream):
                grabber, upstream = (
                    _grabber(cfg.source, proc.bind(INPROC), proc.stats, None, cfg.limits, cfg.roi),
                    INPROC,
                )
            engine = _open_engine(cfg)
            proc.stack.callback(proc.threads.when_ended("despeckle", engine.close))
            sub = proc.connect(upstream, cfg.limits, flag="--source")
            pub = proc.bind(cfg.output.publish)
        except _STARTUP_ERRORS as exc:
            return proc.fail(exc)
        persistence = f", persistence {cfg.persistence:g}" if cfg.persistence else ""
        persistence += f" (motion-adaptive, {cfg.persistence_motion:g} grey levels)" if cfg.persistence_motion else ""
        proc.stats.label = " | ".join(filter(None, [f"backend {engine.describe()}{persistence}", proc.stats.label,
                                                     proc.secure_label]))
        log.info("publishing despeckled frames on %s", endpoint_of(pub))
        inbox: LatestSlot[Item] = LatestSlot()
        outbox: LatestSlot[Item] = LatestSlot()
        receiver = Receiver(sub, inbox, proc.stats, cfg.limits)
        despeckle = DespeckleStage(engine, inbox, outbox, proc.stats, cfg.roi, cfg.pixel_mm, cfg.persistence,
                                   cfg.persistence_motion)
        publisher = Publisher(pub, outbox, proc.stats, sinks, cfg.frames, cfg.limits)
        proc.threads.start("receive", receiver)
        proc.threads.start("despeckle", despeckle)
        proc.threads.start("publish", publisher)
        if grabber is not None:
            proc.threads.start("grab", grabber)

        def drained() -> bool:
            """A finite source ended and its last frame went through."""
            idle = time.monotonic() - receiver.last_arrival > DRAIN_S
            quiet = inbox.empty() and outbox.empty() and not despeckle.busy and not publisher.busy
            return grabber is not None and not proc.threads.alive("grab") and idle and quiet

        return proc.run_until(drained, cfg.status_s)


def run_grabber(cfg: GrabberConfig, stop: threading.Event | None = None) -> int:
    """Publish ``cfg.source`` on ``cfg.publish`` until ``stop``, a signal, ``cfg.frames`` frames read
    from the source or the end of a finite source.  Returns the exit status (0 ok, 1 error, or
    every one of ``cfg.frames`` frames refused)."""
    with _Process(stop, cfg.curve_keys, cfg.frames, sent="grabbed") as proc:
        try:
            grabber = _grabber(cfg.source, proc.bind(cfg.publish), proc.stats, cfg.frames, cfg.limits)
        except _STARTUP_ERRORS as exc:
            return proc.fail(exc)
        log.info("publishing --source %s on %s", grabber.source.name, endpoint_of(grabber.sock))
        proc.stats.label = " | ".join(filter(None, [proc.stats.label, proc.secure_label]))
        proc.threads.start("grab", grabber)
        return proc.run_until(lambda: not proc.threads.alive("grab"), cfg.status_s)
