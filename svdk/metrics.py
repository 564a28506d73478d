"""Quality and size measures, computed the same way everywhere in svdk.

* PSNR and SSIM come from :mod:`skimage.metrics` with ``data_range=255`` on
  the decoded 8-bit image against the original 8-bit image. SSIM uses
  scikit-image's defaults (7x7 uniform window, sample covariance); colour
  images average the SSIM of their R, G and B channels. Alpha is stored
  losslessly and is left out of both.
* Bits per pixel are ``8 * len(file) / (width * height)``: the real bytes of
  the file, header and CRC included.

For images with a side shorter than 7 pixels the SSIM window shrinks to the
largest odd size that fits; below 3 pixels SSIM is undefined and reported as
``None``.
"""

from __future__ import annotations

import math

import numpy as np
from concurrent.futures import ThreadPoolExecutor

from scipy.ndimage import uniform_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = ["psnr", "ssim", "bpp", "ssim_window"]

DATA_RANGE = 255.0
_K1, _K2 = 0.01, 0.03
# Two filters of PlaneScorer run here, beside the calling thread.
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="svdk-ssim")


def ssim_window(height: int, width: int) -> int | None:
    """The SSIM window used for an image of this size (None: undefined)."""
    win = min(7, height, width)
    if win % 2 == 0:
        win -= 1
    return win if win >= 3 else None


def psnr(reference: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in dB of ``decoded`` against ``reference`` (``inf`` if identical)."""
    reference = np.asarray(reference)
    decoded = np.asarray(decoded)
    if reference.shape != decoded.shape:
        raise ValueError(f"shapes differ: {reference.shape} and {decoded.shape}")
    if np.array_equal(reference, decoded):
        return math.inf
    return float(
        peak_signal_noise_ratio(
            reference.astype(np.float64), decoded.astype(np.float64), data_range=DATA_RANGE
        )
    )


def ssim(reference: np.ndarray, decoded: np.ndarray) -> float | None:
    """Mean SSIM of ``decoded`` against ``reference`` over colour channels."""
    reference = np.asarray(reference)
    decoded = np.asarray(decoded)
    if reference.shape != decoded.shape:
        raise ValueError(f"shapes differ: {reference.shape} and {decoded.shape}")
    win = ssim_window(reference.shape[0], reference.shape[1])
    if win is None:
        return None
    return float(
        structural_similarity(
            reference.astype(np.float64),
            decoded.astype(np.float64),
            data_range=DATA_RANGE,
            win_size=win,
            channel_axis=-1 if reference.ndim == 3 else None,
        )
    )


def bpp(nbytes: int, width: int, height: int) -> float:
    """Bits per pixel of a file of ``nbytes`` bytes for a width x height image."""
    return 8.0 * nbytes / (width * height)


class PlaneScorer:
    """PSNR or SSIM of many candidate reconstructions of one plane.

    The reference's local statistics are computed once; each call then costs
    three box filters. The arithmetic follows scikit-image's
    ``structural_similarity``, so the values agree with :func:`ssim` to
    rounding (a test checks this).
    """

    def __init__(self, reference: np.ndarray, metric: str):
        self.metric = metric
        self.ref = np.asarray(reference, dtype=np.float64)
        h, w = self.ref.shape
        if metric == "ssim":
            self.win = ssim_window(h, w)
            if self.win is None:
                raise ValueError(f"SSIM is undefined for a {w}x{h} image (a side under 3 pixels)")
            np_ = self.win**2
            self.cov_norm = np_ / (np_ - 1)
            self.ux = uniform_filter(self.ref, size=self.win)
            uxx = uniform_filter(self.ref * self.ref, size=self.win)
            self.vx = self.cov_norm * (uxx - self.ux * self.ux)
            c1 = (_K1 * DATA_RANGE) ** 2
            self.b1_x = self.ux**2 + c1  # parts of B1 and B2 that depend on the reference only
            self.b2_x = self.vx + (_K2 * DATA_RANGE) ** 2

    def __call__(self, decoded: np.ndarray) -> float:
        im2 = np.asarray(decoded, dtype=np.float64)
        if self.metric == "psnr":
            mse = float(np.mean((self.ref - im2) ** 2))
            return math.inf if mse == 0 else 10.0 * math.log10(DATA_RANGE**2 / mse)
        win = self.win
        pad = (win - 1) // 2
        inner = (slice(pad, im2.shape[0] - pad), slice(pad, im2.shape[1] - pad))
        # The three box filters of the candidate dominate the cost; scipy
        # releases the GIL while filtering, so two run beside the caller.
        sq = _POOL.submit(uniform_filter, im2 * im2, size=win)
        cross = _POOL.submit(uniform_filter, self.ref * im2, size=win)
        uy = uniform_filter(im2, size=win)[inner]
        uyy, uxy = sq.result()[inner], cross.result()[inner]
        # scikit-image's expressions on the cropped interior (the part it
        # averages), with the terms that depend on the reference alone
        # computed once and the rest in place: sums are grouped differently,
        # so the values agree with it to rounding, not bit for bit.
        ux = self.ux[inner]
        uy2 = uy * uy
        uyy -= uy2
        uyy *= self.cov_norm
        uyy += self.b2_x[inner]  # B2 = vx + vy + c2
        uxy -= ux * uy
        uxy *= 2.0 * self.cov_norm
        uxy += (_K2 * DATA_RANGE) ** 2  # A2 = 2 vxy + c2
        uy *= ux
        uy *= 2.0
        uy += (_K1 * DATA_RANGE) ** 2  # A1 = 2 ux uy + c1
        uy2 += self.b1_x[inner]  # B1 = ux^2 + uy^2 + c1
        uy *= uxy
        uy2 *= uyy
        uy /= uy2
        return float(uy.mean(dtype=np.float64))
