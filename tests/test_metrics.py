"""Quality metrics on cases with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from benchmarks import metrics as M


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def test_ssnr_of_constant_plus_gaussian_noise(rng):
    img = 120.0 + 8.0 * rng.standard_normal((160, 160))
    assert M.ssnr(img) == pytest.approx(120.0 / 8.0, rel=0.05)
    assert M.enl(img) == pytest.approx(M.ssnr(img) ** 2)


def test_ssnr_of_rayleigh_speckle_is_sqrt_pi_over_4_minus_pi(rng):
    img = rng.rayleigh(30.0, (200, 200))
    assert M.ssnr(img, window=21) == pytest.approx(math.sqrt(math.pi / (4 - math.pi)), rel=0.05)


def test_ssnr_uses_only_windows_inside_the_mask(rng):
    img = np.full((100, 100), 10.0) + rng.standard_normal((100, 100))
    img[:, 50:] = 200.0 + 40.0 * rng.standard_normal((100, 50))  # a very different half
    left = np.zeros(img.shape, bool)
    left[:, :50] = True
    assert M.ssnr(img, left, window=9) == pytest.approx(10.0, rel=0.08)


def test_ssnr_rejects_a_region_smaller_than_the_window(rng):
    mask = np.zeros((64, 64), bool)
    mask[10:20, 10:20] = True
    with pytest.raises(M.MetricError, match="window"):
        M.ssnr(rng.random((64, 64)), mask, window=15)


def test_ssnr_leaves_out_black_windows_and_keeps_smooth_ones_infinite(rng):
    img = 120.0 + 8.0 * rng.standard_normal((100, 100))
    banded = img.copy()
    banded[:, :40] = 0.0  # a black band inside the region: 0/0 windows, left out
    assert math.isfinite(M.ssnr(banded, window=9))
    inner = np.zeros(img.shape, bool)
    inner[:, 50:] = True
    assert M.ssnr(banded, inner, window=9) == pytest.approx(M.ssnr(img, inner, window=9))
    assert M.ssnr(np.full((40, 40), 50.0)) == math.inf  # perfectly smooth: infinite, as documented
    with pytest.raises(M.MetricError, match="black"):
        M.ssnr(np.zeros((40, 40)))


def test_kl_of_identical_histograms_is_zero_and_positive_otherwise(rng):
    a = rng.normal(100, 10, (80, 80))
    assert M.region_kl(a, None, a, None) == 0.0
    assert M.region_kl(a, None, a + 12, None) > 0.1
    _, p = M.intensity_pdf(a)
    _, q = M.intensity_pdf(a + 12)
    assert M.kl_divergence(p, q) != pytest.approx(M.kl_divergence(q, p), rel=1e-3)  # not symmetric


def test_split_half_kl_is_small_for_one_texture_and_large_for_two(rng):
    one = rng.normal(120, 20, (128, 128))
    floor = M.split_half_kl(one)
    assert 0 < floor < 0.05
    assert M.split_half_kl(one, block=16) < 0.05
    two = one.copy()  # the checkerboard's odd squares 30 grey levels brighter
    r, c = np.indices(two.shape)
    two[(r // 32 + c // 32) % 2 == 1] += 30
    assert M.split_half_kl(two) > 20 * floor
    small = np.zeros(one.shape, bool)
    small[:8, :8] = True  # inside one square: no second half
    with pytest.raises(M.MetricError, match="both halves"):
        M.split_half_kl(one, small)


def test_shifted_kl_finds_a_brightness_offset(rng):
    y = rng.normal(120, 15, (96, 96)).round()
    darker = y - 9  # the same grey levels, 9 darker
    kl, shift = M.shifted_kl(y, None, darker, None)
    assert shift == 9 and kl == pytest.approx(0.0, abs=1e-12)
    assert M.region_kl(y, None, darker, None) > 0.1
    other = rng.normal(120, 30, (96, 96))  # a wider PDF: no shift makes it match
    wide, s = M.shifted_kl(y, None, other, None)
    assert wide > 0.1 and wide <= M.region_kl(y, None, other, None) and abs(s) <= 3
    kl4, s4 = M.shifted_kl(y, None, darker, None, max_shift=4)  # the best it may do: +4
    assert s4 == 4 and kl4 == pytest.approx(M.region_kl(y, None, darker + 4, None), rel=1e-9)
    with pytest.raises(M.MetricError, match="max_shift"):
        M.shifted_kl(y, None, darker, None, max_shift=-1)


def test_kl_matches_closed_form_for_two_bins():
    p, q = np.array([0.5, 0.5]), np.array([0.25, 0.75])
    assert M.kl_divergence(p, q) == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3))


def test_intensity_pdf_is_smoothed_and_sums_to_one():
    img = np.full((10, 10), 42, dtype=np.uint8)
    centres, p = M.intensity_pdf(img, bins=64)
    assert p.sum() == pytest.approx(1.0)
    assert (p > 0).all()
    assert centres[np.argmax(p)] == pytest.approx(42.0, abs=2.0)
    assert p.max() == pytest.approx(101 / 164)  # (100 + 1) / (100 + 64)


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_grain_size_matches_gaussian_blur(rng, sigma):
    # white noise blurred by a Gaussian of std s has a Gaussian autocovariance of std s*sqrt(2)
    img = ndimage.gaussian_filter(rng.standard_normal((256, 256)), sigma)
    expected = 2 * math.sqrt(2 * math.log(2)) * sigma * math.sqrt(2)
    assert M.speckle_grain_size(img, None, axis=0) == pytest.approx(expected, rel=0.08)
    assert M.speckle_grain_size(img, None, axis=1) == pytest.approx(expected, rel=0.08)


def test_grain_size_grows_with_blur_and_separates_axes(rng):
    noise = rng.standard_normal((256, 256))
    mask = np.zeros(noise.shape, bool)
    mask[40:220, 30:200] = True
    img = ndimage.gaussian_filter(noise, (1.0, 3.0))
    axial, lateral = M.speckle_grain_size(img, mask, 0), M.speckle_grain_size(img, mask, 1)
    assert lateral > 2.5 * axial
    wider = ndimage.gaussian_filter(noise, (1.0, 4.5))
    assert M.speckle_grain_size(wider, mask, 1) > 1.3 * lateral


def test_grain_size_of_a_flat_region_is_an_error():
    with pytest.raises(M.MetricError, match="variance"):
        M.speckle_grain_size(np.ones((32, 32)))


def test_cnr_of_known_means_and_stds(rng):
    a = np.zeros((200, 200), bool)
    a[:100] = True
    img = np.where(a, rng.normal(50, 6, a.shape), rng.normal(90, 8, a.shape))
    assert M.cnr(img, a, ~a) == pytest.approx(40 / math.sqrt(36 + 64), rel=0.05)
    assert M.cnr(img, a, ~a, signed=True) == pytest.approx(-M.cnr(img, a, ~a))  # region a is the darker
    assert M.cnr(img, ~a, a, signed=True) == pytest.approx(M.cnr(img, a, ~a))


def test_lesion_contrast_is_signed_by_the_true_polarity(rng):
    """A bright lesion (true echogenicity x3) shown bright scores its CNR, shown dark the negative;
    a dark one (x 1/3) shown dark scores positive; a mild one (x 1.2) and one under 20 pixels are
    left out (NaN); each kind is averaged over its lesions."""
    yy, xx = np.mgrid[0:120, 0:160]
    bright = np.hypot(yy - 40, xx - 40) < 12
    dark = np.hypot(yy - 80, xx - 110) < 12
    mild = np.hypot(yy - 90, xx - 30) < 10
    tiny = np.hypot(yy - 20, xx - 130) < 2
    echo = np.ones((120, 160)) * np.where(bright, 3.0, 1.0) * np.where(dark, 1 / 3, 1.0) * np.where(mild, 1.2, 1.0)
    tissue = ~(bright | dark | mild | tiny)
    image = 100.0 + 10.0 * rng.standard_normal(echo.shape)
    shown = image + 30.0 * bright - 30.0 * dark + 30.0 * tiny
    hyper, hypo = M.lesion_contrast(shown, echo, bright | dark | mild | tiny, tissue)
    ring_b, ring_d = M.ring_mask(bright, within=tissue), M.ring_mask(dark, within=tissue)
    assert hyper == pytest.approx(M.cnr(shown, bright, ring_b)) and hyper > 2
    assert hypo == pytest.approx(M.cnr(shown, dark, ring_d)) and hypo > 2
    flipped = image - 30.0 * bright + 30.0 * dark  # both drawn the wrong way round
    assert all(v < -2 for v in M.lesion_contrast(flipped, echo, bright | dark, tissue))
    assert all(math.isnan(v) for v in M.lesion_contrast(shown, echo, mild | tiny, tissue))
    second = np.hypot(yy - 85, xx - 60) < 12  # another bright lesion, shown half as bright
    echo2, tissue2 = echo * np.where(second, 3.0, 1.0), tissue & ~second
    shown2 = shown + 15.0 * second
    both = M.lesion_contrast(shown2, echo2, bright | second, tissue2)[0]
    each = [M.cnr(shown2, L, M.ring_mask(L, within=tissue2)) for L in (bright, second)]
    assert both == pytest.approx(np.mean(each)) and each[1] < each[0]


def test_gcnr_is_zero_for_identical_and_one_for_disjoint(rng):
    a = np.zeros((100, 100), bool)
    a[:, ::2] = True
    img = rng.normal(100, 10, a.shape)
    same = np.where(a, img, img[:, ::-1])  # the same values on both sides
    assert M.gcnr(same, a, ~a) < 0.15
    disjoint = np.where(a, rng.uniform(0, 50, a.shape), rng.uniform(60, 100, a.shape))
    assert M.gcnr(disjoint, a, ~a) == 1.0


def test_ring_mask_surrounds_without_touching():
    m = np.zeros((40, 40), bool)
    m[15:25, 15:25] = True
    ring = M.ring_mask(m, gap=2, width=3)
    assert not (ring & ndimage.binary_dilation(m, iterations=2)).any()
    assert ring[15:25, 10].all() and not ring[15:25, 9].any()


def test_edge_preservation_is_one_for_identity_and_drops_with_blur(rng):
    ref = np.zeros((64, 64))
    ref[:, 32:] = 100.0
    ref += rng.normal(0, 1, ref.shape)
    assert M.edge_preservation(ref, ref) == pytest.approx(1.0)
    assert M.edge_preservation(ref, ndimage.gaussian_filter(ref, 3)) < 0.5
    # the Laplacian of Gaussian ignores fine noise that the 3x3 Laplacian sees
    noisy = ref + rng.normal(0, 10, ref.shape)
    assert M.edge_preservation(ref, noisy, sigma=2.0) > M.edge_preservation(ref, noisy) + 0.3


def test_psnr_ssim_and_log_correlation(rng):
    ref = rng.uniform(20, 200, (64, 64))
    assert M.psnr(ref, ref + 1.0) == pytest.approx(20 * math.log10(255.0), rel=1e-6)
    assert M.ssim(ref, ref) == pytest.approx(1.0)
    ech = np.exp(rng.normal(0, 1, (64, 64)))
    assert M.log_correlation(np.log(ech) * 20 + 100, ech) > 0.95
    assert abs(M.log_correlation(rng.uniform(0, 255, ech.shape), ech)) < 0.1


def test_shape_mismatch_names_the_mask(rng):
    with pytest.raises(M.MetricError, match="mask_b"):
        M.cnr(rng.random((8, 8)), np.ones((8, 8), bool), np.ones((4, 4), bool))


def test_count_below_counts_per_image_losses_where_both_are_finite() -> None:
    assert M.count_below([0.4, 0.7, math.nan, 0.5], [0.5, 0.6, 0.7, 0.5]) == (1, 3)  # equal is not below
    assert M.count_below([], []) == (0, 0)
    with pytest.raises(M.MetricError, match="3 values against 2"):
        M.count_below([1.0, 2.0, 3.0], [1.0, 2.0])
