"""The rank explorer: drag k, see the image, its scores and what it costs.

After a comparison the page keeps an :class:`Explorer` for the image (in an
:class:`ExplorerStore`, keyed by a random token the page holds in a
``gr.State``), and the explorer's slider asks :meth:`Explorer.view` for one
position at a time.

What the slider means
---------------------
Global layout
    ``k`` is the luma rank, from 1 to the file's own. The image is the first
    ``k`` components of **the same .svdk file** (progressive decoding,
    ``svdk.decompress(data, max_rank=k)``: chroma keeps ``min(k, its rank)``).
    The bytes quoted are those of the file svdk writes with the same
    components (``Encoder.pack``: luma ``k``, each other plane ``min(k, its
    rank)``): a prefix of a file is not a file, and svdk quantizes each file
    for its own ranks, so that file decodes close to, not exactly to, the
    image shown.
Tiled layout
    ``k`` is the count of luma components kept over all tiles, from 1 to the
    file's own; chroma follows as svdk chooses it. The tiled file is
    progressive per tile rank, not by count, so the image is the file svdk
    writes at that count, re-packed from the same decomposition (one LZMA
    pass, 15-50 ms on a Kodak image): the bytes and the image are the same file.

Each position also gives PSNR and SSIM (RGB) against the original, the
share of luma's spectral energy kept (squared singular values; in the tiled
layout those of the tiles, whose means are stored apart), and the count of
numbers the kept components hold, ``k (m + n + 1)`` for an ``m x n`` plane
(tiled: ``k (2t + 1)`` for ``t x t`` tiles), against the ``m n`` pixels.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

import svdk
from svdk.metrics import Scorer

from .inputs import AppError

__all__ = ["Explorer", "ExplorerStore", "View", "MAX_EXPLORERS"]

#: Explorers kept (one per recent comparison; each holds the image's
#: decomposition: about 30 MB for a 768x512 photo, either layout). ``SVDK_APP_EXPLORERS``.
MAX_EXPLORERS = int(os.environ.get("SVDK_APP_EXPLORERS", 8))
#: Positions of one explorer kept (a drag back and forth costs nothing twice).
KEEP_VIEWS = 64

_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="svdk-explore")


@dataclass
class View:
    """One position of the slider."""

    k: int
    image_path: str
    psnr: float
    ssim: float
    energy: float  # share of luma's spectral energy kept, 0..1
    numbers: int  # numbers the kept luma components hold
    pixels: int  # m n
    file_bytes: int  # the real file at this position
    bpp: float
    seconds: float
    caption: str


def _fmt_db(x: float) -> str:
    return "lossless" if x == float("inf") else f"{x:.2f} dB"


class Explorer:
    """One compared image: its file, decomposition, reference and spectrum."""

    def __init__(self, encoder: svdk.Encoder, encoded: svdk.Encoded, scorer: Scorer, folder: Path,
                 label: str = "luma"):
        self.encoder = encoder
        self.data = encoded.data
        self.layout = encoded.layout
        self.tile = encoded.tile
        self.mode = encoded.mode
        self.width, self.height = encoded.width, encoded.height
        self.maximum = int(encoded.components[0])  # the file's own k
        self.ranks = tuple(int(r) for r in encoded.components)
        self.scorer = scorer
        self.folder = folder
        s = np.asarray(encoder.spectrum(plane=0), dtype=np.float64)
        self.singular_values = s  # for the chart
        self.spectrum_label = label
        energy = np.cumsum(s * s)
        self.cumulative = energy / energy[-1] if energy.size and energy[-1] > 0 else np.ones_like(energy)
        self._views: OrderedDict[int, View] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def what(self) -> str:
        """What k counts, for the slider's label."""
        if self.layout == "tiled":
            return f"luma components kept over all {self.tile}x{self.tile} tiles"
        return "luma rank k (chroma keeps at most its own rank)" if self.mode == "ycbcr" else "rank k of every plane"

    def check(self, k) -> int:
        """``k`` as an int in [1, maximum], or :class:`AppError` saying the range."""
        if isinstance(k, bool) or k is None:
            raise AppError(f"k must be a whole number in [1, {self.maximum}] for this file; got {k!r}")
        try:
            f = float(k)
        except (TypeError, ValueError):
            raise AppError(f"k must be a whole number in [1, {self.maximum}] for this file; got {k!r}") from None
        if not f.is_integer() or not 1 <= f <= self.maximum:
            raise AppError(f"k must be a whole number in [1, {self.maximum}] for this file; got {k!r}")
        return int(f)

    def numbers(self, k: int) -> int:
        if self.layout == "tiled":
            return k * (2 * self.tile + 1)
        return k * (self.width + self.height + 1)

    def seed(self, path: str, psnr: float, ssim: float) -> View:
        """The view at the file's own k, from what the comparison measured already."""
        k, npx = self.maximum, self.width * self.height
        numbers = self.numbers(k)
        v = View(k, path, psnr, ssim, float(self.cumulative[k - 1]) if self.cumulative.size >= k else 1.0,
                 numbers, npx, len(self.data), 8 * len(self.data) / npx, 0.0, "")
        v.caption = self._caption(v)
        with self._lock:
            self._views[k] = v
        return v

    def _caption(self, v: View) -> str:
        k, npx, numbers = v.k, v.pixels, v.numbers
        if self.layout == "tiled":
            head = (f"**{k:,} of {self.maximum:,} luma components** (over all {self.tile}x{self.tile} tiles; "
                    f"the file svdk writes at this count)")
            cost = f"{k:,} x ({self.tile} + {self.tile} + 1) = **{numbers:,} numbers** (plus one mean per tile)"
            real = "the file at this count"
            kept = f"energy of the tiles kept **{100 * v.energy:.2f} %** (luma; tile means stored apart)"
        else:
            head = f"**k = {k} of {self.maximum}** (the first {k} components of this file, decoded progressively)"
            cost = f"{k} x ({self.height} + {self.width} + 1) = **{numbers:,} numbers**"
            real = "this file" if k == self.maximum else "a file written with these components"
            kept = f"luma energy kept **{100 * v.energy:.2f} %**"
        return (
            f"{head}: PSNR **{_fmt_db(v.psnr)}**, SSIM **{v.ssim:.4f}**; {kept}. "
            f"Storing it: {cost} against {npx:,} pixels ({100 * numbers / npx:.1f} %); "
            f"{real}: **{v.file_bytes:,} bytes** ({v.bpp:.3f} bpp)."
        )

    def view(self, k) -> View:
        """Decode, score and describe position ``k`` (kept for the next :data:`KEEP_VIEWS` asks)."""
        k = self.check(k)
        with self._lock:
            if k in self._views:
                self._views.move_to_end(k)
                return self._views[k]
        t0 = time.perf_counter()
        enc = self.encoder
        if self.layout == "tiled":
            data = enc.pack(enc.ranks_for(k))
            image = svdk.decompress(data)
            nbytes = len(data)
        else:  # the file holding the components shown: luma k, every other plane min(k, its rank)
            ranks = tuple(min(k, r) for r in self.ranks)
            packed = _POOL.submit(lambda: len(self.data) if ranks == self.ranks else len(enc.pack(ranks)))
            image = svdk.decompress(self.data, max_rank=k)
        path = self.folder / f"k{k}-{secrets.token_hex(4)}.png"
        written = _POOL.submit(_save_png, path, image)
        psnr, ssim = self.scorer(image)
        if self.layout != "tiled":
            nbytes = packed.result()
        written.result()
        npx = self.width * self.height
        energy = float(self.cumulative[min(k, self.cumulative.size) - 1]) if self.cumulative.size else 1.0
        v = View(k, str(path), psnr, ssim, energy, self.numbers(k), npx, nbytes, 8 * nbytes / npx,
                 round(time.perf_counter() - t0, 4), "")
        v.caption = self._caption(v)
        with self._lock:
            self._views[k] = v
            while len(self._views) > KEEP_VIEWS:
                old = self._views.popitem(last=False)[1]
                if old.k != self.maximum:  # the seed is the page's decoded PNG
                    Path(old.image_path).unlink(missing_ok=True)
        return v


def _save_png(path: Path, image: np.ndarray) -> None:
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    Image.fromarray(image).save(path, "PNG", compress_level=1)


class ExplorerStore:
    """The latest :data:`MAX_EXPLORERS` explorers, by random token; older ones expire."""

    def __init__(self, limit: int | None = None):
        self.limit = MAX_EXPLORERS if limit is None else limit
        self._items: OrderedDict[str, Explorer] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, explorer: Explorer) -> str:
        token = secrets.token_urlsafe(12)
        with self._lock:
            self._items[token] = explorer
            while len(self._items) > max(self.limit, 1):
                self._items.popitem(last=False)
        return token

    def get(self, token) -> Explorer:
        with self._lock:
            explorer = self._items.get(token) if isinstance(token, str) else None
            if explorer is not None:
                self._items.move_to_end(token)
        if explorer is None or not explorer.folder.is_dir():
            raise AppError(
                "this comparison has expired on the server (the explorer keeps the latest "
                f"{self.limit} images); press Compress to explore it again"
            )
        return explorer
