"""The ``.svdk`` container: this module owns every byte of it.

This docstring is the specification of format version 1.0. All integers are
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
4       1     u8     major version: 1. A reader refuses a major it does not
                     know.
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
19      1     u8     entropy coder of the payload: 0 zlib
20      1     u8     predictor: 0 none, 1 delta along each factor vector
21      3     -      reserved, zero
24      4     u32    payload_length: bytes of the compressed payload
28      8*n   -      one plane record per plane, in plane order:
                     u16 rank k (1 <= k <= min(plane height, plane width)),
                     u16 quantization step in units of 1/256 (>= 1),
                     u8 bytes per sample: 1, 2 or 4,
                     3 bytes reserved, zero
======  ====  =====  ========================================================

Plane sizes follow from the header: every plane is ``height x width``,
except the Cb and Cr planes of a 4:2:0 file, which are
``ceil(height / 2) x ceil(width / 2)``.

Payload
-------
The payload is the zlib stream of the concatenation of, for each plane in
order:

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

Readers check every field before they allocate anything sized by one: the
magic, the version, the lengths against the real length of the data, the
CRC, the dimensions against :data:`MAX_PIXELS`, the ranks against the plane
sizes, and the decompressed size against what the payload could hold.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from ._errors import FormatError

__all__ = [
    "MAGIC",
    "VERSION",
    "MAX_PIXELS",
    "MODES",
    "Header",
    "PlaneRecord",
    "plane_shapes",
    "pack",
    "read_header",
    "unpack",
]

MAGIC = b"SVDK"
VERSION = (1, 0)
#: The largest image (in pixels) svdk writes or reads; Pillow's default limit.
MAX_PIXELS = 89_478_485

MODES = {0: "gray", 1: "rgb", 2: "ycbcr"}
_MODE_CODES = {name: code for code, name in MODES.items()}
_COLOUR_PLANES = {"gray": 1, "rgb": 3, "ycbcr": 3}
CODERS = {0: "zlib"}
_CODER_CODES = {name: code for code, name in CODERS.items()}
PREDICTORS = {0: "none", 1: "delta"}
_PREDICTOR_CODES = {name: code for code, name in PREDICTORS.items()}

FLAG_SUBSAMPLED = 0x01
FLAG_ALPHA = 0x02

_FIXED = struct.Struct("<4sBBHIIBBBBB3sI")  # 28 bytes
_PLANE = struct.Struct("<HHB3s")  # 8 bytes
_CRC = struct.Struct("<I")
# zlib cannot expand data by more than about 1032:1; anything claiming more
# than this is forged.
_MAX_ZLIB_RATIO = 1100


@dataclass(frozen=True)
class PlaneRecord:
    """What the header says about one plane."""

    rank: int
    qstep: int  # in units of 1/256
    sample_bytes: int

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
        """Bytes of the decompressed payload that this header implies."""
        total = 0
        for (h, w), rec in zip(self.shapes, self.planes):
            total += rec.rank * (h + w) * rec.sample_bytes
        if self.alpha:
            total += self.width * self.height
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


def _encode_plane(a: np.ndarray, b: np.ndarray, predictor: str) -> tuple[bytes, int]:
    rows = [a, b]
    if predictor == "delta":
        rows = [np.diff(m, axis=1, prepend=0) if m.size else m for m in rows]
    flat = np.concatenate([m.ravel() for m in rows])
    z = _zigzag(flat)
    nbytes = _sample_bytes(z)
    samples = z.astype({1: "<u1", 2: "<u2", 4: "<u4"}[nbytes])
    if nbytes == 1:
        return samples.tobytes(), 1
    planes = samples.view(np.uint8).reshape(-1, nbytes).T
    return np.ascontiguousarray(planes).tobytes(), nbytes


def _decode_plane(
    raw: memoryview, shape: tuple[int, int], rec: PlaneRecord, predictor: str, keep: int
) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape
    k = rec.rank
    n = k * (h + w)
    nbytes = rec.sample_bytes
    buf = np.frombuffer(raw, dtype=np.uint8, count=n * nbytes)
    if nbytes == 1:
        z = buf
    else:
        z = np.ascontiguousarray(buf.reshape(nbytes, n).T).view(f"<u{nbytes}").ravel()
    # Only the first `keep` components of each factor are needed.
    a = _unzigzag(z[: k * h].reshape(k, h)[:keep])
    b = _unzigzag(z[k * h : n].reshape(k, w)[:keep])
    if predictor == "delta":
        a = np.cumsum(a, axis=1)
        b = np.cumsum(b, axis=1)
    return a, b


def pack(
    *,
    width: int,
    height: int,
    mode: str,
    subsampled: bool,
    factors: list[tuple[np.ndarray, np.ndarray]],
    qsteps: list[int],
    alpha: np.ndarray | None = None,
    predictor: str = "delta",
    level: int = 6,
) -> bytes:
    """Write a complete .svdk file.

    ``factors`` holds, per plane, the integer matrices ``A`` (k x rows) and
    ``B`` (k x cols); ``qsteps`` the quantization steps in units of 1/256.
    """
    shapes = plane_shapes(width, height, mode, subsampled)
    if len(factors) != len(shapes) or len(qsteps) != len(shapes):
        raise FormatError(f"mode {mode!r} needs {len(shapes)} planes; got {len(factors)}")
    chunks = []
    records = []
    for (h, w), (a, b), q in zip(shapes, factors, qsteps):
        if a.shape[0] != b.shape[0] or a.shape[1] != h or b.shape[1] != w:
            raise FormatError(
                f"factor shapes {a.shape} and {b.shape} do not fit a {h}x{w} plane"
            )
        if not 1 <= a.shape[0] <= min(h, w, 0xFFFF) or not 1 <= q <= 0xFFFF:
            raise FormatError(f"rank {a.shape[0]} or step {q} out of range")
        data, nbytes = _encode_plane(a, b, predictor)
        chunks.append(data)
        records.append(_PLANE.pack(a.shape[0], q, nbytes, b"\0\0\0"))
    flags = FLAG_SUBSAMPLED if subsampled else 0
    if alpha is not None:
        if alpha.shape != (height, width) or alpha.dtype != np.uint8:
            raise FormatError("the alpha plane must be uint8 and the size of the image")
        flags |= FLAG_ALPHA
        chunks.append(np.ascontiguousarray(alpha).tobytes())
    payload = zlib.compress(b"".join(chunks), level)
    header_length = _FIXED.size + _PLANE.size * len(shapes)
    head = _FIXED.pack(
        MAGIC,
        VERSION[0],
        VERSION[1],
        header_length,
        width,
        height,
        _MODE_CODES[mode],
        flags,
        len(shapes),
        _CODER_CODES["zlib"],
        _PREDICTOR_CODES[predictor],
        b"\0\0\0",
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
    if major != VERSION[0]:
        raise FormatError(
            f"this file is .svdk version {major}.{minor}; this svdk reads version "
            f"{VERSION[0]}.x only: upgrade svdk to read it"
        )
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
    if minor == VERSION[1] and reserved != b"\0\0\0":
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
    (crc,) = _CRC.unpack_from(view, size - _CRC.size)
    if zlib.crc32(view[: size - _CRC.size]) != crc:
        raise FormatError("CRC mismatch: the .svdk file is corrupted")
    shapes = plane_shapes(width, height, mode, subsampled)
    records = []
    for i, (h, w) in enumerate(shapes):
        rank, qstep, nbytes, res = _PLANE.unpack_from(view, _FIXED.size + _PLANE.size * i)
        if not 1 <= rank <= min(h, w):
            raise FormatError(
                f"plane {i} has rank {rank}; a {h}x{w} plane allows 1 to {min(h, w)}"
            )
        if qstep < 1:
            raise FormatError(f"plane {i} has quantization step 0")
        if nbytes not in (1, 2, 4):
            raise FormatError(f"plane {i} has {nbytes} bytes per sample; expected 1, 2 or 4")
        if minor == VERSION[1] and res != b"\0\0\0":
            raise FormatError(f"reserved bytes of plane {i} are not zero")
        records.append(PlaneRecord(rank, qstep, nbytes))
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
    )
    if header.raw_length() > _MAX_ZLIB_RATIO * max(payload_length, 1):
        raise FormatError(
            f"the header implies {header.raw_length()} bytes of factors, more than "
            f"{payload_length} compressed bytes can hold"
        )
    return header


def unpack(
    data: bytes | bytearray | memoryview, *, max_rank: int | None = None
) -> tuple[Header, list[tuple[np.ndarray, np.ndarray]], np.ndarray | None]:
    """Read a .svdk file into its header, integer factors and alpha plane.

    With ``max_rank``, only the first ``max_rank`` components of each plane
    are returned.
    """
    header = read_header(data)
    view = memoryview(data)
    payload = view[header.header_length : header.header_length + header.payload_length]
    want = header.raw_length()
    d = zlib.decompressobj()
    try:
        raw = d.decompress(payload, want + 1)
    except zlib.error as exc:
        raise FormatError(f"the payload is not a valid zlib stream: {exc}") from None
    if len(raw) != want or not d.eof or d.unused_data:
        raise FormatError(
            f"the payload holds {len(raw)}{'+' if len(raw) > want else ''} bytes of factors; "
            f"the header implies {want}"
        )
    raw = memoryview(raw)
    factors = []
    offset = 0
    for shape, rec in zip(header.shapes, header.planes):
        keep = rec.rank if max_rank is None else min(rec.rank, max_rank)
        factors.append(_decode_plane(raw[offset:], shape, rec, header.predictor, keep))
        offset += rec.rank * (shape[0] + shape[1]) * rec.sample_bytes
    alpha = None
    if header.alpha:
        alpha = np.frombuffer(raw[offset:], dtype=np.uint8).reshape(header.height, header.width)
    return header, factors, alpha
