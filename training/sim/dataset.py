"""Data sets from the simulator: unpaired ``low/`` and ``high/`` images, a paired ``eval/`` set.

Layout written by :func:`write_dataset` (and ``python -m training.simulate``)::

    OUT/low/low_NNNNN.png       small-aperture probe, one random phantom each
    OUT/high/high_NNNNN.png     large-aperture probe, other random phantoms (unpaired)
    OUT/eval/x_NNN.png          with paired=True: phantom NNN seen by the low probe,
    OUT/eval/y_NNN.png          ... by the high probe (the same scatterers),
    OUT/eval/truth_NNN.npz      ... and its truth: echogenicity (float32) and bool masks
    OUT/twins/a/x_NNN.png       with twins=N: a phantom's frame seen by the low probe,
    OUT/twins/a/y_NNN.png       ... by the high probe,
    OUT/twins/b/x_NNN.png       ... its next frame, part of the speckle renewed (low probe),
    OUT/twins/b/y_NNN.png       ... and by the high probe (training.sim.elevation)
    OUT/simulate.yaml           the resolved settings, probes and simulator version

Every image has its own seed, derived from ``seed`` with :class:`numpy.random.SeedSequence`,
so any one image can be regenerated alone and the four sets never share a phantom.  Each twin's
renewal is drawn log-uniformly from ``renewal`` and listed in ``simulate.yaml``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import yaml
from tqdm import tqdm

from training.outputs import PathError, check_output_file, check_output_folder, check_suffix, figure_suffixes
from training.sim.aberration import MAX_RMS_NS
from training.sim.array import image_array
from training.sim.cine import CODECS, write_cine
from training.sim.elevation import renewing_twin
from training.sim.imaging import image_phantom
from training.sim.phantom import Phantom, make_phantom
from training.sim.points import draw_points, image_points
from training.sim.probe import HIGH_PROBE, LOW_PROBE, ProbeModel
from training.sim.scan import fan_mask, image_fan

__all__ = ["SimulateConfig", "SIMULATOR_VERSION", "GEOMETRIES", "MODELS", "POINT_MODELS", "simulate_pair", "write_dataset", "write_figure", "run"]

#: ``window``: a rectangle of tissue inside the field of view, beams straight down (the default,
#: for training crops); ``fan``: the whole field of view from the skin, a sector for the phased
#: array and a convex fan for the convex array, black outside.
GEOMETRIES = ("window", "fan")

#: image-formation models: ``grid`` (:mod:`training.sim.imaging`: a scatterer on every sample of
#: a fine grid, Gaussian beams) and ``points`` (:mod:`training.sim.points`: point scatterers of
#: random density, diffraction beams with side lobes, frequency-dependent attenuation) and ``array``
#: (:mod:`training.sim.array`: the same point scatterers seen through an element-level linear
#: array with delay-and-sum beamforming).
MODELS = ("grid", "points", "array")
#: models that image point scatterers, the ``window`` geometry only.
POINT_MODELS = ("points", "array")

#: bumped whenever a change alters the images a seed produces.
SIMULATOR_VERSION = "1"


@dataclass(frozen=True)
class SimulateConfig:
    """Everything ``python -m training.simulate`` does, resolved.

    Attributes:
        out: data set folder, or ``None`` to write no data set.
        count: images per probe in ``low/`` and ``high/``.
        size: image ``(H, W)`` in pixels.
        seed: master seed.
        paired: also write the paired ``eval/`` set.
        eval_count: pairs in ``eval/`` (``None``: ``count``).
        jitter: spread of probe parameters and pixel size (0: the presets; 1: plausible range).
        pixel_mm: pixel spacing (mm) before jitter (``window`` geometry).
        geometry: ``"window"`` or ``"fan"`` (see :data:`GEOMETRIES`).
        depth_mm: depth shown by a ``fan`` image (mm) before jitter; its pixel is ``depth_mm / H``.
        cine: video file of a probe sweep, or ``None``.
        cine_frames: frames in the video.
        figure: PNG file showing low, high and truth side by side, or ``None``.
        model: image-formation model, ``"grid"``, ``"points"`` or ``"array"`` (see :data:`MODELS`;
            ``points`` and ``array`` image the ``window`` geometry only).
        aberration_ns: rms arrival-time error of a body-wall phase screen in front of both
            probes (ns; :mod:`training.sim.aberration`), ``array`` model only; 0: none.
        needle: put a biopsy needle into every phantom (``window`` geometry; truth masks
            ``needle`` and ``needle_tip``).
        twins: pairs of consecutive frames in ``twins/a`` and ``twins/b`` (``grid`` model,
            ``window`` geometry, no needle), for the ``temporal`` loss term.
        renewal: ``(lo, hi)``, the range of the fraction of speckle renewed between a twin's
            frames (0 < lo <= hi <= 1; drawn log-uniformly per twin).
    """

    out: Path | None = None
    count: int = 40
    size: tuple[int, int] = (256, 256)
    seed: int = 0
    paired: bool = False
    eval_count: int | None = None
    jitter: float = 0.0
    pixel_mm: float = 0.25
    geometry: str = "window"
    depth_mm: float = 120.0
    cine: Path | None = None
    cine_frames: int = 150
    figure: Path | None = None
    model: str = "grid"
    aberration_ns: float = 0.0
    needle: bool = False
    twins: int = 0
    renewal: tuple[float, float] = (0.02, 0.3)

    def __post_init__(self) -> None:
        if self.count < 0 or (self.eval_count is not None and self.eval_count < 0):
            raise ValueError(f"count and eval_count must be >= 0, got {self.count} and {self.eval_count}")
        if self.twins < 0:
            raise ValueError(f"twins must be >= 0, got {self.twins}")
        if self.out is not None and self.count == 0 and not (self.paired and self.eval_count) and not self.twins:
            raise ValueError(f"--count 0 writes no image to {self.out}; give --count >= 1, "
                             "--paired --eval-count N (N >= 1) for an eval/ set alone, or --twins N")
        lo, hi = self.renewal
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"renewal must be a range 0 < LO <= HI <= 1, got {lo} {hi}")
        if self.twins and (self.model, self.geometry, self.needle) != ("grid", "window", False):
            raise ValueError("twins are simulated with the grid model in the window geometry, without a needle; "
                             "leave out --model, --geometry and --needle")
        if self.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {self.seed}")
        if min(self.size) < 16:
            raise ValueError(f"size must be at least 16x16 pixels, got {self.size[0]}x{self.size[1]}")
        if not 0.0 <= self.jitter <= 2.0:
            raise ValueError(f"jitter must be in [0, 2], got {self.jitter}")
        if not 0.05 <= self.pixel_mm <= 2.0:
            raise ValueError(f"pixel_mm must be in [0.05, 2] mm, got {self.pixel_mm}")
        if self.geometry not in GEOMETRIES:
            raise ValueError(f"geometry must be one of {', '.join(GEOMETRIES)}, got {self.geometry!r}")
        _check_model(self.model, self.geometry, self.aberration_ns, self.needle)
        if not 10.0 <= self.depth_mm <= 300.0:
            raise ValueError(f"depth_mm must be in [10, 300] mm, got {self.depth_mm}")
        if self.cine is not None and Path(self.cine).suffix.lower() not in CODECS:
            raise ValueError(f"--cine {self.cine}: unsupported suffix; use one of {', '.join(CODECS)}")
        if self.cine_frames < 1:
            raise ValueError(f"cine_frames must be >= 1, got {self.cine_frames}")
        if self.figure is not None:
            check_suffix(self.figure, "--figure", figure_suffixes())


def _as_size(size: int | tuple[int, int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int | np.integer) else (int(size[0]), int(size[1]))


def _check_model(model: str, geometry: str, aberration_ns: float = 0.0, needle: bool = False) -> None:
    """Raise ``ValueError`` for an unknown image-formation model, a point-scatterer model on a fan,
    aberration outside [0, MAX_RMS_NS] ns or asked of a model without elements, or a needle in a fan."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    if model in POINT_MODELS and geometry != "window":
        raise ValueError(f"the {model} model images the window geometry only; use --geometry window")
    if not 0.0 <= aberration_ns <= MAX_RMS_NS:
        raise ValueError(f"aberration must be in [0, {MAX_RMS_NS:g}] ns, got {aberration_ns}")
    if aberration_ns > 0 and model != "array":
        raise ValueError(f"aberration needs the array model's elements; use --model array (got {model!r})")
    if needle and geometry != "window":
        raise ValueError("the needle is drawn in the window geometry only; use --geometry window")


def _jittered(rng: np.random.Generator, jitter: float,
              probes: tuple[ProbeModel, ...]) -> tuple[float, tuple[ProbeModel, ...]]:
    """``(pixel scale, probes)`` drawn around ``(1, probes)`` with spread ``jitter`` (0: unchanged)."""
    if jitter <= 0:
        return 1.0, probes
    return float(np.exp(jitter * rng.uniform(-0.2, 0.25))), tuple(p.jittered(rng, jitter) for p in probes)


def _twin(seed: np.random.SeedSequence, cfg: SimulateConfig) -> tuple[float, tuple[np.ndarray, ...]]:
    """``(renewal, (x_a, y_a, x_b, y_b))`` of one twin (:func:`training.sim.elevation.renewing_twin`)."""
    rng = np.random.default_rng(seed)
    lo, hi = cfg.renewal
    renewal = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    scale, (low, high) = _jittered(rng, cfg.jitter, (LOW_PROBE, HIGH_PROBE))
    phantom_seed = int(rng.integers(2**31))
    return renewal, renewing_twin(phantom_seed, cfg.size, renewal, cfg.pixel_mm * scale, low, high)


def _draw(rng: np.random.Generator, size: tuple[int, int], jitter: float, probes: tuple[ProbeModel, ...],
          pixel_mm: float, geometry: str, depth_mm: float, model: str = "grid",
          aberration_ns: float = 0.0, needle: bool = False) -> tuple[Phantom, list[ProbeModel]]:
    """A phantom and the probes that image it, both jittered by ``jitter``; the ``points`` and
    ``array`` models keep their point scatterers (and the body wall's phase screen, if
    ``aberration_ns``) in ``phantom.points`` (made without the grid's scatterers)."""
    _check_model(model, geometry, aberration_ns, needle)
    scale, probes = _jittered(rng, jitter, probes)
    if geometry == "fan":  # the whole field of view from the skin; scatterers drawn per beam grid
        phantom = make_phantom(rng, size, depth_mm * scale / size[0], top_mm=0.0, scatterers=False, with_capsule=True)
        return phantom, list(probes)
    if model in POINT_MODELS:
        phantom = make_phantom(rng, size, pixel_mm * scale, scatterers=False, needle=needle)
        return replace(phantom, points=draw_points(phantom, rng, aberration_ns=aberration_ns)), list(probes)
    return make_phantom(rng, size, pixel_mm * scale, max_mhz=max(p.center_mhz for p in probes), needle=needle), list(probes)


def _image(phantom: Phantom, probe: ProbeModel, rng: np.random.Generator, geometry: str, model: str) -> np.ndarray:
    if phantom.points is not None:
        form = image_array if model == "array" else image_points
        return form(phantom, phantom.points, probe, rng)
    return image_fan(phantom, probe, rng) if geometry == "fan" else image_phantom(phantom, probe, rng)


def simulate_pair(
    seed: int | np.random.SeedSequence = 0,
    size: int | tuple[int, int] = (256, 256),
    *,
    jitter: float = 0.0,
    pixel_mm: float = 0.25,
    geometry: str = "window",
    depth_mm: float = 120.0,
    low: ProbeModel = LOW_PROBE,
    high: ProbeModel = HIGH_PROBE,
    model: str = "grid",
    aberration_ns: float = 0.0,
    needle: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """One phantom seen by both probes: ``(x, y, truth)``.

    ``x`` (low probe) and ``y`` (high probe) are ``uint8 (H, W)`` images of the same tissue;
    ``truth`` holds ``echogenicity`` (float32, parenchyma ~ 1) and the bool masks ``vessels``,
    ``lesions``, ``interfaces``, ``structures``, ``liver`` and ``parenchyma``.  In the ``window``
    geometry both probes image the same scatterers, with either image-formation ``model``
    (:data:`MODELS`), the ``array`` model through one body wall's phase screen if ``aberration_ns``
    (rms, ns), with a biopsy needle if ``needle`` (truth adds ``needle`` and ``needle_tip``).
    In the ``fan`` geometry (``grid`` model only) each probe draws scatterers along its own beams
    (their fans differ), ``truth`` adds ``fov_x`` and ``fov_y`` (inside each fan) and
    ``parenchyma`` keeps 3 mm inside both.
    """
    rng = np.random.default_rng(seed)
    phantom, (p_low, p_high) = _draw(rng, _as_size(size), jitter, (low, high), pixel_mm, geometry, depth_mm, model,
                                     aberration_ns, needle)
    x, y = _image(phantom, p_low, rng, geometry, model), _image(phantom, p_high, rng, geometry, model)
    truth = phantom.truth()
    if geometry == "fan":
        truth["fov_x"], truth["fov_y"] = fan_mask(phantom, p_low), fan_mask(phantom, p_high)
        both = (truth["fov_x"] & truth["fov_y"]).astype(np.uint8)
        inner = cv2.distanceTransform(np.pad(both, 1), cv2.DIST_L2, 3)[1:-1, 1:-1] * phantom.pixel_mm >= 3.0
        truth["parenchyma"] &= inner
    return x, y, truth


def _single(seed: np.random.SeedSequence, cfg: SimulateConfig, probe: ProbeModel) -> np.ndarray:
    rng = np.random.default_rng(seed)
    phantom, (p,) = _draw(rng, cfg.size, cfg.jitter, (probe,), cfg.pixel_mm, cfg.geometry, cfg.depth_mm, cfg.model,
                          cfg.aberration_ns, cfg.needle)
    return _image(phantom, p, rng, cfg.geometry, cfg.model)


def _imwrite(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write image {path}")


def write_dataset(
    out_dir: str | Path,
    count: int = 40,
    size: int | tuple[int, int] = 256,
    seed: int = 0,
    paired: bool = False,
    *,
    eval_count: int | None = None,
    jitter: float = 0.0,
    pixel_mm: float = 0.25,
    geometry: str = "window",
    depth_mm: float = 120.0,
    model: str = "grid",
    aberration_ns: float = 0.0,
    needle: bool = False,
    twins: int = 0,
    renewal: tuple[float, float] = (0.02, 0.3),
    progress: bool = True,
) -> dict[str, int]:
    """Write ``low/`` and ``high/`` (``count`` unpaired images each), with ``paired`` ``eval/``, and
    ``twins`` consecutive-frame pairs in ``twins/a`` and ``twins/b``.

    Returns the number of files written per folder.  See the module docstring for the layout.
    """
    cfg = SimulateConfig(out=Path(out_dir), count=count, size=_as_size(size), seed=seed, paired=paired,
                         eval_count=eval_count, jitter=jitter, pixel_mm=pixel_mm, geometry=geometry,
                         depth_mm=depth_mm, model=model, aberration_ns=aberration_ns, needle=needle,
                         twins=twins, renewal=renewal)
    out = Path(out_dir)
    n_eval = (cfg.count if cfg.eval_count is None else cfg.eval_count) if paired else 0
    low_seeds, high_seeds, eval_seeds, twin_seeds = np.random.SeedSequence(seed).spawn(4)
    jobs = [("low", s, i) for i, s in enumerate(low_seeds.spawn(count))]
    jobs += [("high", s, i) for i, s in enumerate(high_seeds.spawn(count))]
    jobs += [("eval", s, i) for i, s in enumerate(eval_seeds.spawn(n_eval))]
    jobs += [("twins", s, i) for i, s in enumerate(twin_seeds.spawn(twins))]
    for name in {job[0] for job in jobs}:
        for folder in ("twins/a", "twins/b") if name == "twins" else (name,):
            (out / folder).mkdir(parents=True, exist_ok=True)
    written = {"low": 0, "high": 0, "eval": 0, **({"twins": 0} if twins else {})}
    renewals: list[float] = []
    for kind, ss, i in tqdm(jobs, desc=f"simulate -> {out}", unit="img", disable=not progress):
        if kind == "eval":
            x, y, truth = simulate_pair(ss, cfg.size, jitter=jitter, pixel_mm=pixel_mm, geometry=geometry,
                                        depth_mm=depth_mm, model=model, aberration_ns=aberration_ns, needle=needle)
            _imwrite(out / "eval" / f"x_{i:03d}.png", x)
            _imwrite(out / "eval" / f"y_{i:03d}.png", y)
            np.savez_compressed(out / "eval" / f"truth_{i:03d}.npz", **truth)
        elif kind == "twins":
            renewal_i, images = _twin(ss, cfg)
            for image, name in zip(images, ("a/x", "a/y", "b/x", "b/y"), strict=True):
                _imwrite(out / "twins" / f"{name}_{i:03d}.png", image)
            renewals.append(round(renewal_i, 4))
        else:
            probe = LOW_PROBE if kind == "low" else HIGH_PROBE
            _imwrite(out / kind / f"{kind}_{i:05d}.png", _single(ss, cfg, probe))
        written[kind] += 1
    manifest = {
        "simulator_version": SIMULATOR_VERSION,
        "config": {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                   for k, v in asdict(replace(cfg, eval_count=n_eval)).items()},
        "probes": {"low": asdict(LOW_PROBE), "high": asdict(HIGH_PROBE)},
        "written": written,
        **({"twin_renewal": renewals} if renewals else {}),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "simulate.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return written


def write_figure(path: str | Path, seed: int = 0, size: int | tuple[int, int] = (256, 256), *,
                 pixel_mm: float = 0.25, geometry: str = "window", depth_mm: float = 120.0, model: str = "grid",
                 aberration_ns: float = 0.0, needle: bool = False) -> Path:
    """PNG of one phantom (the preset probes; ``pixel_mm`` for the window geometry): low-probe
    image, high-probe image and the truth, side by side.

    The truth panel shows the echogenicity in dB (-40..+15) with the outlines of vessels (cyan),
    lesions (red), specular interfaces (yellow) and the homogeneous parenchyma (green).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x, y, truth = simulate_pair(seed, size, pixel_mm=pixel_mm, geometry=geometry, depth_mm=depth_mm, model=model,
                                aberration_ns=aberration_ns, needle=needle)
    wall = f"\nthrough a {aberration_ns:g} ns rms body wall" if aberration_ns > 0 else ""
    fig = Figure(figsize=(12, 4.8 if wall else 4.4), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    axes[0].imshow(x, cmap="gray", vmin=0, vmax=255)
    axes[0].set_title(f"low probe: {LOW_PROBE.center_mhz} MHz, D = {LOW_PROBE.aperture_mm:g} mm{wall}")
    axes[1].imshow(y, cmap="gray", vmin=0, vmax=255)
    axes[1].set_title(f"high probe: {HIGH_PROBE.center_mhz} MHz, D = {HIGH_PROBE.aperture_mm:g} mm{wall}")
    axes[2].imshow(10 * np.log10(np.maximum(truth["echogenicity"], 1e-4)), cmap="gray", vmin=-40, vmax=15)
    for key, colour in (("vessels", "cyan"), ("lesions", "red"), ("interfaces", "yellow"), ("parenchyma", "lime"),
                        ("needle", "magenta")):
        if key in truth and truth[key].any():
            axes[2].contour(truth[key].astype(np.float32), levels=[0.5], colors=colour, linewidths=0.8)
    axes[2].set_title("truth: echogenicity (dB) and masks")
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def run(config: SimulateConfig) -> dict[str, int]:
    """Do what ``config`` asks: data set, video, figure.  Returns the files written per kind.

    Raises:
        PathError: before anything is simulated, an output that cannot be written, or an
            ``--out`` that already holds a data set (its ``simulate.yaml``): a second set written
            into it would leave the first one's extra files and describe the mix wrongly.
    """
    for path, check, flag in ((config.out, check_output_folder, "--out"), (config.cine, check_output_file, "--cine"),
                              (config.figure, check_output_file, "--figure")):
        if path is not None:
            check(path, flag)
    if config.out is not None and (Path(config.out) / "simulate.yaml").exists():
        raise PathError(f"--out {config.out}: already holds a data set (simulate.yaml); give another folder")
    written: dict[str, int] = {}
    if config.out is not None:
        written.update(write_dataset(config.out, config.count, config.size, config.seed, config.paired,
                                     eval_count=config.eval_count, jitter=config.jitter, pixel_mm=config.pixel_mm,
                                     geometry=config.geometry, depth_mm=config.depth_mm, model=config.model,
                                     aberration_ns=config.aberration_ns, needle=config.needle, twins=config.twins,
                                     renewal=config.renewal))
    if config.cine is not None:
        written["cine_frames"] = write_cine(config.cine, config.cine_frames, size=config.size, seed=config.seed)
    if config.figure is not None:
        write_figure(config.figure, config.seed, config.size, pixel_mm=config.pixel_mm, geometry=config.geometry,
                     depth_mm=config.depth_mm, model=config.model, aberration_ns=config.aberration_ns,
                     needle=config.needle)
        written["figure"] = 1
    return written
