"""Typed, frozen configurations of the stages; the ``python -m stream.*`` tools build them from flags."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from engine.levels import DEFAULT_LEVELS
from engine.pixels import PixelMode
from stream.protocol import Limits
from stream.roi import Region

__all__ = [
    "SourceConfig",
    "OutputConfig",
    "ChainConfig",
    "GrabberConfig",
    "GRAB_ENDPOINT",
    "PUBLISH_ENDPOINT",
    "cuda_graphs_refusal",
]

def cuda_graphs_refusal(backend: str) -> str | None:
    """Why ``--cuda-graphs`` cannot go with ``--backend backend`` (one line), or ``None`` where it can:
    only the torch backend on a CUDA GPU replays CUDA graphs (``auto`` passes the flag on where it
    picks torch).  The GPU is looked for here, before the backend picks its weights for a GPU; a
    missing torch is left to the backend, which names it."""
    if backend == "auto":
        return None
    if backend != "torch":
        return f"--cuda-graphs: only the torch backend on a CUDA GPU replays CUDA graphs, not --backend {backend}"
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    if torch.cuda.is_available():
        return None
    return "--backend torch --cuda-graphs: torch sees no CUDA GPU to replay CUDA graphs on"


#: default endpoint of a stand-alone grabber (``python -m stream.grabber``).
GRAB_ENDPOINT = "tcp://127.0.0.1:5555"
#: default endpoint of the despeckled stream.
PUBLISH_ENDPOINT = "tcp://127.0.0.1:5556"


@dataclass(frozen=True)
class SourceConfig:
    """``spec``: see :mod:`stream.sources`; ``fps``: pace of files and ``sim`` (frames/s);
    ``size``: ``(H, W)`` of ``sim`` frames; ``loop``: restart a finite source at its end."""

    spec: str = "sim"
    fps: float = 30.0
    size: tuple[int, int] = (256, 256)
    loop: bool = False
    seed: int = 0


@dataclass(frozen=True)
class OutputConfig:
    """Where despeckled frames go: the ZeroMQ publisher and the optional extra outputs."""

    publish: str = PUBLISH_ENDPOINT
    igtl_port: int | None = None
    record: Path | None = None
    preview: bool = False


@dataclass(frozen=True)
class ChainConfig:
    """The despeckler and publisher, plus an in-process grabber unless ``source.spec`` is a
    ``tcp://``/``ipc://`` endpoint to subscribe to.  ``frames``: stop after publishing that many.
    ``pixel_mm``: the frames' pixel spacing for :mod:`engine.pixels` (``"auto"``: each frame's
    ``spacing_mm`` header, where it has one, else the frames' speckle size (:mod:`engine.speckle`);
    ``"spacing"``: the header, else as they come; ``"off"``; or ``(row_mm, col_mm)`` for every frame).
    ``levels``: :mod:`engine.levels`'s mode (``"preset"``, ``"range"`` or ``"off"``).
    ``weights``: a model file or a shipped model's name (:data:`engine.weights.SHIPPED`); ``None``
    is ``"auto"``, the fast model where the backend runs on the CPU and the default model on a GPU.
    ``flip_average``: each output averaged with the model's on the mirrored frame (:mod:`engine.flip`).
    ``cuda_graphs``: the torch backend on a CUDA GPU replays one captured CUDA graph per frame size
    (``backend`` ``"torch"``, or ``"auto"`` where it picks torch; ignored where ``auto`` picks another).
    ``persistence``: the despeckled frames' running average is published (:mod:`engine.persistence`),
    motion-adaptive with ``persistence_motion`` grey levels (0: plain)."""

    source: SourceConfig = field(default_factory=SourceConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    backend: str = "auto"
    weights: Path | None = None
    roi: Region | None = None
    strength: float = 1.0
    pixel_mm: PixelMode = "auto"
    levels: str = DEFAULT_LEVELS
    flip_average: bool = False
    cuda_graphs: bool = False
    persistence: float = 0.0
    persistence_motion: float = 0.0
    frames: int | None = None
    curve_keys: Path | None = None
    limits: Limits = field(default_factory=Limits)
    status_s: float = 1.0


@dataclass(frozen=True)
class GrabberConfig:
    """A stand-alone grabber publishing its source on ``publish``; ``frames``: stop after that many."""

    source: SourceConfig = field(default_factory=SourceConfig)
    publish: str = GRAB_ENDPOINT
    frames: int | None = None
    curve_keys: Path | None = None
    limits: Limits = field(default_factory=Limits)
    status_s: float = 1.0
