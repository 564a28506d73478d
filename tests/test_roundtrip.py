"""compress -> decompress: shapes, alpha, error, progressive decoding, inputs."""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import subprocess
import sys
import threading
import warnings
import zlib

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

import svdk
from svdk import metrics
from _support import (
    CTX_PARAMS,
    SvdkFile,
    ans_parts,
    deblock_reference,
    png_bytes,
    reference_decode,
    smooth_image,
    tiled_ctx_integers,
)

pytestmark = pytest.mark.filterwarnings("ignore::svdk.SvdkWarning")


def _image_and_rank(height, width, gray, alpha, seed, rank_fraction):
    channels = (1 if gray else 3) + (1 if alpha else 0)
    image = smooth_image(height, width, channels, seed=seed)
    rank = 1 + int(rank_fraction * (min(height, width) - 1))
    return image, rank


@settings(max_examples=300)
@given(
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    gray=st.booleans(),
    alpha=st.booleans(),
    mode=st.sampled_from(["rgb", "ycbcr"]),
    subsampling=st.sampled_from(["4:2:0", "4:4:4"]),
    seed=st.integers(0, 2**16),
    rank_fraction=st.floats(0, 1),
    progressive_fraction=st.floats(0, 1),
)
@example(1, 17, False, True, "ycbcr", "4:2:0", 0, 1.0, 0.0)  # one row
@example(23, 1, False, False, "rgb", "4:4:4", 0, 1.0, 0.5)  # one column
@example(1, 1, True, True, "ycbcr", "4:2:0", 0, 1.0, 1.0)  # one pixel
@example(2, 2, False, True, "ycbcr", "4:2:0", 0, 1.0, 0.0)  # chroma 1x1
@example(39, 37, False, True, "ycbcr", "4:2:0", 0, 0.3, 0.5)  # odd sides
def test_roundtrip_shape_alpha_and_header(height, width, gray, alpha, mode, subsampling, seed,
                                          rank_fraction, progressive_fraction):
    image, rank = _image_and_rank(height, width, gray, alpha, seed, rank_fraction)
    options = {"mode": mode, "subsampling": subsampling, "rank": rank}

    encoded = svdk.encode(image, **options)
    out = svdk.decompress(encoded.data)

    # gray (H, W); gray + alpha (H, W, 2); rgb (H, W, 3); rgb + alpha (H, W, 4)
    assert out.dtype == np.uint8
    assert out.shape == image.shape
    if alpha:
        np.testing.assert_array_equal(out[..., -1], image[..., -1])

    head = svdk.info(encoded.data)
    assert (head["width"], head["height"]) == (width, height)
    assert head["alpha"] == alpha
    assert head["bytes"] == len(encoded.data)
    assert head["ranks"] == list(encoded.ranks)
    if gray:
        assert head["mode"] == "gray" and head["ranks"] == [rank]
    else:
        assert head["mode"] == mode
        assert head["ranks"][0] == rank
        thin = height < 2 or width < 2  # too thin to halve: 4:2:0 falls back to full chroma
        want_sub = None if mode == "rgb" else (
            "4:2:0" if subsampling == "4:2:0" and not thin else "4:4:4")
        assert head["subsampling"] == want_sub

    # Progressive decoding: a prefix of the components, from the same file.
    j = 1 + int(progressive_fraction * (max(head["ranks"]) - 1))
    partial = svdk.decompress(encoded.data, max_rank=j)
    assert partial.dtype == np.uint8 and partial.shape == out.shape
    if alpha:
        np.testing.assert_array_equal(partial[..., -1], image[..., -1])

    if head["subsampling"] != "4:2:0":
        # An independent decoder written from the format spec agrees (float64
        # against svdk's float32: a pixel on a rounding boundary may move by 1).
        for got, j_ in ((out, None), (partial, j)):
            want = reference_decode(encoded.data, max_rank=j_)
            assert np.abs(got.astype(int) - want).max() <= 1


@settings(max_examples=100)
@given(
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    kind=st.sampled_from(["gray", "rgb", "ycbcr"]),
    seed=st.integers(0, 2**16),
)
def test_full_rank_with_small_step_is_near_lossless(height, width, kind, seed):
    image = smooth_image(height, width, 1 if kind == "gray" else 3, seed=seed, noise=30)
    k = min(height, width)
    options = {"rank": k} if kind != "ycbcr" else {"ranks": (k, k, k), "subsampling": "4:4:4"}
    if kind != "gray":
        options["mode"] = kind
    out = svdk.decompress(svdk.compress(image, qstep=1 / 64, **options))
    assert np.abs(out.astype(int) - image).max() <= 2


@settings(max_examples=60)
@given(
    height=st.integers(2, 40),
    width=st.integers(2, 40),
    colour=st.tuples(*[st.integers(0, 255)] * 3),
)
def test_420_chroma_is_resampled_in_place(height, width, colour):
    """4:2:0 at full rank: a flat colour comes back as is, linear ramps too (but at the border).

    A chroma plane shifted by half a pixel, or an odd last row or column
    handled wrongly, shows up as errors of several levels here.
    """
    k, c = min(height, width), min((height + 1) // 2, (width + 1) // 2)
    options = {"ranks": (k, c, c), "qstep": 1 / 64, "subsampling": "4:2:0"}
    flat = np.zeros((height, width, 3), np.uint8) + np.array(colour, np.uint8)
    assert np.abs(svdk.decompress(svdk.compress(flat, **options)).astype(int) - flat).max() <= 1

    y, x = np.mgrid[0:height, 0:width]
    ramp = np.stack([40 + 4 * x, 100 + 3 * y, 200 - 2 * x - y], axis=-1).astype(np.uint8)
    error = np.abs(svdk.decompress(svdk.compress(ramp, **options)).astype(int) - ramp)
    assert error.max() <= 4
    assert error[1:-1, 1:-1].max(initial=0) <= 1


@pytest.mark.parametrize("mode", ["rgb", "ycbcr"])
def test_error_decreases_as_rank_grows(kodak_crop, mode):
    ranks = [1, 2, 4, 8, 16, 32, 64, 96, 128]
    scores = [
        metrics.psnr(kodak_crop, svdk.decompress(svdk.compress(kodak_crop, mode=mode, rank=k)))
        for k in ranks
    ]
    # Allow 0.05 dB of noise from the per-rank quantization step.
    assert all(b >= a - 0.05 for a, b in zip(scores, scores[1:])), scores
    assert scores[-1] - scores[0] > 15, scores
    if mode == "rgb":
        assert scores[-1] > 40  # full rank with the default step is close to the original


@pytest.mark.parametrize("mode", ["rgb", "ycbcr"])
def test_progressive_decoding_improves_with_components(kodak_crop, mode):
    data = svdk.compress(kodak_crop, mode=mode, rank=64)
    full = svdk.decompress(data)
    scores = []
    for j in (1, 2, 4, 8, 16, 32, 64):
        part = svdk.decompress(data, max_rank=j)
        assert part.dtype == np.uint8 and part.shape == kodak_crop.shape
        scores.append(metrics.psnr(kodak_crop, part))
    assert all(b > a for a, b in zip(scores, scores[1:])), scores
    np.testing.assert_array_equal(svdk.decompress(data, max_rank=64), full)
    np.testing.assert_array_equal(svdk.decompress(data, max_rank=10_000), full)


@pytest.mark.parametrize("mode", ["rgb", "ycbcr"])
def test_progressive_decoding_uses_the_same_factors(kodak_crop, mode):
    """max_rank=j is the first j components of this file, not a re-encode at rank j.

    Checked against the spec decoder in float64: pixels may differ by one
    level where float32 rounding tips a value over .5, and only rarely.
    """
    data = svdk.compress(kodak_crop, mode=mode, rank=40, subsampling="4:4:4")
    for j in (1, 7, 39, None):
        got = svdk.decompress(data, max_rank=j).astype(int)
        want = reference_decode(data, max_rank=j)
        assert np.abs(got - want).max() <= 1
        assert np.mean(got != want) < 0.001


@pytest.mark.parametrize("bad", [0, -1, 2.0, "3"])
def test_bad_max_rank_is_an_option_error(rgb_image, bad):
    data = svdk.compress(rgb_image, rank=3)
    with pytest.raises(svdk.OptionError, match="max_rank"):
        svdk.decompress(data, max_rank=bad)


# ----------------------------------------------------------------------------
# the tiled layout: images smaller than a tile, sizes not a multiple of it

_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9, "dict_size": 8 << 20}]  # the spec's stream


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II as a matrix: ``X = C @ x``, so the DCT-III inverse is ``x = C.T @ X``."""
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    c = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    c[0] /= np.sqrt(2.0)
    return c


def reference_decode_tiled(data: bytes, max_rank: int | None = None) -> np.ndarray:
    """Decode a tiled gray, rgb or ycbcr 4:4:4 file in float64, straight from the spec
    (format 3.0 with entropy coder 3 and deblocking, or format 2.0 with LZMA)."""
    f = SvdkFile.parse(data)
    layout, tile = f.reserved[0], f.reserved[1]
    assert layout == 1 and not f.subsampled
    dct = _dct_matrix(tile)
    if f.coder == 3:
        integers = tiled_ctx_integers(data)
        side, _ = ans_parts(data)
        start = (CTX_PARAMS + 4 * tile) * len(f.planes)
        alpha = side[start : start + f.width * f.height]
    else:
        raw = lzma.decompress(f.payload, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS) if f.coder == 1 \
            else zlib.decompress(f.payload)
        integers, pos = [], 0
        for (h, w), p in zip(f.plane_shapes(), f.planes):
            ty, tx = -(-h // tile), -(-w // tile)
            n = ty * tx
            ranks = np.frombuffer(raw, np.uint8, n, pos).astype(int)
            pos += n
            total = tile * int(ranks.sum())
            count = n + 2 * total
            chunk = np.frombuffer(raw, np.uint8, count * p.sample_bytes, pos)
            pos += count * p.sample_bytes
            z = np.zeros(count, np.int64)
            for b in range(p.sample_bytes):  # byte planes, least significant first
                z += chunk[b * count : (b + 1) * count].astype(np.int64) << (8 * b)
            v = np.where(z % 2 == 0, z // 2, -(z + 1) // 2)  # zigzag
            # means: differences from the tile to the left, the first of a row from the one above
            d = v[:n].reshape(ty, tx).copy()
            d[:, 0] = np.cumsum(d[:, 0])
            means = np.cumsum(d, axis=1).ravel()
            a_vec, b_vec = [[] for _ in range(n)], [[] for _ in range(n)]
            k = 0
            for i in range(tile):  # component-major
                for t in np.flatnonzero(ranks > i):
                    a_vec[t].append(v[n + k * tile : n + (k + 1) * tile])
                    b_vec[t].append(v[n + total + k * tile : n + total + (k + 1) * tile])
                    k += 1
            integers.append((ranks, means, a_vec, b_vec))
        alpha = raw[pos : pos + f.width * f.height]
    planes = []
    for (h, w), p, (ranks, means, a_vec, b_vec) in zip(f.plane_shapes(), f.planes, integers):
        ty, tx = -(-h // tile), -(-w // tile)
        step = p.qstep / 256.0
        grid = np.zeros((ty * tile, tx * tile))
        for t in range(ty * tx):
            r = ranks[t] if max_rank is None else min(ranks[t], max_rank)
            u = (step * np.array(a_vec[t][:r], dtype=float).reshape(r, tile)) @ dct  # inverse DCT of each vector
            vv = (step * np.array(b_vec[t][:r], dtype=float).reshape(r, tile)) @ dct
            y, x = divmod(t, tx)
            grid[y * tile : (y + 1) * tile, x * tile : (x + 1) * tile] = step * means[t] + u.T @ vv
        plane = grid[:h, :w]
        strength = p.reserved[0] if f.major >= 3 else 0
        if strength:
            plane = deblock_reference(plane, tile, strength / 4 * step).astype(np.float64)
        planes.append(plane)
    if f.mode == 0:
        img = planes[0]
    elif f.mode == 1:
        img = np.stack(planes, axis=-1)
    else:
        y, cb, cr = planes[0], planes[1] - 128.0, planes[2] - 128.0
        img = np.stack([y + 1.402 * cr, y - 0.344136286 * cb - 0.714136286 * cr, y + 1.772 * cb], axis=-1)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if f.alpha:
        alpha = np.frombuffer(alpha, np.uint8).reshape(f.height, f.width)
        img = np.concatenate([img if img.ndim == 3 else img[..., None], alpha[..., None]], axis=-1)
    return img


@settings(max_examples=60)
@given(
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    tile=st.sampled_from([4, 5, 8, 16, 64]),
    kind=st.sampled_from(["gray", "rgb", "ycbcr", "ycbcr 4:4:4"]),
    alpha=st.booleans(),
    seed=st.integers(0, 2**16),
    energy=st.floats(0.5, 1.0),
    progressive_fraction=st.floats(0, 1),
)
@example(1, 1, 8, "ycbcr", True, 0, 1.0, 0.0)  # one pixel in an 8x8 tile
@example(3, 7, 64, "rgb", False, 0, 0.9, 0.5)  # far smaller than the tile
@example(17, 9, 8, "ycbcr", True, 0, 0.95, 1.0)  # a partial last row and column of tiles
@example(40, 33, 16, "gray", True, 0, 0.99, 0.3)
def test_tiled_roundtrip_of_any_size(height, width, tile, kind, alpha, seed, energy, progressive_fraction):
    channels = (1 if kind == "gray" else 3) + (1 if alpha else 0)
    image = smooth_image(height, width, channels, seed=seed)
    options = {"tiled": True, "tile_size": tile, "energy": energy}
    if kind != "gray":
        options["mode"] = kind.split()[0]
        options["subsampling"] = "4:4:4" if kind == "ycbcr 4:4:4" else "4:2:0"
    data = svdk.compress(image, **options)
    head = svdk.info(data)
    assert head["layout"] == "tiled" and head["tile"] == tile
    assert (head["width"], head["height"]) == (width, height)

    out = svdk.decompress(data)
    assert out.dtype == np.uint8 and out.shape == image.shape
    if alpha:
        np.testing.assert_array_equal(out[..., -1], image[..., -1])
    j = 1 + int(progressive_fraction * (tile - 1))
    partial = svdk.decompress(data, max_rank=j)
    assert partial.dtype == np.uint8 and partial.shape == image.shape

    if head["subsampling"] != "4:2:0":
        # the spec decoder agrees, full and progressive (float64 against float32)
        for got, j_ in ((out, None), (partial, j)):
            assert np.abs(got.astype(int) - reference_decode_tiled(data, max_rank=j_)).max() <= 1


@pytest.mark.parametrize(
    "height, width, tile",
    [(1, 1, 8), (5, 3, 8), (13, 20, 8), (33, 65, 16), (65, 63, 64), (1, 40, 8), (30, 7, 4)],
)
@pytest.mark.parametrize("kind", ["gray", "rgb", "ycbcr 4:4:4"])
def test_a_partial_tile_codes_like_the_image_padded_to_whole_tiles(height, width, tile, kind):
    """The spec pads the last tiles by repeating the edge: an image coded as is
    and the same image padded out to whole tiles give the same integers, and
    the same pixels with the same deblocking strengths.

    A tile read or placed one row off, or padded with zeros, breaks this.
    """
    image = smooth_image(height, width, 1 if kind == "gray" else 3, seed=height * 100 + width, noise=20)
    ty, tx = -(-height // tile), -(-width // tile)
    pad = ((0, ty * tile - height), (0, tx * tile - width)) + (() if kind == "gray" else ((0, 0),))
    padded = np.pad(image, pad, mode="edge")
    options = {"tiled": True, "tile_size": tile, "energy": 0.97}
    if kind != "gray":
        options.update(mode=kind.split()[0], subsampling="4:4:4")
    data, data_padded = svdk.compress(image, **options), svdk.compress(padded, **options)
    # the same integers; the deblocking strength is the encoder's choice for the pixels it
    # sees, so the padded file gets the other file's strengths before both are decoded
    for plane, plane_padded in zip(svdk.format.unpack(data)[1], svdk.format.unpack(data_padded)[1]):
        for part, part_padded in zip(plane, plane_padded):
            np.testing.assert_array_equal(part, part_padded)
    forged = SvdkFile.parse(data_padded)
    for record, strength in zip(forged.planes, svdk.info(data)["deblock"]):
        record.reserved = bytes([strength, 0, 0])
    out = svdk.decompress(data)
    out_padded = svdk.decompress(forged.to_bytes())
    np.testing.assert_array_equal(out, out_padded[:height, :width])
    # and the coding is not trivially bad at the edge: the last (partial) row
    # and column of tiles are no worse than the image as a whole, within 3 dB
    edge = np.zeros((height, width), bool)
    edge[(ty - 1) * tile :, :] = True
    edge[:, (tx - 1) * tile :] = True
    if not edge.all():
        err = (out.astype(float) - image) ** 2
        assert err[edge].mean() <= 2 * err.mean() + 1


@pytest.mark.parametrize("bad", [3, 65, 0, 8.0, True])
def test_tile_sizes_outside_4_to_64_are_an_option_error(rgb_image, bad):
    with pytest.raises(svdk.OptionError, match="tile size"):
        svdk.compress(rgb_image, tiled=True, tile_size=bad, energy=0.9)


# ----------------------------------------------------------------------------
# determinism

_OPTIONS = [
    {"rank": 8},  # randomized SVD (rank small next to the side)
    {"rank": 100, "mode": "rgb"},  # LAPACK SVD
    {"quality": "ssim:0.9"},
    {"size": "6KB"},
    {"energy": 0.999, "subsampling": "4:4:4"},
]


def _digests(image: np.ndarray) -> list[str]:
    return [hashlib.sha256(svdk.compress(image, **o)).hexdigest() for o in _OPTIONS]


def test_encoding_is_deterministic_in_process(kodak_crop):
    assert _digests(kodak_crop) == _digests(kodak_crop.copy())


@pytest.mark.parametrize("threads", ["1", "2"])
def test_encoding_is_deterministic_in_a_fresh_process(kodak_crop, tmp_path, threads):
    np.save(tmp_path / "image.npy", kodak_crop)
    script = (
        "import hashlib, sys, warnings, numpy as np, svdk\n"
        "warnings.simplefilter('ignore')\n"
        f"image = np.load({str(tmp_path / 'image.npy')!r})\n"
        f"for o in {_OPTIONS!r}:\n"
        "    print(hashlib.sha256(svdk.compress(image, **o)).hexdigest())\n"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads,
           "MKL_NUM_THREADS": threads}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == _digests(kodak_crop)


@pytest.mark.parametrize("options", [{"quality": "ssim:0.9"}, {"quality": "psnr:36", "tile_size": 4}])
def test_tiled_files_do_not_depend_on_the_encoder_threads(kodak_crop, monkeypatch, options):
    """On two or more cores the tiled encoder splits its tile SVDs and SSIM
    strips between two threads; the same image gives the same file on one
    core."""
    from svdk import _threads, _tiled, metrics

    monkeypatch.setattr(_threads, "cores", lambda: 1)
    alone = svdk.compress(kodak_crop, tiled=True, **options)
    monkeypatch.setattr(_threads, "cores", lambda: 2)
    # the crop's planes are below the sizes that use threads
    monkeypatch.setattr(_tiled, "THREADED_SVD_TILES", 1)
    monkeypatch.setattr(metrics, "THREADED_PIXELS", 1)
    assert svdk.compress(kodak_crop, tiled=True, **options) == alone


def test_a_tiled_file_does_not_depend_on_the_counts_scored_before(kodak_crop, monkeypatch):
    """A plane keeps its last few quantized counts (a search scores several,
    then packs one): whatever was scored before, and whatever was dropped,
    the file at a count is the one a fresh encoder writes."""
    from svdk import _tiled

    monkeypatch.setattr(_tiled, "QUANTIZED_KEPT", (2, 1 << 23))  # drops results early
    counts = [40, 400, 90, 40, 1200, 400, 90]
    fresh = {k: svdk.Encoder(kodak_crop, tiled=True).pack(svdk.Encoder(kodak_crop, tiled=True).ranks_for(k))
             for k in set(counts)}
    encoder = svdk.Encoder(kodak_crop, tiled=True)
    for k in counts:
        encoder.score(k)
        assert encoder.pack(encoder.ranks_for(k)) == fresh[k]
    assert len(encoder.planes[0]._quantized) <= 2
    monkeypatch.setattr(_tiled, "QUANTIZED_KEPT", (8, 1))  # too few integers for two: the newest stays
    encoder = svdk.Encoder(kodak_crop, tiled=True)
    for k in counts:
        assert encoder.pack(encoder.ranks_for(k)) == fresh[k]
        assert [count for count, _ in encoder.planes[0]._quantized] == [k]


def test_the_tiled_step_is_coarser_at_low_rates_and_chroma_follows_luma(kodak_crop):
    """The step factor is 1.5 up to 0.4 luma components per tile and 1.25 from
    0.8 (tiles of 8; other tiles keep 1.25); a chroma plane takes the factor
    of luma's count at its threshold, as the header's steps show, and every
    plane decodes to what Encoder.reconstruct shows for its count."""
    import math

    from svdk import _codec, _tiled

    f = _tiled.step_factor
    assert f(0.1, 8) == f(0.4, 8) == _tiled.TILE_STEP_FACTOR_LOW == 1.5
    assert f(0.8, 8) == f(5.0, 8) == _tiled.TILE_STEP_FACTOR == 1.25
    ramp = [f(c, 8) for c in np.geomspace(0.4, 0.8, 9)]
    assert all(a > b for a, b in zip(ramp, ramp[1:])) and math.isclose(ramp[4], 1.375)
    assert f(0.1, 4) == f(0.1, 16) == 1.25

    encoder = svdk.Encoder(kodak_crop, tiled=True)
    n = encoder.planes[0].ntiles

    def steps(ranks):
        return svdk.info(encoder.pack(ranks))["qsteps"]

    def code(plane, count, factor):
        return round(factor * math.sqrt(encoder.planes[plane].tau(count) / 8) * 256) / 256

    low, high = encoder.ranks_for(int(0.25 * n)), encoder.ranks_for(int(1.5 * n))
    assert steps(low) == [code(i, k, 1.5) for i, k in enumerate(low)]
    # chroma has fewer components per tile than luma, yet keeps luma's factor at its threshold
    assert steps(high) == [code(i, k, 1.25) for i, k in enumerate(high)]
    assert encoder.planes[1].ntiles < n and high[1] / encoder.planes[1].ntiles < 0.8

    # Every plane of any file decodes to what Encoder.reconstruct shows for its count.
    from svdk import format as fmt

    mixed = (high[0], *low[1:])
    for ranks in (low, encoder.ranks_for(int(0.6 * n)), high, mixed):
        header, factors, _ = fmt.unpack(encoder.pack(ranks))
        for i, (f, rec, shape) in enumerate(zip(factors, header.planes, header.shapes)):
            plane = _tiled.decode_tiled_plane(*f, rec.qstep, shape, 8, deblock_strength=rec.deblock)
            np.testing.assert_array_equal(encoder.reconstruct(ranks[i], plane=i), _codec.to_uint8(plane))


def test_tune_ssim_keeps_faint_detail_in_flat_regions():
    """tune="ssim" spends a count's components on the faint texture of a flat
    region rather than on a busy one (tune="psnr" does the opposite); the file
    is an ordinary one: a tile keeps a prefix of its components, the step
    comes from the plain threshold at the count, and it decodes to what
    Encoder.reconstruct shows."""
    from svdk import _codec, _tiled
    from svdk import format as fmt

    rng = np.random.default_rng(3)
    image = np.full((64, 128), 128.0)
    image[:, :64] += rng.normal(0, 4, (64, 64))  # faint texture on the left
    image[:, 64:] += rng.normal(0, 24, (64, 64))  # strong texture on the right
    image = np.clip(image, 0, 255).astype(np.uint8)
    psnr_enc = svdk.Encoder(image, tiled=True)
    ssim_enc = svdk.Encoder(image, tiled=True, tune="ssim")
    count = 3 * psnr_enc.planes[0].ntiles  # three components per tile on average
    left = np.zeros((8, 16), bool)
    left[:, :8] = True
    for enc, faint_share in ((psnr_enc, lambda x: x < 0.02), (ssim_enc, lambda x: x > 0.15)):
        ranks = enc.planes[0].ranks(count).reshape(8, 16)
        assert abs(int(ranks.sum()) - count) <= 1
        assert faint_share(ranks[left].sum() / ranks.sum()), enc.tune
        header, factors, _ = fmt.unpack(enc.pack((count,)))
        assert np.array_equal(factors[0][0], enc.planes[0].ranks(count))
        # the same plain threshold, hence the same step, at the same count
        assert header.planes[0].qstep == _tiled.step_code(
            _tiled.step_for(enc.planes[0].tau(count), 8, 3.0, enc.tune)
        )
        decoded = _tiled.decode_tiled_plane(
            *factors[0], header.planes[0].qstep, (64, 128), 8, deblock_strength=header.planes[0].deblock
        )
        np.testing.assert_array_equal(enc.reconstruct(count), _codec.to_uint8(decoded))
    assert _tiled.step_factor(0.1, 8, "ssim") == 1.75 and _tiled.step_factor(2.0, 8, "ssim") == 1.5
    # the energy policy reads the kept components' own singular values
    for enc in (psnr_enc, ssim_enc):
        k = enc.encode(energy=0.8).components[0]
        kept = float(np.sum(enc.planes[0].singular_values(k).astype(np.float64) ** 2))
        fewer = float(np.sum(enc.planes[0].singular_values(k - 1).astype(np.float64) ** 2))
        total = enc.planes[0].energy_total
        assert fewer < 0.8 * total <= kept * (1 + 1e-9)


def test_tune_ssim_meets_an_ssim_target_in_fewer_bytes():
    """What tune="ssim" is for: the default SSIM target, still met, in a smaller file."""
    image = svdk.load_image("example:astronaut").color
    plain = svdk.encode(image, tiled=True, quality="ssim:0.9")
    tuned = svdk.encode(image, tiled=True, quality="ssim:0.9", tune="ssim")
    assert tuned.nbytes < 0.95 * plain.nbytes
    # met on the file's own luma, as a fresh encoder decodes it (Encoder.reconstruct is the file's plane)
    fresh = svdk.Encoder(image, tiled=True, tune="ssim")
    assert fresh.score(tuned.components[0]) >= 0.9 and tuned.measured["value"] >= 0.9
    assert fresh.pack(tuned.components) == tuned.data


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(tiled=True, tune="butteraugli"), "unknown tune 'butteraugli'"),
        (dict(tiled=True, tune=None), "unknown tune None"),
        (dict(tune="ssim"), "tune='ssim' applies to the tiled layout"),
    ],
)
def test_tune_errors(options, message):
    with pytest.raises(svdk.OptionError, match=message):
        svdk.compress("example:camera", quality="ssim:0.8", **options)


def test_the_planes_of_an_image_decompose_as_each_alone(kodak_crop, monkeypatch):
    """The encoder computes the tile SVDs of all planes as one stack; each
    tile's factors are those of the plane decomposed on its own."""
    from svdk import _tiled

    planes = [kodak_crop[..., c].astype(np.float32) for c in range(3)]
    planes[1] = planes[1][::2, ::2]  # planes of other sizes, as chroma
    for tile, joint_tiles in ((4, _tiled.JOINT_TILES), (8, _tiled.JOINT_TILES), (8, 1)):
        monkeypatch.setattr(_tiled, "JOINT_TILES", joint_tiles)  # 1: plane by plane
        for joint, plane in zip(_tiled.tiled_planes(planes, tile), planes):
            alone = _tiled.TiledPlane(plane, tile)
            for name in ("means", "a", "b", "s", "order", "_spectra"):
                assert np.array_equal(getattr(joint, name), getattr(alone, name)), name


def test_thread_splits_nest_and_pass_errors_on(monkeypatch):
    from svdk import _threads

    monkeypatch.setattr(_threads, "cores", lambda: 2)

    def inner(which):
        return [i * i for i in which]

    def outer(which):  # each item splits again, as a caller inside a worker might
        return [sum(_threads.split(inner, i + 2, True)) for i in which]

    assert _threads.split(outer, 5, True) == [sum(j * j for j in range(i + 2)) for i in range(5)]

    def fails(which):
        if 0 in which:
            raise ZeroDivisionError("in the second thread")
        return list(which)

    with pytest.raises(ZeroDivisionError, match="second thread"):
        _threads.split(fails, 4, True)


def test_svdk_num_threads_keeps_the_encoder_to_one_thread(kodak_crop, monkeypatch):
    from svdk import _threads

    monkeypatch.setattr(_threads, "cores", lambda: 2)
    seen = []

    def work(which):
        seen.append(threading.current_thread() is threading.main_thread())
        return list(which)

    monkeypatch.setenv("SVDK_NUM_THREADS", "1")
    assert _threads.split(work, 4, True) == [0, 1, 2, 3] and seen == [True]
    monkeypatch.setenv("SVDK_NUM_THREADS", "2")
    assert _threads.split(work, 4, True) == [0, 1, 2, 3] and sorted(seen) == [False, True, True]
    monkeypatch.setenv("SVDK_NUM_THREADS", "two")
    with pytest.raises(svdk.OptionError, match="SVDK_NUM_THREADS must be a whole number"):
        svdk.compress(kodak_crop, tiled=True, quality="ssim:0.9")


# ----------------------------------------------------------------------------
# what the encoder accepts


def test_every_input_type_gives_the_same_bytes(rgb_image, tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(png_bytes(rgb_image))
    want = svdk.compress(rgb_image, rank=5)
    assert svdk.compress(Image.fromarray(rgb_image), rank=5) == want
    assert svdk.compress(path, rank=5) == want
    assert svdk.compress(str(path), rank=5) == want
    assert svdk.compress(path.read_bytes(), rank=5) == want
    assert svdk.compress(bytearray(path.read_bytes()), rank=5) == want
    assert svdk.compress(rgb_image / 255.0, rank=5) == want  # floats in [0, 1]
    assert svdk.compress(np.asfortranarray(rgb_image), rank=5) == want


def test_equivalent_arrays_give_the_same_bytes(gray_image):
    want = svdk.compress(gray_image, rank=4)
    assert svdk.compress(gray_image[..., None], rank=4) == want  # (H, W, 1)
    assert svdk.compress(gray_image.astype(np.uint16) * 257, rank=4) == want  # 16 bits
    mask = gray_image > 128
    assert svdk.compress(mask, rank=2) == svdk.compress(mask.astype(np.uint8) * 255, rank=2)


def test_example_images_match_their_pixels():
    import skimage.data

    astronaut = skimage.data.astronaut()
    assert svdk.compress("example:astronaut", rank=6) == svdk.compress(astronaut, rank=6)
    camera = svdk.decompress(svdk.compress("example:camera", rank=6))
    assert camera.shape == skimage.data.camera().shape  # grayscale stays one plane


def test_a_bsds500_jpeg_encodes_from_its_path(data_dir):
    path = data_dir / "bsds500" / "test" / "100007.jpg"
    with Image.open(path) as im:
        pixels = np.asarray(im.convert("RGB"))
    out = svdk.decompress(svdk.compress(path, rank=24))
    assert out.shape == pixels.shape and pixels.shape[:2] in ((321, 481), (481, 321))
    assert svdk.metrics.psnr(pixels, out) > 22


def test_exif_orientation_is_honoured():
    pixels = smooth_image(20, 30, 3, seed=5)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=95, exif=exif.tobytes())
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        stored = np.asarray(im.convert("RGB"))
    upright = np.rot90(stored, k=-1)  # what a viewer shows
    for source in (buf.getvalue(), Image.open(io.BytesIO(buf.getvalue()))):
        out = svdk.decompress(
            svdk.compress(source, mode="rgb", rank=20, qstep=1 / 64)
        )
        assert out.shape == (30, 20, 3)
        assert np.abs(out.astype(int) - upright).max() <= 2


def test_16_bit_png_is_reduced_to_8_bits():
    deep = (np.add.outer(np.arange(20), np.arange(30)) * 1300).astype(np.uint16)
    encoded = svdk.encode(png_bytes(deep), rank=20, qstep=1 / 64)
    out = svdk.decompress(encoded.data)
    assert out.shape == (20, 30)
    want = np.rint(deep / 257.0)
    assert np.abs(out.astype(int) - want).max() <= 2
    assert any("16 to 8 bits" in n for n in encoded.notes)


def _palette_image() -> Image.Image:
    index = (np.add.outer(np.arange(16), np.arange(24)) // 5 % 6).astype(np.uint8)
    im = Image.fromarray(index, "P")
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (240, 240, 0), (0, 0, 0),
               (255, 255, 255)]
    im.putpalette([c for rgb in colours for c in rgb])
    return im


def test_palette_png_decodes_to_its_colours():
    im = _palette_image()
    buf = io.BytesIO()
    im.save(buf, "PNG")
    out = svdk.decompress(svdk.compress(buf.getvalue(), mode="rgb", rank=16, qstep=1 / 64))
    assert out.shape == (16, 24, 3)
    assert np.abs(out.astype(int) - np.asarray(im.convert("RGB"))).max() <= 2


def test_palette_png_with_transparency_keeps_it_as_alpha():
    im = _palette_image()
    buf = io.BytesIO()
    im.save(buf, "PNG", transparency=2)
    out = svdk.decompress(svdk.compress(buf.getvalue(), rank=4))
    assert out.shape == (16, 24, 4)
    index = np.asarray(im)
    np.testing.assert_array_equal(out[..., 3], np.where(index == 2, 0, 255))


def test_cmyk_jpeg_is_converted_to_rgb():
    cmyk = Image.fromarray(smooth_image(16, 24, 4, seed=6), "CMYK")
    buf = io.BytesIO()
    cmyk.save(buf, "JPEG", quality=95)
    encoded = svdk.encode(buf.getvalue(), mode="rgb", rank=16, qstep=1 / 64)
    out = svdk.decompress(encoded.data)
    assert out.shape == (16, 24, 3)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        assert np.abs(out.astype(int) - np.asarray(im.convert("RGB"))).max() <= 2
    assert any("CMYK" in n for n in encoded.notes)


def test_la_png_keeps_gray_and_alpha(gray_alpha_image):
    out = svdk.decompress(svdk.compress(png_bytes(gray_alpha_image), rank=3))
    assert out.shape == gray_alpha_image.shape == (21, 17, 2)
    np.testing.assert_array_equal(out[..., 1], gray_alpha_image[..., 1])


def test_animated_gif_encodes_its_first_frame_with_a_warning():
    frames = [Image.fromarray(smooth_image(12, 16, 3, seed=s)).quantize(16) for s in (7, 8, 9)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    with pytest.warns(svdk.SvdkWarning, match="3 frames"):
        encoded = svdk.encode(buf.getvalue(), mode="rgb", rank=12, qstep=1 / 64)
    out = svdk.decompress(encoded.data)
    assert out.shape == (12, 16, 3)
    first = np.asarray(frames[0].convert("RGB")).astype(int)
    second = np.asarray(frames[1].convert("RGB")).astype(int)
    assert np.abs(out - first).max() <= 2
    assert np.abs(out - second).max() > 2
    assert any("first" in n for n in encoded.notes)


def test_a_file_bigger_than_the_pixels_warns():
    image = smooth_image(8, 8, 3, seed=10)
    with pytest.warns(svdk.SvdkWarning, match="not smaller than the raw pixels"):
        encoded = svdk.encode(image, mode="rgb", rank=8)
    assert any("raw pixels" in n for n in encoded.notes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        svdk.encode(smooth_image(64, 64, 3, seed=10), rank=4)  # a real saving: silent


# ----------------------------------------------------------------------------
# the file-level helpers


def test_compress_file_and_decompress_file(rgba_image, tmp_path):
    src = tmp_path / "in.png"
    src.write_bytes(png_bytes(rgba_image))
    dst = tmp_path / "out.svdk"
    result = svdk.compress_file(src, dst, rank=6)
    assert dst.read_bytes() == result.data
    assert svdk.info(dst) == svdk.info(result.data)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    back = svdk.decompress_file(dst, tmp_path / "back.png")
    with Image.open(tmp_path / "back.png") as im:
        np.testing.assert_array_equal(np.asarray(im), back)
    np.testing.assert_array_equal(back, svdk.decompress(result.data))

    with pytest.raises(svdk.OptionError, match="alpha"):
        svdk.decompress_file(dst, tmp_path / "back.jpg")
    assert not (tmp_path / "back.jpg").exists()


@pytest.mark.parametrize("suffix", [".gif", ".xyz"])
def test_decompress_file_writes_the_format_its_name_says(rgb_image, tmp_path, suffix):
    src = tmp_path / "in.svdk"
    src.write_bytes(svdk.compress(rgb_image, rank=4))
    dst = tmp_path / f"out{suffix}"
    try:
        svdk.decompress_file(src, dst)
    except svdk.OptionError:
        return  # refusing an unknown suffix is fine too
    with Image.open(dst) as im:
        assert im.format.lower() == suffix[1:]


def test_reading_a_missing_svdk_file_is_a_format_error(tmp_path):
    with pytest.raises(svdk.FormatError, match="no such file"):
        svdk.info(tmp_path / "nope.svdk")
    with pytest.raises(svdk.FormatError, match="folder"):
        svdk.decompress_file(tmp_path, tmp_path / "x.png")


def test_ranks_past_the_numerical_rank_cost_almost_nothing():
    """A flat image at rank 32: the extra components are zero, and must not make the
    steps of the real one absurdly fine (format 2.0 sets steps from the weakest kept
    component, floored at an amplitude 8-bit pixels cannot show)."""
    flat = np.full((64, 64), 77, dtype=np.uint8)
    one, many = svdk.compress(flat, rank=1), svdk.compress(flat, rank=32)
    assert len(many) < 2 * len(one)
    np.testing.assert_array_equal(svdk.decompress(many), flat)


@pytest.mark.parametrize("tile", [4, 5, 8, 16])
def test_the_encoder_picks_the_deblocking_strength_with_the_least_error(kodak_crop, tile):
    """The strength in a file is the first of the candidates whose filtered
    plane (the spec's filter, pixel by pixel) is closest to the original;
    deblock_errors, which filters only the pixels on both kinds of border
    once per threshold, gives every candidate's error less one constant."""
    from svdk import _tiled

    encoder = svdk.Encoder(kodak_crop[:, :117], tiled=True, tile_size=tile)  # a partial last tile column
    plane = encoder.planes[0]
    for count in (plane.ntiles // 3, plane.ntiles, 3 * plane.ntiles):
        ranks, dc, a, b, code = plane.quantize(count)
        plain = _tiled.decode_tiled_plane(ranks, dc, a, b, code, plane.shape, tile)
        target = plane.data.astype(np.float32)
        thresholds = [s * code / 1024.0 for s in _tiled.DEBLOCK_CANDIDATES]
        brute = []
        for t in thresholds:
            diff = deblock_reference(plain, tile, t) - target
            brute.append(float(np.square(diff).sum(dtype=np.float64)))
        brute = np.array(brute)
        fast = _tiled.deblock_errors(plain, target, tile, thresholds)
        np.testing.assert_allclose(brute - fast, (brute - fast)[0], rtol=0, atol=1e-6 * brute.max())
        assert plane.deblock_strength(count) == _tiled.DEBLOCK_CANDIDATES[int(np.argmin(brute))]
    # a jump that equals a threshold in float32 (as the decoder compares them) stays
    plain = np.zeros((16, 16), np.float32)
    plain[:, 8:] = np.float32(0.3)
    errors = _tiled.deblock_errors(plain, np.zeros_like(plain), 8, [0.0, float(np.float32(0.3)) + 1e-12])
    assert errors[0] == errors[1]


def test_strengths_that_filter_alike_tie_and_the_first_wins():
    """Every jump of the plane stays below the first candidate threshold, so all
    strengths but "off" filter it alike: their errors must be equal, to the
    last bit, so that the first of them is chosen, as when each filtered
    plane's error is summed whole (the parts of deblock_errors once added
    up in an order that broke such ties)."""
    from svdk import _tiled

    thresholds = [s / 4.0 for s in _tiled.DEBLOCK_CANDIDATES]  # a step of 1
    for seed in range(40):
        rng = np.random.default_rng(seed)
        plain = np.float32(0.5) * (rng.uniform(0, 255, (64, 64)).astype(np.float32) / np.float32(255))
        target = (deblock_reference(plain, 8, 1.0) + rng.normal(0, 0.01, (64, 64))).astype(np.float32)
        errors = _tiled.deblock_errors(plain, target, 8, thresholds)
        assert len(set(errors[1:].tolist())) == 1 and errors[1] < errors[0], seed
        assert int(np.argmin(errors)) == 1


def _ramp_by_gather(costs):
    """The coder's ramp search as first written: for every slope, each bucket's level gathered
    and the buckets summed. ``(slope, bases, totals per slope)``: ``_tilecoder._ramp_totals``
    must give these totals to the bit."""
    from svdk import _tilecoder

    groups, nb, nl = costs.shape
    best, totals = (np.inf, 0, None), []
    for slope in range(_tilecoder.MAX_SLOPE + 1):
        idx = np.minimum(nl - 1, np.arange(nl)[:, None] + ((slope * np.arange(1, nb + 1)) >> 3)[None, :])
        total = costs[:, np.arange(nb)[None, :], idx].sum(axis=-1)  # (groups, bases)
        totals.append(total)
        choice = np.argmin(total, axis=1)
        bits = float(total[np.arange(groups), choice].sum())
        if bits < best[0]:
            best = (bits, slope, choice)
    return best[1], best[2], totals


@pytest.mark.parametrize("tile", [4, 5, 8, 16, 32])
def test_the_coder_picks_the_cheapest_ramp_of_levels(tile):
    """The ramp of levels (one slope, a base per pass group) and every cost it compares are
    those of a search that gathers every level, to the bit: costs from histograms of real
    magnitudes (sums that round differently when added in another order), rounded ones that
    tie, all-zero ones (slope 0 and the first bases win), and a near-tie that only the order
    of the additions decides."""
    from svdk import _entropy, _tilecoder

    nb, nl = _tilecoder.COEF_BUCKETS - 1, _entropy.NUM_LEVELS
    cost = _tilecoder._cost_table()[:, :40]
    cases = []
    for seed in range(30):
        rng = np.random.default_rng(seed)
        hist = rng.integers(0, 60, (2 * tile, nb, 40)).astype(np.float64) * (rng.random((2 * tile, nb, 1)) > 0.3)
        costs = hist @ cost.T * rng.uniform(0.5, 2.0)
        if seed % 3 == 1:
            costs = np.round(costs * 0.25)  # many equal sums
        if seed % 10 == 9:
            costs[:] = 0.0
        cases.append(costs)
    tiny = 2.0**-53  # 1 + tiny + tiny is 1 one by one, but 1 + 2 tiny pairwise
    near = np.zeros((2 * tile, nb, nl))
    near[0, :, 2:] = 10.0
    near[0, :, 0] = [1, 0, tiny, tiny, 0, 0, 0, 0, 0, 0]
    near[0, :, 1] = [tiny, 0, 0, 0, tiny, 1, 0, 0, 0, 0]
    cases.append(near)
    for n, costs in enumerate(cases):
        want_slope, want_bases, want_totals = _ramp_by_gather(costs)
        for slope, total in _tilecoder._ramp_totals(costs):
            assert np.array_equal(total, want_totals[slope]), (n, slope)
        slope, bases = _tilecoder._best_ramp(costs)
        assert slope == want_slope and np.array_equal(bases, want_bases), n
    slope, bases = _tilecoder._best_ramp(cases[9])  # all zero
    assert slope == 0 and not bases.any()
