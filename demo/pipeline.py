"""The app's work, without Gradio: one prepared image and its settings in, every figure out.

:func:`run` encodes the pixels from :func:`demo.inputs.prepare` with svdk
and measures everything the page shows:

* the svdk file (rank chosen by the CNN predictor and checked, by the exact
  SSIM search in the tiled layout, or given by hand) and its decoded image;
* PNG, and JPEG and WebP at the same size and at the same SSIM as svdk;
* rate-distortion points of svdk, JPEG and WebP on this image;
* the singular value spectrum of the first plane;
* progressive previews decoded from the same file.

Everything goes through svdk's public API: :class:`svdk.Encoder` (one
decomposition serves the chosen file, the rate-distortion points and the
spectrum; the CNN runs once, inside the ``cnn`` policy),
:class:`svdk.metrics.Scorer` (every PSNR and SSIM), and
:class:`svdk.baselines.Probe` (JPEG and WebP files, and the same-size and
same-SSIM matches as ``svdk compare`` defines them).

Speed
-----
A request for an image not seen yet scores about 18 decoded images and
encodes about 12 WebP files (35 to 50 ms each), 13 JPEG files and one
optimized PNG (0.1 to 0.3 s), so:

* the JPEG and WebP sweeps and matches run in worker threads (Pillow, zlib
  and numpy release the GIL) while the request's own thread measures
  svdk's curve and previews and then encodes PNG (needed last, so it does
  not hold up the sweeps that the matches wait for);
* in the tiled layout svdk's own curve has :data:`TILED_SWEEP_POINTS` points
  up to twice the chosen count of components, not up to every component
  (that file is larger than the raw pixels and took 1.8 s of LZMA alone on
  a Kodak photo); LZMA and the tile decoder release the GIL, so half of the
  points are packed and scored in a worker thread. A tiled request on Kodak
  went from about 2.9 s to 1.6 s in-process on a loaded 2-core machine;
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

import svdk
from svdk import baselines
from svdk.baselines import Point, Probe
from svdk.compare import Row
from svdk.metrics import Scorer

from .inputs import Prepared, Settings
from .model import Model

__all__ = ["Point", "Preview", "Report", "References", "references", "run", "CACHE_IMAGES"]

#: Qualities measured for the JPEG and WebP curves: where every match starts (the matching adds more).
SWEEP_QUALITIES = baselines.START_QUALITIES
#: Luma ranks of svdk's curve in the global layout (those above the image's
#: rank are dropped).
SWEEP_RANKS = (4, 32, 160)
#: Tiled layout: points of svdk's curve (component counts, geometric, up to
#: TILED_SWEEP_SPAN times the chosen count).
TILED_SWEEP_POINTS = 4
TILED_SWEEP_SPAN = 2
#: Progressive previews: these ranks and the chosen one.
PROGRESSIVE_RANKS = (1, 5, 20)
LOSSY = ("jpeg", "webp")


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
    rows: list[Row]  # svdk, png, then jpeg/webp at same size and same SSIM
    files: dict[str, bytes]  # "jpeg same size" etc. -> the real file bytes
    curves: dict[str, list[Point]]
    current: Point
    spectrum: np.ndarray
    spectrum_label: str
    previews: list[Preview]
    timings: dict[str, float | bool]
    notes: list[str] = field(default_factory=list)
    #: the decomposition and the reference's scorer, kept for the rank explorer
    encoder: svdk.Encoder | None = field(default=None, repr=False, compare=False)
    scorer: Scorer | None = field(default=None, repr=False, compare=False)

    @property
    def policy(self) -> str:
        """What chose the ranks: ``"cnn"``, ``"quality"`` or ``"fixed"``."""
        return self.encoded.policy

    @property
    def predicted(self) -> int | None:
        """The CNN's luma rank before checking (None: no prediction)."""
        return self.encoded.predicted_rank

    @property
    def final_rank(self) -> int:
        """Luma rank (tiled layout: luma components kept)."""
        return int(self.encoded.components[0])

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
# encoding


def _encode(pixels: svdk.Pixels, settings: Settings, model: Model | None):
    """``(Encoded, the encoder)``: the encoder keeps the SVDs for the sweep."""
    opts: dict = {}
    if not settings.auto:
        opts["ranks"] = settings.ranks[:1] if pixels.is_gray else settings.ranks
    else:
        opts["quality"] = ("ssim", settings.target)
        if model is not None and (model.tiled if settings.layout == "tiled" else model.predictor) is not None:
            opts["policy"] = "cnn"
    encoder = svdk.Encoder(pixels, mode=settings.mode, tiled=settings.layout == "tiled", tune=settings.tune)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", svdk.SvdkWarning)  # kept in Encoded.notes
        enc = encoder.encode(**opts)
    return enc, encoder


def _sweep_params(encoder: svdk.Encoder, chosen: int) -> list[int]:
    top = encoder.max_ranks[0]
    if encoder.tile:
        # Up to TILED_SWEEP_SPAN times the chosen count: beyond it the file is larger than the
        # raw pixels (every component of every tile: over 1 MB for a Kodak image, and 1.8 s of LZMA).
        hi = min(top, TILED_SWEEP_SPAN * max(chosen, 1))
        grid = np.unique(np.rint(np.geomspace(max(1, hi / 100), hi, TILED_SWEEP_POINTS)).astype(int))
        params = [int(n) for n in grid]
    else:
        params = [k for k in SWEEP_RANKS if k <= top]
        if top not in params and top < SWEEP_RANKS[-1]:
            params.append(top)
    return sorted(set(p for p in params if p != chosen))


def _svdk_points(encoder: svdk.Encoder, encoded, scorer: Scorer, npx: int) -> list[Point]:
    def point(k: int) -> Point:
        ranks = encoder.ranks_for(k)
        data = encoder.pack(ranks)
        # what the file decodes to, from the planes the encoder has just reconstructed (tested equal)
        p, s = scorer(encoder.decoded(ranks))
        return Point("svdk", k, len(data), 8 * len(data) / npx, p, s)

    params = _sweep_params(encoder, encoded.components[0])
    if encoder.tile:  # LZMA and the tile decoder release the GIL: one point beside this thread
        later = [_SVDK_POOL.submit(point, k) for k in params[1::2]]
        here = [point(k) for k in params[0::2]]
        return sorted([*here, *(f.result() for f in later)], key=lambda q: q.param)
    return [point(k) for k in params]


def _spectrum(encoder: svdk.Encoder) -> tuple[np.ndarray, str]:
    """Singular values of the first plane (global layout), or of every tile component of it (tiled)."""
    label = {"ycbcr": "luma (Y)", "gray": "gray", "rgb": "red (R)"}[encoder.mode]
    if encoder.tile:
        label = f"{label}, all {encoder.tile}x{encoder.tile} tiles"
    return encoder.spectrum(plane=0), label


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


# The app runs several encodes at once in the threads below: svdk's own second
# thread per encode would only compete with them (measured: a tiled request
# took 2.0 s with it, 1.7 s without).
os.environ.setdefault("SVDK_NUM_THREADS", "1")

#: Workers for svdk's own tiled sweep points (their own pool: never queued behind the matches).
_SVDK_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="svdk-sweep")
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
        enc, encoder = _encode(pixels, settings, model)
        t_enc = time.perf_counter()
        say(0.35, "decoding and measuring; matching JPEG and WebP to svdk's size and SSIM")
        decoded = svdk.decompress(enc.data)
        p, s = scorer(decoded)
        current = Point("svdk", enc.components[0], enc.nbytes, enc.bpp, p, s)
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
        svdk_curve = sorted([*_svdk_points(encoder, enc, scorer, npx), current], key=lambda q: q.bytes)
        previews = _progressive(enc, scorer)
        spectrum, label = _spectrum(encoder)
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
        how = ("predicted from the tile spectrum, then checked" if enc.policy == "cnn"
               else "found by the exact search (no tiled-layout predictor loaded)")
        notes.append("tiled layout: ranks differ per tile; the count of luma components kept over all tiles "
                     f"is {how}")
    elif settings.auto and enc.policy == "quality" and settings.layout == "global":
        notes.append("no rank predictor loaded: the rank comes from the exact SSIM search")
    return Report(
        prepared=prepared,
        settings=settings,
        encoded=enc,
        decoded=decoded,
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
        encoder=encoder,
        scorer=scorer,
    )

