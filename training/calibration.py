"""Output calibration: refit the generator head's gain and offset to the high-quality probe's grey levels.

The DRNN ends in ``G(x) = sigmoid(z)``, ``z = head(features(x))`` (:meth:`~training.models.DRNN.logits`).
A generator trained toward a pixel-wise loss renders its speckle with too little contrast (its
output histogram is narrower than the high-quality probe's, see ``weights/MODEL_CARD.md``).
Calibration replaces ``z`` by ``a * z + b``: two numbers, folded into the head convolution

    W' = a * W,    bias' = a * bias + b,

so the calibrated generator has the paper's architecture, and every backend and export runs
it unchanged.  ``(a, b)`` minimise

    KL(p_high || p_G')   (nats)

between grey-level histograms pooled over two *unpaired* sets, as the GAN's data are: the
high-quality probe's images and the calibrated outputs ``round(255 * sigmoid(a z + b))`` of
the low-quality probe's images.  Histograms have 64 bins of 4 grey levels with one count
added to every bin (Laplace smoothing).  The minimum is found by Nelder-Mead from
``(1, 0)``, so the fit is never worse than the uncalibrated generator on these sets.
A monotone map of ``z``: it changes grey levels, not where the speckle grains are.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize
from tqdm import tqdm

from training.checkpoint import atomic_save, build_generator, code_version, generator_record, load_checkpoint
from training.models import DRNN

__all__ = [
    "Calibration",
    "OutputCalibrationError",
    "head_logits",
    "grey_pdf",
    "calibrated_output",
    "fit_calibration",
    "apply_calibration",
    "calibrate_checkpoint",
]

#: Grey-level histogram bins (of 256 / BINS levels each) of the objective.
BINS = 64
#: Pixels pooled into the objective at most (a random subset beyond it), to bound time and memory.
MAX_PIXELS = 4_000_000
#: Gains outside this range are refused: the fit has then left the generator's working range.
GAIN_RANGE = (0.25, 4.0)


class OutputCalibrationError(ValueError):
    """Calibration impossible: no images, a degenerate fit; the message names the cause."""


@dataclass(frozen=True)
class Calibration:
    """``G'(x) = sigmoid(gain * z + offset)``; KL in nats before (``gain=1, offset=0``) and after."""

    gain: float
    offset: float
    kl_before: float
    kl_after: float
    low_images: int
    high_images: int


@torch.no_grad()
def head_logits(g: DRNN, images: Iterable[np.ndarray], progress: bool = False) -> list[np.ndarray]:
    """``z`` of each ``uint8 (H, W)`` image (scaled to [0, 1]) as ``float32 (H, W)``, eval mode, CPU."""
    g.eval()
    out = []
    for image in tqdm(list(images), desc="logits", unit="img", disable=not progress):
        x = torch.from_numpy(np.ascontiguousarray(image)).float().div(255.0)[None, None]
        out.append(g.logits(x)[0, 0].numpy())
    return out


def grey_pdf(values: np.ndarray) -> np.ndarray:
    """Laplace-smoothed histogram of ``uint8`` values: ``(n_k + 1) / sum(n_k + 1)`` over :data:`BINS` bins."""
    counts = np.bincount(np.asarray(values, dtype=np.uint8).ravel(), minlength=256)
    counts = counts.reshape(BINS, 256 // BINS).sum(axis=1).astype(np.float64) + 1.0
    return counts / counts.sum()


def calibrated_output(z: np.ndarray, gain: float, offset: float) -> np.ndarray:
    """``round(255 * sigmoid(gain * z + offset))`` as ``uint8``: the calibrated generator's frame."""
    t = np.clip(gain * z.astype(np.float64) + offset, -60.0, 60.0)
    return np.round(255.0 / (1.0 + np.exp(-t))).astype(np.uint8)


def _pool(arrays: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    flat = np.concatenate([a.ravel() for a in arrays])
    if flat.size > MAX_PIXELS:
        flat = flat[rng.choice(flat.size, MAX_PIXELS, replace=False)]
    return flat


def _masked(images: Sequence[np.ndarray], masks: Sequence[np.ndarray] | None) -> list[np.ndarray]:
    if masks is None:
        return list(images)
    if len(masks) != len(images) or any(m.shape != i.shape for m, i in zip(masks, images, strict=False)):
        raise OutputCalibrationError(f"{len(masks)} masks do not fit {len(images)} images one to one with the same sizes")
    picked = [i[m.astype(bool)] for i, m in zip(images, masks, strict=True)]
    if sum(p.size for p in picked) == 0:
        raise OutputCalibrationError("the masks select no pixel")
    return picked


def fit_calibration(logits: Sequence[np.ndarray], high: Sequence[np.ndarray], seed: int = 0,
                    low_masks: Sequence[np.ndarray] | None = None,
                    high_masks: Sequence[np.ndarray] | None = None) -> Calibration:
    """The ``(gain, offset)`` minimising ``KL(p_high || p_G')`` (module docstring) on pooled pixels.

    ``low_masks`` / ``high_masks`` (boolean, one per image) restrict the pooled pixels, e.g. to
    the homogeneous parenchyma of simulated images, where the speckle's histogram is measured.

    Raises:
        OutputCalibrationError: no logits or no high-quality images, or a gain outside :data:`GAIN_RANGE`.
    """
    if not logits or not high:
        raise OutputCalibrationError(f"calibration needs low-probe and high-probe images, got {len(logits)} and {len(high)}")
    rng = np.random.default_rng(seed)
    z = _pool(_masked(logits, low_masks), rng).astype(np.float32)
    p_high = grey_pdf(_pool(_masked(high, high_masks), rng))

    def kl(params: np.ndarray) -> float:
        q = grey_pdf(calibrated_output(z, float(params[0]), float(params[1])))
        return float(np.sum(p_high * np.log(p_high / q)))

    before = kl(np.array([1.0, 0.0]))
    res = minimize(kl, np.array([1.0, 0.0]), method="Nelder-Mead",
                   options={"xatol": 1e-3, "fatol": 1e-6, "initial_simplex": [[1.0, 0.0], [1.2, 0.0], [1.0, 0.2]]})
    gain, offset = float(res.x[0]), float(res.x[1])
    if not (GAIN_RANGE[0] <= gain <= GAIN_RANGE[1]) or not math.isfinite(offset):
        raise OutputCalibrationError(
            f"calibration gain {gain:.3f} is outside {GAIN_RANGE}: the two sets' grey levels are too far apart "
            "for a recalibration of this generator (are --low and --high swapped?)"
        )
    return Calibration(gain, offset, before, float(res.fun), len(logits), len(high))


@torch.no_grad()
def apply_calibration(g: DRNN, cal: Calibration) -> DRNN:
    """Fold ``z -> gain * z + offset`` into ``g.head`` in place (``W' = gain W``, ``b' = gain b + offset``); returns ``g``."""
    if g.head.bias is None:
        raise OutputCalibrationError("the generator's head convolution has no bias to take the offset")
    g.head.weight.mul_(cal.gain)
    g.head.bias.mul_(cal.gain).add_(cal.offset)
    return g


def calibrate_checkpoint(weights: str | Path, low: Sequence[np.ndarray], high: Sequence[np.ndarray],
                         out: str | Path, progress: bool = True, low_masks: Sequence[np.ndarray] | None = None,
                         high_masks: Sequence[np.ndarray] | None = None, data: str = "") -> Calibration:
    """Fit on ``low`` / ``high`` frames (``uint8 (H, W)``, unpaired; optional masks as in
    :func:`fit_calibration`), fold into the generator of ``weights`` and write a generator file
    to ``out`` (atomically).  ``data`` describes the images for the record.

    ``out`` is a generator-only file (:func:`~training.checkpoint.generator_record`; its
    ``code_version`` stays the training code's) with ``"calibration"``: :class:`Calibration` as a
    dict plus the ``code_version`` of this step and the file's earlier calibration, if any.
    Calibrating a calibrated file composes the two maps.
    """
    ckpt = load_checkpoint(weights)
    g = build_generator(ckpt, weights)
    cal = fit_calibration(head_logits(g, low, progress), high, low_masks=low_masks, high_masks=high_masks)
    apply_calibration(g, cal)
    slim = generator_record(ckpt, g.state_dict())
    slim["calibration"] = {**asdict(cal), "masked": low_masks is not None, "data": data,
                           "code_version": code_version(), "previous": ckpt.get("calibration")}
    atomic_save(slim, out)
    return cal
