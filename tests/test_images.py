"""Inputs that are not encodable images give svdk.ImageError, saying why."""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

import svdk
from _support import png_bytes, smooth_image


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height RGB pixels, with a 20-byte IDAT."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


BAD_ARRAYS = [
    (np.zeros((0, 5), np.uint8), "no pixels"),
    (np.zeros((5, 0, 3), np.uint8), "no pixels"),
    (np.zeros(16, np.uint8), "shape"),
    (np.zeros((4, 4, 5), np.uint8), r"\(4, 4, 5\)"),
    (np.zeros((2, 3, 4, 3), np.uint8), "shape"),
    (np.full((4, 4), 1.5), r"\[0, 1\]"),
    (np.full((4, 4), -0.1, np.float32), r"\[0, 1\]"),
    pytest.param(np.full((4, 4), np.nan), "finite",
                 # svdk also emits numpy's "All-NaN slice" RuntimeWarning here (reported)
                 marks=pytest.mark.filterwarnings("ignore:All-NaN slice:RuntimeWarning")),
    (np.zeros((4, 4), np.int64), "dtype int64"),
    (np.zeros((4, 4), np.complex64), "dtype complex64"),
    (np.broadcast_to(np.uint8(0), (9000, 10000)), "limit of 89478485 pixels"),
]


@pytest.mark.parametrize("array, message", BAD_ARRAYS, ids=lambda v: getattr(v, "shape", v))
def test_bad_arrays(array, message):
    with pytest.raises(svdk.ImageError, match=message):
        svdk.compress(array, rank=1)


def test_image_error_is_a_value_error():
    assert issubclass(svdk.ImageError, svdk.SvdkError)
    assert issubclass(svdk.ImageError, ValueError)


def test_empty_file_and_empty_bytes(tmp_path):
    with pytest.raises(svdk.ImageError, match="empty"):
        svdk.compress(_write(tmp_path, "empty.png", b""), rank=1)
    with pytest.raises(svdk.ImageError, match="empty"):
        svdk.compress(b"", rank=1)


def test_text_file(tmp_path):
    path = _write(tmp_path, "notes.png", b"these are not pixels\n" * 10)
    with pytest.raises(svdk.ImageError, match="not an image") as err:
        svdk.compress(path, rank=1)
    assert "notes.png" in str(err.value)


@pytest.mark.parametrize("keep", [0.3, 0.7, 0.95])
def test_truncated_png(tmp_path, keep):
    data = png_bytes(smooth_image(40, 40, 3))
    cut = data[: int(len(data) * keep)]
    with pytest.raises(svdk.ImageError, match="corrupt or truncated|not an image"):
        svdk.compress(_write(tmp_path, "cut.png", cut), rank=1)
    with pytest.raises(svdk.ImageError):
        svdk.compress(cut, rank=1)


def test_float_image_mode_f(tmp_path):
    im = Image.fromarray(np.zeros((8, 8), np.float32), "F")
    with pytest.raises(svdk.ImageError, match="floating-point"):
        svdk.compress(im, rank=1)
    buf = io.BytesIO()
    im.save(buf, "TIFF")
    with pytest.raises(svdk.ImageError, match="floating-point"):
        svdk.compress(_write(tmp_path, "float.tif", buf.getvalue()), rank=1)


@pytest.mark.parametrize("width, height", [(100_000, 100_000), (10_000, 10_000)])
def test_decompression_bomb_is_refused_quickly_without_allocating(tmp_path, width, height):
    """Over the limit, and over twice the limit (Pillow's error and its warning)."""
    data = _png_claiming(width, height)
    assert len(data) < 100
    path = _write(tmp_path, "bomb.png", data)
    for source in (data, path):
        tracemalloc.start()
        start = time.perf_counter()
        try:
            with pytest.raises(svdk.ImageError, match="decompression bomb"):
                svdk.compress(source, rank=1)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert time.perf_counter() - start < 1.0
        assert peak < 4 * 1024 * 1024


def test_pillow_limit_is_restored_after_a_refusal():
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(svdk.ImageError):
        svdk.compress(_png_claiming(100_000, 100_000), rank=1)
    assert Image.MAX_IMAGE_PIXELS == before


def test_folder_and_missing_path(tmp_path):
    with pytest.raises(svdk.ImageError, match="folder"):
        svdk.compress(tmp_path, rank=1)
    with pytest.raises(svdk.ImageError, match="no such file") as err:
        svdk.compress(tmp_path / "missing.png", rank=1)
    assert "missing.png" in str(err.value)


def test_an_svdk_file_is_not_an_input_image(tmp_path, rgb_image):
    path = _write(tmp_path, "image.svdk", svdk.compress(rgb_image, rank=3))
    with pytest.raises(svdk.ImageError, match="already an .svdk file"):
        svdk.compress(path, rank=1)


def test_unknown_example_lists_the_known_ones():
    with pytest.raises(svdk.ImageError, match="astronaut"):
        svdk.compress("example:nope", rank=1)


@pytest.mark.parametrize("thing", [[[1, 2], [3, 4]], 42, None])
def test_other_python_objects(thing):
    with pytest.raises(svdk.ImageError, match="expected a numpy array"):
        svdk.compress(thing, rank=1)
