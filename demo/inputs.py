"""The app's input: an upload (or ``example:NAME``, or a shared image) and the settings, checked.

:func:`prepare` turns an upload into the pixels the app works on, applying
the app's size caps; :class:`Settings` holds what the user chose.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

import svdk

__all__ = ["AppError", "Settings", "Prepared", "prepare", "MAX_UPLOAD_BYTES", "WORK_PIXELS", "MIN_SIDE",
           "SSIM_RANGE", "MODES", "LAYOUTS", "TUNES"]

#: Uploads larger than this many bytes are refused before they are decoded.
MAX_UPLOAD_BYTES = int(os.environ.get("SVDK_APP_MAX_UPLOAD_BYTES", 25_000_000))
#: Images above this many pixels are downscaled (with a notice) before the
#: comparison; the svdk library and CLI take up to ``svdk.MAX_PIXELS``.
WORK_PIXELS = int(os.environ.get("SVDK_APP_MAX_PIXELS", 1_000_000))
#: SSIM needs a 7x7 window; smaller images are refused with a message.
MIN_SIDE = 8
#: Target SSIM range offered by the app.
SSIM_RANGE = (0.5, 0.99)
MODES = ("ycbcr", "rgb")
LAYOUTS = ("global", "tiled")
#: What the tiled layout's choice of components is tuned for (svdk's ``tune``).
TUNES = svdk.TUNES


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
    tune: str = "psnr"

    def __post_init__(self):
        lo, hi = SSIM_RANGE
        t = self.target
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not lo <= t <= hi:
            raise AppError(f"the target SSIM must be a number in [{lo}, {hi}]; got {t!r}")
        if self.mode not in MODES:
            raise AppError(f"colour mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        if self.layout not in LAYOUTS:
            raise AppError(f"layout must be one of {', '.join(LAYOUTS)}; got {self.layout!r}")
        if self.tune not in TUNES:
            raise AppError(f"tune must be one of {', '.join(TUNES)}; got {self.tune!r}")
        if self.tune != "psnr" and self.layout != "tiled":
            raise AppError(f"tuning for {self.tune.upper()} applies to the tiled layout; choose the tiled layout")
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
                "ranks": list(self.ranks) if self.ranks else None, "tune": self.tune}

    @classmethod
    def from_dict(cls, d: dict) -> "Settings":
        ranks = d.get("ranks")
        return cls(float(d.get("target", 0.9)), str(d.get("mode", "ycbcr")), str(d.get("layout", "global")),
                   tuple(ranks) if ranks else None, str(d.get("tune", "psnr")))


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
    original = f"{pixels.width}x{pixels.height}"
    pixels, note = _downscale(pixels, limit)
    if min(pixels.width, pixels.height) < MIN_SIDE:  # a very long, thin image shrinks below the window
        raise AppError(
            f"the image is {original}: brought down to the app's {limit / 1e6:g} megapixels it would be "
            f"{pixels.width}x{pixels.height}, under {MIN_SIDE} pixels on a side; crop it, or use the svdk "
            "command line, which takes it at full size"
        )
    if note:
        notes.append(note)
    if pixels.alpha is not None:
        notes.append("the alpha channel is stored losslessly by svdk; JPEG, WebP and the figures use the colour channels")
    return Prepared(pixels, notes, label)
