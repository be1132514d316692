"""A probe sweeping slowly over one phantom: the live pipeline's built-in source, and its video.

The phantom is drawn and imaged once, ``1 + travel`` times wider than a frame (and a little
taller); frames are windows of that image moving laterally back and forth at ``speed_px``
pixels per frame, with a slow vertical breathing motion.  Moving the window by whole pixels
keeps every frame's speckle exactly as the imaging model made it (speckle moves with the
tissue, as it does for a small probe translation), and a frame costs only a copy.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from training.sim.imaging import SimulationError, image_phantom
from training.sim.phantom import make_phantom
from training.sim.probe import ProbeModel, probe_by_name

__all__ = ["sweep_frames", "write_cine", "CODECS", "SWEEP_MIN_SIDE"]

#: video container suffix -> FourCC that opencv-python-headless can write and read back.
CODECS = {".avi": "MJPG", ".mp4": "mp4v"}
#: smallest side of a :func:`sweep_frames` frame, pixels.
SWEEP_MIN_SIDE = 8


def sweep_frames(
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    probe: str | ProbeModel = "low",
    *,
    pixel_mm: float = 0.25,
    speed_px: float = 0.5,
    travel: float = 1.5,
    breathing_px: int = 4,
    breathing_period: int = 120,
) -> Iterator[np.ndarray]:
    """Endless ``uint8 (H, W)`` frames of ``probe`` sweeping over one random phantom.

    Args:
        size: frame ``(H, W)`` in pixels.
        seed: seed of the phantom and image.
        probe: ``"low"``, ``"high"`` or a :class:`ProbeModel`.
        pixel_mm: pixel spacing (mm).
        speed_px: lateral motion per frame (pixels); at 30 frames/s and 0.25 mm pixels the
            default 0.5 is 3.75 mm/s.
        travel: the sweep covers ``travel * W`` pixels before it turns back.
        breathing_px: amplitude of the vertical breathing motion (pixels).
        breathing_period: frames per breathing cycle.
    """
    h, w = int(size[0]), int(size[1])
    if h < SWEEP_MIN_SIDE or w < SWEEP_MIN_SIDE:
        raise ValueError(f"frame size must be at least {SWEEP_MIN_SIDE}x{SWEEP_MIN_SIDE} pixels, got {h}x{w}")
    if speed_px <= 0 or travel < 0 or breathing_px < 0 or breathing_period < 1:
        raise ValueError(
            f"bad sweep: speed_px={speed_px} must be > 0, travel={travel} and breathing_px={breathing_px} >= 0, "
            f"breathing_period={breathing_period} >= 1"
        )
    rng = np.random.default_rng(seed)
    span = round(travel * w)
    probe = probe_by_name(probe)
    phantom = make_phantom(rng, (h + 2 * breathing_px, w + span), pixel_mm, max_mhz=probe.center_mhz)
    image = image_phantom(phantom, probe, rng)
    period = 2 * span / speed_px if span else 1.0
    t = 0
    while True:
        phase = (t % period) / period if span else 0.0
        x = round(span * (1.0 - abs(1.0 - 2.0 * phase)))  # triangle wave 0 -> span -> 0
        y = breathing_px + round(breathing_px * math.sin(2.0 * math.pi * t / breathing_period))
        yield image[y : y + h, x : x + w].copy()
        t += 1


def write_cine(
    path: str | Path,
    frames: int = 150,
    fps: float = 30.0,
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    probe: str | ProbeModel = "low",
) -> int:
    """Write ``frames`` frames of :func:`sweep_frames` to a video and check that it reads back.

    ``.avi`` uses Motion-JPEG, ``.mp4`` MPEG-4 part 2.  Returns the number of frames read back;
    raises :class:`SimulationError` when the codec is missing or the file does not read back.
    """
    path = Path(path)
    fourcc = CODECS.get(path.suffix.lower())
    if fourcc is None:
        raise SimulationError(f"cine {path}: unsupported suffix {path.suffix!r}; use one of {', '.join(CODECS)}")
    if frames < 1 or fps <= 0:
        raise SimulationError(f"cine {path}: need frames >= 1 and fps > 0, got {frames} and {fps}")
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = int(size[0]), int(size[1])
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps), (w, h), isColor=True)
    if not writer.isOpened():
        raise SimulationError(f"cine {path}: OpenCV cannot open a {fourcc} video writer")
    try:
        source = sweep_frames((h, w), seed, probe)
        for _ in range(frames):
            writer.write(cv2.cvtColor(next(source), cv2.COLOR_GRAY2BGR))
    finally:
        writer.release()
    capture = cv2.VideoCapture(str(path))
    count = 0
    try:
        while capture.read()[0]:
            count += 1
    finally:
        capture.release()
    if count != frames:
        raise SimulationError(f"cine {path}: wrote {frames} frames but {count} read back")
    return count
