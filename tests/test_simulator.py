"""The two-probe simulator: physics measured on its images, data set layout, CLI, video."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from scipy import ndimage

from benchmarks.metrics import speckle_grain_size
from training.sim import (
    HIGH_PROBE,
    LOW_PROBE,
    Phantom,
    ProbeModel,
    SimulationError,
    complex_envelope,
    image_phantom,
    make_phantom,
    simulate_pair,
    sweep_frames,
    write_cine,
    write_dataset,
    write_figure,
)
from training.simulate import main

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def pairs() -> list[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
    return [simulate_pair(seed, (192, 192)) for seed in SEEDS]


def test_importing_the_simulator_and_readers_needs_no_torch() -> None:
    code = "import sys, training.sim, training.data, training.simulate; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1]).returncode == 0


def test_pair_types_and_truth(pairs) -> None:
    x, y, truth = pairs[0]
    assert x.dtype == y.dtype == np.uint8 and x.shape == y.shape == (192, 192)
    assert truth["echogenicity"].dtype == np.float32 and truth["echogenicity"].shape == (192, 192)
    for key in ("vessels", "lesions", "structures", "parenchyma"):
        assert truth[key].dtype == np.bool_ and truth[key].shape == (192, 192)
    assert not (truth["parenchyma"] & truth["structures"]).any()
    assert truth["parenchyma"].mean() > 0.2  # mostly homogeneous liver
    assert np.all(truth["structures"][truth["vessels"] | truth["lesions"]])


def test_same_seed_same_images_other_seed_other_images() -> None:
    a, b = simulate_pair(5, 64), simulate_pair(5, 64)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], simulate_pair(6, 64)[0])


def test_low_probe_speckle_is_at_least_1_6_times_coarser_laterally(pairs) -> None:
    ratios = []
    for x, y, truth in pairs:
        mask = truth["parenchyma"]
        ratios.append(speckle_grain_size(x, mask, axis=1) / speckle_grain_size(y, mask, axis=1))
    assert min(ratios) >= 1.6, ratios


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    """64 x 64 mm of parenchyma only (no structures), from 10 mm depth."""
    return make_phantom(np.random.default_rng(5), (256, 256), top_mm=10.0, structures=False)


def test_envelope_is_rayleigh_in_parenchyma(phantom: Phantom) -> None:
    """Fully developed speckle: mean / std of the envelope is sqrt(pi / (4 - pi)) = 1.913."""
    truth = phantom.truth()
    mask = truth["parenchyma"]
    rows = mask.sum(axis=1) > 20
    for probe in (LOW_PROBE, HIGH_PROBE):
        env = np.abs(complex_envelope(phantom, probe, np.random.default_rng(0)))
        env = env / np.sqrt(truth["echogenicity"])  # remove the tissue's own texture
        # remove the slow depth trend that attenuation minus TGC leaves: unit mean power per row
        pooled = np.concatenate([env[r][mask[r]] / np.sqrt(np.mean(env[r][mask[r]] ** 2)) for r in np.flatnonzero(rows)])
        assert pooled.mean() / pooled.std() == pytest.approx(np.sqrt(np.pi / (4 - np.pi)), abs=0.06)


def test_measured_speckle_width_follows_the_beam_model(phantom: Phantom) -> None:
    """Lateral FWHM of the intensity autocovariance, depth band by depth band, equals the model's
    beam FWHM (within 25 %): it grows with depth for the low probe and stays fine for the high one."""
    mask = phantom.truth()["parenchyma"]
    for probe in (LOW_PROBE, HIGH_PROBE):
        intensity = np.abs(complex_envelope(phantom, probe, np.random.default_rng(0))) ** 2
        measured, model = [], []
        for top in range(0, 256, 64):
            band = mask.copy()
            band[:top], band[top + 64 :] = False, False
            measured.append(speckle_grain_size(intensity, band, axis=1))
            model.append(float(probe.lateral_fwhm_mm(10.0 + (top + 32) * 0.25)) / 0.25)
        assert len(measured) == 4
        assert np.allclose(measured, model, rtol=0.25), (probe.name, measured, model)
        if probe is LOW_PROBE:
            assert measured[-1] > 2 * measured[0]  # from 3.7 to 10 pixels between 18 and 66 mm
    assert max(measured) < 4  # high probe: fine everywhere


def test_vessels_are_dark_in_both_images(pairs) -> None:
    checked = 0
    for x, y, truth in pairs:
        vessels = cv2.erode(truth["vessels"].astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        if vessels.sum() < 50:
            continue
        checked += 1
        for image in (x, y):
            assert image[vessels].mean() < 0.5 * image[truth["parenchyma"]].mean()
    assert checked >= 1


def test_paired_images_share_structures_unpaired_do_not(pairs) -> None:
    def smooth(im: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(im.astype(np.float32), (0, 0), 6).ravel()

    (x0, y0, _), (x1, _, _) = pairs[0], pairs[1]
    paired = np.corrcoef(smooth(x0), smooth(y0))[0, 1]
    unpaired = np.corrcoef(smooth(x1), smooth(y0))[0, 1]
    assert paired > 0.7 and paired > unpaired + 0.3, (paired, unpaired)


def test_beam_width_formula() -> None:
    lam = LOW_PROBE.wavelength_mm
    assert lam == pytest.approx(1540.0 / 3.5e3)
    # at the focus the beam is diffraction limited: lambda * z / D
    assert LOW_PROBE.lateral_fwhm_mm(60.0) == pytest.approx(lam * 60.0 / 12.0)
    depths = np.linspace(10, 120, 12)
    assert np.all(np.diff(LOW_PROBE.lateral_fwhm_mm(depths[depths >= 60])) > 0)
    deep = depths[depths >= 40]
    assert np.all(LOW_PROBE.lateral_fwhm_mm(deep) > 2.0 * HIGH_PROBE.lateral_fwhm_mm(deep))
    # pulse-echo = transmit x receive: never wider than the dynamically focused receive beam
    assert np.all(LOW_PROBE.lateral_fwhm_mm(depths) <= np.sqrt(2) * lam * depths / np.minimum(12.0, depths))
    assert HIGH_PROBE.axial_fwhm_mm < LOW_PROBE.axial_fwhm_mm


def test_jittered_probes_stay_plausible() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = LOW_PROBE.jittered(rng)
        assert 3.5 * 0.88 <= p.center_mhz <= 3.5 * 1.12 and 9.6 <= p.aperture_mm <= 14.4
        assert 0 <= p.gain <= 255 and p.dynamic_range_db >= 50
    x, y, _ = simulate_pair(1, 64, jitter=1.0)
    assert x.shape == y.shape == (64, 64)


def test_bad_probe_and_too_high_frequency_are_rejected() -> None:
    with pytest.raises(ValueError, match="aperture_mm"):
        ProbeModel("bad", center_mhz=3.0, bandwidth=0.5, aperture_mm=-1.0, focus_mm=50.0, f_number_min=1.0)
    phantom = make_phantom(np.random.default_rng(0), (32, 32), max_mhz=4.0)
    with pytest.raises(SimulationError, match="max_mhz"):
        image_phantom(phantom, ProbeModel("hf", 12.0, 0.6, 20.0, 30.0, 1.0), np.random.default_rng(0))


def test_sweep_frames_move_slowly_over_one_image() -> None:
    frames = sweep_frames(size=(64, 96), seed=3, speed_px=1.0, breathing_px=0)
    a, b = next(frames), next(frames)
    assert a.dtype == np.uint8 and a.shape == (64, 96)
    assert np.array_equal(a[:, 1:], b[:, :-1])  # one pixel to the side, same speckle
    later = [next(frames) for _ in range(400)]
    assert len({f.tobytes() for f in later}) > 50
    again = sweep_frames(size=(64, 96), seed=3, speed_px=1.0, breathing_px=0)
    assert np.array_equal(next(again), a)


def test_write_cine_reads_back(tmp_path: Path) -> None:
    assert write_cine(tmp_path / "sweep.avi", frames=12, size=(64, 64)) == 12
    capture = cv2.VideoCapture(str(tmp_path / "sweep.avi"))
    ok, frame = capture.read()
    capture.release()
    assert ok and frame.shape[:2] == (64, 64)
    with pytest.raises(SimulationError, match="suffix"):
        write_cine(tmp_path / "sweep.gif", frames=2, size=(32, 32))


def test_write_dataset_layout_and_reproducibility(tmp_path: Path) -> None:
    written = write_dataset(tmp_path / "a", count=2, size=48, seed=7, paired=True, progress=False)
    assert written == {"low": 2, "high": 2, "eval": 2}
    names = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*.*"))
    assert names == ["eval/truth_000.npz", "eval/truth_001.npz", "eval/x_000.png", "eval/x_001.png",
                     "eval/y_000.png", "eval/y_001.png", "high/high_00000.png", "high/high_00001.png",
                     "low/low_00000.png", "low/low_00001.png", "simulate.yaml"]
    with np.load(tmp_path / "a" / "eval" / "truth_000.npz") as truth:
        assert {"echogenicity", "vessels", "lesions", "structures", "parenchyma"} <= set(truth.files)
    write_dataset(tmp_path / "b", count=2, size=48, seed=7, paired=False, progress=False)
    assert not (tmp_path / "b" / "eval").exists()
    low_a = cv2.imread(str(tmp_path / "a" / "low" / "low_00001.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(low_a, cv2.imread(str(tmp_path / "b" / "low" / "low_00001.png"), cv2.IMREAD_UNCHANGED))
    assert not np.array_equal(low_a, cv2.imread(str(tmp_path / "a" / "low" / "low_00000.png")))


def test_twins_are_two_frames_of_one_phantom_seen_by_both_probes(tmp_path: Path) -> None:
    """``twins``: a/ and b/ hold the same phantoms one frame apart, x and y of each frame of the same
    scatterers; each twin's renewal lies in the range asked and is listed; the other sets are
    unchanged by asking for twins (their seeds do not move)."""
    written = write_dataset(tmp_path / "t", count=1, size=64, seed=7, twins=3, renewal=(0.05, 0.2), progress=False)
    assert written == {"low": 1, "high": 1, "eval": 0, "twins": 3}
    read = {name: [cv2.imread(str(tmp_path / "t" / "twins" / f"{name}_{i:03d}.png"), cv2.IMREAD_UNCHANGED)
                   for i in range(3)] for name in ("a/x", "a/y", "b/x", "b/y")}

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])

    for i in range(3):
        same_x, same_y = corr(read["a/x"][i], read["b/x"][i]), corr(read["a/y"][i], read["b/y"][i])
        other = corr(read["a/x"][i], read["a/x"][(i + 1) % 3])
        assert 0.5 < same_x < 0.999 and 0.5 < same_y < 0.999 and other < 0.5 * same_x, (same_x, same_y, other)
        assert corr(read["a/x"][i], read["a/y"][i]) > 0.3  # the same tissue, another probe
    manifest = yaml.safe_load((tmp_path / "t" / "simulate.yaml").read_text())
    assert len(manifest["twin_renewal"]) == 3 and all(0.05 <= e <= 0.2 for e in manifest["twin_renewal"])
    write_dataset(tmp_path / "plain", count=1, size=64, seed=7, progress=False)
    for name in ("low/low_00000.png", "high/high_00000.png"):
        assert np.array_equal(cv2.imread(str(tmp_path / "t" / name)), cv2.imread(str(tmp_path / "plain" / name)))
    assert not (tmp_path / "plain" / "twins").exists()


def test_cli_writes_data_figure_and_video(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--out", str(tmp_path / "d"), "--count", "1", "--size", "48x64", "--paired", "--jitter", "0.5",
            "--figure", str(tmp_path / "fig.png"), "--cine", str(tmp_path / "c.avi"), "--cine-frames", "5"]
    assert main(argv) == 0
    assert cv2.imread(str(tmp_path / "d" / "eval" / "x_000.png"), cv2.IMREAD_UNCHANGED).shape == (48, 64)
    assert cv2.imread(str(tmp_path / "fig.png")) is not None
    assert "cine_frames: 5" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--count", "x", "--out", "d"], "--count"),
        (["--size", "8", "--out", "d"], "--size"),
        (["--jitter", "5", "--out", "d"], "jitter"),
        ([], "nothing to do"),
        (["--cine", "sweep.gif"], "sweep.gif"),
        (["--geometry", "round", "--out", "d"], "--geometry"),
        (["--geometry", "fan", "--needle", "--out", "d"], "needle"),
        (["--twins", "2", "--model", "points", "--out", "d"], "grid model"),
        (["--twins", "2", "--renewal", "0.3", "0.1", "--out", "d"], "renewal"),
        (["--twins", "-1", "--out", "d"], "twins"),
    ],
)
def test_cli_bad_flags_exit_non_zero_with_one_line(argv: list[str], message: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


@pytest.mark.parametrize(
    ("argv", "flags"),
    [
        (["--count", "2", "--eval-count", "5"], ("--eval-count", "--paired")),
        (["--depth-mm", "50"], ("--depth-mm", "--geometry fan")),
        (["--geometry", "window", "--depth-mm", "120"], ("--depth-mm", "--geometry fan")),
        (["--geometry", "fan", "--pixel-mm", "0.1"], ("--pixel-mm", "--geometry fan")),
        (["--renewal", "0.1", "0.2"], ("--renewal", "--twins")),
        (["--twins", "0", "--renewal", "0.1", "0.2"], ("--renewal", "--twins")),
        (["--cine-frames", "10"], ("--cine-frames", "--cine")),
        (["--no-out", "--figure", "f.png", "--jitter", "1"], ("--jitter", "--out")),
        (["--no-out", "--cine", "c.avi", "--pixel-mm", "0.1"], ("--pixel-mm", "--out or --figure")),
    ],
)
def test_cli_refuses_a_flag_the_others_leave_unused(argv: list[str], flags: tuple[str, str], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = [] if "--no-out" in argv else ["--out", str(tmp_path / "d")]
    argv = [str(tmp_path / a) if a.endswith((".png", ".avi")) else a for a in argv if a != "--no-out"]
    with pytest.raises(SystemExit) as exc:
        main([*out, "--size", "16", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(flag in err[0] for flag in flags), err
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], {"eval_count": 0, "pixel_mm": 0.25, "depth_mm": 120.0, "renewal": [0.02, 0.3]}),
        (["--paired", "--eval-count", "2"], {"eval_count": 2}),
        (["--geometry", "fan", "--depth-mm", "50"], {"depth_mm": 50.0}),
        (["--pixel-mm", "0.1"], {"pixel_mm": 0.1}),
        (["--twins", "1", "--renewal", "0.1", "0.2"], {"renewal": [0.1, 0.2]}),
    ],
)
def test_cli_takes_those_flags_where_they_apply(flags: list[str], expected: dict[str, object], tmp_path: Path) -> None:
    """The flags of the test above with the flags they need reach the data set; the defaults, without them."""
    assert main(["--out", str(tmp_path / "d"), "--count", "1", "--size", "16", *flags]) == 0
    config = yaml.safe_load((tmp_path / "d" / "simulate.yaml").read_text())["config"]
    assert {k: config[k] for k in expected} == expected


def test_the_figure_is_drawn_at_the_pixel_size_given(tmp_path: Path) -> None:
    assert main(["--figure", str(tmp_path / "a.png"), "--size", "48", "--seed", "3"]) == 0
    assert main(["--figure", str(tmp_path / "b.png"), "--size", "48", "--seed", "3", "--pixel-mm", "0.1"]) == 0
    a, b = (cv2.imread(str(tmp_path / n)) for n in ("a.png", "b.png"))
    assert a.shape == b.shape and (a != b).mean() > 0.1  # another tissue window: 0.1 mm pixels see less of it


@pytest.mark.parametrize("model", ["grid", "points"])
def test_needle_is_a_bright_line_in_both_images_and_leaves_the_tissue_alone(model: str) -> None:
    x, y, truth = simulate_pair(4, (128, 128), model=model, needle=True)
    needle, tip = truth["needle"], truth["needle_tip"]
    assert needle.sum() > 100 and 0 < tip.sum() < needle.sum() and not (tip & ~needle).any()
    assert not (needle & truth["parenchyma"]).any() and (needle <= truth["structures"]).all()
    rows, cols = np.nonzero(needle)
    assert np.ptp(cols) > 40 and np.ptp(rows) > 5  # a slanted line across the window
    ring = ~ndimage.binary_dilation(needle, iterations=3) & ndimage.binary_dilation(needle, iterations=9)
    for img in (x, y):
        assert img[needle].mean() > img[ring].mean() + 5
    assert y[needle].mean() - y[ring].mean() > x[needle].mean() - x[ring].mean()  # sharper in the good probe
    _, _, plain = simulate_pair(4, (128, 128), model=model)
    assert np.array_equal(plain["echogenicity"], truth["echogenicity"]) and "needle" not in plain
    assert np.array_equal(plain["vessels"], truth["vessels"])


def test_figure_is_written(tmp_path: Path) -> None:
    path = write_figure(tmp_path / "f.png", seed=0, size=64)
    image = cv2.imread(str(path))
    assert image is not None and image.shape[1] > 2 * image.shape[0]


def test_fan_geometry_sector_and_convex() -> None:
    x, y, truth = simulate_pair(2, 128, geometry="fan", depth_mm=120.0)
    fov_x, fov_y = truth["fov_x"], truth["fov_y"]
    assert x.shape == y.shape == fov_x.shape == (128, 128)
    assert not x[~fov_x].any() and not y[~fov_y].any()  # black outside the fans
    assert (x[fov_x] > 0).mean() > 0.95 and (y[fov_y] > 0).mean() > 0.95
    assert fov_x[-1].sum() > 0.9 * 128 and fov_x[5].sum() < 16  # sector: from a point at the skin
    assert fov_y[0].sum() > 50  # convex: a curved face as wide as the array
    mask = truth["parenchyma"]
    assert not (mask & ~(fov_x & fov_y)).any()
    assert speckle_grain_size(x, mask, axis=1) > 1.6 * speckle_grain_size(y, mask, axis=1)
