"""Several images at once: one table and one rate-distortion chart averaged over them.

:func:`summarize` takes the :class:`demo.pipeline.Report` of each image (or
the message that says why it could not be compared) and gives the rows of
the table, the JSON of ``/compress_many`` and the curves to average.

Averaging curves
----------------
Each image's curves are sampled at its own points (JPEG and WebP at the
same qualities, svdk at ranks or component counts of its own). They are
averaged at equal bits per pixel, as rate-distortion results are: each
curve is interpolated (linearly in log bpp) on :data:`GRID_POINTS` rates
spanning the range every image covers, and the PSNR and SSIM are averaged
there. A codec whose curves share no range gets no averaged curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .pipeline import Report

__all__ = ["MAX_IMAGES", "Item", "TABLE_HEADERS", "table", "average_curves", "summary_json", "figure"]

#: Images one batch takes (more are refused with a message).
MAX_IMAGES = 8
#: Rates at which the curves are averaged.
GRID_POINTS = 12
TABLE_HEADERS = ["image", "codec", "matched on", "quality", "bytes", "bpp", "PSNR (dB)", "SSIM", "note"]
NAMES = {"svdk": "svdk", "png": "PNG", "jpeg": "JPEG", "webp": "WebP"}
COLOURS = {"svdk": "#d62728", "jpeg": "#1f77b4", "webp": "#2ca02c"}


@dataclass
class Item:
    """One image of a batch: its report, or why there is none."""

    name: str
    report: Report | None = None
    error: str | None = None


def _finite(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def _cells(r) -> list:
    return [
        "-" if r.quality is None else r.quality,
        "-" if r.bytes is None else r.bytes,
        "-" if r.bpp is None else round(r.bpp, 3),
        "lossless" if r.psnr == math.inf else ("-" if r.psnr is None else round(r.psnr, 2)),
        "-" if r.ssim is None else round(r.ssim, 4),
    ]


def table(items: list[Item]) -> list[list]:
    """One row per image and file compared, then the mean of each over the images compared."""
    rows = []
    groups: dict[tuple[str, str], list] = {}
    for it in items:
        if it.report is None:
            rows.append([it.name, "-", "-", "-", "-", "-", "-", "-", it.error])
            continue
        for r in it.report.rows:
            match = "this file" if r.codec == "svdk" else r.match
            rows.append([it.name, NAMES.get(r.codec, r.codec), match, *_cells(r), r.note if r.codec != "svdk" else ""])
            groups.setdefault((r.codec, match), []).append(r)
    n = sum(it.report is not None for it in items)
    for (codec, match), rs in groups.items():
        if codec == "png":
            continue
        got = [r for r in rs if r.bytes is not None]
        if not got:
            continue
        mean = lambda xs: float(np.mean(xs)) if xs else None  # noqa: E731
        psnr = [r.psnr for r in got if r.psnr is not None and math.isfinite(r.psnr)]
        note = "" if len(got) == n else f"{len(got)} of {n} images (the others: not reachable)"
        rows.append([f"mean of {len(got)}", NAMES.get(codec, codec), match, "-", round(mean([r.bytes for r in got])),
                     round(mean([r.bpp for r in got]), 3), round(mean(psnr), 2) if psnr else "-",
                     round(mean([r.ssim for r in got]), 4), note])
    return rows


def average_curves(reports: list[Report]) -> dict[str, dict[str, list[float]]]:
    """``{codec: {"bpp": [...], "psnr": [...], "ssim": [...]}}`` averaged at equal rates (see the module)."""
    out = {}
    if not reports:
        return out
    for codec in reports[0].curves:
        curves = []
        for rep in reports:
            pts = sorted((p for p in rep.curves.get(codec, []) if p.bpp and p.psnr is not None
                          and math.isfinite(p.psnr) and p.ssim is not None), key=lambda p: p.bpp)
            if len(pts) < 2:
                break
            curves.append(pts)
        if len(curves) != len(reports):
            continue
        lo = max(math.log(c[0].bpp) for c in curves)
        hi = min(math.log(c[-1].bpp) for c in curves)
        if not hi > lo:
            continue
        grid = np.linspace(lo, hi, GRID_POINTS)
        psnr, ssim = [], []
        for c in curves:
            x = np.log([p.bpp for p in c])
            psnr.append(np.interp(grid, x, [p.psnr for p in c]))
            ssim.append(np.interp(grid, x, [p.ssim for p in c]))
        out[codec] = {"bpp": [round(float(v), 5) for v in np.exp(grid)],
                      "psnr": [round(float(v), 4) for v in np.mean(psnr, axis=0)],
                      "ssim": [round(float(v), 5) for v in np.mean(ssim, axis=0)]}
    return out


def summary_json(items: list[Item]) -> dict:
    """The JSON of ``/compress_many``: each image's figures (or its message), the means, the averaged curves."""
    reports = [it.report for it in items if it.report is not None]
    images = []
    for it in items:
        if it.report is None:
            images.append({"name": it.name, "ok": False, "error": it.error})
            continue
        d = it.report.to_dict()
        images.append({"name": it.name, "ok": True, "width": d["width"], "height": d["height"], "svdk": d["svdk"],
                       "comparison": d["comparison"], "rate_distortion": d["rate_distortion"], "notes": d["notes"]})
    means = [dict(zip(["codec", "match", "quality", "bytes", "bpp", "psnr", "ssim", "note"], row[1:]))
             for row in table(items) if str(row[0]).startswith("mean of")]
    return {"images": images, "compared": len(reports), "failed": len(items) - len(reports),
            "mean": means, "rate_distortion_mean": average_curves(reports)}


def figure(items: list[Item]) -> go.Figure | None:
    """bpp against PSNR and SSIM, averaged over the images compared; the mean of svdk's files marked."""
    reports = [it.report for it in items if it.report is not None]
    if not reports:
        return None
    curves = average_curves(reports)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("PSNR (dB, higher is better)", "SSIM (higher is better)"),
                        horizontal_spacing=0.12)
    for codec, c in curves.items():
        for col, key in ((1, "psnr"), (2, "ssim")):
            fig.add_trace(go.Scatter(x=c["bpp"], y=c[key], mode="lines+markers", name=NAMES.get(codec, codec),
                                     legendgroup=codec, showlegend=col == 1, line={"color": COLOURS.get(codec)},
                                     hovertemplate="%{x:.3f} bpp: %{y:.4g}<extra></extra>"), row=1, col=col)
    bpp = float(np.mean([r.encoded.bpp for r in reports]))
    for col, key in ((1, "psnr"), (2, "ssim")):
        vals = [getattr(r.current, key) for r in reports]
        vals = [v for v in vals if v is not None and math.isfinite(v)]
        if vals:
            fig.add_trace(go.Scatter(x=[bpp], y=[float(np.mean(vals))], mode="markers", name="these files (mean)",
                                     legendgroup="current", showlegend=col == 1,
                                     marker={"symbol": "star", "size": 16, "color": COLOURS["svdk"],
                                             "line": {"width": 1, "color": "black"}}), row=1, col=col)
    fig.update_xaxes(title_text="bits per pixel (log)", type="log")
    fig.update_layout(title=f"Rate-distortion averaged over {len(reports)} image{'s' * (len(reports) > 1)} "
                      "(at equal bits per pixel)", height=380, margin={"l": 50, "r": 20, "t": 60, "b": 50},
                      legend={"orientation": "h", "y": -0.3})
    return fig

