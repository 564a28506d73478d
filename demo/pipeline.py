"""The app's work, without Gradio: one image and its settings in, every figure out.

:func:`prepare` turns an upload (or ``example:NAME``) into the pixels the app
works on, applying the app's size caps; :func:`run` encodes them with svdk and
measures everything the page shows:

* the svdk file (rank chosen by the CNN predictor and checked, by the exact
  SSIM search in the tiled layout, or given by hand) and its decoded image;
* PNG, and JPEG and WebP at the same size and at the same SSIM as svdk;
* rate-distortion points of svdk, JPEG and WebP on this image;
* the singular value spectrum of luma;
* progressive previews decoded from the same file.

Speed
-----
The issue asks for at most 1.5 s per request on a Kodak image (768x512) on
two cores. A request for an image not seen yet scores about 18 decoded
images (SSIM and PSNR) and encodes about 12 WebP files (35 to 50 ms each),
13 JPEG files and one optimized PNG (0.1 to 0.3 s), so:

* every SSIM is computed by :class:`Scorer` from exact integer window sums,
  in strips of rows that stay in the cache: about 19 ms per 768x512 RGB
  image, against 60 ms with :class:`svdk.metrics.PlaneScorer` (the values
  agree with :func:`svdk.metrics.ssim` to about 1e-14);
* svdk's rate-distortion points come from the encoder's own session: the
  SVDs computed while choosing the rank are reused (:meth:`Session.pack` of
  other ranks; the encoder is asked for policies ``app-cnn``, ``app-quality``
  and ``app-fixed``, registered here, which run svdk's own policy and keep
  its session); the luma spectrum needs no vectors and comes from the
  eigenvalues of the Gram matrix, on one BLAS thread;
* JPEG and WebP are matched with the definitions of
  :func:`svdk.baselines.match_size` and :func:`svdk.baselines.match_ssim`,
  but the search (:func:`first_reaching`) starts from the qualities already
  measured for the chart and guesses along a monotone cubic through
  everything measured: about three SSIM evaluations where bisection takes
  seven or eight (a test checks that both find the same qualities); a file
  is decoded only when it is scored, so the size search only encodes;
* the JPEG and WebP sweeps and matches run in worker threads (Pillow, zlib
  and numpy release the GIL) while the request's own thread measures
  svdk's curve and previews and then encodes PNG (needed last, so it does
  not hold up the sweeps that the matches wait for);
* PNG, JPEG and WebP do not depend on svdk's settings: their files and
  scores are kept for the last :data:`CACHE_IMAGES` images, so moving the
  target or changing the mode re-encodes svdk only (plus the few JPEG/WebP
  qualities a new SSIM match needs).
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import time
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
from PIL import Image
from scipy.interpolate import PchipInterpolator
from threadpoolctl import ThreadpoolController

import svdk
from svdk import baselines, metrics, policies
from svdk.compare import Row

__all__ = [
    "Settings",
    "Prepared",
    "Point",
    "Report",
    "AppError",
    "MAX_UPLOAD_BYTES",
    "WORK_PIXELS",
    "MIN_SIDE",
    "prepare",
    "run",
    "load_model",
]

#: Uploads larger than this many bytes are refused before they are decoded.
MAX_UPLOAD_BYTES = int(os.environ.get("SVDK_APP_MAX_UPLOAD_BYTES", 25_000_000))
#: Images above this many pixels are downscaled (with a notice) before the
#: comparison; the svdk library and CLI take up to ``svdk.MAX_PIXELS``.
WORK_PIXELS = int(os.environ.get("SVDK_APP_MAX_PIXELS", 1_000_000))
#: SSIM needs a 7x7 window; smaller images are refused with a message.
MIN_SIDE = 8
#: Qualities measured for the JPEG and WebP curves (the matching adds more).
SWEEP_QUALITIES = (5, 30, 75)
#: Luma ranks of svdk's curve in the global layout (those above the image's
#: rank are dropped).
SWEEP_RANKS = (4, 32, 160)
#: Progressive previews: these ranks and the chosen one.
PROGRESSIVE_RANKS = (1, 5, 20)
#: Target SSIM range offered by the app.
SSIM_RANGE = (0.5, 0.99)
MODES = ("ycbcr", "rgb")
LAYOUTS = ("global", "tiled")
LOSSY = ("jpeg", "webp")


class AppError(svdk.SvdkError):
    """Input the app refuses (too large a file, too small an image, bad settings)."""


# ----------------------------------------------------------------------------
# settings


@dataclass(frozen=True)
class Settings:
    """What the user chose. ``ranks`` (one per plane) switches off automatic rank."""

    target: float = 0.9
    mode: str = "ycbcr"
    layout: str = "global"
    ranks: tuple[int, ...] | None = None

    def __post_init__(self):
        lo, hi = SSIM_RANGE
        t = self.target
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not lo <= t <= hi:
            raise AppError(f"the target SSIM must be a number in [{lo}, {hi}]; got {t!r}")
        if self.mode not in MODES:
            raise AppError(f"colour mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        if self.layout not in LAYOUTS:
            raise AppError(f"layout must be one of {', '.join(LAYOUTS)}; got {self.layout!r}")
        if self.ranks is not None:
            ranks = tuple(self.ranks)
            if not 1 <= len(ranks) <= 3 or not all(
                isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in ranks
            ):
                raise AppError(f"ranks must be one to three whole numbers (Y, U, V); got {self.ranks!r}")
            object.__setattr__(self, "ranks", tuple(int(k) for k in ranks))
            if self.layout == "tiled":
                raise AppError(
                    "manual ranks apply to the global layout; the tiled layout gives every tile its own "
                    "rank from the target SSIM: switch automatic rank on, or choose the global layout"
                )

    @property
    def auto(self) -> bool:
        return self.ranks is None

    def to_dict(self) -> dict:
        return {"target": self.target, "mode": self.mode, "layout": self.layout,
                "ranks": list(self.ranks) if self.ranks else None}

    @classmethod
    def from_dict(cls, d: dict) -> "Settings":
        ranks = d.get("ranks")
        return cls(float(d.get("target", 0.9)), str(d.get("mode", "ycbcr")), str(d.get("layout", "global")),
                   tuple(ranks) if ranks else None)


# ----------------------------------------------------------------------------
# input


@dataclass
class Prepared:
    """The pixels the app works on, and what was done to get them."""

    pixels: svdk.Pixels
    notes: list[str]
    source: str  # "upload", "example:NAME", "share"

    @property
    def width(self) -> int:
        return self.pixels.width

    @property
    def height(self) -> int:
        return self.pixels.height


def _downscale(pixels: svdk.Pixels, limit: int) -> tuple[svdk.Pixels, str | None]:
    w, h = pixels.width, pixels.height
    if w * h <= limit:
        return pixels, None
    scale = math.sqrt(limit / (w * h))
    nw, nh = max(1, int(w * scale)), max(1, int(h * scale))
    merged = pixels.merged()
    squeeze = merged.ndim == 3 and merged.shape[2] == 1
    arr = merged[..., 0] if squeeze else merged
    small = np.asarray(Image.fromarray(arr).resize((nw, nh), Image.LANCZOS))
    out = svdk.load_image(small)
    note = (
        f"downscaled from {w}x{h} to {nw}x{nh}: the app compares images of at most "
        f"{limit / 1e6:g} megapixels (the svdk library and command line take up to "
        f"{svdk.MAX_PIXELS / 1e6:.0f} megapixels)"
    )
    return out, note


def prepare(source, *, limit: int | None = None) -> Prepared:
    """Load an upload (path or bytes), ``example:NAME`` or an array for the app.

    Raises :class:`svdk.SvdkError` (``ImageError`` from svdk, or
    :class:`AppError`) with a message for the page.
    """
    limit = WORK_PIXELS if limit is None else limit
    label = "upload"
    if source is None or (isinstance(source, str) and not source.strip()):
        raise AppError("no image: upload a photo or pick an example")
    if isinstance(source, str) and source.startswith("example:"):
        label = source
    elif isinstance(source, (str, os.PathLike)):
        try:
            size = os.path.getsize(source)
        except OSError:
            raise AppError("the uploaded file is gone; upload it again") from None
        if size > MAX_UPLOAD_BYTES:
            raise AppError(
                f"the file is {size / 1e6:.1f} MB; the app takes files up to {MAX_UPLOAD_BYTES / 1e6:g} MB"
            )
        if size == 0:
            raise svdk.ImageError("the uploaded file is empty")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", svdk.SvdkWarning)  # the same text is in pixels.notes
        try:
            pixels = svdk.load_image(source)
        except svdk.ImageError as exc:
            # svdk names the temporary path of an upload; the user knows it as "the file"
            msg = str(exc)
            if isinstance(source, (str, os.PathLike)) and not label.startswith("example:"):
                msg = msg.replace(str(source), "the file")
            raise svdk.ImageError(msg) from None
    if min(pixels.width, pixels.height) < MIN_SIDE:
        raise AppError(
            f"the image is {pixels.width}x{pixels.height}; the app needs at least "
            f"{MIN_SIDE} pixels on each side (SSIM uses a 7x7 window)"
        )
    notes = list(pixels.notes)
    pixels, note = _downscale(pixels, limit)
    if note:
        notes.append(note)
    if pixels.alpha is not None:
        notes.append("the alpha channel is stored losslessly by svdk; JPEG, WebP and the figures use the colour channels")
    return Prepared(pixels, notes, label)


# ----------------------------------------------------------------------------
# the model


@dataclass
class Model:
    """The rank predictor the app uses, or why there is none."""

    predictor: object | None
    description: str


def load_model() -> Model:
    """Load svdk's default rank predictor once, and describe it for the page."""
    try:
        p = svdk.predictor.default_predictor()
    except svdk.SvdkError as exc:
        return Model(None, f"no rank predictor ({exc}); automatic rank uses the exact SSIM search")
    describe = getattr(p, "describe", None)
    text = None
    if callable(describe):
        try:
            text = str(describe())
        except Exception:  # a description must never stop the app
            text = None
    if not text:
        text = f"model file {getattr(p, 'path', '?')}"
    try:  # the first prediction traces the network: do it now, not in a request
        p.predict(np.full((64, 64, 3), 128, np.uint8), 0.9)
    except Exception as exc:
        return Model(None, f"the rank predictor failed a test prediction ({exc}); automatic rank uses the exact SSIM search")
    return Model(p, text)


# ----------------------------------------------------------------------------
# measuring


class Scorer:
    """PSNR and SSIM against one 8-bit reference image, as :func:`svdk.compare.measure`.

    Alpha is left out; SSIM is the mean over colour channels of
    scikit-image's SSIM (:func:`svdk.metrics.ssim`: 7x7 uniform window,
    sample covariance, the interior averaged), computed here from exact
    integer window sums rather than float box filters. Every quantity SSIM
    needs is a sum over a window of 8-bit values or of their products, so
    with ``N`` pixels per window and sums ``Sx``, ``Sy``, ``Sxx``, ``Syy``,
    ``Sxy``::

        SSIM = (2 Sx Sy + c1 N²) (2 (N Sxy - Sx Sy) + c2 N (N-1))
               / ((Sx² + Sy² + c1 N²) (N Sxx - Sx² + N Syy - Sy² + c2 N (N-1)))

    where every term but the constants is an exact int32 (at most about
    1.6e8 for a 7x7 window). Integer sums of shifted slices cost less than
    float box filters, the reference's sums are computed once, and the work
    goes in strips of rows small enough to stay in the processor's cache:
    about three times faster than :class:`svdk.metrics.PlaneScorer` and
    seven times faster than :func:`svdk.metrics.ssim`. scikit-image rounds
    in its float filters, so the values agree with :func:`svdk.metrics.ssim`
    to rounding (about 1e-14; a test checks 1e-12), not bit for bit. PSNR is
    :func:`svdk.metrics.psnr`'s value exactly (the sum of squared integer
    errors is exact).
    """

    #: rows of SSIM map computed at once: small enough for the cache, large
    #: enough that numpy's per-call cost does not matter
    STRIP = 64

    def __init__(self, colour: np.ndarray):
        if colour.dtype != np.uint8:
            raise ValueError(f"the reference must be 8-bit; got {colour.dtype}")
        self.ref = colour
        self._ref16 = colour.astype(np.int16)
        h, w = colour.shape[:2]
        self.win = metrics.ssim_window(h, w)
        if self.win is None:
            raise ValueError(f"SSIM is undefined for a {w}x{h} image (a side under 3 pixels)")
        n = self.win * self.win
        self._n = n
        self._k1 = (0.01 * metrics.DATA_RANGE) ** 2 * n * n  # c1 N²
        self._k2 = (0.03 * metrics.DATA_RANGE) ** 2 * n * (n - 1)  # c2 N (N-1)
        self._planes = []
        for x in _planes(colour):
            sx = _window_sums(x, self.win)
            sxx = _window_sums(np.multiply(x, x, dtype=np.uint16), self.win)
            sx2 = sx * sx
            # the reference's parts of the two denominators, constants included
            self._planes.append((x, sx, sx2 + self._k1, (n * sxx - sx2) + self._k2))

    def __call__(self, decoded: np.ndarray) -> tuple[float, float]:
        dec = _colour(decoded)
        if dec.shape != self.ref.shape:
            raise ValueError(f"shapes differ: {self.ref.shape} and {dec.shape}")
        if dec.dtype != np.uint8:
            raise ValueError(f"the decoded image must be 8-bit; got {dec.dtype}")
        ssims = [self._ssim(plane, y) for plane, y in zip(self._planes, _planes(dec))]
        return self._psnr(dec), float(np.mean(ssims))

    def psnr(self, decoded: np.ndarray) -> float:
        """PSNR alone (the progressive previews show no SSIM)."""
        dec = _colour(decoded)
        if dec.shape != self.ref.shape:
            raise ValueError(f"shapes differ: {self.ref.shape} and {dec.shape}")
        return self._psnr(dec)

    def _psnr(self, dec: np.ndarray) -> float:
        sse = int(np.square(np.subtract(self._ref16, dec), dtype=np.int32).sum(dtype=np.int64))
        mse = sse / dec.size
        # the expression of scikit-image's peak_signal_noise_ratio (np.log10 rounds as it does)
        return math.inf if mse == 0 else float(10 * np.log10((metrics.DATA_RANGE**2) / mse))

    def _ssim(self, plane, y: np.ndarray) -> float:
        x, sx_all, d1_all, d2_all = plane
        win, n, step = self.win, self._n, self.STRIP
        rows = sx_all.shape[0]
        total = 0.0
        for r0 in range(0, rows, step):
            r1 = min(rows, r0 + step)
            span = slice(r0, r1 + win - 1)
            ys, xs = y[span], x[span]
            sy = _window_sums(ys, win)
            syy = _window_sums(np.multiply(ys, ys, dtype=np.uint16), win)
            sxy = _window_sums(np.multiply(xs, ys, dtype=np.uint16), win)
            p = sx_all[r0:r1] * sy  # Sx Sy
            sxy *= n
            sxy -= p  # N Sxy - Sx Sy
            num = np.multiply(p, 2.0)
            num += self._k1
            num2 = np.multiply(sxy, 2.0)
            num2 += self._k2
            num *= num2
            sy *= sy  # Sy²
            syy *= n
            syy -= sy  # N Syy - Sy²
            den = np.add(syy, d2_all[r0:r1])
            den *= np.add(sy, d1_all[r0:r1])
            num /= den
            total += float(num.sum(dtype=np.float64))
        return total / sx_all.size


def _planes(image: np.ndarray) -> list[np.ndarray]:
    """The channels of an image as contiguous 2-D arrays."""
    if image.ndim == 2:
        return [np.ascontiguousarray(image)]
    return [np.ascontiguousarray(image[..., c]) for c in range(image.shape[2])]


def _window_sums(a: np.ndarray, win: int) -> np.ndarray:
    """int32 sums of ``a`` over every ``win`` x ``win`` window inside it (the 'valid' part).

    Shifted slices added in place: exact for 8-bit values and their products,
    and cheaper than a float filter.
    """
    h, w = a.shape
    hh, ww = h - win + 1, w - win + 1
    cols = a[:hh].astype(np.int32)
    for i in range(1, win):
        cols += a[i : i + hh]
    out = cols[:, :ww].copy()
    for j in range(1, win):
        out += cols[:, j : j + ww]
    return out


def _colour(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] in (2, 4):
        image = image[..., :-1]
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    return image


@dataclass
class Point:
    """One file on a rate-distortion curve."""

    codec: str
    param: int  # quality for JPEG/WebP, luma rank (or component count) for svdk
    bytes: int
    bpp: float
    psnr: float
    ssim: float


class Probe:
    """JPEG or WebP files of one image at the qualities asked, encoded once each.

    A probe outlives its request (see :func:`references`): it keeps each
    file's bytes and scores, never the pixels. A file is decoded only when
    it is scored (the size search needs none), and each quality is scored
    once. Scoring takes the request's :class:`Scorer` (which is large, so no
    probe keeps one).
    """

    def __init__(self, codec: str, colour: np.ndarray):
        self.codec = codec
        self.colour = colour
        self.lo, self.hi = baselines.QUALITIES[codec]
        self._coded: dict[int, baselines.Coded] = {}  # decoded is None
        self._scores: dict[int, tuple[float, float]] = {}
        self.npx = colour.shape[0] * colour.shape[1]

    def coded(self, q: int) -> baselines.Coded:
        """The file at quality ``q`` (its ``decoded`` is None: see :meth:`score`)."""
        if q not in self._coded:
            self._coded[q] = baselines.encode(self.colour, self.codec, q, decode=False)
        return self._coded[q]

    def size(self, q: int) -> int:
        return self.coded(q).nbytes

    def score(self, q: int, scorer: Scorer) -> tuple[float, float]:
        """PSNR and SSIM of quality ``q``, measured once."""
        if q not in self._scores:
            decoded = baselines.decode(self.coded(q).data, self.colour.ndim == 2)
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
        """:func:`svdk.baselines.match_size`: highest quality whose file is at most ``nbytes``.

        Sizes are taken to grow with quality, as baselines' bisection does,
        and then the same four qualities past the answer are tried.
        """
        fits = lambda q: self.size(q) <= nbytes  # noqa: E731
        # list() copies at once: another request on the same image may add files meanwhile
        known = {q: float(c.nbytes) for q, c in list(self._coded.items())}
        over = first_reaching(lambda q: float(self.size(q)), nbytes + 1, self.lo, self.hi, known, scale="log")
        q = None if over == self.lo else (self.hi if over is None else over - 1)
        look = getattr(baselines, "_LOOKAHEAD", 4)  # baselines' look past the bisection
        first = self.lo if q is None else q + 1
        for up in range(first, min(first - 1 + look, self.hi) + 1):
            if fits(up):
                q = up
        if q is None:
            return None
        for up in range(q + 1, min(q + look, self.hi) + 1):
            if fits(up):
                q = up
        return q

    def match_ssim(self, target: float, scorer: Scorer) -> int | None:
        """:func:`svdk.baselines.match_ssim`: lowest quality whose SSIM reaches ``target``."""
        known = {q: s for q, (_, s) in list(self._scores.items())}  # copied at once, as above
        return first_reaching(lambda q: self.score(q, scorer)[1], target, self.lo, self.hi, known, scale="ssim")


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

    ``f`` is taken to grow with ``q`` (as :mod:`svdk.baselines`' bisection
    takes it), so any search finds the same ``q``. This one starts from the
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


# ----------------------------------------------------------------------------
# the report


@dataclass
class Preview:
    rank: int
    image: np.ndarray
    psnr: float
    ssim: float | None


@dataclass
class Report:
    """Everything the page shows about one image."""

    prepared: Prepared
    settings: Settings
    encoded: svdk.Encoded
    decoded: np.ndarray
    policy: str  # what chose the ranks: "cnn", "quality" or "fixed"
    predicted: int | None  # the CNN's luma rank, before checking
    rows: list[Row]  # svdk, png, then jpeg/webp at same size and same SSIM
    files: dict[str, bytes]  # "jpeg same size" etc. -> the real file bytes
    curves: dict[str, list[Point]]
    current: Point
    spectrum: np.ndarray
    spectrum_label: str
    previews: list[Preview]
    timings: dict[str, float | bool]
    notes: list[str] = field(default_factory=list)

    @property
    def final_rank(self) -> int:
        return int(self.encoded.ranks[0])

    @property
    def png_bytes(self) -> int | None:
        for r in self.rows:
            if r.codec == "png":
                return r.bytes
        return None

    def summary(self) -> dict:
        """The svdk figures of the result table."""
        enc, row = self.encoded, self.rows[0]
        png = self.png_bytes
        return {
            "bytes": enc.nbytes,
            "bpp": enc.bpp,
            "psnr": row.psnr if row.psnr is not None and math.isfinite(row.psnr) else None,
            "ssim": row.ssim,
            "png_bytes": png,
            "ratio_vs_png": (png / enc.nbytes) if png else None,
            "predicted_rank": self.predicted,
            "final_rank": self.final_rank,
            "ranks": list(enc.ranks),
            "seconds_encode": enc.seconds,
            "seconds_total": self.timings.get("total"),
        }

    def to_dict(self) -> dict:
        """The JSON of the API: settings, svdk's figures, every file compared, the curves."""
        enc = self.encoded
        names = {"gray": ("gray",), "rgb": ("R", "G", "B"), "ycbcr": ("Y", "Cb", "Cr")}[enc.mode]

        def finite(x):
            return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x

        return {
            "width": enc.width,
            "height": enc.height,
            "settings": self.settings.to_dict(),
            "svdk": {
                **self.summary(),
                "mode": enc.mode,
                "layout": enc.layout,
                "ranks_by_plane": dict(zip(names, enc.ranks)),
                "policy": self.policy,
                "reason": enc.reason,
            },
            "comparison": [{k: finite(v) for k, v in asdict(r).items()} for r in self.rows],
            "rate_distortion": {c: [asdict(p) for p in pts] for c, pts in self.curves.items()},
            "progressive": [{"rank": p.rank, "psnr": finite(p.psnr), "ssim": p.ssim} for p in self.previews],
            "notes": self.notes,
            "timings": self.timings,
        }


# ----------------------------------------------------------------------------
# encoding with the session kept


_CAPTURE = threading.local()
_BLAS = ThreadpoolController()


def _capturing(inner: str):
    def policy(session, target):
        _CAPTURE.session = session
        return policies.get(inner)(session, target)

    return policy


# The app asks svdk.encode for one of these: they run svdk's own policy and
# keep the session, whose SVDs the rate-distortion sweep then reuses.
for _name in ("cnn", "quality", "fixed"):
    policies.register(f"app-{_name}")(_capturing(_name))


def _encode(pixels: svdk.Pixels, settings: Settings, model: Model | None):
    """``(Encoded, session, policy name, predicted rank or None)``."""
    opts: dict = {"mode": settings.mode}
    predicted = None
    if settings.layout == "tiled":
        opts["tiled"] = True
    if not settings.auto:
        name = "fixed"
        opts["ranks"] = settings.ranks
        if pixels.is_gray:
            opts["ranks"] = settings.ranks[:1]
    else:
        opts["quality"] = ("ssim", settings.target)
        use_cnn = model is not None and model.predictor is not None and settings.layout == "global"
        name = "cnn" if use_cnn else "quality"
        if use_cnn:
            predicted = int(model.predictor.predict(pixels.color, settings.target))
    _CAPTURE.session = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", svdk.SvdkWarning)  # kept in Encoded.notes
        enc = svdk.encode(pixels, policy=f"app-{name}", **opts)
    session, _CAPTURE.session = _CAPTURE.session, None
    return enc, session, name, predicted


def _sweep_params(session, chosen: int) -> list[int]:
    plane = session.planes[0]
    top = plane.max_rank
    if session.tile:
        grid = np.unique(np.rint(np.geomspace(max(1, top / 400), top, 6)).astype(int))
        params = [int(n) for n in grid]
    else:
        params = [k for k in SWEEP_RANKS if k <= top]
        if top not in params and top < SWEEP_RANKS[-1]:
            params.append(top)
    return sorted(set(p for p in params if p != chosen))


def _svdk_points(session, encoded, scorer: Scorer, npx: int) -> list[Point]:
    points = []
    for k in _sweep_params(session, encoded.ranks[0]):
        data = session.pack(session.family(k))
        p, s = scorer(svdk.decompress(data))
        points.append(Point("svdk", k, len(data), 8 * len(data) / npx, p, s))
    return points


def _spectrum(session, pixels: svdk.Pixels) -> tuple[np.ndarray, str]:
    """Singular values of luma (global layout), or of every tile component of plane 0 (tiled)."""
    if session.tile:
        label = {"ycbcr": "luma (Y)", "gray": "gray", "rgb": "red"}[session.mode]
        return np.asarray(session.planes[0].order), f"{label}, all {session.tile}x{session.tile} tiles"
    if session.mode in ("ycbcr", "gray"):
        y, label = session.planes[0].data, ("luma (Y)" if session.mode == "ycbcr" else "gray")
    else:
        y, label = svdk.predictor.luma(pixels.color), "luma (Y) of the RGB image"
    # All of them, from the Gram matrix as svdk's exact decomposition does (no vectors needed),
    # and on one BLAS thread as svdk does: two threads made eigvalsh of a 512x512 matrix take
    # 2.5 s instead of 25 ms on a busy two-core machine.
    y = np.asarray(y, dtype=np.float64)
    with _BLAS.limit(limits=1, user_api="blas"):
        gram = y.T @ y if y.shape[0] >= y.shape[1] else y @ y.T
        values = np.linalg.eigvalsh(gram)
    return np.sqrt(np.clip(values[::-1], 0, None)), label


def _progressive(encoded, scorer: Scorer) -> list[Preview]:
    """Previews decoded from the same file; the last one is the whole file (its SSIM is the table's)."""
    top = encoded.tile if encoded.layout == "tiled" else max(encoded.ranks)
    out = []
    for j in [j for j in PROGRESSIVE_RANKS if j < top]:
        image = svdk.decompress(encoded.data, max_rank=j)
        out.append(Preview(j, image, scorer.psnr(image), None))
    return out


@dataclass
class References:
    """What the reference codecs give for one image, whatever the svdk settings."""

    probes: dict[str, Probe]
    png_bytes: int | None = None


#: Images whose reference results are kept, so that a new target or mode for
#: the same image re-encodes only svdk (``SVDK_APP_CACHE_IMAGES``; 0 keeps none).
CACHE_IMAGES = int(os.environ.get("SVDK_APP_CACHE_IMAGES", 8))
_CACHE: "OrderedDict[str, References]" = OrderedDict()
_CACHE_LOCK = threading.Lock()


def references(colour: np.ndarray) -> tuple[References, bool]:
    """The image's :class:`References` (new or kept from an earlier request) and whether it was kept."""
    key = f"{colour.shape}:{hashlib.sha1(np.ascontiguousarray(colour)).hexdigest()}"
    with _CACHE_LOCK:
        refs = _CACHE.get(key)
        if refs is not None:
            _CACHE.move_to_end(key)
            return refs, True
        refs = References({c: Probe(c, colour) for c in LOSSY if c in baselines.available()})
        if CACHE_IMAGES > 0:
            _CACHE[key] = refs
            while len(_CACHE) > CACHE_IMAGES:
                _CACHE.popitem(last=False)
        return refs, False


#: Workers for the sweeps and the matches (four tasks per request; two
#: requests may run at once); the caller's thread works too.
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="svdk-app")


def run(
    prepared: Prepared,
    settings: Settings,
    model: Model | None = None,
    *,
    progress: Callable[[float, str], None] | None = None,
) -> Report:
    """Encode, decode and compare; raises :class:`svdk.SvdkError` with a message for the page."""
    say = progress or (lambda f, d: None)
    t0 = time.perf_counter()
    pixels = prepared.pixels
    colour = pixels.color
    npx = pixels.width * pixels.height
    # The JPEG/WebP sweeps do not depend on svdk: they start first and run
    # while svdk chooses its rank.
    scorer = Scorer(colour)
    refs, cached = references(colour)
    probes = refs.probes

    def sweep(probe: Probe) -> None:
        for q in SWEEP_QUALITIES:  # the chart's points; they also bracket the searches
            probe.score(q, scorer)

    sweeps = {c: _POOL.submit(sweep, pr) for c, pr in probes.items()}
    matches: dict = {}
    try:
        say(0.05, "choosing the rank and encoding")
        enc, session, policy, predicted = _encode(pixels, settings, model)
        t_enc = time.perf_counter()
        say(0.35, "decoding and measuring; matching JPEG and WebP to svdk's size and SSIM")
        decoded = svdk.decompress(enc.data)
        p, s = scorer(decoded)
        current = Point("svdk", enc.ranks[0], enc.nbytes, enc.bpp, p, s)
        rows = [Row("svdk", "-", None, enc.nbytes, enc.bpp, p, s, enc.reason)]

        def codec_work(probe: Probe) -> tuple[int | None, int | None]:
            # Submitted after its sweep, so the sweep has a worker already: waiting cannot deadlock.
            # Size first: the same-size file is scored for the table anyway, and its score may
            # bracket the SSIM search. One search after the other, so that what each starts
            # from does not depend on which thread runs first.
            sweeps[probe.codec].result()
            q_size = probe.match_size(enc.nbytes)
            if q_size is not None:
                probe.score(q_size, scorer)
            return q_size, probe.match_ssim(s, scorer)

        matches = {c: _POOL.submit(codec_work, pr) for c, pr in probes.items()}
        # svdk's own curve, previews and spectrum on this thread, while the workers match
        say(0.5, "svdk's rate-distortion points, progressive previews and spectrum")
        svdk_curve = sorted([*_svdk_points(session, enc, scorer, npx), current], key=lambda q: q.bytes)
        previews = _progressive(enc, scorer)
        spectrum, label = _spectrum(session, pixels)
        # PNG is needed last: here it does not slow the sweeps that the matches wait for.
        say(0.7, "PNG")
        if refs.png_bytes is None:
            refs.png_bytes = baselines.encode(colour, "png", decode=False).nbytes
        png_bytes = refs.png_bytes
        say(0.8, "matching JPEG and WebP to svdk's size and SSIM")
        rows.append(Row("png", "lossless", None, png_bytes, 8 * png_bytes / npx, math.inf, 1.0))
        files = {}
        for codec, probe in probes.items():
            q_size, q_ssim = matches[codec].result()
            for match_name, q in (("same size", q_size), ("same SSIM", q_ssim)):
                if q is None:
                    rows.append(Row(codec, match_name, None, None, None, None, None,
                                    "not reachable in this codec's quality range"))
                    continue
                pt = probe.point(q)
                rows.append(Row(codec, match_name, q, pt.bytes, pt.bpp, pt.psnr, pt.ssim))
                files[f"{codec} {match_name}"] = probe.coded(q).data
        curves = {"svdk": svdk_curve, **{codec: probe.points() for codec, probe in probes.items()}}
    finally:
        # After a failure, what has not started is cancelled (a no-op after success).
        for future in [*sweeps.values(), *matches.values()]:
            future.cancel()
    prev = [*previews, Preview(max(enc.ranks) if enc.layout == "global" else enc.tile, decoded, p, s)]
    t_end = time.perf_counter()
    notes = [*prepared.notes, *(n for n in enc.notes if n not in prepared.notes)]
    if settings.auto and settings.layout == "tiled":
        notes.append("tiled layout: ranks differ per tile, so the smallest count of components reaching the "
                     "target is found by exact search; the CNN predicts ranks of the global layout only")
    elif settings.auto and policy == "quality" and settings.layout == "global":
        notes.append("no rank predictor loaded: the rank comes from the exact SSIM search")
    return Report(
        prepared=prepared,
        settings=settings,
        encoded=enc,
        decoded=decoded,
        policy=policy,
        predicted=predicted,
        rows=rows,
        files=files,
        curves=curves,
        current=current,
        spectrum=spectrum,
        spectrum_label=label,
        previews=prev,
        timings={
            "encode": round(t_enc - t0, 4),
            "compare": round(t_end - t_enc, 4),
            "total": round(t_end - t0, 4),
            # PNG, JPEG and WebP results kept from an earlier request on the same pixels
            "references_cached": cached,
        },
        notes=notes,
    )
