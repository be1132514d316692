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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from training.sim.imaging import image_phantom
from training.sim.phantom import Phantom, make_phantom
from training.sim.probe import HIGH_PROBE, LOW_PROBE, ProbeModel, probe_by_name
from training.sim.scatterers import scatterer_spectrum

__all__ = ["renewing_speckle_frames", "renewing_twin"]


def _renewed_scenes(size: tuple[int, int], seed: int, renewal: float, count: int,
                    pixel_mm: float) -> Iterator[tuple[Phantom, int]]:
    """The ``count`` scatterer fields of one phantom (drawn from ``seed``), each renewing the fraction
    ``renewal`` of the previous one's (module docstring), as ``(phantom to image, noise seed)``."""
    if not 0.0 <= renewal <= 1.0:
        raise ValueError(f"renewal must lie in [0, 1], got {renewal}")
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    rng = np.random.default_rng(seed)
    phantom = make_phantom(rng, size, pixel_mm, scatterers=False)
    max_mhz = 6.0  # make_phantom's default: both preset probes and their jitter lie below it
    specular, upsample = scatterer_spectrum(rng, np.zeros_like(phantom.echogenicity), phantom.specular, pixel_mm,
                                            max_mhz)
    noise_seed = int(rng.integers(2**63))
    field = scatterer_spectrum(rng, phantom.echogenicity, (), pixel_mm, max_mhz)[0]
    for k in range(count):
        if k:
            fresh = scatterer_spectrum(rng, phantom.echogenicity, (), pixel_mm, max_mhz)[0]
            field = np.sqrt(1.0 - renewal) * field + np.sqrt(renewal) * fresh
        yield dataclasses.replace(phantom, spectrum=(field + specular).astype(np.complex64), upsample=upsample), noise_seed


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
