"""MS-SSIM (Zhao et al., as in the paper's eqs. 4-9), the GAN losses, the statistics losses
and the history buffer."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is in the [train] extra")
import torch.nn.functional as F  # noqa: E402

from training.losses import (  # noqa: E402
    ZHAO_SIGMAS,
    bce_fake_loss,
    bce_real_loss,
    gaussian_kernel1d,
    histogram_loss,
    l1_loss,
    ms_ssim,
    ms_ssim_loss,
    spectrum_loss,
)
from training.pool import ImagePool  # noqa: E402


def _speckle(seed: int, shape: tuple[int, int] = (48, 48)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g)).abs()
    return (z / (z.max() + 1e-6)).view(1, 1, *shape)


def test_identical_images_give_zero_loss() -> None:
    a = _speckle(0)
    assert float(ms_ssim_loss(a, a)) == pytest.approx(0.0, abs=1e-6)


def test_symmetric() -> None:
    a, b = _speckle(1), _speckle(2)
    assert float(ms_ssim_loss(a, b)) == pytest.approx(float(ms_ssim_loss(b, a)), rel=1e-6)
    assert float(ms_ssim_loss(a, b)) > 0.1


def test_blurred_image_scores_worse_the_more_it_is_blurred() -> None:
    a = _speckle(3)
    k = gaussian_kernel1d(1.5)
    r = k.numel() // 2
    blurred = F.conv2d(F.pad(a, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    blurred = F.conv2d(F.pad(blurred, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    more = F.avg_pool2d(F.pad(blurred, (3, 3, 3, 3), mode="replicate"), 7, stride=1)
    l_blur, l_more = float(ms_ssim_loss(a, blurred)), float(ms_ssim_loss(a, more))
    assert 0.0 < l_blur < l_more


@pytest.mark.parametrize(("lo", "hi"), [(0.2, 0.6), (0.5, 0.9), (0.0, 1.0)])
def test_constant_images_match_hand_computed_value(lo: float, hi: float) -> None:
    """Constants: zero variance and covariance, so every cs_j = (0 + C2) / (0 + C2) = 1 and
    the loss is 1 - l = 1 - (2ab + C1) / (a^2 + b^2 + C1)."""
    a = torch.full((2, 1, 20, 17), lo)
    b = torch.full((2, 1, 20, 17), hi)
    c1 = 0.01
    expected = 1.0 - (2 * lo * hi + c1) / (lo * lo + hi * hi + c1)
    assert float(ms_ssim_loss(a, b)) == pytest.approx(expected, abs=1e-4)  # float32 moments


def test_product_over_scales_of_a_step_edge_matches_direct_formula() -> None:
    """One sigma: the map equals SSIM computed with explicit local moments."""
    a = _speckle(4, (24, 24))
    b = (a * 0.7 + 0.1).clamp(0, 1)
    sigma = 2.0
    k = gaussian_kernel1d(sigma, dtype=torch.float64)
    r = k.numel() // 2
    k2 = (k[:, None] * k[None, :]).view(1, 1, 2 * r + 1, 2 * r + 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(t.double(), (r, r, r, r), mode="replicate"), k2)

    mu_a, mu_b = blur(a), blur(b)
    va, vb, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    direct = (2 * mu_a * mu_b + 0.01) / (mu_a**2 + mu_b**2 + 0.01) * (2 * cov + 0.01) / (va + vb + 0.01)
    got = ms_ssim(a, b, sigmas=(sigma,))
    assert torch.allclose(got.double(), direct, atol=1e-5)


def test_gradients_finite_and_nonzero() -> None:
    a = _speckle(5).requires_grad_(True)
    b = _speckle(6)
    loss = ms_ssim_loss(a, b) + l1_loss(a, b) + histogram_loss(a, b) + spectrum_loss(a, b)
    loss.backward()
    assert torch.isfinite(a.grad).all() and float(a.grad.abs().sum()) > 0


def test_gaussian_kernel_is_normalised_and_covers_three_sigma() -> None:
    for s in ZHAO_SIGMAS:
        k = gaussian_kernel1d(s)
        assert float(k.sum()) == pytest.approx(1.0, abs=1e-6)
        assert k.numel() == 2 * max(1, math.ceil(3 * s)) + 1
    with pytest.raises(ValueError, match="sigma"):
        gaussian_kernel1d(0.0)


def test_bce_losses_match_minus_log() -> None:
    logits = torch.tensor([[0.3], [-1.2]])
    p = torch.sigmoid(logits)
    assert float(bce_real_loss(logits)) == pytest.approx(float(-torch.log(p).mean()), rel=1e-6)
    assert float(bce_fake_loss(logits)) == pytest.approx(float(-torch.log(1 - p).mean()), rel=1e-6)


def test_histogram_loss_ignores_positions_but_not_values() -> None:
    a = _speckle(7)
    shuffled = a.flatten()[torch.randperm(a.numel(), generator=torch.Generator().manual_seed(0))].view_as(a)
    assert float(histogram_loss(a, shuffled)) == pytest.approx(0.0, abs=1e-7)
    assert float(histogram_loss(a, a * 0.5)) == pytest.approx(float((a * 0.5).mean()), rel=1e-5)


def test_spectrum_loss_sees_grain_size() -> None:
    fine, coarse = _speckle(8), _speckle(9)
    k = torch.ones(1, 1, 1, 5) / 5
    coarse = F.conv2d(F.pad(coarse, (2, 2, 0, 0), mode="replicate"), k)
    same_grain = _speckle(10)
    assert float(spectrum_loss(fine, coarse)) > 4 * float(spectrum_loss(fine, same_grain))
    assert float(spectrum_loss(fine, fine)) == 0.0


def test_ms_ssim_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="one shape"):
        ms_ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9))


def test_pool_fills_then_replaces_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    pool = ImagePool(4)
    assert pool.sample(2, rng) is None
    pool.push(torch.zeros(3, 1, 5, 5), rng)
    assert len(pool) == 3 and pool.sample(5, rng).shape == (3, 1, 5, 5)
    pool.push(torch.ones(3, 1, 5, 5), rng)
    assert len(pool) == 4
    stored = pool.sample(4, rng)
    assert float(stored.sum()) >= 25 * 1  # the first one appended after 3 zeros is a one
    ones = int(stored.flatten(1).amax(1).sum())
    assert 1 <= ones <= 4
    clone = ImagePool(1)
    clone.load_state_dict(pool.state_dict())
    assert clone.capacity == 4 and len(clone) == 4
    assert torch.equal(torch.sort(clone.state_dict()["images"].flatten(1).sum(1)).values,
                       torch.sort(pool.state_dict()["images"].flatten(1).sum(1)).values)
    with pytest.raises(ValueError, match="capacity"):
        ImagePool(0)


def test_hann_spectrum_loss_ignores_a_bright_crop_edge_but_sees_grain() -> None:
    a = _speckle(11)
    edged = a.clone()
    edged[..., :, :2] += 0.3  # two bright columns at the left edge: a wrap-around jump for the FFT
    plain = float(spectrum_loss(a, edged))
    hann = float(spectrum_loss(a, edged, window="hann"))
    assert hann < 0.2 * plain, (hann, plain)
    fine, coarse = _speckle(8), _speckle(9)
    coarse = F.conv2d(F.pad(coarse, (2, 2, 0, 0), mode="replicate"), torch.ones(1, 1, 1, 5) / 5)
    assert float(spectrum_loss(fine, coarse, window="hann")) > 4 * float(spectrum_loss(fine, _speckle(10), window="hann"))
    with pytest.raises(ValueError, match="spectrum window 'kaiser'"):
        spectrum_loss(a, a, window="kaiser")
