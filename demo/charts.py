"""The app's plotly charts, built from a :class:`demo.pipeline.Report`."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .pipeline import Report

__all__ = ["rate_distortion", "spectrum", "spectrum_figure"]

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


def spectrum(report: Report, position: int | None = None) -> go.Figure:
    """The spectrum chart of a comparison (see :func:`spectrum_figure`)."""
    enc = report.encoded
    return spectrum_figure(report.spectrum, report.spectrum_label, tile=enc.tile if enc.layout == "tiled" else 0,
                           chosen=report.final_rank, position=position)


def spectrum_figure(values, label: str, *, tile: int = 0, chosen: int | None = None,
                    position: int | None = None) -> go.Figure:
    """Singular values (log scale, left) and the share of energy kept (right), in the order kept.

    ``chosen`` marks the file's own k; ``position`` the explorer's slider.
    ``tile`` (tiled layout) says the values are those of every tile
    component, noise already left out by :meth:`svdk.Encoder.spectrum`.
    """
    s = np.asarray(values, dtype=np.float64)
    s = s[s > 0]
    energy = np.cumsum(s * s)
    share = 100 * energy / energy[-1] if energy.size and energy[-1] > 0 else np.zeros_like(s)
    x = np.arange(1, s.size + 1)
    if s.size > MAX_POINTS:  # tiled spectra have one value per tile component: thin them on a log grid
        x = np.unique(np.rint(np.geomspace(1, s.size, MAX_POINTS)).astype(int))
    unit = "component" if tile else "k ="
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=x, y=s[x - 1], mode="lines", name="strength (singular value)",
                             line={"color": "#444"},
                             hovertemplate=f"{unit} %{{x}}: singular value %{{y:.4g}}<extra></extra>"),
                  secondary_y=False)
    fig.add_trace(go.Scatter(x=x, y=share[x - 1], mode="lines", name="energy kept (%)",
                             line={"color": "#1f77b4", "dash": "dot"},
                             hovertemplate="first %{x}: %{y:.2f} % of the energy<extra></extra>"),
                  secondary_y=True)
    for k, name, colour, symbol in ((chosen, "this file", "#d62728", "star"),
                                    (position, "explorer", "#ff7f0e", "circle")):
        if k is None or not 1 <= k <= s.size:
            continue
        fig.add_vline(x=k, line={"color": colour, "dash": "dash", "width": 1})
        fig.add_trace(go.Scatter(
            x=[k], y=[s[k - 1]], mode="markers", marker={"color": colour, "size": 12, "symbol": symbol},
            name=f"{name}: {'' if tile else 'k = '}{k:,}{' kept' if tile else ''}, {share[k - 1]:.1f} % of the energy",
            hovertemplate=f"{name}: {k:,}<br>singular value %{{y:.4g}}<br>{share[k - 1]:.2f} % of the energy<extra></extra>",
        ), secondary_y=False)
    if tile:
        xtitle = f"components of all {tile}x{tile} tiles, in the order they are kept (log scale)"
        fig.update_xaxes(type="log")
    else:
        xtitle = "k: number of components kept, strongest first"
    fig.update_xaxes(title_text=xtitle)
    fig.update_yaxes(title_text="strength of each component (log)", type="log", secondary_y=False)
    fig.update_yaxes(title_text="energy kept (%)", secondary_y=True, showgrid=False)
    fig.update_layout(
        title=f"Spectrum: {label}",
        height=380,
        margin={"l": 60, "r": 60, "t": 60, "b": 50},
        showlegend=True,
        legend={"orientation": "h", "y": -0.3},
    )
    return fig
