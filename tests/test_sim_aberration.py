"""The body-wall phase screen (``training.sim.aberration``) and the array model imaging through it:
the screen's statistics, the blurred focus (worse for the large aperture) and the plumbing from
the command line to the pairs."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from training.sim import HIGH_PROBE, LOW_PROBE, simulate_pair
from training.sim.aberration import STEP_MM, PhaseScreen, draw_screen
from training.sim.array import das_psf
from training.simulate import main as simulate_main


def _autocorrelation_fwhm(delay: np.ndarray) -> float:
    """FWHM (mm) of the circular autocorrelation of a zero-mean sequence sampled every STEP_MM."""
    spectrum = np.abs(np.fft.rfft(delay, 2 * len(delay))) ** 2
    ac = np.fft.irfft(spectrum)[: len(delay)]
    ac /= ac[0]
    first_below = int(np.argmax(ac < 0.5))
    lo, hi = ac[first_below - 1], ac[first_below]
    return 2.0 * STEP_MM * (first_below - 1 + (lo - 0.5) / (lo - hi))


def test_screen_has_the_rms_and_correlation_length_asked() -> None:
    rng = np.random.default_rng(0)
    widths = []
    for _ in range(20):
        s = draw_screen(rng, 40.0, correlation_mm=4.0)
        assert np.sqrt(np.mean(s.delay_us**2)) * 1e3 == pytest.approx(40.0, rel=1e-9)
        assert abs(s.delay_us.mean()) < 1e-12
        widths.append(_autocorrelation_fwhm(s.delay_us))
    assert np.median(widths) == pytest.approx(4.0, rel=0.15)
    drawn = draw_screen(rng, 40.0)
    assert 2.0 <= drawn.correlation_mm <= 6.0
    assert drawn(np.array([drawn.position_mm[7]]))[0] == pytest.approx(drawn.delay_us[7])


@pytest.mark.parametrize("rms", [0.0, -5.0, 250.0, float("nan")])
def test_screen_refuses_rms_outside_its_range(rms: float) -> None:
    with pytest.raises(ValueError, match="rms_ns"):
        draw_screen(np.random.default_rng(0), rms)


def _main_lobe_fraction(probe, screen: PhaseScreen | None) -> float:
    """Share of the focal PSF's energy within +-1 nominal FWHM of the beam line."""
    dx = np.arange(-200, 201) * 0.05
    h = das_psf(probe, probe.focus_mm, np.arange(-24, 25) * 0.05, dx, apodisation="rect", cycles=2.0,
                pitch_mm=0.5 * probe.wavelength_mm, screen=screen)
    energy = np.sum(np.abs(h) ** 2, axis=0)
    return float(energy[np.abs(dx) <= probe.lateral_fwhm_mm(probe.focus_mm)].sum() / energy.sum())


def test_zero_screen_changes_nothing() -> None:
    zero = PhaseScreen(np.array([-50.0, 50.0]), np.zeros(2), 0.0, 4.0)
    args = (HIGH_PROBE, 40.0, np.arange(-10, 11) * 0.05, np.arange(-40, 41) * 0.1)
    kw = dict(apodisation="hann", cycles=2.0, pitch_mm=0.2)
    np.testing.assert_allclose(das_psf(*args, **kw, screen=zero), das_psf(*args, **kw), rtol=1e-12, atol=1e-15)


def test_aberration_blurs_the_focus_and_costs_the_large_aperture_more() -> None:
    """Through 40 ns rms screens (4 mm correlation) the focal main lobe loses energy to the sides,
    more for the 30 mm aperture than for the 12 mm one (it spans more of the screen's
    fluctuations); median over five screens."""
    wide = replace(HIGH_PROBE, aperture_mm=30.0, tx_f_number=2.0, f_number_min=2.0, focus_mm=60.0)
    narrow = replace(LOW_PROBE, aperture_mm=12.0, tx_f_number=5.0, f_number_min=5.0, focus_mm=60.0)
    screens = [draw_screen(np.random.default_rng(seed), 40.0, correlation_mm=4.0) for seed in range(5)]
    kept = {}
    for name, probe in (("wide", wide), ("narrow", narrow)):
        clean = _main_lobe_fraction(probe, None)
        kept[name] = float(np.median([_main_lobe_fraction(probe, s) for s in screens])) / clean
    assert kept["wide"] < 0.85
    assert kept["narrow"] > kept["wide"] + 0.05


def test_pairs_through_a_body_wall_share_the_tissue_and_differ_in_image() -> None:
    x0, y0, truth0 = simulate_pair(3, 48, model="array")
    x1, y1, truth1 = simulate_pair(3, 48, model="array", aberration_ns=50.0)
    for key in truth0:
        np.testing.assert_array_equal(truth0[key], truth1[key])
    assert np.mean(np.abs(x0.astype(float) - x1)) > 2.0
    assert np.mean(np.abs(y0.astype(float) - y1)) > 2.0


def test_aberration_needs_the_array_model(capsys) -> None:
    with pytest.raises(ValueError, match="array model"):
        simulate_pair(0, 48, model="points", aberration_ns=30.0)
    with pytest.raises(SystemExit) as exc:
        simulate_main(["--out", "unused", "--aberration", "30"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--model array" in err


def test_cli_writes_an_aberrated_paired_set(tmp_path) -> None:
    out, figure = tmp_path / "abr", tmp_path / "abr.png"
    assert simulate_main(["--out", str(out), "--count", "0", "--paired", "--eval-count", "2", "--size", "32",
                          "--model", "array", "--aberration", "30", "--figure", str(figure)]) == 0
    assert cv2.imread(str(figure)).shape[2] == 3
    assert sorted(p.name for p in (out / "eval").iterdir()) == [
        "truth_000.npz", "truth_001.npz", "x_000.png", "x_001.png", "y_000.png", "y_001.png"]
    assert "aberration_ns: 30.0" in (out / "simulate.yaml").read_text()
