"""The second image-formation model (point scatterers, diffraction beams): physics measured on
its beams, pulses and images, and its place in the data sets and the CLI.  The speckle, pair and
CLI tests run for the third model (``array``, tests/test_sim_array.py) as well."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from beam_testutil import side_lobe_db

from benchmarks.metrics import speckle_grain_size
from training.sim import (
    HIGH_PROBE,
    LOW_PROBE,
    Phantom,
    draw_points,
    image_points,
    make_phantom,
    simulate_pair,
)
from training.sim.array import array_envelope
from training.sim.points import beam_profile, point_envelope, pulse_spectrum
from training.simulate import main

RAYLEIGH_SNR = math.sqrt(math.pi / (4 - math.pi))  # mean / std of a Rayleigh envelope, 1.913


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    """48 x 48 mm of parenchyma only, from 20 mm depth, no grid scatterers."""
    return make_phantom(np.random.default_rng(7), (192, 192), top_mm=20.0, structures=False, scatterers=False)


def _focal_beam(apodisation: str) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude (dB re peak) of the high probe's beam at its focus, transmit and receive apertures
    equal (30 mm), sampled every 0.02 mm over +-20 mm."""
    probe = replace(HIGH_PROBE, aperture_mm=30.0, tx_f_number=2.0, f_number_min=2.0, focus_mm=60.0)
    x = np.arange(-1000, 1001) * 0.02
    beam = np.abs(beam_profile(x, 60.0, probe, apodisation))
    return x, 20 * np.log10(beam / beam.max())


def test_rect_aperture_beam_has_sinc_squared_width_and_side_lobes() -> None:
    """Equal rectangular apertures at the focus: the pulse-echo beam is sinc^2(x D / lambda z),
    FWHM 0.886 lambda z / D and first side lobes at 2 x -13.3 = -26.5 dB; a Hann apodisation
    trades a wider main lobe for side lobes below -60 dB."""
    x, db = _focal_beam("rect")
    lam = HIGH_PROBE.wavelength_mm
    fwhm = float(np.ptp(x[db >= 20 * np.log10(0.5)]))
    assert fwhm == pytest.approx(0.886 * lam * 60.0 / 30.0, rel=0.05)
    assert side_lobe_db(db) == pytest.approx(-26.5, abs=1.0)
    xh, dbh = _focal_beam("hann")
    assert side_lobe_db(dbh) < -60.0
    assert float(np.ptp(xh[dbh >= 20 * np.log10(0.5)])) > 1.4 * fwhm


def test_beam_is_unfocused_away_from_the_transmit_focus() -> None:
    x = np.arange(-1000, 1001) * 0.02
    widths = []
    for z in (20.0, 60.0):
        beam = np.abs(beam_profile(x, z, LOW_PROBE, "hann"))
        widths.append(float(np.ptp(x[beam >= 0.5 * beam.max()])))
    assert widths[1] > widths[0]  # the small aperture's beam widens with depth
    with pytest.raises(ValueError, match="apodisation"):
        beam_profile(x, 20.0, LOW_PROBE, "gauss")


def test_attenuation_shifts_the_pulse_to_lower_frequencies() -> None:
    """Frequency-dependent attenuation: the spectral centroid falls with depth (downshift)."""
    c = HIGH_PROBE.sound_speed_m_s * 1e-3
    k = np.linspace(0.01, 12.0, 4000)
    f = k * c / 2

    def centroid(loss: float) -> float:
        s = pulse_spectrum(k, HIGH_PROBE, 2.0, loss) ** 2
        return float((f * s).sum() / s.sum())

    assert centroid(0.0) == pytest.approx(HIGH_PROBE.center_mhz, rel=0.02)
    assert centroid(0.0) > centroid(3.0) + 0.2 > centroid(6.0) + 0.4  # 3 dB/MHz ~ 6 cm of liver
    assert not pulse_spectrum(-k, HIGH_PROBE, 2.0).any()  # analytic: no negative frequencies


def test_points_follow_density_and_interfaces() -> None:
    rng = np.random.default_rng(3)
    ph = make_phantom(rng, (64, 64), scatterers=False, with_capsule=True)
    area = ph.echogenicity.size * ph.pixel_mm**2
    pts = draw_points(ph, rng, density_per_mm2=50.0, display="peak")
    reflectors = sum(int(np.isfinite(c).sum()) for c, _ in ph.specular)
    assert reflectors > 0 and pts.display == "peak"
    assert abs(len(pts.rows) - reflectors - 50.0 * area) < 5 * math.sqrt(50.0 * area)
    assert (pts.rows >= 0).all() and (pts.rows < ph.echogenicity.shape[0]).all()
    with pytest.raises(ValueError, match="density"):
        draw_points(ph, rng, density_per_mm2=0.0)


@pytest.mark.parametrize("envelope", [point_envelope, array_envelope], ids=["points", "array"])
@pytest.mark.parametrize("probe", [LOW_PROBE, HIGH_PROBE], ids=["low", "high"])
def test_dense_points_give_rayleigh_speckle_sparse_points_do_not(phantom: Phantom, probe, envelope) -> None:
    """Many scatterers per resolution cell: the envelope (per row, tissue texture removed) has
    mean / std 1.913; one scatterer in several cells: far from it (non-Rayleigh)."""
    truth = phantom.truth()
    mask = truth["parenchyma"]

    def snr(density: float) -> float:
        rng = np.random.default_rng(11)
        pts = draw_points(phantom, rng, density_per_mm2=density)
        env = envelope(phantom, pts, probe, rng, apodisation="tukey", cycles=2.0, decimation="sample")
        env = env / np.sqrt(truth["echogenicity"])
        rows = [env[r][mask[r]] / np.sqrt(np.mean(env[r][mask[r]] ** 2)) for r in range(env.shape[0])]
        pooled = np.concatenate(rows)
        return float(pooled.mean() / pooled.std())

    assert snr(400.0) == pytest.approx(RAYLEIGH_SNR, abs=0.08)
    assert snr(1.0) < RAYLEIGH_SNR - 0.4


@pytest.mark.parametrize("model", ["points", "array"])
def test_point_pairs_low_probe_coarser_and_share_tissue(model: str) -> None:
    for seed in (0, 1):
        x, y, truth = simulate_pair(seed, (160, 160), model=model)
        mask = truth["parenchyma"]
        assert x.dtype == y.dtype == np.uint8 and x.shape == y.shape == (160, 160)
        assert speckle_grain_size(x, mask, axis=1) > 1.6 * speckle_grain_size(y, mask, axis=1)
        smooth = [cv2.GaussianBlur(im.astype(np.float32), (0, 0), 6).ravel() for im in (x, y)]
        assert np.corrcoef(*smooth)[0, 1] > 0.6
    again = simulate_pair(1, (160, 160), model=model)[0]
    assert np.array_equal(again, x)


def test_displays_median_and_peak(phantom: Phantom) -> None:
    rng = np.random.default_rng(2)
    images = {}
    for display in ("median", "peak"):
        pts = draw_points(phantom, np.random.default_rng(4), density_per_mm2=80.0, display=display)
        images[display] = image_points(phantom, pts, HIGH_PROBE, rng, apodisation="rect", cycles=2.0,
                                       decimation="mean")
    assert abs(float(np.median(images["median"])) - HIGH_PROBE.gain) <= 2  # auto-gain at the median
    assert np.percentile(images["peak"], 99.9) >= 250  # brightest echoes white
    with pytest.raises(ValueError, match="decimation"):
        image_points(phantom, pts, HIGH_PROBE, rng, decimation="max")


@pytest.mark.parametrize("model", ["points", "array"])
def test_cli_point_models(model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path / "p"), "--count", "1", "--size", "48x64", "--paired", "--model", model]) == 0
    assert cv2.imread(str(tmp_path / "p" / "eval" / "y_000.png"), cv2.IMREAD_UNCHANGED).shape == (48, 64)
    assert f"model: {model}" in (tmp_path / "p" / "simulate.yaml").read_text()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path / "q"), "--model", model, "--geometry", "fan"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "window geometry only" in err[0]
    assert not (tmp_path / "q").exists()
    with pytest.raises(ValueError, match="window geometry only"):  # the library refuses it too
        simulate_pair(0, 64, geometry="fan", model=model)
