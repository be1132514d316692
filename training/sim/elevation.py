"""Frames of one phantom whose speckle is partly renewed from frame to frame, as a small out-of-plane
probe motion, or breathing, renews it.

Moving a probe across the image plane (the live sweep, :mod:`training.sim.cine`) shifts the
speckle with the tissue; moving it out of the plane replaces part of the scatterers inside the
beam's slice.  Here frame 0 images the phantom's scatterer field ``A_0`` and each next frame

    A_(k+1) = sqrt(1 - e) A_k + sqrt(e) B_k

with ``B_k`` fresh, independent fields of the same echogenicity and ``e`` the *renewal*, the
fraction of the scattered power replaced between two frames (0: the same frame again, 1: new,
fully developed speckle; consecutive echoes have complex correlation ``sqrt(1 - e)``).  Tissue,
specular interfaces and electronic noise are the same in every frame, so consecutive frames
differ only by the renewed speckle.  The grid image-formation model (:mod:`training.sim.imaging`)
only.  :func:`renewing_twin` gives two consecutive frames of one phantom seen by both probes,
the training data of the ``temporal`` loss term (:mod:`training.config`).
:func:`advancing_needle_frames` adds a biopsy needle whose tip advances from frame to frame, the
one thing that moves in an otherwise still scene (what a persistence must not lag,
:mod:`engine.persistence`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from training.sim.imaging import image_phantom
from training.sim.phantom import Phantom, make_phantom, needle_tip
from training.sim.probe import HIGH_PROBE, LOW_PROBE, ProbeModel, probe_by_name
from training.sim.scatterers import scatterer_spectrum

__all__ = ["NeedleSeries", "advancing_needle_frames", "renewing_speckle_frames", "renewing_twin"]


def _renewed_scenes(size: tuple[int, int], seed: int, renewal: float, count: int, pixel_mm: float,
                    needle_px: float | None = None) -> Iterator[tuple[Phantom, int]]:
    """The ``count`` scatterer fields of one phantom (drawn from ``seed``), each renewing the fraction
    ``renewal`` of the previous one's (module docstring), as ``(phantom to image, noise seed)``.
    With ``needle_px`` the phantom has a needle (:func:`training.sim.phantom.make_phantom`) whose
    visible part grows by ``needle_px`` columns a frame, its full length in the last frame; each
    yielded phantom's ``needle`` mask is the part shown in its frame."""
    if not 0.0 <= renewal <= 1.0:
        raise ValueError(f"renewal must lie in [0, 1], got {renewal}")
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    rng = np.random.default_rng(seed)
    phantom = make_phantom(rng, size, pixel_mm, scatterers=False, needle=needle_px is not None)
    max_mhz = 6.0  # make_phantom's default: both preset probes and their jitter lie below it
    fixed = phantom.specular[:-1] if needle_px is not None else phantom.specular
    specular, upsample = scatterer_spectrum(rng, np.zeros_like(phantom.echogenicity), fixed, pixel_mm, max_mhz)
    shown = _needle_columns(phantom, rng, max_mhz, needle_px, count) if needle_px is not None else None
    noise_seed = int(rng.integers(2**63))
    field = scatterer_spectrum(rng, phantom.echogenicity, (), pixel_mm, max_mhz)[0]
    for k in range(count):
        if k:
            fresh = scatterer_spectrum(rng, phantom.echogenicity, (), pixel_mm, max_mhz)[0]
            field = np.sqrt(1.0 - renewal) * field + np.sqrt(renewal) * fresh
        scene = dataclasses.replace(phantom, spectrum=(field + specular).astype(np.complex64), upsample=upsample)
        if shown is not None:
            needle_spectrum, columns, tip = shown[k]
            needle = phantom.masks["needle"] & columns[None, :]
            masks = {**phantom.masks, "needle": needle, "needle_tip": needle_tip(needle, tip, pixel_mm)}
            scene = dataclasses.replace(scene, spectrum=(scene.spectrum + needle_spectrum).astype(np.complex64),
                                        masks=masks)
        yield scene, noise_seed


def _needle_columns(phantom: Phantom, rng: np.random.Generator, max_mhz: float, speed_px: float,
                    count: int) -> list[tuple[np.ndarray, np.ndarray, tuple[int, int]]]:
    """Per frame ``k``: the needle's spectrum (its reflector in the columns shown, zero elsewhere),
    the bool columns shown, the needle cut back ``(count - 1 - k) * speed_px`` columns from its
    tip (its rows grow from entry to tip), and the end of its centre line shown (row, column;
    full grid)."""
    if not speed_px > 0:
        raise ValueError(f"the needle's speed must be positive, got {speed_px} pixels per frame")
    rows, strength = phantom.specular[-1]
    spectrum = scatterer_spectrum(rng, np.zeros_like(phantom.echogenicity), ((rows, strength),), phantom.pixel_mm,
                                  max_mhz)[0]
    order = np.argsort(np.where(np.isfinite(rows), rows, np.inf))[: int(np.isfinite(rows).sum())]  # entry to tip
    out = []
    for k in range(count):
        columns = np.zeros(rows.shape, bool)
        shown = order[: max(0, len(order) - round((count - 1 - k) * speed_px))]
        columns[shown] = True
        end = int(shown[-1] if len(shown) else order[0])  # none shown: an empty needle, an empty tip
        out.append((spectrum * columns[:, None], columns, (round(float(rows[end])), end)))
    return out


def renewing_speckle_frames(
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    probe: str | ProbeModel = "low",
    renewal: float = 0.1,
    count: int = 8,
    pixel_mm: float = 0.25,
) -> list[np.ndarray]:
    """``count`` ``uint8 (H, W)`` frames of one phantom (drawn from ``seed``) seen by ``probe``, each
    renewing the fraction ``renewal`` (in [0, 1]) of the previous frame's speckle (module
    docstring).  The same ``seed`` gives the same phantom and fields for every probe."""
    scenes = _renewed_scenes(size, seed, renewal, count, pixel_mm)
    probe = probe_by_name(probe)
    return [image_phantom(scene, probe, np.random.default_rng(noise)) for scene, noise in scenes]


def renewing_twin(
    seed: int,
    size: tuple[int, int] = (256, 256),
    renewal: float = 0.1,
    pixel_mm: float = 0.25,
    low: ProbeModel = LOW_PROBE,
    high: ProbeModel = HIGH_PROBE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two consecutive frames of one phantom (drawn from ``seed``) whose speckle renews the fraction
    ``renewal`` between them, each seen by both probes: ``(x_a, y_a, x_b, y_b)``, ``uint8 (H, W)``;
    ``x`` the ``low`` probe's, ``y`` the ``high`` probe's, of the same scatterers (the fields drawn
    once, as :func:`renewing_speckle_frames` draws them for either probe)."""
    x_a, y_a, x_b, y_b = (image_phantom(scene, probe, np.random.default_rng(noise))
                          for scene, noise in _renewed_scenes(size, seed, renewal, 2, pixel_mm) for probe in (low, high))
    return x_a, y_a, x_b, y_b


@dataclasses.dataclass(frozen=True)
class NeedleSeries:
    """Frames of a needle advancing into still tissue (:func:`advancing_needle_frames`): per frame
    the ``uint8 (H, W)`` image and the bool masks of the needle shown in it and of its tip (its
    last :data:`training.sim.phantom.TIP_MM` mm, :func:`training.sim.phantom.needle_tip`, as
    :func:`training.sim.phantom.make_phantom` draws ``needle_tip``)."""

    frames: list[np.ndarray]
    needles: list[np.ndarray]
    tips: list[np.ndarray]


def advancing_needle_frames(
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    probe: str | ProbeModel = "low",
    speed_px: float = 2.0,
    count: int = 8,
    renewal: float = 0.02,
    pixel_mm: float = 0.25,
) -> NeedleSeries:
    """``count`` frames of one phantom (drawn from ``seed``) seen by ``probe``, a biopsy needle's tip
    advancing ``speed_px`` columns a frame (its full length in the last frame) while the fraction
    ``renewal`` of the speckle renews per frame (module docstring)."""
    probe = probe_by_name(probe)
    frames, needles, tips = [], [], []
    for scene, noise in _renewed_scenes(size, seed, renewal, count, pixel_mm, needle_px=speed_px):
        frames.append(image_phantom(scene, probe, np.random.default_rng(noise)))
        needles.append(scene.crop(scene.masks["needle"]))
        tips.append(scene.crop(scene.masks["needle_tip"]))
    return NeedleSeries(frames, needles, tips)

