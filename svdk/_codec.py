"""Encoder and decoder: colour planes, truncated SVD, quantization.

The byte layout lives in :mod:`svdk.format`; the choice of ranks in
:mod:`svdk.policies`. This module turns pixels into integer factors and back.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.fft import dct, idct
from threadpoolctl import ThreadpoolController

from . import format as fmt
from ._errors import OptionError, SvdkWarning
from ._image import ImageLike, Pixels, load_image

__all__ = ["Encoded", "encode", "decode", "CHROMA_RANK_FRACTION"]

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
    return _ycbcr_planes_to_rgb8(y, cb - _OFFSET[1], cr - _OFFSET[2])


def _ycbcr_planes_to_rgb8(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """:func:`ycbcr_to_rgb` then :func:`to_uint8`, a channel at a time, in place.

    The same float32 products and sums as the matrix product (left to
    right); about twice as fast as stacking the planes and multiplying.
    """
    out = np.empty((*y.shape, 3), dtype=np.uint8)
    m = _YCBCR_TO_RGB
    for c in range(3):
        ch = m[c, 0] * y
        ch += m[c, 1] * cb
        ch += m[c, 2] * cr
        np.rint(ch, out=ch)
        np.clip(ch, 0, 255, out=ch)
        out[..., c] = ch
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


# ----------------------------------------------------------------------------
# encode / decode


@dataclass
class Encoded:
    """The result of :func:`svdk.encode`: the file and how it was made."""

    data: bytes
    width: int
    height: int
    mode: str
    subsampled: bool
    ranks: tuple[int, ...]
    policy: str
    reason: str
    evaluations: int = 0
    seconds: float = 0.0
    alpha: bool = False
    layout: str = "global"  # in the tiled layout, ranks count components per plane
    tile: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return len(self.data)

    @property
    def bpp(self) -> float:
        return 8.0 * len(self.data) / (self.width * self.height)

    @property
    def raw_bytes(self) -> int:
        channels = 1 if self.mode == "gray" else 3
        return self.width * self.height * (channels + (1 if self.alpha else 0))


class Session:
    """Everything a rank policy needs to know about one image being encoded."""

    def __init__(
        self, pixels: Pixels, mode: str, subsampled: bool, qstep: float | None, tile: int | None = None
    ):
        self.pixels = pixels
        self.mode = mode
        self.subsampled = subsampled
        self.tile = tile
        self.height, self.width = pixels.height, pixels.width
        data = to_planes(pixels.color, mode, subsampled)
        if tile:
            from ._tiled import TiledPlane, padded_pixels
            from .format import MAX_TILE_GRID

            if padded_pixels(self.height, self.width, tile) > MAX_TILE_GRID:
                raise OptionError(
                    f"a {self.width}x{self.height} image in {tile}x{tile} tiles needs a grid of "
                    f"{padded_pixels(self.height, self.width, tile)} pixels, above the limit of "
                    f"{MAX_TILE_GRID}; use a smaller tile size or the global layout"
                )
            self.planes = [TiledPlane(p, tile) for p in data]
        else:
            self.planes = [Plane(p, qstep) for p in data]
        self.evaluations = 0

    @property
    def layout(self) -> str:
        return "tiled" if self.tile else "global"

    @property
    def plane_names(self) -> tuple[str, ...]:
        return {"gray": ("gray",), "rgb": ("R", "G", "B"), "ycbcr": ("Y", "Cb", "Cr")}[self.mode]

    def max_ranks(self) -> tuple[int, ...]:
        return tuple(p.max_rank for p in self.planes)

    def family(self, k: int) -> tuple[int, ...]:
        """Ranks for all planes from one number: the policies' common scale.

        In the tiled layout the number is how many components luma keeps;
        the other planes keep every component above the same threshold
        (chroma: :data:`CHROMA_TAU_FRACTION` of it).
        """
        if self.tile:
            tau = self.planes[0].tau(k)
            scale = CHROMA_TAU_FRACTION if self.mode == "ycbcr" else 1.0
            return (k, *(p.count_at(tau * scale) for p in self.planes[1:]))
        if self.mode == "gray":
            return (k,)
        if self.mode == "rgb":
            return (k, k, k)
        c = chroma_rank(k, self.planes[1].shape)
        return (k, c, c)

    def check_ranks(self, ranks: tuple[int, ...]) -> tuple[int, ...]:
        names = self.plane_names
        if len(ranks) != len(self.planes):
            raise OptionError(
                f"mode {self.mode} has {len(self.planes)} plane(s) ({', '.join(names)}); "
                f"got {len(ranks)} rank(s)"
            )
        for name, k, plane in zip(names, ranks, self.planes):
            if not isinstance(k, (int, np.integer)) or not 1 <= k <= plane.max_rank:
                h, w = plane.shape
                raise OptionError(
                    f"rank of plane {name} must be in [1, {plane.max_rank}] for a {w}x{h} plane; "
                    f"got {k}"
                )
        return tuple(int(k) for k in ranks)

    def pack(self, ranks: tuple[int, ...]) -> bytes:
        factors, codes = [], []
        for plane, k in zip(self.planes, ranks):
            *data, code = plane.quantize(k)
            factors.append(tuple(data))
            codes.append(code)
        return fmt.pack(
            width=self.width,
            height=self.height,
            mode=self.mode,
            subsampled=self.subsampled,
            factors=factors,
            qsteps=codes,
            alpha=self.pixels.alpha,
            predictor="none" if self.tile else "dct",
            coder="lzma" if self.tile else "ans",
            layout=self.layout,
            tile=self.tile or 0,
        )


_SUBSAMPLING = {"4:2:0": True, "420": True, "4:4:4": False, "444": False, None: True}


def resolve_mode(pixels: Pixels, mode: str, subsampling: str | None) -> tuple[str, bool, list[str]]:
    notes = []
    if mode not in ("rgb", "ycbcr", "gray"):
        raise OptionError(f"unknown mode {mode!r}; choose 'rgb' or 'ycbcr' (or 'gray')")
    if subsampling not in _SUBSAMPLING:
        raise OptionError(f"unknown chroma subsampling {subsampling!r}; choose '4:2:0' or '4:4:4'")
    if pixels.is_gray:
        if mode != "gray":
            notes.append("the image is grayscale: coded as one plane")
        return "gray", False, notes
    if mode == "gray":
        raise OptionError("mode 'gray' needs a grayscale image; this one has colour")
    subsampled = mode == "ycbcr" and _SUBSAMPLING[subsampling]
    if subsampled and (pixels.height < 2 or pixels.width < 2):
        subsampled = False
        notes.append("the image is too thin for 4:2:0: chroma kept at full size")
    return mode, subsampled, notes


def encode(
    image: ImageLike,
    *,
    mode: str = "ycbcr",
    subsampling: str | None = "4:2:0",
    rank: int | None = None,
    ranks: tuple[int, ...] | list[int] | None = None,
    quality: str | tuple[str, float] | None = None,
    size: int | str | None = None,
    energy: float | None = None,
    policy: str | None = None,
    qstep: float | None = None,
    tiled: bool = False,
    tile_size: int | None = None,
) -> Encoded:
    """Compress ``image`` and report how; see :func:`svdk.compress` for options."""
    from . import policies

    t0 = time.perf_counter()
    pixels = load_image(image)
    mode, subsampled, notes = resolve_mode(pixels, mode, subsampling)
    if qstep is not None and (
        isinstance(qstep, bool)
        or not isinstance(qstep, (int, float, np.integer, np.floating))
        or not 1 / 256 <= float(qstep) <= 255
    ):
        raise OptionError(f"qstep must be a number in [1/256, 255]; got {qstep!r}")
    tile = None
    if tiled or tile_size is not None:
        from ._tiled import DEFAULT_TILE

        tile = DEFAULT_TILE if tile_size is None else tile_size
        if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or not (
            fmt.MIN_TILE <= tile <= fmt.MAX_TILE
        ):
            raise OptionError(f"tile size must be an integer in [{fmt.MIN_TILE}, {fmt.MAX_TILE}]; got {tile!r}")
        if qstep is not None:
            raise OptionError("qstep applies to the global layout; the tiled layout sets its steps itself")
    session = Session(pixels, mode, subsampled, qstep, tile)
    name, target = policies.select(
        rank=rank, ranks=ranks, quality=quality, size=size, energy=energy, policy=policy
    )
    choice = policies.get(name)(session, target)
    chosen = session.check_ranks(choice.ranks)
    data = choice.data if choice.data is not None else session.pack(chosen)
    notes = [*pixels.notes, *notes]
    result = Encoded(
        data=data,
        width=pixels.width,
        height=pixels.height,
        mode=mode,
        subsampled=subsampled,
        ranks=chosen,
        layout=session.layout,
        tile=session.tile or 0,
        policy=name,
        reason=choice.reason,
        evaluations=session.evaluations,
        alpha=pixels.alpha is not None,
        notes=notes,
    )
    if result.nbytes >= result.raw_bytes:
        msg = (
            f"the .svdk file ({result.nbytes} bytes) is not smaller than the raw pixels "
            f"({result.raw_bytes} bytes): at these ranks SVD does not compress this image; "
            "use lower ranks or a lossless format such as PNG"
        )
        warnings.warn(msg, SvdkWarning, stacklevel=2)
        result.notes.append(msg)
    result.seconds = time.perf_counter() - t0
    return result


def decode(data: bytes | bytearray | memoryview, *, max_rank: int | None = None) -> np.ndarray:
    """Decode .svdk bytes to a uint8 image; see :func:`svdk.decompress`."""
    if max_rank is not None and (
        isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1
    ):
        raise OptionError(f"max_rank must be a positive integer; got {max_rank!r}")
    header, factors, alpha = fmt.unpack(data, max_rank=max_rank)
    if header.layout == "global":
        planes = [reconstruct(*f[:2], rec.qstep, *f[2:]) for f, rec in zip(factors, header.planes)]
    else:
        from ._tiled import decode_tiled_plane

        planes = [
            decode_tiled_plane(*f, rec.qstep, shape, header.tile, max_rank=max_rank)
            for f, rec, shape in zip(factors, header.planes, header.shapes)
        ]
    image = from_planes(planes, header.mode, header.height, header.width)
    if alpha is not None:
        if image.ndim == 2:
            image = image[..., None]
        image = np.concatenate([image, alpha[..., None]], axis=-1)
    return image
