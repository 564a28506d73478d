"""The tiled layout: an SVD per T x T tile, ranks chosen for the whole image.

Each plane is cut into tiles of ``T x T`` pixels (the last row and column of
tiles are padded by repeating the edge). Every tile loses its mean, which is
coded on its own (predicted from the tile to its left), and the rest gets its
own SVD. One threshold for the whole plane decides which components are kept:
a component stays when its singular value is at least ``tau``, so detailed
tiles get high ranks and flat tiles none. The threshold is set by counting:
keeping the ``n`` largest singular values of the plane sets ``tau`` to the
``n``-th largest, so a plane's quality is a function of one integer, which
the rank policies search like the rank of the global layout.

The folded factor vectors ``sqrt(s) u`` and ``sqrt(s) v`` (length ``T``) are
transformed with an orthonormal DCT-II before quantization: the vectors of
photographs are smooth, so their energy gathers in few coefficients. One step
``0.5 * sqrt(tau / T)`` (see :data:`TILE_STEP_FACTOR`) quantizes the
coefficients and the tile means of a plane.

See :mod:`svdk.format` for the bytes.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.fft import dct, idct

from ._codec import step_code

__all__ = ["TiledPlane", "tile_grid", "padded_pixels", "decode_tiled_plane", "TILE_STEP_FACTOR", "DEFAULT_TILE"]

#: Default tile size: the best of 8, 12, 16, 32 on Kodak (see the README).
DEFAULT_TILE = 8
#: The quantization step is this times ``sqrt(tau / T)``.
TILE_STEP_FACTOR = 1.0


def tile_grid(h: int, w: int, tile: int) -> tuple[int, int]:
    """Rows and columns of tiles covering an ``h x w`` plane."""
    return -(-h // tile), -(-w // tile)


def _to_tiles(plane: np.ndarray, tile: int) -> np.ndarray:
    h, w = plane.shape
    ty, tx = tile_grid(h, w, tile)
    p = np.pad(plane, ((0, ty * tile - h), (0, tx * tile - w)), mode="edge")
    return p.reshape(ty, tile, tx, tile).transpose(0, 2, 1, 3).reshape(ty * tx, tile, tile)


def _from_tiles(tiles: np.ndarray, h: int, w: int, tile: int) -> np.ndarray:
    ty, tx = tile_grid(h, w, tile)
    return tiles.reshape(ty, tx, tile, tile).transpose(0, 2, 1, 3).reshape(ty * tile, tx * tile)[:h, :w]


def step_for(tau: float, tile: int) -> float:
    return TILE_STEP_FACTOR * math.sqrt(max(tau, 1e-6) / tile)


class TiledPlane:
    """One plane in the tiled layout: tile SVDs computed once, coded for any ``n``."""

    def __init__(self, data: np.ndarray, tile: int):
        self.data = data
        self.shape = data.shape
        self.tile = tile
        tiles = _to_tiles(data.astype(np.float64), tile)
        self.means = tiles.mean(axis=(1, 2))
        u, s, vt = np.linalg.svd(tiles - self.means[:, None, None])
        # Sign convention: the largest-magnitude entry of each u is positive.
        idx = np.argmax(np.abs(u), axis=1)  # (n, T): row of the largest entry per column
        sign = np.where(np.take_along_axis(u, idx[:, None, :], axis=1)[:, 0, :] < 0, -1.0, 1.0)
        root = np.sqrt(s)
        self.a = dct(np.swapaxes(u * (sign * root)[:, None, :], 1, 2), axis=-1, norm="ortho")  # (n, T, T)
        self.b = dct(vt * (sign * root)[:, :, None], axis=-1, norm="ortho")  # (n, T, T)
        self.s = s
        self.order = np.sort(s.ravel())[::-1]
        # Components with no energy never count.
        self.max_count = int(np.count_nonzero(self.order > 1e-9 * max(self.order[0], 1e-12)))
        self.max_count = max(self.max_count, 1)

    @property
    def ntiles(self) -> int:
        return self.s.shape[0]

    @property
    def max_rank(self) -> int:
        """The most components this plane can keep (summed over tiles)."""
        return self.max_count

    @property
    def search_start(self) -> int:
        return max(16, self.max_count // 64)

    @property
    def energy_total(self) -> float:
        """Energy of the plane without the tile means."""
        return float(np.sum(self.order.astype(np.float64) ** 2))

    def candidates(self) -> np.ndarray:
        """Component counts a search may choose: steps of about 2% (one
        component is far below what anyone can see; the exact count would
        take twice the evaluations)."""
        grid = np.rint(np.geomspace(1, self.max_count, max(2, int(math.log(self.max_count) / math.log(1.02)))))
        return np.unique(np.concatenate([grid.astype(np.int64), np.arange(1, min(64, self.max_count) + 1)]))

    def singular_values(self, count: int) -> np.ndarray:
        return self.order[:count]

    def count_at(self, tau: float) -> int:
        """How many components are at least ``tau`` (at least one)."""
        return max(1, min(self.max_count, int(np.count_nonzero(self.order >= tau))))

    def tau(self, count: int) -> float:
        return float(self.order[min(max(count, 1), self.max_count) - 1])

    def ranks(self, count: int) -> np.ndarray:
        """Rank of every tile when the ``count`` largest components are kept."""
        return np.count_nonzero(self.s >= self.tau(count), axis=1)

    def step_code(self, count: int) -> int:
        return step_code(step_for(self.tau(count), self.tile))

    def quantize(self, count: int, rank_cap: int | None = None):
        """``(ranks, dc, A, B, code)``: integers for ``count`` components.

        ``A`` and ``B`` hold the kept coefficient vectors in component-major
        order (all tiles' first components, then all second ones, ...).
        """
        ranks = self.ranks(count)
        if rank_cap is not None:
            ranks = np.minimum(ranks, rank_cap)
        code = self.step_code(count)
        step = code / 256.0
        dc = np.rint(self.means / step).astype(np.int64)
        keep = np.arange(self.tile)[None, :] < ranks[:, None]  # (n, T)
        sel = keep.T  # component-major
        a = np.rint(np.swapaxes(self.a, 0, 1)[sel] / step).astype(np.int64)
        b = np.rint(np.swapaxes(self.b, 0, 1)[sel] / step).astype(np.int64)
        return ranks, dc, a, b, code

    def reconstruct(self, count: int) -> np.ndarray:
        ranks, dc, a, b, code = self.quantize(count)
        return decode_tiled_plane(ranks, dc, a, b, code, self.shape, self.tile)


def padded_pixels(h: int, w: int, tile: int) -> int:
    """Pixels of the whole tile grid that covers an ``h x w`` plane."""
    ty, tx = tile_grid(h, w, tile)
    return ty * tx * tile * tile


#: Tiles of the grid are decoded in chunks of about this many pixels, so the
#: work arrays stay small whatever the image (the output plane aside).
CHUNK_PIXELS = 1 << 18


def decode_tiled_plane(
    ranks: np.ndarray,
    dc: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    code: int,
    shape: tuple[int, int],
    tile: int,
    max_rank: int | None = None,
) -> np.ndarray:
    """The float plane that tiled integers decode to (shared by encoder and decoder).

    The grid is decoded a chunk of tiles at a time (whole tile rows, or part
    of one row when a row is longer than a chunk), in file order, so memory
    beyond the float32 output is bounded by :data:`CHUNK_PIXELS`.
    """
    h, w = shape
    ty, tx = tile_grid(h, w, tile)
    step = code / 256.0
    a = np.reshape(a, (-1, tile))
    b = np.reshape(b, (-1, tile))
    comp = np.arange(tile)
    # Coefficients are stored component-major: all tiles' first vectors, then
    # all second ones... ``start[i]`` is where component i's run begins, and
    # ``pos[i]`` how far the chunks read so far have consumed it.
    per_comp = np.bincount(ranks, minlength=tile + 1)[::-1].cumsum()[::-1][1:]  # tiles with rank > i
    pos = np.concatenate(([0], np.cumsum(per_comp)[:-1])).astype(np.int64)
    limit = tile if max_rank is None else min(tile, max_rank)
    per_chunk = max(1, CHUNK_PIXELS // (tile * tile))
    out = np.empty((h, w), dtype=np.float32)
    rows = max(1, per_chunk // tx)
    for r0 in range(0, ty, rows):
        r1 = min(ty, r0 + rows)
        span = tx if r1 - r0 > 1 else min(tx, per_chunk)
        for c0 in range(0, tx, span):
            c1 = min(tx, c0 + span)
            j = (np.arange(r0, r1)[:, None] * tx + np.arange(c0, c1)[None, :]).ravel()
            rk = ranks[j]
            keep = comp[:, None] < rk[None, :]  # (T components, m tiles)
            idx = pos[:, None] + np.cumsum(keep, axis=1) - 1
            pos += keep.sum(axis=1)
            keep &= (comp < limit)[:, None]
            fa = np.zeros((tile, len(j), tile), dtype=np.float64)
            fb = np.zeros((tile, len(j), tile), dtype=np.float64)
            fa[keep] = a[idx[keep]] * step
            fb[keep] = b[idx[keep]] * step
            ua = idct(np.swapaxes(fa, 0, 1), axis=-1, norm="ortho")  # (m, T comps, T rows)
            vb = idct(np.swapaxes(fb, 0, 1), axis=-1, norm="ortho")  # (m, T comps, T cols)
            tiles = np.matmul(np.swapaxes(ua, 1, 2), vb) + (dc[j] * step)[:, None, None]
            block = tiles.reshape(r1 - r0, c1 - c0, tile, tile).transpose(0, 2, 1, 3)
            block = block.reshape((r1 - r0) * tile, (c1 - c0) * tile)
            y0, x0 = r0 * tile, c0 * tile
            y1, x1 = min(h, r1 * tile), min(w, c1 * tile)
            out[y0:y1, x0:x1] = block[: y1 - y0, : x1 - x0]
    return out
