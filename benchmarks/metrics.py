"""Despeckling quality metrics: pure functions on numpy arrays (numpy/scipy only).

Images are displayed grey levels (``uint8`` 0..255, or floats on the same scale); masks are
boolean arrays of the image's shape that mark the region a metric looks at.

From the paper (Mishra et al., Table I):

* :func:`ssnr`: speckle signal-to-noise ratio ``mean / std`` of a homogeneous region.
* :func:`enl`: equivalent number of looks, ``SSNR^2``.
* :func:`intensity_pdf` and :func:`kl_divergence`: the grey-level PDFs of Fig. 4 and the
  Kullback-Leibler divergences ``KL(x, x_hat)`` and ``KL(y, x_hat)``.

Beyond the paper:

* :func:`speckle_grain_size`: FWHM of the autocovariance, axial (rows) or lateral (columns).
* :func:`cnr` and :func:`gcnr`: (generalised) contrast-to-noise ratio of a region against
  its surroundings (:func:`ring_mask`).
* :func:`edge_preservation`: Sattar et al.'s beta, the correlation of Laplacians.
* :func:`psnr`, :func:`ssim` (scikit-image, imported on call) and :func:`log_correlation`,
  for paired data with a reference image and the true echogenicity.
* :func:`count_below`: over a set of images, how many score below a reference per image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import fft, ndimage

__all__ = [
    "DEFAULT_BINS",
    "DEFAULT_SSNR_WINDOW",
    "MetricError",
    "ssnr",
    "enl",
    "intensity_pdf",
    "kl_divergence",
    "region_kl",
    "split_half_kl",
    "shifted_kl",
    "autocovariance",
    "speckle_grain_size",
    "ring_mask",
    "cnr",
    "gcnr",
    "edge_preservation",
    "psnr",
    "ssim",
    "log_correlation",
    "count_below",
]

#: histogram bins over the 8-bit grey range [0, 256): 64 bins of 4 grey levels each.
DEFAULT_BINS = 64
#: side of the square windows :func:`ssnr` averages over, in pixels.
DEFAULT_SSNR_WINDOW = 15


class MetricError(ValueError):
    """A metric cannot be computed on these inputs (empty region, shape mismatch, ...)."""


def _region(image: np.ndarray, mask: np.ndarray | None, name: str = "mask") -> tuple[np.ndarray, np.ndarray]:
    """``(image as float64, mask as bool)`` after checking shapes; ``None`` means the whole image."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise MetricError(f"image must be 2-D (H, W), got shape {img.shape}")
    if mask is None:
        return img, np.ones(img.shape, dtype=bool)
    m = np.asarray(mask, dtype=bool)
    if m.shape != img.shape:
        raise MetricError(f"{name} shape {m.shape} differs from image shape {img.shape}")
    if not m.any():
        raise MetricError(f"{name} is empty")
    return img, m


def ssnr(image: np.ndarray, mask: np.ndarray | None = None, window: int = DEFAULT_SSNR_WINDOW) -> float:
    """Speckle signal-to-noise ratio of a region.

    ``SSNR = (1/K) sum_k mu_k / sigma_k`` over the K square ``window x window`` windows (``window`` odd)
    (every position, stride 1) that lie fully inside ``mask``; ``mu_k`` and ``sigma_k`` are
    the mean and population standard deviation of the grey levels in window k.  Fully
    developed speckle on a linear envelope gives ``sqrt(pi / (4 - pi)) = 1.91``; smoothing
    raises it.  A window with ``sigma_k = 0`` and ``mu_k > 0`` (perfectly smooth) makes the result
    ``inf``; an all-black window (``mu_k = sigma_k = 0``: 0/0, e.g. a sector's outside or a black
    band inside the region) is left out.

    Raises:
        MetricError: no window of that size fits inside the mask, or every one is black.
    """
    img, m = _region(image, mask)
    if window < 3 or window % 2 == 0:
        raise MetricError(f"ssnr window must be an odd number of pixels >= 3, got {window}")
    inside = ndimage.binary_erosion(m, structure=np.ones((window, window), dtype=bool), border_value=0)
    if not inside.any():
        raise MetricError(f"no {window}x{window} window fits inside the region ({int(m.sum())} pixels)")
    mean = ndimage.uniform_filter(img, window, mode="constant")
    mean_sq = ndimage.uniform_filter(img * img, window, mode="constant")
    mu = mean[inside]
    sigma = np.sqrt(np.maximum(mean_sq[inside] - mu * mu, 0.0))
    flat = sigma <= 1e-12 * np.maximum(np.abs(mu), 1.0)
    black = flat & (np.abs(mu) <= 1e-12)
    if black.all():
        raise MetricError(f"every {window}x{window} window inside the region is black (0/0)")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(flat, np.inf, mu / sigma)[~black]
    return float(np.mean(ratio))


def enl(image: np.ndarray, mask: np.ndarray | None = None, window: int = DEFAULT_SSNR_WINDOW) -> float:
    """Equivalent number of looks, ``ENL = SSNR^2`` (see :func:`ssnr`)."""
    return ssnr(image, mask, window) ** 2


def intensity_pdf(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    bins: int = DEFAULT_BINS,
    value_range: tuple[float, float] = (0.0, 256.0),
    alpha: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Grey-level PDF of a region as probability mass per bin, with additive smoothing.

    ``p_k = (n_k + alpha) / (N + alpha * B)`` for the ``B = bins`` equal bins over
    ``value_range`` (default 64 bins of 4 grey levels over [0, 256)), ``n_k`` the pixel count
    of bin k and ``N`` the region's pixel count.  ``alpha = 1`` is Laplace smoothing; it keeps
    every ``p_k > 0`` so that :func:`kl_divergence` stays finite.  Values outside the range
    are clipped into the end bins.  Divide by the bin width for a density per grey level.

    Returns:
        ``(centres, p)``: bin centres in grey levels and the probabilities (sum 1).
    """
    img, m = _region(image, mask)
    if bins < 2:
        raise MetricError(f"bins must be >= 2, got {bins}")
    if alpha < 0:
        raise MetricError(f"alpha must be >= 0, got {alpha}")
    lo, hi = value_range
    edges = np.linspace(lo, hi, bins + 1)
    values = np.clip(img[m], lo, np.nextafter(hi, lo))
    counts, _ = np.histogram(values, bins=edges)
    p = (counts + alpha) / (counts.sum() + alpha * bins)
    return 0.5 * (edges[:-1] + edges[1:]), p


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Kullback-Leibler divergence ``KL(p || q) = sum_k p_k ln(p_k / q_k)`` in nats.

    ``p`` and ``q`` are probability vectors over the same bins (normalised here).  Not
    symmetric.  The paper's ``KL(x, x_hat)`` is ``kl_divergence(p_x, p_x_hat)``: the
    reference distribution first.  Terms with ``p_k = 0`` contribute 0; a ``q_k = 0`` where
    ``p_k > 0`` gives ``inf`` (use smoothed PDFs from :func:`intensity_pdf` to avoid it).
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise MetricError(f"PDFs have different bins: {p.shape} vs {q.shape}")
    if (p < 0).any() or (q < 0).any() or p.sum() <= 0 or q.sum() <= 0:
        raise MetricError("PDFs must be non-negative with a positive sum")
    p = p / p.sum()
    q = q / q.sum()
    support = p > 0
    if (q[support] == 0).any():
        return float("inf")
    return float(np.sum(p[support] * np.log(p[support] / q[support])))


def region_kl(
    reference: np.ndarray,
    reference_mask: np.ndarray | None,
    output: np.ndarray,
    output_mask: np.ndarray | None,
    bins: int = DEFAULT_BINS,
) -> float:
    """``KL(p_reference || p_output)`` between the smoothed grey-level PDFs of two regions."""
    _, p = intensity_pdf(reference, reference_mask, bins)
    _, q = intensity_pdf(output, output_mask, bins)
    return kl_divergence(p, q)


def split_half_kl(image: np.ndarray, mask: np.ndarray | None = None, block: int = 32, bins: int = DEFAULT_BINS) -> float:
    """The KL estimator's floor on one region: ``KL(p_a || p_b)`` between its two halves.

    The region is split by a checkerboard of ``block x block`` pixel squares (``a`` the squares
    with ``(row // block + col // block)`` even, ``b`` the others), so both halves sample one
    tissue with speckle that is nearly independent between squares.  Two samples of one
    distribution give a positive KL that shrinks as ``~ (bins - 1) / N`` with the pixel count
    ``N``: a KL between two full regions of this size that is not clearly above about half of
    this value cannot be told from sampling noise.
    """
    img, m = _region(image, mask)
    if block < 1:
        raise MetricError(f"block must be >= 1, got {block}")
    rows, cols = np.indices(m.shape)
    even = ((rows // block + cols // block) % 2 == 0)
    if not (m & even).any() or not (m & ~even).any():
        raise MetricError(f"the region does not reach both halves of a {block}-pixel checkerboard")
    return region_kl(img, m & even, img, m & ~even, bins)


def shifted_kl(
    reference: np.ndarray,
    reference_mask: np.ndarray | None,
    output: np.ndarray,
    output_mask: np.ndarray | None,
    max_shift: int = 40,
    bins: int = DEFAULT_BINS,
) -> tuple[float, int]:
    """``min_s KL(p_reference || p_{clip(output + s)})`` over integer grey shifts ``|s| <= max_shift``.

    What is left of :func:`region_kl` once an overall brightness offset (a gain the output
    cannot know, e.g. a probe's own gain setting) is taken out; grey levels are clipped to
    [0, 255] after the shift, as a display would.  Returns ``(kl, s)`` for the best shift
    (the smallest ``|s|`` among equal KLs).
    """
    if max_shift < 0:
        raise MetricError(f"max_shift must be >= 0, got {max_shift}")
    _, p = intensity_pdf(reference, reference_mask, bins)
    img, m = _region(output, output_mask, "output_mask")
    levels = np.bincount(np.clip(np.rint(img[m]), 0, 255).astype(np.int64), minlength=256)
    grey = np.arange(256)
    edges = np.linspace(0.0, 256.0, bins + 1)
    best = (math.inf, 0)
    for s in sorted(range(-max_shift, max_shift + 1), key=abs):
        shifted = np.bincount(np.clip(grey + s, 0, 255), weights=levels, minlength=256)
        counts, _ = np.histogram(grey, bins=edges, weights=shifted)
        kl = kl_divergence(p, counts + 1.0)  # Laplace smoothing, as intensity_pdf
        if kl < best[0]:
            best = (kl, s)
    return best


def autocovariance(image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Normalised autocovariance of a region, by masked FFT correlation.

    With ``f = (I - mean_mask(I)) * m`` and ``m`` the mask,
    ``R(d) = [sum_r f(r) f(r+d) / sum_r m(r) m(r+d)] / R(0)`` for every lag ``d`` at which
    at least a quarter of the region's pixels overlap (other lags are NaN).  Returned
    "fftshift"-ed: lag ``(0, 0)`` sits at index ``(H - 1, W - 1)`` of the
    ``(2H - 1, 2W - 1)`` array.
    """
    img, m = _region(image, mask)
    mf = m.astype(np.float64)
    f = (img - img[m].mean()) * mf
    h, w = img.shape
    shape = (fft.next_fast_len(2 * h - 1), fft.next_fast_len(2 * w - 1))
    ff = fft.rfft2(f, shape)
    fm = fft.rfft2(mf, shape)
    num = fft.irfft2(ff * np.conj(ff), shape)
    den = fft.irfft2(fm * np.conj(fm), shape)
    num = np.fft.fftshift(num)
    den = np.fft.fftshift(den)
    cy, cx = shape[0] // 2, shape[1] // 2
    num = num[cy - h + 1 : cy + h, cx - w + 1 : cx + w]
    den = np.rint(den[cy - h + 1 : cy + h, cx - w + 1 : cx + w])
    if num[h - 1, w - 1] <= 0:
        raise MetricError("region has zero variance: autocovariance undefined")
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(den >= max(0.25 * m.sum(), 1.0), num / den, np.nan)
    return r / r[h - 1, w - 1]


def speckle_grain_size(image: np.ndarray, mask: np.ndarray | None = None, axis: int = 0) -> float:
    """Speckle grain size: FWHM, in pixels, of the normalised autocovariance along one axis.

    ``axis = 0`` is axial (lags along rows, i.e. down the image), ``axis = 1`` lateral
    (along columns).  With ``R`` from :func:`autocovariance` and ``k*`` the first lag where
    ``R(k) < 1/2``, the half-maximum lag is interpolated linearly,
    ``k_half = k* - 1 + (R(k*-1) - 1/2) / (R(k*-1) - R(k*))``, and ``FWHM = 2 k_half``.
    Mean-subtract by region, so use a homogeneous region (e.g. parenchyma).

    Raises:
        MetricError: the autocovariance never falls below 1/2 within the region.
    """
    if axis not in (0, 1):
        raise MetricError(f"axis must be 0 (axial, rows) or 1 (lateral, columns), got {axis}")
    r = autocovariance(image, mask)
    h, w = np.asarray(image).shape
    profile = r[h - 1 :, w - 1] if axis == 0 else r[h - 1, w - 1 :]
    below = np.flatnonzero(~(profile >= 0.5))  # NaN (too little overlap) counts as "not found"
    if below.size == 0 or np.isnan(profile[below[0]]):
        raise MetricError(f"autocovariance along axis {axis} stays above 1/2 inside the region")
    k = int(below[0])
    r0, r1 = profile[k - 1], profile[k]
    return float(2.0 * (k - 1 + (r0 - 0.5) / (r0 - r1)))


def ring_mask(mask: np.ndarray, gap: int = 2, width: int = 6, within: np.ndarray | None = None) -> np.ndarray:
    """The surroundings of a region: pixels between ``gap`` and ``gap + width`` pixels of it.

    ``ring = dilate(mask, gap + width) & ~dilate(mask, gap)``, each dilation ``n`` steps of the
    4-connected cross (scipy's default), so distances are city-block: ``gap`` and ``gap + width``
    pixels along rows and columns, about 0.7 of that on diagonals.  Optionally restricted to
    ``within`` (e.g. the parenchyma).
    """
    m = np.asarray(mask, dtype=bool)
    outer = ndimage.binary_dilation(m, iterations=gap + width) if gap + width > 0 else m
    inner = ndimage.binary_dilation(m, iterations=gap) if gap > 0 else m
    ring = outer & ~inner
    if within is not None:
        ring &= np.asarray(within, dtype=bool)
    return ring


def cnr(image: np.ndarray, mask_a: np.ndarray, mask_b: np.ndarray, signed: bool = False) -> float:
    """Contrast-to-noise ratio ``|mu_a - mu_b| / sqrt(s_a^2 + s_b^2)`` of two regions.

    ``mu`` and ``s`` are the mean and population standard deviation of each region's grey
    levels.  ``signed``: ``(mu_a - mu_b) / ...``, negative where region a is the darker (a bright
    target drawn dark is lost, not kept).  Two flat regions of equal grey give NaN; of different
    grey, ``inf`` (``-inf`` signed, a darker).
    """
    img, a = _region(image, mask_a, "mask_a")
    _, b = _region(image, mask_b, "mask_b")
    va, vb = img[a], img[b]
    spread = np.sqrt(va.var() + vb.var())
    diff = va.mean() - vb.mean()
    if not signed:
        diff = abs(diff)
    if spread == 0:
        return float("nan") if diff == 0 else math.copysign(math.inf, diff)
    return float(diff / spread)


#: :func:`lesion_contrast`: a lesion counts as hyperechoic where its true echogenicity is at least
#: this many times its surroundings', hypoechoic at most its inverse; lesions in between are left out.
LESION_RATIO = 1.5
#: :func:`lesion_contrast`: the fewest pixels of a lesion and of its ring that are measured.
LESION_MIN_PIXELS = 20


def lesion_contrast(image: np.ndarray, echogenicity: np.ndarray, lesions: np.ndarray, tissue: np.ndarray,
                    ratio: float = LESION_RATIO) -> tuple[float, float]:
    """``(hyper, hypo)``: the mean contrast with which ``image`` shows the hyperechoic and the
    hypoechoic lesions of a truth, NaN where it has none of that kind.

    Each 8-connected component ``L`` of ``lesions`` (at least :data:`LESION_MIN_PIXELS`) is
    measured against its ring ``R`` of ``tissue`` 2-8 pixels away (:func:`ring_mask`).  Its true
    contrast is ``r = exp(mean(ln E[L]) - mean(ln E[R]))`` (``E``: the echogenicity; geometric
    means, as a log-compressed image averages them: a bright core in a dark halo counts by its
    area, not by its peak power); it is hyperechoic for
    ``r >= ratio``, hypoechoic for ``r <= 1 / ratio``, else left out.  Its shown contrast is the
    signed CNR :func:`cnr` ``(mu_L - mu_R) / sqrt(s_L^2 + s_R^2)`` of ``image``, times -1 for a
    hypoechoic lesion: positive where the lesion is shown with its true polarity, larger the
    clearer, negative where it is drawn the other way.  Vessels are not lesions (:func:`cnr` on
    them is the targets' CNR)."""
    labels, count = ndimage.label(np.asarray(lesions, bool), structure=np.ones((3, 3), bool))
    log_e = np.log(np.maximum(echogenicity, 1e-12))
    shown: dict[bool, list[float]] = {True: [], False: []}
    for k in range(1, count + 1):
        lesion = labels == k
        ring = ring_mask(lesion, within=tissue)
        if lesion.sum() < LESION_MIN_PIXELS or ring.sum() < LESION_MIN_PIXELS:
            continue
        true = math.exp(float(log_e[lesion].mean() - log_e[ring].mean()))
        if 1.0 / ratio < true < ratio:
            continue
        hyper = true >= ratio
        shown[hyper].append((1.0 if hyper else -1.0) * cnr(image, lesion, ring, signed=True))
    return tuple(float(np.mean(v)) if v else math.nan for v in (shown[True], shown[False]))  # type: ignore[return-value]


def gcnr(image: np.ndarray, mask_a: np.ndarray, mask_b: np.ndarray, bins: int = 256) -> float:
    """Generalised CNR (Rodriguez-Molares et al. 2020): ``gCNR = 1 - sum_k min(p_a,k, p_b,k)``.

    ``p_a`` and ``p_b`` are the unsmoothed grey-level histograms of the two regions over the
    same ``bins`` equal bins spanning both regions' values, each summing to 1.  0 for
    identical distributions, 1 for disjoint ones.
    """
    img, a = _region(image, mask_a, "mask_a")
    _, b = _region(image, mask_b, "mask_b")
    va, vb = img[a], img[b]
    lo, hi = min(va.min(), vb.min()), max(va.max(), vb.max())
    if hi == lo:
        return 0.0
    edges = np.linspace(lo, hi, bins + 1)
    pa = np.histogram(va, edges)[0] / va.size
    pb = np.histogram(vb, edges)[0] / vb.size
    return float(1.0 - np.minimum(pa, pb).sum())


def edge_preservation(
    reference: np.ndarray, output: np.ndarray, mask: np.ndarray | None = None, sigma: float = 0.0
) -> float:
    """Edge preservation beta (Sattar et al. 1997): correlation of the images' Laplacians.

    ``beta = sum(dR * dO) / sqrt(sum(dR^2) * sum(dO^2))`` with ``dR = L(R) - mean(L(R))``,
    ``dO = L(O) - mean(L(O))``, summed over ``mask``.  ``L`` is the 3x3 discrete Laplacian
    (``sigma = 0``, Sattar's high-pass) or the Laplacian of a Gaussian of std ``sigma`` pixels,
    which looks at edges coarser than the speckle.  1 when the output keeps the reference's
    edges exactly; near 0 when they are lost.
    """
    ref, m = _region(reference, mask)
    out, _ = _region(output, mask)
    if out.shape != ref.shape:
        raise MetricError(f"output shape {out.shape} differs from reference shape {ref.shape}")
    if sigma > 0:
        lr = ndimage.gaussian_laplace(ref, sigma, mode="reflect")[m]
        lo = ndimage.gaussian_laplace(out, sigma, mode="reflect")[m]
    else:
        lr = ndimage.laplace(ref, mode="reflect")[m]
        lo = ndimage.laplace(out, mode="reflect")[m]
    lr = lr - lr.mean()
    lo = lo - lo.mean()
    denom = np.sqrt(np.sum(lr * lr) * np.sum(lo * lo))
    if denom == 0:
        raise MetricError("edge_preservation: an image has a constant Laplacian inside the mask")
    return float(np.sum(lr * lo) / denom)


def psnr(reference: np.ndarray, output: np.ndarray, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / MSE)`` in dB (scikit-image)."""
    from skimage.metrics import peak_signal_noise_ratio

    return float(
        peak_signal_noise_ratio(
            np.asarray(reference, np.float64), np.asarray(output, np.float64), data_range=data_range
        )
    )


def ssim(reference: np.ndarray, output: np.ndarray, data_range: float = 255.0) -> float:
    """Mean structural similarity (Wang et al. 2004) with scikit-image's defaults (7x7 windows).

    ``SSIM = mean over windows of (2 mu_r mu_o + C1)(2 s_ro + C2) / ((mu_r^2 + mu_o^2 + C1)(s_r^2 + s_o^2 + C2))``,
    ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``, ``L = data_range``.
    """
    from skimage.metrics import structural_similarity

    return float(
        structural_similarity(
            np.asarray(reference, np.float64), np.asarray(output, np.float64), data_range=data_range
        )
    )


def log_correlation(output: np.ndarray, echogenicity: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Pearson correlation of ``ln(output + 1)`` with ``ln(echogenicity)`` over ``mask``.

    ``echogenicity`` is the simulator's true, positive scattering strength; values below
    ``1e-12`` are clipped there.  1 means the output's grey levels follow the tissue exactly
    (up to a monotone log-linear map); speckle lowers it.
    """
    out, m = _region(output, mask)
    ech, _ = _region(echogenicity, mask)
    a = np.log(np.maximum(out[m], 0.0) + 1.0)
    b = np.log(np.maximum(ech[m], 1e-12))
    if a.std() == 0 or b.std() == 0:
        raise MetricError("log_correlation: output or echogenicity is constant inside the mask")
    return float(np.corrcoef(a, b)[0, 1])


def count_below(values: Sequence[float], reference: Sequence[float]) -> tuple[int, int]:
    """``(k, n)``: of the ``n`` images where both per-image figures are finite, the ``k`` where
    ``values[i] < reference[i]`` (e.g. an output's log-correlation below its input's): the harm to
    a few images that a mean over the images hides."""
    v, r = np.asarray(values, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if v.shape != r.shape:
        raise MetricError(f"count_below: {v.size} values against {r.size} reference values")
    both = np.isfinite(v) & np.isfinite(r)
    return int((v[both] < r[both]).sum()), int(both.sum())
