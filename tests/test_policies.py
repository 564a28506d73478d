"""Rank policies on real photographs: fixed, energy, quality and size.

What is measured, and how, independently of svdk's own code:

* rgb mode: the decoded image against the original with the numpy SSIM/PSNR
  in ``_support`` (whole image and each channel). The policy searches each
  channel, so every channel, and so the whole image, reaches the target.
* ycbcr mode: the policy measures the *luma plane* (the 8-bit-rounded
  decoded Y plane against the unrounded Y of the original). We read that
  plane out of the file with the spec reader in ``_support`` and score it
  against the JFIF luma of the original: it reaches the target to 1e-4.
  Luma recomputed from the final decoded RGB (after chroma decoding and
  rounding to 8-bit RGB) is only checked to be at most 0.01 (SSIM) or
  0.5 dB (PSNR) below the target. The whole-image RGB score can be
  further below: ycbcr mode does not promise it.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import svdk
from _support import luma, plane_values, psnr_reference, ssim_reference, smooth_image

pytestmark = pytest.mark.filterwarnings("ignore::svdk.SvdkWarning")

SCORE = {"ssim": ssim_reference, "psnr": psnr_reference}


def luma_plane(data: bytes) -> np.ndarray:
    """The decoded, 8-bit-rounded luma plane of a ycbcr file, read per the spec."""
    return np.clip(np.rint(plane_values(data)[0]), 0, 255)


@pytest.fixture(params=["kodak_crop", "kodak_crop_wide"])
def photo(request):
    return request.getfixturevalue(request.param)


# ----------------------------------------------------------------------------
# fixed


@pytest.mark.parametrize("k", [1, 2, 5, 37, 128])
def test_fixed_rank_sets_every_plane(photo, k):
    rgb = svdk.encode(photo, mode="rgb", rank=k)
    assert rgb.ranks == (k, k, k) == tuple(svdk.info(rgb.data)["ranks"])
    ycc = svdk.encode(photo, rank=k)
    y, cb, cr = ycc.ranks
    assert y == k and cb == cr
    share = k * svdk.CHROMA_RANK_FRACTION
    if share < 1:
        assert cb == 1
    else:
        assert abs(cb - share) <= 0.5
    assert ycc.policy == rgb.policy == "fixed"


def test_ranks_one_by_one(photo):
    assert svdk.encode(photo, mode="rgb", ranks=(30, 3, 12)).ranks == (30, 3, 12)
    assert svdk.encode(photo, ranks=(30, 64, 1)).ranks == (30, 64, 1)


# ----------------------------------------------------------------------------
# energy


def _energy_kept(plane: np.ndarray) -> np.ndarray:
    """Fraction of sum(s_i**2) kept by each rank, from LAPACK's full SVD in float64."""
    with threadpool_limits(1):  # no BLAS threads fighting over 2 cores
        s = np.linalg.svd(plane.astype(np.float64), compute_uv=False)
    return np.cumsum(s**2) / np.sum(plane.astype(np.float64) ** 2)


@pytest.mark.parametrize("mode", ["rgb", "ycbcr"])
def test_energy_keeps_the_fraction_and_no_more(photo, mode):
    planes = [photo[..., c] for c in range(3)] if mode == "rgb" else [luma(photo)]
    kept = [_energy_kept(p) for p in planes]
    for fraction in (0.99, 0.999, 0.9999):
        encoded = svdk.encode(photo, mode=mode, energy=fraction)
        for curve, k in zip(kept, encoded.ranks):
            assert curve[k - 1] >= fraction
            assert k == 1 or curve[k - 2] < fraction, f"rank {k - 1} keeps {fraction} already"
        if mode == "ycbcr":  # chroma follows luma as with a fixed rank
            assert encoded.ranks[1:] == svdk.encode(photo, rank=encoded.ranks[0]).ranks[1:]


# ----------------------------------------------------------------------------
# quality


@pytest.mark.parametrize("target", ["ssim:0.8", "ssim:0.9", "ssim:0.95", "psnr:30", "psnr:35"])
def test_quality_in_rgb_reaches_the_target_and_one_rank_less_does_not(photo, target):
    metric, value = target.split(":")
    value, score = float(value), SCORE[metric]
    encoded = svdk.encode(photo, mode="rgb", quality=target)
    decoded = svdk.decompress(encoded.data)

    assert getattr(svdk.metrics, metric)(photo, decoded) >= value
    assert score(photo, decoded) >= value
    for c, k in enumerate(encoded.ranks):
        assert score(photo[..., c], decoded[..., c]) >= value
        if k > 1:
            fewer = list(encoded.ranks)
            fewer[c] -= 1
            worse = svdk.decompress(svdk.compress(photo, mode="rgb", ranks=fewer))
            assert score(photo[..., c], worse[..., c]) < value, f"channel {c} at rank {k - 1}"


@pytest.mark.parametrize("target", ["ssim:0.8", "ssim:0.9", "ssim:0.95", "psnr:30", "psnr:34"])
@pytest.mark.parametrize("subsampling", ["4:2:0", "4:4:4"])
def test_quality_in_ycbcr_reaches_the_target_on_luma(photo, target, subsampling):
    metric, value = target.split(":")
    value, score = float(value), SCORE[metric]
    encoded = svdk.encode(photo, quality=target, subsampling=subsampling)
    y_ref = luma(photo)

    assert score(y_ref, luma_plane(encoded.data)) >= value - 1e-4
    k, c1, c2 = encoded.ranks
    if k > 1:
        fewer = svdk.compress(photo, ranks=(k - 1, c1, c2), subsampling=subsampling)
        assert score(y_ref, luma_plane(fewer)) < value + 1e-4
    # Luma of the final 8-bit RGB pixels: at most a little below the target.
    tolerance = 0.01 if metric == "ssim" else 0.5
    assert score(y_ref, luma(svdk.decompress(encoded.data))) >= value - tolerance


def test_default_policy_is_ssim_090_on_luma(kodak_crop):
    encoded = svdk.encode(kodak_crop)
    assert encoded.policy == "quality" and "0.9" in encoded.reason
    assert ssim_reference(luma(kodak_crop), luma_plane(encoded.data)) >= 0.9 - 1e-4


def test_quality_on_a_gray_image(kodak_crop):
    gray = np.rint(luma(kodak_crop)).astype(np.uint8)
    encoded = svdk.encode(gray, quality="ssim:0.9")
    k = encoded.ranks[0]
    assert ssim_reference(gray, svdk.decompress(encoded.data)) >= 0.9
    assert ssim_reference(gray, svdk.decompress(svdk.compress(gray, rank=k - 1))) < 0.9


def test_unreachable_quality_says_what_is_reachable(kodak_crop):
    with pytest.raises(svdk.OptionError) as err:
        svdk.encode(kodak_crop, quality="ssim:1.0", qstep=8)
    message = str(err.value)
    assert "full rank 128" in message
    best = float(re.search(r"best is ([0-9.]+)", message).group(1))
    at_full = svdk.compress(kodak_crop, ranks=(128, 32, 32), qstep=8)
    assert best == pytest.approx(ssim_reference(luma(kodak_crop), luma_plane(at_full)), abs=1e-3)


def test_ssim_needs_three_pixels_a_side():
    thin = smooth_image(2, 30, 3)
    with pytest.raises(svdk.OptionError, match="PSNR target or give the rank"):
        svdk.encode(thin)
    assert svdk.encode(thin, quality="psnr:30").ranks[0] >= 1


# ----------------------------------------------------------------------------
# size




@pytest.mark.parametrize(
    "mode, budget",
    [
        ("ycbcr", 3000),
        ("ycbcr", 5000),
        ("ycbcr", 12000),
        ("rgb", 3000),
        ("rgb", 8000),
        ("rgb", "20KB"),
    ],
)
def test_size_fits_the_budget_and_one_rank_more_does_not(kodak_crop, mode, budget):
    limit = svdk.policies.parse_size(budget)
    encoded = svdk.encode(kodak_crop, mode=mode, size=budget)
    assert len(encoded.data) <= limit
    assert svdk.info(encoded.data)["ranks"] == list(encoded.ranks)
    k = encoded.ranks[0]
    assert k < 128
    assert len(svdk.compress(kodak_crop, mode=mode, rank=k + 1)) > limit


def test_size_reports_the_ranks_of_the_file_it_returns(kodak_crop):
    """The bytes a policy returns decode to the ranks it reports."""
    encoded = svdk.encode(kodak_crop, mode="rgb", size=8000)
    assert tuple(svdk.info(encoded.data)["ranks"]) == encoded.ranks


def test_reported_ranks_reproduce_the_file(kodak_crop):
    encoded = svdk.encode(kodak_crop, mode="rgb", quality="ssim:0.8")
    assert svdk.compress(kodak_crop, mode="rgb", ranks=encoded.ranks) == encoded.data


def test_a_huge_budget_gives_the_full_rank(rgb_image):
    encoded = svdk.encode(rgb_image, mode="rgb", size="1MB")
    assert encoded.ranks == (24, 24, 24)


def test_a_budget_below_rank_1_says_how_much_is_needed(kodak_crop):
    smallest = len(svdk.compress(kodak_crop, rank=1))
    with pytest.raises(svdk.OptionError, match=rf"takes {smallest} bytes") as err:
        svdk.encode(kodak_crop, size=10)
    assert "budget of 10 bytes" in str(err.value)


# ----------------------------------------------------------------------------
# options that do not fit


BAD_OPTIONS = [
    # options, fragments the message must contain (the crop is 192x128, W x H)
    ({"rank": 0}, ["[1, 128]", "192x128", "got 0"]),
    ({"rank": 129}, ["[1, 128]", "got 129"]),
    ({"rank": 2.5}, ["integer", "2.5"]),
    ({"ranks": (5, 5)}, ["3 plane(s)", "got 2"]),
    ({"ranks": (5, 5, 5, 5)}, ["3 plane(s)", "got 4"]),
    ({"ranks": (5, 65, 5)}, ["Cb", "[1, 64]", "96x64", "got 65"]),  # 4:2:0 chroma
    ({"mode": "rgb", "ranks": (5, 129, 5)}, ["G", "[1, 128]", "got 129"]),
    ({"mode": "hsv"}, ["'hsv'", "'rgb' or 'ycbcr'"]),
    ({"mode": "gray"}, ["grayscale"]),
    ({"subsampling": "4:2:2"}, ["'4:2:0' or '4:4:4'"]),
    ({"rank": 5, "quality": "ssim:0.9"}, ["one of", "rank, quality"]),
    ({"size": 1000, "energy": 0.9}, ["size, energy"]),
    ({"quality": "foo:1"}, ["'foo'", "'ssim' or 'psnr'"]),
    ({"quality": "ssim"}, ["'ssim:0.95'"]),
    ({"quality": "ssim:1.5"}, ["(0, 1]", "1.5"]),
    ({"quality": "psnr:0"}, ["(0, 100]"]),
    ({"quality": "ssim:high"}, ["number", "'high'"]),
    ({"size": "-3KB"}, ["'30KB'", "'-3KB'"]),
    ({"size": "3 parsecs"}, ["'30KB'"]),
    ({"size": 0}, ["at least 1 byte"]),
    ({"energy": 0}, ["(0, 1]"]),
    ({"energy": 1.5}, ["(0, 1]"]),
    ({"qstep": 0}, ["[1/256, 255]", "got 0"]),
    ({"qstep": 1000}, ["[1/256, 255]"]),
    ({"policy": "nope"}, ["'nope'", "energy, fixed, quality, size"]),
]


@pytest.mark.parametrize("options, fragments", BAD_OPTIONS, ids=lambda v: repr(v)[:40])
def test_bad_options_are_option_errors_that_say_what_is_allowed(kodak_crop_wide, options,
                                                                fragments):
    with pytest.raises(svdk.OptionError) as err:
        svdk.encode(kodak_crop_wide, **options)
    for fragment in fragments:
        assert fragment in str(err.value)
    assert isinstance(err.value, ValueError)


def test_rank_range_follows_the_image(gray_image):
    with pytest.raises(svdk.OptionError, match=r"\[1, 23\] for a 31x23 image; got 24"):
        svdk.encode(gray_image, rank=24)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"qstep": "foo"}, id="qstep-text"),
        pytest.param({"ranks": (2.5, 1, 1)}, id="ranks-fraction"),
        pytest.param({"ranks": "123"}, id="ranks-string"),
    ],
)
def test_malformed_values_are_option_errors(rgb_image, options):
    with pytest.raises(svdk.OptionError):
        svdk.encode(rgb_image, **options)


# ----------------------------------------------------------------------------
# the registry


def test_a_registered_policy_is_used(rgb_image, monkeypatch):
    monkeypatch.setattr(svdk.policies, "_REGISTRY", dict(svdk.policies._REGISTRY))

    @svdk.policies.register("a-third")
    def a_third(session, target):
        k = max(1, min(session.max_ranks) // 3)
        return svdk.policies.RankChoice((k, k, k), "a third of the smallest side")

    assert "a-third" in svdk.policies.names()
    encoded = svdk.encode(rgb_image, mode="rgb", policy="a-third")
    assert encoded.policy == "a-third" and encoded.ranks == (8, 8, 8)
    assert encoded.data == svdk.compress(rgb_image, mode="rgb", rank=8)


def test_a_policy_returning_bad_ranks_is_caught(rgb_image, monkeypatch):
    monkeypatch.setattr(svdk.policies, "_REGISTRY", dict(svdk.policies._REGISTRY))
    svdk.policies.register("too-big")(
        lambda session, target: svdk.policies.RankChoice((99, 99, 99), "too big"))
    with pytest.raises(svdk.OptionError, match=r"\[1, 24\]"):
        svdk.encode(rgb_image, mode="rgb", policy="too-big")
