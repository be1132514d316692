"""Two-probe ultrasound simulator: liver phantoms imaged by a small- and a large-aperture probe.

Pure numpy/scipy (cv2 for drawing, resizing and video); importing it does not import torch.

* :func:`make_phantom` -> :class:`Phantom` (echogenicity, scatterers, masks);
* :func:`image_phantom` -> ``uint8 (H, W)`` B-mode image for a :class:`ProbeModel`
  (:data:`LOW_PROBE`, :data:`HIGH_PROBE`), beams straight down through the window;
* :func:`draw_points` / :func:`image_points` -> the second image-formation model (point
  scatterers, diffraction beams), for training and testing across simulator families;
* :func:`image_array` -> the third: the same points through an element-level array with
  delay-and-sum beamforming (the out-of-family check);
* :func:`image_fan` -> the whole sector (phased array) or convex scan, scan-converted;
* :func:`simulate_pair` -> ``(x, y, truth)``: both probes, the same scatterers;
* :func:`sweep_frames` -> endless frames of a probe sweeping over one phantom (live demo);
* :func:`write_dataset` -> the ``low/``, ``high/`` and ``eval/`` folders of ``python -m training.simulate``.
"""

from __future__ import annotations

from training.sim.aberration import PhaseScreen, draw_screen
from training.sim.array import image_array
from training.sim.cine import sweep_frames, write_cine
from training.sim.dataset import (
    GEOMETRIES,
    MODELS,
    SimulateConfig,
    run,
    simulate_pair,
    write_dataset,
    write_figure,
)
from training.sim.imaging import SimulationError, complex_envelope, image_phantom, log_compress
from training.sim.phantom import MASK_NAMES, Phantom, make_phantom
from training.sim.points import PointField, draw_points, image_points
from training.sim.probe import HIGH_PROBE, LOW_PROBE, PROBES, ProbeModel, probe_by_name
from training.sim.scan import BeamGrid, beam_grid, fan_mask, image_fan

__all__ = [
    "PhaseScreen",
    "draw_screen",
    "ProbeModel",
    "LOW_PROBE",
    "HIGH_PROBE",
    "PROBES",
    "probe_by_name",
    "Phantom",
    "MASK_NAMES",
    "make_phantom",
    "image_phantom",
    "PointField",
    "draw_points",
    "image_points",
    "image_array",
    "complex_envelope",
    "log_compress",
    "SimulationError",
    "simulate_pair",
    "sweep_frames",
    "write_cine",
    "write_dataset",
    "write_figure",
    "SimulateConfig",
    "GEOMETRIES",
    "MODELS",
    "BeamGrid",
    "beam_grid",
    "fan_mask",
    "image_fan",
    "run",
]
