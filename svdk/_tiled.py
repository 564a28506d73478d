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
With ``tune="ssim"`` the singular values are weighed by their tiles' contrast
before they are counted (:func:`masking_weights`), so that faint detail in
flat tiles, where SSIM sees an error most, is kept before strong texture; the
step still follows the plain threshold at ``n``, and the decoder is the same.

The folded factor vectors ``sqrt(s) u`` and ``sqrt(s) v`` (length ``T``) are
transformed with an orthonormal DCT-II before quantization: the vectors of
photographs are smooth, so their energy gathers in few coefficients. One step
``f * sqrt(tau / T)`` quantizes the coefficients and the tile means of a plane,
``f`` 1.25 at high rates and 1.5 at low ones by the first plane's components
per tile at the plane's threshold (:func:`step_factor`). The encoder then refits each
factor to the other's rounding by least squares (:meth:`TiledPlane._refine`)
and picks the strength of the decoder's deblocking filter (:func:`deblock`)
that brings the plane closest to the original. The planes of an image are
decomposed as one stack of tiles (:func:`tiled_planes`; plane by plane above
:data:`JOINT_TILES` tiles). On a machine with at least two cores, a stack of
1024 tiles or more gets its SVDs in two threads (:mod:`svdk._threads`;
``SVDK_NUM_THREADS=1`` keeps them in one); the file is the same either way.
The strengths are tried together (:func:`deblock_errors`). Entropy coder 3
(:mod:`svdk._tilecoder`) codes the integers.

See :mod:`svdk.format` for the bytes.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.fft import dct, dctn, idct

from . import _threads
from ._codec import step_code

__all__ = [
    "TiledPlane",
    "tiled_planes",
    "tile_grid",
    "padded_pixels",
    "decode_tiled_plane",
    "deblock",
    "TILE_STEP_FACTOR",
    "TILE_STEP_FACTOR_LOW",
    "STEP_RAMP",
    "step_factor",
    "masking_weights",
    "TUNES",
    "SSIM_MASKING",
    "SSIM_MASKING_C",
    "SSIM_STEP_FACTORS",
    "DEFAULT_TILE",
    "DEBLOCK_CANDIDATES",
]

#: Default tile size: the best of 8, 12, 16, 32 on Kodak (see the README).
DEFAULT_TILE = 8
#: The quantization step is a factor times ``sqrt(tau / T)``: this one at
#: high rates (1.0 in format 2.0; with entropy coder 3 and the refinement,
#: 1.25 was the best of 0.8 to 2.0 on Kodak, BSDS500 and other photos in
#: PSNR; see ``benchmarks/tiled_coding.py``) ...
TILE_STEP_FACTOR = 1.25
#: ... and this one at low rates (see :func:`step_factor`): a coarser step there
#: keeps more components for the same bytes, which gains in PSNR below about 0.4
#: bpp and in MS-SSIM up to about 0.5 bpp, and loses PSNR above (see the README).
TILE_STEP_FACTOR_LOW = 1.5
#: Components per tile of the first plane (tiles of 8) up to which the step factor is
#: :data:`TILE_STEP_FACTOR_LOW`, and from which it is :data:`TILE_STEP_FACTOR`
#: (about 0.25 and 0.5 bpp on photos of Kodak, BSDS500 and scikit-image alike).
STEP_RAMP = (0.4, 0.8)
#: Least-squares fits of one factor to the other's rounding (B, A, B).
REFINE_PASSES = 3
#: What the encoder's choice of components is tuned for (``tune``): ``"psnr"``
#: (the default) keeps the largest singular values of a plane; ``"ssim"`` weighs
#: each by its tiles' contrast first (:func:`masking_weights`) and quantizes
#: with :data:`SSIM_STEP_FACTORS`. The decoder is the same for both.
TUNES = ("psnr", "ssim")
#: ``tune="ssim"``: a component's singular value is divided by
#: ``(v + SSIM_MASKING_C) ** (SSIM_MASKING / 2)``, ``v`` the variance per pixel of its tile
#: and the 8 around it (tile means left out). 0.7 and 20 were the best balance of
#: MS-SSIM and PSNR of 0.5 to 1.0 and 5 to 58.5 on photos of Kodak, BSDS500 and
#: scikit-image (see the README); 1.0 gained no more MS-SSIM and lost more PSNR.
SSIM_MASKING = 0.7
SSIM_MASKING_C = 20.0
#: ``tune="ssim"``: the step factors of high and low rates (in place of
#: :data:`TILE_STEP_FACTOR` and :data:`TILE_STEP_FACTOR_LOW`; the same ramp).
SSIM_STEP_FACTORS = (1.5, 1.75)


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
    _check_deblock_tile(tile)
    if threshold > 0:
        for view in (plane, plane.T):
            borders = _Borders.across(view, tile)
            if borders is not None:
                borders.smooth(view, threshold)
    return plane


def _check_deblock_tile(tile: int) -> None:
    if tile < 4:  # (the format's smallest tile) p1, p0, q0 and q1 would overlap
        raise ValueError(f"deblocking needs tiles of at least 4 pixels; got {tile}")


class _Borders:
    """The pixels ``p1, p0 | q0, q1`` on both sides of a set of borders:
    four arrays whose columns are the borders (``q1`` has only the first
    ``inside`` of them), and what :func:`deblock` makes of them.

    :meth:`across` gathers them at the tile borders across the columns of a
    plane (or of its transpose); :func:`deblock_errors` also builds them
    from other pixels.
    """

    def __init__(self, p1, p0, q0, q1, inside: int, columns=None):
        self.p1, self.p0, self.q0, self.q1 = p1, p0, q0, q1
        self.inside = inside
        self.columns = columns
        self.jump = q0 - p0
        self.size = np.abs(self.jump)

    @classmethod
    def across(cls, view: np.ndarray, tile: int) -> "_Borders | None":
        """The tile borders across the columns of ``view``; ``None`` if it has none."""
        n = view.shape[1]
        borders = (n - 1) // tile  # at columns tile, 2 tile, ... below n
        if borders == 0:
            return None
        end = borders * tile
        inside = (n - 2 - tile) // tile + 1 if n - 2 >= tile else 0  # borders whose q1 is inside
        columns = (
            slice(tile - 2, end - 1, tile),  # p1
            slice(tile - 1, end, tile),  # p0
            slice(tile, end + 1, tile),  # q0
            slice(tile + 1, tile + 1 + inside * tile, tile),  # q1
        )
        # (copies in memory order: the views are strided)
        return cls(*(view[:, c].copy(order="K") for c in columns), inside, columns)

    def moved(self, d: np.ndarray) -> tuple:
        """``p1, p0, q0, q1`` after moving by the jumps ``d`` (the jump, or zero where it stays)."""
        e = d * 0.375
        return self.p1 + d * 0.125, self.p0 + e, self.q0 - e, self.q1 - d[:, : self.inside] * 0.125

    def smoothed(self, threshold: float) -> tuple:
        """``p1, p0, q0, q1`` after :func:`deblock`'s filter at ``threshold``."""
        return self.moved(np.where(self.size < threshold, self.jump, np.float32(0)))

    def smooth(self, view: np.ndarray, threshold: float) -> None:
        """Write :meth:`smoothed` into the columns of ``view`` it was gathered from."""
        for c, values in zip(self.columns, self.smoothed(threshold)):
            view[:, c] = values


def _squared(values: tuple, target: tuple) -> np.ndarray:
    """Squared errors of ``p1, p0, q0, q1`` summed per border cell (float64, as ``p0``'s shape)."""
    total = np.zeros(values[1].shape)
    for v, t in zip(values, target):
        err = np.subtract(v, t)
        np.square(err, out=err)
        total[:, : err.shape[1]] += err
    return total


def deblock_errors(plain: np.ndarray, target: np.ndarray, tile: int, thresholds) -> np.ndarray:
    """Squared error of :func:`deblock` of ``plain`` at each of the ascending
    ``thresholds`` against ``target``, all less one constant (the error of
    the pixels no threshold moves): what choosing a threshold needs.

    Rather than filter the plane once per threshold, it splits the moved
    pixels in three. Those on vertical borders but off horizontal ones, and
    those on horizontal borders but off vertical ones, move with their own
    border's jump alone: each border cell turns on at the first threshold
    above its jump, so one pass and a cumulative sum give every threshold.
    Only the pixels on both (a quarter of the plane with 8-pixel tiles) are
    filtered once per threshold. The moved values are :func:`deblock`'s
    own, to the bit; only the order in which the errors are added differs.
    """
    _check_deblock_tile(tile)
    h, w = plain.shape
    # (compared in float32, as :func:`deblock` compares a float32 plane with a Python float)
    thresholds = np.asarray(thresholds, dtype=np.float32)
    n = thresholds.size
    vertical = _Borders.across(plain, tile)
    horizontal = _Borders.across(plain.T, tile)
    # the rows of horizontal-border pixels and the columns of vertical-border ones, in groups p1, p0, q0, q1
    rows = [np.arange(h)[c] for c in horizontal.columns] if horizontal is not None else []
    cols = [np.arange(w)[c] for c in vertical.columns] if vertical is not None else []
    row_index = np.concatenate(rows) if rows else np.zeros(0, dtype=np.intp)
    col_index = np.concatenate(cols) if cols else np.zeros(0, dtype=np.intp)
    on_rows = np.zeros(h, dtype=bool)
    on_rows[row_index] = True
    on_cols = np.zeros(w, dtype=bool)
    on_cols[col_index] = True
    both = None
    if rows and cols:
        # the pixels on both
        rows_at = np.cumsum([0, *(r.size for r in rows)])
        cols_at = np.cumsum([0, *(c.size for c in cols)])
        block = plain[np.ix_(row_index, col_index)]
        want = target[np.ix_(row_index, col_index)]
        want = [want[rows_at[g] : rows_at[g + 1]].T for g in range(4)]
        both = _Borders(*(block[:, cols_at[g] : cols_at[g + 1]] for g in range(4)), vertical.inside)

    def cells(borders: _Borders | None, target_view: np.ndarray, skip: np.ndarray) -> np.ndarray:
        # cells whose pixels move with their own border's jump only (all rows but ``skip``)
        if borders is None:
            return np.zeros(n)
        t = tuple(target_view[:, c].copy(order="K") for c in borders.columns)
        change = _squared(borders.moved(borders.jump), t) - _squared((borders.p1, borders.p0, borders.q0, borders.q1), t)
        first_on = np.searchsorted(thresholds, borders.size, side="right")  # on at thresholds[first_on:]
        first_on[skip] = n  # (counted with the pixels on both)
        return np.cumsum(np.bincount(first_on.ravel(), weights=change.ravel(), minlength=n + 1)[:n])

    def on_both() -> np.ndarray:
        # the pixels on both, filtered at each threshold: across the vertical borders, then the horizontal ones
        errors = np.zeros(n)
        if both is None:
            return errors
        moved = np.empty_like(block)
        for i, threshold in enumerate(thresholds):
            np.concatenate(both.smoothed(threshold), axis=1, out=moved)  # the columns of ``block``
            down = _Borders(*(moved[rows_at[g] : rows_at[g + 1]].T for g in range(4)), horizontal.inside)
            for values, t in zip(down.smoothed(threshold), want):
                np.subtract(values, t, out=values)
                errors[i] += float(np.square(values, out=values).sum(dtype=np.float64))
        return errors

    # In one thread: its many small steps run slower in two on these machines. The parts are
    # added in one order, so two thresholds that filter the plane alike get equal errors and
    # the first of them wins, as when each filtered plane is summed whole.
    return (cells(vertical, target, on_rows) + cells(horizontal, target.T, on_cols)) + on_both()


#: ``(results, integers)``: a plane keeps its last quantized counts, at most this many results
#: holding at most this many integers in all (a search scores several counts, then packs one).
QUANTIZED_KEPT = (8, 1 << 23)
#: An image's planes are decomposed together up to this many tiles in all.
JOINT_TILES = 1 << 16
#: Stacks of at least this many tiles are decomposed (SVDs and transforms) in two threads.
THREADED_SVD_TILES = 1024


def step_factor(per_tile: float, tile: int, tune: str = "psnr") -> float:
    """The step factor when the first plane keeps ``per_tile`` components per tile.

    :data:`TILE_STEP_FACTOR_LOW` up to ``STEP_RAMP[0]`` components per tile,
    :data:`TILE_STEP_FACTOR` from ``STEP_RAMP[1]``, linear in ``log per_tile``
    between; :data:`TILE_STEP_FACTOR` for tiles other than 8x8 (the ramp was
    measured on 8x8 tiles only). ``tune="ssim"``: :data:`SSIM_STEP_FACTORS`
    in their place.
    """
    high, low = SSIM_STEP_FACTORS if tune == "ssim" else (TILE_STEP_FACTOR, TILE_STEP_FACTOR_LOW)
    lo, hi = STEP_RAMP
    if tile != 8 or low == high or per_tile >= hi:
        return high
    if per_tile <= lo:
        return low
    return low + (high - low) * math.log(per_tile / lo) / math.log(hi / lo)


def step_for(tau: float, tile: int, per_tile: float = math.inf, tune: str = "psnr") -> float:
    """The quantization step at threshold ``tau`` (``per_tile``, ``tune``: as in :func:`step_factor`)."""
    return step_factor(per_tile, tile, tune) * math.sqrt(max(tau, 1e-6) / tile)


def masking_weights(s: np.ndarray, shape: tuple[int, int], tile: int) -> np.ndarray:
    """``tune="ssim"``'s weight of each tile: ``(v + SSIM_MASKING_C) ** (-SSIM_MASKING / 2)``.

    ``s`` holds the singular values of the plane's tiles (tile means left out),
    ``(tiles, T)`` in raster order, and ``shape`` the plane's; ``v`` is the
    variance per pixel of a tile and its 8 neighbours (edges repeated). SSIM
    counts an error against the local contrast, so an error in a flat region
    costs more than the same error in texture: weighted, the threshold keeps
    more of the faint detail of flat tiles and less of busy ones.
    """
    rows, cols = tile_grid(*shape, tile)
    var = (s.astype(np.float64) ** 2).sum(axis=1).reshape(rows, cols) / (tile * tile)
    padded = np.pad(var, 1, mode="edge")
    local = sum(padded[dy : dy + rows, dx : dx + cols] for dy in range(3) for dx in range(3)) / 9.0
    return ((local + SSIM_MASKING_C) ** (-SSIM_MASKING / 2)).ravel()


def _less_means(plane: np.ndarray, tile: int) -> tuple[np.ndarray, np.ndarray]:
    """``(means, tiles less their means)`` of a plane's tile grid."""
    tiles = _to_tiles(plane.astype(np.float64), tile)
    means = tiles.mean(axis=(1, 2))
    return means, tiles - means[:, None, None]


def _decompose(centred: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(a, b, s, spectra)`` of a stack of tiles less their means (tiles of any planes: each is
    computed alone). ``a`` and ``b`` are the folded factors' DCT coefficients, ``(n, T, T)``,
    component-major; ``spectra`` the tiles' 2D DCT. A large stack is decomposed in two halves,
    in two threads: each tile's results are those it gets alone."""
    n = centred.shape[0]
    if n < THREADED_SVD_TILES or _threads.threads() < 2:
        return _decompose_stack(centred)
    halves = (centred[: n // 2], centred[n // 2 :])
    parts = _threads.split(lambda which: [_decompose_stack(halves[i]) for i in which], 2, True)
    return tuple(np.concatenate(p) for p in zip(*parts))


def _decompose_stack(centred: np.ndarray) -> tuple[np.ndarray, ...]:
    """:func:`_decompose` in this thread."""
    u, s, vt = np.linalg.svd(centred)
    # Sign convention: the largest-magnitude entry of each u is positive.
    idx = np.argmax(np.abs(u), axis=1)  # (n, T): row of the largest entry per column
    sign = np.where(np.take_along_axis(u, idx[:, None, :], axis=1)[:, 0, :] < 0, -1.0, 1.0)
    root = np.sqrt(s)
    a = dct(np.swapaxes(u * (sign * root)[:, None, :], 1, 2), axis=-1, norm="ortho")  # (n, T, T)
    b = dct(vt * (sign * root)[:, :, None], axis=-1, norm="ortho")  # (n, T, T)
    # the tiles in the 2D DCT domain, where the factors' coefficients live
    spectra = dctn(centred, axes=(1, 2), norm="ortho")
    return a, b, s, spectra


def tiled_planes(planes: list[np.ndarray], tile: int, tune: str = "psnr") -> list["TiledPlane"]:
    """A :class:`TiledPlane` per plane: the tiles of all planes decomposed as one stack (so small
    chroma planes share the SVD threads too), or plane by plane above :data:`JOINT_TILES` tiles
    (each plane's work arrays freed before the next)."""
    if sum(math.prod(tile_grid(*p.shape, tile)) for p in planes) > JOINT_TILES:
        return [TiledPlane(p, tile, tune=tune) for p in planes]
    means, centred = zip(*(_less_means(p, tile) for p in planes))
    parts = _decompose(np.concatenate(centred))
    out, start = [], 0
    for data, m in zip(planes, means):
        end = start + m.size
        out.append(TiledPlane(data, tile, tune=tune, _decomposed=(m, *(x[start:end] for x in parts))))
        start = end
    return out


class TiledPlane:
    """One plane in the tiled layout: tile SVDs computed once, coded for any ``n``.

    :func:`tiled_planes` builds the planes of an image together. ``tune``
    (:data:`TUNES`): ``"psnr"`` keeps the ``count`` largest singular values;
    ``"ssim"`` the ``count`` largest once weighted by :func:`masking_weights`.
    Either way :attr:`order`, :meth:`tau` and :meth:`count_at` speak of the
    plain singular values (the step is set by the plain threshold at
    ``count``), and a tile keeps a prefix of its components.
    """

    def __init__(self, data: np.ndarray, tile: int, *, tune: str = "psnr", _decomposed=None):
        if tune not in TUNES:
            raise ValueError(f"tune must be one of {TUNES}; got {tune!r}")
        self.tune = tune
        self.data = data
        self.shape = data.shape
        self.tile = tile
        if _decomposed is None:
            means, centred = _less_means(data, tile)
            _decomposed = (means, *_decompose(centred))
        self.means, self.a, self.b, s, self._spectra = _decomposed
        self.s = s
        self.order = np.sort(s.ravel())[::-1]
        # Components with no energy never count.
        self.max_count = int(np.count_nonzero(self.order > 1e-9 * max(self.order[0], 1e-12)))
        self.max_count = max(self.max_count, 1)
        # tune="ssim": the weighted values that choose the components, and the
        # components (flat indices into s) in that order
        self._key = self._key_order = self._by_key = None
        if tune == "ssim":
            self._key = s * masking_weights(s, self.shape, tile)[:, None]
            self._by_key = np.argsort(-self._key.ravel(), kind="stable")
            self._key_order = self._key.ravel()[self._by_key]
        self._strengths: dict[tuple, int] = {}  # (count, step code) -> deblocking strength
        self._quantized: dict[tuple, tuple] = {}  # (count, step code) -> quantize, oldest first
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
        """The singular values of the ``count`` components kept first (largest first
        unless ``tune="ssim"``, where they come in weighted order)."""
        if self._by_key is None:
            return self.order[:count]
        return self.s.ravel()[self._by_key[:count]]

    def count_at(self, tau: float) -> int:
        """How many components are at least ``tau`` (at least one)."""
        return max(1, min(self.max_count, int(np.count_nonzero(self.order >= tau))))

    def tau(self, count: int) -> float:
        return float(self.order[min(max(count, 1), self.max_count) - 1])

    def ranks(self, count: int) -> np.ndarray:
        """Rank of every tile when ``count`` components are kept (the largest, or with
        ``tune="ssim"`` the largest weighted)."""
        if self._key is None:
            return np.count_nonzero(self.s >= self.tau(count), axis=1)
        key = self._key_order[min(max(count, 1), self.max_count) - 1]
        return np.count_nonzero(self._key >= key, axis=1)

    def step_code(self, count: int, lead: float | None = None) -> int:
        """The step (in 1/256) at ``count`` components; ``lead``: the first
        plane's components per tile, which set the step factor
        (:func:`step_factor`; default: this plane's own, ``count / ntiles``)."""
        per_tile = count / self.ntiles if lead is None else lead
        return step_code(step_for(self.tau(count), self.tile, per_tile, self.tune))

    def quantize(self, count: int, lead: float | None = None):
        """``(ranks, dc, A, B, code)``: integers for ``count`` components
        (``lead``: as in :meth:`step_code`).

        ``A`` and ``B`` hold the kept coefficient vectors in component-major
        order (all tiles' first components, then all second ones, ...).
        The factors are refined to their quantization (see :meth:`_refine`).
        The last few results are kept (:data:`QUANTIZED_KEPT`): a search
        scores several counts and then packs the best of them.
        """
        code = self.step_code(count, lead)
        known = self._quantized.get((count, code))
        if known is not None:
            return known
        ranks = self.ranks(count)
        step = code / 256.0
        dc = np.rint(self.means / step).astype(np.int64)
        # the tiles of each rank, and their kept vectors: (tiles, r, T)
        groups = [(r, np.flatnonzero(ranks == r)) for r in range(1, self.tile + 1)]
        groups = [(r, idx) for r, idx in groups if idx.size]
        fa = [np.rint(self.a[idx, :r] / step) for r, idx in groups]
        fb = [np.rint(self.b[idx, :r] / step) for r, idx in groups]
        fa, fb = self._refine([idx for _, idx in groups], dc * step, fa, fb, step)
        a, b = [], []
        for i in range(self.tile):
            rows = np.flatnonzero(ranks > i)  # component i's tiles, in raster order
            if rows.size == 0:
                break
            ai = np.empty((rows.size, self.tile))
            bi = np.empty((rows.size, self.tile))
            for (r, idx), ga, gb in zip(groups, fa, fb):
                if r > i:
                    at = np.searchsorted(rows, idx)
                    ai[at] = ga[:, i]
                    bi[at] = gb[:, i]
            a.append(ai)
            b.append(bi)
        empty = np.zeros((0, self.tile))
        a = np.concatenate(a).astype(np.int64) if a else empty.astype(np.int64)
        b = np.concatenate(b).astype(np.int64) if b else empty.astype(np.int64)
        result = (ranks, dc, a, b, code)
        self._keep((count, code), result)
        return result

    def _keep(self, key: tuple, result: tuple) -> None:
        """Keep a quantization by ``(count, step code)``, dropping the oldest results beyond
        :data:`QUANTIZED_KEPT`."""
        cache = self._quantized  # (each step is one dict operation: the app packs from two threads)
        cache[key] = result
        keys = list(cache)
        sizes = [sum(x.size for x in cache.get(k, ())[:4]) for k in keys]
        total, keep = 0, 0
        for size in reversed(sizes):  # newest first; the newest is always kept
            total += size
            if keep and (keep == QUANTIZED_KEPT[0] or total > QUANTIZED_KEPT[1]):
                break
            keep += 1
        for k in keys[: len(keys) - keep]:
            cache.pop(k, None)

    def _refine(self, indices, means, fa, fb, step):
        """Quantization-aware factors: with the rounded ``A`` fixed, the ``B``
        that best fits each tile (what is left after its coded mean) is solved
        by least squares and rounded; then ``A`` given that ``B``, then ``B``
        again (:data:`REFINE_PASSES` fits). Rounding one factor is partly
        undone by the other, at almost no cost in bits (about 0.2 dB of
        luma PSNR at low rates and 0.5 dB at high ones on Kodak).

        ``indices`` lists the tiles of each rank present; ``fa`` and ``fb``
        their rounded coefficients, ``(tiles, r, T)`` per rank.
        """
        if REFINE_PASSES == 0:
            return fa, fb
        fa, fb = list(fa), list(fb)
        for g, idx in enumerate(indices):
            # The DCT is orthonormal, so a tile is sum_c a_c b_c^T in the 2D
            # DCT domain: the fits need no transform. The coded mean's error
            # is a constant, which lands on the (0, 0) coefficient.
            spectra = self._spectra[idx]
            spectra[:, 0, 0] += self.tile * (self.means[idx] - means[idx])
            for i in range(REFINE_PASSES):
                if i % 2 == 0:
                    fb[g] = self._fit(fa[g], spectra, step)
                else:
                    fa[g] = self._fit(fb[g], np.swapaxes(spectra, 1, 2), step)
        return fa, fb

    @staticmethod
    def _fit(fixed, spectra, step):
        """Rounded coefficients of the factor that, with ``fixed`` (rounded
        coefficients of the other factor, ``(tiles, r, T)``), fits
        ``spectra`` best per tile."""
        r = fixed.shape[1]
        fr = fixed * step
        gram = fr @ np.swapaxes(fr, 1, 2)
        # a component whose coefficients all rounded to 0 makes the system singular
        ridge = 1e-9 * (np.trace(gram, axis1=1, axis2=2)[:, None, None] + 1.0)
        if r == 1:
            # a 1x1 system: times the reciprocal of its coefficient, which is
            # what OpenBLAS's solve (NumPy's wheels on Linux, Windows and
            # Intel Macs) computes, without its per-matrix cost
            return np.rint(fr @ spectra * (1.0 / (gram + ridge)) / step)
        return np.rint(np.linalg.solve(gram + ridge * np.eye(r), fr @ spectra) / step)

    def deblock_strength(self, count: int, lead: float | None = None) -> int:
        """The deblocking strength (see :func:`deblock`) that brings the
        decoded plane at ``count`` closest to the original, in squared error
        (``lead``: as in :meth:`step_code`)."""
        key = (count, self.step_code(count, lead))
        known = self._strengths.get(key)  # (the caches are read once: the app packs from two threads)
        if known is not None:
            return known
        ranks, dc, a, b, code = self.quantize(count, lead)
        plain = decode_tiled_plane(ranks, dc, a, b, code, self.shape, self.tile)
        target = self.data.astype(np.float32, copy=False)
        strengths = (0, *DEBLOCK_CANDIDATES[1:])  # "off" always first
        thresholds = [strength * code / 1024.0 for strength in strengths]

        errors = deblock_errors(plain, target, self.tile, thresholds)
        # the first of the smallest (a stronger filter must do strictly better)
        best = int(np.argmin(errors))
        best_out = plain if best == 0 else deblock(plain.copy(), self.tile, thresholds[best])
        best = strengths[best]
        if len(self._strengths) > 64:
            self._strengths.clear()
        self._strengths[key] = best
        self._decoded = (key, best_out)
        return best

    def reconstruct(self, count: int, lead: float | None = None) -> np.ndarray:
        """The float plane the file at ``count`` decodes to (deblocked as the header will say;
        ``lead``: as in :meth:`step_code`)."""
        strength = self.deblock_strength(count, lead)
        decoded = self._decoded  # read once, as in quantize
        if decoded is not None and decoded[0] == (count, self.step_code(count, lead)):
            return decoded[1]
        ranks, dc, a, b, code = self.quantize(count, lead)
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
    # Coefficients are stored component-major: all tiles' first vectors, then
    # all second ones... ``pos[i]`` is where the next chunk's vectors of
    # component i begin.
    per_comp = np.bincount(ranks, minlength=tile + 1)[::-1].cumsum()[::-1][1:]  # tiles with rank > i
    pos = np.concatenate(([0], np.cumsum(per_comp)[:-1])).astype(np.int64).tolist()
    limit = tile if max_rank is None else min(tile, max_rank)
    per_chunk = max(1, CHUNK_PIXELS // (tile * tile))
    out = np.empty((h, w), dtype=np.float32)
    rows = max(1, per_chunk // tx)
    for r0 in range(0, ty, rows):
        r1 = min(ty, r0 + rows)
        span = tx if r1 - r0 > 1 else min(tx, per_chunk)
        for c0 in range(0, tx, span):
            c1 = min(tx, c0 + span)
            nr, nc = r1 - r0, c1 - c0
            j = slice(r0 * tx, r1 * tx) if nc == tx else r0 * tx + np.arange(c0, c1)
            rk = ranks[j]
            means = dc[j] * step
            # Tiles of rank 0 are their means; only the others are built
            # (their vectors, ordered component-major in the file, land at
            # [tile, component]).
            active = np.flatnonzero(rk > 0)
            rk_active = rk[active]
            kmax = min(limit, int(rk_active.max())) if active.size else 0
            fa = np.zeros((active.size, kmax, tile), dtype=np.float64)
            fb = np.zeros((active.size, kmax, tile), dtype=np.float64)
            for i in range(tile):
                sel = np.flatnonzero(rk_active > i)
                if sel.size == 0:
                    break
                if i < kmax:
                    fa[sel, i] = a[pos[i] : pos[i] + sel.size] * step
                    fb[sel, i] = b[pos[i] : pos[i] + sel.size] * step
                pos[i] += sel.size
            ua = idct(fa, axis=-1, norm="ortho")  # (m, T comps, T rows)
            vb = idct(fb, axis=-1, norm="ortho")  # (m, T comps, T cols)
            tiles = np.empty((nr * nc, tile, tile), dtype=np.float64)
            tiles[:] = means[:, None, None]
            tiles[active] = np.matmul(np.swapaxes(ua, 1, 2), vb) + means[active, None, None]
            block = tiles.reshape(nr, nc, tile, tile).transpose(0, 2, 1, 3)
            y0, x0 = r0 * tile, c0 * tile
            y1, x1 = min(h, r1 * tile), min(w, c1 * tile)
            if (y1 - y0, x1 - x0) == (nr * tile, nc * tile):  # whole tiles: straight into the plane
                out[y0:y1, x0:x1].reshape(nr, tile, nc, tile)[...] = block
            else:
                out[y0:y1, x0:x1] = block.reshape(nr * tile, nc * tile)[: y1 - y0, : x1 - x0]
    if deblock_strength:
        deblock(out, tile, deblock_strength * code / 1024.0)
    return out
