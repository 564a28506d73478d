"""The ``.svdk`` container: this module owns every byte of it.

This docstring is the specification of format version 3.0. Version 3.0
adds entropy coder 3 and the deblocking filter, both for the tiled layout
only; version 2.0 is the same without them, and version 1.0 is version 2.0
without entropy coder 2 and predictor 2. Readers read all three. A writer
marks a file with the lowest version that has what the file uses: global
files are 2.0, tiled files with coder 3 are 3.0. All integers are
little-endian and unsigned unless said otherwise.

File
----
=========  ======================  =========================================
offset     size                    content
=========  ======================  =========================================
0          ``header_length``       header (below)
H          ``payload_length``      payload: one compressed stream (below)
H + P      4                       CRC-32 (``zlib.crc32``) of bytes
                                   ``[0, H + P)``
=========  ======================  =========================================

The file ends right after the CRC; trailing bytes are an error.

Header
------
======  ====  =====  ========================================================
offset  size  type   meaning
======  ====  =====  ========================================================
0       4     bytes  magic ``b"SVDK"``
4       1     u8     major version: 3 or 2 (this reader also reads
                     version 1, which has no coder 2 or predictor 2). A
                     reader refuses a major it does not know.
5       1     u8     minor version: 0. A newer minor only appends header
                     fields, which an older reader skips via header_length.
6       2     u16    header_length: bytes from offset 0 to the payload;
                     at least ``28 + 8 * planes``
8       4     u32    width of the image in pixels, >= 1
12      4     u32    height of the image in pixels, >= 1
16      1     u8     colour mode: 0 gray (1 plane), 1 rgb (3 planes R, G, B),
                     2 ycbcr (3 planes Y, Cb, Cr; JPEG's full-range BT.601)
17      1     u8     flags: bit 0 chroma subsampled 4:2:0 (ycbcr only),
                     bit 1 an alpha plane follows the factors; other bits 0
18      1     u8     number of planes: 1 for gray, 3 otherwise
19      1     u8     entropy coder of the payload: 0 zlib, 1 LZMA2 (raw
                     stream, filter options: preset 9, dictionary 8 MiB),
                     2 rANS with band models (global layout with predictor
                     2 only; below), 3 rANS with context models (tiled
                     layout, version 3 only; below)
20      1     u8     predictor: 0 none, 1 delta along each factor vector,
                     2 DCT of each factor vector with per-component steps
                     (global layout only, with coder 2; 0 for tiled)
21      1     u8     layout: 0 global (one SVD per plane), 1 tiled (one SVD
                     per tile, below)
22      1     u8     tile size T: 0 for global; 4 to 64 for tiled
23      1     -      reserved, zero
24      4     u32    payload_length: bytes of the compressed payload
28      8*n   -      one plane record per plane, in plane order:
                     u16 rank k: global 1 <= k <= min(plane height, plane
                     width); tiled 0 <= k <= T, the largest tile rank,
                     u16 quantization step in units of 1/256 (>= 1),
                     u8 bytes per sample: 1, 2 or 4 (1 with coders 2
                     and 3),
                     u8 deblocking strength ``c`` (tiled layout, version
                     3; zero otherwise; below),
                     2 bytes reserved, zero
======  ====  =====  ========================================================

Plane sizes follow from the header: every plane is ``height x width``,
except the Cb and Cr planes of a 4:2:0 file, which are
``ceil(height / 2) x ceil(width / 2)``.

Colour: ycbcr is JPEG's full-range BT.601 (``Y = 0.299 R + 0.587 G + 0.114 B``,
``Cb = 128 - 0.168736 R - 0.331264 G + 0.5 B``,
``Cr = 128 + 0.5 R - 0.418688 G - 0.081312 B``; the decoder applies the exact
inverse matrix). A 4:2:0 chroma sample is the mean of a 2x2 block (an odd
last row or column repeated); the decoder upsamples it bilinearly with
weights 3/4 and 1/4 between the two nearest samples in each direction,
repeating the edge samples, then crops to the image size. Decoded planes are
converted to RGB in float32, rounded to the nearest integer and clipped to
[0, 255].

Payload (global layout)
-----------------------
The payload is the compressed stream of the concatenation of, for each plane
in order:

* the luma-side factor ``A``: ``k`` rows of ``plane height`` integers, then
* the other factor ``B``: ``k`` rows of ``plane width`` integers,

and then, when flag bit 1 is set, the alpha plane as ``height x width``
bytes, row-major. Row ``i`` of ``A`` and ``B`` is singular component ``i``,
in order of decreasing singular value, with the singular value folded in
equally: ``A[i] = round(sqrt(s_i) * u_i / step)`` and
``B[i] = round(sqrt(s_i) * v_i / step)``. The decoded plane is
``step**2 * A[:j].T @ B[:j]`` for any ``j <= k``: a prefix of the components
is the best rank-``j`` image the file holds (progressive decoding).

Integers are stored as follows: with predictor 1 each row is replaced by its
first element followed by the differences of consecutive elements; every
value is zigzag-mapped to an unsigned integer (``0, -1, 1, -2, ...`` to
``0, 1, 2, 3, ...``) and written in ``bytes per sample`` bytes. When that
is more than 1, the plane's samples are split into byte planes: all the
least significant bytes of the plane first, then the next, and so on.

Payload (global layout, coder 2, predictor 2)
----------------------------------------------
Component ``i`` of a plane has its own quantization step ``step_i = step *
2 ** (-e_i / 8)`` (``e_i`` a byte; the encoder sets ``step_i`` in
proportion to ``1 / sqrt(s_i)``, which spends bits where a component's
error weighs most). The integers are ``A[i] = round(DCT(sqrt(s_i) * u_i) /
step_i)`` and ``B[i] = round(DCT(sqrt(s_i) * v_i) / step_i)``, with DCT the
orthonormal DCT-II along the vector (every integer, and every escape number
below, is less than ``2 ** 40`` in magnitude); the decoded plane is
``IDCT(step_i * A[i]).T @ IDCT(step_i * B[i])`` summed over ``i``.

The payload is: a u32 ``side_length``; ``side_length`` bytes of zlib
stream (the side data); then rANS words, u32 each, to the end of the
payload. The side data hold, for each plane in order, ``e_0 .. e_{k-1}``,
then one level byte per band of each row of ``A``, then of ``B`` (row by
row); then the alpha plane when flag bit 1 is set; then the escapes, as
unsigned LEB128 numbers, to the end.

A row of ``n`` integers is cut into bands at ``0, n >> 4, n >> 3, n >> 2,
n >> 1, n`` (repeated boundaries give one band). A band of level ``L`` (0
to 79) holds symbols ``x`` in ``[-R, R]`` with ``R = min(4096, max(2,
ceil(16 * 2 ** (L / 4 - 2.5)) + 1))``, coded with frequencies ``f(|x|)``:
``f(0) = 2 ** 40`` and ``f(j + 1) = max(1, (f(j) * m) >> 32)`` with ``m =
floor(2 ** 32 * exp(-1 / 2 ** (L / 4 - 2.5)))``, evaluated exactly (40
significant digits). The symbols are decoded with constriction's
``stack.AnsCoder`` and ``model.Categorical(f, perfect=False)`` (symbol
``x + R``), plane by plane, ``A`` before ``B``, row by row, band by band;
all the words must be used. The coder starts, and a decoder that has used
all the words is, in its empty state, where the symbol ``x = -R`` costs no
bits: once the words are used up, every further symbol decodes as ``-R``.
A decoded ``x = +-R`` is an escape: the value is ``x + sign(x) * E``, with
``E`` the next escape number; every escape number must be used, and a
value of ``2 ** 40`` or more in magnitude is an error.

Payload (tiled layout)
----------------------
A plane of ``h x w`` is cut into ``ceil(h / T) x ceil(w / T)`` tiles, row by
row (the last ones padded by repeating the edge, cropped after decoding).
For each plane in order, the stream holds:

* the tile ranks, one byte per tile (each at most the plane's rank ``k``);
* then, written like the global layout's integers (zigzag, ``bytes per
  sample``, byte planes): the tile means, each predicted from the tile to
  its left (the first of a row from the tile above) and stored as the
  difference, followed by the ``A`` and then the ``B`` coefficients:
  component-major, i.e. for ``i = 0 .. T - 1``, for each tile whose rank
  exceeds ``i``, the ``T`` coefficients of its component ``i``.

Tile ``t`` decodes to ``step * mean_t + (step * IDCT(A_t)).T @ (step *
IDCT(B_t))``, with ``IDCT`` the orthonormal DCT-III along each coefficient
vector (the inverse of the DCT-II applied by the encoder) and the means
rebuilt from the differences. The alpha plane, if any, follows the planes
as in the global layout.

Deblocking (version 3): when a plane's strength ``c`` is not zero, the
decoded plane (float32, before rounding) is filtered across the tile
borders with threshold ``t = c / 4 * step``: first every vertical border
(columns ``x = T, 2T, ...`` inside the plane), then every horizontal one,
each pass on the result of the previous. At a border with pixels ``p1, p0
| q0, q1`` in a row (a column for horizontal borders), ``d = q0 - p0``; if
``|d| < t``, ``p0 += 3 d / 8``, ``q0 -= 3 d / 8``, ``p1 += d / 8`` and, when
it is inside the plane, ``q1 -= d / 8``, all from the values before the
pass. The encoder chooses ``c`` per plane (svdk: the candidate that brings
the plane closest to the original in squared error).

Payload (tiled layout, coder 3)
-------------------------------
The tile ranks, tile means and coefficients above are coded with the level
models of coder 2, each symbol's level set by a context computed from what
was decoded before it; the ranks as flags with binary models. The payload
is: a u32 ``side_length``; ``side_length`` bytes of zlib stream (the side
data); then rANS words, u32 each, to the end. The side data hold, for each
plane in order, its model parameters (``38 + 4 T`` bytes: 70 for T = 8): 16
level bytes for the contexts of the tile means, 21 binary level bytes for
the flag contexts, a slope byte ``s`` (at most 40), then ``base0[f][j]`` and
then ``base[f][j]``, each for ``f`` = ``A``, ``B`` and ``j = 0 .. T-1``
(levels below 80, binary levels below 49); then the alpha plane when flag
bit 1 is set; then the escapes as in coder 2.

A context ``c >= 0`` falls in octave bucket ``b``: the number of the
thresholds 1, 2, 4, 8, ..., 512 that are ``<= c``, capped at 10. A
coefficient of factor ``f``, position ``j``, in bucket ``b`` has level
``base0[f][j]`` if ``b = 0``, else ``min(79, base[f][j] + floor(s * b /
8))``. A flag of binary level ``l`` is coded with constriction's
``Categorical([65536 - f1, f1], perfect=False)``: with ``p = round(65536 *
0.5 * 2 ** (-|l - 24| / 2))`` (half to even) clipped to ``[1, 32768]``, ``f1
= p`` for ``l <= 24`` and ``65536 - p`` above. Plane by plane, with ``k`` the
plane's rank in the header:

1. for each component ``i = 0 .. k - 1``:

   a. a flag for every tile whose rank is at least ``i`` (every tile for
      ``i = 0``): 1 if the tile's rank exceeds ``i``. For ``i = 0``, first
      the tiles with ``x + y`` even in raster order (context 0), then the
      others in raster order (context ``1 + m``, ``m`` the number of their
      four neighbours flagged 1). For ``i > 0``, one pass in raster order,
      context ``6 + min(14, b(n) + m)`` with ``n`` the summed magnitudes of
      the tile's ``A`` and ``B`` integers of component ``i - 1`` and ``m``
      the number of its four neighbours (none outside the grid) whose rank
      is at least ``i``. A tile's rank is the number of its flags of 1; if
      no tile is flagged, go to step 2;
   b. over the flagged tiles in raster order, factor ``A`` then ``B``, for
      ``j = 0 .. T-1`` a pass over the integer at position ``j`` of each
      vector, in bucket ``b(2 |x[j-1]| + |x[j-2]| + floor(n / (j + 1)))``
      (absent terms 0), where ``n`` is, for ``B``, the summed magnitudes of
      the tile's ``A`` integers of component ``i`` and, for ``A``, half
      (floored) the summed magnitudes of its ``A`` and ``B`` integers of
      component ``i - 1`` (0 for ``i = 0``);

2. the tile means, one pass in raster order, each as ``mean - pred`` with
   ``pred`` the left neighbour's mean on the first row (0 for the first
   tile), the mean above for the first tile of later rows, else ``L +
   floor((U - UL) / 2)`` (``L`` left, ``U`` above, ``UL`` above-left), with
   the level of context ``min(15, rank + the ranks of the four neighbours)``.

Within each pass, symbols are grouped by level, levels ascending, in pass
order within a level, one rANS decode per group. Escapes and the end of the
words work as in coder 2.

Readers check every field before they allocate anything sized by one: the
magic, the version, the lengths against the real length of the data, the
CRC, the dimensions against :data:`MAX_PIXELS` (and, in the tiled layout,
the tile grid that covers the image against :data:`MAX_TILE_GRID`), the
ranks against the plane sizes, and the decompressed size against what the
payload could hold (with coder 2: the symbols, ``k * (h + w)`` per plane,
plus the alpha bytes, at most 1100 per payload byte; a symbol costs at least
0.0101 bit of rANS words, or is an escape with a number in the zlib side
data, which inflates at most about 1032 times, so no valid file is refused;
with coder 3: one tile mean per tile, and, as they decode, the means and
coefficients together, at most 1100 per payload byte; the flags are at
most ``k`` per tile).
"""

from __future__ import annotations

import lzma
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from . import _entropy, _tilecoder
from ._errors import FormatError

__all__ = [
    "MAGIC",
    "VERSION",
    "MAX_PIXELS",
    "MAX_TILE_GRID",
    "MODES",
    "Header",
    "PlaneRecord",
    "plane_shapes",
    "pack",
    "read_header",
    "unpack",
]

MAGIC = b"SVDK"
#: The newest version this module writes (tiled files with coder 3; global
#: files are written as 2.0, which they need no more than).
VERSION = (3, 0)
#: Major versions this module reads.
READABLE = {1: 0, 2: 0, 3: 0}  # major -> newest minor it knows
#: The largest image (in pixels) svdk writes or reads; Pillow's default limit.
MAX_PIXELS = 89_478_485

MODES = {0: "gray", 1: "rgb", 2: "ycbcr"}
_MODE_CODES = {name: code for code, name in MODES.items()}
_COLOUR_PLANES = {"gray": 1, "rgb": 3, "ycbcr": 3}
CODERS = {0: "zlib", 1: "lzma", 2: "ans", 3: "ctx"}
LAYOUTS = {0: "global", 1: "tiled"}
_LAYOUT_CODES = {name: code for code, name in LAYOUTS.items()}
MIN_TILE, MAX_TILE = 4, 64
#: Most pixels the tile grid covering an image may have (edge tiles padded):
#: a very thin image in large tiles would otherwise cost far more work than
#: its pixels.
MAX_TILE_GRID = 2 * MAX_PIXELS
_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9, "dict_size": 8 << 20}]
_CODER_CODES = {name: code for code, name in CODERS.items()}
PREDICTORS = {0: "none", 1: "delta", 2: "dct"}
_PREDICTOR_CODES = {name: code for code, name in PREDICTORS.items()}

FLAG_SUBSAMPLED = 0x01
FLAG_ALPHA = 0x02

_FIXED = struct.Struct("<4sBBHIIBBBBBBBBI")  # 28 bytes
_PLANE = struct.Struct("<HHB3s")  # 8 bytes
_CRC = struct.Struct("<I")
_SIDE = struct.Struct("<I")


@dataclass(frozen=True)
class PlaneRecord:
    """What the header says about one plane."""

    rank: int
    qstep: int  # in units of 1/256
    sample_bytes: int
    deblock: int = 0  # tiled layout, version 3: the deblocking strength

    @property
    def step(self) -> float:
        """The quantization step as a number."""
        return self.qstep / 256.0


@dataclass(frozen=True)
class Header:
    """A parsed, validated .svdk header."""

    version: tuple[int, int]
    width: int
    height: int
    mode: str
    subsampled: bool
    alpha: bool
    coder: str
    predictor: str
    planes: tuple[PlaneRecord, ...]
    header_length: int
    payload_length: int
    layout: str = "global"
    tile: int = 0

    @property
    def file_length(self) -> int:
        return self.header_length + self.payload_length + _CRC.size

    @property
    def ranks(self) -> tuple[int, ...]:
        return tuple(p.rank for p in self.planes)

    @property
    def shapes(self) -> list[tuple[int, int]]:
        return plane_shapes(self.width, self.height, self.mode, self.subsampled)

    def raw_length(self) -> int:
        """Bytes of the decompressed payload that this header implies.

        Exact for the global layout; for the tiled layout the largest
        possible (every tile at the plane's rank).
        """
        total = 0
        for (h, w), rec in zip(self.shapes, self.planes):
            if self.layout == "global":
                # with coder 2, the number of coded symbols
                total += rec.rank * (h + w) * rec.sample_bytes
            else:
                ty, tx = -(-h // self.tile), -(-w // self.tile)
                total += ty * tx * (1 + (1 + 2 * rec.rank * self.tile) * rec.sample_bytes)
        if self.alpha:
            total += self.width * self.height
        return total

    def min_raw_length(self) -> int:
        """The fewest bytes of decompressed payload this header allows
        (with coder 3: the fewest symbols, one mean per tile)."""
        if self.layout == "global":
            return self.raw_length()
        if self.coder == "ctx":
            return sum(-(-h // self.tile) * -(-w // self.tile) for h, w in self.shapes)
        total = self.width * self.height if self.alpha else 0
        for h, w in self.shapes:
            ty, tx = -(-h // self.tile), -(-w // self.tile)
            total += ty * tx * 2  # a rank byte and a one-byte mean per tile
        return total


def plane_shapes(width: int, height: int, mode: str, subsampled: bool) -> list[tuple[int, int]]:
    """The ``(rows, cols)`` of each coded plane."""
    if mode == "gray":
        return [(height, width)]
    if subsampled:
        ch = ((height + 1) // 2, (width + 1) // 2)
        return [(height, width), ch, ch]
    return [(height, width)] * 3


def _zigzag(values: np.ndarray) -> np.ndarray:
    v = values.astype(np.int64)
    return ((v << 1) ^ (v >> 63)).astype(np.uint64)


def _unzigzag(values: np.ndarray) -> np.ndarray:
    v = values.astype(np.int64)
    return (v >> 1) ^ -(v & 1)


def _sample_bytes(z: np.ndarray) -> int:
    top = int(z.max()) if z.size else 0
    if top < 1 << 8:
        return 1
    if top < 1 << 16:
        return 2
    if top < 1 << 32:
        return 4
    raise FormatError(
        "a quantized factor does not fit in 32 bits; use a larger quantization step"
    )


def _write_ints(values: np.ndarray) -> tuple[bytes, int]:
    """Zigzag, the narrowest sample width, byte planes."""
    z = _zigzag(values)
    nbytes = _sample_bytes(z)
    samples = z.astype({1: "<u1", 2: "<u2", 4: "<u4"}[nbytes])
    if nbytes == 1:
        return samples.tobytes(), 1
    planes = samples.view(np.uint8).reshape(-1, nbytes).T
    return np.ascontiguousarray(planes).tobytes(), nbytes


def _read_ints(raw: memoryview, count: int, nbytes: int) -> np.ndarray:
    if len(raw) < count * nbytes:
        raise FormatError("the payload ends inside a plane's data")
    buf = np.frombuffer(raw, dtype=np.uint8, count=count * nbytes)
    if nbytes == 1:
        return _unzigzag(buf)
    return _unzigzag(np.ascontiguousarray(buf.reshape(nbytes, count).T).view(f"<u{nbytes}").ravel())


def _encode_plane(a: np.ndarray, b: np.ndarray, predictor: str) -> tuple[bytes, int]:
    rows = [a, b]
    if predictor == "delta":
        rows = [np.diff(m, axis=1, prepend=0) if m.size else m for m in rows]
    return _write_ints(np.concatenate([m.ravel() for m in rows]))


def _decode_plane(
    raw: memoryview, shape: tuple[int, int], rec: PlaneRecord, predictor: str, keep: int
) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape
    k = rec.rank
    z = _read_ints(raw, k * (h + w), rec.sample_bytes)
    # Only the first `keep` components of each factor are needed.
    a = z[: k * h].reshape(k, h)[:keep]
    b = z[k * h :].reshape(k, w)[:keep]
    if predictor == "delta":
        a = np.cumsum(a, axis=1)
        b = np.cumsum(b, axis=1)
    return a, b


def _dc_residual(dc: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    d = dc.reshape(grid).copy()
    d[:, 1:] -= dc.reshape(grid)[:, :-1]
    d[1:, 0] -= dc.reshape(grid)[:-1, 0]
    return d.ravel()


def _dc_restore(d: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    m = d.reshape(grid).copy()
    m[:, 0] = np.cumsum(m[:, 0])
    return np.cumsum(m, axis=1).ravel()


def _encode_tiled_plane(ranks, dc, a, b, grid) -> tuple[bytes, int]:
    body, nbytes = _write_ints(np.concatenate([_dc_residual(dc, grid), a.ravel(), b.ravel()]))
    return ranks.astype(np.uint8).tobytes() + body, nbytes


def _decode_tiled_plane(raw: memoryview, grid, tile: int, rec: PlaneRecord):
    n = grid[0] * grid[1]
    if len(raw) < n:
        raise FormatError("the payload ends inside a plane's tile ranks")
    ranks = np.frombuffer(raw, dtype=np.uint8, count=n).astype(np.int64)
    if ranks.size and int(ranks.max()) > rec.rank:
        raise FormatError(f"a tile has rank {int(ranks.max())}; the header allows at most {rec.rank}")
    total = int(ranks.sum()) * tile
    z = _read_ints(raw[n:], n + 2 * total, rec.sample_bytes)
    dc = _dc_restore(z[:n], grid)
    used = n + (n + 2 * total) * rec.sample_bytes
    return (ranks, dc, z[n : n + total], z[n + total :]), used


def _compress(raw: bytes, coder: str, level: int) -> bytes:
    if coder == "zlib":
        return zlib.compress(raw, level)
    return lzma.compress(raw, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)


def _decompress(payload: memoryview, coder: str, limit: int) -> bytes:
    """At most ``limit + 1`` bytes; the buffer grows with the data, not the header."""
    try:
        if coder == "zlib":
            d = zlib.decompressobj()
            raw = d.decompress(payload, limit + 1)
        else:
            d = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
            raw = d.decompress(bytes(payload), limit + 1)
    except (zlib.error, lzma.LZMAError) as exc:
        raise FormatError(f"the payload is not a valid {coder} stream: {exc}") from None
    if len(raw) > limit:
        raise FormatError(f"the payload holds more than the {limit} bytes the header allows")
    if not d.eof or d.unused_data:
        raise FormatError(f"the payload's {coder} stream is incomplete or followed by other data")
    return raw


def pack(
    *,
    width: int,
    height: int,
    mode: str,
    subsampled: bool,
    factors: list,
    qsteps: list[int],
    alpha: np.ndarray | None = None,
    predictor: str = "delta",
    coder: str = "zlib",
    level: int = 6,
    layout: str = "global",
    tile: int = 0,
    ranks: list[int] | None = None,
    deblock: list[int] | None = None,
) -> bytes:
    """Write a complete .svdk file.

    Global layout: ``factors`` holds, per plane, the integer matrices ``A``
    (k x rows) and ``B`` (k x cols). Tiled layout: per plane, ``(tile ranks,
    tile means, A coefficients, B coefficients)`` as integers, and ``tile``
    the tile size. ``qsteps`` are the quantization steps in units of 1/256;
    ``deblock`` the deblocking strength of each plane (tiled, coder 3).
    """
    shapes = plane_shapes(width, height, mode, subsampled)
    if len(factors) != len(shapes) or len(qsteps) != len(shapes):
        raise FormatError(f"mode {mode!r} needs {len(shapes)} planes; got {len(factors)}")
    if layout == "tiled":
        if not MIN_TILE <= tile <= MAX_TILE:
            raise FormatError(f"tile size must be in [{MIN_TILE}, {MAX_TILE}]; got {tile}")
        predictor = "none"
    else:
        tile = 0
    if (coder == "ans") != (predictor == "dct") or (coder == "ans" and layout != "global"):
        raise FormatError("entropy coder 'ans' goes with predictor 'dct', in the global layout")
    if coder == "ctx" and layout != "tiled":
        raise FormatError("entropy coder 'ctx' is for the tiled layout")
    deblock = list(deblock) if deblock is not None else [0] * len(shapes)
    if len(deblock) != len(shapes) or any(not 0 <= c <= 255 for c in deblock):
        raise FormatError("deblocking strengths: one byte per plane")
    if any(deblock) and coder != "ctx":
        raise FormatError("the deblocking filter needs entropy coder 'ctx' (version 3)")
    version = (3, 0) if coder == "ctx" else (2, 0)
    chunks = []
    records = []
    coded = []
    tiled_planes = []
    for (h, w), f, q, strength in zip(shapes, factors, qsteps, deblock):
        if coder == "ans":
            a, b, exps = f
            rank = a.shape[0]
            if a.shape[0] != b.shape[0] or a.shape[1] != h or b.shape[1] != w or exps.shape != (rank,):
                raise FormatError(f"factor shapes {a.shape} and {b.shape} do not fit a {h}x{w} plane")
            if not 1 <= rank <= min(h, w, 0xFFFF):
                raise FormatError(f"rank {rank} out of range for a {h}x{w} plane")
            if max(int(np.abs(a).max()), int(np.abs(b).max())) >= _entropy.MAX_VALUE:
                raise FormatError("a quantized coefficient is too large; use a larger quantization step")
            la, lb = _entropy.choose_levels(a), _entropy.choose_levels(b)
            coded += [(a, la), (b, lb)]
            data = exps.astype(np.uint8).tobytes() + la.tobytes() + lb.tobytes()
            nbytes = 1
        elif layout == "global":
            a, b = f
            if a.shape[0] != b.shape[0] or a.shape[1] != h or b.shape[1] != w:
                raise FormatError(f"factor shapes {a.shape} and {b.shape} do not fit a {h}x{w} plane")
            rank = a.shape[0]
            if not 1 <= rank <= min(h, w, 0xFFFF):
                raise FormatError(f"rank {rank} out of range for a {h}x{w} plane")
            data, nbytes = _encode_plane(a, b, predictor)
        else:
            tile_ranks, dc, a, b = f
            grid = (-(-h // tile), -(-w // tile))
            rank = int(tile_ranks.max()) if tile_ranks.size else 0
            count = tile * int(tile_ranks.sum())
            if tile_ranks.shape != (grid[0] * grid[1],) or rank > tile or not a.size == b.size == count:
                raise FormatError("tile data do not fit the plane")
            if coder == "ctx":
                if max(int(np.abs(a).max(initial=0)), int(np.abs(b).max(initial=0)), int(np.abs(dc).max(initial=0))) >= (
                    _entropy.MAX_VALUE >> 2
                ):
                    raise FormatError("a quantized coefficient is too large; use a larger quantization step")
                tiled_planes.append((grid, tile, rank, (tile_ranks, dc, np.reshape(a, (-1, tile)), np.reshape(b, (-1, tile)))))
                data, nbytes = b"", 1
            else:
                data, nbytes = _encode_tiled_plane(tile_ranks, dc, a, b, grid)
        if not 1 <= q <= 0xFFFF:
            raise FormatError(f"quantization step code {q} out of range")
        chunks.append(data)
        records.append(_PLANE.pack(rank, q, nbytes, bytes([strength, 0, 0])))
    flags = FLAG_SUBSAMPLED if subsampled else 0
    if alpha is not None:
        if alpha.shape != (height, width) or alpha.dtype != np.uint8:
            raise FormatError("the alpha plane must be uint8 and the size of the image")
        flags |= FLAG_ALPHA
        chunks.append(np.ascontiguousarray(alpha).tobytes())
    if coder == "ans":
        escapes, words = _entropy.encode(coded)
        side = zlib.compress(b"".join(chunks) + _entropy.write_varints(escapes), 9)
        payload = _SIDE.pack(len(side)) + side + words.astype("<u4").tobytes()
    elif coder == "ctx":
        params, escapes, words = _tilecoder.encode(tiled_planes)
        side = zlib.compress(b"".join(params) + b"".join(chunks) + _entropy.write_varints(escapes), 9)
        payload = _SIDE.pack(len(side)) + side + words.astype("<u4").tobytes()
    else:
        payload = _compress(b"".join(chunks), coder, level)
    header_length = _FIXED.size + _PLANE.size * len(shapes)
    head = _FIXED.pack(
        MAGIC,
        version[0],
        version[1],
        header_length,
        width,
        height,
        _MODE_CODES[mode],
        flags,
        len(shapes),
        _CODER_CODES[coder],
        _PREDICTOR_CODES[predictor],
        _LAYOUT_CODES[layout],
        tile,
        0,
        len(payload),
    ) + b"".join(records)
    body = head + payload
    return body + _CRC.pack(zlib.crc32(body))


def read_header(data: bytes | bytearray | memoryview) -> Header:
    """Parse and validate the header of .svdk ``data``; allocate nothing big.

    Raises :class:`~svdk.FormatError` for anything that is not a readable
    version-1 file. The CRC is checked here too.
    """
    view = memoryview(data)
    size = len(view)
    if size < 4 or bytes(view[:4]) != MAGIC:
        if size == 0:
            raise FormatError("the data is empty, not an .svdk file")
        raise FormatError("not an .svdk file: the first bytes are not b'SVDK'")
    if size < 6:
        raise FormatError(f"truncated .svdk file: {size} bytes")
    major, minor = view[4], view[5]
    if major not in READABLE:
        raise FormatError(
            f"this file is .svdk version {major}.{minor}; this svdk reads versions "
            f"{' and '.join(f'{m}.x' for m in READABLE)} only: upgrade svdk to read it"
        )
    known_minor = minor == READABLE[major]
    if size < _FIXED.size + _CRC.size:
        raise FormatError(f"truncated .svdk file: {size} bytes, the header alone needs {_FIXED.size}")
    (
        _magic,
        _major,
        _minor,
        header_length,
        width,
        height,
        mode_code,
        flags,
        nplanes,
        coder_code,
        predictor_code,
        layout_code,
        tile,
        reserved,
        payload_length,
    ) = _FIXED.unpack_from(view, 0)
    if mode_code not in MODES:
        raise FormatError(f"unknown colour mode code {mode_code} in the header")
    mode = MODES[mode_code]
    if nplanes != _COLOUR_PLANES[mode]:
        raise FormatError(f"mode {mode} has {_COLOUR_PLANES[mode]} planes; the header says {nplanes}")
    if header_length < _FIXED.size + _PLANE.size * nplanes:
        raise FormatError(f"header length {header_length} is too small for {nplanes} planes")
    if flags & ~(FLAG_SUBSAMPLED | FLAG_ALPHA):
        raise FormatError(f"unknown flags 0x{flags:02x} in the header")
    subsampled = bool(flags & FLAG_SUBSAMPLED)
    if subsampled and mode != "ycbcr":
        raise FormatError("chroma subsampling is set for a file that is not ycbcr")
    if coder_code not in CODERS:
        raise FormatError(f"unknown entropy coder code {coder_code}")
    if predictor_code not in PREDICTORS:
        raise FormatError(f"unknown predictor code {predictor_code}")
    if layout_code not in LAYOUTS:
        raise FormatError(f"unknown layout code {layout_code}")
    layout = LAYOUTS[layout_code]
    if layout == "global" and tile != 0:
        raise FormatError(f"a global-layout file must have tile size 0 (a reserved byte); got {tile}")
    if layout == "tiled" and not MIN_TILE <= tile <= MAX_TILE:
        raise FormatError(f"tile size {tile} is outside [{MIN_TILE}, {MAX_TILE}]")
    if layout == "tiled" and predictor_code != 0:
        raise FormatError("the tiled layout has no predictor; the header sets one")
    if (CODERS[coder_code] == "ans") != (PREDICTORS[predictor_code] == "dct"):
        raise FormatError("entropy coder 2 and predictor 2 go together; the header sets only one")
    if CODERS[coder_code] == "ans" and (layout != "global" or major < 2):
        raise FormatError("entropy coder 2 needs the global layout and version 2")
    if CODERS[coder_code] == "ctx" and (layout != "tiled" or major < 3):
        raise FormatError("entropy coder 3 needs the tiled layout and version 3")
    if known_minor and reserved != 0:
        raise FormatError("reserved header bytes are not zero")
    expected = header_length + payload_length + _CRC.size
    if expected != size:
        what = "truncated" if size < expected else "has trailing bytes"
        raise FormatError(
            f"the .svdk file {what}: the header announces {expected} bytes, the data has {size}"
        )
    if width < 1 or height < 1:
        raise FormatError(f"invalid dimensions {width}x{height} in the header")
    if width * height > MAX_PIXELS:
        raise FormatError(
            f"the header claims a {width}x{height} image, above the limit of "
            f"{MAX_PIXELS} pixels"
        )
    if layout == "tiled":
        grid = -(-width // tile) * -(-height // tile) * tile * tile
        if grid > MAX_TILE_GRID:
            raise FormatError(
                f"the header claims a {width}x{height} image in {tile}x{tile} tiles, a grid of {grid} "
                f"pixels, above the limit of {MAX_TILE_GRID}"
            )
    (crc,) = _CRC.unpack_from(view, size - _CRC.size)
    if zlib.crc32(view[: size - _CRC.size]) != crc:
        raise FormatError("CRC mismatch: the .svdk file is corrupted")
    shapes = plane_shapes(width, height, mode, subsampled)
    records = []
    for i, (h, w) in enumerate(shapes):
        rank, qstep, nbytes, res = _PLANE.unpack_from(view, _FIXED.size + _PLANE.size * i)
        if layout == "global" and not 1 <= rank <= min(h, w):
            raise FormatError(
                f"plane {i} has rank {rank}; a {h}x{w} plane allows 1 to {min(h, w)}"
            )
        if layout == "tiled" and rank > tile:
            raise FormatError(f"plane {i} has rank {rank}; tiles of {tile} pixels allow 0 to {tile}")
        if qstep < 1:
            raise FormatError(f"plane {i} has quantization step 0")
        if nbytes not in (1, 2, 4):
            raise FormatError(f"plane {i} has {nbytes} bytes per sample; expected 1, 2 or 4")
        if CODERS[coder_code] in ("ans", "ctx") and nbytes != 1:
            raise FormatError(f"plane {i} has {nbytes} bytes per sample; entropy coders 2 and 3 need 1")
        # format 3 tiled planes keep a deblocking strength in the first reserved byte
        strength_bytes = 1 if major >= 3 and layout == "tiled" else 0
        strength = res[0] if strength_bytes else 0
        if strength and CODERS[coder_code] != "ctx":
            raise FormatError(f"plane {i} sets a deblocking strength; the filter needs entropy coder 3")
        if known_minor and any(res[strength_bytes:]):
            raise FormatError(f"reserved bytes of plane {i} are not zero")
        records.append(PlaneRecord(rank, qstep, nbytes, strength))
    header = Header(
        version=(major, minor),
        width=width,
        height=height,
        mode=mode,
        subsampled=subsampled,
        alpha=bool(flags & FLAG_ALPHA),
        coder=CODERS[coder_code],
        predictor=PREDICTORS[predictor_code],
        planes=tuple(records),
        header_length=header_length,
        payload_length=payload_length,
        layout=layout,
        tile=tile,
    )
    if header.min_raw_length() > _MAX_RATIO[header.coder] * max(payload_length, 1):
        raise FormatError(
            f"the header implies at least {header.min_raw_length()} bytes of data, more than "
            f"{payload_length} compressed bytes can hold"
        )
    return header


# The most a compressed byte can expand to: zlib's limit is about 1032:1;
# LZMA2's is far higher for degenerate input, so this bound is loose.
# With coder 2, no symbol costs less than about 0.01 bit (793 per byte), and
# the side data are zlib.
_MAX_RATIO = {"zlib": 1100, "lzma": 1 << 16, "ans": 1100, "ctx": 1100}


def unpack(data: bytes | bytearray | memoryview, *, max_rank: int | None = None):
    """Read a .svdk file into its header, integer plane data and alpha plane.

    Global layout: per plane ``(A, B)``, with ``max_rank`` keeping only the
    first components. Tiled layout: per plane ``(tile ranks, tile means, A,
    B)`` (``max_rank`` is applied by the decoder).
    """
    header = read_header(data)
    view = memoryview(data)
    payload = view[header.header_length : header.header_length + header.payload_length]
    if header.coder == "ans":
        return _unpack_ans(header, payload, max_rank)
    if header.coder == "ctx":
        return _unpack_ctx(header, payload)
    raw = memoryview(_decompress(payload, header.coder, header.raw_length()))
    planes = []
    offset = 0
    for shape, rec in zip(header.shapes, header.planes):
        if header.layout == "global":
            keep = rec.rank if max_rank is None else min(rec.rank, max_rank)
            planes.append(_decode_plane(raw[offset:], shape, rec, header.predictor, keep))
            offset += rec.rank * (shape[0] + shape[1]) * rec.sample_bytes
        else:
            grid = (-(-shape[0] // header.tile), -(-shape[1] // header.tile))
            plane, used = _decode_tiled_plane(raw[offset:], grid, header.tile, rec)
            planes.append(plane)
            offset += used
    want = offset + (header.width * header.height if header.alpha else 0)
    if len(raw) != want:
        raise FormatError(f"the payload holds {len(raw)} bytes of data; the header and tile ranks imply {want}")
    alpha = None
    if header.alpha:
        alpha = np.frombuffer(raw[offset:], dtype=np.uint8).reshape(header.height, header.width)
    return header, planes, alpha


def _unpack_ans(header: Header, payload: memoryview, max_rank: int | None):
    shapes = header.shapes
    # per plane: k step exponents, then a level byte per band of every row of A and of B
    fixed = sum(
        rec.rank * (1 + _entropy.band_count(h) + _entropy.band_count(w)) for (h, w), rec in zip(shapes, header.planes)
    )
    alpha_bytes = header.width * header.height if header.alpha else 0
    symbols = sum(rec.rank * (h + w) for (h, w), rec in zip(shapes, header.planes))
    side, words = _side_and_words(payload, fixed + alpha_bytes + 6 * symbols)
    if len(side) < fixed + alpha_bytes:
        raise FormatError(f"the side data hold {len(side)} bytes; the header implies at least {fixed + alpha_bytes}")
    side = memoryview(side)
    offset = 0
    exps, levels, matrix_shapes = [], [], []
    for (h, w), rec in zip(shapes, header.planes):
        k = rec.rank
        exps.append(np.frombuffer(side, dtype=np.uint8, count=k, offset=offset).astype(np.int64))
        offset += k
        for n in (h, w):
            bands = _entropy.band_count(n)
            lv = np.frombuffer(side, dtype=np.uint8, count=k * bands, offset=offset).reshape(k, bands)
            offset += k * bands
            if lv.size and int(lv.max()) >= _entropy.NUM_LEVELS:
                raise FormatError(f"a band has level {int(lv.max())}; levels go up to {_entropy.NUM_LEVELS - 1}")
            levels.append(lv)
            matrix_shapes.append((k, n))
    alpha = None
    if header.alpha:
        alpha = np.frombuffer(side, dtype=np.uint8, count=alpha_bytes, offset=offset).reshape(
            header.height, header.width
        )
        offset += alpha_bytes
    escapes = _entropy.read_varints(side[offset:])
    if len(escapes) > symbols:
        raise FormatError("the file has more escape values than symbols")
    mats = _entropy.decode(words, matrix_shapes, levels, escapes)
    planes = []
    for i, rec in enumerate(header.planes):
        keep = rec.rank if max_rank is None else min(rec.rank, max_rank)
        planes.append((mats[2 * i][:keep], mats[2 * i + 1][:keep], exps[i][:keep]))
    return header, planes, alpha


def _side_and_words(payload: memoryview, side_limit: int) -> tuple[bytes, np.ndarray]:
    """Coders 2 and 3: the inflated side data and the rANS words of a payload."""
    if len(payload) < _SIDE.size:
        raise FormatError("the payload is too short for its side-data length")
    (side_length,) = _SIDE.unpack_from(payload, 0)
    rest = len(payload) - _SIDE.size - side_length
    if rest < 0 or rest % 4:
        raise FormatError(
            f"the side data ({side_length} bytes) do not leave whole 4-byte words in a "
            f"{len(payload)}-byte payload"
        )
    side = _decompress(payload[_SIDE.size : _SIDE.size + side_length], "zlib", side_limit)
    words = np.frombuffer(payload, dtype="<u4", offset=_SIDE.size + side_length).astype(np.uint32)
    return side, words


def _unpack_ctx(header: Header, payload: memoryview):
    tile = header.tile
    grids = [(-(-h // tile), -(-w // tile)) for h, w in header.shapes]
    fixed = _tilecoder.side_length(tile) * len(grids)
    alpha_bytes = header.width * header.height if header.alpha else 0
    # escapes are at most one per symbol, and symbols at most 1100 per payload byte
    limit = _MAX_RATIO["ctx"] * max(len(payload), 1)
    side, words = _side_and_words(payload, fixed + alpha_bytes + 6 * limit)
    if len(side) < fixed + alpha_bytes:
        raise FormatError(f"the side data hold {len(side)} bytes; the header implies at least {fixed + alpha_bytes}")
    side = memoryview(side)
    n = _tilecoder.side_length(tile)
    params = [_tilecoder.Params.from_bytes(side[i * n : (i + 1) * n], tile) for i in range(len(grids))]
    alpha = None
    if header.alpha:
        alpha = np.frombuffer(side, dtype=np.uint8, count=alpha_bytes, offset=fixed).reshape(
            header.height, header.width
        )
    escapes = _entropy.read_varints(side[fixed + alpha_bytes :])
    if len(escapes) > limit:
        raise FormatError("the file has more escape values than symbols")
    decoder = _tilecoder.Decoder(words, escapes, limit)
    planes = [decoder.plane(grid, tile, rec.rank, p) for grid, rec, p in zip(grids, header.planes, params)]
    decoder.finish()
    return header, planes, alpha
