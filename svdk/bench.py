"""``svdk bench``: rate-distortion of svdk and the reference codecs on a folder of images.

Run ``python -m svdk.bench --help`` (or ``svdk bench --help``). The codecs
are svdk's layouts and the references of :mod:`svdk.baselines`: Pillow's
JPEG (the reference every figure is measured against), WebP and AVIF, and,
with ``pip install 'svdk[bench]'``, jpegli and JPEG XL; a codec that
cannot run here is left out with a note on stderr and in ``summary.json``
(``skipped``). For every codec it writes one results JSON in one schema::

    {"name": ..., "description": ..., "sweep": [...], "images": [...],
     "results": {"bpp": [...], "psnr-rgb": [...], "ms-ssim-rgb": [...],
                 "ssim": [...], "encoding_time": [...], "decoding_time": [...]},
     "per_image": {"kodim01": {"bpp": [...], "psnr-rgb": [...], ...}, ...}}

where list position ``i`` is sweep point ``i`` and ``results`` averages the
images at that point: ``null`` where a point does not apply to every image
(an svdk rank larger than a small image is ``null`` in that image's
``per_image`` lists), so that an averaged curve never mixes different sets
of images. ``--points N`` runs only N points of each sweep. Bits per pixel
come from the real file bytes (header included), PSNR-RGB, SSIM and
MS-SSIM (RGB, TensorFlow's, skipped with a note when TensorFlow is missing
or with ``--no-ms-ssim``) from :mod:`svdk.metrics` on the decoded 8-bit
image; encoding and decoding times are those of the codec's own calls, in
the worker, one call each (each process first codes a corner of an image
once, untimed, so that no codec pays for loading its library in a timed
call).

``compressai/NAME.json`` holds the same averaged curves in CompressAI's
results layout, exactly ``{"name", "description", "results": {"psnr-rgb",
"ms-ssim-rgb", "bpp", "encoding_time", "decoding_time"}}`` with MS-SSIM
as a fraction (not dB), and only the points that every image has, so that
CompressAI's plotting tool overlays them on its published curves (PNG, with
no finite PSNR, has none).

``summary.json`` gives, for each codec against JPEG, the Bjøntegaard deltas
(:func:`bd_rate` first, then :func:`bd_psnr`) over two fixed ranges,
0.25-1.0 bpp and 0.1-0.3 bpp (:data:`BD_RANGES`), for PSNR-RGB and for
MS-SSIM in decibels (``-10 log10(1 - MS-SSIM)``, the scale on which the
field compares MS-SSIM curves), under ``codecs.NAME.bd.METRIC.RANGE``; and
the PSNR at 0.25, 0.5 and 1.0 bpp. Every figure is computed per image and
then averaged, over the images whose curves cover the range; each comes
with that number of images (``..._images``). It also records the command
that re-runs it. With plotly installed, ``rd.html`` charts bpp against
PSNR, MS-SSIM (dB) and SSIM.

The (codec, image) pairs run on ``--jobs N`` processes or, with ``--engine
ray``, on a Ray cluster (:mod:`svdk.engine`); every engine writes the same
files, timings aside. An image that cannot be read is named on stderr and in
``summary.json`` (``failed``), the others are benchmarked, and the exit
status is 1. ``--resume`` keeps what a stopped run of the same ``--out``
finished (``partial.jsonl`` there).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.interpolate import PchipInterpolator

from . import metrics
from ._errors import SvdkError
from .engine import add_options, check_options, positive_int

__all__ = [
    "CODECS",
    "cpu_model",
    "BD_RANGES",
    "BD_METRICS",
    "BenchError",
    "read_image",
    "find_images",
    "bd_psnr",
    "bd_rate",
    "bd_rate_overlap",
    "chart",
    "compressai_layout",
    "format_summary",
    "unavailable",
    "psnr_at",
    "sweep_points",
    "summarize",
    "run",
    "main",
]

BD_RANGE = (0.25, 1.0)
#: The rate ranges of the Bjøntegaard deltas in ``summary.json``, by the key they have there.
BD_RANGES = {"0.25-1": BD_RANGE, "0.1-0.3": (0.1, 0.3)}
#: The quality measures of the Bjøntegaard deltas, and the scale each is compared on.
BD_METRICS = {
    "psnr-rgb": "PSNR over R, G and B together, in dB",
    "ms-ssim-rgb": "MS-SSIM (mean of R, G and B; TensorFlow's tf.image.ssim_multiscale, max_val 255) "
    "in dB: -10 log10(1 - MS-SSIM)",
}
TARGET_BPP = (0.25, 0.5, 1.0)


@dataclass(frozen=True)
class Codec:
    name: str
    description: str
    sweep: tuple
    encode: Callable  # (image, parameter) -> bytes
    decode: Callable  # (bytes, image) -> ndarray


def _svdk_codec(name, description, sweep, **options):
    import svdk

    def encode(image, p):
        key, value = p
        return svdk.compress(image, **options, **{key: value})

    return Codec(name, description, tuple(sweep), encode, lambda data, image: svdk.decompress(data))


def _reference_codec(name, description, sweep):
    from . import baselines

    return Codec(
        name,
        description,
        tuple(sweep),
        lambda image, q: baselines.encode(image, name, q, decode=False).data,
        lambda data, image: baselines.decode(data, image.ndim == 2, name),
    )


def codecs() -> dict[str, Codec]:
    """Every codec the benchmark knows, by name."""
    from . import baselines

    ranks = [2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 160]
    # from about 0.1 bpp (0.06-0.1 at energy 0.1) to about 2 bpp
    energy = [0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.8, 0.87, 0.92, 0.95, 0.97, 0.98, 0.987, 0.992, 0.995, 0.997, 0.998,
              0.999]
    out = {
        "svdk-global-ycbcr": _svdk_codec(
            "svdk-global-ycbcr",
            "svdk global layout, ycbcr 4:2:0, luma rank k (chroma k/4), DCT of the factors, rANS",
            [("rank", k) for k in ranks],
        ),
        "svdk-global-rgb": _svdk_codec(
            "svdk-global-rgb",
            "svdk global layout, rgb, rank k on R, G and B, DCT of the factors, rANS",
            [("rank", k) for k in ranks[:-2]],
            mode="rgb",
        ),
        "svdk-tiled": _svdk_codec(
            "svdk-tiled",
            "svdk tiled layout (8x8 tiles), ycbcr 4:2:0, one threshold set by the energy fraction kept, "
            "least-squares refinement, deblocking, context-model rANS (format 3.0)",
            [("energy", e) for e in energy],
            tiled=True,
        ),
        "svdk-tiled-ssim": _svdk_codec(
            "svdk-tiled-ssim",
            "svdk tiled layout as svdk-tiled, tuned for SSIM (tune='ssim': components weighted by their "
            "tiles' contrast, step factors 1.5 to 1.75)",
            [("energy", e) for e in energy],
            tiled=True,
            tune="ssim",
        ),
        # Each reference from its lowest setting: quality 2 is as low as Pillow's JPEG goes (its
        # baseline tables saturate: quality 1 is a few bytes smaller), 0.07-0.16 bpp on Kodak;
        # jpegli's quality 1 is 0.2-0.4 bpp and JPEG XL's quality 0 (distance 25) 0.1-0.3 bpp,
        # so neither reaches 0.1 bpp on every image.
        "jpeg": _reference_codec(
            "jpeg", "Pillow JPEG (libjpeg), 4:2:0, optimize=True", [2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]
        ),
        "jpegli": _reference_codec(
            "jpegli", "jpegli (pyjpegli), 4:2:0, its defaults; decoded with jpegli",
            [1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95],
        ),
        "webp": _reference_codec("webp", "Pillow WebP, method 4", [0, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]),
        "avif": _reference_codec("avif", "Pillow AVIF, default speed", [0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90]),
        "jxl": _reference_codec(
            "jxl", "JPEG XL (libjxl through pillow-jxl-plugin), effort 7",
            [0, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90],
        ),
        "png": _reference_codec("png", "Pillow PNG, optimize=True (lossless)", [None]),
    }
    missing = baselines.unavailable()
    return {k: v for k, v in out.items() if k not in missing}


def unavailable() -> dict[str, str]:
    """The codecs of :data:`CODECS` that cannot run here, with the reason (and what to install)."""
    from . import baselines

    return {k: v for k, v in baselines.unavailable().items() if k in CODECS}


CODECS = (
    "svdk-global-ycbcr", "svdk-global-rgb", "svdk-tiled", "svdk-tiled-ssim", "jpeg", "jpegli", "webp", "avif", "jxl",
    "png",
)


# ----------------------------------------------------------------------------
# Bjøntegaard deltas


def _curve(bpp, quality):
    """A monotone PCHIP interpolant of quality against log(bpp)."""
    bpp = np.asarray(bpp, dtype=float)
    quality = np.asarray(quality, dtype=float)
    ok = np.isfinite(bpp) & np.isfinite(quality) & (bpp > 0)
    order = np.argsort(bpp[ok], kind="stable")
    x, y = np.log(bpp[ok][order]), quality[ok][order]
    x, idx = np.unique(x, return_index=True)
    return x, y[idx]


def bd_psnr(ref_bpp, ref_psnr, test_bpp, test_psnr, lo=BD_RANGE[0], hi=BD_RANGE[1]) -> float:
    """Mean PSNR difference (test - reference) in dB over ``[lo, hi]`` bpp.

    Both curves are interpolated with PCHIP in ``log(bpp)`` (the JCT-VC
    variant of Bjøntegaard's method) and integrated over the range. Returns
    NaN when a curve does not cover the whole range. Any quality measure in
    dB works the same way (``svdk bench`` also gives it MS-SSIM in dB).
    """
    xr, yr = _curve(ref_bpp, ref_psnr)
    xt, yt = _curve(test_bpp, test_psnr)
    a, b = math.log(lo), math.log(hi)
    if len(xr) < 2 or len(xt) < 2 or xr[0] > a or xr[-1] < b or xt[0] > a or xt[-1] < b:
        return float("nan")
    ir = PchipInterpolator(xr, yr).integrate(a, b)
    it = PchipInterpolator(xt, yt).integrate(a, b)
    return float((it - ir) / (b - a))


def bd_rate(ref_bpp, ref_psnr, test_bpp, test_psnr, lo=BD_RANGE[0], hi=BD_RANGE[1]) -> float:
    """Mean bit-rate difference of test against reference, in percent.

    Over the PSNR interval the reference spans between ``lo`` and ``hi`` bpp
    (cut to what the test curve reaches), ``log(bpp)`` is interpolated with
    PCHIP as a function of PSNR for both curves and integrated; the mean
    difference ``d`` gives ``100 * (exp(d) - 1)``. Negative: the test needs
    fewer bits. NaN when the reference does not cover ``[lo, hi]`` or the
    curves share no PSNR interval. Any quality measure in place of PSNR
    works the same way (``svdk bench`` also gives it MS-SSIM in dB).
    :func:`bd_rate_overlap` says how much of the reference's interval the
    test curve reaches.
    """
    return _bd_rate(ref_bpp, ref_psnr, test_bpp, test_psnr, lo, hi)[0]


def bd_rate_overlap(ref_bpp, ref_psnr, test_bpp, test_psnr, lo=BD_RANGE[0], hi=BD_RANGE[1]) -> float:
    """The fraction of the reference's PSNR interval (between ``lo`` and ``hi`` bpp) that
    :func:`bd_rate` integrates over: 1 when the test curve spans all of it. NaN where BD-rate is.

    A codec much better than the reference at low rates may start above the
    reference's PSNR at ``lo`` bpp even at its lowest setting; its BD-rate is
    then the mean over the upper part of the interval only.
    """
    return _bd_rate(ref_bpp, ref_psnr, test_bpp, test_psnr, lo, hi)[1]


def _bd_rate(ref_bpp, ref_psnr, test_bpp, test_psnr, lo, hi) -> tuple[float, float]:
    nan = (float("nan"), float("nan"))
    xr, yr = _curve(ref_bpp, ref_psnr)
    xt, yt = _curve(test_bpp, test_psnr)
    a, b = math.log(lo), math.log(hi)
    if len(xr) < 2 or len(xt) < 2 or xr[0] > a or xr[-1] < b:
        return nan
    ref = PchipInterpolator(xr, yr)
    r_lo, r_hi = float(ref(a)), float(ref(b))
    p_lo, p_hi = max(r_lo, yt.min()), min(r_hi, yt.max())
    if not p_hi > p_lo:
        return nan

    def log_rate(x, y):
        order = np.argsort(y)
        y, idx = np.unique(y[order], return_index=True)
        return PchipInterpolator(y, x[order][idx])

    ir = log_rate(xr, yr).integrate(p_lo, p_hi)
    it = log_rate(xt, yt).integrate(p_lo, p_hi)
    return float(100.0 * (math.exp((it - ir) / (p_hi - p_lo)) - 1.0)), float((p_hi - p_lo) / (r_hi - r_lo))


def psnr_at(bpp, psnr, target: float) -> float:
    """PSNR at ``target`` bpp, interpolated in ``log(bpp)``; NaN outside the curve."""
    x, y = _curve(bpp, psnr)
    t = math.log(target)
    if len(x) < 2 or t < x[0] or t > x[-1]:
        return float("nan")
    return float(PchipInterpolator(x, y)(t))


# ----------------------------------------------------------------------------
# running


class BenchError(SvdkError):
    """An image of the benchmark that cannot be read; the message names it."""


def read_image(path: Path) -> np.ndarray:
    """The RGB pixels of a benchmark image, as every codec of the benchmark gets them."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as exc:  # Pillow raises several types for bad files
        raise BenchError(f"{path}: cannot read the image ({type(exc).__name__}: {exc})") from None


def sweep_points(codec: Codec, points: int | None = None) -> tuple:
    """The settings of ``codec`` to run: its whole sweep, or ``points`` of them.

    ``points`` settings are spread evenly over the sweep, its first (lowest
    rate) and last (highest rate) included, so the curve keeps its ends.
    """
    n = len(codec.sweep)
    if points is None or points >= n:
        return codec.sweep
    if points < 2:
        raise ValueError(f"a sweep needs at least 2 points; got {points}")
    # index i (n - 1) / (points - 1), rounded half up; distinct since points <= n
    idx = [(2 * i * (n - 1) + points - 1) // (2 * (points - 1)) for i in range(points)]
    return tuple(codec.sweep[i] for i in idx)


_KEYS = ("bpp", "psnr-rgb", "ms-ssim-rgb", "ssim", "encoding_time", "decoding_time")


_WARM: set[str] = set()


def _warm_up(codec: Codec, image: np.ndarray) -> None:
    """Code a corner of the image once per process before anything is timed, so
    that no codec's first timed call pays for loading its library."""
    from ._errors import OptionError

    if codec.name in _WARM:
        return
    _WARM.add(codec.name)
    corner = np.ascontiguousarray(image[:16, :16])
    try:
        codec.decode(codec.encode(corner, codec.sweep[0]), corner)
    except OptionError:
        pass


def _code_one(args):
    """Every sweep point of one codec on one image (runs in a worker)."""
    import warnings

    from ._errors import OptionError, SvdkWarning

    warnings.simplefilter("ignore", SvdkWarning)
    codec_name, path, points, ms_ssim = args
    codec = codecs()[codec_name]
    image = read_image(Path(path))
    _warm_up(codec, image)
    npx = image.shape[0] * image.shape[1]
    scorer = metrics.Scorer(image)
    rows = {k: [] for k in _KEYS}
    for p in sweep_points(codec, points):
        t0 = time.perf_counter()
        try:
            data = codec.encode(image, p)
        except OptionError:  # a setting this image cannot take (a rank above its size)
            for k in _KEYS:
                rows[k].append(None)
            continue
        t1 = time.perf_counter()
        decoded = codec.decode(data, image)
        t2 = time.perf_counter()
        psnr, ssim = scorer(decoded)
        rows["bpp"].append(8 * len(data) / npx)
        rows["psnr-rgb"].append(_finite(psnr))
        rows["ms-ssim-rgb"].append(metrics.ms_ssim(image, decoded) if ms_ssim else None)
        rows["ssim"].append(ssim)
        rows["encoding_time"].append(t1 - t0)
        rows["decoding_time"].append(t2 - t1)
    return codec_name, Path(path).stem, rows


def _finite(x):
    return None if x is None or not math.isfinite(x) else x


def _mean(values):
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def _mean_of_all(values):
    """The mean when every image has a value (None when one lacks it, so that
    an averaged curve never mixes different sets of images)."""
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    return float(np.mean(values)) if values else None


def _quality(rows: dict, metric: str) -> list:
    """One image's curve of ``metric`` on the scale the Bjøntegaard deltas use (MS-SSIM in dB)."""
    values = rows.get(metric) or []
    if metric == "ms-ssim-rgb":
        return [metrics.ms_ssim_db(v) for v in values]
    return values


def _measured(per_image: dict, metric: str) -> bool:
    return any(v is not None for r in per_image.values() for v in (r.get(metric) or []))


def summarize(results: dict[str, dict], reference: str = "jpeg") -> dict:
    """BD-rate, BD-PSNR and PSNR at fixed rates of every codec, per image then averaged.

    For every codec but PNG (lossless: no curve), for each measure of
    :data:`BD_METRICS` that the reference has values of, and for each range of
    :data:`BD_RANGES`, ``codecs[NAME]["bd"][METRIC][RANGE]`` holds
    ``bd_rate_percent`` (:func:`bd_rate`) and ``bd_quality_db``
    (:func:`bd_psnr`: BD-PSNR for PSNR, BD-MS-SSIM in dB for MS-SSIM), each
    the mean over the images where it is defined, with that number of images
    (``bd_rate_images``, ``bd_quality_images``): an image whose curves do not
    cover the range gives no value. ``bd_rate_overlap`` is the mean of
    :func:`bd_rate_overlap`: how much of the reference's quality interval
    the BD-rate could be taken over. ``bd_psnr_db``, ``bd_rate_percent``,
    ``bd_images`` and ``bd_rate_images`` at the codec's top level repeat the
    PSNR figures over 0.25-1.0 bpp, as summaries made before the second range
    and MS-SSIM had them.
    """
    out = {
        "reference": reference,
        "bd_range_bpp": list(BD_RANGE),
        "bd_ranges_bpp": {key: list(span) for key, span in BD_RANGES.items()},
        "bd_metrics": dict(BD_METRICS),
        "codecs": {},
    }
    ref = results.get(reference)
    measures = [m for m in BD_METRICS if ref is not None and _measured(ref["per_image"], m)]
    for name, res in results.items():
        per = res["per_image"]
        row = {}
        for t in TARGET_BPP:
            vals = [psnr_at(r["bpp"], r["psnr-rgb"], t) for r in per.values()]
            row[f"psnr_at_{t:g}_bpp"] = _mean(vals)
            row[f"psnr_at_{t:g}_bpp_images"] = int(np.sum(np.isfinite(vals)))
        if ref is not None and name != "png":
            bd = {}
            for metric in measures:
                bd[metric] = {}
                for key, (lo, hi) in BD_RANGES.items():
                    rates, overlap, quality = [], [], []
                    for img, r in per.items():
                        rr = ref["per_image"].get(img)
                        if rr is None:
                            continue
                        curves = (rr["bpp"], _quality(rr, metric), r["bpp"], _quality(r, metric))
                        rate, share = _bd_rate(*curves, lo, hi)
                        rates.append(rate)
                        overlap.append(share)
                        quality.append(bd_psnr(*curves, lo, hi))
                    bd[metric][key] = {
                        "bd_rate_percent": _mean(rates),
                        "bd_rate_images": int(np.sum(np.isfinite(rates))),
                        "bd_rate_overlap": _mean(overlap),
                        "bd_quality_db": _mean(quality),
                        "bd_quality_images": int(np.sum(np.isfinite(quality))),
                    }
            row["bd"] = bd
            if "psnr-rgb" in bd:
                main = bd["psnr-rgb"]["0.25-1"]
                row["bd_psnr_db"] = main["bd_quality_db"]
                row["bd_rate_percent"] = main["bd_rate_percent"]
                row["bd_images"] = main["bd_quality_images"]
                row["bd_rate_images"] = main["bd_rate_images"]
        out["codecs"][name] = row
    return out


def compressai_layout(result: dict, images: int | None = None) -> dict | None:
    """A codec's averaged curves in CompressAI's results layout (None: no point has every figure).

    ``{"name", "description", "results": {"psnr-rgb", "ms-ssim-rgb", "bpp",
    "encoding_time", "decoding_time"}}``, MS-SSIM as a fraction, as in
    CompressAI's published files. A point is kept when every image has it
    (its averaged ``bpp`` and ``psnr-rgb`` are not null, nor its
    ``ms-ssim-rgb`` when MS-SSIM was measured): PNG's single lossless point
    has no finite PSNR, so PNG has no such file. MS-SSIM is left out when an
    image has none (too small, or not measured).
    """
    r = result["results"]
    keys = ["psnr-rgb", "ms-ssim-rgb", "bpp", "encoding_time", "decoding_time"]
    if not r.get("ms-ssim-rgb") or all(v is None for v in r["ms-ssim-rgb"]):
        keys.remove("ms-ssim-rgb")
    keep = [j for j in range(len(r["bpp"])) if all(r[k][j] is not None for k in keys)]
    if not keep:
        return None
    over = f"; svdk bench, mean over {images} images per setting" if images else ""
    return {
        "name": result["name"],
        "description": result["description"] + over,
        "results": {k: [r[k][j] for j in keep] for k in keys},
    }


#: Results of finished (codec, image) pairs, one JSON line each, kept while a run
#: is going so that ``--resume`` can pick up where a stopped run left off.
PARTIAL = "partial.jsonl"


def _partial_key(job) -> str:
    name, path, points, ms_ssim = job
    p = Path(path)
    return json.dumps([name, p.name, p.stat().st_size, points, ms_ssim])


def _ms_ssim_check(images: list[Path]) -> dict:
    """Whether MS-SSIM can be measured here (imports TensorFlow), and the images too small for it."""
    try:
        probe = np.zeros((metrics.MS_SSIM_MIN_SIDE, metrics.MS_SSIM_MIN_SIDE, 3), np.uint8)
        metrics.ms_ssim(probe, probe)
    except ImportError as exc:
        return {"measured": False, "note": f"not measured: {exc}"}
    import tensorflow as tf  # imported by the check above

    from PIL import Image

    too_small = {}
    for path in images:
        try:
            with Image.open(path) as im:
                width, height = im.size
        except Exception:  # an unreadable image is reported as such by the run
            continue
        why = metrics.ms_ssim_undefined(height, width)
        if why is not None:
            too_small[path.name] = why
    out = {"measured": True, "how": f"tf.image.ssim_multiscale, max_val 255, default window and weights, "
           f"mean of R, G and B; tensorflow {tf.__version__}", "bd_scale": "dB: -10 log10(1 - MS-SSIM)"}
    if too_small:
        out["undefined"] = too_small
    return out


def run(
    images: list[Path],
    names: list[str],
    out_dir: Path,
    workers: int | None = 2,
    progress: bool = True,
    *,
    points: int | None = None,
    command: str | None = None,
    engine: str = "local",
    address: str | None = None,
    resume: bool = False,
    ms_ssim: bool = True,
) -> dict:
    """Benchmark ``names`` on ``images``; write the JSON files and the chart to ``out_dir``.

    ``points`` limits every codec's sweep (see :func:`sweep_points`);
    ``workers=1`` runs in this process, ``workers=None`` uses every usable
    core; ``engine="ray"`` runs on Ray (``address``: see
    :func:`svdk.engine.map_images`). Every engine writes the same files.
    ``command`` is recorded in ``summary.json`` as the way to re-run the
    benchmark. While it runs, finished (codec, image) pairs are kept in
    ``out_dir/partial.jsonl``; ``resume=True`` reuses them instead of running
    them again (the file goes once the results are written). An image that
    cannot be read is left out of the results and named in
    ``summary["failed"]``; :class:`BenchError` is raised only when no image
    could be read. A codec of ``names`` that cannot run here is left out and
    named, with the reason, in ``summary["skipped"]``. ``ms_ssim=True``
    measures MS-SSIM when TensorFlow can be imported; ``summary["ms_ssim"]``
    says whether it was, how, and which images are too small for it.
    """
    from tqdm import tqdm

    from .engine import Failure, describe, map_images

    available = codecs()
    why_not = unavailable()
    skipped = {n: why_not.get(n, "unknown codec") for n in names if n not in available}
    ms = _ms_ssim_check(images) if ms_ssim else {"measured": False, "note": "not measured: --no-ms-ssim"}
    jobs = [(n, str(p), points, ms["measured"]) for n in names if n in available for p in images]
    collected: dict[str, dict[str, dict]] = {n: {} for n in names if n in available}
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / PARTIAL
    done: dict[str, dict] = {}
    if resume and partial.exists():
        for line in partial.read_text().splitlines():
            try:
                rec = json.loads(line)
                done[rec["key"]] = rec["rows"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut short when the run stopped
    keys = [_partial_key(job) for job in jobs]
    todo = [i for i, key in enumerate(keys) if key not in done]
    for i, key in enumerate(keys):
        if key in done:
            collected[jobs[i][0]][Path(jobs[i][1]).stem] = done[key]
    failed: dict[str, str] = {}
    # The bar shows on a terminal only: no carriage-return noise in logs.
    bar = dict(total=len(todo), disable=None if progress else True, desc="bench", unit="image", file=sys.stderr)
    with open(partial, "a" if resume else "w") as log:

        def keep(index: int, value) -> None:
            if not isinstance(value, Failure):
                log.write(json.dumps({"key": keys[todo[index]], "rows": value[2]}) + "\n")
                log.flush()

        for index, value in tqdm(map_images(_code_one, [jobs[i] for i in todo], engine=engine, jobs=workers,
                                            address=address, on_result=keep), **bar):
            if isinstance(value, Failure):
                failed[f"{jobs[todo[index]][0]}/{Path(jobs[todo[index]][1]).name}"] = value.message
                continue
            name, stem, rows = value
            collected[name][stem] = rows
    if failed and not any(collected.values()):
        raise BenchError("; ".join(dict.fromkeys(failed.values())))
    results = {}
    compressai = out_dir / "compressai"
    compressai.mkdir(exist_ok=True)
    for name, per in collected.items():
        codec = available[name]
        sweep = sweep_points(codec, points)
        mean = {k: [_mean_of_all([per[i][k][j] for i in per]) for j in range(len(sweep))] for k in _KEYS}
        results[name] = {
            "name": name,
            "description": codec.description,
            "sweep": [p if not isinstance(p, tuple) else {p[0]: p[1]} for p in sweep],
            "images": sorted(per),
            "results": mean,
            "per_image": {k: per[k] for k in sorted(per)},
        }
        (out_dir / f"{name}.json").write_text(json.dumps(results[name], indent=1) + "\n")
        layout = compressai_layout(results[name], len(per))
        if layout is not None:
            (compressai / f"{name}.json").write_text(json.dumps(layout, indent=2) + "\n")
    summary = summarize(results)
    summary["ms_ssim"] = ms
    if skipped:
        summary["skipped"] = skipped
    summary["images"] = [p.name for p in images]
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    summary["machine"] = _machine()
    summary["command"] = command
    summary["engine"] = describe(engine, workers, address)
    if failed:
        summary["failed"] = failed
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    _chart(results, out_dir / "rd.html")
    partial.unlink(missing_ok=True)
    return summary


def cpu_model() -> str | None:
    """The processor's model name from ``/proc/cpuinfo`` (None where there is none: not Linux).

    Results files record it beside the figures measured on that machine.
    """
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _machine() -> dict:
    import PIL
    import skimage

    cpu = cpu_model() or ""
    from . import __version__

    return {
        "svdk": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "scikit-image": skimage.__version__,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
    }


def _chart(results: dict, path: Path) -> None:
    try:
        fig = chart(results)
    except ImportError:
        print("plotly is not installed: no chart (pip install 'svdk[bench]')", file=sys.stderr)
        return
    fig.write_html(path, include_plotlyjs="cdn")


def chart(results: dict):
    """The plotly figure of ``rd.html``: bpp against PSNR, MS-SSIM in dB (when measured) and SSIM.

    Each codec keeps one colour in every panel. Raises ImportError without plotly.
    """
    import plotly.colors
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    panels = [("psnr-rgb", "PSNR-RGB", "dB"), ("ms-ssim-rgb", "MS-SSIM (RGB), in dB", "-10 log10(1 - MS-SSIM)"),
              ("ssim", "SSIM", "SSIM")]
    if not any(v is not None for res in results.values() for v in res["results"].get("ms-ssim-rgb", [])):
        panels.pop(1)  # not measured
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[title for _, title, _ in panels])
    palette = plotly.colors.qualitative.Plotly
    for i, (name, res) in enumerate(results.items()):
        r = res["results"]
        colour = palette[i % len(palette)]
        for col, (key, _, _) in enumerate(panels, 1):
            y = [metrics.ms_ssim_db(v) for v in r[key]] if key == "ms-ssim-rgb" else r[key]
            fig.add_trace(
                go.Scatter(x=r["bpp"], y=y, mode="lines+markers", name=name, legendgroup=name,
                           showlegend=col == 1, line={"color": colour}, marker={"color": colour}),
                row=1, col=col,
            )
    fig.update_xaxes(title_text="bits per pixel", range=[0, 2])
    for col, (_, _, unit) in enumerate(panels, 1):
        fig.update_yaxes(title_text=unit, row=1, col=col)
    fig.update_layout(title="Rate-distortion, mean over images", template="plotly_white")
    return fig


def find_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name."""
    exts = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts)


def _at_least_two(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"a curve needs at least 2 points; got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="svdk bench",
        description="Rate-distortion of svdk and reference codecs on a folder of images. Writes one "
        "results JSON per codec (and the same curves in CompressAI's layout under compressai/), "
        "summary.json (BD-rate and BD-PSNR against Pillow's JPEG over 0.25-1.0 and 0.1-0.3 bpp, for "
        "PSNR-RGB and MS-SSIM in dB; PSNR at 0.25, 0.5 and 1 bpp) and, with plotly, rd.html. jpegli and "
        "JPEG XL need pip install 'svdk[bench]', MS-SSIM TensorFlow (pip install 'svdk[keras]'); "
        "without them they are left out with a note.",
    )
    p.add_argument("folder", nargs="?", default="../shared/data/kodak", help="images (default ../shared/data/kodak)")
    p.add_argument("--codecs", default=",".join(CODECS), help=f"comma-separated, from: {', '.join(CODECS)}")
    p.add_argument("--out", default=None, help="output folder (default results/bench-<folder name>)")
    p.add_argument("--images", type=positive_int, default=None, metavar="N",
                   help="only the first N images, in name order (quick tries)")
    p.add_argument("--points", type=_at_least_two, default=None, metavar="N",
                   help="only N settings of each codec's sweep, spread evenly over it with the lowest "
                   "and highest rate kept (quick tries; BD figures from fewer points are coarser)")
    add_options(p, jobs_dest="workers", jobs_aliases=("--workers",), what="images")
    p.add_argument("--resume", action="store_true",
                   help="keep the (codec, image) results a stopped run of the same --out finished")
    p.add_argument("--no-ms-ssim", dest="ms_ssim", action="store_false",
                   help="do not measure MS-SSIM (it imports TensorFlow; about 0.05-0.1 s per coded Kodak image)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``svdk bench`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    check_options(parser, args)

    def fail(message: str, status: int) -> int:
        print(f"svdk bench: error: {message}", file=sys.stderr)
        return status

    from ._errors import OptionError

    folder = Path(args.folder)
    if not folder.is_dir():
        return fail(
            f"{folder} is not a folder of images. The Kodak and BSDS500 sets this project uses "
            "are described in ../shared/data/README.md (Kodak: r0k.us/graphics/kodak).",
            2,
        )
    names = [n.strip() for n in args.codecs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CODECS]
    if unknown or not names:
        return fail(f"unknown codec(s) {', '.join(unknown) or repr(args.codecs)}; known: {', '.join(CODECS)}", 2)
    images = find_images(folder)[: args.images]
    if not images:
        return fail(f"no images (.png, .jpg, .bmp, .tif, .webp) in {folder}", 2)
    stems = [p.stem for p in images]
    same = sorted({s for s in stems if stems.count(s) > 1})
    if same:
        return fail(f"images with the same name in {folder} would share one result: {', '.join(same)}", 2)
    available = codecs()
    why_not = unavailable()
    left_out = {n: why_not.get(n, "it cannot run here") for n in names if n not in available}
    if len(left_out) == len(names):
        reasons = "; ".join(f"{n}: {why}" for n, why in left_out.items())
        return fail(f"none of the codecs asked for can run here ({reasons})", 2)
    for name, why in left_out.items():
        print(f"svdk bench: note: {name} left out: {why}", file=sys.stderr)
    out = Path(args.out) if args.out else Path("results") / f"bench-{folder.name}"
    try:
        summary = run(images, names, out, workers=args.workers, points=args.points,
                      command=shlex.join(["svdk", "bench", *argv]), engine=args.engine,
                      address=args.address, resume=args.resume, ms_ssim=args.ms_ssim)
    except (BenchError, OptionError) as exc:
        return fail(str(exc), 1)
    except KeyboardInterrupt:
        return fail(f"interrupted; 'svdk bench {shlex.join(argv)} --resume' goes on from what was finished", 130)
    if args.ms_ssim and not summary["ms_ssim"]["measured"]:
        print(f"svdk bench: note: MS-SSIM {summary['ms_ssim']['note']}", file=sys.stderr)
    for message in dict.fromkeys(summary.get("failed", {}).values()):  # an image fails once per codec
        print(f"svdk bench: error: {message}", file=sys.stderr)
    print(f"{len(images)} images, {summary['seconds']} s; results in {out}/")
    print(format_summary(summary))
    return 1 if summary.get("failed") else 0


def format_summary(summary: dict) -> str:
    """The terminal table of a summary: per measure and range, BD-rate then BD in dB; then PSNR at rates."""
    def f(x, spec):
        return "-" if x is None else format(x, spec)

    ranges = list(BD_RANGES)
    lines = []
    for metric, label in (("psnr-rgb", "PSNR-RGB"), ("ms-ssim-rgb", "MS-SSIM dB")):
        rows = {n: c["bd"][metric] for n, c in summary["codecs"].items() if metric in c.get("bd", {})}
        if not rows:
            continue
        head = [h for r in ranges for h in (f"BD-rate {r}", f"BD-dB {r}")]
        extra = [f"PSNR@{t:g}" for t in TARGET_BPP] if metric == "psnr-rgb" else []
        lines.append(f"{label + ' vs ' + summary['reference']:20} " + " ".join(f"{h:>14}" for h in head + extra))
        for name, bd in rows.items():
            cells = [c for r in ranges for c in (f(bd[r]["bd_rate_percent"], "+.1f") + " %",
                                                 f(bd[r]["bd_quality_db"], "+.2f"))]
            if extra:
                cells += [f(summary["codecs"][name][f"psnr_at_{t:g}_bpp"], ".2f") for t in TARGET_BPP]
            lines.append(f"{name:20} " + " ".join(f"{c:>14}" for c in cells))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
