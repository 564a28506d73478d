"""Fuzzing the decoder: damaged or forged files never crash it.

Thousands of mutations of valid files, from a seeded generator. A mutated file
must either be refused with :class:`svdk.FormatError` or decode to a ``uint8``
image of the shape its header announces. Any other exception, or a numpy
warning (overflow, invalid cast) while decoding, fails the test.
"""

from __future__ import annotations

import random
import warnings
import zlib
from dataclasses import replace

import numpy as np
import pytest

import svdk
from _support import Plane, SvdkFile, smooth_image

MUTATIONS_PER_KIND = 1000  # x 8 kinds x 4 files = 32,000 mutations
SEED = 20240601


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
    raw = bytearray(f.raw())
    for _ in range(rng.randint(1, 6)):
        value = rng.choice([0, 1, 0x7F, 0x80, 0xFE, 0xFF, rng.randrange(256)])
        raw[rng.randrange(len(raw))] = value
    return f.with_raw(bytes(raw)).to_bytes()


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


@pytest.mark.parametrize("mutator", MUTATORS, ids=lambda m: m.__name__)
def test_mutated_files_are_refused_or_decoded(mutator):
    rng = random.Random(f"{SEED}-{mutator.__name__}")
    seen = {"refused": 0, "decoded": 0}
    for name, data in _files().items():
        for i in range(MUTATIONS_PER_KIND):
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
    if mutator in (mutate_payload, resize_consistently, overwrite_field):
        assert seen["decoded"] > 0, seen


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
