"""The global layout's arithmetic: colour planes, truncated SVD, quantization.

The byte layout lives in :mod:`svdk.format`, the tiled layout in
:mod:`svdk._tiled`, the choice of ranks in :mod:`svdk.policies`, and the
encoder that ties them together in :mod:`svdk._encoder`. This module turns
pixels into integer factors and back.
"""

from __future__ import annotations

import math
import time

import numpy as np
from scipy.fft import dct, idct
from threadpoolctl import ThreadpoolController

__all__ = ["CHROMA_RANK_FRACTION", "CHROMA_TAU_FRACTION", "Plane", "reconstruct", "to_planes", "from_planes"]

#: In ycbcr mode, a chroma rank is this fraction of the luma rank unless the
#: ranks are given one by one.
CHROMA_RANK_FRACTION = 0.25
#: In the tiled ycbcr layout, chroma keeps the components above this
#: fraction of the luma threshold.
CHROMA_TAU_FRACTION = 0.5
#: Default quantization step of the smallest kept component, relative to
#: its scale (see :func:`auto_step`); larger components get finer steps
#: (:func:`component_exponents`). Chosen on Kodak by BD-PSNR against JPEG
#: (``python -m benchmarks.global_coding``: 1.5 and 2.0 within 0.02 dB, 1.2
#: 0.14 dB worse).
STEP_FACTOR = 1.5

# JPEG's full-range BT.601 (JFIF) conversion.
_RGB_TO_YCBCR = np.array(
    [
        [0.299, 0.587, 0.114],
        [-0.168735892, -0.331264108, 0.5],
        [0.5, -0.418687589, -0.081312411],
    ],
    dtype=np.float32,
)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR.astype(np.float64)).astype(np.float32)
# Single-threaded BLAS is faster for these matrix sizes on small machines and
# keeps the float results independent of the thread count.
_BLAS = ThreadpoolController()


def _one_thread():
    return _BLAS.limit(limits=1, user_api="blas")


_OFFSET = np.array([0.0, 128.0, 128.0], dtype=np.float32)


def chroma_rank(luma_rank: int, shape: tuple[int, int]) -> int:
    """The chroma rank that goes with ``luma_rank`` by default."""
    return max(1, min(min(shape), int(luma_rank * CHROMA_RANK_FRACTION + 0.5)))


# ----------------------------------------------------------------------------
# colour planes


def ycbcr_planes(rgb: np.ndarray) -> list[np.ndarray]:
    """Y, Cb and Cr of ``(H, W, 3)`` pixels as three contiguous float32 planes.

    Each plane is ``m0 * R + m1 * G + m2 * B + offset``, added left to right
    in float32 (in place, on contiguous copies of the channels).
    """
    r, g, b = (np.ascontiguousarray(rgb[..., c], dtype=np.float32) for c in range(3))
    m = _RGB_TO_YCBCR
    planes = []
    for i in range(3):
        p = m[i, 0] * r
        p += m[i, 1] * g
        p += m[i, 2] * b
        p += _OFFSET[i]
        planes.append(p)
    return planes


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    return np.stack(ycbcr_planes(rgb), axis=-1)


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    return (ycc - _OFFSET) @ _YCBCR_TO_RGB.T


def _downsample(plane: np.ndarray) -> np.ndarray:
    """2x2 box average; an odd last row or column is averaged with itself."""
    h, w = plane.shape
    p = plane
    if h % 2 or w % 2:
        p = np.pad(plane, ((0, h % 2), (0, w % 2)), mode="edge")
    return 0.25 * (p[0::2, 0::2] + p[1::2, 0::2] + p[0::2, 1::2] + p[1::2, 1::2])


def _upsample(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear 2x upsampling matched to :func:`_downsample`'s sample sites."""
    h, w = plane.shape
    p = np.pad(plane, 1, mode="edge")
    # Output pixel y maps to source coordinate (y - 0.5) / 2, i.e. weights of
    # 3/4 and 1/4 between the two nearest coarse samples.
    out = np.empty((2 * h, 2 * w), dtype=np.float32)
    rows_a = 0.75 * p[1:-1] + 0.25 * p[:-2]  # even output rows
    rows_b = 0.75 * p[1:-1] + 0.25 * p[2:]  # odd output rows
    for r, rows in ((0, rows_a), (1, rows_b)):
        out[r::2, 0::2] = 0.75 * rows[:, 1:-1] + 0.25 * rows[:, :-2]
        out[r::2, 1::2] = 0.75 * rows[:, 1:-1] + 0.25 * rows[:, 2:]
    return out[:height, :width]


def to_planes(color: np.ndarray, mode: str, subsampled: bool) -> list[np.ndarray]:
    """Split 8-bit pixels into the float32 planes that get coded."""
    if mode == "gray":
        return [color.astype(np.float32)]
    if mode == "rgb":
        return [color[..., c].astype(np.float32) for c in range(3)]
    planes = ycbcr_planes(color)
    if subsampled:
        planes[1:] = [_downsample(p) for p in planes[1:]]
    return planes


def from_planes(planes: list[np.ndarray], mode: str, height: int, width: int) -> np.ndarray:
    """Join decoded float planes into an 8-bit image."""
    if mode == "gray":
        return to_uint8(planes[0])
    if mode == "rgb":
        return to_uint8(np.stack(planes, axis=-1))
    y, cb, cr = (p if p.shape == (height, width) else _upsample(p, height, width) for p in planes)
    return _ycbcr_planes_to_rgb8(y, cb, cr)


#: Rows converted at a time by :func:`_ycbcr_planes_to_rgb8`: the work arrays stay in the cache.
CONVERT_ROWS = 64


def _ycbcr_planes_to_rgb8(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """:func:`ycbcr_to_rgb` then :func:`to_uint8` (``cb`` and ``cr`` with their offset of 128).

    The same float32 products and sums as the matrix product (left to
    right), a channel and :data:`CONVERT_ROWS` rows at a time, in place:
    on a Kodak image, about twice as fast as whole planes at a time.
    """
    h, w = y.shape
    out = np.empty((h, w, 3), dtype=np.uint8)
    m = _YCBCR_TO_RGB
    rows = min(h, CONVERT_ROWS)
    ch, term, u, v = (np.empty((rows, w), dtype=np.float32) for _ in range(4))
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        n = r1 - r0
        np.subtract(cb[r0:r1], _OFFSET[1], out=u[:n])
        np.subtract(cr[r0:r1], _OFFSET[2], out=v[:n])
        c_, t_ = ch[:n], term[:n]
        for c in range(3):
            np.multiply(y[r0:r1], m[c, 0], out=c_)
            np.multiply(u[:n], m[c, 1], out=t_)
            c_ += t_
            np.multiply(v[:n], m[c, 2], out=t_)
            c_ += t_
            np.rint(c_, out=c_)
            np.clip(c_, 0, 255, out=c_)
            out[r0:r1, :, c] = c_
    return out


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------
# truncated SVD


def _oversampling(k: int) -> int:
    return k // 2 + 8


def _exact_svd(k: int, n: int) -> bool:
    """Whether rank ``k`` of an ``n``-wide plane uses the exact decomposition."""
    return n <= 64 or k + _oversampling(k) >= n // 2


def _svd(a: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The leading ``k`` singular triplets of ``a``, with fixed signs.

    A randomized range finder (Halko, Martinsson and Tropp, 2011) with two
    power iterations and generous oversampling when ``k`` is small next to
    the matrix. Otherwise the eigen-decomposition of the Gram matrix, in
    float64: it squares the condition number, which loses only components
    below about 1e-7 of the largest, and those carry no visible signal; the
    reconstruction ``a @ v @ v.T`` stays an exact projection either way. The
    random sketch has a fixed seed, so the result is the same on every run.
    """
    h, w = a.shape
    n = min(h, w)
    over = _oversampling(k)
    with _one_thread():
        if n <= 64:
            u, s, vt = np.linalg.svd(a.astype(np.float64), full_matrices=False)
            u, s, vt = u[:, :k], s[:k], vt[:k]
        elif _exact_svd(k, n):
            x = a.astype(np.float64)
            tall = h >= w
            lam, vecs = np.linalg.eigh(x.T @ x if tall else x @ x.T)
            lam, vecs = lam[::-1][:k], vecs[:, ::-1][:, :k]
            s = np.sqrt(np.clip(lam, 0, None))
            inv = np.divide(1.0, s, out=np.zeros_like(s), where=s > s[0] * 1e-7)
            if tall:
                vt = vecs.T
                u = (x @ vecs) * inv
            else:
                u = vecs
                vt = (vecs.T @ x) * inv[:, None]
        else:
            x = a.astype(np.float32)
            rng = np.random.default_rng(0x5D1C)
            y = x @ rng.standard_normal((w, k + over), dtype=np.float32)
            for _ in range(2):
                y, _ = np.linalg.qr(y)
                y = x @ (x.T @ y)
            q, _ = np.linalg.qr(y)
            ub, s, vt = np.linalg.svd(q.T @ x, full_matrices=False)
            u = (q @ ub[:, :k]).astype(np.float64)
            s = s[:k].astype(np.float64)
            vt = vt[:k].astype(np.float64)
    # Sign convention: the largest-magnitude entry of each u is positive.
    idx = np.argmax(np.abs(u), axis=0)
    signs = np.where(u[idx, np.arange(u.shape[1])] < 0, -1.0, 1.0)
    return u * signs, s, vt * signs[:, None]


def auto_step(s_k: float, shape: tuple[int, int]) -> float:
    """Default quantization step for a plane whose smallest kept value is s_k.

    The folded factors of component ``k`` have entries of about
    ``sqrt(s_k / max(h, w))``; a step at a fixed fraction of that scale keeps
    the quantization noise in proportion to the truncation error.
    """
    return STEP_FACTOR * math.sqrt(max(s_k, 1e-6) / max(shape))


#: A component whose RMS amplitude over its plane is below this many grey
#: levels cannot show in 8-bit pixels: steps are never set from a smaller one.
NEGLIGIBLE_AMPLITUDE = 1 / 32


def reference_value(s: np.ndarray, shape: tuple[int, int]) -> float:
    """The singular value a plane's steps are set from: the smallest kept one.

    Unless it is negligible: below ``2**-20`` of the first, or below
    :data:`NEGLIGIBLE_AMPLITUDE` times ``sqrt(h * w)`` (a component of
    singular value ``s`` has an RMS amplitude of ``s / sqrt(h * w)``). A rank
    past the numerical rank of a plane (a flat or exactly low-rank image)
    would otherwise ask for steps finer than anything 8-bit output shows,
    and files many times larger. On Kodak and BSDS500 photographs no kept
    component of ``svdk bench``'s sweep comes near the floor.
    """
    h, w = shape
    return max(float(s[-1]), float(s[0]) * 2.0**-20, NEGLIGIBLE_AMPLITUDE * math.sqrt(h * w), 1e-12)


def component_exponents(s: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Per-component step exponents ``e_i``: ``step_i = step * 2 ** (-e_i / 8)``.

    A component's quantization error is weighted by its singular value, so
    at equal rate the least total error comes with steps in proportion to
    ``1 / sqrt(s_i)``: ``e_i = 4 * log2(s_i / s_ref)``, with ``s_ref`` the
    smallest kept value (:func:`reference_value`) at the plane's step. So no
    step is finer than ``2**-10`` of the plane's, and the integers stay far
    below the format's limit.
    """
    s = np.asarray(s, dtype=np.float64)
    ref = reference_value(s, shape)
    return np.clip(np.rint(4 * np.log2(np.maximum(s, ref) / ref)), 0, 80).astype(np.int64)


def component_steps(code: int, exps: np.ndarray) -> np.ndarray:
    return (code / 256.0) * np.exp2(-np.asarray(exps, dtype=np.float64) / 8)


def step_code(step: float) -> int:
    """A step as stored in the file (units of 1/256, at least 1)."""
    return max(1, min(0xFFFF, int(round(step * 256))))


class Plane:
    """One coded plane: its pixels, its SVD and helpers.

    The factors used for rank ``k`` depend on ``k`` alone, never on which
    ranks were tried before: they are the leading ``k`` triplets of the SVD
    computed for ``k``'s bucket (the next power of two from 16; or the exact
    decomposition once the randomized one would not save time). So a search
    that settles on ``k`` writes the same file as asking for ``k`` directly.
    """

    search_start = 16

    def __init__(self, data: np.ndarray, qstep: float | None = None):
        self.data = data
        self.shape = data.shape
        self.max_rank = min(self.shape)
        self.qstep = qstep
        self._svds: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.svd_seconds = 0.0

    def candidates(self) -> np.ndarray:
        """The ranks a search may choose: all of them."""
        return np.arange(1, self.max_rank + 1)

    @property
    def energy_total(self) -> float:
        return float(np.sum(self.data.astype(np.float64) ** 2))

    def _bucket(self, k: int) -> int:
        b = max(16, 1 << (int(k) - 1).bit_length())
        return self.max_rank if _exact_svd(b, self.max_rank) else b

    def _factors(self, k: int):
        b = self._bucket(k)
        if b not in self._svds:
            t0 = time.perf_counter()
            self._svds[b] = _svd(self.data, min(b, self.max_rank))
            self.svd_seconds += time.perf_counter() - t0
        u, s, vt = self._svds[b]
        return u[:, :k], s[:k], vt[:k]

    def singular_values(self, k: int) -> np.ndarray:
        return self._factors(k)[1]

    def all_singular_values(self) -> np.ndarray:
        """Every singular value, largest first, from the Gram matrix's eigenvalues (no vectors).

        On one BLAS thread, as the SVDs: two threads made ``eigvalsh`` of a
        512x512 matrix take 2.5 s instead of 25 ms on a busy two-core machine.
        """
        x = self.data.astype(np.float64)
        with _one_thread():
            gram = x.T @ x if x.shape[0] >= x.shape[1] else x @ x.T
            values = np.linalg.eigvalsh(gram)
        return np.sqrt(np.clip(values[::-1], 0, None))

    def step_code(self, k: int) -> int:
        if self.qstep is not None:
            return step_code(self.qstep)
        return step_code(auto_step(reference_value(self.singular_values(k), self.shape), self.shape))

    def quantize(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Integer DCT coefficients ``(A, B)`` for rank ``k``, step exponents and step code."""
        u, s, vt = self._factors(k)
        code = self.step_code(k)
        exps = component_exponents(s, self.shape)
        scale = (np.sqrt(s) / component_steps(code, exps))[:, None]
        a = np.rint(dct(u.T * scale, norm="ortho", axis=1)).astype(np.int64)
        b = np.rint(dct(vt * scale, norm="ortho", axis=1)).astype(np.int64)
        return a, b, exps, code

    def reconstruct(self, k: int) -> np.ndarray:
        a, b, exps, code = self.quantize(k)
        return reconstruct(a, b, code, exps)


def reconstruct(a: np.ndarray, b: np.ndarray, code: int, exps: np.ndarray | None = None) -> np.ndarray:
    """The float plane that integer factors decode to (shared by encoder and decoder).

    With ``exps`` (format predictor ``dct``), ``a`` and ``b`` are DCT
    coefficients with per-component steps; without, plain factors at one step.
    """
    if exps is None:
        step = code / 256.0
        with _one_thread():
            out = a.T.astype(np.float32) @ b.astype(np.float32)
        out *= np.float32(step * step)
        return out
    steps = component_steps(code, exps)[:, None]
    fa = idct(a * steps, norm="ortho", axis=1).astype(np.float32)
    fb = idct(b * steps, norm="ortho", axis=1).astype(np.float32)
    with _one_thread():
        return fa.T @ fb
