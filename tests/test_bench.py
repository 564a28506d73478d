"""Tests of ``svdk bench`` (:mod:`svdk.bench`): the Bjøntegaard figures, PSNR at
a given rate, and real runs on two small images: the summary's ranges and
measures, MS-SSIM, the anchors (jpegli, JPEG XL) present or skipped, and
CompressAI's results layout.

The BD functions are checked three ways: against values worked out by hand
(curves that are straight lines in ``log(bpp)``, which PCHIP reproduces
exactly), against exact identities (a shifted curve, a curve at half the
rate), and against the ``bjontegaard`` package (its PCHIP method) on curves
whose overlap is exactly the fixed range 0.25-1.0 bpp, so that its
overlap-based range and our fixed range are the same interval.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import shlex
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import svdk
from _support import psnr_reference, smooth_image
from svdk import bench, cli
from svdk.bench import bd_psnr, bd_rate, psnr_at

LN2 = math.log(2.0)


def line(a: float, b: float, bpp) -> np.ndarray:
    """PSNR ``a + b ln(bpp)``: a straight line in log-rate."""
    return a + b * np.log(np.asarray(bpp, dtype=float))


def realistic(bpp, *, knee: float = 3.0, gain: float = 9.0, base: float = 22.0) -> np.ndarray:
    """A concave, increasing RD curve, not a line in log-rate (so PCHIP matters)."""
    bpp = np.asarray(bpp, dtype=float)
    return base + gain * np.log1p(knee * bpp) - 1.5 * bpp


REF_BPP = np.array([0.12, 0.2, 0.33, 0.5, 0.71, 1.1, 1.6])


# ----------------------------------------------------------------------------
# Bjøntegaard deltas: values by hand


def test_identical_curves_have_no_delta():
    psnr = realistic(REF_BPP)
    assert bd_psnr(REF_BPP, psnr, REF_BPP, psnr) == 0.0
    assert bd_rate(REF_BPP, psnr, REF_BPP, psnr) == 0.0


@pytest.mark.parametrize("shift", [1.0, -2.5])
def test_a_curve_shifted_in_psnr_has_that_bd_psnr(shift):
    psnr = realistic(REF_BPP)
    assert bd_psnr(REF_BPP, psnr, REF_BPP, psnr + shift) == pytest.approx(shift, abs=1e-12)
    assert bd_psnr(REF_BPP, psnr + shift, REF_BPP, psnr) == pytest.approx(-shift, abs=1e-12)


@pytest.mark.parametrize("factor, percent", [(0.5, -50.0), (2.0, 100.0), (0.8, -20.0)])
def test_a_curve_at_a_fraction_of_the_rate_has_that_bd_rate(factor, percent):
    psnr = realistic(REF_BPP)
    assert bd_rate(REF_BPP, psnr, REF_BPP * factor, psnr) == pytest.approx(percent, abs=1e-9)


def test_bd_psnr_of_lines_in_log_rate_is_the_mean_gap_over_0_25_to_1_bpp():
    # ref 30 + 4 ln r, test 31 + 5 ln r: the gap is 1 + ln r, whose mean over
    # ln r in [ln 0.25, 0] is 1 + ln(0.25) / 2 = 1 - ln 2. The curves span
    # 0.1-2 bpp, so a method that used their whole overlap would give
    # 1 + (ln 0.1 + ln 2) / 2 = 0.195 instead of 0.307.
    bpp = np.geomspace(0.1, 2.0, 6)
    got = bd_psnr(bpp, line(30, 4, bpp), bpp, line(31, 5, bpp))
    assert got == pytest.approx(1.0 - LN2, abs=1e-12)


def test_bd_rate_of_lines_in_log_rate_by_hand():
    # ln r = (P - a) / b. Over the PSNR interval of the reference between
    # 0.25 and 1 bpp, [a - 2 b ln 2, a], the mean of P is a - b ln 2 and the
    # log-rate gap is linear in P, so its mean is the gap at that mean.
    a, b, a2, b2 = 30.0, 4.0, 31.0, 5.0
    bpp = np.geomspace(0.1, 2.0, 6)
    p_mean = a - b * LN2
    gap = (p_mean - a2) / b2 - (p_mean - a) / b
    got = bd_rate(bpp, line(a, b, bpp), bpp, line(a2, b2, bpp))
    assert got == pytest.approx(100.0 * math.expm1(gap), abs=1e-9)


def test_bd_rate_of_parallel_lines_is_the_shift_over_the_slope():
    bpp = np.geomspace(0.1, 2.0, 5)
    got = bd_rate(bpp, line(30, 4, bpp), bpp, line(31.5, 4, bpp))
    assert got == pytest.approx(100.0 * math.expm1(-1.5 / 4), abs=1e-9)


def test_a_curve_at_half_the_rate_gains_slope_times_ln2_in_bd_psnr():
    # test(r) = ref(2 r) for a line a + b ln r: the gain is b ln 2 everywhere.
    bpp = np.geomspace(0.1, 2.0, 7)
    got = bd_psnr(bpp, line(30, 6 / LN2, bpp), bpp / 2, line(30, 6 / LN2, bpp))
    assert got == pytest.approx(6.0, abs=1e-12)


def test_points_order_and_missing_values_do_not_matter():
    psnr = realistic(REF_BPP)
    test_psnr = realistic(REF_BPP, gain=9.5)
    want = bd_psnr(REF_BPP, psnr, REF_BPP, test_psnr)
    perm = np.random.default_rng(3).permutation(len(REF_BPP))
    shuffled = bd_psnr(REF_BPP[perm], psnr[perm], REF_BPP[perm], test_psnr[perm])
    assert shuffled == pytest.approx(want, abs=1e-12)
    # a lossless point (PSNR None in the JSON) is left out
    with_none = bd_psnr([*REF_BPP, 12.0], [*psnr, None], REF_BPP, test_psnr)
    assert with_none == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize(
    "test_bpp",
    [np.array([0.3, 0.5, 0.8, 1.4]), np.array([0.1, 0.3, 0.6, 0.9])],
    ids=["starts above 0.25", "ends below 1.0"],
)
def test_bd_psnr_is_nan_when_a_curve_does_not_cover_the_range(test_bpp):
    psnr = realistic(REF_BPP)
    assert math.isnan(bd_psnr(REF_BPP, psnr, test_bpp, realistic(test_bpp)))
    assert math.isnan(bd_psnr(test_bpp, realistic(test_bpp), REF_BPP, psnr))


def test_bd_rate_needs_a_reference_that_covers_the_range():
    # the reference starts at 0.12 bpp: it covers 0.25-1 but not 0.1-0.3
    psnr = realistic(REF_BPP)
    assert math.isfinite(bd_rate(REF_BPP, psnr, REF_BPP * 0.8, psnr))
    assert math.isnan(bd_rate(REF_BPP, psnr, REF_BPP * 0.8, psnr, 0.1, 0.3))
    assert bd_rate(REF_BPP, psnr, REF_BPP * 0.8, psnr, 0.15, 0.3) == pytest.approx(-20.0, abs=1e-9)


def test_bd_rate_overlap_is_the_share_of_the_reference_interval_the_test_reaches():
    # ref 30 + 4 ln r spans [30 - 8 ln 2, 30] dB between 0.25 and 1 bpp; a parallel
    # test curve 2 dB higher that starts at 0.25 bpp reaches down to 32 - 8 ln 2 dB only
    bpp = np.geomspace(0.1, 2.0, 6)
    ref = line(30, 4, bpp)
    assert bench.bd_rate_overlap(bpp, ref, bpp, line(30, 4, bpp) + 0.5) == pytest.approx(1.0, abs=1e-12)
    test_bpp = np.geomspace(0.25, 2.0, 6)
    share = bench.bd_rate_overlap(bpp, ref, test_bpp, line(32, 4, test_bpp))
    assert share == pytest.approx((8 * LN2 - 2) / (8 * LN2), abs=1e-12)
    # over the part they share, the parallel lines are 2 dB apart: exp(-2 / 4) in rate
    assert bd_rate(bpp, ref, test_bpp, line(32, 4, test_bpp)) == pytest.approx(100 * math.expm1(-0.5), abs=1e-9)


def test_bd_is_nan_without_two_points_or_a_shared_psnr_interval():
    psnr = realistic(REF_BPP)
    assert math.isnan(bd_psnr(REF_BPP, psnr, [0.5], [30.0]))
    assert math.isnan(bd_rate(REF_BPP, psnr, [0.5], [30.0]))
    # the test codec never gets down to the reference's PSNR at 1 bpp
    assert math.isnan(bd_rate(REF_BPP, psnr, REF_BPP, psnr + 20.0))


# ----------------------------------------------------------------------------
# Bjøntegaard deltas: the bjontegaard package


def _package_cases():
    """Reference curves from exactly 0.25 to 1.0 bpp, test curves reaching past
    both ends in rate and in PSNR: the package's overlap is then exactly our
    fixed range, in rate (BD-PSNR) and in PSNR (BD-rate)."""
    rng = np.random.default_rng(20240601)
    cases = []
    while len(cases) < 6:
        i = len(cases)
        ref_bpp = np.sort(np.concatenate([[0.25, 1.0], rng.uniform(0.27, 0.97, 3 + i % 3)]))
        test_bpp = np.sort(np.concatenate([[rng.uniform(0.08, 0.15), rng.uniform(1.6, 2.5)],
                                           rng.uniform(0.2, 1.2, 3)]))
        ref = realistic(ref_bpp, knee=rng.uniform(1, 6), gain=rng.uniform(7, 10))
        test = realistic(test_bpp, knee=rng.uniform(1, 6), gain=rng.uniform(7, 10),
                         base=22.0 + rng.uniform(-1.0, 1.0))
        if test.min() < ref.min() and test.max() > ref.max():
            cases.append(pytest.param(ref_bpp, ref, test_bpp, test, id=f"case{i}"))
    return cases


@pytest.mark.parametrize("ref_bpp, ref, test_bpp, test", _package_cases())
def test_bd_figures_match_the_bjontegaard_package(ref_bpp, ref, test_bpp, test):
    bjontegaard = pytest.importorskip("bjontegaard", reason="pip install 'svdk[bench]'")
    kw = dict(method="pchip", require_matching_points=False, min_overlap=0)
    # the package integrates over the PSNR overlap; make sure it is ours
    assert test.min() < ref.min() and test.max() > ref.max()
    want_psnr = bjontegaard.bd_psnr(ref_bpp, ref, test_bpp, test, **kw)
    want_rate = bjontegaard.bd_rate(ref_bpp, ref, test_bpp, test, **kw)
    assert bd_psnr(ref_bpp, ref, test_bpp, test) == pytest.approx(want_psnr, rel=1e-9, abs=1e-9)
    assert bd_rate(ref_bpp, ref, test_bpp, test) == pytest.approx(want_rate, rel=1e-9, abs=1e-9)
    # the cases are not so smooth that every interpolation agrees: the
    # package's cubic fit gives another BD-rate, so this test sees PCHIP
    assert abs(bjontegaard.bd_rate(ref_bpp, ref, test_bpp, test, **{**kw, "method": "cubic"})
               - want_rate) > 1e-6


# ----------------------------------------------------------------------------
# PSNR at a given rate


def test_psnr_at_a_measured_rate_is_the_measurement():
    psnr = realistic(REF_BPP)
    for r, p in zip(REF_BPP, psnr):
        assert psnr_at(REF_BPP, psnr, r) == pytest.approx(p, abs=1e-12)


def test_psnr_at_interpolates_in_log_rate():
    # on a line in log-rate the value is exact; interpolating in bpp itself
    # would give 30 + 4 (ln 0.1 + (ln 0.4 - ln 0.1) / 3) = 27.95, not 27.56
    bpp = [0.1, 0.4, 1.6]
    assert psnr_at(bpp, line(30, 4, bpp), 0.2) == pytest.approx(30 + 4 * math.log(0.2), abs=1e-12)


def test_psnr_at_does_not_overshoot_a_knee():
    bpp = [0.2, 0.4, 0.6, 0.8, 1.2]
    psnr = [20.0, 30.0, 30.2, 30.3, 30.4]
    grid = np.geomspace(0.2, 1.2, 200)
    values = [psnr_at(bpp, psnr, t) for t in grid]
    assert np.all(np.diff(values) >= 0)
    assert max(values) <= 30.4 and all(30.0 <= v <= 30.2 for v, t in zip(values, grid) if 0.4 <= t <= 0.6)


@pytest.mark.parametrize("target", [0.19, 1.21, 5.0])
def test_psnr_at_refuses_to_extrapolate(target):
    bpp = [0.2, 0.4, 0.8, 1.2]
    assert math.isnan(psnr_at(bpp, realistic(bpp), target))


def test_psnr_at_needs_two_points_and_skips_missing_ones():
    assert math.isnan(psnr_at([0.5], [30.0], 0.5))
    assert psnr_at([1.0, 0.25, 3.0], [32.0, 26.0, None], 0.5) == pytest.approx(29.0, abs=1e-12)


# ----------------------------------------------------------------------------
# sweeps


def test_sweep_points_keeps_both_ends_and_spreads_the_rest():
    jpeg = bench.codecs()["jpeg"]
    n = len(jpeg.sweep)
    assert bench.sweep_points(jpeg) == jpeg.sweep
    assert bench.sweep_points(jpeg, n + 5) == jpeg.sweep
    assert bench.sweep_points(jpeg, 2) == (jpeg.sweep[0], jpeg.sweep[-1])
    three = bench.sweep_points(jpeg, 3)
    assert three == (jpeg.sweep[0], jpeg.sweep[n // 2], jpeg.sweep[-1])
    for k in range(2, n + 1):
        picked = bench.sweep_points(jpeg, k)
        assert len(picked) == k and list(picked) == sorted(picked)


# ----------------------------------------------------------------------------
# a real run


# "a" is too small for MS-SSIM (a side under 161 pixels), "b" is not
CROPS = {"a": (slice(0, 128), slice(0, 192)), "b": (slice(128, 304), slice(320, 512))}
CODECS = ["jpeg", "svdk-tiled", "png"]
KEYS = ["bpp", "psnr-rgb", "ms-ssim-rgb", "ssim", "encoding_time", "decoding_time"]
COMPRESSAI_KEYS = ["psnr-rgb", "ms-ssim-rgb", "bpp", "encoding_time", "decoding_time"]


def _images() -> dict[str, np.ndarray]:
    import skimage.data

    photo = skimage.data.astronaut()
    return {name: np.ascontiguousarray(photo[ys, xs]) for name, (ys, xs) in CROPS.items()}


def _as_json(point):
    """A sweep point as the results JSON writes it: ``("energy", 0.9)`` is ``{"energy": 0.9}``."""
    return {point[0]: point[1]} if isinstance(point, tuple) else point


def _run(argv: list[str], entry=bench.main) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = entry(argv)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    folder = tmp_path_factory.mktemp("images")
    arrays = _images()
    for name, array in arrays.items():
        Image.fromarray(array).save(folder / f"{name}.png")
    (folder / "notes.txt").write_text("not an image\n")
    return folder, arrays


@pytest.fixture(scope="module")
def full_run(images, tmp_path_factory):
    """One complete ``svdk bench`` of three codecs over two 192x128 images."""
    folder, _ = images
    out = tmp_path_factory.mktemp("bench") / "out dir"
    argv = [str(folder), "--codecs", ",".join(CODECS), "--out", str(out), "--workers", "1"]
    status, stdout, stderr = _run(argv)
    results = {name: json.loads((out / f"{name}.json").read_text()) for name in CODECS}
    summary = json.loads((out / "summary.json").read_text())
    return dict(argv=argv, status=status, stdout=stdout, stderr=stderr, out=out, results=results,
                summary=summary)


def test_run_writes_one_file_per_codec_and_a_summary(full_run):
    assert full_run["status"] == 0, full_run["stderr"]
    assert full_run["stderr"] == ""
    names = sorted(p.name for p in full_run["out"].iterdir())
    expected = sorted([f"{c}.json" for c in CODECS] + ["summary.json", "compressai"])
    try:
        import plotly  # noqa: F401

        expected = sorted(expected + ["rd.html"])
    except ImportError:
        pass
    assert names == expected
    # the terminal table: BD-rate before BD in dB, both ranges, PSNR then MS-SSIM; PNG has no curve
    table = full_run["stdout"].splitlines()
    assert table[0].startswith("2 images")
    assert table[1].split()[:4] == ["PSNR-RGB", "vs", "jpeg", "BD-rate"]
    columns = ["BD-rate 0.25-1", "BD-dB 0.25-1", "BD-rate 0.1-0.3", "BD-dB 0.1-0.3", "PSNR@0.25"]
    assert sorted(columns, key=table[1].index) == columns
    assert [row.split()[0] for row in table[2:4]] == ["jpeg", "svdk-tiled"]
    assert table[4].startswith("MS-SSIM dB vs jpeg")
    assert [row.split()[0] for row in table[5:]] == ["jpeg", "svdk-tiled"]


@pytest.mark.parametrize("codec", CODECS)
def test_results_follow_one_schema(full_run, codec):
    res = full_run["results"][codec]
    sweep = bench.codecs()[codec].sweep
    assert res["name"] == codec
    assert isinstance(res["description"], str) and res["description"]
    assert res["images"] == ["a", "b"] and sorted(res["per_image"]) == ["a", "b"]
    assert len(res["sweep"]) == len(sweep)
    assert set(KEYS) <= set(res["results"])
    for key in KEYS:
        assert len(res["results"][key]) == len(sweep), key
        for image in ("a", "b"):
            assert len(res["per_image"][image][key]) == len(sweep), (image, key)
    for key in ("bpp", "ssim", "encoding_time", "decoding_time"):
        for j, mean in enumerate(res["results"][key]):
            per = [res["per_image"][i][key][j] for i in ("a", "b")]
            assert mean == pytest.approx(np.mean(per), rel=1e-12), (key, j)
            assert all(v > 0 for v in per)
    assert all(0 < s <= 1 for i in ("a", "b") for s in res["per_image"][i]["ssim"])
    # MS-SSIM: measured on "b", null on "a" (128 pixels high), so no mean
    assert all(0 < s <= 1 for s in res["per_image"]["b"]["ms-ssim-rgb"])
    assert res["per_image"]["a"]["ms-ssim-rgb"] == [None] * len(sweep)
    assert res["results"]["ms-ssim-rgb"] == [None] * len(sweep)


@pytest.mark.parametrize("codec", ["jpeg", "svdk-tiled"])
def test_lossy_curves_rise_with_the_setting(full_run, codec):
    for image in ("a", "b"):
        r = full_run["results"][codec]["per_image"][image]
        assert np.all(np.diff(r["bpp"]) > 0), r["bpp"]
        assert r["psnr-rgb"][-1] > r["psnr-rgb"][0] + 5
        assert r["ssim"][-1] > r["ssim"][0]
    ms = full_run["results"][codec]["per_image"]["b"]["ms-ssim-rgb"]
    assert ms[-1] > ms[0]


def test_bpp_and_psnr_are_those_of_the_real_files(full_run, images):
    _, arrays = images
    res = full_run["results"]
    pixels = {name: a.shape[0] * a.shape[1] for name, a in arrays.items()}
    # svdk tiled: re-encode two sweep points with the library
    sweep = res["svdk-tiled"]["sweep"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", svdk.SvdkWarning)
        for image, j in (("a", 0), ("b", len(sweep) // 2)):
            data = svdk.compress(arrays[image], tiled=True, **sweep[j])
            row = res["svdk-tiled"]["per_image"][image]
            assert row["bpp"][j] == 8 * len(data) / pixels[image]
            decoded = svdk.decompress(data)
            assert row["psnr-rgb"][j] == pytest.approx(psnr_reference(arrays[image], decoded), abs=1e-9)
    # JPEG: Pillow at the quality of the sweep point, 4:2:0, optimized tables
    q = res["jpeg"]["sweep"][3]
    buf = io.BytesIO()
    Image.fromarray(arrays["a"]).save(buf, "JPEG", quality=q, subsampling="4:2:0", optimize=True)
    assert res["jpeg"]["per_image"]["a"]["bpp"][3] == 8 * len(buf.getvalue()) / pixels["a"]
    # PNG is lossless: no finite PSNR, SSIM and MS-SSIM 1
    png = res["png"]["per_image"]["b"]
    assert png["psnr-rgb"] == [None] and png["ssim"] == [1.0] and png["ms-ssim-rgb"] == [1.0]
    # MS-SSIM is svdk.metrics' (TensorFlow's) on the decoded file
    buf = io.BytesIO()
    Image.fromarray(arrays["b"]).save(buf, "JPEG", quality=q, subsampling="4:2:0", optimize=True)
    decoded = np.asarray(Image.open(buf))
    assert res["jpeg"]["per_image"]["b"]["ms-ssim-rgb"][3] == pytest.approx(
        svdk.metrics.ms_ssim(arrays["b"], decoded), abs=1e-12)


def test_summary_has_bd_figures_against_jpeg_and_psnr_at_fixed_rates(full_run):
    summary, res = full_run["summary"], full_run["results"]
    assert summary["reference"] == "jpeg"
    assert summary["bd_range_bpp"] == [0.25, 1.0]
    assert summary["bd_ranges_bpp"] == {"0.25-1": [0.25, 1.0], "0.1-0.3": [0.1, 0.3]}
    assert list(summary["bd_metrics"]) == ["psnr-rgb", "ms-ssim-rgb"]
    assert "-10 log10(1 - MS-SSIM)" in summary["bd_metrics"]["ms-ssim-rgb"]
    assert summary["images"] == ["a.png", "b.png"]
    assert list(summary["codecs"]) == CODECS
    # JPEG against itself
    assert summary["codecs"]["jpeg"]["bd_psnr_db"] == 0.0
    assert summary["codecs"]["jpeg"]["bd_rate_percent"] == 0.0
    # per image, then averaged; the top-level figures are PSNR over 0.25-1 bpp, as before
    tiled, ref = res["svdk-tiled"]["per_image"], res["jpeg"]["per_image"]
    row = summary["codecs"]["svdk-tiled"]
    bdp = [bd_psnr(ref[i]["bpp"], ref[i]["psnr-rgb"], tiled[i]["bpp"], tiled[i]["psnr-rgb"]) for i in "ab"]
    bdr = [bd_rate(ref[i]["bpp"], ref[i]["psnr-rgb"], tiled[i]["bpp"], tiled[i]["psnr-rgb"]) for i in "ab"]
    assert all(math.isfinite(v) for v in bdp + bdr), (bdp, bdr)
    assert row["bd_images"] == 2 and row["bd_rate_images"] == 2
    assert row["bd_psnr_db"] == pytest.approx(np.mean(bdp), abs=1e-12)
    assert row["bd_rate_percent"] == pytest.approx(np.mean(bdr), abs=1e-12)
    main = row["bd"]["psnr-rgb"]["0.25-1"]
    assert (main["bd_quality_db"], main["bd_rate_percent"]) == (row["bd_psnr_db"], row["bd_rate_percent"])
    for codec in ("jpeg", "svdk-tiled"):
        for t in (0.25, 0.5, 1.0):
            key = f"psnr_at_{t:g}_bpp"
            per = [psnr_at(res[codec]["per_image"][i]["bpp"], res[codec]["per_image"][i]["psnr-rgb"], t)
                   for i in "ab"]
            assert summary["codecs"][codec][key] == pytest.approx(np.mean(per), abs=1e-12)
            assert summary["codecs"][codec][f"{key}_images"] == 2
    # PNG has no rate to compare at
    assert "bd_psnr_db" not in summary["codecs"]["png"]
    assert summary["codecs"]["png"]["psnr_at_0.5_bpp"] is None


def test_summary_records_the_command_that_reruns_it(full_run):
    command = full_run["summary"]["command"]
    assert command.startswith("svdk bench ") and "bench bench" not in command
    assert shlex.split(command) == ["svdk", "bench", *full_run["argv"]]  # the space in "out dir" survives
    assert {"svdk", "python", "numpy", "pillow", "cpu", "cores"} <= set(full_run["summary"]["machine"])


def test_the_command_is_the_same_through_svdk_and_python_m(images, tmp_path, monkeypatch):
    folder, _ = images
    base = [str(folder), "--codecs", "png", "--images", "1", "--workers", "1"]
    status, _, err = _run(["bench", *base, "--out", str(tmp_path / "cli")], entry=cli.main)
    assert status == 0, err
    # python -m svdk.bench: main() reads sys.argv, whose first item is the script
    monkeypatch.setattr(sys, "argv", ["/x/svdk/bench.py", *base, "--out", str(tmp_path / "module")])
    status, _, err = _run(None)
    assert status == 0, err
    for sub in ("cli", "module"):
        command = json.loads((tmp_path / sub / "summary.json").read_text())["command"]
        assert shlex.split(command) == ["svdk", "bench", *base, "--out", str(tmp_path / sub)]


def test_points_limits_every_sweep(images, tmp_path):
    folder, _ = images
    status, _, err = _run([str(folder), "--codecs", "jpeg,svdk-tiled", "--images", "1", "--points", "3",
                           "--out", str(tmp_path), "--workers", "1"])
    assert status == 0, err
    for codec in ("jpeg", "svdk-tiled"):
        res = json.loads((tmp_path / f"{codec}.json").read_text())
        sweep = [_as_json(p) for p in bench.codecs()[codec].sweep]
        assert res["sweep"] == [sweep[0], sweep[len(sweep) // 2], sweep[-1]]
        assert res["images"] == ["a"]
        assert all(len(res["results"][k]) == 3 for k in KEYS)


def test_workers_give_the_results_of_one_process(images, tmp_path, full_run):
    folder, _ = images
    # (without MS-SSIM: each worker process would import TensorFlow)
    status, _, err = _run([str(folder), "--codecs", "jpeg", "--out", str(tmp_path), "--workers", "2", "--no-ms-ssim"])
    assert status == 0, err
    res = json.loads((tmp_path / "jpeg.json").read_text())
    for image in ("a", "b"):
        for key in ("bpp", "psnr-rgb", "ssim"):
            assert res["per_image"][image][key] == full_run["results"]["jpeg"]["per_image"][image][key]


def test_settings_an_image_cannot_take_are_null_not_a_crash(tmp_path):
    # global ranks go up to 160; a 32x24 image allows 24, a 64x48 one 48
    folder = tmp_path / "small"
    folder.mkdir()
    photo = _images()["a"]
    Image.fromarray(photo[:24, :32]).save(folder / "small.png")
    Image.fromarray(photo[:48, :64]).save(folder / "wider.png")
    status, _, err = _run([str(folder), "--codecs", "svdk-global-ycbcr", "--out", str(tmp_path / "o"),
                           "--workers", "1"])
    assert status == 0, err
    res = json.loads((tmp_path / "o" / "svdk-global-ycbcr.json").read_text())
    ranks = [p["rank"] for p in res["sweep"]]
    for image, top in (("small", 24), ("wider", 48)):
        bpp = res["per_image"][image]["bpp"]
        assert [b is None for b in bpp] == [k > top for k in ranks]
    # the mean curve only has points that every image has
    assert [b is None for b in res["results"]["bpp"]] == [k > 24 for k in ranks]


# ----------------------------------------------------------------------------
# bad command lines: status 2, one line, no traceback


def _one_line_error(status: int, stdout: str, stderr: str, expected_status: int = 2) -> str:
    assert status == expected_status
    assert stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("svdk bench: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_a_missing_folder_is_a_usage_error(tmp_path):
    missing = tmp_path / "nowhere"
    line = _one_line_error(*_run([str(missing), "--out", str(tmp_path / "o")]))
    assert str(missing) in line
    assert not (tmp_path / "o").exists()
    line = _one_line_error(*_run(["bench", str(missing), "--out", str(tmp_path / "o")], entry=cli.main))
    assert str(missing) in line


def test_a_folder_without_images_is_a_usage_error(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here\n")
    (tmp_path / "sub.png").mkdir()  # a folder with an image's name is not an image
    line = _one_line_error(*_run([str(tmp_path), "--out", str(tmp_path / "o")]))
    assert "no images" in line and str(tmp_path) in line
    assert not (tmp_path / "o").exists()


def test_an_unknown_codec_is_a_usage_error(images, tmp_path):
    folder, _ = images
    line = _one_line_error(*_run([str(folder), "--codecs", "jpeg,jpeg2000", "--out", str(tmp_path / "o")]))
    assert "jpeg2000" in line and "svdk-tiled" in line
    assert not (tmp_path / "o").exists()


def test_an_unreadable_image_names_the_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    line = _one_line_error(*_run([str(tmp_path), "--codecs", "png", "--out", str(tmp_path / "o"),
                                  "--workers", "1"]), expected_status=1)
    assert "broken.png" in line


@pytest.mark.parametrize("option", [["--points", "1"], ["--points", "x"], ["--images", "0"], ["--workers", "-1"]])
def test_bad_numbers_are_refused_by_the_parser(images, option, capsys):
    folder, _ = images
    with pytest.raises(SystemExit) as exc:
        bench.main([str(folder), *option])
    assert exc.value.code == 2
    assert option[0] in capsys.readouterr().err


def test_the_coding_ablation_measures_what_svdk_writes():
    """benchmarks.global_coding's 'v2' variant is format 2.0: the same bytes as svdk's files."""
    from benchmarks import global_coding as gc
    from svdk import _codec

    image = smooth_image(40, 56, 3, seed=9)
    planes = [_codec.Plane(p) for p in _codec.to_planes(image, "ycbcr", True)]
    for k in (2, 7, 16):
        c = _codec.chroma_rank(k, planes[1].shape)
        coded = [gc.code_plane(p, r, gc.VARIANTS["v2"]) for p, r in zip(planes, (k, c, c))]
        data = svdk.compress(image, rank=k)
        assert gc.OVERHEAD + gc.coded_bytes([x for _, x in coded], gc.VARIANTS["v2"]) == len(data)
        decoded = _codec.from_planes([d for d, _ in coded], "ycbcr", 40, 56)
        np.testing.assert_array_equal(decoded, svdk.decompress(data))


def test_the_tiled_coding_ablation_ends_at_svdk_and_starts_at_format_2():
    """benchmarks.tiled_coding's last variant writes svdk's bytes, and its 'v2'
    variant the bytes format 2.0's encoder wrote (the golden files of tests/golden/v2)."""
    from benchmarks import tiled_coding as tc

    from test_format import TILED_GOLDEN_CASES

    for name in ("tiled_gray_20x13", "tiled_ycbcr420_alpha_17x15", "tiled_rgb_12x10_T4"):
        make, options = TILED_GOLDEN_CASES[name]
        options = dict(options)
        options.pop("tiled")
        energy = options.pop("energy")
        old = (Path(__file__).parent / "golden" / "v2" / f"{name}.svdk").read_bytes()
        assert tc.encode(make(), energy, tc.VARIANTS["v2"], **options) == old
        assert tc.encode(make(), energy, tc.VARIANTS[list(tc.VARIANTS)[-1]], **options) == svdk.compress(
            make(), tiled=True, energy=energy, **options)


def _bd_by_hand(res, codec, metric, lo, hi):
    """Per-image BD-rate and BD in dB of ``codec`` against JPEG, MS-SSIM in dB, as lists."""
    ref, test = res["jpeg"]["per_image"], res[codec]["per_image"]
    scale = (lambda v: [svdk.metrics.ms_ssim_db(x) for x in v]) if metric == "ms-ssim-rgb" else list
    rates, dbs = [], []
    for i in ref:
        curves = (ref[i]["bpp"], scale(ref[i][metric]), test[i]["bpp"], scale(test[i][metric]))
        rates.append(bd_rate(*curves, lo, hi))
        dbs.append(bd_psnr(*curves, lo, hi))
    return rates, dbs


@pytest.mark.parametrize("metric", ["psnr-rgb", "ms-ssim-rgb"])
@pytest.mark.parametrize("span", ["0.25-1", "0.1-0.3"])
def test_summary_gives_bd_rate_and_bd_db_per_range_and_measure(full_run, metric, span):
    lo, hi = bench.BD_RANGES[span]
    row = full_run["summary"]["codecs"]["svdk-tiled"]["bd"][metric][span]
    assert list(row) == ["bd_rate_percent", "bd_rate_images", "bd_rate_overlap", "bd_quality_db",
                         "bd_quality_images"]
    rates, dbs = _bd_by_hand(full_run["results"], "svdk-tiled", metric, lo, hi)
    finite_rates, finite_dbs = [r for r in rates if math.isfinite(r)], [d for d in dbs if math.isfinite(d)]
    assert row["bd_rate_images"] == len(finite_rates) and row["bd_quality_images"] == len(finite_dbs)
    if metric == "ms-ssim-rgb":  # image "a" has no MS-SSIM
        assert len(finite_rates) <= 1
    if finite_rates:
        assert row["bd_rate_percent"] == pytest.approx(np.mean(finite_rates), abs=1e-12)
        assert 0 < row["bd_rate_overlap"] <= 1
    else:
        assert row["bd_rate_percent"] is None
    if finite_dbs:
        assert row["bd_quality_db"] == pytest.approx(np.mean(finite_dbs), abs=1e-12)
    else:
        assert row["bd_quality_db"] is None
    # the main range is covered on both images in PSNR, on "b" in MS-SSIM
    if span == "0.25-1":
        assert row["bd_quality_images"] == (2 if metric == "psnr-rgb" else 1)


def test_summary_names_the_images_too_small_for_ms_ssim(full_run):
    ms = full_run["summary"]["ms_ssim"]
    assert ms["measured"] is True
    assert "tf.image.ssim_multiscale" in ms["how"] and "max_val 255" in ms["how"]
    assert list(ms["undefined"]) == ["a.png"]
    assert "161" in ms["undefined"]["a.png"] and "192x128" in ms["undefined"]["a.png"]


def _check_compressai_layout(path: Path, res: dict) -> dict:
    """The file has CompressAI's layout exactly and the averaged points of ``res``."""
    data = json.loads(path.read_text())
    assert list(data) == ["name", "description", "results"]
    assert data["name"] == res["name"] and data["description"].startswith(res["description"])
    lengths = {len(v) for v in data["results"].values()}
    assert len(lengths) == 1 and lengths.pop() > 0
    for key, values in data["results"].items():
        assert all(isinstance(v, float) and math.isfinite(v) for v in values), key
        assert values == [v for v in res["results"][key] if v is not None] or key != "bpp"
    return data


def test_compressai_layout_has_the_averaged_points_every_image_has(full_run):
    out, res = full_run["out"], full_run["results"]
    assert sorted(p.name for p in (out / "compressai").iterdir()) == ["jpeg.json", "svdk-tiled.json"]  # no PNG
    for codec in ("jpeg", "svdk-tiled"):
        data = _check_compressai_layout(out / "compressai" / f"{codec}.json", res[codec])
        # image "a" has no MS-SSIM, so no mean: the key is left out rather than filled with nulls
        assert list(data["results"]) == [k for k in COMPRESSAI_KEYS if k != "ms-ssim-rgb"]
        assert data["results"]["bpp"] == res[codec]["results"]["bpp"]


# ----------------------------------------------------------------------------
# the anchors: jpegli and JPEG XL when installed, a note when not


@pytest.fixture(scope="module")
def anchors_run(images, tmp_path_factory):
    """jpeg, jpegli and jxl at 3 points on image "b" alone (large enough for MS-SSIM)."""
    folder, _ = images
    single = tmp_path_factory.mktemp("single")
    (single / "b.png").write_bytes((folder / "b.png").read_bytes())
    out = tmp_path_factory.mktemp("anchors")
    status, stdout, stderr = _run([str(single), "--codecs", "jpeg,jpegli,jxl", "--points", "3", "--out", str(out),
                                   "--workers", "1"])
    return dict(status=status, stdout=stdout, stderr=stderr, out=out)


def test_anchors_are_benchmarked_from_their_real_files(anchors_run, images):
    import pillow_jxl  # noqa: F401  (the test extra installs both anchors)
    import pyjpegli

    assert anchors_run["status"] == 0, anchors_run["stderr"]
    assert anchors_run["stderr"] == ""
    out, photo = anchors_run["out"], images[1]["b"]
    npx = photo.shape[0] * photo.shape[1]
    jpegli = json.loads((out / "jpegli.json").read_text())
    jxl = json.loads((out / "jxl.json").read_text())
    sweeps = {name: bench.sweep_points(bench.codecs()[name], 3) for name in ("jpegli", "jxl")}
    assert jpegli["sweep"] == list(sweeps["jpegli"]) and jxl["sweep"] == list(sweeps["jxl"])
    q = sweeps["jpegli"][1]
    data = pyjpegli.encode(photo, photo.shape[1], photo.shape[0], quality=q)
    assert jpegli["per_image"]["b"]["bpp"][1] == 8 * len(data) / npx
    rgb, width, height = pyjpegli.decode(data)
    decoded = np.frombuffer(rgb, np.uint8).reshape(height, width, 3)
    assert jpegli["per_image"]["b"]["psnr-rgb"][1] == pytest.approx(psnr_reference(photo, decoded), abs=1e-9)
    q = sweeps["jxl"][1]
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "JXL", quality=q)
    assert jxl["per_image"]["b"]["bpp"][1] == 8 * buf.tell() / npx
    assert jxl["per_image"]["b"]["psnr-rgb"][1] == pytest.approx(
        psnr_reference(photo, np.asarray(Image.open(buf).convert("RGB"))), abs=1e-9)
    for res in (jpegli, jxl):
        r = res["per_image"]["b"]
        assert np.all(np.diff(r["bpp"]) > 0) and np.all(np.diff(r["psnr-rgb"]) > 0)
        assert all(t > 0 for t in r["encoding_time"] + r["decoding_time"])
        assert all(0 < s < 1 for s in r["ms-ssim-rgb"])
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["codecs"]) == ["jpeg", "jpegli", "jxl"] and "skipped" not in summary
    assert set(summary["codecs"]["jxl"]["bd"]) == {"psnr-rgb", "ms-ssim-rgb"}


def test_compressai_layout_of_a_run_with_ms_ssim(anchors_run):
    out = anchors_run["out"]
    for codec in ("jpeg", "jpegli", "jxl"):
        res = json.loads((out / f"{codec}.json").read_text())
        data = _check_compressai_layout(out / "compressai" / f"{codec}.json", res)
        assert list(data["results"]) == COMPRESSAI_KEYS
        assert data["results"]["ms-ssim-rgb"] == res["results"]["ms-ssim-rgb"]
        assert all(0 < v < 1 for v in data["results"]["ms-ssim-rgb"])  # a fraction, as CompressAI's


def test_a_missing_anchor_is_left_out_with_a_note(images, tmp_path, monkeypatch):
    folder, _ = images
    monkeypatch.setitem(sys.modules, "pyjpegli", None)  # as if pyjpegli were not installed
    status, stdout, stderr = _run([str(folder), "--codecs", "jpeg,jpegli", "--images", "1", "--points", "2",
                                   "--out", str(tmp_path), "--workers", "1", "--no-ms-ssim"])
    assert status == 0, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("svdk bench: note: jpegli left out: pyjpegli is not installed")
    assert "pip install 'svdk[bench]'" in lines[0]
    assert not (tmp_path / "jpegli.json").exists() and (tmp_path / "jpeg.json").exists()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert list(summary["codecs"]) == ["jpeg"]
    assert "pyjpegli is not installed" in summary["skipped"]["jpegli"]
    # asked for alone, it is a usage error in one line
    line = _one_line_error(*_run([str(folder), "--codecs", "jpegli", "--out", str(tmp_path / "o")]))
    assert "none of the codecs asked for can run here" in line and "pyjpegli is not installed" in line


def test_without_tensorflow_ms_ssim_is_skipped_with_a_note(images, tmp_path, monkeypatch):
    folder, _ = images
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    monkeypatch.setattr(svdk.metrics, "_ms_ssim_graph", None)
    status, _, stderr = _run([str(folder), "--codecs", "jpeg,svdk-tiled", "--points", "3", "--out", str(tmp_path),
                              "--workers", "1"])
    assert status == 0, stderr
    assert "Traceback" not in stderr
    assert stderr.startswith("svdk bench: note: MS-SSIM not measured: ") and "svdk[keras]" in stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["ms_ssim"]["measured"] is False and "TensorFlow" in summary["ms_ssim"]["note"]
    assert list(summary["codecs"]["svdk-tiled"]["bd"]) == ["psnr-rgb"]
    res = json.loads((tmp_path / "jpeg.json").read_text())
    assert all(v is None for r in res["per_image"].values() for v in r["ms-ssim-rgb"])
    data = json.loads((tmp_path / "compressai" / "jpeg.json").read_text())
    assert "ms-ssim-rgb" not in data["results"]


# ----------------------------------------------------------------------------
# the README's tables (python -m benchmarks.tables) from a summary


def _tables(results: Path, *argv: str) -> str:
    from benchmarks import tables

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert tables.main(["--results", str(results), *argv]) == 0
    return out.getvalue()


def test_the_readme_table_shows_bd_rate_first_both_ranges_and_ms_ssim(full_run, tmp_path):
    (tmp_path / "bench-kodak").mkdir()
    (tmp_path / "bench-kodak" / "summary.json").write_text(json.dumps(full_run["summary"]))
    text = _tables(tmp_path, "--only", "rd")
    header = next(line for line in text.splitlines() if line.startswith("| codec | BD-rate"))
    columns = ["BD-rate, 0.25-1 bpp", "BD-PSNR, 0.25-1 bpp", "BD-rate, 0.1-0.3 bpp", "BD-PSNR, 0.1-0.3 bpp"]
    assert sorted(columns, key=header.index) == columns
    tiled = [line for line in text.splitlines() if line.startswith("| svdk-tiled |")]
    assert len(tiled) == 2  # the PSNR table and the MS-SSIM table
    row = full_run["summary"]["codecs"]["svdk-tiled"]["bd"]["psnr-rgb"]["0.25-1"]
    assert tiled[0].split(" | ")[1] == f"{row['bd_rate_percent']:+.1f} %"
    assert "BD-MS-SSIM dB, 0.25-1 bpp" in text and "[1/2]" in tiled[1]  # MS-SSIM on image "b" only
    assert "| png |" not in text and "predates" not in text


def test_the_readme_table_still_reads_a_summary_of_the_earlier_layout(full_run, tmp_path):
    old = json.loads(json.dumps(full_run["summary"]))
    for key in ("bd_ranges_bpp", "bd_metrics", "ms_ssim"):
        del old[key]
    for row in old["codecs"].values():
        row.pop("bd", None)
    (tmp_path / "bench-kodak").mkdir()
    (tmp_path / "bench-kodak" / "summary.json").write_text(json.dumps(old))
    text = _tables(tmp_path, "--only", "rd")
    tiled = next(line for line in text.splitlines() if line.startswith("| svdk-tiled |"))
    assert tiled.split(" | ")[1:5] == [f"{old['codecs']['svdk-tiled']['bd_rate_percent']:+.1f} %",
                                       f"{old['codecs']['svdk-tiled']['bd_psnr_db']:+.2f} dB", "n/a", "n/a"]
    assert "predates the 0.1-0.3 bpp range" in text


def test_the_readme_table_refuses_an_unreadable_summary_in_one_sentence(tmp_path):
    (tmp_path / "bench-kodak").mkdir()
    (tmp_path / "bench-kodak" / "summary.json").write_text(json.dumps({"command": "svdk bench x", "codecs": {}}))
    with pytest.raises(SystemExit) as exc:
        _tables(tmp_path, "--only", "rd")
    assert "is not an 'svdk bench' summary" in str(exc.value) and "svdk bench x" in str(exc.value)


def test_the_committed_summaries_render():
    from benchmarks import tables

    for name in ("rd", "rd-bsds500"):
        text = tables.TABLES[name]()
        assert text.count("| svdk-tiled |") >= 1 and "| jpeg |" in text
        assert text.count("| svdk-tiled-ssim |") == 2  # PSNR and MS-SSIM
    text = tables.TABLES["tune"]()
    for label in ("Kodak-24", "BSDS500 test", "scikit-image (4)"):
        assert f"| {label} | 0.9 |" in text


def test_the_tiled_speed_table_judges_cnn_against_the_exact_search_the_goal_was_set_on(monkeypatch):
    """Issue 12's goal is 0.6 of the exact search's time when it was set (90x
    JPEG's encode): the table says met or missed by cnn's multiple of JPEG's
    encode, and gives the ratio to today's exact search beside it."""
    from benchmarks import tables

    committed = json.loads((Path(__file__).parent.parent / "results" / "tiled_speed.json").read_text())
    for cnn_to_jpeg, verdict in ((51.5, "(met)"), (60.0, "(**missed**)")):
        run = json.loads(json.dumps(committed))
        s = run["summary"]
        s["cnn_ms"] = cnn_to_jpeg * s["jpeg_ms"]
        s["cnn_to_jpeg"] = s["cnn_to_jpeg_per_image"] = cnn_to_jpeg
        s["cnn_to_jpeg_target"], s["cnn_to_jpeg_met"] = 54.0, cnn_to_jpeg <= 54
        monkeypatch.setattr(tables, "_load", lambda name, run=run: run)
        text = tables.TABLES["tiled-speed"]()
        assert f"`cnn` takes {cnn_to_jpeg:.1f}x JPEG's encode (median of per-image ratios; target <= 54x" in text
        assert verdict in text
        assert f"{s['cnn_to_quality']:.2f} times today's exact search" in text
    # a run written before the target was a multiple of JPEG's encode still renders
    old = json.loads(json.dumps(committed))
    old["summary"] = {k: v for k, v in old["summary"].items() if not k.startswith("cnn_to_jpeg_")}
    old["summary"].update(cnn_to_quality=0.61, cnn_to_quality_target=0.6, cnn_to_quality_met=False)
    monkeypatch.setattr(tables, "_load", lambda name: old)
    assert "0.61 times the exact search's time (median of per-image ratios; target <= 0.6 (**missed**))" in (
        tables.TABLES["tiled-speed"]()
    )


def test_the_chart_keeps_one_colour_per_codec_and_shows_ms_ssim_in_db(anchors_run, full_run):
    pytest.importorskip("plotly", reason="pip install 'svdk[bench]'")
    out = anchors_run["out"]
    results = {c: json.loads((out / f"{c}.json").read_text()) for c in ("jpeg", "jpegli", "jxl")}
    fig = bench.chart(results)
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["PSNR-RGB", "MS-SSIM (RGB), in dB", "SSIM"]
    for codec in results:
        traces = [t for t in fig.data if t.name == codec]
        assert len(traces) == 3 and len({t.line.color for t in traces}) == 1
        ms = results[codec]["results"]["ms-ssim-rgb"]
        assert list(traces[1].y) == pytest.approx([-10 * math.log10(1 - v) for v in ms])
    assert len({t.line.color for t in fig.data}) == 3
    # without MS-SSIM (image "a" has none, so no mean): two panels
    fig = bench.chart(full_run["results"])
    assert [a.text for a in fig.layout.annotations] == ["PSNR-RGB", "SSIM"]


def test_cpu_model_is_the_first_model_name_of_proc_cpuinfo():
    from svdk.bench import cpu_model

    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    assert cpu_model() == (names[0] if names else None)


def test_rd_change_reads_both_runs_at_each_rate(tmp_path, capsys):
    """benchmarks.rd_change: a curve raised by 0.5 dB of PSNR everywhere reads +0.50 at every
    rate; MS-SSIM is compared in dB; an image only one run has is left out."""
    from benchmarks import rd_change

    bpp = [0.1, 0.3, 0.9, 2.0]
    old = {"per_image": {"a": {"bpp": bpp, "psnr-rgb": [25.0, 28.0, 31.0, 35.0],
                               "ms-ssim-rgb": [0.9, 0.95, 0.98, 0.99]},
                         "b": {"bpp": bpp, "psnr-rgb": [20.0, 22.0, 24.0, 26.0],
                               "ms-ssim-rgb": [0.8, 0.9, 0.95, 0.99]}}}
    new = {"per_image": {"a": {"bpp": bpp, "psnr-rgb": [25.5, 28.5, 31.5, 35.5],
                               "ms-ssim-rgb": [0.9, 0.95, 0.98, 0.99]},
                         "c": {"bpp": bpp, "psnr-rgb": [0.0] * 4, "ms-ssim-rgb": [0.5] * 4}}}
    moved = rd_change.changes(old, new)
    assert moved["psnr-rgb"] == pytest.approx([0.5] * len(rd_change.RATES))
    assert moved["ms-ssim-rgb"] == pytest.approx([0.0] * len(rd_change.RATES))
    half = {"per_image": {"a": {**old["per_image"]["a"], "ms-ssim-rgb": [0.95, 0.975, 0.99, 0.995]}}}
    assert rd_change.changes(old, half)["ms-ssim-rgb"][0] == pytest.approx(10 * np.log10(2))
    for name, data in (("old.json", old), ("new.json", new)):
        (tmp_path / name).write_text(json.dumps(data))
    assert rd_change.main([str(tmp_path / "old.json"), str(tmp_path / "new.json")]) == 0
    assert "| PSNR | +0.50 |" in capsys.readouterr().out
    (tmp_path / "other.json").write_text(json.dumps({"per_image": {"z": old["per_image"]["a"]}}))
    assert rd_change.main([str(tmp_path / "old.json"), str(tmp_path / "other.json")]) == 2
    assert "share no image" in capsys.readouterr().err


def test_tune_benchmark_compares_the_two_tunes_of_each_image(tmp_path, capsys):
    """benchmarks.tune: each image is coded at every target with both tunes, as svdk.encode
    codes it; the summary's ratios and counts follow the rows; missing data says where to get it."""
    from benchmarks import tune

    rows = tune.encode_both("example:chelsea")
    for t in tune.TARGETS:
        for name in tune.TUNES:
            assert rows[str(t)][name]["ssim_luma"] >= t
        assert rows[str(t)]["ssim"]["bytes"] == len(
            svdk.compress("example:chelsea", tiled=True, quality=f"ssim:{t}", tune="ssim"))

    def row(plain, tuned, luma=0.99):
        return {"psnr": {"bytes": plain, "ssim_luma": luma, "psnr_rgb": 30.0},
                "ssim": {"bytes": tuned, "ssim_luma": luma, "psnr_rgb": 29.5}}

    per_image = {"a": {str(t): row(100, 90) for t in tune.TARGETS},
                 "b": {str(t): row(100, 110, luma=0.5) for t in tune.TARGETS}}
    summary = tune.summarize(per_image)["0.9"]
    assert summary["size_ratio_median"] == pytest.approx(1.0) and summary["size_ratio_mean"] == pytest.approx(1.0)
    assert (summary["smaller"], summary["targets_met"], summary["images"]) == (1, 1, 2)
    assert summary["psnr_change_db_mean"] == pytest.approx(-0.5)
    assert tune.main(["--kodak", str(tmp_path), "--output", str(tmp_path / "t.json")]) == 2
    assert "r0k.us" in capsys.readouterr().err and not (tmp_path / "t.json").exists()


def test_tune_choice_scores_what_svdk_writes_and_checks_the_images_left_out(tmp_path, capsys):
    """benchmarks.tune_choice: its "ssim" variant has svdk's constants; the held-out figures split each
    committed curve set into the sample and the rest; missing data says where to get it."""
    from benchmarks import tune_choice
    from benchmarks._common import DEFAULT_KODAK, REPO
    from svdk import _tiled

    assert tune_choice.VARIANTS["ssim"] == ("ssim", _tiled.SSIM_MASKING, _tiled.SSIM_MASKING_C,
                                            _tiled.SSIM_STEP_FACTORS)
    bsds = REPO.parent / "shared" / "data" / "bsds500" / "test"
    if not DEFAULT_KODAK.is_dir() or not bsds.is_dir():
        pytest.skip("needs ../shared/data")
    sets = tune_choice.sample(DEFAULT_KODAK, bsds)
    assert [len(v) for v in sets.values()] == [12, 12, 4]
    split = tune_choice.held_out(sets)
    assert split["kodak"]["sample"]["images"] == split["kodak"]["rest"]["images"] == 12
    assert split["bsds500-test"]["rest"]["images"] == 188 and "rest" not in split["scikit-image"]
    for name in split:
        for group in split[name].values():
            assert group["svdk-tiled-ssim"] < group["svdk-tiled"]  # the tune gains MS-SSIM in and out of the sample
    assert tune_choice.main(["--kodak", str(tmp_path), "--output", str(tmp_path / "t.json")]) == 2
    assert "r0k.us" in capsys.readouterr().err


def test_ab_speed_times_the_tree_against_a_commit_and_checks_the_files(data_dir, tmp_path, capsys, monkeypatch):
    """benchmarks.ab_speed times the tree's svdk against a commit's, taking
    turns at going first, and fails (status 1) when the two write different
    files; a second load starts afresh; a commit that does not exist, or an
    odd number of repeats, gets one sentence."""
    import types

    from benchmarks import ab_speed

    if not (ab_speed.REPO / ".git").exists():
        pytest.skip("needs the repository's git history")
    kodak = ["--data", str(data_dir / "kodak"), "--images", "1", "--repeats", "2"]
    out = tmp_path / "ab.json"
    # the real thing against HEAD: the same files, and figures from the per-image times
    assert ab_speed.main(["--baseline", "HEAD", *kodak, "--output", str(out)]) == 0
    run = json.loads(out.read_text())
    assert run["same_files_and_pixels"] and run["differences"] == [] and run["images"] == 1
    row = run["per_image"]["kodim01"]
    for op in ab_speed.OPERATIONS:
        s = run["summary"][op]
        assert s["ratio_median"] == pytest.approx(row[f"{op}_tree_ms"] / row[f"{op}_baseline_ms"])
    assert not any(m == "svdk_baseline" or m.startswith("svdk_baseline.") for m in sys.modules)

    # a baseline whose global files differ, and the order of the timed calls
    calls = []
    real_encode = svdk.encode

    def tree_encode(*args, **kw):
        if kw.get("tiled"):  # (svdk.compress calls encode too)
            calls.append("tree-cnn" if kw.get("policy") == "cnn" else "tree")
        return real_encode(*args, **kw)

    def base_encode(*args, **kw):
        calls.append("baseline")
        return real_encode(*args, **kw)

    stub = types.SimpleNamespace(
        SvdkWarning=svdk.SvdkWarning, encode=base_encode, decompress=svdk.decompress,
        compress=lambda img, ranks: svdk.compress(img, ranks=(32, 8, 8)),
    )
    monkeypatch.setattr(ab_speed, "load_baseline", lambda rev, into: stub)
    monkeypatch.setattr(svdk, "encode", tree_encode)
    assert ab_speed.main(["--baseline", "HEAD", *kodak, "--output", str(out)]) == 1
    assert json.loads(out.read_text())["differences"] == ["kodim01: the files differ"]
    # the files first (baseline, tree, and the tree's cnn encode to warm up), then each repeat
    # with the other one first, and the tree's cnn encode after the pairs
    assert calls == ["baseline", "tree", "tree-cnn", "baseline", "tree", "tree-cnn", "tree", "baseline", "tree-cnn"]
    # an earlier release writes other files by design: timed all the same, and the tree must
    # still decode its files to its pixels
    assert ab_speed.main(["--baseline", "HEAD", *kodak, "--other-format", "--output", str(out)]) == 0
    run = json.loads(out.read_text())
    assert run["differences"] == [] and run["same_files_and_pixels"] is None and run["settings"]["other_format"]
    row, cnn = run["per_image"]["kodim01"], run["summary"]["tiled_cnn"]
    assert cnn["to_baseline_tiled_quality_median"] == pytest.approx(
        row["tiled_cnn_tree_ms"] / row["tiled_quality_baseline_ms"])
    assert cnn["to_tree_tiled_quality_median"] == pytest.approx(row["tiled_cnn_tree_ms"] / row["tiled_quality_tree_ms"])
    stub.decompress = lambda data: svdk.decompress(data) // 2
    assert ab_speed.main(["--baseline", "HEAD", *kodak, "--other-format", "--output", str(out)]) == 1
    assert json.loads(out.read_text())["differences"] == [
        "kodim01: the tree decodes the baseline's files to other pixels"]
    capsys.readouterr()
    assert ab_speed.main(["--baseline", "no-such-commit", "--output", str(out)]) == 2
    assert "no commit 'no-such-commit'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        ab_speed.main(["--baseline", "HEAD", "--repeats", "3"])
    assert exc.value.code == 2 and "--repeats must be an even number" in capsys.readouterr().err


def test_coder_contexts_measures_the_entropy_of_the_files_own_symbols(data_dir, tmp_path):
    """benchmarks.coder_contexts replicates coder 3's contexts (it stops if they differ from the
    walk's) and reports entropies that behave as entropies: any context gives at most the
    entropy of none, and the file bits are the files' real sizes."""
    from benchmarks import coder_contexts

    out = tmp_path / "cc.json"
    assert coder_contexts.main(["--data", str(data_dir / "kodak"), "--images", "1", "--out", str(out)]) == 0
    run = json.loads(out.read_text())
    img = np.asarray(Image.open(data_dir / "kodak" / "kodim01.png").convert("RGB"))
    for target in coder_contexts.TARGETS:
        row = run["per_image"]["kodim01"][target]
        assert row["file_bits"] == 8 * len(svdk.encode(img, quality=target, tiled=True).data)
        assert 0 < row["coder3"] <= row["none"] and row["vector"] <= row["none"]
        assert row["coder3"] < row["file_bits"]
        extra = run["summary"][target]["extra_share"]
        assert extra["vector"] == pytest.approx((row["vector"] - row["coder3"]) / row["file_bits"])
