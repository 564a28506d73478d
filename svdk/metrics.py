"""Quality and size measures, computed the same way everywhere in svdk.

* PSNR and SSIM are scikit-image's (:func:`skimage.metrics.peak_signal_noise_ratio`
  and :func:`skimage.metrics.structural_similarity` with ``data_range=255``
  and the default 7x7 uniform window with sample covariance), computed on
  the decoded 8-bit image against the original. Colour images average the
  SSIM of their R, G and B channels. Alpha is stored losslessly and is left
  out of both.
* Bits per pixel are ``8 * len(file) / (width * height)``: the real bytes of
  the file, header and CRC included.
* MS-SSIM (:func:`ms_ssim`, Wang, Simoncelli and Bovik 2003) is TensorFlow's
  ``tf.image.ssim_multiscale`` with ``max_val=255`` and its defaults: an
  11x11 Gaussian window of sigma 1.5, five scales with the published weights
  (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), each scale a 2x2 average of the
  last. A colour image averages the MS-SSIM of its R, G and B channels
  (CompressAI's ``ms-ssim-rgb``). TensorFlow is imported the first time it is
  needed (``pip install 'svdk[keras]'``), never by ``import svdk``. Both sides
  must be at least :data:`MS_SSIM_MIN_SIDE` pixels; smaller images have no
  MS-SSIM (``None``). :func:`ms_ssim_db` gives it in decibels,
  ``-10 log10(1 - MS-SSIM)``, the scale rate-distortion curves use.

For images with a side shorter than 7 pixels the SSIM window shrinks to the
largest odd size that fits; below 3 pixels SSIM is undefined and reported as
``None``.

One implementation computes SSIM here: :class:`Scorer`, which measures many
decoded images against one reference (the rank searches, the app,
:mod:`svdk.compare`); :func:`ssim` is a one-off use of it. Instead of box
filters it uses window sums: every quantity SSIM needs is a sum over a
window of values or of their products, so with ``N`` pixels per window and
sums ``Sx``, ``Sy``, ``Sxx``, ``Syy``, ``Sxy``::

    SSIM = (2 Sx Sy + c1 N²) (2 (N Sxy - Sx Sy) + c2 N (N-1))
           / ((Sx² + Sy² + c1 N²) (N Sxx - Sx² + N Syy - Sy² + c2 N (N-1)))

which is scikit-image's expression multiplied out. For 8-bit images every
sum is an exact int32 (at most about 1.6e8 for a 7x7 window); a float
reference (a colour plane before rounding) uses float64 sums. The values
agree with scikit-image's to rounding (a test checks 1e-9 against
``structural_similarity``), not bit for bit, and cost about a third of its
time.

>>> import numpy as np
>>> from svdk import metrics
>>> ref = np.add.outer(np.arange(64), np.arange(64)).astype(np.uint8)
>>> noisy = np.clip(ref + np.random.default_rng(0).integers(-3, 4, ref.shape), 0, 255).astype(np.uint8)
>>> round(metrics.ssim(ref, noisy), 3), round(metrics.psnr(ref, noisy), 1)
(0.949, 42.0)
>>> scorer = metrics.Scorer(ref)            # many candidates against one reference
>>> scorer.ssim(noisy) == metrics.ssim(ref, noisy)
True
"""

from __future__ import annotations

import math
import os

import numpy as np

from . import _threads
from ._errors import ImageError, OptionError

#: Images of at least this many pixels (per channel) get their SSIM strips
#: summed in two threads (each strip the same, added in the same order).
THREADED_PIXELS = 1 << 17

__all__ = [
    "psnr",
    "ssim",
    "ms_ssim",
    "ms_ssim_db",
    "ms_ssim_undefined",
    "bpp",
    "ssim_window",
    "colour_channels",
    "Scorer",
    "DATA_RANGE",
    "MS_SSIM_MIN_SIDE",
]

#: The peak value of 8-bit images, as scikit-image's ``data_range``.
DATA_RANGE = 255.0
_K1, _K2 = 0.01, 0.03


def ssim_window(height: int, width: int) -> int | None:
    """The SSIM window used for an image of this size (None: undefined)."""
    win = min(7, height, width)
    if win % 2 == 0:
        win -= 1
    return win if win >= 3 else None


def colour_channels(image: np.ndarray) -> np.ndarray:
    """The channels PSNR and SSIM measure: alpha (the last of 2 or 4 channels) dropped, one channel squeezed.

    svdk stores alpha losslessly, and the reference codecs are given the
    colour channels alone, so no figure counts it.
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] in (2, 4):
        image = image[..., :-1]
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    return np.ascontiguousarray(image)


def psnr(reference: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in dB of ``decoded`` against ``reference`` (``inf`` if identical)."""
    return Scorer(reference, ssim=False).psnr(decoded)


def ssim(reference: np.ndarray, decoded: np.ndarray) -> float | None:
    """Mean SSIM of ``decoded`` against ``reference`` over colour channels (None: a side under 3 pixels)."""
    return Scorer(reference).ssim(decoded)


#: The smallest side MS-SSIM is defined for: its fifth scale (a 16th of the
#: side) must still hold the 11-pixel window, (11 - 1) * 2**4 + 1.
MS_SSIM_MIN_SIDE = 161

_ms_ssim_graph = None  # TensorFlow's MS-SSIM as a traced function, made on first use


def ms_ssim_undefined(height: int, width: int) -> str | None:
    """Why an image of this size has no MS-SSIM, in a sentence (None: it has one)."""
    if min(height, width) >= MS_SSIM_MIN_SIDE:
        return None
    return (
        f"MS-SSIM needs both sides of at least {MS_SSIM_MIN_SIDE} pixels (5 scales of an 11-pixel "
        f"window); this image is {width}x{height}"
    )


def _ms_ssim_function():
    """``tf.image.ssim_multiscale`` at ``max_val=255``, traced once per kind of shape."""
    global _ms_ssim_graph
    if _ms_ssim_graph is None:
        from ._quiet import native_stderr_silenced

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            with native_stderr_silenced():  # TensorFlow's absl and oneDNN start-up lines
                import tensorflow as tf
        except (ImportError, OSError) as exc:
            raise ImportError(
                "MS-SSIM is computed with TensorFlow's tf.image.ssim_multiscale, and TensorFlow cannot be "
                f"imported here ({type(exc).__name__}: {exc}); pip install 'svdk[keras]'"
            ) from None

        def graph(x, y):
            return tf.image.ssim_multiscale(x, y, DATA_RANGE)

        _ms_ssim_graph = tf.function(graph, reduce_retracing=True)
    return _ms_ssim_graph


def ms_ssim(reference: np.ndarray, decoded: np.ndarray) -> float | None:
    """MS-SSIM of ``decoded`` against ``reference``, the mean over colour channels.

    TensorFlow's ``tf.image.ssim_multiscale`` (``max_val=255``, default
    window and weights) on the 8-bit values; alpha is left out. Returns
    ``None`` when a side is under :data:`MS_SSIM_MIN_SIDE` pixels (see
    :func:`ms_ssim_undefined`). Raises :class:`ImportError`, saying what to
    install, when TensorFlow is missing.
    """
    ref, dec = colour_channels(reference), colour_channels(decoded)
    if ref.ndim not in (2, 3) or ref.size == 0:
        raise OptionError(f"expected an image of shape (H, W) or (H, W, C); got shape {np.shape(reference)}")
    if dec.shape != ref.shape:
        raise OptionError(f"shapes differ: {ref.shape} and {dec.shape} (alpha left out of both)")
    if ms_ssim_undefined(*ref.shape[:2]) is not None:
        return None
    if ref.ndim == 2:
        ref, dec = ref[..., None], dec[..., None]
    function = _ms_ssim_function()
    from ._quiet import native_stderr_silenced

    with native_stderr_silenced():  # a first trace may log too
        value = function(ref.astype(np.float32), dec.astype(np.float32))
    return float(value.numpy())


def ms_ssim_db(value: float | None) -> float | None:
    """MS-SSIM in decibels, ``-10 log10(1 - value)``; None for None or a perfect 1.0."""
    if value is None or not value < 1.0:
        return None
    return -10.0 * math.log10(1.0 - value)


def bpp(nbytes: int, width: int, height: int) -> float:
    """Bits per pixel of a file of ``nbytes`` bytes for a width x height image."""
    return 8.0 * nbytes / (width * height)


class Scorer:
    """PSNR and SSIM of many decoded images against one reference.

    ``reference`` is ``(H, W)`` or ``(H, W, C)``: 8-bit (exact integer
    sums) or float (a plane before rounding; float64 sums). Alpha is left
    out of the reference and of every candidate (:func:`colour_channels`). The reference's
    window sums are computed once; each call then costs the sums of the
    candidate, in strips of rows small enough to stay in the processor's
    cache. ``ssim=False`` skips that preparation when only PSNR is wanted.
    Candidates have the reference's shape once alpha is left out of both.
    """

    #: rows of the SSIM map computed at once
    STRIP = 64

    def __init__(self, reference: np.ndarray, *, ssim: bool = True):
        ref = np.asarray(reference)
        if ref.ndim not in (2, 3):
            raise OptionError(f"expected an image of shape (H, W) or (H, W, C); got shape {ref.shape}")
        if ref.size == 0:
            raise ImageError(f"an empty image (shape {ref.shape}) has no PSNR or SSIM")
        ref = colour_channels(ref)
        self.ref = ref
        self.exact = ref.dtype == np.uint8
        self._ref64 = None if self.exact else ref.astype(np.float64)
        self._ref16 = ref.astype(np.int16) if self.exact else None
        h, w = ref.shape[:2]
        self.win = ssim_window(h, w)
        self._planes = []
        if ssim and self.win is not None:
            n = self.win * self.win
            self._n = n
            self._c1 = (_K1 * DATA_RANGE) ** 2 * n * n  # c1 N²
            self._c2 = (_K2 * DATA_RANGE) ** 2 * n * (n - 1)  # c2 N (N-1)
            for x in _planes(ref if self.exact else self._ref64):
                sx = _window_sums_large(x, self.win)
                sxx = _window_sums_large(_square(x), self.win)
                sx2 = sx * sx
                # the reference's parts of the two denominators, constants included
                self._planes.append((x, sx, sx2 + self._c1, (n * sxx - sx2) + self._c2))

    def _check(self, decoded: np.ndarray) -> np.ndarray:
        dec = colour_channels(decoded)
        if dec.shape != self.ref.shape:
            raise OptionError(f"shapes differ: {self.ref.shape} and {dec.shape} (alpha left out of both)")
        if self.exact and dec.dtype != np.uint8:
            dec = dec.astype(np.float64)
        return dec

    def __call__(self, decoded: np.ndarray) -> tuple[float, float | None]:
        """``(psnr, ssim)`` of ``decoded``."""
        return self.psnr(decoded), self.ssim(decoded)

    def psnr(self, decoded: np.ndarray) -> float:
        """PSNR in dB (``inf`` for an identical image), scikit-image's expression."""
        dec = self._check(decoded)
        if self.exact and dec.dtype == np.uint8:
            err = np.subtract(self._ref16, dec)
            mse = int(np.square(err, dtype=np.int32).sum(dtype=np.int64)) / dec.size
        else:
            ref = self._ref64 if self._ref64 is not None else self.ref.astype(np.float64)
            mse = float(np.mean(np.square(ref - dec.astype(np.float64))))
        return math.inf if mse == 0 else float(10 * np.log10((DATA_RANGE**2) / mse))

    def ssim(self, decoded: np.ndarray) -> float | None:
        """Mean SSIM over channels (None when a side is under 3 pixels)."""
        dec = self._check(decoded)
        if self.win is None:
            return None
        if not self._planes:
            raise OptionError("this Scorer was made with ssim=False: make one with ssim=True to measure SSIM")
        # 8-bit candidates' own sums are exact in integers (and equal to the
        # float64 sums), whatever the reference
        whole = [None] * len(self._planes)
        if not self.exact and dec.dtype == np.uint8:
            whole = _planes(dec)
        if not self.exact or dec.dtype != np.uint8:
            dec = dec.astype(np.float64)
            planes = self._planes if not self.exact else [
                (x.astype(np.float64), *rest) for x, *rest in self._planes
            ]
        else:
            planes = self._planes
        return float(np.mean([self._plane_ssim(p, y, y8) for p, y, y8 in zip(planes, _planes(dec), whole)]))

    def _plane_ssim(self, plane, y: np.ndarray, y8: np.ndarray | None = None) -> float:
        sx_all = plane[1]
        rows = sx_all.shape[0]
        starts = range(0, rows, self.STRIP)

        def strips(which):
            return [self._strip(plane, y, starts[i], y8) for i in which]

        total = 0.0
        for part in _threads.split(strips, len(starts), y.size >= THREADED_PIXELS):
            total += part
        return total / sx_all.size

    def _strip(self, plane, y: np.ndarray, r0: int, y8: np.ndarray | None) -> float:
        """The summed SSIM map of rows ``r0 .. r0 + STRIP`` of the map
        (``y8``: the candidate in 8 bits when ``y`` is its float copy)."""
        x, sx_all, d1_all, d2_all = plane
        win, n = self.win, self._n
        r1 = min(sx_all.shape[0], r0 + self.STRIP)
        span = slice(r0, r1 + win - 1)
        ys, xs = y[span], x[span]
        if y8 is None:
            sy = _window_sums(ys, win)
            syy = _window_sums(_square(ys), win)
        else:
            sy = _window_sums(y8[span], win).astype(np.float64)
            syy = _window_sums(_square(y8[span]), win).astype(np.float64)
        sxy = _window_sums(_product(xs, ys), win)
        p = sx_all[r0:r1] * sy  # Sx Sy
        sxy *= n
        sxy -= p  # N Sxy - Sx Sy
        num = np.multiply(p, 2.0)
        num += self._c1
        num2 = np.multiply(sxy, 2.0)
        num2 += self._c2
        num *= num2
        sy *= sy  # Sy²
        syy *= n
        syy -= sy  # N Syy - Sy²
        den = np.add(syy, d2_all[r0:r1])
        den *= np.add(sy, d1_all[r0:r1])
        num /= den
        return float(num.sum(dtype=np.float64))


def _planes(image: np.ndarray) -> list[np.ndarray]:
    """The channels of an image as contiguous 2-D arrays."""
    if image.ndim == 2:
        return [np.ascontiguousarray(image)]
    return [np.ascontiguousarray(image[..., c]) for c in range(image.shape[2])]


def _square(a: np.ndarray) -> np.ndarray:
    return np.multiply(a, a, dtype=np.uint16) if a.dtype == np.uint8 else a * a


def _product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.multiply(a, b, dtype=np.uint16) if a.dtype == np.uint8 else a * b


def _window_sums_large(a: np.ndarray, win: int) -> np.ndarray:
    """:func:`_window_sums`, from :data:`THREADED_PIXELS` on in two threads (the top and bottom
    rows of windows; each sum is added as it is in one)."""
    rows = a.shape[0] - win + 1
    if a.size < THREADED_PIXELS or rows < 2:
        return _window_sums(a, win)
    half = rows // 2
    parts = (a[: half + win - 1], a[half:])
    return np.concatenate(_threads.split(lambda which: [_window_sums(parts[i], win) for i in which], 2, True))


def _window_sums(a: np.ndarray, win: int) -> np.ndarray:
    """Sums of ``a`` over every ``win`` x ``win`` window inside it (the 'valid' part).

    Shifted slices added in place: int32 (exact) for integer input, float64
    otherwise.
    """
    h, w = a.shape
    hh, ww = h - win + 1, w - win + 1
    cols = a[:hh].astype(np.int32 if a.dtype.kind in "ui" else np.float64)
    for i in range(1, win):
        cols += a[i : i + hh]
    out = cols[:, :ww].copy()
    for j in range(1, win):
        out += cols[:, j : j + ww]
    return out
