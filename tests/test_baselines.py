"""Reference codecs: real files, honest sizes, searches that do what they say."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import svdk
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


def test_first_reaching_agrees_with_a_linear_scan():
    rng = np.random.default_rng(0)
    for trial in range(300):
        lo, hi = (0, 100) if trial % 2 else (1, 100)
        values = np.cumsum(rng.random(hi - lo + 1) * (0 if trial % 7 == 0 else 1))
        f = lambda q: float(values[q - lo])  # noqa: E731
        target = float(rng.uniform(values[0] - 1, values[-1] + 1))
        known = {int(q): f(int(q)) for q in rng.choice(np.arange(lo, hi + 1), int(rng.integers(0, 5)))}
        expected = next((q for q in range(lo, hi + 1) if f(q) >= target), None)
        for scale in ("linear", "log"):
            assert baselines.first_reaching(f, target, lo, hi, known, scale=scale) == expected


def test_first_reaching_needs_few_evaluations_on_a_smooth_curve():
    calls = []

    def f(q):
        calls.append(q)
        return 1 - 0.8 * np.exp(-((q / 30) ** 0.9))  # SSIM against JPEG quality looks like this

    known = {5: f(5), 30: f(30), 75: f(75)}
    calls.clear()
    q = baselines.first_reaching(f, 0.9, 1, 100, known, scale="ssim")
    n = len(calls)
    assert f(q) >= 0.9 > f(q - 1)
    assert n <= 4, calls  # baselines' bisection over 1..100 takes 7


@pytest.mark.parametrize("codec", LOSSY)
def test_a_match_does_not_depend_on_what_was_measured_before(kodak_small, codec):
    """svdk compare (a fresh probe) and the app (a probe that scored other
    qualities first) must name the same files."""
    target = 0.9
    nbytes = baselines.encode(kodak_small, codec, 40).nbytes + 37
    fresh = baselines.Probe(codec, kodak_small)
    scorer = metrics.Scorer(kodak_small)
    want = (fresh.match_size(nbytes), fresh.match_ssim(target, scorer))
    for history in ([7, 8, 9], [60, 61, 95], list(range(0, 101, 9))):
        probe = baselines.Probe(codec, kodak_small)
        for q in history:
            if q >= probe.lo:
                probe.score(q, scorer)
        assert (probe.match_size(nbytes), probe.match_ssim(target, scorer)) == want, history
    assert baselines.match_ssim(kodak_small, codec, target).quality == want[1]
    assert baselines.match_size(kodak_small, codec, nbytes).quality == want[0]



def test_same_ssim_looks_past_a_dip_in_jpeg_ssim():
    """JPEG's SSIM on astronaut is not monotone in quality: q20 reaches 0.8722
    though q23 does not; the match must not stop at q24."""
    import skimage.data

    image = skimage.data.astronaut()
    scorer = metrics.Scorer(image)
    probe = baselines.Probe("jpeg", image)
    scores = {q: probe.score(q, scorer)[1] for q in range(15, 26)}
    target = 0.8722
    assert any(scores[q] < target for q in range(20, 24)) and scores[20] >= target  # the dip is there
    q = probe.match_ssim(target, scorer)
    assert scores[q] >= target and q <= 20 and scores[q - 1] < target


def test_matching_ssim_on_an_image_too_thin_for_ssim_says_so():
    thin = np.random.default_rng(0).integers(0, 256, (2, 40, 3), dtype=np.uint8)
    with pytest.raises(svdk.OptionError, match="SSIM is undefined for a 40x2 image"):
        baselines.match_ssim(thin, "jpeg", 0.9)
    assert baselines.match_size(thin, "jpeg", 10_000) is not None


# ----------------------------------------------------------------------------
# jpegli and JPEG XL (the test extra installs both)


@pytest.fixture(params=["rgb", "gray"])
def photo(request):
    """A 64x80 crop of scikit-image's astronaut (no data folder needed), RGB or gray."""
    import skimage.data

    crop = np.ascontiguousarray(skimage.data.astronaut()[100:164, 180:260])
    return crop if request.param == "rgb" else _gray(crop)


@pytest.mark.parametrize("codec", ["jpegli", "jxl"])
def test_the_anchors_write_real_files_that_grow_with_quality(photo, codec):
    small = photo
    assert codec in baselines.available()
    lo, hi = baselines.QUALITIES[codec]
    low, high = baselines.encode(small, codec, lo + 10), baselines.encode(small, codec, hi - 10)
    assert low.nbytes < high.nbytes
    assert high.decoded.shape == small.shape and high.decoded.dtype == np.uint8
    assert metrics.psnr(small, high.decoded) > metrics.psnr(small, low.decoded) > 20
    if codec == "jpegli":  # an ordinary JPEG file: Pillow reads it too
        with Image.open(io.BytesIO(high.data)) as im:
            assert im.format == "JPEG" and im.size == (small.shape[1], small.shape[0])
    else:  # a bare JPEG XL codestream
        assert high.data[:2] == b"\xff\x0a"
    # a match works on them as on Pillow's codecs
    assert baselines.match_size(small, codec, high.nbytes).nbytes <= high.nbytes


def test_jxl_quality_100_is_refused_with_the_range():
    with pytest.raises(ValueError, match=r"jxl quality must be in \[0, 99\]"):
        baselines.encode(np.zeros((8, 8, 3), np.uint8), "jxl", 100)


@pytest.mark.parametrize("codec, module, package", [("jpegli", "pyjpegli", "pyjpegli"),
                                                    ("jxl", "pillow_jxl", "pillow-jxl-plugin")])
def test_a_missing_anchor_package_is_named_with_what_to_install(codec, module, package, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    assert codec not in baselines.available()
    why = baselines.unavailable()[codec]
    assert why.startswith(f"{package} is not installed") and "pip install 'svdk[bench]'" in why
    with pytest.raises(svdk.OptionError, match=f"{package} is not installed"):
        baselines.encode(np.zeros((8, 8, 3), np.uint8), codec, 50)
