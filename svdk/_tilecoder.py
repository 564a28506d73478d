"""Entropy coder 3: the tiled layout's integers under context-chosen rANS models.

Every integer of a tiled plane (tile ranks, tile means, factor
coefficients) is coded with one of the two-sided geometric models of
:mod:`svdk._entropy` (its ``level``). Which level a symbol gets follows from
a *context*: a number computed from integers decoded before it, cut into
octave buckets (:func:`bucket`). A plane's side data map buckets to
levels, so a file pays a few dozen bytes for models fitted to its own data,
and each symbol is coded with the model of its neighbourhood: a coefficient
next to large ones, or in a tile whose singular value is large, expects to
be large.

:func:`walk` is the one description of the order and the contexts; the
encoder and the decoder both run it, the encoder with the values in hand,
the decoder reading them from the coder, so the two cannot drift apart.
The spec in :mod:`svdk.format` says the same in words.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from functools import lru_cache
from typing import Callable

import numpy as np

from . import _entropy
from ._errors import FormatError

#: Contexts of the tile means (the rank of the tile and its neighbours).
DC_BUCKETS = 16
#: Context buckets of the factor coefficients.
COEF_BUCKETS = 11
#: Contexts of the "one more component" flags: 6 for the first component (a
#: checkerboard: the second half sees its flagged neighbours), 15 for the others.
FLAG_CONTEXTS = 21
#: Binary models: level ``l`` gives a ``1`` the probability ``0.5 * 2 ** ((l - 24) / 2)``
#: below 24, ``1 - 0.5 * 2 ** ((24 - l) / 2)`` above (0.5 at 24).
FLAG_LEVELS = 49
#: The largest slope (in eighths of a level per bucket).
MAX_SLOPE = 40

# Bucket b holds contexts c with THRESHOLDS[b - 1] <= c < THRESHOLDS[b]:
# 0, 1, 2-3, 4-7, 8-15, ... (octaves).
_THRESHOLDS = 1 << np.arange(10, dtype=np.int64)


def bucket(c: np.ndarray, buckets: int) -> np.ndarray:
    """Octave bucket of non-negative integer contexts, capped at ``buckets - 1``."""
    return np.minimum(np.searchsorted(_THRESHOLDS, c, side="right"), buckets - 1)


#: Coefficient contexts from this value up all fall in the top bucket, so
#: :func:`walk` caps them here and a table lookup gives the bucket.
CONTEXT_CAP = 1 << (COEF_BUCKETS - 2)
#: The bucket of every capped coefficient context ``0 .. CONTEXT_CAP``.
COEF_BUCKET_OF = bucket(np.arange(CONTEXT_CAP + 1), COEF_BUCKETS)


def side_length(tile: int) -> int:
    """Bytes of model parameters per plane."""
    return DC_BUCKETS + FLAG_CONTEXTS + 1 + 4 * tile


@lru_cache(maxsize=None)
def _flag_frequencies(level: int) -> tuple[int, int]:
    """Integer frequencies of 0 and 1 (summing to 2 ** 16) for a binary level."""
    with localcontext() as ctx:
        ctx.prec = 40
        d = abs(level - 24)
        small = Decimal(1) / 2 * (Decimal(2).sqrt() ** -d)
        f = int((small * 65536).to_integral_value(rounding=ROUND_HALF_EVEN))
    f = min(max(f, 1), 32768)
    one = f if level <= 24 else 65536 - f
    return 65536 - one, one


@lru_cache(maxsize=None)
def _flag_model(level: int):
    import constriction

    return constriction.stream.model.Categorical(np.array(_flag_frequencies(level), dtype=np.float64), perfect=False)


class Params:
    """One plane's model parameters: the level of every context.

    ``dc`` gives a level per bucket and ``flag`` a binary level per flag
    context. A coefficient of factor ``f`` (0: ``A``, 1: ``B``) at position
    ``j`` in bucket ``b`` has level ``base0[f, j]`` when ``b == 0``, else
    ``min(79, base[f, j] + (slope * b) >> 3)``.
    """

    def __init__(self, dc, flag, slope, base0, base):
        self.dc = np.asarray(dc, dtype=np.int64)
        self.flag = np.asarray(flag, dtype=np.int64)
        self.slope = int(slope)
        self.base0 = np.asarray(base0, dtype=np.int64)
        self.base = np.asarray(base, dtype=np.int64)
        self._table = None
        self._context_table = None

    def to_bytes(self) -> bytes:
        parts = [self.dc, self.flag, [self.slope], self.base0.ravel(), self.base.ravel()]
        return np.concatenate([np.asarray(p, dtype=np.int64) for p in parts]).astype(np.uint8).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes | memoryview, tile: int) -> "Params":
        v = np.frombuffer(data, dtype=np.uint8, count=side_length(tile)).astype(np.int64)
        d, f = DC_BUCKETS, DC_BUCKETS + FLAG_CONTEXTS
        dc, flag, slope, coef = v[:d], v[d:f], int(v[f]), v[f + 1 :]
        if max(int(dc.max()), int(coef.max())) >= _entropy.NUM_LEVELS:
            top = max(int(dc.max()), int(coef.max()))
            raise FormatError(f"a model level is {top}; levels go up to {_entropy.NUM_LEVELS - 1}")
        if int(flag.max()) >= FLAG_LEVELS:
            raise FormatError(f"a flag model level is {int(flag.max())}; they go up to {FLAG_LEVELS - 1}")
        if slope > MAX_SLOPE:
            raise FormatError(f"a model slope is {slope}; the most is {MAX_SLOPE}")
        return cls(dc, flag, slope, coef[: 2 * tile].reshape(2, tile), coef[2 * tile :].reshape(2, tile))

    def levels(self, group: tuple, ctx: np.ndarray) -> np.ndarray:
        """The level of each symbol of a pass, from its context (see :func:`walk`)."""
        if group[0] == "flag":
            return self.flag[ctx]
        if group[0] == "dc":
            return self.dc[ctx]
        return self.coef_context_table[group[1], group[2]][ctx]

    @property
    def coef_table(self) -> np.ndarray:
        """The level of every coefficient bucket: ``(2, T, COEF_BUCKETS)``."""
        if self._table is None:
            b = np.arange(COEF_BUCKETS)
            ramp = np.minimum(_entropy.NUM_LEVELS - 1, self.base[:, :, None] + ((self.slope * b) >> 3))
            self._table = np.where(b == 0, self.base0[:, :, None], ramp)
        return self._table

    @property
    def coef_context_table(self) -> np.ndarray:
        """The level of every capped coefficient context: ``(2, T, CONTEXT_CAP + 1)``, uint8."""
        if self._context_table is None:
            self._context_table = self.coef_table[:, :, COEF_BUCKET_OF].astype(np.uint8)
        return self._context_table


# A coder callback: (group, contexts, true values or None) -> values.
Code = Callable[[tuple, np.ndarray, "np.ndarray | None"], np.ndarray]


def _neighbours(grid: np.ndarray) -> np.ndarray:
    """Sum of the four neighbours of every cell (0 outside the grid)."""
    g = np.zeros((grid.shape[0] + 2, grid.shape[1] + 2), dtype=grid.dtype)
    g[1:-1, 1:-1] = grid
    return g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1]


def walk(grid: tuple[int, int], tile: int, max_rank: int, code: Code, known=None):
    """Visit one plane's integers in stream order; returns ``(ranks, dc, A, B)``.

    ``code(group, contexts, values)`` is called once per pass (a coefficient
    pass gets the contexts below capped at :data:`CONTEXT_CAP`, which
    :data:`COEF_BUCKET_OF` maps to their buckets; the flag and tile-mean
    passes get their contexts as below). The encoder
    passes ``known = (ranks, dc, A, B)`` and gets each pass's true values as
    ``values``; the decoder passes ``None`` and returns the decoded values.
    Order (the spec in :mod:`svdk.format` says the same):

    1. for component ``i = 0 .. max_rank - 1``:

       a. a flag per tile of rank at least ``i`` (all tiles for ``i = 0``):
          1 if its rank exceeds ``i``. For ``i = 0``, two passes: the tiles
          with ``x + y`` even (context 0), then the others (context ``1 +``
          the number of their four neighbours flagged). For ``i > 0``, one
          pass in raster order, context ``6 + min(14, bucket(n) + m)``: ``n``
          the summed magnitudes of the tile's ``A`` and ``B`` integers of
          component ``i - 1``, ``m`` how many of its four neighbours have
          rank at least ``i``;
       b. the coefficients of component ``i`` of the flagged tiles (raster
          order), factor ``A`` then ``B``, a pass per position ``j = 0 ..
          T-1``: context ``bucket(2 |x[j-1]| + |x[j-2]| + n // (j + 1))``,
          ``n`` the summed magnitudes of the same component's ``A`` vector
          (for ``B``) or half those of the previous component's ``A`` and
          ``B`` vectors (for ``A``; 0 for ``i = 0``);
    2. the tile means, one pass in raster order, each as its difference from
       a prediction: from the left on the first row (0 for the first tile),
       from above for the first tile of later rows, else ``L + ((U - UL) >>
       1)``; context ``min(15, rank + the ranks of the four neighbours)``.
    """
    gy, gx = grid
    n_tiles = gy * gx
    k_ranks, k_dc, k_a, k_b = known if known is not None else (None,) * 4
    if known is not None:
        k_ranks = np.asarray(k_ranks, dtype=np.int64).ravel()
    ranks = np.zeros(n_tiles, dtype=np.int64)
    cand = np.arange(n_tiles)
    out_a, out_b = [], []
    start = 0
    norm = None  # summed magnitudes of the previous component, per candidate
    for i in range(max_rank):
        if i == 0:
            flags = np.zeros(n_tiles, dtype=np.int64)
            black = (np.add.outer(np.arange(gy), np.arange(gx)) % 2 == 0).ravel()
            for second, part in enumerate((np.flatnonzero(black), np.flatnonzero(~black))):
                if part.size == 0:
                    continue
                if second:
                    ctx = 1 + _neighbours(flags.reshape(gy, gx)).ravel()[part]
                else:
                    ctx = np.zeros(part.size, dtype=np.int64)
                truth = None if known is None else (k_ranks[part] > 0).astype(np.int64)
                flags[part] = code(("flag",), ctx, truth)
        else:
            around = _neighbours((ranks >= i).reshape(gy, gx).astype(np.int64)).ravel()[cand]
            ctx = 6 + np.minimum(14, COEF_BUCKET_OF[np.minimum(norm, CONTEXT_CAP)] + around)
            truth = None if known is None else (k_ranks[cand] > i).astype(np.int64)
            flags = code(("flag",), ctx, truth)
            norm = norm[flags == 1]
        cand = cand[flags == 1] if i > 0 else np.flatnonzero(flags)
        ranks[cand] = i + 1
        m = cand.size
        if m == 0:
            break
        n = np.zeros(m, dtype=np.int64) if i == 0 else norm // 2
        sums = []
        for f in (0, 1):
            # position-major (T, m): each pass reads and writes whole rows
            vec = np.empty((tile, m), dtype=np.int64)
            mag = np.empty((tile, m), dtype=np.int64)
            rows = None if known is None else np.ascontiguousarray((k_a if f == 0 else k_b)[start : start + m].T)
            for j in range(tile):
                c = n // (j + 1)
                if j >= 1:
                    c += 2 * mag[j - 1]
                if j >= 2:
                    c += mag[j - 2]
                np.minimum(c, CONTEXT_CAP, out=c)
                vec[j] = code(("coef", f, j), c, None if rows is None else rows[j])
                np.abs(vec[j], out=mag[j])
            (out_a if f == 0 else out_b).append(vec.T)
            n = mag.sum(axis=0)
            sums.append(n)
        norm = sums[0] + sums[1]
        start += m
    if known is not None and not np.array_equal(ranks, k_ranks):
        raise ValueError("tile ranks above the plane's rank")
    # the tile means
    rank_grid = ranks.reshape(gy, gx)
    ctx = np.minimum(DC_BUCKETS - 1, rank_grid + _neighbours(rank_grid)).ravel()
    if known is None:
        d = code(("dc",), ctx, None).reshape(gy, gx)
        dc = np.empty((gy, gx), dtype=np.int64)
        dc[0] = np.cumsum(d[0])
        for y in range(1, gy):
            u = dc[y - 1]
            step = np.empty(gx, dtype=np.int64)
            step[0] = u[0]
            step[1:] = (u[1:] - u[:-1]) >> 1
            dc[y] = np.cumsum(step + d[y])
    else:
        dc = np.asarray(k_dc, dtype=np.int64).reshape(gy, gx)
        pred = np.zeros((gy, gx), dtype=np.int64)
        pred[0, 1:] = dc[0, :-1]
        pred[1:, 0] = dc[:-1, 0]
        pred[1:, 1:] = dc[1:, :-1] + ((dc[:-1, 1:] - dc[:-1, :-1]) >> 1)
        code(("dc",), ctx, (dc - pred).ravel())
    empty = np.zeros((0, tile), dtype=np.int64)
    a = np.concatenate(out_a) if out_a else empty
    b = np.concatenate(out_b) if out_b else empty
    return ranks, dc.ravel(), a, b


# ----------------------------------------------------------------------------
# choosing the levels


@lru_cache(maxsize=1)
def _cost_table() -> np.ndarray:
    """Bits of ``|x| = v`` (v = 0 .. MAX_RADIUS) under every level, escapes estimated."""
    top = _entropy.MAX_RADIUS
    out = np.empty((_entropy.NUM_LEVELS, top + 1))
    v = np.arange(top + 1)
    for level in range(_entropy.NUM_LEVELS):
        f = _entropy._frequencies(level).astype(np.float64)
        r = _entropy.radius(level)
        bits = -np.log2(f[r:] / f.sum())  # |x| = 0 .. r
        over = np.maximum(v - r, 0)
        # an escape: the end symbol plus its varint in the (zlib) side data
        esc = bits[r] + 8 * np.ceil(np.log2(over + 2) / 7)
        out[level] = np.where(v < r, bits[np.minimum(v, r)], esc)
    return out


def _histogram_cost(hist: np.ndarray) -> np.ndarray:
    """Bits of a ``(buckets, magnitudes)`` histogram under each level: ``(buckets, NUM_LEVELS)``."""
    used = np.flatnonzero(hist.any(axis=0))
    if used.size == 0:
        return np.zeros((hist.shape[0], _entropy.NUM_LEVELS))
    top = int(used[-1]) + 1
    return hist[:, :top] @ _cost_table()[:, :top].T


@lru_cache(maxsize=1)
def _flag_costs() -> np.ndarray:
    """Bits of a 0 and of a 1 under every binary level: ``(2, FLAG_LEVELS)``."""
    f = np.array([_flag_frequencies(level) for level in range(FLAG_LEVELS)], dtype=np.float64)
    return -np.log2(f / 65536.0).T


def choose(records: list, tile: int) -> Params:
    """The parameters that code one plane's recorded passes in the fewest bits."""
    nl = _entropy.NUM_LEVELS
    top = _entropy.MAX_RADIUS
    # histograms of (bucket, magnitude) per group of passes, counted in one go per group
    flags, parts, buckets = [], {}, {}
    for group, ctx, values in records:
        if group[0] == "flag":
            flags.append(ctx * 2 + values)
            continue
        if group[0] == "dc":
            key, nb = ("dc",), DC_BUCKETS
        else:
            key, nb = group, COEF_BUCKETS
            ctx = COEF_BUCKET_OF[ctx]
        parts.setdefault(key, []).append((ctx, np.minimum(np.abs(values), top)))
        buckets[key] = nb
    hists = {}
    for key, p in parts.items():
        ctx = np.concatenate([c for c, _ in p])
        mag = np.concatenate([m for _, m in p])
        # as wide as the largest magnitude (the costs read no further)
        width = int(mag.max()) + 1 if mag.size else 1
        hists[key] = np.bincount(ctx * width + mag, minlength=buckets[key] * width).reshape(buckets[key], width)
    both = np.concatenate(flags) if flags else np.zeros(0, dtype=np.int64)
    flag_counts = np.bincount(both, minlength=FLAG_CONTEXTS * 2).reshape(FLAG_CONTEXTS, 2).astype(np.float64)
    flag = np.argmin(flag_counts @ _flag_costs(), axis=1)
    dc = np.argmin(_histogram_cost(hists[("dc",)]), axis=1)
    cost_coef = np.zeros((2, tile, COEF_BUCKETS, nl))
    for f in (0, 1):
        for j in range(tile):
            if ("coef", f, j) in hists:
                cost_coef[f, j] = _histogram_cost(hists[("coef", f, j)].astype(np.float64))
    base0 = np.argmin(cost_coef[:, :, 0], axis=-1)
    slope, choice = _best_ramp(cost_coef[:, :, 1:].reshape(2 * tile, COEF_BUCKETS - 1, nl))
    return Params(dc, flag, slope, base0, choice.reshape(2, tile))


def _ramp_totals(costs: np.ndarray):
    """``(slope, totals)`` for every slope: ``totals[g, base]``, the bits of group ``g`` when its
    bucket ``b`` (``b >= 1``) is coded at level ``min(NUM_LEVELS - 1, base + (slope * b) >> 3)``.

    ``costs[g, b - 1, level]`` holds the bits of group ``g``'s bucket ``b`` under each level.
    Each bucket's costs are read as a window shifted along its row (continued with its last
    level, so a window reads the clipped levels), and the buckets are added in their order,
    one after another: to the bit the sums a gather of every level and ``sum`` over the
    buckets gave (that gather's result runs along the buckets with a stride, so NumPy adds
    them one by one rather than pairwise; a test compares the two).
    """
    groups, nb, nl = costs.shape
    shifts = [((slope * np.arange(1, nb + 1)) >> 3).tolist() for slope in range(MAX_SLOPE + 1)]
    widest = max(max(shift) for shift in shifts)
    rows = [np.concatenate([costs[:, j], np.repeat(costs[:, j, -1:], widest, axis=1)], axis=1) for j in range(nb)]
    for slope, shift in enumerate(shifts):
        total = rows[0][:, shift[0] : shift[0] + nl].copy()
        for j in range(1, nb):
            total += rows[j][:, shift[j] : shift[j] + nl]
        yield slope, total


def _best_ramp(costs: np.ndarray) -> tuple[int, np.ndarray]:
    """``(slope, bases)``: the ramp of levels (one slope for all groups, a base per group; see
    :func:`_ramp_totals`) that codes the coefficient passes in the fewest bits. Each slope is
    tried with every group's cheapest base (the first of equal ones), and the first of the
    cheapest slopes wins."""
    every = np.arange(costs.shape[0])
    best = (math.inf, 0, None)
    for slope, total in _ramp_totals(costs):
        choice = np.argmin(total, axis=1)
        bits = float(total[every, choice].sum())
        if bits < best[0]:
            best = (bits, slope, choice)
    return best[1], best[2]

# ----------------------------------------------------------------------------
# coding


def _groups(levels: np.ndarray) -> tuple[np.ndarray | None, list[int], list[int]]:
    """The coding order of a pass: ``(order, levels used, their counts)``.

    Symbols are coded a level at a time, levels ascending, and within a
    level in the pass's order. ``order`` is the pass's positions in that
    coding order (``None`` when one level covers the whole pass).
    """
    small = levels if levels.dtype == np.uint8 else levels.astype(np.uint8)  # levels are below 256
    counts = np.bincount(small)
    used = counts.nonzero()[0]
    if used.size == 1:
        return None, used.tolist(), [levels.size]
    order = np.argsort(small, kind="stable")  # (a radix sort)
    return order, used.tolist(), counts[used].tolist()


def _family(group: tuple):
    """``level -> model`` for a pass of ``group``: binary for the flags, else the coefficient models."""
    return _flag_model if group[0] == "flag" else _entropy._model


def encode(planes: list[tuple]) -> tuple[list[bytes], list[int], np.ndarray]:
    """Code tiled planes ``(grid, tile, max_rank, (ranks, dc, A, B))``: ``(params per plane, escapes, words)``."""
    import constriction

    radii = _entropy._radius_table()
    items, escapes, sides = [], [], []
    for grid, tile, max_rank, known in planes:
        records = []

        def record(group, ctx, values, records=records):
            records.append((group, ctx, values))
            return values

        walk(grid, tile, max_rank, record, known)
        params = choose(records, tile)
        sides.append(params.to_bytes())
        for group, ctx, values in records:
            if values.size == 0:
                continue
            order, used, counts = _groups(params.levels(group, ctx))
            model = _family(group)
            x = values if order is None else values[order]
            if group[0] != "flag":
                # each symbol's alphabet radius; magnitudes at or beyond it escape (in coding order)
                r = radii[used[0]] if len(used) == 1 else np.repeat(radii[used], counts)
                mag = np.abs(x)
                big = mag >= r
                if big.any():
                    escapes.extend((mag - r)[big].tolist())
                x = np.clip(x, -r, r) + r
            x = x.astype(np.int32)
            lo = 0
            for level, count in zip(used, counts):
                items.append((x[lo : lo + count], model(level)))
                lo += count
    coder = constriction.stream.stack.AnsCoder()
    for symbols, model in reversed(items):
        coder.encode_reverse(symbols, model)
    return sides, escapes, coder.get_compressed()


class Decoder:
    """Reads tiled planes back from rANS words and escape numbers."""

    def __init__(self, words: np.ndarray, escapes: list[int], symbol_limit: int):
        import constriction

        try:
            self.coder = constriction.stream.stack.AnsCoder(words)
        except Exception as exc:  # constriction raises plain exceptions on invalid data
            raise FormatError(f"the entropy-coded data are invalid: {exc}") from None
        self.escapes = escapes
        self.next_escape = 0
        self.symbols = 0
        self.limit = symbol_limit

    def plane(self, grid, tile, max_rank, params: Params):
        radii = _entropy._radius_table()
        decode = self.coder.decode

        def read(group, ctx, _values):
            flag = group[0] == "flag"
            if not flag:  # flags are bounded by the tiles and the other symbols
                self.symbols += ctx.size
                if self.symbols > self.limit:
                    raise FormatError("the tile data need more symbols than the payload can hold")
            if ctx.size == 0:
                return np.zeros(0, dtype=np.int64)
            order, used, counts = _groups(params.levels(group, ctx))
            model = _family(group)
            try:
                parts = [decode(model(level), count) for level, count in zip(used, counts)]
            except Exception as exc:
                raise FormatError(f"the entropy-coded data end early or are invalid: {exc}") from None
            x = (parts[0] if len(parts) == 1 else np.concatenate(parts)).astype(np.int64)
            if not flag:
                r = radii[used[0]] if len(used) == 1 else np.repeat(radii[used], counts)
                x -= r
                ends = ((x == r) | (x == -r)).nonzero()[0]  # escapes
                if ends.size:
                    x[ends] += np.sign(x[ends]) * self._escapes(ends.size)
            if order is None:
                return x
            out = np.empty_like(x)
            out[order] = x
            return out

        return walk(grid, tile, max_rank, read)

    def _escapes(self, count: int) -> np.ndarray:
        if self.next_escape + count > len(self.escapes):
            raise FormatError("the entropy-coded data need more escape values than the file has")
        extra = np.array(self.escapes[self.next_escape : self.next_escape + count], dtype=np.int64)
        self.next_escape += count
        if int(extra.max()) >= _entropy.MAX_VALUE:
            raise FormatError(f"an escaped value is {_entropy.MAX_VALUE} or more in magnitude")
        return extra

    def finish(self) -> None:
        if self.next_escape != len(self.escapes):
            raise FormatError(f"the file has {len(self.escapes) - self.next_escape} escape values that no symbol uses")
        if not self.coder.is_empty():
            raise FormatError("the entropy-coded data do not end where the last symbol ends")
