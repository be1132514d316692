"""Frames of one phantom whose speckle is partly renewed, as a small out-of-plane probe motion does.

Moving a probe across the image plane (the live sweep, :mod:`training.sim.cine`) shifts the
speckle with the tissue; moving it out of the plane (elevation), or breathing, replaces part of
the scatterers inside the beam's slice.  Here the first frame images the phantom's scatterer field
``A``; each further frame images

    sqrt(1 - e) A + sqrt(e) B

with ``B`` a second, independent field of the same echogenicity and ``e`` the *decorrelation*,
the fraction of the scattered power renewed (0: the same frame, 1: fully developed new speckle;
the echoes' complex correlation is ``sqrt(1 - e)``).  Tissue, specular interfaces and electronic
noise are the same in every frame, so a frame differs from the first only by the renewed speckle.
The grid image-formation model (:mod:`training.sim.imaging`) only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from training.sim.imaging import image_phantom
from training.sim.phantom import make_phantom
from training.sim.probe import ProbeModel, probe_by_name
from training.sim.scatterers import scatterer_spectrum

__all__ = ["renewed_speckle_frames"]


def renewed_speckle_frames(
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    probe: str | ProbeModel = "low",
    decorrelation: Sequence[float] = (0.02, 0.1, 0.3),
    pixel_mm: float = 0.25,
) -> list[np.ndarray]:
    """``uint8 (H, W)`` frames of one phantom (drawn from ``seed``) seen by ``probe``: the first with
    its scatterer field, then one per value ``e`` of ``decorrelation`` (each in [0, 1]; module
    docstring).  The same ``seed`` gives the same phantom and fields for every probe."""
    decorrelation = [float(e) for e in decorrelation]
    if not all(0.0 <= e <= 1.0 for e in decorrelation):
        raise ValueError(f"decorrelation must lie in [0, 1], got {decorrelation}")
    probe = probe_by_name(probe)
    rng = np.random.default_rng(seed)
    phantom = make_phantom(rng, size, pixel_mm, scatterers=False)
    max_mhz = 6.0  # make_phantom's default: both preset probes and their jitter lie below it
    field_a, upsample = scatterer_spectrum(rng, phantom.echogenicity, (), pixel_mm, max_mhz)
    field_b, _ = scatterer_spectrum(rng, phantom.echogenicity, (), pixel_mm, max_mhz)
    specular, _ = scatterer_spectrum(rng, np.zeros_like(phantom.echogenicity), phantom.specular, pixel_mm, max_mhz)
    noise_seed = int(rng.integers(2**63))
    frames = []
    for e in (0.0, *decorrelation):
        spectrum = (np.sqrt(1.0 - e) * field_a + np.sqrt(e) * field_b + specular).astype(np.complex64)
        scanned = dataclasses.replace(phantom, spectrum=spectrum, upsample=upsample)
        frames.append(image_phantom(scanned, probe, np.random.default_rng(noise_seed)))
    return frames
