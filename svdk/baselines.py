"""Reference codecs: PNG, JPEG, WebP and AVIF through Pillow, jpegli and JPEG XL when installed.

Every function takes and returns the same kind of data as svdk itself: an
8-bit image in, real file bytes out, so that sizes compare honestly.

* PNG is written with ``optimize=True`` (lossless).
* JPEG uses 4:2:0 chroma subsampling and ``optimize=True`` (Huffman tables
  per image), qualities 1 to 100.
* WebP uses ``method=4`` (Pillow's default speed/size trade-off), qualities
  0 to 100.
* AVIF uses Pillow's default speed, qualities 0 to 100; it is listed only
  when the installed Pillow can write it.
* jpegli (Google's JPEG encoder and decoder, through the ``pyjpegli``
  package) uses its defaults (4:2:0 for RGB input), qualities 1 to 100, and
  decodes with jpegli too; grayscale images are coded as RGB and read back
  as gray. Its files are ordinary JPEG files.
* JPEG XL (libjxl, through the ``pillow-jxl-plugin`` package, which adds
  the ``JXL`` format to Pillow) uses the library's defaults (effort 7),
  qualities 0 to 99 (libjxl maps quality to its distance, 0 to its largest,
  25; quality 100 would be its lossless mode, which the plugin's lossy
  encoder refuses).

jpegli and JPEG XL are optional (``pip install 'svdk[bench]'``):
:func:`available` lists them only when their package imports, and
:func:`unavailable` says why a codec is missing.

Images with alpha are compared on their colour channels: the baselines get
the RGB (or L) pixels.

Matching svdk's file
--------------------
:func:`match_size` and :func:`match_ssim` find the file of a codec that
goes with an svdk file, by these definitions:

* **same size**: the highest quality whose file is at most ``nbytes``. The
  search takes sizes to grow with quality, then tries the next
  :data:`LOOKAHEAD` qualities too, since sizes do not always grow (WebP and
  AVIF least of all).
* **same SSIM**: the lowest quality whose SSIM reaches the target, as far
  as a search can tell without trying all of them: the search takes SSIM
  to grow with quality and finds ``q`` reaching the target with ``q - 1``
  missing it; since SSIM does not always grow (JPEG on scikit-image's
  astronaut scores 0.8744 at q20, 0.849 at q22, 0.872 at q23), the
  :data:`LOOKAHEAD` qualities below ``q - 1`` are tried too, and again
  below any of them that reaches the target. A dip deeper than that is
  missed; an exhaustive scan would take up to 100 encodes. The search is
  the same everywhere, so :func:`svdk.compare.compare`, ``svdk compare``
  and the app name the same quality for the same image and target.

Both start from the files at :data:`START_QUALITIES` (whatever else was
measured before, so the answer never depends on history) and guess along a
monotone cubic through every value seen (:func:`first_reaching`): about
three evaluations where bisection takes seven or eight. A :class:`Probe`
keeps the files and scores of one image, so several matches, and a
rate-distortion sweep, share them.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, features
from scipy.interpolate import PchipInterpolator

from ._errors import OptionError
from .metrics import Scorer, colour_channels

__all__ = [
    "CODECS",
    "QUALITIES",
    "START_QUALITIES",
    "LOOKAHEAD",
    "Coded",
    "Point",
    "Probe",
    "available",
    "unavailable",
    "encode",
    "decode",
    "match_size",
    "match_ssim",
    "first_reaching",
]


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


#: The package each optional codec needs, and the extra that installs it.
_PACKAGES = {"jpegli": ("pyjpegli", "pyjpegli"), "jxl": ("pillow_jxl", "pillow-jxl-plugin")}


def _module(codec: str):
    """The package of an optional codec (raises ImportError when it is not installed)."""
    return importlib.import_module(_PACKAGES[codec][0])


def _jpegli_encode(image: np.ndarray, quality: int) -> bytes:
    rgb = np.ascontiguousarray(np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image)
    return _module("jpegli").encode(rgb, rgb.shape[1], rgb.shape[0], quality=quality)


def _jxl_save(image: np.ndarray, quality: int) -> bytes:
    _module("jxl")  # importing the plugin registers the JXL format with Pillow
    return _save(image, "JXL", quality=quality)


_ENCODERS: dict[str, Callable[[np.ndarray, int | None], bytes]] = {
    "png": lambda im, q: _save(im, "PNG", optimize=True),
    "jpeg": lambda im, q: _save(im, "JPEG", quality=q, subsampling="4:2:0", optimize=True),
    "webp": lambda im, q: _save(im, "WEBP", quality=q, method=4),
    "avif": lambda im, q: _save(im, "AVIF", quality=q),
    "jpegli": _jpegli_encode,
    "jxl": _jxl_save,
}
#: quality range of each lossy codec
QUALITIES = {"jpeg": (1, 100), "webp": (0, 100), "avif": (0, 100), "jpegli": (1, 100), "jxl": (0, 99)}
CODECS = tuple(_ENCODERS)


def _why_not(codec: str) -> str | None:
    """Why this installation cannot write ``codec`` (None: it can)."""
    if codec in ("webp", "avif") and not features.check(codec):
        return f"this Pillow cannot write {codec.upper()} (it was built without lib{codec})"
    if codec in _PACKAGES:
        module, package = _PACKAGES[codec]
        # found, not imported: importing pillow_jxl would teach Pillow (and so svdk's own image
        # loading) to read JPEG XL from then on, depending on whether this was asked first
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed; pip install 'svdk[bench]'"
    return None


def unavailable() -> dict[str, str]:
    """Each codec this installation cannot write, with the reason and what to do."""
    return {codec: why for codec in CODECS if (why := _why_not(codec)) is not None}


def available() -> list[str]:
    """The codecs this installation can write."""
    return [codec for codec in CODECS if _why_not(codec) is None]


def decode(data: bytes, gray: bool, codec: str | None = None) -> np.ndarray:
    """The pixels of a reference codec's file: ``(H, W)`` when ``gray``, else ``(H, W, 3)``.

    jpegli files are read with jpegli's own decoder, JPEG XL files with the
    plugin, the others with Pillow.
    """
    if codec == "jpegli":
        rgb, width, height = _module("jpegli").decode(data)
        pixels = np.frombuffer(rgb, np.uint8).reshape(height, width, 3)
        return np.asarray(Image.fromarray(pixels).convert("L")) if gray else pixels
    if codec == "jxl":
        _module("jxl")
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("L" if gray else "RGB"))


_decode = decode  # for encode, whose ``decode`` option hides the function


def encode(image: np.ndarray, codec: str, quality: int | None = None, *, decode: bool = True) -> Coded:
    """Code ``image`` with ``codec`` at ``quality`` and decode it back.

    With ``decode=False`` the file is not decoded (``decoded`` is None):
    a search that only needs sizes skips the decoding.
    """
    if codec not in CODECS or _why_not(codec) is not None:
        why = f" ({_why_not(codec)})" if codec in CODECS else ""
        raise OptionError(f"codec {codec!r} is not available here{why}; available: {', '.join(available())}")
    image = colour_channels(image)
    if codec != "png":
        lo, hi = QUALITIES[codec]
        if quality is None or not lo <= quality <= hi:
            raise OptionError(f"{codec} quality must be in [{lo}, {hi}]; got {quality}")
    data = _ENCODERS[codec](image, quality)
    pixels = _decode(data, image.ndim == 2, codec) if decode else None
    return Coded(codec, quality if codec != "png" else None, data, pixels)


#: Qualities every match starts from: also the app's chart points.
START_QUALITIES = (5, 30, 75)
#: Qualities tried past the size search's answer (above it) and the SSIM search's (below it).
LOOKAHEAD = 4


@dataclass
class Point:
    """One file on a rate-distortion curve."""

    codec: str
    param: int  # quality for JPEG/WebP/AVIF, luma rank (or component count) for svdk
    bytes: int
    bpp: float
    psnr: float
    ssim: float


class Probe:
    """Files of one image in one codec at the qualities asked, each encoded once.

    A probe keeps each file's bytes and scores, never decoded pixels: a
    file is decoded only when it is scored (the size search needs none), and
    each quality is scored once. Scoring takes a :class:`svdk.metrics.Scorer`
    of the image (large, so no probe keeps one). Threads may share a probe:
    two asking for the same quality at once both encode it (the work is
    done twice, the result is the same).
    """

    def __init__(self, codec: str, colour: np.ndarray):
        if codec not in QUALITIES:
            raise OptionError(f"codec must be one of {', '.join(QUALITIES)}; got {codec!r}")
        self.codec = codec
        self.colour = colour_channels(colour)
        self.lo, self.hi = QUALITIES[codec]
        self._coded: dict[int, Coded] = {}  # decoded is None
        self._scores: dict[int, tuple[float, float]] = {}
        self.npx = self.colour.shape[0] * self.colour.shape[1]

    def coded(self, q: int) -> Coded:
        """The file at quality ``q`` (its ``decoded`` is None: see :meth:`score`)."""
        if q not in self._coded:
            self._coded[q] = encode(self.colour, self.codec, q, decode=False)
        return self._coded[q]

    def size(self, q: int) -> int:
        return self.coded(q).nbytes

    def score(self, q: int, scorer: Scorer) -> tuple[float, float]:
        """PSNR and SSIM of quality ``q``, measured once."""
        if q not in self._scores:
            decoded = decode(self.coded(q).data, self.colour.ndim == 2, self.codec)
            self._scores[q] = scorer(decoded)
        return self._scores[q]

    def point(self, q: int) -> Point:
        """Quality ``q`` on the curve (it must have been scored)."""
        p, s = self._scores[q]
        n = self.size(q)
        return Point(self.codec, q, n, 8 * n / self.npx, p, s)

    def points(self) -> list[Point]:
        """Every quality whose PSNR and SSIM were measured, by quality."""
        return [self.point(q) for q in sorted(self._scores)]

    def match_size(self, nbytes: int) -> int | None:
        """The quality of the same-size file (see the module's definitions); None: even the lowest is larger."""
        fits = lambda q: self.size(q) <= nbytes  # noqa: E731
        start = {q: float(self.size(q)) for q in START_QUALITIES if self.lo <= q <= self.hi}
        over = first_reaching(lambda q: float(self.size(q)), nbytes + 1, self.lo, self.hi, start, scale="log")
        q = None if over == self.lo else (self.hi if over is None else over - 1)
        first = self.lo if q is None else q + 1
        for up in range(first, min(first - 1 + LOOKAHEAD, self.hi) + 1):
            if fits(up):
                q = up
        if q is None:
            return None
        for up in range(q + 1, min(q + LOOKAHEAD, self.hi) + 1):
            if fits(up):
                q = up
        return q

    def match_ssim(self, target: float, scorer: Scorer) -> int | None:
        """The quality of the same-SSIM file (see the module's definitions); None: not even the highest."""
        if scorer.win is None:
            h, w = self.colour.shape[:2]
            raise OptionError(f"SSIM is undefined for a {w}x{h} image (a side under 3 pixels): match by size instead")
        ssim = lambda q: self.score(q, scorer)[1]  # noqa: E731
        start = {q: ssim(q) for q in START_QUALITIES if self.lo <= q <= self.hi}
        q = first_reaching(ssim, target, self.lo, self.hi, start, scale="ssim")
        if q is None:
            return None
        # SSIM dips: look below the answer for a lower quality that reaches it (scores are kept,
        # so q - 1, measured by the search, costs nothing again)
        low = q
        while True:
            window = range(low - 1, max(self.lo, low - 1 - LOOKAHEAD) - 1, -1)
            reaching = [d for d in window if ssim(d) >= target]
            if not reaching:
                return low
            low = min(reaching)


def _with_pixels(probe: Probe, q: int | None) -> Coded | None:
    if q is None:
        return None
    c = probe.coded(q)
    return Coded(c.codec, c.quality, c.data, decode(c.data, probe.colour.ndim == 2, probe.codec))


def match_size(image: np.ndarray, codec: str, nbytes: int, *, probe: Probe | None = None) -> Coded | None:
    """The ``codec`` file of the same size as ``nbytes`` (None: even the lowest quality is larger).

    See the module's definitions. ``probe``, a :class:`Probe` of the same
    image, reuses the files it holds.
    """
    probe = probe or Probe(codec, image)
    return _with_pixels(probe, probe.match_size(nbytes))


def match_ssim(
    image: np.ndarray, codec: str, target: float, *, probe: Probe | None = None, scorer: Scorer | None = None
) -> Coded | None:
    """The ``codec`` file of the same SSIM as ``target`` (None: not even the highest quality reaches it).

    See the module's definitions. ``probe`` and ``scorer`` (a
    :class:`~svdk.metrics.Scorer` of the image's colour channels) reuse
    what they hold.
    """
    probe = probe or Probe(codec, image)
    scorer = scorer or Scorer(probe.colour)
    return _with_pixels(probe, probe.match_ssim(target, scorer))


def first_reaching(
    f: Callable[[int], float],
    target: float,
    lo: int,
    hi: int,
    known: dict[int, float] | None = None,
    *,
    scale: str = "linear",
) -> int | None:
    """Smallest ``q`` in ``[lo, hi]`` with ``f(q) >= target`` (None: not even ``hi``).

    ``f`` is taken to grow with ``q``: where it does not, the ``q`` found
    has ``f(q) >= target > f(q - 1)`` but need not be the smallest such. It starts from the
    values in ``known``, on a ``scale`` where ``f`` is close to linear in
    ``q`` (``"log"`` for file sizes, ``"ssim"``, that is ``-log(1 - f)``, for
    SSIM). Each guess is the first ``q`` in the bracket where a monotone cubic
    (PCHIP) through every value seen so far reaches the target: it follows
    the curve's bend, which a line through the bracket's ends misses, so a
    good guess is followed by a check of its lower neighbour and the search
    ends. After three guesses in a row that fail to halve the bracket it
    bisects. On the 24 Kodak images, matching svdk's SSIM at targets 0.85 to
    0.95 from the chart's three qualities takes three evaluations at the
    median (two to four in nine cases of ten), and matching its size three
    or four; bisection takes seven or eight.
    """
    seen = dict(known or {})

    def val(q):
        if q not in seen:
            seen[q] = f(q)
        return seen[q]

    def g(v):
        if scale == "log":
            return math.log(max(v, 1e-12))
        if scale == "ssim":
            return -math.log(max(1.0 - v, 1e-12))
        return v

    inside = {q: v for q, v in seen.items() if lo <= q <= hi}
    below = [q for q, v in inside.items() if v < target]
    a = max(below) if below else None
    above = [q for q, v in inside.items() if v >= target and (a is None or q > a)]
    b = min(above) if above else None
    if a is None:
        if val(lo) >= target:
            return lo
        a = lo
    if b is None:
        if val(hi) < target:
            return None
        b = hi
    goal = g(target)

    def guess() -> int | None:
        qs = sorted(q for q in seen if lo <= q <= hi)
        ys = np.maximum.accumulate([g(seen[q]) for q in qs])  # monotone, as the search assumes
        if len(qs) < 2 or ys[-1] <= ys[0]:
            return None
        cand = np.arange(a + 1, b)
        reach = PchipInterpolator(qs, ys)(cand) >= goal
        return int(cand[np.argmax(reach)]) if reach.any() else b - 1

    slow = 0  # guesses in a row that did not halve the bracket
    while b - a > 1:
        width = b - a
        q = guess() if slow < 3 else None
        if q is None:
            q = (a + b) // 2
        if val(q) >= target:
            b = q
        else:
            a = q
        slow = slow + 1 if b - a > width // 2 else 0
    return b
