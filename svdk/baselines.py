"""Reference codecs through Pillow: PNG, JPEG, WebP and (when available) AVIF.

Every function takes and returns the same kind of data as svdk itself: an
8-bit image in, real file bytes out, so that sizes compare honestly.

* PNG is written with ``optimize=True`` (lossless).
* JPEG uses 4:2:0 chroma subsampling and ``optimize=True`` (Huffman tables
  per image), qualities 1 to 100.
* WebP uses ``method=4`` (Pillow's default speed/size trade-off), qualities
  0 to 100.
* AVIF uses Pillow's default speed, qualities 0 to 100; it is listed only
  when the installed Pillow can write it.

Images with alpha are compared on their colour channels: the baselines get
the RGB (or L) pixels.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, features

from . import metrics

__all__ = ["CODECS", "Coded", "available", "encode", "decode", "match_size", "match_ssim"]


@dataclass(frozen=True)
class Coded:
    """One image coded by a reference codec."""

    codec: str
    quality: int | None
    data: bytes
    decoded: np.ndarray | None  # None when encoded with decode=False

    @property
    def nbytes(self) -> int:
        return len(self.data)


def _save(image: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, fmt, **kw)
    return buf.getvalue()


_ENCODERS: dict[str, Callable[[np.ndarray, int | None], bytes]] = {
    "png": lambda im, q: _save(im, "PNG", optimize=True),
    "jpeg": lambda im, q: _save(im, "JPEG", quality=q, subsampling="4:2:0", optimize=True),
    "webp": lambda im, q: _save(im, "WEBP", quality=q, method=4),
    "avif": lambda im, q: _save(im, "AVIF", quality=q),
}
#: quality range of each lossy codec
QUALITIES = {"jpeg": (1, 100), "webp": (0, 100), "avif": (0, 100)}
CODECS = tuple(_ENCODERS)


def available() -> list[str]:
    """The codecs this installation can write."""
    have = ["png", "jpeg"]
    if features.check("webp"):
        have.append("webp")
    if features.check("avif"):
        have.append("avif")
    return have


def _colour(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] in (2, 4):
        image = image[..., :-1]
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    return np.ascontiguousarray(image)


def decode(data: bytes, gray: bool) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("L" if gray else "RGB"))


_decode = decode  # for encode, whose ``decode`` option hides the function


def encode(image: np.ndarray, codec: str, quality: int | None = None, *, decode: bool = True) -> Coded:
    """Code ``image`` with ``codec`` at ``quality`` and decode it back.

    With ``decode=False`` the file is not decoded (``decoded`` is None):
    a search that only needs sizes skips the decoding.
    """
    if codec not in available():
        raise ValueError(f"codec {codec!r} is not available here; available: {', '.join(available())}")
    image = _colour(image)
    if codec != "png":
        lo, hi = QUALITIES[codec]
        if quality is None or not lo <= quality <= hi:
            raise ValueError(f"{codec} quality must be in [{lo}, {hi}]; got {quality}")
    data = _ENCODERS[codec](image, quality)
    pixels = _decode(data, image.ndim == 2) if decode else None
    return Coded(codec, quality if codec != "png" else None, data, pixels)


def _bisect(codec: str, good: Callable[[int], bool]) -> int | None:
    """Largest quality q with good(q), assuming good is monotone (True then False)."""
    lo, hi = QUALITIES[codec]
    if not good(lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if good(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


_LOOKAHEAD = 4


def match_size(image: np.ndarray, codec: str, nbytes: int) -> Coded | None:
    """The highest-quality ``codec`` file of at most ``nbytes`` (None: even the lowest is larger).

    The quality is found by bisection, then the next four qualities are
    tried too, since file sizes do not always grow with quality.
    """
    cache: dict[int, Coded] = {}

    def fits(q):
        cache[q] = cache.get(q) or encode(image, codec, q)
        return cache[q].nbytes <= nbytes

    q = _bisect(codec, fits)
    lowest = QUALITIES[codec][0]
    # Sizes are not strictly monotone in quality (WebP and AVIF least of all):
    # look a few steps past the bisection for a higher quality that still fits.
    first = lowest if q is None else q + 1
    for up in range(first, min(first - 1 + _LOOKAHEAD, QUALITIES[codec][1]) + 1):
        if fits(up):
            q = up
    if q is None:
        return None
    for up in range(q + 1, min(q + _LOOKAHEAD, QUALITIES[codec][1]) + 1):
        if fits(up):
            q = up
    return cache[q]


def match_ssim(image: np.ndarray, codec: str, target: float) -> Coded | None:
    """The smallest-quality ``codec`` file whose SSIM reaches ``target`` (None: none does)."""
    image = _colour(image)
    cache: dict[int, Coded] = {}

    def below(q):
        cache[q] = cache.get(q) or encode(image, codec, q)
        return (metrics.ssim(image, cache[q].decoded) or 0.0) < target

    q = _bisect(codec, below)  # largest quality still below the target
    lo, hi = QUALITIES[codec]
    if q is None:
        q = lo - 1
    if q >= hi:
        return None
    first = q + 1
    return cache.get(first) or encode(image, codec, first)
