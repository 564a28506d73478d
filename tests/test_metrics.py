"""svdk.metrics against the formulas written out in plain numpy (``_support``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import svdk
from svdk import metrics
from _support import ms_ssim_reference, psnr_reference, smooth_image, ssim_reference

pytestmark = pytest.mark.filterwarnings("ignore::svdk.SvdkWarning")


def _pair(height, width, channels, seed, noise):
    clean = smooth_image(height, width, channels, seed=seed, noise=0)
    rng = np.random.default_rng(seed + 1)
    noisy = np.clip(clean.astype(int) + rng.normal(0, noise, clean.shape).round(), 0, 255)
    return clean, noisy.astype(np.uint8)


@settings(max_examples=40)
@given(
    height=st.integers(7, 40),
    width=st.integers(7, 40),
    channels=st.sampled_from([1, 3]),
    seed=st.integers(0, 1000),
    noise=st.floats(0.5, 60),
)
def test_psnr_and_ssim_match_the_formulas(height, width, channels, seed, noise):
    a, b = _pair(height, width, channels, seed, noise)
    if np.array_equal(a, b):
        return
    assert metrics.psnr(a, b) == pytest.approx(psnr_reference(a, b), abs=1e-9)
    assert metrics.ssim(a, b) == pytest.approx(ssim_reference(a, b), abs=1e-9)


def test_colour_ssim_is_the_mean_of_the_channels(kodak_crop):
    decoded = svdk.decompress(svdk.compress(kodak_crop, mode="rgb", rank=10))
    per_channel = [ssim_reference(kodak_crop[..., c], decoded[..., c]) for c in range(3)]
    assert metrics.ssim(kodak_crop, decoded) == pytest.approx(np.mean(per_channel), abs=1e-9)
    assert len({round(s, 4) for s in per_channel}) > 1  # the channels really differ
    # PSNR of a colour image pools the squared error over all channels
    assert metrics.psnr(kodak_crop, decoded) == pytest.approx(
        psnr_reference(kodak_crop, decoded), abs=1e-9)


def test_ssim_is_the_same_in_two_threads(kodak_crop, monkeypatch):
    """Large images sum their SSIM strips in two threads: the same number, to the last bit."""
    from svdk import _threads

    decoded = svdk.decompress(svdk.compress(kodak_crop, rank=6))
    reference = kodak_crop.astype(np.float32)  # a float plane, as the quality search scores
    monkeypatch.setattr(_threads, "cores", lambda: 1)
    alone = (metrics.ssim(kodak_crop, decoded), metrics.Scorer(reference[..., 0]).ssim(decoded[..., 0]))
    monkeypatch.setattr(_threads, "cores", lambda: 2)
    monkeypatch.setattr(metrics, "THREADED_PIXELS", 1)
    monkeypatch.setattr(metrics.Scorer, "STRIP", 7)  # many strips on a small image
    threaded = (metrics.ssim(kodak_crop, decoded), metrics.Scorer(reference[..., 0]).ssim(decoded[..., 0]))
    monkeypatch.setattr(_threads, "cores", lambda: 1)
    assert threaded == (metrics.ssim(kodak_crop, decoded), metrics.Scorer(reference[..., 0]).ssim(decoded[..., 0]))
    assert threaded[0] == pytest.approx(alone[0], abs=1e-12)
    assert threaded[0] == pytest.approx(ssim_reference(kodak_crop, decoded), abs=1e-9)


@pytest.mark.parametrize("shape", [(7, 9), (8, 9), (9, 30), (64, 33), (101, 77)])
def test_window_sums_are_the_same_in_two_threads(shape, monkeypatch):
    """A reference's window sums are computed in two threads (top and bottom rows): each sum
    equals the one-thread sum to the bit, for 8-bit and float planes."""
    from svdk import _threads

    rng = np.random.default_rng(shape[0])
    planes = (rng.integers(0, 256, shape).astype(np.uint8), rng.uniform(0, 255, shape))
    monkeypatch.setattr(_threads, "cores", lambda: 1)
    alone = [metrics._window_sums(p, 7) for p in planes]
    monkeypatch.setattr(_threads, "cores", lambda: 2)
    monkeypatch.setattr(metrics, "THREADED_PIXELS", 1)
    for plane, want in zip(planes, alone):
        got = metrics._window_sums_large(plane, 7)
        assert got.dtype == want.dtype and np.array_equal(got, want)


def test_known_values():
    a = np.zeros((8, 8), np.uint8)
    b = a.copy()
    b[0, 0] = 16  # MSE = 256 / 64 = 4
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 4))
    assert metrics.psnr(a, a) == math.inf
    assert metrics.ssim(a, a) == pytest.approx(1.0)
    # Two flat images: only the luminance term is left, (2 m1 m2 + C1) / (m1^2 + m2^2 + C1)
    c1 = (0.01 * 255) ** 2
    flat = np.full((9, 9), 100, np.uint8)
    assert metrics.ssim(flat, np.full((9, 9), 140, np.uint8)) == pytest.approx(
        (2 * 100 * 140 + c1) / (100**2 + 140**2 + c1), abs=1e-12)


@pytest.mark.parametrize("height, width, window", [(6, 40, 5), (5, 5, 5), (4, 30, 3), (3, 3, 3)])
def test_ssim_window_shrinks_on_small_images(height, width, window):
    a, b = _pair(height, width, 3, 1, 20)
    assert metrics.ssim_window(height, width) == window
    assert metrics.ssim(a, b) == pytest.approx(ssim_reference(a, b, win=window), abs=1e-9)


@pytest.mark.parametrize("height, width", [(2, 40), (40, 1), (1, 1)])
def test_ssim_is_undefined_below_three_pixels(height, width):
    a, b = _pair(height, width, 1, 1, 20)
    assert metrics.ssim_window(height, width) is None
    assert metrics.ssim(a, b) is None


def test_shapes_must_match():
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.psnr(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.ssim(np.zeros((8, 8, 3)), np.zeros((8, 8)))


@pytest.mark.parametrize("metric", ["ssim", "psnr"])
@pytest.mark.parametrize("shape", [(128, 128), (23, 31), (7, 50), (3, 9), (40, 30, 3), (5, 6, 3)])
@pytest.mark.parametrize("reference_kind", ["float plane", "8-bit"])
def test_scorer_agrees_with_scikit_image(kodak_crop, metric, shape, reference_kind):
    """The one SSIM/PSNR implementation against scikit-image's own functions."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    h, w = shape[:2]
    crop = kodak_crop[:h, :w] if len(shape) == 3 else kodak_crop[:h, :w, 1]
    # unrounded floats, like a Y plane computed from RGB; or the 8-bit image itself
    reference = crop.astype(np.float32) + np.float32(0.3) if reference_kind == "float plane" else crop
    scorer = metrics.Scorer(reference)
    rng = np.random.default_rng(h * w)
    for noise in (1, 8, 40):
        decoded = np.clip(np.rint(reference + rng.normal(0, noise, shape)), 0, 255).astype(np.uint8)
        ref64, dec64 = reference.astype(np.float64), decoded.astype(np.float64)
        if metric == "psnr":
            want = peak_signal_noise_ratio(ref64, dec64, data_range=255)
            assert scorer.psnr(decoded) == pytest.approx(want, abs=1e-9)
        else:
            win = metrics.ssim_window(h, w)
            want = structural_similarity(ref64, dec64, data_range=255, win_size=win,
                                         channel_axis=-1 if len(shape) == 3 else None)
            assert scorer.ssim(decoded) == pytest.approx(want, abs=1e-9)


def test_scorer_on_a_thin_plane_has_psnr_but_no_ssim():
    scorer = metrics.Scorer(np.zeros((2, 10)))
    assert scorer.ssim(np.ones((2, 10))) is None
    assert scorer.psnr(np.ones((2, 10))) == pytest.approx(10 * math.log10(255**2))
    assert metrics.Scorer(np.zeros((9, 9), np.uint8)).psnr(np.zeros((9, 9), np.uint8)) == math.inf


def test_scorer_refuses_a_candidate_of_another_shape():
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.Scorer(np.zeros((8, 8), np.uint8)).ssim(np.zeros((8, 9), np.uint8))


def test_bpp_counts_the_real_bytes(rgba_image):
    encoded = svdk.encode(rgba_image, rank=5)
    bits = 8 * len(encoded.data)
    assert metrics.bpp(len(encoded.data), 32, 24) == bits / (32 * 24)
    assert encoded.bpp == bits / (32 * 24)
    assert svdk.info(encoded.data)["bpp"] == bits / (32 * 24)
    assert encoded.nbytes == len(encoded.data)
    assert encoded.raw_bytes == 32 * 24 * 4  # RGB + alpha


def test_alpha_counts_in_no_figure(kodak_crop):
    """Alpha is stored losslessly: an RGBA pair scores like its RGB channels, whichever side has alpha."""
    rng = np.random.default_rng(3)
    noisy = np.clip(kodak_crop + rng.integers(-9, 10, kodak_crop.shape), 0, 255).astype(np.uint8)
    alpha = rng.integers(0, 256, kodak_crop.shape[:2] + (1,), dtype=np.uint8)
    rgba, noisy_rgba = np.concatenate([kodak_crop, alpha], -1), np.concatenate([noisy, 255 - alpha], -1)
    want = (metrics.psnr(kodak_crop, noisy), metrics.ssim(kodak_crop, noisy))
    assert metrics.Scorer(rgba)(noisy_rgba) == want
    assert metrics.Scorer(kodak_crop)(noisy_rgba) == want
    assert (metrics.psnr(rgba, noisy_rgba), metrics.ssim(rgba, noisy_rgba)) == want
    gray = kodak_crop[..., 0]
    assert metrics.Scorer(np.stack([gray, alpha[..., 0]], -1)).psnr(gray) == math.inf


def test_an_empty_image_is_an_image_error():
    with pytest.raises(svdk.ImageError, match="empty image"):
        metrics.psnr(np.zeros((0, 5)), np.zeros((0, 5)))


# ----------------------------------------------------------------------------
# MS-SSIM (TensorFlow's): checked against the published definition, written
# out in numpy in _support.ms_ssim_reference from Wang, Simoncelli and
# Bovik's paper and MATLAB code. TensorFlow computes in float32, the
# reference in float64: they agree to about 2e-6, so 1e-5 is asked.


def _jpeg_pair(height: int, width: int, quality: int, gray: bool = False):
    import io

    import skimage.data
    from PIL import Image

    photo = skimage.data.astronaut()[:height, 60 : 60 + width]
    photo = np.ascontiguousarray(photo[..., 1] if gray else photo)
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "JPEG", quality=quality)
    return photo, np.asarray(Image.open(buf))


@pytest.mark.parametrize(
    "height, width, quality, gray",
    # odd sides at several scales (181 -> 91 -> 46 -> 23 -> 12, 169 -> 85 -> 43 -> 22 -> 11):
    # the 2x2 downsampling's symmetric border matters there
    [(181, 169, 10, False), (200, 176, 40, False), (161, 161, 25, True)],
)
def test_ms_ssim_matches_the_published_definition(height, width, quality, gray):
    reference, decoded = _jpeg_pair(height, width, quality, gray)
    got = metrics.ms_ssim(reference, decoded)
    want = ms_ssim_reference(reference, decoded)
    assert 0.5 < want < 0.999  # a real distortion, not a trivial pair
    assert got == pytest.approx(want, abs=1e-5)


def test_ms_ssim_of_identical_images_is_exactly_one_and_drops_with_distortion():
    reference, decoded = _jpeg_pair(192, 192, 30)
    assert metrics.ms_ssim(reference, reference) == 1.0
    worse = _jpeg_pair(192, 192, 5)[1]
    assert metrics.ms_ssim(reference, worse) < metrics.ms_ssim(reference, decoded) < 1.0
    assert metrics.ms_ssim_db(1.0) is None and metrics.ms_ssim_db(None) is None
    assert metrics.ms_ssim_db(0.99) == pytest.approx(20.0, abs=1e-12)


@pytest.mark.parametrize("height, width", [(160, 500), (500, 160), (24, 32)])
def test_ms_ssim_is_undefined_below_161_pixels(height, width):
    a, b = _pair(height, width, 3, 1, 10)
    assert metrics.ms_ssim(a, b) is None
    why = metrics.ms_ssim_undefined(height, width)
    assert "161" in why and f"{width}x{height}" in why
    assert metrics.ms_ssim_undefined(161, 161) is None


def test_ms_ssim_refuses_images_of_different_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.ms_ssim(np.zeros((170, 170, 3), np.uint8), np.zeros((170, 171, 3), np.uint8))


def test_ms_ssim_without_tensorflow_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow now fails
    monkeypatch.setattr(metrics, "_ms_ssim_graph", None)
    image = np.zeros((170, 170, 3), np.uint8)
    with pytest.raises(ImportError, match=r"TensorFlow.*svdk\[keras\]"):
        metrics.ms_ssim(image, image)
    assert metrics.ms_ssim(image[:100], image[:100]) is None  # no TensorFlow needed to say so
