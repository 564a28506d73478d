"""The .svdk container: golden bytes, header fields, versions and validation.

Forged files are built with the independent reader/writer in ``_support``,
which recomputes the CRC so that each test reaches the check it is about.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import tracemalloc
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import svdk
from _support import PLANE, Plane, SvdkFile, forge, png_bytes, reference_decode, smooth_image

pytestmark = pytest.mark.filterwarnings("ignore::svdk.SvdkWarning")

GOLDEN = Path(__file__).parent / "golden"
GENERATE = os.environ.get("GENERATE_EXPECTED") == "1"


# ----------------------------------------------------------------------------
# golden files


def _ramp() -> np.ndarray:
    return (np.add.outer(np.arange(8), np.arange(8)) * 16).astype(np.uint8)


def _rgb_12x10() -> np.ndarray:
    y, x = np.mgrid[0:10, 0:12]
    return np.stack([x * 20 + y * 3, (x * y * 7) % 256, 250 - y * 20], axis=-1).astype(np.uint8)


def _ycbcr_16x16_alpha() -> np.ndarray:
    y, x = np.mgrid[0:16, 0:16]
    rgb = np.stack([x * 15, y * 15, (x + y) * 7 + 10 * ((x // 4 + y // 4) % 2)], axis=-1)
    alpha = np.where(x + y < 8, 0, 100 + 9 * x)
    return np.concatenate([rgb, alpha[..., None]], axis=-1).astype(np.uint8)


def _ycbcr_14x10_wide_samples() -> np.ndarray:
    y, x = np.mgrid[0:10, 0:14]
    return np.stack([x * 18, 255 - y * 25, (x * y * 2) % 200 + 30], axis=-1).astype(np.uint8)


GOLDEN_CASES = {
    # name: (image, options)
    "gray_ramp_8x8_rank2": (_ramp, {"rank": 2}),
    "rgb_12x10_rank3": (_rgb_12x10, {"mode": "rgb", "rank": 3, "qstep": 0.5}),
    "ycbcr420_alpha_16x16_rank5": (_ycbcr_16x16_alpha, {"rank": 5, "qstep": 0.25}),
    # a step of 1/256 makes 2-byte samples: covers the byte-plane layout
    "ycbcr444_14x10_2byte": (_ycbcr_14x10_wide_samples,
                            {"ranks": (4, 3, 2), "subsampling": "4:4:4", "qstep": 1 / 256}),
}


def _check_golden(name: str, data: bytes) -> None:
    """``data`` has the bytes pinned in tests/golden (regenerated with GENERATE_EXPECTED=1)."""
    digest = hashlib.sha256(data).hexdigest()
    if GENERATE:
        GOLDEN.mkdir(exist_ok=True)
        (GOLDEN / f"{name}.svdk").write_bytes(data)
        (GOLDEN / f"{name}.sha256").write_text(f"{digest}  {name}.svdk\n")
        pytest.skip(f"regenerated tests/golden/{name}.*")
    expected = (GOLDEN / f"{name}.sha256").read_text().split()[0]
    assert digest == expected, (
        f"the bytes of {name} changed. If the format changed on purpose, bump "
        "svdk.format.VERSION and regenerate with GENERATE_EXPECTED=1"
    )


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_golden_bytes(name):
    make, options = GOLDEN_CASES[name]
    _check_golden(name, svdk.compress(make(), **options))


@pytest.mark.parametrize("folder", [".", "v1"])
@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_golden_files_still_decode(name, folder):
    """Files written by an earlier svdk stay readable, and decode as the spec says.

    ``v1`` holds the same cases as written by format 1.0 (zlib, delta predictor).
    """
    data = (GOLDEN / folder / f"{name}.svdk").read_bytes()
    assert hashlib.sha256(data).hexdigest() == (GOLDEN / folder / f"{name}.sha256").read_text().split()[0]
    assert svdk.info(data)["version"] == ("1.0" if folder == "v1" else "2.0")
    image = GOLDEN_CASES[name][0]()
    out = svdk.decompress(data)
    assert out.shape == image.shape and out.dtype == np.uint8
    if image.ndim == 3 and image.shape[2] == 4:
        np.testing.assert_array_equal(out[..., 3], image[..., 3])
    if svdk.info(data)["subsampling"] != "4:2:0":
        assert np.abs(out.astype(int) - reference_decode(data)).max() <= 1
    assert svdk.metrics.psnr(image[..., :3] if image.ndim == 3 else image,
                             out[..., :3] if out.ndim == 3 else out) > 20


# Tiled files, format 3.0 (entropy coder 3, deblocking): bytes pinned like the
# global ones; the same cases as format 2.0 wrote them (LZMA) are in golden/v2,
# with the pixels that format 2.0's decoder gave them.
TILED_GOLDEN_CASES = {
    "tiled_ycbcr420_alpha_17x15": (lambda: smooth_image(15, 17, 4, seed=7), {"tiled": True, "energy": 0.9}),
    "tiled_gray_20x13": (lambda: smooth_image(13, 20, 1, seed=5), {"tiled": True, "energy": 0.95}),
    "tiled_rgb_12x10_T4": (lambda: smooth_image(10, 12, 3, seed=6),
                           {"mode": "rgb", "tiled": True, "tile_size": 4, "energy": 0.9}),
    "tiled_ycbcr444_40x33_T8_noisy": (lambda: smooth_image(33, 40, 3, seed=9, noise=25),
                                      {"tiled": True, "subsampling": "4:4:4", "energy": 0.8}),
    # 0.29 luma components per tile: the coarser step of low rates (svdk._tiled.step_factor)
    "tiled_ycbcr420_64x48_low_rate": (lambda: smooth_image(48, 64, 3, seed=11, noise=10),
                                      {"tiled": True, "energy": 0.2}),
    # the encoder tuned for SSIM (svdk._tiled.masking_weights): an ordinary file, pinned all the same
    "tiled_ycbcr420_64x48_tune_ssim": (lambda: smooth_image(48, 64, 3, seed=12, noise=10),
                                       {"tiled": True, "energy": 0.6, "tune": "ssim"}),
}


@pytest.mark.parametrize("name", sorted(TILED_GOLDEN_CASES))
def test_tiled_golden_bytes(name):
    make, options = TILED_GOLDEN_CASES[name]
    _check_golden(name, svdk.compress(make(), **options))


@pytest.mark.parametrize("name", sorted(TILED_GOLDEN_CASES))
def test_tiled_golden_files_decode_as_the_spec_says(name):
    from test_roundtrip import reference_decode_tiled

    data = (GOLDEN / f"{name}.svdk").read_bytes()
    head = svdk.info(data)
    assert head["version"] == "3.0" and head["coder"] == "ctx"
    image = TILED_GOLDEN_CASES[name][0]()
    out = svdk.decompress(data)
    assert out.shape == image.shape and out.dtype == np.uint8
    if head["subsampling"] != "4:2:0":
        assert np.abs(out.astype(int) - reference_decode_tiled(data)).max() <= 1
    assert svdk.metrics.psnr(image[..., :3] if image.ndim == 3 else image,
                             out[..., :3] if out.ndim == 3 else out) > 25


def test_some_tiled_golden_file_uses_the_deblocking_filter():
    assert any(any(svdk.info((GOLDEN / f"{name}.svdk").read_bytes())["deblock"]) for name in TILED_GOLDEN_CASES)


@pytest.mark.parametrize("path", sorted((GOLDEN / "v2").glob("*.svdk")), ids=lambda p: p.stem)
def test_format_2_tiled_files_still_decode_to_the_same_pixels(path):
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == path.with_suffix(".sha256").read_text().split()[0]
    head = svdk.info(data)
    assert head["version"] == "2.0" and head["coder"] == "lzma" and head["deblock"] == [0] * len(head["ranks"])
    np.testing.assert_array_equal(svdk.decompress(data), np.load(path.with_suffix(".npy")))


def test_files_carry_the_lowest_version_that_holds_them(rgb_image):
    """Global files stay 2.0 (a 2.0 reader reads them); tiled files are 3.0."""
    assert svdk.info(svdk.compress(rgb_image, rank=4))["version"] == "2.0"
    assert svdk.info(svdk.compress(rgb_image, tiled=True, energy=0.9))["version"] == "3.0"
    assert svdk.format.VERSION == (3, 0)


# ----------------------------------------------------------------------------
# header fields


@pytest.mark.parametrize(
    "channels, options",
    [
        (1, {"rank": 5, "qstep": 0.5}),
        (3, {"mode": "rgb", "ranks": (6, 4, 2), "qstep": 2.0}),
        (3, {"rank": 8}),
        (4, {"rank": 7, "subsampling": "4:4:4", "qstep": 1.25}),
        (2, {"rank": 3}),
    ],
)
def test_info_reports_the_header(channels, options):
    image = smooth_image(23, 30, channels, seed=channels)
    encoded = svdk.encode(image, **options)
    data = encoded.data
    head = svdk.info(data)
    raw = SvdkFile.parse(data)
    planes = 1 if channels in (1, 2) else 3

    assert head["version"] == "2.0"
    assert (head["width"], head["height"]) == (30, 23)
    assert head["mode"] == ("gray" if planes == 1 else options.get("mode", "ycbcr"))
    assert head["alpha"] == (channels in (2, 4))
    want_sub = {"gray": None, "rgb": None}.get(head["mode"], options.get("subsampling", "4:2:0"))
    assert head["subsampling"] == want_sub
    assert head["ranks"] == list(encoded.ranks) == [p.rank for p in raw.planes]
    if "ranks" in options:
        assert head["ranks"] == list(options["ranks"])
    else:
        assert head["ranks"][0] == options["rank"]
    if "qstep" in options:
        assert head["qsteps"] == [options["qstep"]] * planes
    assert head["qsteps"] == [p.qstep / 256 for p in raw.planes]
    assert head["sample_bytes"] == [p.sample_bytes for p in raw.planes]
    assert head["coder"] == "ans" and head["predictor"] == "dct"
    assert head["header_bytes"] == 28 + 8 * planes == raw.header_length
    assert head["payload_bytes"] == len(data) - head["header_bytes"] - 4
    assert head["bytes"] == len(data)
    assert head["bpp"] == pytest.approx(8 * len(data) / (30 * 23))
    assert raw.magic == b"SVDK" and raw.crc == zlib.crc32(data[:-4])


def test_info_and_decompress_accept_any_bytes_like(rgb_image):
    data = svdk.compress(rgb_image, rank=4)
    want = svdk.decompress(data)
    for view in (bytearray(data), memoryview(data)):
        np.testing.assert_array_equal(svdk.decompress(view), want)
        assert svdk.info(view) == svdk.info(data)


# ----------------------------------------------------------------------------
# versions


@pytest.mark.parametrize("major", [0, 4, 255])
def test_an_unknown_major_version_is_refused(rgb_image, major):
    data = forge(svdk.compress(rgb_image, rank=4), major=major, minor=3)
    with pytest.raises(svdk.FormatError, match=rf"version {major}\.3"):
        svdk.decompress(data)
    with pytest.raises(svdk.FormatError, match="upgrade"):
        svdk.info(data)


def test_a_newer_minor_with_a_longer_header_is_read(rgba_image):
    data = svdk.compress(rgba_image, rank=5)
    newer = replace(SvdkFile.parse(data), minor=7, extra_header=bytes(range(1, 13)))
    newer_data = newer.to_bytes()  # header_length grows by 12, CRC recomputed
    assert len(newer_data) == len(data) + 12
    np.testing.assert_array_equal(svdk.decompress(newer_data), svdk.decompress(data))
    head = svdk.info(newer_data)
    assert head["version"] == "2.7"
    assert head["header_bytes"] == svdk.info(data)["header_bytes"] + 12


# ----------------------------------------------------------------------------
# validation: every broken or forged file is a FormatError


def _gray() -> bytes:
    return svdk.compress(smooth_image(8, 8, 1, seed=1), rank=3)


def _rgb() -> bytes:
    return svdk.compress(smooth_image(10, 12, 3, seed=2), mode="rgb", rank=4)


def _forged_header(width, height, rank, sample_bytes=1, payload=b"\x78\x9c\x03\x00\x00\x00\x00\x01",
                   flags=0) -> bytes:
    """A gray file header with any fields, a tiny payload and a valid CRC."""
    f = SvdkFile(b"SVDK", 1, 0, 36, width, height, 0, flags, 1, 0, 1, b"\0\0\0", len(payload),
                 [Plane(rank, 256, sample_bytes)], b"", payload)
    return f.to_bytes()


def _gray_v1() -> bytes:
    """A format 1.0 file: zlib over delta-coded factors."""
    return (GOLDEN / "v1" / "gray_ramp_8x8_rank2.svdk").read_bytes()


def _side(data: bytes, change) -> bytes:
    """``data`` (coders 2 and 3) with its side data changed and recompressed."""
    f = SvdkFile.parse(data)
    (n,) = struct.unpack_from("<I", f.payload, 0)
    side = change(bytearray(zlib.decompress(f.payload[4 : 4 + n])))
    packed = zlib.compress(bytes(side))
    return replace(f, payload=struct.pack("<I", len(packed)) + packed + f.payload[4 + n :]).to_bytes()


def _words(data: bytes, change) -> bytes:
    f = SvdkFile.parse(data)
    (n,) = struct.unpack_from("<I", f.payload, 0)
    return replace(f, payload=f.payload[: 4 + n] + change(f.payload[4 + n :])).to_bytes()


def _escaping() -> bytes:
    """A coder-2 file whose largest coefficients escape (a fine step)."""
    return svdk.compress(smooth_image(16, 16, 1, seed=3), rank=2, qstep=1 / 256)


def _first_escape_to(value: int):
    """Side-data change for ``_escaping()`` (gray 16x16, rank 2: 22 bytes of exponents and levels)."""
    from svdk import _entropy

    def change(side: bytearray) -> bytes:
        escapes = _entropy.read_varints(bytes(side[22:]))
        assert escapes, "the file has no escapes to change"
        return bytes(side[:22]) + _entropy.write_varints([value, *escapes[1:]])

    return change


def _tiled() -> bytes:
    """A format 3.0 tiled file (coder 3)."""
    return svdk.compress(smooth_image(20, 24, 1, seed=4, noise=10), tiled=True, energy=0.95)


def _v2_tiled() -> bytes:
    return (GOLDEN / "v2" / "tiled_gray_20x13.svdk").read_bytes()


def _payload(data: bytes, raw_change) -> bytes:
    f = SvdkFile.parse(data)
    return replace(f, payload=raw_change(f)).to_bytes()


BROKEN = {
    # name: (make bytes, what the message says)
    "empty": (lambda: b"", "empty"),
    "wrong magic": (lambda: b"SVDX" + _gray()[4:], "not an .svdk file"),
    "a png": (lambda: png_bytes(smooth_image(8, 8, 3)), "not an .svdk file"),
    "60000x60000": (lambda: _forged_header(60000, 60000, 1), "60000x60000"),
    "60000x60000 on a real file": (lambda: forge(_gray(), width=60000, height=60000),
                                   "60000x60000"),
    "zero width": (lambda: forge(_gray(), width=0), "dimensions"),
    "rank above the plane": (lambda: forge(_gray(), plane0={"rank": 9}), "allows 1 to 8"),
    "rank zero": (lambda: forge(_gray(), plane0={"rank": 0}), "rank 0"),
    "huge rank": (lambda: _forged_header(60, 50, 65535), "allows 1 to 50"),
    "step zero": (lambda: forge(_gray(), plane0={"qstep": 0}), "step"),
    "3 bytes per sample": (lambda: forge(_gray(), plane0={"sample_bytes": 3}), "bytes per sample"),
    "unknown mode": (lambda: forge(_gray(), mode=7), "colour mode"),
    "planes do not fit the mode": (lambda: forge(_gray(), nplanes=3), "planes"),
    "header too short for its planes": (lambda: forge(_rgb(), header_length=40), "header length"),
    "unknown flag": (lambda: forge(_gray(), flags=0x80), "flags"),
    "subsampled rgb": (lambda: forge(_rgb(), flags=1), "subsampling"),
    "unknown coder": (lambda: forge(_gray(), coder=200), "coder"),
    "unknown predictor": (lambda: forge(_gray(), predictor=9), "predictor"),
    "coder 2 without predictor 2": (lambda: forge(_gray(), predictor=1), "go together"),
    "coder 2 in a version-1 file": (lambda: forge(_gray(), major=1), "version 2"),
    "coder 2 with 2 bytes per sample": (lambda: forge(_gray(), plane0={"sample_bytes": 2}), "need 1"),
    "reserved bytes set": (lambda: forge(_gray(), reserved=b"\0\0\1"), "reserved"),
    "plane reserved bytes set": (lambda: forge(_gray(), plane0={"reserved": b"\0\0\1"}),
                                 "reserved"),
    "payload length beyond the file": (
        lambda: forge(_gray(), payload_length=SvdkFile.parse(_gray()).payload_length + 100),
        "truncated"),
    "payload length short of the file": (
        lambda: forge(_gray(), payload_length=SvdkFile.parse(_gray()).payload_length - 1),
        "trailing bytes"),
    "trailing bytes": (lambda: _gray() + b"\0", "trailing bytes"),
    "CRC mismatch": (lambda: _gray()[:40] + bytes([_gray()[40] ^ 1]) + _gray()[41:], "CRC"),
    "raw size beyond zlib's ratio": (lambda: _forged_header(9000, 9000, 9000, 4), "more than"),
    "alpha of 81 megapixels in 8 bytes": (
        lambda: _forged_header(9000, 9000, 1, flags=2), "more than"),
    # entropy coder 3 (tiled, format 3.0); svdk.info reads a tiled payload too
    "coder 3: side data cut short": (lambda: _side(_tiled(), lambda s: s[:20]), "side data hold"),
    "coder 3: a level out of range": (lambda: _side(_tiled(), lambda s: bytes([80]) + s[1:]), "level"),
    "coder 3: a flag level out of range": (lambda: _side(_tiled(), lambda s: s[:16] + bytes([49]) + s[17:]),
                                           "flag model level"),
    "coder 3: a slope out of range": (lambda: _side(_tiled(), lambda s: s[:37] + bytes([41]) + s[38:]), "slope"),
    "coder 3: a word missing": (lambda: _words(_tiled(), lambda w: w[4:]), "entropy-coded|rank|escape|symbols"),
    "coder 3: a word too many": (lambda: _words(_tiled(), lambda w: w + b"\1\0\0\0"), "entropy-coded|rank|escape"),
    "coder 3: an escape too many": (lambda: _side(_tiled(), lambda s: s + b"\5"), "escape"),
    "coder 3 in a version-2 file": (lambda: forge(_tiled(), major=2), "version 3"),
    "coder 3 in the global layout": (lambda: forge(_gray(), coder=3, predictor=0), "tiled layout"),
    "coder 3 with 2 bytes per sample": (lambda: forge(_tiled(), plane0={"sample_bytes": 2}), "need 1"),
    "deblocking in a version-2 tiled file": (
        lambda: forge(_v2_tiled(), plane0={"reserved": b"\4\0\0"}), "reserved"),
    "deblocking in a global file": (lambda: forge(_gray(), plane0={"reserved": b"\4\0\0"}), "reserved"),
    "coder 3: plane reserved bytes set": (lambda: forge(_tiled(), plane0={"reserved": b"\0\0\1"}), "reserved"),
    "coder 3: 81 megapixels of tiles in a few bytes": (
        lambda: forge(_tiled(), width=9000, height=9000), "more than|CRC"),
}

# Problems in the payload: the header is fine, so svdk.info() reads it;
# decompress() refuses it.
BROKEN_PAYLOAD = {
    "payload not zlib": (lambda: _payload(_gray_v1(), lambda f: b"\x00" * 30), "zlib"),
    "payload one byte short": (lambda: _payload(_gray_v1(), lambda f: zlib.compress(f.raw()[:-1])),
                               "payload"),
    "payload one byte long": (lambda: _payload(_gray_v1(), lambda f: zlib.compress(f.raw() + b"\0")),
                              "payload"),
    "data after the zlib stream": (lambda: _payload(_gray_v1(), lambda f: f.payload + b"\0\0"),
                                   "payload"),
    "zlib stream cut short": (lambda: _payload(_gray_v1(), lambda f: f.payload[:-3]), "payload"),
    "alpha flag without alpha": (lambda: forge(_gray_v1(), flags=2), "payload"),
    "ranks that do not fit the payload": (lambda: forge(_gray_v1(), plane0={"rank": 1}),
                                          "payload"),
    # entropy coder 2
    "side length beyond the payload": (
        lambda: _payload(_gray(), lambda f: struct.pack("<I", 10**6) + f.payload[4:]), "side data"),
    "side data not zlib": (
        lambda: _payload(_gray(), lambda f: struct.pack("<I", 3) + b"abc" + f.payload[7 + (len(f.payload) - 7) % 4:]),
        "zlib"),
    "words not whole": (lambda: _words(_gray(), lambda w: w + b"\0"), "words"),
    "side data cut short": (lambda: _side(_gray(), lambda s: s[:3]), "side data hold"),
    "a band level out of range": (lambda: _side(_gray(), lambda s: s[:3] + bytes([200]) + s[4:]), "level"),
    "a word missing": (lambda: _words(_gray(), lambda w: w[4:]), "entropy-coded"),
    "a word too many": (lambda: _words(_gray(), lambda w: w + b"\1\0\0\0"), "entropy-coded"),
    "no rANS words": (lambda: _words(_gray(), lambda w: b""), "entropy-coded"),
    "an escape missing": (lambda: _side(_escaping(), lambda s: s[:-1]), "escape"),
    "an escape too many": (lambda: _side(_gray(), lambda s: s + b"\5"), "escape"),
    "an escaped value of 2**40": (lambda: _side(_escaping(), _first_escape_to(2**40 - 1)), "escaped value"),
    "an escape number of 2**40": (lambda: _side(_escaping(), _first_escape_to(2**40)), "out of range"),
    "coder 2: alpha flag without alpha": (lambda: forge(_gray(), flags=2), "side data"),
    "coder 2: ranks that do not fit the payload": (lambda: forge(_gray(), plane0={"rank": 2}),
                                                   "entropy-coded|escape|side data"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_files_are_format_errors(name):
    make, message = BROKEN[name]
    data = make()
    for call in (svdk.decompress, svdk.info):
        with pytest.raises(svdk.FormatError, match=message):
            call(data)
    assert issubclass(svdk.FormatError, ValueError)


@pytest.mark.parametrize("name", sorted(BROKEN_PAYLOAD))
def test_broken_payloads_are_format_errors(name):
    make, message = BROKEN_PAYLOAD[name]
    data = make()
    svdk.info(data)  # the header itself is valid
    with pytest.raises(svdk.FormatError, match=message):
        svdk.decompress(data)


@pytest.mark.parametrize("name", ["zlib stream cut short", "data after the zlib stream"])
def test_zlib_stream_errors_say_what_is_wrong(name):
    """Not 'the payload holds 48 bytes of factors; the header implies 48' (svdk b0e0998)."""
    make, _ = BROKEN_PAYLOAD[name]
    with pytest.raises(svdk.FormatError) as err:
        svdk.decompress(make())
    numbers = re.findall(r"\d+", str(err.value))
    assert "stream" in str(err.value) or len(set(numbers)) > 1, str(err.value)


@pytest.mark.parametrize("name", ["60000x60000", "60000x60000 on a real file", "huge rank",
                                  "raw size beyond zlib's ratio",
                                  "alpha of 81 megapixels in 8 bytes"])
def test_forged_sizes_allocate_nothing_big(name):
    """Refusing a forged header must not allocate what the header asks for."""
    data = BROKEN[name][0]()
    tracemalloc.start()
    try:
        with pytest.raises(svdk.FormatError):
            svdk.decompress(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes while refusing {name}"


def test_tracemalloc_sees_numpy_allocations():
    """The test above can fail: an 8 MB numpy array shows up in the peak."""
    tracemalloc.start()
    try:
        np.zeros(1 << 20).fill(1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak >= 8 * 1024 * 1024


def _rgba() -> bytes:
    return svdk.compress(smooth_image(9, 7, 4), rank=3)


@pytest.mark.parametrize("make", [_gray, _rgb, _rgba])
def test_every_truncation_is_a_format_error(make):
    data = make()
    for length in range(len(data)):
        with pytest.raises(svdk.FormatError):
            svdk.decompress(data[:length])


def test_a_flipped_bit_anywhere_is_caught(rgb_image):
    data = svdk.compress(rgb_image, rank=4)
    for pos in range(len(data)):
        for bit in (0, 7):
            bad = bytearray(data)
            bad[pos] ^= 1 << bit
            with pytest.raises(svdk.FormatError):
                svdk.decompress(bytes(bad))


def test_plane_record_layout_is_eight_bytes():
    """The spec's plane record: u16 rank, u16 step, u8 sample bytes, 3 reserved."""
    data = svdk.compress(smooth_image(10, 12, 3, seed=3), mode="rgb", ranks=(5, 4, 3), qstep=0.75)
    for i, rank in enumerate((5, 4, 3)):
        assert struct.unpack_from("<HHB3s", data, 28 + PLANE.size * i) == (rank, 192, 1, b"\0\0\0")


# ----------------------------------------------------------------------------
# entropy coder 2


def test_band_model_tables_follow_the_spec():
    """svdk's integer tables equal the ones written from the specification, for every level."""
    from svdk import _entropy

    from _support import level_table

    for level in range(_entropy.NUM_LEVELS):
        r, freq = level_table(level)
        assert _entropy.radius(level) == r
        np.testing.assert_array_equal(_entropy._frequencies(level).astype(np.float64), freq)


def test_no_valid_file_is_refused_by_the_size_ratio_check():
    """The header check allows 1100 symbols per payload byte; no symbol costs less than 8/1100 bit
    but escapes, which need a number in the zlib side data (at most ~1032 per byte)."""
    from svdk import _entropy, format

    assert 8 / _entropy.min_bits_per_symbol() < format._MAX_RATIO["ans"]
    # a flat image at a high rank: mostly zero coefficients, the cheapest case
    flat = np.full((64, 64), 77, dtype=np.uint8)
    flat[::9, ::7] = 78
    data = svdk.compress(flat, rank=64)
    assert svdk.decompress(data).shape == (64, 64)
