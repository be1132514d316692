"""Training losses: the paper's structural loss (L1 + MS-SSIM), the GAN losses, and two
statistics losses used by the optional supervised phase.

All image tensors are ``(N, 1, H, W)`` float tensors with values in [0, 1].

MS-SSIM follows Zhao, Gallo, Frosio and Kautz, "Loss functions for image restoration with
neural networks", IEEE TCI 3(1), 2017, as written in Mishra et al., eqs. (4)-(9): every scale
works at full resolution (no downsampling); scale ``j`` uses a Gaussian window of standard
deviation ``sigma_j``::

    mu_a      = G_j * a                        (local mean)
    var_a     = G_j * a^2 - mu_a^2             (local variance)
    cov_ab    = G_j * (a b) - mu_a mu_b        (local covariance)
    cs_j      = (2 cov_ab + C2) / (var_a + var_b + C2)
    l_M       = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1)     at the largest sigma
    L_MS-SSIM = 1 - mean over pixels and batch of  l_M * prod_j cs_j

with ``C1 = C2 = 0.01`` (the paper's constants, images in [0, 1]).  Borders are padded by
replicating the edge pixel, so a constant image has constant local statistics everywhere
(zero variance, ``cs = C2 / C2 = 1``) and any image size works with any sigma.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from training.config import SPECTRUM_WINDOWS

__all__ = [
    "ZHAO_SIGMAS",
    "gaussian_kernel1d",
    "ms_ssim",
    "ms_ssim_loss",
    "l1_loss",
    "bce_real_loss",
    "bce_fake_loss",
    "histogram_loss",
    "spectrum_loss",
]

#: Standard deviations (pixels) of the Gaussian windows used by Zhao et al.
ZHAO_SIGMAS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)


def gaussian_kernel1d(sigma: float, truncate: float = 3.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian ``g[k] ~ exp(-k^2 / (2 sigma^2))`` for ``|k| <= ceil(truncate * sigma)``."""
    if sigma <= 0:
        raise ValueError(f"Gaussian sigma must be positive, got {sigma}")
    radius = max(1, int(torch.tensor(truncate * sigma).ceil().item()))
    k = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(k**2) / (2.0 * sigma**2))
    return (g / g.sum()).to(dtype)


def _blur(stack: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filtering of every channel of ``stack`` (N, C, H, W), edge-replicated."""
    c = stack.shape[1]
    r = kernel.numel() // 2
    kx = kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    ky = kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    out = F.conv2d(F.pad(stack, (r, r, 0, 0), mode="replicate"), kx, groups=c)
    return F.conv2d(F.pad(out, (0, 0, r, r), mode="replicate"), ky, groups=c)


def ms_ssim(
    a: torch.Tensor,
    b: torch.Tensor,
    sigmas: Sequence[float] = ZHAO_SIGMAS,
    c1: float = 0.01,
    c2: float = 0.01,
) -> torch.Tensor:
    """Per-pixel MS-SSIM map ``l_M * prod_j cs_j`` of shape (N, 1, H, W) (see module docstring).

    Computed in float32 whatever the input dtype (it is used under autocast).
    """
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"ms_ssim needs two (N, C, H, W) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if not sigmas:
        raise ValueError("ms_ssim needs at least one sigma")
    # Moments of a - 1/2 and b - 1/2: variances and covariance do not change, and the
    # float32 cancellation in E[a^2] - mu^2 is four times smaller.
    a, b = a.float() - 0.5, b.float() - 0.5
    stack = torch.cat([a, b, a * a, b * b, a * b], dim=1)
    n_ch = a.shape[1]
    cs_prod = torch.ones_like(a)
    lum = torch.ones_like(a)
    for sigma in sigmas:
        moments = _blur(stack, gaussian_kernel1d(sigma).to(a.device))
        mu_a, mu_b, ea2, eb2, eab = moments.split(n_ch, dim=1)
        var_a = ea2 - mu_a * mu_a
        var_b = eb2 - mu_b * mu_b
        cov = eab - mu_a * mu_b
        cs_prod = cs_prod * (2.0 * cov + c2) / (var_a + var_b + c2)
        if sigma == max(sigmas):
            mu_a, mu_b = mu_a + 0.5, mu_b + 0.5
            lum = (2.0 * mu_a * mu_b + c1) / (mu_a * mu_a + mu_b * mu_b + c1)
    return lum * cs_prod


def ms_ssim_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    sigmas: Sequence[float] = ZHAO_SIGMAS,
    c1: float = 0.01,
    c2: float = 0.01,
) -> torch.Tensor:
    """``1 - mean(ms_ssim(a, b))``: 0 for identical images, symmetric in ``a`` and ``b``."""
    return 1.0 - ms_ssim(a, b, sigmas, c1, c2).mean()


def l1_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``E|a - b|``, eq. (1) of the paper, in float32."""
    return (a.float() - b.float()).abs().mean()


def bce_real_loss(logits: torch.Tensor) -> torch.Tensor:
    """``E[-log D]`` with ``D = sigmoid(logits)``: the loss for samples labelled real (1).

    Used for high-quality images in the D loss (eq. 2) and for ``G(x)`` in the adversarial
    term of the G loss (eq. 3, ``-log D(G(x))``).
    """
    return F.binary_cross_entropy_with_logits(logits.float(), torch.ones_like(logits, dtype=torch.float32))


def bce_fake_loss(logits: torch.Tensor) -> torch.Tensor:
    """``E[-log(1 - D)]``: the loss for samples labelled fake (0), the second term of eq. (2)."""
    return F.binary_cross_entropy_with_logits(logits.float(), torch.zeros_like(logits, dtype=torch.float32))


def _hann(n: int, device: torch.device) -> torch.Tensor:
    """Symmetric Hann window ``0.5 - 0.5 cos(2 pi k / (n - 1))``, ``k = 0 .. n-1`` (zero at both ends)."""
    return torch.hann_window(n, periodic=False, device=device)


def histogram_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1-D Wasserstein-1 distance between the intensity distributions of ``a`` and ``b``, per image.

    ``mean_n mean_k |sort(a_n)_k - sort(b_n)_k|``: zero iff every image of ``a`` has the same
    histogram as its partner in ``b`` (pixel positions do not matter).  Differentiable
    through ``torch.sort``.
    """
    sa = a.float().flatten(1).sort(dim=1).values
    sb = b.float().flatten(1).sort(dim=1).values
    return (sa - sb).abs().mean()


def spectrum_loss(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6, window: str = "none") -> torch.Tensor:
    """L1 distance between the smoothed 2-D log power spectra of ``a`` and ``b``.

    ``P(u, v) = box3x3( mean_n |FFT2(t_n (a_n - mean(a_n)))(u, v)|^2 / (H W) )`` (the 3x3 running
    mean over neighbouring frequencies, wrapped around, steadies the periodogram of a small
    batch); loss ``= mean_{u,v} |log(P_a + eps) - log(P_b + eps)|``.  A power spectrum is the
    Fourier transform of the autocorrelation, so matching it matches the speckle grain in
    every direction (axial, lateral and oblique: no oriented texture can hide) without asking
    pixels to coincide.

    ``window`` is the taper ``t``: ``"none"`` (``t = 1``: the FFT wraps the crop around, so the
    jump between opposite edges leaks power along both frequency axes, and the edges of ``G(x)``
    can be bent to match it) or ``"hann"`` (separable 2-D Hann taper divided by its RMS, so a
    white image keeps its power; the crop's edges weigh nothing, and the leakage is gone).
    """
    if window not in SPECTRUM_WINDOWS:
        raise ValueError(f"spectrum window {window!r} is not one of {', '.join(SPECTRUM_WINDOWS)}")
    taper = None
    if window == "hann":  # one taper for both sides (same crop size)
        taper = _hann(a.shape[-2], a.device)[:, None] * _hann(a.shape[-1], a.device)[None, :]
        taper = taper / taper.square().mean().sqrt()

    def log_power(t: torch.Tensor) -> torch.Tensor:
        t = t.float()
        t = t - t.mean(dim=(-2, -1), keepdim=True)
        if taper is not None:
            t = t * taper
        spec = torch.fft.fft2(t, norm="ortho")
        power = (spec.real**2 + spec.imag**2).mean(dim=0, keepdim=True)
        power = F.avg_pool2d(F.pad(power, (1, 1, 1, 1), mode="circular"), 3, stride=1)
        return torch.log(power + eps)

    return (log_power(a) - log_power(b)).abs().mean()
