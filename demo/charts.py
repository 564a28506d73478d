"""The app's plotly charts, built from a :class:`demo.pipeline.Report`."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .pipeline import Report

__all__ = ["rate_distortion", "spectrum"]

COLOURS = {"svdk": "#d62728", "jpeg": "#1f77b4", "webp": "#2ca02c"}
NAMES = {"svdk": "svdk", "jpeg": "JPEG", "webp": "WebP"}
#: Most points drawn for a spectrum.
MAX_POINTS = 1500


def rate_distortion(report: Report) -> go.Figure:
    """bpp against PSNR and against SSIM for svdk, JPEG and WebP; this file marked."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("PSNR (dB)", "SSIM"), horizontal_spacing=0.1)
    what = "rank" if report.encoded.layout == "global" else "components"
    for codec, points in report.curves.items():
        if not points:
            continue
        bpp = [p.bpp for p in points]
        label = what if codec == "svdk" else "quality"
        text = [f"{NAMES[codec]} {label} {p.param}<br>{p.bytes:,} bytes" for p in points]
        for col, values in ((1, [p.psnr for p in points]), (2, [p.ssim for p in points])):
            fig.add_trace(
                go.Scatter(
                    x=bpp, y=values, mode="lines+markers", name=NAMES[codec], legendgroup=codec,
                    showlegend=col == 1, line={"color": COLOURS[codec]}, text=text,
                    hovertemplate="%{text}<br>%{x:.3f} bpp, %{y:.4g}<extra></extra>",
                ),
                row=1, col=col,
            )
    cur = report.current
    for col, value in ((1, cur.psnr), (2, cur.ssim)):
        fig.add_trace(
            go.Scatter(
                x=[cur.bpp], y=[value], mode="markers", name="this file", legendgroup="current",
                showlegend=col == 1,
                marker={"symbol": "star", "size": 16, "color": COLOURS["svdk"], "line": {"width": 1, "color": "black"}},
                hovertemplate=f"this file: {what} {cur.param}, {cur.bytes:,} bytes<br>%{{x:.3f}} bpp, %{{y:.4g}}<extra></extra>",
            ),
            row=1, col=col,
        )
    fig.update_xaxes(title_text="bits per pixel", type="log")
    fig.update_layout(
        title="Rate-distortion on this image",
        height=380,
        margin={"l": 50, "r": 20, "t": 60, "b": 50},
        legend={"orientation": "h", "y": -0.25},
    )
    return fig


def spectrum(report: Report) -> go.Figure:
    """Singular values of luma on a log scale, with the chosen rank marked."""
    s = np.asarray(report.spectrum, dtype=np.float64)
    x = np.arange(1, s.size + 1)
    if s.size > MAX_POINTS:  # tiled spectra have one value per tile component: thin them on a log grid
        x = np.unique(np.rint(np.geomspace(1, s.size, MAX_POINTS)).astype(int))
    y = s[x - 1]
    keep = y > 0
    x, y = x[keep], y[keep]
    fig = go.Figure(
        go.Scatter(x=x, y=y, mode="lines", name="singular values", line={"color": "#444"},
                   hovertemplate="component %{x}: %{y:.4g}<extra></extra>")
    )
    k = report.final_rank
    tiled = report.encoded.layout == "tiled"
    if 1 <= k <= s.size:
        fig.add_vline(x=k, line={"color": "#d62728", "dash": "dash"})
        fig.add_trace(go.Scatter(x=[k], y=[s[k - 1]], mode="markers", marker={"color": "#d62728", "size": 10},
                                 name=f"{'kept' if tiled else 'k'} = {k}",
                                 hovertemplate=f"k = {k}: %{{y:.4g}}<extra></extra>"))
    fig.update_layout(
        title=f"Singular value spectrum: {report.spectrum_label}",
        xaxis_title="component" + (" (all tiles, largest first)" if tiled else ""),
        yaxis_title="singular value",
        yaxis_type="log",
        height=380,
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        showlegend=True,
        legend={"orientation": "h", "y": -0.25},
    )
    return fig
