"""Every registered baseline despeckles a homogeneous speckle patch and keeps the dtype contract."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from benchmarks.baselines import BASELINES, PAPER_METHODS, BaselineError, get_baseline
from benchmarks.baselines.diffusion import diffuse


def speckle_patch(size: int = 64, seed: int = 0, blur: tuple[float, float] = (1.0, 2.0)) -> np.ndarray:
    """Log-compressed fully developed speckle of uniform tissue, as a B-mode scanner displays it.

    Envelope ``|h * (n1 + i n2)|`` (white complex Gaussian noise blurred by a Gaussian PSF),
    log-compressed with 60 dB over 255 grey levels and its median put at grey level 120.
    """
    rng = np.random.default_rng(seed)
    iq = ndimage.gaussian_filter(rng.standard_normal((size, size)), blur) + 1j * ndimage.gaussian_filter(
        rng.standard_normal((size, size)), blur
    )
    env = np.abs(iq)
    grey = 120.0 + 255.0 / 60.0 * 20.0 * np.log10(env / np.median(env))
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def patch() -> np.ndarray:
    return speckle_patch()


@pytest.mark.parametrize("name", list(BASELINES))
def test_baseline_reduces_speckle_and_keeps_the_mean(name, patch):
    out = BASELINES[name](patch)
    assert out.shape == patch.shape and out.dtype == np.uint8
    inner = (slice(4, -4), slice(4, -4))  # leave out the border the filters extrapolate
    assert out[inner].std() < 0.9 * patch[inner].std()
    assert abs(float(out.mean()) - float(patch.mean())) < 6.0


@pytest.mark.parametrize("name", list(BASELINES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_baseline_keeps_float_dtype_and_scale(name, dtype, patch):
    img = patch[:40, :48].astype(dtype) / 255.0
    out = BASELINES[name](img)
    assert out.shape == img.shape and out.dtype == dtype
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert abs(float(out.mean()) - float(img.mean())) < 6.0 / 255.0


def test_registry_lists_the_paper_methods_with_params_and_honesty_flags():
    assert set(PAPER_METHODS) <= set(BASELINES)
    for b in BASELINES.values():
        assert b.params, f"{b.name} has no default parameters"
        assert b.display.endswith("*") == b.approximation
        if b.approximation:
            assert b.note and "APPROXIMATION" in (b.func.__doc__ or "")
    assert get_baseline("SRAD") is BASELINES["srad"]


def test_parameter_overrides_change_the_result_and_typos_are_errors(patch):
    srad = BASELINES["srad"]
    weak = srad(patch, steps=2)
    strong = srad(patch, steps=60)
    assert strong.std() < weak.std() < patch.std()
    with pytest.raises(BaselineError, match="stepz"):
        srad(patch, stepz=3)
    with pytest.raises(BaselineError, match="unknown baseline 'nope'"):
        get_baseline("nope")


def test_bad_images_are_rejected_with_the_method_name():
    with pytest.raises(BaselineError, match="dpad.*shape"):
        BASELINES["dpad"](np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(BaselineError, match="median.*dtype"):
        BASELINES["median"](np.zeros((8, 8), np.int32))


def test_diffusion_solver_conserves_the_mean_and_keeps_a_step_edge_with_zero_coefficient():
    rng = np.random.default_rng(3)
    u = rng.uniform(0, 255, (32, 32))
    smoothed = diffuse(u, lambda v, _: np.ones_like(v), steps=50, dt=1.0)
    assert smoothed.mean() == pytest.approx(u.mean(), rel=1e-12)
    assert smoothed.std() < 0.2 * u.std()
    assert np.array_equal(diffuse(u, lambda v, _: np.zeros_like(v), steps=5, dt=1.0), u)
    with pytest.raises(BaselineError, match="dt"):
        diffuse(u, lambda v, _: np.ones_like(v), steps=1, dt=2.0)


@pytest.mark.parametrize("name", ["srad", "rtad", "epprsrad", "eagf", "obnlm"])
def test_edge_preserving_methods_keep_a_step_edge(name):
    rng = np.random.default_rng(5)
    img = np.where(np.arange(64)[None, :] < 32, 60.0, 180.0) + rng.normal(0, 5, (64, 64))
    img = np.clip(img, 0, 255).astype(np.uint8)
    out = BASELINES[name](img).astype(float)
    assert (out[:, 32] - out[:, 31]).mean() > 0.9 * 120.0  # the jump across the edge survives
    assert out[:, :28].std() < 0.6 * img[:, :28].std()  # while the flat side is smoothed
