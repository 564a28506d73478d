"""The entropy stage of the global layout: rANS over band-wise geometric models.

Each factor row (one singular component's DCT coefficients, quantized) is
cut into octave bands (:func:`band_edges`); every band gets one of
:data:`NUM_LEVELS` two-sided geometric distributions, chosen by the encoder
and stored as one byte. The symbols are coded with the rANS coder of
`constriction <https://github.com/bamler-lab/constriction>`_.

The probability tables are integers computed with exact arithmetic
(:mod:`decimal` and Python integers), so an encoder and a decoder on
different machines build the same model bit for bit; a float ``exp`` could
differ in its last bit between platforms, and an entropy decoder does not
survive a model that differs by one unit.
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext
from functools import lru_cache

import numpy as np

from ._errors import FormatError

__all__ = ["NUM_LEVELS", "MAX_RADIUS", "band_edges", "choose_levels", "radius", "encode", "decode"]

#: Levels 0 .. NUM_LEVELS - 1; level ``L`` has scale ``2 ** (L / 4 - 2.5)``.
NUM_LEVELS = 80
#: Largest alphabet radius: values at or beyond it escape (see :func:`encode`).
MAX_RADIUS = 4096
#: Coefficients are below this in magnitude (escape numbers too).
MAX_VALUE = 1 << 40
_FREQ_ONE = 1 << 40  # frequency of the symbol 0 before normalization


def band_edges(n: int) -> list[int]:
    """Band boundaries of an ``n``-long row: ``0, n/16, n/8, n/4, n/2, n`` (empty bands dropped)."""
    return sorted({0, n, *(n >> s for s in (1, 2, 3, 4))})


def band_count(n: int) -> int:
    """Bands of an ``n``-long row: level bytes per row in the side data."""
    return len(band_edges(n)) - 1


def _scale(level: int) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 40
        return Decimal(2) ** (Decimal(level) / 4 - Decimal("2.5"))


@lru_cache(maxsize=None)
def radius(level: int) -> int:
    """Symbols of this level lie in ``[-radius, radius]``; the two ends are escapes."""
    with localcontext() as ctx:
        ctx.prec = 40
        r = int((16 * _scale(level)).to_integral_value(rounding=ROUND_CEILING)) + 1
    return min(MAX_RADIUS, max(2, r))


@lru_cache(maxsize=None)
def _frequencies(level: int) -> np.ndarray:
    """Integer frequencies of ``-radius .. radius``: ``~ q ** |j|`` with ``q = exp(-1 / scale)``."""
    with localcontext() as ctx:
        ctx.prec = 40
        q = (Decimal(-1) / _scale(level)).exp()
        ratio = int((q * (1 << 32)).to_integral_value(rounding=ROUND_FLOOR))
    r = radius(level)
    half = [_FREQ_ONE]
    for _ in range(r):
        half.append(max(1, (half[-1] * ratio) >> 32))
    side = np.array(half, dtype=np.int64)
    return np.concatenate([side[:0:-1], side])


@lru_cache(maxsize=None)
def _model(level: int):
    import constriction

    # Integers below 2**53 are exact in float64, so every machine passes
    # constriction the same table.
    return constriction.stream.model.Categorical(_frequencies(level).astype(np.float64), perfect=False)


def choose_levels(rows: np.ndarray) -> np.ndarray:
    """The level of every band of every row (``k x bands``, uint8): a fit to its mean magnitude."""
    k, n = rows.shape
    edges = band_edges(n)
    lengths = np.diff(edges)
    mean = np.add.reduceat(np.abs(rows), edges[:-1], axis=1) / lengths
    # A two-sided geometric law with ratio q has mean magnitude 2q / (1 - q^2).
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(mean > 0, (np.sqrt(1 + mean * mean) - 1) / np.where(mean > 0, mean, 1), 0.0)
        scale = np.where(q > 0, -1 / np.log(np.where(q > 0, q, 0.5)), 0.0)
        level = np.where(scale > 0, np.rint(4 * np.log2(np.where(scale > 0, scale, 1)) + 10), 0)
    return np.clip(level, 0, NUM_LEVELS - 1).astype(np.uint8)


@lru_cache(maxsize=1)
def _radius_table() -> np.ndarray:
    return np.array([radius(level) for level in range(NUM_LEVELS)], dtype=np.int64)


def _radii(levels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-position radius of a ``k x n`` matrix, and each band's level, in stream order."""
    lengths = np.diff(band_edges(n))
    flat_levels = levels.ravel()
    return np.repeat(_radius_table()[flat_levels], np.tile(lengths, levels.shape[0])), flat_levels


def encode(matrices: list[tuple[np.ndarray, np.ndarray]]) -> tuple[list[int], np.ndarray]:
    """Code integer rows under their levels: ``(escapes, rANS words)``.

    ``matrices`` holds ``(rows, levels)`` pairs in stream order (rows
    row-major, each row band by band). A value with ``|x| >= radius`` is
    coded as ``sign(x) * radius`` and ``|x| - radius`` is appended to the
    escapes, in stream order.
    """
    import constriction

    items, escapes = [], []
    for rows, levels in matrices:
        k, n = rows.shape
        lengths = np.diff(band_edges(n)).tolist()
        r, flat_levels = _radii(levels, n)
        x = rows.ravel()
        big = np.abs(x) >= r
        if big.any():
            escapes.extend((np.abs(x[big]) - r[big]).tolist())
        symbols = (np.clip(x, -r, r) + r).astype(np.int32)
        pos = 0
        for i, level in enumerate(flat_levels.tolist()):
            m = lengths[i % len(lengths)]
            items.append((symbols[pos : pos + m], level))
            pos += m
    coder = constriction.stream.stack.AnsCoder()
    for symbols, level in reversed(items):
        coder.encode_reverse(symbols, _model(level))
    return escapes, coder.get_compressed()


def decode(
    words: np.ndarray, shapes: list[tuple[int, int]], levels: list[np.ndarray], escapes: list[int]
) -> list[np.ndarray]:
    """The integer matrices that :func:`encode` coded; :class:`FormatError` if the data disagree."""
    import constriction

    try:
        coder = constriction.stream.stack.AnsCoder(words)
    except Exception as exc:  # constriction raises plain exceptions on invalid data
        raise FormatError(f"the entropy-coded data are invalid: {exc}") from None
    out, next_escape = [], 0
    for (k, n), lv in zip(shapes, levels):
        lengths = np.diff(band_edges(n)).tolist()
        r, flat_levels = _radii(lv, n)
        x = np.empty(k * n, dtype=np.int64)
        pos = 0
        try:
            for i, level in enumerate(flat_levels.tolist()):
                m = lengths[i % len(lengths)]
                x[pos : pos + m] = coder.decode(_model(level), m)
                pos += m
        except Exception as exc:
            raise FormatError(f"the entropy-coded data end early or are invalid: {exc}") from None
        x -= r
        ends = np.flatnonzero(np.abs(x) == r)
        if ends.size:
            if next_escape + ends.size > len(escapes):
                raise FormatError("the entropy-coded data need more escape values than the file has")
            extra = np.array(escapes[next_escape : next_escape + ends.size], dtype=np.int64)
            next_escape += ends.size
            x[ends] += np.sign(x[ends]) * extra
            if int(np.abs(x[ends]).max()) >= MAX_VALUE:
                raise FormatError(f"an escaped value is {MAX_VALUE} or more in magnitude")
        out.append(x.reshape(k, n))
    if next_escape != len(escapes):
        raise FormatError(f"the file has {len(escapes) - next_escape} escape values that no symbol uses")
    if not coder.is_empty():
        raise FormatError("the entropy-coded data do not end where the last symbol ends")
    return out


def write_varints(values: list[int]) -> bytes:
    """Unsigned LEB128."""
    out = bytearray()
    for v in values:
        while v >= 0x80:
            out.append((v & 0x7F) | 0x80)
            v >>= 7
        out.append(v)
    return bytes(out)


def read_varints(data: bytes | memoryview, limit: int = MAX_VALUE) -> list[int]:
    values, v, shift = [], 0, 0
    for byte in bytes(data):
        v |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            if shift > 42:
                raise FormatError("an escape value is too long")
            continue
        if v >= limit:
            raise FormatError("an escape value is out of range")
        values.append(v)
        v, shift = 0, 0
    if shift:
        raise FormatError("the escape values end inside a number")
    return values


def min_bits_per_symbol() -> float:
    """The fewest bits any symbol but an escape can cost (the most likely symbol of level 0).

    An escape can cost nothing in the rANS words (``-R`` from the coder's
    empty state) but needs an escape number in the side data.
    """
    f = _frequencies(0)
    return -math.log2(f.max() / f.sum())
