"""The tiled layout: an SVD per T x T tile, ranks chosen for the whole image.

Each plane is cut into tiles of ``T x T`` pixels (the last row and column of
tiles are padded by repeating the edge). Every tile loses its mean, which is
coded on its own, and the rest gets its own SVD. One threshold for the whole
plane decides which components are kept: a component stays when its
singular value is at least ``tau``, so detailed tiles get high ranks and flat
tiles none. The threshold is set by counting: keeping the ``n`` largest
singular values of the plane sets ``tau`` to the ``n``-th largest, so a
plane's quality is a function of one integer, which the rank policies search
like the rank of the global layout.

The folded factor vectors ``sqrt(s) u`` and ``sqrt(s) v`` (length ``T``) are
transformed with an orthonormal DCT-II before quantization: the vectors of
photographs are smooth, so their energy gathers in few coefficients. One step
``1.25 * sqrt(tau / T)`` (see :data:`TILE_STEP_FACTOR`) quantizes the
coefficients and the tile means of a plane. The encoder then refits each
factor to the other's rounding by least squares (:meth:`TiledPlane._refine`)
and picks the strength of the decoder's deblocking filter (:func:`deblock`)
that brings the plane closest to the original. Entropy coder 3
(:mod:`svdk._tilecoder`) codes the integers.

See :mod:`svdk.format` for the bytes.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.fft import dct, dctn, idct

from ._codec import step_code

__all__ = [
    "TiledPlane",
    "tile_grid",
    "padded_pixels",
    "decode_tiled_plane",
    "deblock",
    "TILE_STEP_FACTOR",
    "DEFAULT_TILE",
    "DEBLOCK_CANDIDATES",
]

#: Default tile size: the best of 8, 12, 16, 32 on Kodak (see the README).
DEFAULT_TILE = 8
#: The quantization step is this times ``sqrt(tau / T)`` (1.0 in format 2.0;
#: with entropy coder 3 and the refinement, 1.25 was the best of 0.8 to 2.0 on
#: Kodak, BSDS500 and other photos; see ``benchmarks/tiled_coding.py``).
TILE_STEP_FACTOR = 1.25
#: Least-squares fits of one factor to the other's rounding (B, A, B).
REFINE_PASSES = 3


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


#: Deblocking strengths the encoder tries (the header's byte: threshold =
#: strength / 4 quantization steps; 0 turns the filter off).
DEBLOCK_CANDIDATES = (0, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128)


def deblock(plane: np.ndarray, tile: int, threshold: float) -> np.ndarray:
    """Smooth small jumps across tile borders, in place; returns ``plane``.

    First across the vertical borders, then across the horizontal ones: at
    each border with ``p1, p0 | q0, q1`` the two pixels on each side, a jump
    ``d = q0 - p0`` smaller than ``threshold`` in magnitude moves ``p0`` and
    ``q0`` by ``3 d / 8`` towards each other and ``p1`` and ``q1`` by ``d / 8``
    (``q1`` only where it is inside the plane). Larger jumps are edges of
    the picture and stay.
    """
    if threshold <= 0:
        return plane
    for view in (plane, plane.T):
        n = view.shape[1]
        borders = (n - 1) // tile  # at columns tile, 2 tile, ... below n
        if borders == 0:
            continue
        end = borders * tile
        p1 = view[:, tile - 2 : end - 1 : tile]
        p0 = view[:, tile - 1 : end : tile]
        q0 = view[:, tile : end + 1 : tile]
        d = q0 - p0
        d[np.abs(d) >= threshold] = 0
        p0 += d * 0.375
        q0 -= d * 0.375
        p1 += d * 0.125
        inside = (n - 2 - tile) // tile + 1 if n - 2 >= tile else 0  # borders whose q1 is inside
        view[:, tile + 1 : tile + 1 + inside * tile : tile] -= d[:, :inside] * 0.125
    return plane


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
        # the tiles less their means in the 2D DCT domain, where the factors' coefficients live
        self._spectra = dctn(tiles - self.means[:, None, None], axes=(1, 2), norm="ortho")
        self._strengths: dict[int, int] = {}
        self._last = None
        self._decoded = None

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

    def quantize(self, count: int):
        """``(ranks, dc, A, B, code)``: integers for ``count`` components.

        ``A`` and ``B`` hold the kept coefficient vectors in component-major
        order (all tiles' first components, then all second ones, ...).
        The factors are refined to their quantization (see :meth:`_refine`).
        The last result is kept: a search scores and then packs the same
        count.
        """
        if self._last is not None and self._last[0] == count:
            return self._last[1]
        ranks = self.ranks(count)
        code = self.step_code(count)
        step = code / 256.0
        dc = np.rint(self.means / step).astype(np.int64)
        keep = np.arange(self.tile)[None, :] < ranks[:, None]  # (n, T)
        fa = np.where(keep[:, :, None], np.rint(self.a / step), 0.0)
        fb = np.where(keep[:, :, None], np.rint(self.b / step), 0.0)
        fa, fb = self._refine(ranks, dc * step, fa, fb, step)
        sel = keep.T  # component-major
        a = np.swapaxes(fa, 0, 1)[sel].astype(np.int64)
        b = np.swapaxes(fb, 0, 1)[sel].astype(np.int64)
        self._last = (count, (ranks, dc, a, b, code))
        return self._last[1]

    def _refine(self, ranks, means, fa, fb, step):
        """Quantization-aware factors: with the rounded ``A`` fixed, the ``B``
        that best fits each tile (what is left after its coded mean) is solved
        by least squares and rounded; then ``A`` given that ``B``, then ``B``
        again (:data:`REFINE_PASSES` fits). Rounding one factor is partly
        undone by the other, at almost no cost in bits (about 0.2 dB of
        luma PSNR at low rates and 0.5 dB at high ones on Kodak).
        """
        # The DCT is orthonormal, so a tile is sum_c a_c b_c^T in the 2D DCT
        # domain: the fits need no transform. The coded mean's error is a
        # constant, which lands on the (0, 0) coefficient.
        spectra = self._spectra.copy()
        spectra[:, 0, 0] += self.tile * (self.means - means)
        for i in range(REFINE_PASSES):
            if i % 2 == 0:
                fb = self._fit(ranks, fa, spectra, step)
            else:
                fa = self._fit(ranks, fb, np.swapaxes(spectra, 1, 2), step)
        return fa, fb

    def _fit(self, ranks, fixed, spectra, step):
        """Rounded coefficients of the factor that, with ``fixed`` (rounded
        coefficients of the other factor), fits ``spectra`` best per tile."""
        out = np.zeros_like(fixed)
        for r in range(1, self.tile + 1):
            idx = np.flatnonzero(ranks == r)
            if idx.size == 0:
                continue
            fr = fixed[idx, :r, :] * step
            gram = fr @ np.swapaxes(fr, 1, 2)
            # a component whose coefficients all rounded to 0 makes the system singular
            ridge = 1e-9 * (np.trace(gram, axis1=1, axis2=2)[:, None, None] + 1.0)
            out[idx, :r, :] = np.rint(np.linalg.solve(gram + ridge * np.eye(r), fr @ spectra[idx]) / step)
        return out

    def deblock_strength(self, count: int) -> int:
        """The deblocking strength (see :func:`deblock`) that brings the
        decoded plane at ``count`` closest to the original, in squared error."""
        if count not in self._strengths:
            ranks, dc, a, b, code = self.quantize(count)
            plain = decode_tiled_plane(ranks, dc, a, b, code, self.shape, self.tile)
            target = self.data.astype(np.float32)
            best, best_err, best_out = 0, float(np.sum((plain - target) ** 2, dtype=np.float64)), plain
            for strength in DEBLOCK_CANDIDATES[1:]:
                out = deblock(plain.copy(), self.tile, strength * code / 1024.0)
                err = float(np.sum((out - target) ** 2, dtype=np.float64))
                if err < best_err:
                    best, best_err, best_out = strength, err, out
            if len(self._strengths) > 64:
                self._strengths.clear()
            self._strengths[count] = best
            self._decoded = (count, best_out)
        return self._strengths[count]

    def reconstruct(self, count: int) -> np.ndarray:
        """The float plane the file at ``count`` decodes to (deblocked as the header will say)."""
        strength = self.deblock_strength(count)
        if self._decoded is not None and self._decoded[0] == count:
            return self._decoded[1]
        ranks, dc, a, b, code = self.quantize(count)
        return decode_tiled_plane(ranks, dc, a, b, code, self.shape, self.tile, deblock_strength=strength)


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
    deblock_strength: int = 0,
) -> np.ndarray:
    """The float plane that tiled integers decode to (shared by encoder and decoder).

    ``deblock_strength`` (the header's byte) applies :func:`deblock` with a
    threshold of ``deblock_strength / 4`` quantization steps.

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
    if deblock_strength:
        deblock(out, tile, deblock_strength * code / 1024.0)
    return out
