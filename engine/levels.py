"""Grey levels: run the model on frames whose brightness and contrast are like its training frames'.

Two numbers describe how a B-mode frame's grey levels are set (a probe's gain and its
log-compression's dynamic range), both measured on the speckle itself, in 16 x 16 pixel tiles
(:data:`TILE`) of the frame's tissue (at most :data:`MAX_TILES` tiles, spread evenly over the
frame; tiles at least half black are left out, and so are anechoic ones, below):

    level  m = median over the tissue tiles of each tile's median grey level
    spread s = median over the tissue tiles of each tile's interquartile range   (grey levels)

A tile of fully developed speckle spans about the same number of decibels whatever the tissue,
so ``s`` is ``255 / dynamic range (dB)`` times a constant, and few tiles hold a vessel or an
edge, so neither figure follows the picture's content much.  Few, unless a cyst, a bladder or a
large vessel fills half the frame: then the median tile is anechoic.  So the *tissue tiles* are
those whose median is at least ``q - 3 s_top`` (:data:`ANECHOIC_SPREADS`), with ``q`` the 90th
percentile of the tile medians and ``s_top`` the median interquartile range of the tiles at or
above it: the brightest tenth of the tiles is tissue, and an anechoic region lies more than three
speckle spreads below it (parenchyma against blood is 23-35 dB in the simulator, 3.3-5 spreads
at 60 dB), while hypoechoic tissue and the texture's own swings stay within.  On frames without a
large anechoic region this leaves out little more than the vessel tiles: on the nine held-out
sets of the model card it moved ``m`` by at most 8 grey levels (0.7 on average) and ``s`` by at
most 1.  Each frame is mapped, grey level
``g`` to

    g' = m' + (g - m) * s' / s

before the model and its output ``o`` back by ``m + (o - m') * s / s'`` (lookup tables, rounded,
clipped to 0..255), so the output keeps the frame's own brightness and contrast; the black
surroundings of a sector scan (pixels whose 9 x 9 neighbourhood is all black) stay black both
ways.  The target ``(m', s')`` is set by the mode (:data:`LEVEL_MODES`): ``preset``, the default,
takes the preset probes' :data:`PRESET_LEVELS` for every frame; ``range`` clips ``m`` to
:data:`TRAINED_LEVEL` and ``s`` to :data:`TRAINED_SPREAD` (the central 95 % of version 5's 368
training frames), so a frame inside both runs untouched.  Either way ``s' / s`` stays within
1/4..4 (:data:`MAX_GAIN`).  Fed as they were, frames far darker or
flatter than the training frames lost most of the model's effect (a grid-model set 60 grey
levels darker: lateral grain 11.6 px where y's is 2.7, vessel contrast below the input's on 16
of 30 pairs); how the modes compare, and why ``preset`` is the default: ``docs/engine.md``
"Grey levels".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.base import BLACK, Around, Despeckler, WrappedDespeckler

__all__ = [
    "TRAINED_LEVEL",
    "TRAINED_SPREAD",
    "ANECHOIC_SPREADS",
    "PRESET_LEVELS",
    "LEVEL_MODES",
    "DEFAULT_LEVELS",
    "LEVELS_HELP",
    "level_ranges",
    "Tiles",
    "measure_tiles",
    "tile_stats",
    "working_levels",
    "LevelMap",
    "level_map",
    "at_working_levels",
    "as_fed",
    "LevelledDespeckler",
    "with_levels",
]

log = logging.getLogger(__name__)

#: central 95 % of the tile level ``m`` (grey levels) of the shipped models' training frames.
TRAINED_LEVEL = (85.0, 193.0)
#: central 95 % of the tile spread ``s`` (grey levels) of the shipped models' training frames.
TRAINED_SPREAD = (22.0, 44.0)
#: side of the square tiles (pixels) the level and spread are measured in.
TILE = 16
#: at most this many tiles are measured per frame (evenly spread), so a large frame costs little.
MAX_TILES = 256
#: tiles whose median lies more than this many speckle spreads below the brightest tenth's are
#: anechoic (a cyst, a bladder, a vessel) and left out of the level and the spread.
ANECHOIC_SPREADS = 3.0
#: the spread is changed by at most this factor either way: a frame far flatter than that is not
#: speckle at the model's scale (a despeckled or drawn picture), and stretching it would turn its
#: quantization steps into edges the model never saw.
MAX_GAIN = 4.0
#: tile level and spread of the preset probes' frames (the simulator's defaults, set B of the model card).
PRESET_LEVELS = (120.0, 30.0)
#: what ``--levels`` takes: ``preset`` maps every frame to :data:`PRESET_LEVELS`, ``range`` maps
#: frames outside the training ranges to the nearest point inside, ``off`` runs frames as they are.
LEVEL_MODES = ("preset", "range", "off")
#: the engine's mode unless told otherwise (chosen on held-out sets, ``docs/engine.md`` "Grey levels").
DEFAULT_LEVELS = "preset"
#: the ``--levels`` flag's help, the same in every command.
LEVELS_HELP = ("grey levels fed to the model: preset maps every frame's brightness and contrast (its speckle's "
               "median and spread) to the preset probes' and the output back; range maps only frames outside the "
               "model's training range; off: frames as they are (default: preset)")


def level_ranges(mode: str) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """``(level_range, spread_range)`` of a :data:`LEVEL_MODES` mode (``None`` for ``off``);
    ``ValueError`` naming the mode otherwise."""
    if mode == "preset":
        return (PRESET_LEVELS[0],) * 2, (PRESET_LEVELS[1],) * 2
    if mode == "range":
        return TRAINED_LEVEL, TRAINED_SPREAD
    if mode == "off":
        return None
    raise ValueError(f"grey-level mode must be one of {', '.join(LEVEL_MODES)}, got {mode!r}")


@dataclass(frozen=True)
class Tiles:
    """The measured tiles of one frame (module docstring): ``index``, each tile's place in the
    row-major grid of ``columns`` tiles of ``size`` pixels (:attr:`corners` in pixels), its
    ``medians`` and ``spreads`` (interquartile range), grey levels, and ``tissue``, whether it
    counts towards the level and spread (False: anechoic).  Tiles at least half black are not
    among them."""

    index: np.ndarray
    columns: int
    medians: np.ndarray
    spreads: np.ndarray
    tissue: np.ndarray
    size: int = TILE

    @property
    def corners(self) -> np.ndarray:
        """``(n, 2)`` top-left (row, column) of each tile, pixels."""
        return np.stack([self.index // self.columns, self.index % self.columns], axis=1) * self.size

    @property
    def level(self) -> float:
        """``m``: the median of the tissue tiles' medians."""
        return float(np.median(self.medians[self.tissue]))

    @property
    def spread(self) -> float:
        """``s``: the median of the tissue tiles' interquartile ranges."""
        return float(np.median(self.spreads[self.tissue]))


def measure_tiles(frame: np.ndarray, tile: int = TILE, max_tiles: int = MAX_TILES) -> Tiles | None:
    """The :class:`Tiles` of a ``uint8 (H, W)`` frame; ``None`` where no tile is less than half black
    (a frame smaller than a tile, or all black)."""
    frame = np.ascontiguousarray(frame)
    h, w = frame.shape[0] // tile, frame.shape[1] // tile
    if h == 0 or w == 0:
        return None
    step_r, step_c = frame.strides
    grid = np.lib.stride_tricks.as_strided(  # (h, w, tile, tile) view of the tiles, nothing copied
        frame, (h, w, tile, tile), (tile * step_r, tile * step_c, step_r, step_c), writeable=False)
    pick = np.linspace(0, h * w - 1, min(h * w, max_tiles)).round().astype(np.int64)
    tiles = grid[pick // w, pick % w].reshape(len(pick), tile * tile)  # only the measured tiles copied
    n = tiles.shape[1]
    quartiles = (n // 4, n // 2, (3 * n) // 4)
    tiles = np.partition(tiles, quartiles, axis=1)[:, quartiles].astype(np.float64)
    lit = tiles[:, 1] > 0  # less than half of the tile black
    if not lit.any():
        return None
    medians, spreads = tiles[lit, 1], tiles[lit, 2] - tiles[lit, 0]
    top = np.quantile(medians, 0.9)
    tissue = medians >= top - ANECHOIC_SPREADS * np.median(spreads[medians >= top])
    return Tiles(pick[lit], w, medians, spreads, tissue, tile)


def tile_stats(frame: np.ndarray, tile: int = TILE, max_tiles: int = MAX_TILES) -> tuple[float, float] | None:
    """``(m, s)`` of a ``uint8 (H, W)`` frame (module docstring): the median of its tissue tiles'
    medians and of their interquartile ranges, in grey levels; ``None`` where no tile is less than
    half black (a frame smaller than a tile, or all black)."""
    tiles = measure_tiles(frame, tile, max_tiles)
    return None if tiles is None else (tiles.level, tiles.spread)


def working_levels(
    m: float,
    s: float,
    level_range: tuple[float, float] = TRAINED_LEVEL,
    spread_range: tuple[float, float] = TRAINED_SPREAD,
) -> tuple[float, float]:
    """``(m', s')``: ``m`` clipped to ``level_range``, ``s`` to ``spread_range`` and to within a factor
    :data:`MAX_GAIN` of itself."""
    s_work = min(max(s, spread_range[0]), spread_range[1])
    return min(max(m, level_range[0]), level_range[1]), min(max(s_work, s / MAX_GAIN), s * MAX_GAIN)


class LevelMap:
    """The two grey-level maps of one frame: ``forward`` (frame -> model input) and ``back``
    (model output -> frame's levels), lookup tables over 0..255, black surroundings kept black."""

    def __init__(self, m: float, s: float, m_work: float, s_work: float, lit: np.ndarray | None) -> None:
        self.m, self.s, self.m_work, self.s_work = m, s, m_work, s_work
        grey = np.arange(256, dtype=np.float64)
        gain = s_work / s if s > 0 else 1.0
        self._forward = np.clip(np.rint(m_work + (grey - m) * gain), 0, 255).astype(np.uint8)
        self._back = np.clip(np.rint(m + (grey - m_work) / gain), 0, 255).astype(np.uint8)
        self.lit = lit  # uint8 255 where the frame is not background; None: no background at all

    def _apply(self, lut: np.ndarray, frame: np.ndarray) -> np.ndarray:
        import cv2

        out = cv2.LUT(np.ascontiguousarray(frame), lut)
        return out if self.lit is None else cv2.bitwise_and(out, self.lit)

    def forward(self, frame: np.ndarray) -> np.ndarray:
        return self._apply(self._forward, frame)

    def back(self, output: np.ndarray) -> np.ndarray:
        return self._apply(self._back, output)


def level_map(
    frame: np.ndarray,
    level_range: tuple[float, float] = TRAINED_LEVEL,
    spread_range: tuple[float, float] = TRAINED_SPREAD,
) -> LevelMap | None:
    """The :class:`LevelMap` that brings ``frame`` (``uint8 (H, W)``) into the ranges (by default the
    training ranges, mode ``range``; a single point for ``preset``, :func:`level_ranges`); ``None``
    where it is there already (or has no tissue tile to measure)."""
    stats = tile_stats(frame)
    if stats is None:
        return None
    m, s = stats
    m_work, s_work = working_levels(m, s, level_range, spread_range)
    if (m_work, s_work) == (m, s):
        return None
    import cv2  # here, not at the top: the registry imports this module, and cv2 costs ~0.3 s to import

    lit = cv2.threshold(cv2.dilate(frame, np.ones((BLACK, BLACK), np.uint8)), 0, 255, cv2.THRESH_BINARY)[1]
    return LevelMap(m, s, m_work, s_work, None if cv2.countNonZero(lit) == lit.size else lit)


def at_working_levels(frame: np.ndarray, despeckle: Callable[[np.ndarray], np.ndarray],
                      level_range: tuple[float, float] = TRAINED_LEVEL,
                      spread_range: tuple[float, float] = TRAINED_SPREAD) -> np.ndarray:
    """``despeckle`` (``uint8 (H, W)`` -> same) run on ``frame`` mapped into the ranges and its output
    mapped back (:func:`level_map`); ``despeckle(frame)`` where no map is needed."""
    lm = level_map(frame, level_range, spread_range)
    return despeckle(frame) if lm is None else lm.back(despeckle(lm.forward(frame)))


def as_fed(frame: np.ndarray, mode: str = DEFAULT_LEVELS) -> np.ndarray:
    """``frame`` as the engine feeds it to the model in the grey-level mode ``mode`` (:data:`LEVEL_MODES`):
    its :class:`LevelMap`'s ``forward``, or ``frame`` itself (the same object) where it needs no map
    or ``mode`` is ``off``; ``ValueError`` for another mode.  For frames that stand for the live ones:
    distillation pairs (:mod:`engine.pairs`), INT8 calibration (:mod:`engine.int8`)."""
    ranges = level_ranges(mode)
    lm = None if ranges is None else level_map(frame, *ranges)
    return frame if lm is None else lm.forward(frame)


class LevelledDespeckler(WrappedDespeckler):
    """Any backend fed frames mapped into grey-level ranges (by default the training ranges;
    :func:`at_working_levels`); pipelining, input checks and ``close`` are the wrapped backend's.
    ``mapped`` counts the frames that were mapped; the first one is logged (its level and spread,
    and what they were mapped to)."""

    def __init__(
        self,
        inner: Despeckler,
        level_range: tuple[float, float] = TRAINED_LEVEL,
        spread_range: tuple[float, float] = TRAINED_SPREAD,
    ) -> None:
        super().__init__(inner)
        self.level_range, self.spread_range = level_range, spread_range
        self.mapped = 0

    def _around(self, frame: np.ndarray) -> Around:
        lm = level_map(frame, self.level_range, self.spread_range)
        if lm is None:
            return frame, None
        if not self.mapped:
            log.info("grey levels: a frame of level %.0f and spread %.0f is mapped to level %.0f and spread %.0f "
                     "for the model and back (target %s); later frames are mapped silently",
                     lm.m, lm.s, lm.m_work, lm.s_work, self.describe_ranges())
        self.mapped += 1
        return lm.forward(frame), lm.back

    def describe_ranges(self) -> str:
        """``"level 120, spread 30"`` or ``"level 85-193, spread 22-44"``: where frames are mapped to."""
        (m0, m1), (s0, s1) = self.level_range, self.spread_range
        return (f"level {m0:g}" if m0 == m1 else f"level {m0:g}-{m1:g}") + (
            f", spread {s0:g}" if s0 == s1 else f", spread {s0:g}-{s1:g}")

    def describe(self) -> str:
        return f"{self.inner.describe()}, grey levels mapped to {self.describe_ranges()}"


def with_levels(despeckler: Despeckler, mode: str = DEFAULT_LEVELS) -> Despeckler:
    """``despeckler`` fed frames mapped by ``mode`` (:data:`LEVEL_MODES`): a view on the same backend,
    whose ``close`` closes it; ``despeckler`` itself for ``off`` and for a backend without a model
    (``has_model`` False).  Wrap the backend itself, inside a pixel resampling and a strength blend,
    so the levels are measured on the frame the model sees."""
    ranges = level_ranges(mode)
    if ranges is None or not despeckler.has_model:
        return despeckler
    return LevelledDespeckler(despeckler, *ranges)
