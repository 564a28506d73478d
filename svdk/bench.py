"""``svdk bench``: rate-distortion of svdk and the reference codecs on a folder of images.

Run ``python -m svdk.bench --help`` (or ``svdk bench --help``). For every
codec it writes one results JSON in one schema::

    {"name": ..., "description": ..., "images": [...],
     "results": {"bpp": [...], "psnr-rgb": [...], "ssim": [...],
                 "encoding_time": [...], "decoding_time": [...]},
     "per_image": {"kodim01": {"bpp": [...], "psnr-rgb": [...], ...}, ...}}

where list position ``i`` is sweep point ``i`` and ``results`` averages the
images at that point: ``null`` where a point does not apply to every image
(an svdk rank larger than a small image is ``null`` in that image's
``per_image`` lists), so that an averaged curve never mixes different sets
of images. ``--points N`` runs only N points of each sweep. Bits per pixel
come from the real file bytes (header included), PSNR-RGB and SSIM from
:mod:`svdk.metrics` on the decoded 8-bit image. A ``summary.json`` adds,
for each codec against JPEG, the Bjøntegaard deltas over the fixed range
0.25 to 1.0 bpp (see :func:`bd_psnr` and :func:`bd_rate`) and the PSNR at
0.25, 0.5 and 1.0 bpp, all computed per image and then averaged, and the
command that re-runs it; with plotly installed, ``rd.html`` charts bpp
against PSNR and SSIM.

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

from ._errors import SvdkError
from .engine import add_options, check_options, positive_int

__all__ = [
    "CODECS",
    "BenchError",
    "read_image",
    "find_images",
    "bd_psnr",
    "bd_rate",
    "psnr_at",
    "sweep_points",
    "summarize",
    "run",
    "main",
]

BD_RANGE = (0.25, 1.0)
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


def _pillow_codec(name, description, sweep):
    from . import baselines

    return Codec(
        name,
        description,
        tuple(sweep),
        lambda image, q: baselines.encode(image, name, q).data,
        lambda data, image: baselines.decode(data, image.ndim == 2),
    )


def codecs() -> dict[str, Codec]:
    """Every codec the benchmark knows, by name."""
    from . import baselines

    ranks = [2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 160]
    energy = [0.3, 0.5, 0.7, 0.8, 0.87, 0.92, 0.95, 0.97, 0.98, 0.987, 0.992, 0.995, 0.997, 0.998, 0.999]
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
        # low settings too, so that every Kodak image reaches 0.25 bpp
        "jpeg": _pillow_codec(
            "jpeg", "Pillow JPEG (libjpeg), 4:2:0, optimize=True", [2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]
        ),
        "webp": _pillow_codec("webp", "Pillow WebP, method 4", [0, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]),
        "avif": _pillow_codec("avif", "Pillow AVIF, default speed", [5, 10, 20, 30, 40, 50, 60, 70, 80, 90]),
        "png": _pillow_codec("png", "Pillow PNG, optimize=True (lossless)", [None]),
    }
    return {k: v for k, v in out.items() if k not in ("webp", "avif") or k in baselines.available()}


CODECS = ("svdk-global-ycbcr", "svdk-global-rgb", "svdk-tiled", "jpeg", "webp", "avif", "png")


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
    NaN when a curve does not cover the whole range.
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
    fewer bits. NaN when the curves share no PSNR interval.
    """
    xr, yr = _curve(ref_bpp, ref_psnr)
    xt, yt = _curve(test_bpp, test_psnr)
    if len(xr) < 2 or len(xt) < 2:
        return float("nan")
    a, b = math.log(lo), math.log(hi)
    ref = PchipInterpolator(xr, yr)
    p_lo, p_hi = float(ref(max(a, xr[0]))), float(ref(min(b, xr[-1])))
    p_lo, p_hi = max(p_lo, yt.min()), min(p_hi, yt.max())
    if not p_hi > p_lo:
        return float("nan")

    def log_rate(x, y):
        order = np.argsort(y)
        y, idx = np.unique(y[order], return_index=True)
        return PchipInterpolator(y, x[order][idx])

    ir = log_rate(xr, yr).integrate(p_lo, p_hi)
    it = log_rate(xt, yt).integrate(p_lo, p_hi)
    return float(100.0 * (math.exp((it - ir) / (p_hi - p_lo)) - 1.0))


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


_KEYS = ("bpp", "psnr-rgb", "ssim", "encoding_time", "decoding_time")


def _code_one(args):
    """Every sweep point of one codec on one image (runs in a worker)."""
    import warnings

    from . import metrics
    from ._errors import OptionError, SvdkWarning

    warnings.simplefilter("ignore", SvdkWarning)
    codec_name, path, points = args
    codec = codecs()[codec_name]
    image = read_image(Path(path))
    npx = image.shape[0] * image.shape[1]
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
        rows["bpp"].append(8 * len(data) / npx)
        rows["psnr-rgb"].append(_finite(metrics.psnr(image, decoded)))
        rows["ssim"].append(metrics.ssim(image, decoded))
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


def summarize(results: dict[str, dict], reference: str = "jpeg") -> dict:
    """BD-rate, BD-PSNR and PSNR at fixed rates of every codec, per image then averaged.

    Each average comes with the number of images it is over (``..._images``):
    an image whose curves do not cover the range gives no value.
    """
    out = {"reference": reference, "bd_range_bpp": list(BD_RANGE), "codecs": {}}
    ref = results.get(reference)
    for name, res in results.items():
        per = res["per_image"]
        row = {}
        for t in TARGET_BPP:
            vals = [psnr_at(r["bpp"], r["psnr-rgb"], t) for r in per.values()]
            row[f"psnr_at_{t:g}_bpp"] = _mean(vals)
            row[f"psnr_at_{t:g}_bpp_images"] = int(np.sum(np.isfinite(vals)))
        if ref is not None and name != "png":
            bdp, bdr = [], []
            for img, r in per.items():
                rr = ref["per_image"].get(img)
                if rr is None:
                    continue
                bdp.append(bd_psnr(rr["bpp"], rr["psnr-rgb"], r["bpp"], r["psnr-rgb"]))
                bdr.append(bd_rate(rr["bpp"], rr["psnr-rgb"], r["bpp"], r["psnr-rgb"]))
            row["bd_psnr_db"] = _mean(bdp)
            row["bd_rate_percent"] = _mean(bdr)
            row["bd_images"] = int(np.sum(np.isfinite(bdp)))
            row["bd_rate_images"] = int(np.sum(np.isfinite(bdr)))
        out["codecs"][name] = row
    return out


#: Results of finished (codec, image) pairs, one JSON line each, kept while a run
#: is going so that ``--resume`` can pick up where a stopped run left off.
PARTIAL = "partial.jsonl"


def _partial_key(job) -> str:
    name, path, points = job
    p = Path(path)
    return json.dumps([name, p.name, p.stat().st_size, points])


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
    could be read.
    """
    from tqdm import tqdm

    from .engine import Failure, describe, map_images

    available = codecs()
    jobs = [(n, str(p), points) for n in names if n in available for p in images]
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
    summary = summarize(results)
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


def _machine() -> dict:
    import PIL
    import skimage

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
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
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError:
        print("plotly is not installed: no chart (pip install 'svdk[bench]')", file=sys.stderr)
        return
    fig = make_subplots(rows=1, cols=2, subplot_titles=("PSNR-RGB", "SSIM"))
    for name, res in results.items():
        r = res["results"]
        for col, key in ((1, "psnr-rgb"), (2, "ssim")):
            fig.add_trace(
                go.Scatter(x=r["bpp"], y=r[key], mode="lines+markers", name=name, legendgroup=name,
                           showlegend=col == 1),
                row=1, col=col,
            )
    fig.update_xaxes(title_text="bits per pixel", range=[0, 2])
    fig.update_yaxes(title_text="dB", row=1, col=1)
    fig.update_layout(title="Rate-distortion, mean over images", template="plotly_white")
    fig.write_html(path, include_plotlyjs="cdn")


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
        "results JSON per codec, summary.json (BD-PSNR and BD-rate against JPEG over 0.25-1.0 bpp, "
        "PSNR at 0.25, 0.5 and 1 bpp) and, with plotly, rd.html.",
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
    missing = [n for n in names if n not in available]
    if missing:
        print(f"svdk bench: note: this Pillow cannot write {', '.join(missing)}; left out", file=sys.stderr)
        names = [n for n in names if n in available]
        if not names:
            return fail("none of the codecs asked for can run here", 2)
    out = Path(args.out) if args.out else Path("results") / f"bench-{folder.name}"
    try:
        summary = run(images, names, out, workers=args.workers, points=args.points,
                      command=shlex.join(["svdk", "bench", *argv]), engine=args.engine,
                      address=args.address, resume=args.resume)
    except (BenchError, OptionError) as exc:
        return fail(str(exc), 1)
    except KeyboardInterrupt:
        return fail(f"interrupted; 'svdk bench {shlex.join(argv)} --resume' goes on from what was finished", 130)
    for message in dict.fromkeys(summary.get("failed", {}).values()):  # an image fails once per codec
        print(f"svdk bench: error: {message}", file=sys.stderr)
    print(f"{len(images)} images, {summary['seconds']} s; results in {out}/")
    print(f"{'codec':18} {'BD-PSNR dB':>10} {'BD-rate %':>10} " + " ".join(f"{'PSNR@' + format(t, 'g'):>9}" for t in TARGET_BPP))
    for name, row in summary["codecs"].items():
        def f(x, spec):
            return format(x, spec) if x is not None else "-"

        print(
            f"{name:18} {f(row.get('bd_psnr_db'), '+.2f'):>10} {f(row.get('bd_rate_percent'), '+.1f'):>10} "
            + " ".join(f"{f(row[f'psnr_at_{t:g}_bpp'], '.2f'):>9}" for t in TARGET_BPP)
        )
    return 1 if summary.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
