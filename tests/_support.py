"""Shared helpers for the svdk tests: test images and an independent reading
of the .svdk specification (the docstring of :mod:`svdk.format`).

The reader and writer here are written from the specification, not from
svdk's code, so that tests compare two implementations: one struct layout,
CRC, zlib, byte planes, zigzag and delta coding, the band models of entropy
coder 2 (decoded with constriction, the coder the spec names), the DCT of
predictor 2, and a float64 decoder for
the modes whose decoding the specification defines completely (gray, rgb
and ycbcr 4:4:4; the 4:2:0 upsampling filter is not part of the spec).
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parents[1].parent / "shared" / "data"
KODAK = DATA / "kodak"
_MISSING = (
    "needs the Kodak images at {path}; put kodim01.png ... kodim24.png from the Kodak "
    "Lossless True Color Image Suite (http://r0k.us/graphics/kodak/, mirrored in GitHub "
    "coodie/quant under images/kodim) there, as described in ../shared/data/README.md"
)


# ----------------------------------------------------------------------------
# images


def smooth_image(height: int, width: int, channels: int = 3, *, seed: int = 0,
                 noise: float = 12.0) -> np.ndarray:
    """A uint8 gradient with some texture and noise: what photos look like to an SVD.

    ``channels`` is 1 (returns ``(H, W)``), 2 (gray + alpha), 3 or 4 (RGBA);
    any alpha channel is a non-constant ramp with a hole of 0 and a patch of 255.
    """
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, height)[:, None]
    x = np.linspace(0.0, 1.0, width)[None, :]
    colour = 1 if channels in (1, 2) else 3
    planes = []
    for c in range(colour):
        base = 40 + 150 * (0.6 * y + 0.4 * x) + 30 * np.sin(6 * x + 2 * c) * np.cos(4 * y)
        planes.append(base + rng.normal(0.0, noise, (height, width)))
    if channels in (2, 4):
        alpha = 255 * (0.3 + 0.7 * x * y) + np.zeros((height, width))
        alpha[: height // 3, : width // 3] = 0
        alpha[-(height // 4 or 1) :, -(width // 4 or 1) :] = 255
        planes.append(alpha)
    out = np.clip(np.rint(np.stack(planes, axis=-1)), 0, 255).astype(np.uint8)
    return out[..., 0] if channels == 1 else out


def kodak(name: str = "kodim05") -> np.ndarray:
    """A Kodak image as a uint8 RGB array; skips the test when the data is missing."""
    path = KODAK / f"{name}.png"
    if not path.is_file():
        pytest.skip(_MISSING.format(path=KODAK))
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def kodak_path(name: str = "kodim05") -> Path:
    path = KODAK / f"{name}.png"
    if not path.is_file():
        pytest.skip(_MISSING.format(path=KODAK))
    return path


def png_bytes(array: np.ndarray, **kw) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG", **kw)
    return buf.getvalue()


# ----------------------------------------------------------------------------
# the file format, from the specification

FIXED = struct.Struct("<4sBBHIIBBBBB3sI")
PLANE = struct.Struct("<HHB3s")
CRC = struct.Struct("<I")
MODE_PLANES = {0: 1, 1: 3, 2: 3}


@dataclass
class Plane:
    rank: int
    qstep: int  # units of 1/256
    sample_bytes: int
    reserved: bytes = b"\0\0\0"


@dataclass
class SvdkFile:
    """Every field of an .svdk file, as the specification lays them out."""

    magic: bytes
    major: int
    minor: int
    header_length: int
    width: int
    height: int
    mode: int
    flags: int
    nplanes: int
    coder: int
    predictor: int
    reserved: bytes
    payload_length: int
    planes: list[Plane] = field(default_factory=list)
    extra_header: bytes = b""  # header bytes after the plane records
    payload: bytes = b""
    crc: int = 0

    @classmethod
    def parse(cls, data: bytes) -> "SvdkFile":
        fixed = FIXED.unpack_from(data, 0)
        f = cls(*fixed)
        f.planes = [Plane(*PLANE.unpack_from(data, FIXED.size + PLANE.size * i))
                    for i in range(f.nplanes)]
        end = FIXED.size + PLANE.size * f.nplanes
        f.extra_header = bytes(data[end : f.header_length])
        f.payload = bytes(data[f.header_length : f.header_length + f.payload_length])
        (f.crc,) = CRC.unpack_from(data, len(data) - 4)
        return f

    def to_bytes(self, *, fix_lengths: bool = True, fix_crc: bool = True) -> bytes:
        """Serialise; by default header_length, payload_length and the CRC follow the content."""
        f = self
        if fix_lengths:
            f = replace(
                self,
                header_length=FIXED.size + PLANE.size * len(self.planes) + len(self.extra_header),
                payload_length=len(self.payload),
            )
        head = FIXED.pack(f.magic, f.major, f.minor, f.header_length, f.width, f.height, f.mode,
                          f.flags, f.nplanes, f.coder, f.predictor, f.reserved, f.payload_length)
        head += b"".join(PLANE.pack(p.rank, p.qstep, p.sample_bytes, p.reserved) for p in f.planes)
        body = head + f.extra_header + f.payload
        crc = zlib.crc32(body) if fix_crc else f.crc
        return body + CRC.pack(crc)

    @property
    def subsampled(self) -> bool:
        return bool(self.flags & 1)

    @property
    def alpha(self) -> bool:
        return bool(self.flags & 2)

    def plane_shapes(self) -> list[tuple[int, int]]:
        h, w = self.height, self.width
        if self.mode == 0:
            return [(h, w)]
        if self.subsampled:
            c = (-(-h // 2), -(-w // 2))
            return [(h, w), c, c]
        return [(h, w)] * 3

    def image_shape(self) -> tuple[int, ...]:
        channels = (1 if self.mode == 0 else 3) + (1 if self.alpha else 0)
        return (self.height, self.width) if channels == 1 else (self.height, self.width, channels)

    def raw(self) -> bytes:
        return zlib.decompress(self.payload)

    def with_raw(self, raw: bytes) -> "SvdkFile":
        return replace(self, payload=zlib.compress(raw, 6))


def forge(data: bytes, **changes) -> bytes:
    """``data`` with header fields replaced; lengths kept as given, CRC recomputed."""
    f = SvdkFile.parse(data)
    plane_changes = changes.pop("plane0", None)
    f = replace(f, **changes)
    if plane_changes:
        f.planes = [replace(f.planes[0], **plane_changes), *f.planes[1:]]
    return f.to_bytes(fix_lengths=False)


def _unzigzag(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.int64)
    return np.where(z % 2 == 0, z // 2, -(z + 1) // 2)


def _bands(n: int) -> list[int]:
    return sorted({0, n, n >> 1, n >> 2, n >> 3, n >> 4})


@lru_cache(maxsize=None)
def level_table(level: int) -> tuple[int, np.ndarray]:
    """Radius and frequencies of ``-R .. R`` for one band level, per the specification."""
    from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext

    with localcontext() as ctx:
        ctx.prec = 40
        scale = Decimal(2) ** (Decimal(level) / 4 - Decimal("2.5"))
        r = min(4096, max(2, int((16 * scale).to_integral_value(ROUND_CEILING)) + 1))
        m = int((2**32 * (Decimal(-1) / scale).exp()).to_integral_value(ROUND_FLOOR))
    f = [2**40]
    for _ in range(r):
        f.append(max(1, (f[-1] * m) >> 32))
    return r, np.array(f[:0:-1] + f, dtype=np.float64)


def ans_parts(data: bytes) -> tuple[bytes, np.ndarray]:
    """Entropy coder 2: the decompressed side data and the rANS words."""
    f = SvdkFile.parse(data)
    (n,) = struct.unpack_from("<I", f.payload, 0)
    return zlib.decompress(f.payload[4 : 4 + n]), np.frombuffer(f.payload[4 + n :], "<u4").astype(np.uint32)


def read_varints(data: bytes) -> list[int]:
    """Unsigned LEB128 numbers (the escapes of entropy coders 2 and 3)."""
    out, v, shift = [], 0, 0
    for byte in data:
        v |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            out.append(v)
            v, shift = 0, 0
    return out


def _ans_factors(f: "SvdkFile", data: bytes):
    import constriction

    side, words = ans_parts(data)
    pos, specs = 0, []
    for (h, w), p in zip(f.plane_shapes(), f.planes):
        exps = np.frombuffer(side, np.uint8, p.rank, pos).astype(np.int64)
        pos += p.rank
        levels = []
        for n in (h, w):
            nb = len(_bands(n)) - 1
            levels.append(np.frombuffer(side, np.uint8, p.rank * nb, pos).reshape(p.rank, nb))
            pos += p.rank * nb
        specs.append((exps, levels, (h, w), p.rank))
    if f.alpha:
        pos += f.width * f.height
    escapes = iter(read_varints(side[pos:]))
    coder = constriction.stream.stack.AnsCoder(words)
    out = []
    for exps, levels, (h, w), k in specs:
        mats = []
        for n, lv in zip((h, w), levels):
            edges = _bands(n)
            m = np.zeros((k, n), dtype=np.int64)
            for i in range(k):
                for (a, b), level in zip(zip(edges[:-1], edges[1:]), lv[i]):
                    r, freq = level_table(int(level))
                    x = coder.decode(constriction.stream.model.Categorical(freq, perfect=False), b - a)
                    x = x.astype(np.int64) - r
                    for j in np.flatnonzero(np.abs(x) == r):
                        x[j] += np.sign(x[j]) * next(escapes)
                    m[i, a:b] = x
            mats.append(m)
        out.append((mats[0], mats[1], exps))
    assert coder.is_empty() and next(escapes, None) is None
    return out


def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II as a matrix: coefficients = C @ x, x = C.T @ coefficients."""
    k = np.arange(n)[:, None]
    c = np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    c[0] /= np.sqrt(2.0)
    return c


def factors(data: bytes) -> list[tuple[np.ndarray, ...]]:
    """The integer factors ``(A, B)`` of every plane, read per the specification.

    With entropy coder 2: ``(A, B, exponents)``, A and B holding DCT coefficients.
    """
    f = SvdkFile.parse(data)
    if f.coder == 2:
        return _ans_factors(f, data)
    raw = f.raw()
    out, pos = [], 0
    for (h, w), p in zip(f.plane_shapes(), f.planes):
        n = p.rank * (h + w)
        chunk = np.frombuffer(raw, np.uint8, n * p.sample_bytes, pos)
        pos += n * p.sample_bytes
        # byte planes: least significant bytes of every sample first
        z = np.zeros(n, dtype=np.int64)
        for b in range(p.sample_bytes):
            z += chunk[b * n : (b + 1) * n].astype(np.int64) << (8 * b)
        v = _unzigzag(z)
        a = v[: p.rank * h].reshape(p.rank, h)
        bmat = v[p.rank * h :].reshape(p.rank, w)
        if f.predictor == 1:
            a, bmat = np.cumsum(a, axis=1), np.cumsum(bmat, axis=1)
        out.append((a, bmat))
    return out


def alpha_plane(data: bytes) -> np.ndarray | None:
    f = SvdkFile.parse(data)
    if not f.alpha:
        return None
    if f.coder == 2:
        side, _ = ans_parts(data)
        fixed = sum(p.rank * (len(_bands(h)) + len(_bands(w)) - 1) for (h, w), p in zip(f.plane_shapes(), f.planes))
        return np.frombuffer(side, np.uint8, f.width * f.height, fixed).reshape(f.height, f.width)
    raw = f.raw()
    return np.frombuffer(raw[len(raw) - f.width * f.height :], np.uint8).reshape(f.height, f.width)


def plane_values(data: bytes, max_rank: int | None = None) -> list[np.ndarray]:
    """Every decoded plane in float64, before colour conversion, per the specification."""
    f = SvdkFile.parse(data)
    planes = []
    for fac, p, (h, w) in zip(factors(data), f.planes, f.plane_shapes()):
        j = p.rank if max_rank is None else min(p.rank, max_rank)
        step = p.qstep / 256.0
        a, b = fac[0][:j].astype(np.float64), fac[1][:j].astype(np.float64)
        if len(fac) == 3:  # predictor 2: DCT coefficients, one step per component
            steps = step * 2.0 ** (-fac[2][:j] / 8.0)
            a = (steps[:, None] * a) @ dct_matrix(h)
            b = (steps[:, None] * b) @ dct_matrix(w)
            planes.append(a.T @ b)
        else:
            planes.append(step * step * (a.T @ b))
    return planes


def reference_decode(data: bytes, max_rank: int | None = None) -> np.ndarray:
    """Decode gray, rgb and ycbcr 4:4:4 files in float64, straight from the spec."""
    f = SvdkFile.parse(data)
    if f.subsampled:
        raise NotImplementedError("the spec does not define the 4:2:0 upsampling filter")
    planes = plane_values(data, max_rank)
    if f.mode == 0:
        img = planes[0]
    elif f.mode == 1:
        img = np.stack(planes, axis=-1)
    else:  # JPEG/JFIF full-range BT.601
        y, cb, cr = planes[0], planes[1] - 128.0, planes[2] - 128.0
        img = np.stack(
            [y + 1.402 * cr, y - 0.344136286 * cb - 0.714136286 * cr, y + 1.772 * cb], axis=-1
        )
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    alpha = alpha_plane(data)
    if alpha is not None:
        img = np.concatenate([img if img.ndim == 3 else img[..., None], alpha[..., None]], axis=-1)
    return img


# ----------------------------------------------------------------------------
# metrics, written out in plain numpy


def psnr_reference(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim_reference(a: np.ndarray, b: np.ndarray, win: int = 7) -> float:
    """Mean SSIM (Wang et al. 2004) with a ``win`` x ``win`` uniform window.

    scikit-image's convention: sample (co)variances (divided by N - 1), K1 =
    0.01, K2 = 0.03, L = 255, only windows that lie fully inside the image,
    and the mean over channels for colour images.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.ndim == 3:
        per_channel = [ssim_reference(a[..., c], b[..., c], win) for c in range(a.shape[2])]
        return float(np.mean(per_channel))
    from numpy.lib.stride_tricks import sliding_window_view

    wa = sliding_window_view(a, (win, win)).reshape(-1, win * win)
    wb = sliding_window_view(b, (win, win)).reshape(-1, win * win)
    ma, mb = wa.mean(axis=1), wb.mean(axis=1)
    n = win * win
    va = ((wa - ma[:, None]) ** 2).sum(axis=1) / (n - 1)
    vb = ((wb - mb[:, None]) ** 2).sum(axis=1) / (n - 1)
    cov = ((wa - ma[:, None]) * (wb - mb[:, None])).sum(axis=1) / (n - 1)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
    return float(s.mean())


def ms_ssim_reference(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM as Wang, Simoncelli and Bovik define it (Asilomar 2003), in float64.

    Written from the paper and the authors' published MATLAB code
    (``ssim_index.m``, ``msssim.m``), not from TensorFlow's: an 11x11
    Gaussian window of sigma 1.5 normalised to sum 1, local statistics over
    the windows that lie inside the image ('valid'), biased (co)variances,
    K1 = 0.01, K2 = 0.03, L = 255; five scales with the weights 0.0448,
    0.2856, 0.3001, 0.2363, 0.1333, the contrast-structure term at every
    scale and the luminance term at the last, each the mean of its map; the
    next scale is the 2x2 mean filter with symmetric borders sampled at
    every second pixel (``imfilter(img, ones(2)/4, 'symmetric')`` then
    ``img(1:2:end, 1:2:end)``). A colour image gives the mean of its
    channels' MS-SSIM.
    """
    from scipy.signal import correlate2d

    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.ndim == 3:
        return float(np.mean([ms_ssim_reference(a[..., c], b[..., c]) for c in range(a.shape[2])]))
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    weights = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]

    def local(x):
        return correlate2d(x, window, mode="valid")

    def halve(x):
        h, w = x.shape
        x = np.pad(x, ((0, 1), (0, 1)), mode="symmetric")  # the 2x2 filter reads one past the end
        mean = (x[:-1, :-1] + x[1:, :-1] + x[:-1, 1:] + x[1:, 1:]) / 4
        return mean[0:h:2, 0:w:2]

    product = 1.0
    for scale, weight in enumerate(weights):
        mx, my = local(a), local(b)
        vx, vy, cxy = local(a * a) - mx**2, local(b * b) - my**2, local(a * b) - mx * my
        cs = (2 * cxy + c2) / (vx + vy + c2)
        if scale < len(weights) - 1:
            product *= cs.mean() ** weight
            a, b = halve(a), halve(b)
        else:
            luminance = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
            product *= (luminance * cs).mean() ** weight
    return float(product)


def luma(rgb: np.ndarray) -> np.ndarray:
    """JFIF luma of an RGB image, as float64."""
    rgb = np.asarray(rgb, np.float64)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


# ----------------------------------------------------------------------------
# entropy coder 3 (tiled layout, format 3.0), symbol by symbol from the spec

_CTX_THRESHOLDS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
CTX_PARAMS = 38  # + 4 T bytes of model parameters per plane


def _ctx_bucket(c: int) -> int:
    return sum(1 for t in _CTX_THRESHOLDS if t <= c)


@lru_cache(maxsize=None)
def flag_table(level: int) -> np.ndarray:
    """Frequencies of 0 and 1 for a binary level, per the specification."""
    from decimal import ROUND_HALF_EVEN, Decimal, localcontext

    with localcontext() as ctx:
        ctx.prec = 40
        p = int((Decimal(65536) / 2 * Decimal(2) ** (Decimal(-abs(level - 24)) / 2)).to_integral_value(ROUND_HALF_EVEN))
    p = min(max(p, 1), 32768)
    one = p if level <= 24 else 65536 - p
    return np.array([65536 - one, one], dtype=np.float64)


def tiled_ctx_integers(data: bytes) -> list[tuple]:
    """``(ranks, means, A, B)`` of every plane of a coder-3 file, one symbol at a
    time as the specification describes them; ``A[t][i]`` is tile ``t``'s
    component ``i`` (a list of T integers)."""
    import constriction

    f = SvdkFile.parse(data)
    tile = f.reserved[1]
    side, words = ans_parts(data)
    per = CTX_PARAMS + 4 * tile
    params = []
    for i in range(len(f.planes)):
        v = list(side[i * per : (i + 1) * per])
        params.append({"dc": v[:16], "flag": v[16:37], "slope": v[37],
                       "base0": [v[38 : 38 + tile], v[38 + tile : 38 + 2 * tile]],
                       "base": [v[38 + 2 * tile : 38 + 3 * tile], v[38 + 3 * tile : 38 + 4 * tile]]})
    pos = per * len(f.planes) + (f.width * f.height if f.alpha else 0)
    escapes = iter(read_varints(side[pos:]))
    coder = constriction.stream.stack.AnsCoder(words)

    def read(levels: list[int], binary: bool = False) -> list[int]:
        """One pass: symbols grouped by level, levels ascending, in order within a level."""
        out = [0] * len(levels)
        for i in sorted(range(len(levels)), key=lambda i: (levels[i], i)):
            if binary:
                out[i] = int(coder.decode(constriction.stream.model.Categorical(flag_table(levels[i]), perfect=False)))
                continue
            r, freq = level_table(levels[i])
            x = int(coder.decode(constriction.stream.model.Categorical(freq, perfect=False))) - r
            if abs(x) == r:
                x += (1 if x > 0 else -1) * next(escapes)
            out[i] = x
        return out

    planes = []
    for (h, w), p, prm in zip(f.plane_shapes(), f.planes, params):
        ty, tx = -(-h // tile), -(-w // tile)
        n = ty * tx

        def neighbours(t):
            y, x = divmod(t, tx)
            return [yy * tx + xx for yy, xx in ((y, x - 1), (y, x + 1), (y - 1, x), (y + 1, x))
                    if 0 <= yy < ty and 0 <= xx < tx]

        ranks = [0] * n
        a = [[] for _ in range(n)]
        b = [[] for _ in range(n)]
        for i in range(p.rank):
            if i == 0:
                flag = [0] * n
                black = [t for t in range(n) if sum(divmod(t, tx)) % 2 == 0]
                white = [t for t in range(n) if sum(divmod(t, tx)) % 2 == 1]
                for t, fl in zip(black, read([prm["flag"][0]] * len(black), binary=True)):
                    flag[t] = fl
                levels = [prm["flag"][1 + sum(flag[u] for u in neighbours(t))] for t in white]
                for t, fl in zip(white, read(levels, binary=True)):
                    flag[t] = fl
                chosen = [t for t in range(n) if flag[t]]
            else:
                cands = [t for t in range(n) if ranks[t] >= i]
                levels = []
                for t in cands:
                    norm = sum(abs(c) for c in a[t][i - 1]) + sum(abs(c) for c in b[t][i - 1])
                    around = sum(1 for u in neighbours(t) if ranks[u] >= i)
                    levels.append(prm["flag"][6 + min(14, _ctx_bucket(norm) + around)])
                chosen = [t for t, fl in zip(cands, read(levels, binary=True)) if fl]
            for t in chosen:
                ranks[t] = i + 1
            if not chosen:
                break
            for fac, store in ((0, a), (1, b)):
                vecs = {t: [] for t in chosen}
                for j in range(tile):
                    levels = []
                    for t in chosen:
                        if fac == 1:
                            nsum = sum(abs(c) for c in a[t][i])
                        elif i == 0:
                            nsum = 0
                        else:
                            nsum = (sum(abs(c) for c in a[t][i - 1]) + sum(abs(c) for c in b[t][i - 1])) // 2
                        c = nsum // (j + 1)
                        if j >= 1:
                            c += 2 * abs(vecs[t][j - 1])
                        if j >= 2:
                            c += abs(vecs[t][j - 2])
                        bk = min(_ctx_bucket(c), 10)
                        lv = prm["base0"][fac][j] if bk == 0 else min(79, prm["base"][fac][j] + (prm["slope"] * bk) // 8)
                        levels.append(lv)
                    for t, x in zip(chosen, read(levels)):
                        vecs[t].append(x)
                for t in chosen:
                    store[t].append(vecs[t])
        d = read([prm["dc"][min(15, ranks[t] + sum(ranks[u] for u in neighbours(t)))] for t in range(n)])
        means = [0] * n
        for t in range(n):
            y, x = divmod(t, tx)
            if y == 0:
                pred = means[t - 1] if x else 0
            elif x == 0:
                pred = means[t - tx]
            else:
                pred = means[t - 1] + (means[t - tx] - means[t - tx - 1]) // 2
            means[t] = pred + d[t]
        planes.append((ranks, means, a, b))
    assert coder.is_empty() and next(escapes, None) is None
    return planes


def deblock_reference(plane: np.ndarray, tile: int, threshold: float) -> np.ndarray:
    """The deblocking filter of format 3.0, pixel by pixel (float32, as the spec says)."""
    x = plane.astype(np.float32).copy()
    for view in (x, x.T):
        before = view.copy()
        h, w = view.shape
        for c in range(tile, w, tile):
            for r in range(h):
                d = before[r, c] - before[r, c - 1]
                if abs(d) < threshold:
                    view[r, c - 1] += d * np.float32(0.375)
                    view[r, c] -= d * np.float32(0.375)
                    view[r, c - 2] += d * np.float32(0.125)
                    if c + 1 < w:
                        view[r, c + 1] -= d * np.float32(0.125)
    return x
