"""Reference codecs: real files, honest sizes, searches that do what they say."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from svdk import baselines, metrics
from _support import ssim_reference

LOSSY = [c for c in ("jpeg", "webp", "avif") if c in baselines.available()]


def _gray(image: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(image).convert("L"))


@pytest.fixture(params=["rgb", "gray"])
def small(request, kodak_small):
    return kodak_small if request.param == "rgb" else _gray(kodak_small)


def test_png_and_jpeg_are_always_there():
    assert {"png", "jpeg"} <= set(baselines.available())


def test_png_round_trips_losslessly(small, rgba_image):
    coded = baselines.encode(small, "png")
    np.testing.assert_array_equal(coded.decoded, small)
    with Image.open(io.BytesIO(coded.data)) as im:  # real PNG bytes
        assert im.format == "PNG"
        np.testing.assert_array_equal(np.asarray(im), small)
    # alpha is left out: the baselines code the colour channels
    coded = baselines.encode(rgba_image, "png")
    np.testing.assert_array_equal(coded.decoded, rgba_image[..., :3])


@pytest.mark.parametrize("codec", LOSSY)
def test_encode_gives_real_files_of_the_codec(small, codec):
    lo, hi = baselines.QUALITIES[codec]
    coded = baselines.encode(small, codec, (lo + hi) // 2)
    with Image.open(io.BytesIO(coded.data)) as im:
        assert im.format == codec.upper()
        assert im.size == (small.shape[1], small.shape[0])
    assert coded.decoded.shape == small.shape
    assert coded.nbytes == len(coded.data)


@pytest.mark.parametrize("codec", LOSSY)
@pytest.mark.parametrize("fraction", [0.3, 0.6])
def test_match_size_fits_and_one_quality_more_does_not(small, codec, fraction):
    lo, hi = baselines.QUALITIES[codec]
    budget = int(baselines.encode(small, codec, hi).nbytes * fraction)
    coded = baselines.match_size(small, codec, budget)
    assert coded is not None and coded.codec == codec
    assert coded.nbytes <= budget
    assert coded.quality < hi
    assert baselines.encode(small, codec, coded.quality + 1).nbytes > budget


@pytest.mark.parametrize("codec", LOSSY)
def test_match_size_below_the_smallest_file_is_none(small, codec):
    assert baselines.match_size(small, codec, 10) is None


@pytest.mark.parametrize("codec", LOSSY)
@pytest.mark.parametrize("target", [0.85, 0.95])
def test_match_ssim_reaches_and_one_quality_less_does_not(small, codec, target):
    lo, _ = baselines.QUALITIES[codec]
    coded = baselines.match_ssim(small, codec, target)
    assert coded is not None
    assert ssim_reference(small, coded.decoded) >= target
    if coded.quality > lo:
        worse = baselines.encode(small, codec, coded.quality - 1)
        assert ssim_reference(small, worse.decoded) < target


def test_match_ssim_that_no_quality_reaches_is_none(small):
    assert baselines.match_ssim(small, "jpeg", 1.0) is None




@pytest.mark.parametrize("codec", [c for c in ("webp", "avif") if c in LOSSY])
def test_match_size_returns_the_highest_quality_that_fits(kodak_small, codec):
    """WebP and AVIF sizes do not grow monotonically with quality; a plain
    bisection then misses a higher quality that fits (svdk b0e0998: WebP,
    468 bytes -> quality 20 while 22 fits)."""
    lo, hi = baselines.QUALITIES[codec]
    sizes = {q: baselines.encode(kodak_small, codec, q).nbytes for q in range(lo, hi + 1)}
    budgets = {468, 699, *np.linspace(min(sizes.values()), max(sizes.values()), 12).astype(int)}
    for budget in sorted(budgets):
        fitting = [q for q, n in sizes.items() if n <= budget]
        coded = baselines.match_size(kodak_small, codec, budget)
        assert (coded and coded.quality) == (max(fitting) if fitting else None), budget


def test_bad_codec_and_quality_are_value_errors(small):
    with pytest.raises(ValueError, match="available"):
        baselines.encode(small, "bmp", 50)
    with pytest.raises(ValueError, match=r"\[1, 100\]"):
        baselines.encode(small, "jpeg", 0)
    with pytest.raises(ValueError, match=r"\[1, 100\]"):
        baselines.encode(small, "jpeg")


def test_ssim_of_the_baselines_uses_the_same_metric(small):
    coded = baselines.encode(small, "jpeg", 50)
    assert metrics.ssim(small, coded.decoded) == pytest.approx(
        ssim_reference(small, coded.decoded), abs=1e-9)
