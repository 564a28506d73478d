"""What the tiled layout's predictor reads: features of luma's tile spectrum.

Everything comes from the luma plane's tile SVDs, which the encoder has
computed before any policy runs, so a prediction costs a few milliseconds
and no image resizing (:func:`tiled_features`, :data:`TILED_FEATURES`):

``proxy@T``, one per target of the grid
    ``log(n / tiles)`` where an SSIM *proxy* computed from the singular
    values alone reaches ``T``. Per tile of ``P`` pixels with singular values
    ``s`` and a threshold ``tau``: the original's variance ``sx = sum(s^2)/P``,
    the kept part's ``sk = sum(s^2 for s >= tau)/P``, quantization noise
    about ``sum(tau s / 6 for s >= tau)/P + (tau/T)/12`` (the codec's step is
    ``sqrt(tau / T)`` on folded vectors), and SSIM's contrast-structure term
    ``(2 sk + C2) / (sx + sk + noise + C2)`` with ``C2 = (0.03 * 255)^2``,
    averaged over the tiles. On its own it lands within about 10 % of the
    exact count on most photos; the model learns what it misses.
``log_s@p``
    ``log(1 + s)`` of the plane's sorted tile singular values at ``p``
    components per tile (``p`` in 1/8 .. 4): the shape and the absolute level
    of the spectrum.
``log_mean_std``
    ``log(1 + std)`` of the tile means: contrast between tiles, which the
    tile SVDs do not see.

This module is the feature code alone: ``python -m training.tiled`` keys its
label cache (labels and features are cached together) on it.
"""

from __future__ import annotations

import math

import numpy as np

from ._files import ModelError

__all__ = ["TILED_FEATURES", "PROXY_TARGETS", "SPECTRUM_POINTS", "tiled_features"]

#: The target grid of the proxy features (the model's own grid is in its configuration).
PROXY_TARGETS = (0.80, 0.85, 0.90, 0.95, 0.98)
#: Components per tile at which the spectrum is read.
SPECTRUM_POINTS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)
#: Feature names, in the model's input order.
TILED_FEATURES = (
    *(f"proxy@{t:.2f}" for t in PROXY_TARGETS),
    *(f"log_s@{p:g}" for p in SPECTRUM_POINTS),
    "log_mean_std",
)

_C2 = (0.03 * 255.0) ** 2
#: Tiles the proxy reads at most (a fixed stride over larger grids, so a 12 MP image costs what a 1 MP one does).
_MAX_TILES = 1 << 14
#: Counts at which the proxy is evaluated (log-spaced).
_PROXY_POINTS = 24


def _proxy_curve(s: np.ndarray, order: np.ndarray, tile: int, ntiles: int, max_count: int):
    """``(log counts, proxy SSIM)`` on a log grid of counts (the proxy made non-decreasing)."""
    lo = max(1.0, 0.01 * ntiles)
    counts = np.unique(np.rint(np.geomspace(min(lo, max_count), max_count, _PROXY_POINTS)).astype(np.int64))
    taus = order[counts - 1]
    if s.shape[0] > _MAX_TILES:
        s = s[:: -(-s.shape[0] // _MAX_TILES)]
    pixels = float(tile * tile)
    s2 = s * s
    total = s2.sum(axis=1) / pixels
    zero = np.zeros((s.shape[0], 1))
    cum2 = np.concatenate([zero, np.cumsum(s2, axis=1)], axis=1) / pixels
    cum1 = np.concatenate([zero, np.cumsum(s, axis=1)], axis=1)
    # Each tile's rank at every threshold, (points, tiles): a value s counts from the first grid
    # point whose threshold it reaches (thresholds fall along the grid), so per tile the ranks are
    # the running count of those first points.
    m, g = s.shape[0], len(taus)
    first = np.searchsorted(-taus, -s, side="left")  # (tiles, T) in [0, g]
    flat = (np.arange(m)[:, None] * (g + 1) + first).ravel()
    r = np.bincount(flat, minlength=m * (g + 1)).reshape(m, g + 1)[:, :g].cumsum(axis=1).T
    rows = np.arange(m)[None, :]
    kept = cum2[rows, r]
    noise = taus[:, None] * cum1[rows, r] / (6.0 * pixels) + (taus / tile / 12.0)[:, None]
    values = np.mean((2.0 * kept + _C2) / (total[None] + kept + noise + _C2), axis=1)
    return np.log(counts.astype(np.float64)), np.maximum.accumulate(values)


def _log_count_at(logn: np.ndarray, values: np.ndarray, t: float) -> float:
    """``log n`` where the proxy curve reaches ``t`` (linear between grid points, clipped at its ends)."""
    i = int(np.searchsorted(values, t))
    if i == 0:
        return float(logn[0])
    if i >= len(values):
        return float(logn[-1])
    v0, v1 = values[i - 1], values[i]
    w = 0.0 if v1 <= v0 else (t - v0) / (v1 - v0)
    return float(logn[i - 1] + w * (logn[i] - logn[i - 1]))


def tiled_features(encoder) -> tuple[np.ndarray, int]:
    """``(features, tiles)``: :data:`TILED_FEATURES` of an encoder's first plane, and its tile count.

    ``encoder`` is a :class:`svdk.Encoder` in the tiled layout; the features
    come from the tile SVDs it has already computed (about 5 ms for a 768x512
    photo). The first plane is luma in ycbcr mode (what the model was trained
    on), the gray plane of a grayscale image, red in rgb mode.
    """
    if not encoder.tile:
        raise ModelError("the tiled predictor reads an encoder in the tiled layout (svdk.Encoder(image, tiled=True))")
    plane = encoder.planes[0]
    s = np.asarray(plane.s, dtype=np.float64)
    order = np.asarray(plane.order, dtype=np.float64)
    ntiles, top = int(plane.ntiles), int(plane.max_count)
    logn, values = _proxy_curve(s, order, encoder.tile, ntiles, top)
    per_tile = math.log(ntiles)
    proxy = [_log_count_at(logn, values, t) - per_tile for t in PROXY_TARGETS]
    spectrum = []
    for p in SPECTRUM_POINTS:
        i = int(round(p * ntiles)) - 1
        spectrum.append(math.log1p(order[i]) if 0 <= i < top else 0.0)
    means = np.asarray(plane.means, dtype=np.float64)
    out = np.array([*proxy, *spectrum, math.log1p(float(means.std()))], dtype=np.float32)
    return out, ntiles
