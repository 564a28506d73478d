"""Rate-distortion of svdk and the reference codecs on Kodak-24.

Run from the repository root::

    python -m benchmarks.rd_kodak               # writes results/rd_kodak.json (about 3 min, 2 workers)
    python -m benchmarks.rd_kodak --images 3    # a quick try on the first three images

Every image is coded at every point of each codec's sweep: svdk ycbcr 4:2:0
(``rank=k``, chroma rank k/4), svdk rgb (``mode="rgb", rank=k``), and
through :mod:`svdk.baselines` JPEG (4:2:0, ``optimize=True``), WebP and AVIF
(when this Pillow can write them), over a quality sweep. Bits per pixel come
from the real file bytes; PSNR-RGB and SSIM from :mod:`svdk.metrics` on the
decoded 8-bit image against the original.

The JSON holds one record per codec in CompressAI's schema
(``name``, ``description``, ``results: {bpp, psnr-rgb, ssim}``, each list the
mean over the images at one sweep point) plus every image's own curve, and a
summary: PSNR-RGB at 0.25, 0.5 and 1 bpp, read off each image's curve by
linear interpolation of PSNR against log(bpp), then averaged over images,
with the gap to JPEG. A point outside an image's curve is not extrapolated:
that image is left out of the average at that point and the count says so.
With plotly importable a chart goes to results/rd_kodak.html as well.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from tqdm import tqdm

import svdk
from svdk import baselines, metrics

from ._common import (
    DEFAULT_KODAK,
    RESULTS,
    DataMissing,
    display_path,
    kodak_paths,
    load_rgb,
    machine_info,
    write_json,
)

#: name: (parameter, sweep, description). The sweeps span about 0.03 to 2.5 bpp
#: on Kodak so that every image's curve covers 0.25 to 1 bpp.
SWEEPS = {
    "svdk-ycbcr": ("rank", [8, 12, 16, 24, 32, 48, 64, 80, 96, 128, 160],
                   "svdk, ycbcr 4:2:0, svdk.compress(img, rank=k): luma rank k, chroma round(k/4)"),
    "svdk-rgb": ("rank", [2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64],
                 "svdk, rgb, svdk.compress(img, mode='rgb', rank=k): rank k on R, G and B"),
    "jpeg": ("quality", [1, 3, 5, 8, 10, 15, 20, 30, 40, 50, 65, 80, 90],
             "Pillow JPEG (libjpeg-turbo), 4:2:0, optimize=True, quality sweep"),
    "webp": ("quality", [0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95],
             "Pillow WebP, method=4, quality sweep"),
    "avif": ("quality", [0, 10, 20, 30, 40, 50, 60, 70, 80, 90],
             "Pillow AVIF, default speed, quality sweep"),
}
TARGET_BPP = (0.25, 0.5, 1.0)
REFERENCE = "jpeg"


def code_one(path: str, codec: str) -> tuple[str, str, dict]:
    """One image through one codec's whole sweep (runs in a worker)."""
    img = load_rgb(Path(path))
    h, w = img.shape[:2]
    param, sweep, _ = SWEEPS[codec]
    curve = {param: [], "bytes": [], "bpp": [], "psnr-rgb": [], "ssim": [], "ranks": []}
    notes = []
    t0 = time.perf_counter()
    for value in sweep:
        if codec.startswith("svdk"):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                enc = svdk.encode(img, rank=value, mode=codec.split("-")[1])
            notes += [f"{param} {value}: {c.message}" for c in caught]
            data, decoded = enc.data, svdk.decompress(enc.data)
            curve["ranks"].append(list(enc.ranks))
        else:
            coded = baselines.encode(img, codec, value)
            data, decoded = coded.data, coded.decoded
        curve[param].append(value)
        curve["bytes"].append(len(data))
        curve["bpp"].append(metrics.bpp(len(data), w, h))
        curve["psnr-rgb"].append(metrics.psnr(img, decoded))
        curve["ssim"].append(metrics.ssim(img, decoded))
    if not curve["ranks"]:
        del curve["ranks"]
    curve["seconds"] = time.perf_counter() - t0
    if notes:
        curve["notes"] = notes
    return Path(path).stem, codec, curve


def at_bpp(bpp: list[float], values: list[float], target: float) -> float | None:
    """``values`` at ``target`` bpp by linear interpolation in log(bpp); None outside the curve."""
    x = np.log(np.asarray(bpp, dtype=np.float64))
    y = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    t = math.log(target)
    if not x[0] <= t <= x[-1]:
        return None
    return float(np.interp(t, x, y))


def summarize(codecs: dict, names: list[str]) -> dict:
    summary = {
        "method": "per image: PSNR-RGB (and SSIM) at each target bpp by linear interpolation "
                  "against log(bpp) between the two nearest sweep points of that image's own "
                  "curve; then the mean over images. An image whose curve does not reach a "
                  "target is not extrapolated: it is left out of that codec's mean there, "
                  "and n_images / not_covered say so. gap_to_jpeg_db is the mean over the "
                  "images both curves cover of (codec - JPEG), per image.",
        "target_bpp": list(TARGET_BPP),
        "codecs": {},
    }
    per_point = {}
    for codec, rec in codecs.items():
        per_point[codec] = {
            t: {n: (at_bpp(rec["per_image"][n]["bpp"], rec["per_image"][n]["psnr-rgb"], t),
                    at_bpp(rec["per_image"][n]["bpp"], rec["per_image"][n]["ssim"], t))
                for n in names}
            for t in TARGET_BPP
        }
    for codec in codecs:
        out = {}
        for t in TARGET_BPP:
            vals = per_point[codec][t]
            covered = [n for n in names if vals[n][0] is not None]
            entry = {
                "psnr-rgb": float(np.mean([vals[n][0] for n in covered])) if covered else None,
                "ssim": float(np.mean([vals[n][1] for n in covered])) if covered else None,
                "n_images": len(covered),
                "not_covered": [n for n in names if n not in covered],
                "per_image_psnr-rgb": {n: vals[n][0] for n in names},
            }
            if REFERENCE in per_point and codec != REFERENCE:
                ref = per_point[REFERENCE][t]
                both = [n for n in covered if ref[n][0] is not None]
                entry["gap_to_jpeg_db"] = (
                    float(np.mean([vals[n][0] - ref[n][0] for n in both])) if both else None
                )
                entry["gap_n_images"] = len(both)
            out[f"{t:g}"] = entry
        summary["codecs"][codec] = out
    return summary


def aggregate(codec: str, curves: dict, names: list[str]) -> dict:
    """One codec in CompressAI's schema: lists are means over images per sweep point."""
    param, sweep, description = SWEEPS[codec]
    results = {
        key: [float(np.mean([curves[n][key][i] for n in names])) for i in range(len(sweep))]
        for key in ("bpp", "psnr-rgb", "ssim")
    }
    results[param] = list(sweep)
    return {
        "name": codec,
        "description": description,
        "results": results,
        "per_image": {n: curves[n] for n in names},
    }


def plot(codecs: dict, path: Path) -> str:
    """Write an HTML chart if plotly is importable; say what happened."""
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError:
        return "plotly is not installed: skipped the chart (pip install plotly to get results/rd_kodak.html)"
    fig = make_subplots(rows=1, cols=2, subplot_titles=("PSNR-RGB", "SSIM"))
    for i, (name, rec) in enumerate(codecs.items()):
        r = rec["results"]
        colour = f"hsl({int(360 * i / len(codecs))},70%,45%)"
        for col, key in ((1, "psnr-rgb"), (2, "ssim")):
            fig.add_trace(go.Scatter(x=r["bpp"], y=r[key], mode="lines+markers", name=name,
                                     legendgroup=name, showlegend=col == 1,
                                     line={"color": colour}), row=1, col=col)
    fig.update_xaxes(title_text="bits per pixel (mean over images per sweep point)", type="log")
    fig.update_yaxes(title_text="dB", row=1, col=1)
    fig.update_layout(title=f"Kodak-{len(next(iter(codecs.values()))['per_image'])}: "
                            "rate-distortion", template="plotly_white")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(path, include_plotlyjs="cdn")
    return f"wrote {display_path(path)} (loads plotly.js from its CDN when opened)"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.rd_kodak", description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_KODAK, help="folder with kodim01.png ... kodim24.png")
    p.add_argument("--images", type=int, default=None, help="only the first N images (quick tries)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2; 1: no pool)")
    p.add_argument("--codecs", default=None,
                   help=f"comma-separated subset of {','.join(SWEEPS)} (default: all available)")
    p.add_argument("--output", type=Path, default=RESULTS / "rd_kodak.json")
    p.add_argument("--html", type=Path, default=None, help="chart path (default: the JSON's with .html)")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error(f"--workers must be at least 1; got {args.workers}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        paths = kodak_paths(args.data, args.images)
    except DataMissing as exc:
        print(f"rd_kodak: {exc}", file=sys.stderr)
        return 2
    have = baselines.available()
    codecs = [c for c in SWEEPS if c.startswith("svdk") or c in have]
    skipped = [c for c in SWEEPS if c not in codecs]
    if args.codecs:
        wanted = [c.strip() for c in args.codecs.split(",") if c.strip()]
        unknown = [c for c in wanted if c not in SWEEPS]
        if unknown:
            print(f"rd_kodak: unknown codec(s) {', '.join(unknown)}; choose from {', '.join(SWEEPS)}",
                  file=sys.stderr)
            return 2
        missing = [c for c in wanted if c not in codecs]
        if missing:
            print(f"rd_kodak: {', '.join(missing)} cannot be written by this Pillow; "
                  f"available: {', '.join(have)}", file=sys.stderr)
            return 2
        codecs = wanted

    t0 = time.perf_counter()
    machine = machine_info()
    # Big jobs first, so the two workers finish together.
    order = {"avif": 0, "svdk-ycbcr": 1, "svdk-rgb": 2, "webp": 3, "jpeg": 4}
    jobs = sorted(((str(p), c) for p in paths for c in codecs), key=lambda j: order.get(j[1], 5))
    curves: dict[str, dict] = {c: {} for c in codecs}
    bar = tqdm(total=len(jobs), desc="rd_kodak", unit="curve", file=sys.stderr)
    if args.workers == 1:
        for job in jobs:
            name, codec, curve = code_one(*job)
            curves[codec][name] = curve
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            futures = [pool.submit(code_one, *job) for job in jobs]
            for fut in as_completed(futures):
                name, codec, curve = fut.result()
                curves[codec][name] = curve
                bar.update()
    bar.close()

    names = [p.stem for p in paths]
    records = {c: aggregate(c, curves[c], names) for c in codecs}
    summary = summarize(records, names)
    elapsed = time.perf_counter() - t0
    html = args.html or args.output.with_suffix(".html")
    chart = plot(records, html)
    result = {
        "name": "rd_kodak",
        "description": "rate-distortion on Kodak-24: bpp from real file bytes, PSNR-RGB and SSIM "
                       "(svdk.metrics) on the decoded 8-bit image",
        "command": "python -m benchmarks.rd_kodak " + " ".join(sys.argv[1:] if argv is None else argv),
        "complete": len(names) == 24,
        "images": names,
        "codecs_skipped": {c: "this Pillow cannot write it" for c in skipped},
        "machine": machine,
        "workers": args.workers,
        "seconds": elapsed,
        "chart": chart,
        "summary": summary,
        "codecs": list(records.values()),
    }
    write_json(args.output, result)
    print_summary(result, args.output)
    return 0


def print_summary(result: dict, output: Path) -> None:
    s = result["summary"]
    n = len(result["images"])
    print(f"rd_kodak: {n} Kodak images, {len(result['codecs'])} codecs, {result['seconds']:.0f} s "
          f"with {result['workers']} worker(s)")
    for codec, why in result["codecs_skipped"].items():
        print(f"  skipped {codec}: {why}")
    head = "".join(f"{f'{t:g} bpp':>22s}" for t in s["target_bpp"])
    print(f"  PSNR-RGB, dB (gap to JPEG){head}")
    for codec, points in s["codecs"].items():
        cells = []
        for t in s["target_bpp"]:
            e = points[f"{t:g}"]
            if e["psnr-rgb"] is None:
                cells.append(f"{'n/a':>22s}")
                continue
            gap = e.get("gap_to_jpeg_db")
            gap_s = f" ({gap:+.2f})" if gap is not None else ""
            cov = f" [{e['n_images']}/{n}]" if e["n_images"] < n else ""
            value = f"{e['psnr-rgb']:.2f}{gap_s}{cov}"
            cells.append(f"{value:>22s}")
        print(f"  {codec:26s}{''.join(cells)}")
    print("  (mean over images of each image's curve at that bpp, interpolated in log(bpp); "
          "[k/n]: only k images reach that bpp, the others are left out)")
    print(f"  {result['chart']}")
    print(f"wrote {display_path(output)}")


if __name__ == "__main__":
    sys.exit(main())
