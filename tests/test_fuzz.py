"""Fuzzing the decoder: damaged or forged files never crash it.

Thousands of mutations of valid files, from a seeded generator. A mutated file
must either be refused with :class:`svdk.FormatError` or decode to a ``uint8``
image of the shape its header announces. Any other exception, or a numpy
warning (overflow, invalid cast) while decoding, fails the test.

Both layouts are covered: the global one (zlib, and format 1.0 files) and the
tiled one, as svdk writes it (format 3.0: entropy coder 3 and the deblocking
filter) and as format 2.0 wrote it (LZMA), with forgeries of their own
(layout and tile-size bytes, another tile size over the same grid; the model
parameters and deblocking strengths of format 3.0; the tile ranks of 2.0). Forged headers that announce a huge
image are refused before the decoder allocates anything of that size
(measured with :mod:`tracemalloc`, which sees numpy's buffers).
"""

from __future__ import annotations

import lzma
import random
import struct
import tracemalloc
import warnings
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import svdk
from _support import CTX_PARAMS, Plane, SvdkFile, smooth_image

MUTATIONS_PER_KIND = 1000  # x 8 kinds x 4 files = 32,000 mutations
SEED = 20240601


def _tiled_files() -> dict[str, bytes]:
    """Tiled files: sizes that are not a multiple of the tile, an image smaller
    than its tile, every colour mode, alpha, 1- and 2-byte samples."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", svdk.SvdkWarning)
        files = {
            "tiled gray 20x13 T8": svdk.compress(smooth_image(13, 20, 1, seed=5), tiled=True, energy=0.95),
            "tiled rgb 12x10 T4": svdk.compress(smooth_image(10, 12, 3, seed=6), mode="rgb", tiled=True,
                                                tile_size=4, energy=0.9),
            "tiled ycbcr+alpha 17x15 T8": svdk.compress(smooth_image(15, 17, 4, seed=7), tiled=True,
                                                        energy=0.9),
            "tiled ycbcr 4:4:4 9x11 T16": svdk.compress(smooth_image(11, 9, 3, seed=8, noise=30), tiled=True,
                                                        tile_size=16, subsampling="4:4:4", energy=1.0),
        }
    for data in files.values():
        head = svdk.info(data)
        assert head["layout"] == "tiled" and head["coder"] == "ctx" and head["version"] == "3.0", head
    assert any(any(svdk.info(d)["deblock"]) for d in files.values())
    return files


def _v2_tiled_files() -> dict[str, bytes]:
    """Tiled files of format 2.0 (LZMA), which svdk still reads."""
    files = {p.stem: p.read_bytes() for p in sorted((Path(__file__).parent / "golden" / "v2").glob("*.svdk"))}
    assert files and all(svdk.info(d)["coder"] == "lzma" for d in files.values())
    assert any(2 in svdk.info(d)["sample_bytes"] for d in files.values())
    return files


def _files() -> dict[str, bytes]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", svdk.SvdkWarning)
        return {
            "gray": svdk.compress(smooth_image(16, 12, 1, seed=1), rank=4),
            "rgb": svdk.compress(smooth_image(12, 10, 3, seed=2), mode="rgb", rank=3),
            "ycbcr+alpha": svdk.compress(smooth_image(17, 15, 4, seed=3), rank=6),
            "ycbcr 2-byte": svdk.compress(smooth_image(11, 13, 3, seed=4), ranks=(5, 3, 3),
                                          subsampling="4:4:4", qstep=1 / 256),
        }


# ---------------------------------------------------------------------------
# the payload stream, by the coder the header names (spec: 0 zlib, 1 raw LZMA2
# with preset 9 and an 8 MiB dictionary)

LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9, "dict_size": 8 << 20}]


def _raw(f: SvdkFile) -> bytes:
    """The decompressed stream; with entropy coders 2 and 3, the side data."""
    if f.coder in (2, 3):
        (n,) = struct.unpack_from("<I", f.payload, 0)
        return zlib.decompress(f.payload[4 : 4 + n])
    if f.coder == 1:
        return lzma.decompress(f.payload, format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)
    return zlib.decompress(f.payload)


def _with_raw(f: SvdkFile, raw: bytes) -> SvdkFile:
    if f.coder in (2, 3):
        (n,) = struct.unpack_from("<I", f.payload, 0)
        side = zlib.compress(raw, 6)
        return replace(f, payload=struct.pack("<I", len(side)) + side + f.payload[4 + n :])
    if f.coder == 1:
        return replace(f, payload=lzma.compress(raw, format=lzma.FORMAT_RAW, filters=LZMA_FILTERS))
    return replace(f, payload=zlib.compress(raw, 6))


# ---------------------------------------------------------------------------
# mutations: each takes (rng, data) and returns new bytes


def flip_bytes(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        out[rng.randrange(len(out))] ^= rng.randint(1, 255)
    return bytes(out)


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data))]


def insert(rng: random.Random, data: bytes) -> bytes:
    pos = rng.randrange(len(data) + 1)
    return data[:pos] + rng.randbytes(rng.randint(1, 8)) + data[pos:]


# Header bytes that a forger would change: everything after the magic, in
# the fixed part and the plane records. The CRC is recomputed afterwards so
# that the reader gets past it.
def overwrite_header(rng: random.Random, data: bytes) -> bytes:
    f = SvdkFile.parse(data)
    head = bytearray(data[: f.header_length])
    for _ in range(rng.randint(1, 3)):
        pos = rng.randrange(4, len(head))
        head[pos] = rng.choice([0, 1, 2, 3, 4, 0x7F, 0x80, 0xFF, rng.randrange(256)])
    body = bytes(head) + data[f.header_length : -4]
    return body + zlib.crc32(body).to_bytes(4, "little")


FIELDS = ["width", "height", "mode", "flags", "nplanes", "predictor", "minor"]


def overwrite_field(rng: random.Random, data: bytes) -> bytes:
    """One header field set to an edge value; lengths and CRC made consistent."""
    f = SvdkFile.parse(data)
    what = rng.choice([*FIELDS, "rank", "qstep", "sample_bytes"])
    edge = [0, 1, 2, 3, 4, 7, 8, 255, 256, 65535, 1 << 16, 1 << 31, (1 << 32) - 1]
    if what in FIELDS:
        bits = {"width": 32, "height": 32, "nplanes": 8, "mode": 8, "flags": 8,
                "predictor": 8, "minor": 8}[what]
        value = min(rng.choice(edge), (1 << bits) - 1)
        f = replace(f, **{what: value})
    else:
        i = rng.randrange(len(f.planes))
        value = min(rng.choice(edge), 0xFF if what == "sample_bytes" else 0xFFFF)
        f.planes[i] = replace(f.planes[i], **{what: value})
    return f.to_bytes(fix_lengths=False)


def mutate_payload(rng: random.Random, data: bytes) -> bytes:
    """Change the decompressed factors and recompress, so every check but the values passes."""
    f = SvdkFile.parse(data)
    raw = bytearray(_raw(f))
    for _ in range(rng.randint(1, 6)):
        value = rng.choice([0, 1, 0x7F, 0x80, 0xFE, 0xFF, rng.randrange(256)])
        raw[rng.randrange(len(raw))] = value
    return _with_raw(f, bytes(raw)).to_bytes()


def mutate_stream(rng: random.Random, data: bytes) -> bytes:
    """Damage the compressed stream itself; lengths and CRC follow."""
    f = SvdkFile.parse(data)
    payload = bytearray(f.payload)
    choice = rng.random()
    if choice < 0.5:
        payload[rng.randrange(len(payload))] ^= rng.randint(1, 255)
    elif choice < 0.75:
        del payload[rng.randrange(len(payload)) :]
    else:
        payload += rng.randbytes(rng.randint(1, 4))
    return replace(f, payload=bytes(payload)).to_bytes()


def resize_consistently(rng: random.Random, data: bytes) -> bytes:
    """Forge a header whose sizes agree with the payload: swap width and height, grow ranks."""
    f = SvdkFile.parse(data)
    if rng.random() < 0.5:
        f = replace(f, width=f.height, height=f.width)
    else:
        i = rng.randrange(len(f.planes))
        f.planes[i] = replace(f.planes[i], rank=f.planes[i].rank + rng.choice([-1, 1]))
    return f.to_bytes(fix_lengths=False)


MUTATORS = [flip_bytes, truncate, insert, overwrite_header, overwrite_field, mutate_payload,
            mutate_stream, resize_consistently]


# Tiled layout. Header bytes 21, 22, 23 (``SvdkFile.reserved``) are the layout,
# the tile size T and a reserved zero.
def _tiles(f: SvdkFile, tile: int) -> list[tuple[int, int]]:
    """``(rows, cols)`` of tiles of every plane."""
    return [(-(-h // tile), -(-w // tile)) for h, w in f.plane_shapes()]


def overwrite_tiled_field(rng: random.Random, data: bytes) -> bytes:
    """The layout, tile-size or reserved byte set to an edge value; CRC made consistent."""
    f = SvdkFile.parse(data)
    b = bytearray(f.reserved)
    i = rng.randrange(3)
    b[i] = rng.choice([0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 63, 64, 65, 128, 255])
    return replace(f, reserved=bytes(b)).to_bytes(fix_lengths=False)


def mutate_tile_ranks(rng: random.Random, data: bytes) -> bytes:
    """Change tile ranks in the stream (offsets from the spec), sometimes raising the
    header's plane rank to T so that a larger tile rank passes the header check."""
    f = SvdkFile.parse(data)
    tile = f.reserved[1]
    raw = bytearray(_raw(f))
    starts, pos = [], 0
    for (ty, tx), plane in zip(_tiles(f, tile), f.planes):
        n = ty * tx
        starts.append((pos, n))
        total = tile * sum(raw[pos : pos + n])
        pos += n + (n + 2 * total) * plane.sample_bytes
    i = rng.randrange(len(starts))
    start, n = starts[i]
    for _ in range(rng.randint(1, 3)):
        raw[start + rng.randrange(n)] = rng.choice([0, 1, f.planes[i].rank, f.planes[i].rank + 1, tile, 255])
    f = _with_raw(f, bytes(raw))
    if rng.random() < 0.5:
        f.planes[i] = replace(f.planes[i], rank=tile)
    return f.to_bytes()


def retile(rng: random.Random, data: bytes) -> bytes:
    """Another tile size, preferably one that gives every plane the same grid of tiles
    (so the tile ranks still fit); plane ranks capped at the new size."""
    f = SvdkFile.parse(data)
    tile = f.reserved[1]
    same = [t for t in range(4, 65) if t != tile and _tiles(f, t) == _tiles(f, tile)]
    new = rng.choice(same) if same and rng.random() < 0.8 else rng.choice([t for t in range(4, 65) if t != tile])
    b = bytearray(f.reserved)
    b[1] = new
    planes = [replace(p, rank=min(p.rank, new)) for p in f.planes]
    return replace(f, reserved=bytes(b), planes=planes).to_bytes(fix_lengths=False)


def mutate_model_params(rng: random.Random, data: bytes) -> bytes:
    """Entropy coder 3: model parameters (the first bytes of the side data) set to
    edge values: the largest levels, one past them, slopes around the limit."""
    f = SvdkFile.parse(data)
    raw = bytearray(_raw(f))
    per_plane = CTX_PARAMS + 4 * f.reserved[1]
    for _ in range(rng.randint(1, 3)):
        pos = rng.randrange(min(len(raw), per_plane * len(f.planes)))
        raw[pos] = rng.choice([0, 1, 24, 40, 41, 48, 49, 79, 80, 255, rng.randrange(256)])
    return _with_raw(f, bytes(raw)).to_bytes()


def set_deblocking(rng: random.Random, data: bytes) -> bytes:
    """A plane's deblocking strength (its record's byte 5) set to any value, or the
    record's reserved bytes after it made non-zero; CRC made consistent."""
    f = SvdkFile.parse(data)
    i = rng.randrange(len(f.planes))
    b = bytearray(f.planes[i].reserved)
    if rng.random() < 0.8:
        b[0] = rng.choice([0, 1, 4, 128, 255, rng.randrange(256)])
    else:
        b[rng.choice([1, 2])] = rng.randint(1, 255)
    f.planes[i] = replace(f.planes[i], reserved=bytes(b))
    return f.to_bytes()


TILED_MUTATORS = [*MUTATORS, overwrite_tiled_field, retile, mutate_model_params, set_deblocking]
V2_TILED_MUTATORS = [*MUTATORS, overwrite_tiled_field, mutate_tile_ranks, retile, set_deblocking]
TILED_MUTATIONS_PER_KIND = 300  # x 12 kinds x 4 files = 14,400 mutations


def _check(data: bytes) -> str:
    """Decode ``data``; return 'refused' or 'decoded', or fail the test."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no overflow or invalid-cast warnings either
            out = svdk.decompress(data)
    except svdk.FormatError:
        return "refused"
    head = svdk.info(data)
    channels = (1 if head["mode"] == "gray" else 3) + (1 if head["alpha"] else 0)
    shape = (head["height"], head["width"]) + (() if channels == 1 else (channels,))
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == shape
    j = max(1, min(head["ranks"]) - 1)
    partial = svdk.decompress(data, max_rank=j)
    assert partial.dtype == np.uint8 and partial.shape == shape
    return "decoded"


def _v1_files() -> dict[str, bytes]:
    """Format 1.0 files (zlib over delta-coded factors), which svdk still reads."""
    return {p.stem: p.read_bytes() for p in sorted((Path(__file__).parent / "golden" / "v1").glob("*.svdk"))}


SOURCES = {
    "global": (_files, MUTATIONS_PER_KIND, ""),
    "global-v1": (_v1_files, MUTATIONS_PER_KIND // 2, "v1-"),
    "tiled": (_tiled_files, TILED_MUTATIONS_PER_KIND, "tiled-"),
    "tiled-v2": (_v2_tiled_files, TILED_MUTATIONS_PER_KIND, "tiled-v2-"),
}
# forgeries that keep every size consistent: some of them must reach the factor decoding
CONSISTENT = (mutate_payload, resize_consistently, overwrite_field, mutate_tile_ranks, retile, mutate_model_params)


@pytest.mark.parametrize(
    "layout, mutator",
    [("global", m) for m in MUTATORS] + [("global-v1", m) for m in MUTATORS]
    + [("tiled", m) for m in TILED_MUTATORS] + [("tiled-v2", m) for m in V2_TILED_MUTATORS],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_mutated_files_are_refused_or_decoded(layout, mutator):
    files, count, tag = SOURCES[layout]
    rng = random.Random(f"{SEED}-{tag}{mutator.__name__}")
    seen = {"refused": 0, "decoded": 0}
    for name, data in files().items():
        for i in range(count):
            bad = mutator(rng, data)
            if bad == data:
                continue
            try:
                seen[_check(bad)] += 1
            except Exception as exc:  # report the input that broke the decoder
                raise AssertionError(
                    f"{mutator.__name__} #{i} of the {name} file: {type(exc).__name__}: {exc}\n"
                    f"input (hex): {bad.hex()}"
                ) from exc
    # Sanity of the mutators themselves: damage is caught, and the forgeries
    # that keep every size consistent do reach the factor decoding.
    if mutator is not mutate_payload:
        assert seen["refused"] > 0, seen
    # (With entropy coder 2 the side data follow the shapes and ranks, so a
    # resized header never fits them: every such forgery is refused. With
    # coder 3 the model parameters take 38 + 4 T bytes per plane and the
    # words must end with the last symbol, so another tile size never fits.)
    exempt = {("global", resize_consistently), ("tiled", retile)}
    if mutator in CONSISTENT and (layout, mutator) not in exempt:
        assert seen["decoded"] > 0, seen


def _forge_tiled(data: bytes, *, width=None, height=None, tile=None, rank=None, sample_bytes=None) -> bytes:
    """A tiled file with header fields replaced; lengths as they were, CRC recomputed."""
    f = SvdkFile.parse(data)
    b = bytearray(f.reserved)
    if tile is not None:
        b[1] = tile
    planes = [replace(p, rank=p.rank if rank is None else rank,
                      sample_bytes=p.sample_bytes if sample_bytes is None else sample_bytes) for p in f.planes]
    f = replace(f, width=width or f.width, height=height or f.height, reserved=bytes(b), planes=planes)
    return f.to_bytes(fix_lengths=False)


HUGE = [
    dict(width=9000, height=9000),  # 81 M pixels, just under MAX_PIXELS
    dict(width=9000, height=9000, tile=4, rank=4),  # the most tiles
    dict(width=9000, height=9000, tile=64, rank=64, sample_bytes=4),  # the most data per tile
    dict(width=1, height=89_000_000, tile=64),  # a thin image: 64 x the pixels once padded
    dict(width=65535, height=1365),
]


@pytest.mark.parametrize("fields", HUGE, ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
@pytest.mark.parametrize("name", list(_tiled_files()) + list(_v2_tiled_files()))
def test_a_forged_huge_tiled_header_is_refused_before_allocating(name, fields):
    data = _forge_tiled({**_tiled_files(), **_v2_tiled_files()}[name], **fields)
    tracemalloc.start()
    try:
        with pytest.raises(svdk.FormatError):
            svdk.decompress(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the LZMA decoder's dictionary (8 MiB, fixed by the spec, whatever the
    # header says) and buffers the size of the real data; nothing near the
    # tens of millions of pixels the header claims
    assert peak < (8 << 20) + (1 << 20), f"{peak} bytes allocated before the refusal"


def _thin_tiled_file(width: int, tile: int = 64) -> bytes:
    """A valid tiled file of a 1 x ``width`` gray image, every tile at rank 0 and
    mean 0 (black): per the spec, ``ceil(width / T)`` rank bytes and as many
    mean bytes, LZMA-compressed to a few dozen bytes."""
    n = -(-width // tile)
    payload = lzma.compress(bytes(2 * n), format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)
    f = SvdkFile(b"SVDK", 1, 0, 36, width, 1, 0, 0, 1, 1, 0, bytes([1, tile, 0]), len(payload),
                 [Plane(0, 256, 1)], b"", payload)
    return f.to_bytes()


def test_decoding_a_thin_tiled_image_needs_bounded_work_memory():
    """A 1-pixel-high image in 64-pixel tiles pads to 64 times its pixels: the
    decoder works a chunk of tiles at a time, so its memory is the output
    plus a bounded chunk, not the padded grid (here 64 x 300 000 pixels)."""
    width = 300_000
    data = _thin_tiled_file(width)
    assert len(data) < 200
    tracemalloc.start()
    try:
        out = svdk.decompress(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.shape == (1, width) and not out.any()
    grid_bytes = 64 * width * 8  # one float64 array over the padded grid: 154 MB
    assert peak < 40 * width + (24 << 20) < grid_bytes // 3, f"{peak / 1e6:.0f} MB at peak"


def test_a_thin_tiled_image_whose_grid_is_too_large_is_refused():
    """1 x 3 000 000 pixels fit MAX_PIXELS, but not in 64-pixel tiles (a grid of 192 M pixels)."""
    data = _thin_tiled_file(3_000_000)
    tracemalloc.start()
    try:
        with pytest.raises(svdk.FormatError, match="grid"):
            svdk.decompress(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < (8 << 20) + (1 << 20)
    with pytest.raises(svdk.OptionError, match="smaller tile size or the global layout"):
        svdk.compress(np.zeros((1, 3_000_000), np.uint8), quality="psnr:30", tiled=True, tile_size=64)


@pytest.mark.parametrize("predictor", [0, 1])
@pytest.mark.parametrize("fill", ["max", "random"])
def test_extreme_factor_values_decode_without_overflow(predictor, fill):
    """4-byte samples at the limits, the largest step: still a clean uint8 image."""
    h, w, k = 60, 80, 60
    n = k * (h + w) * 4
    raw = b"\xff" * n if fill == "max" else random.Random(SEED).randbytes(n)
    f = SvdkFile(b"SVDK", 1, 0, 36, w, h, 0, 0, 1, 0, predictor, b"\0\0\0", 0,
                 [Plane(k, 0xFFFF, 4)], b"", zlib.compress(raw))
    assert _check(f.to_bytes()) == "decoded"
