"""svdk side by side with PNG, JPEG, WebP and AVIF on one image.

:func:`compare` encodes an image with svdk, then finds for each lossy
reference codec the file of the same size and the file of the same SSIM, as
:mod:`svdk.baselines` defines them (:func:`~svdk.baselines.match_size`,
:func:`~svdk.baselines.match_ssim`). PNG is the lossless reference. All
numbers come from real file bytes and decoded 8-bit images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from . import baselines, metrics
from ._encoder import Encoded, decode, encode
from ._image import ImageLike, load_image

__all__ = ["Row", "Comparison", "compare", "measure"]


@dataclass
class Row:
    """One file in a comparison."""

    codec: str
    match: str  # "-", "lossless", "same size", "same SSIM"
    quality: int | None
    bytes: int | None
    bpp: float | None
    psnr: float | None
    ssim: float | None
    note: str = ""


@dataclass
class Comparison:
    width: int
    height: int
    encoded: Encoded
    decoded: np.ndarray
    rows: list[Row]

    def to_dict(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "svdk": record(self.encoded, self.rows[0]),
            "rows": [asdict(r) for r in self.rows],
        }


def measure(reference: np.ndarray, decoded: np.ndarray) -> tuple[float, float | None]:
    """PSNR and SSIM of the colour channels (alpha is lossless and left out)."""
    return metrics.Scorer(reference)(decoded)


def record(enc: Encoded, row: Row) -> dict:
    """The machine-readable summary of one svdk encoding."""
    names = enc.plane_names
    return {
        "width": enc.width,
        "height": enc.height,
        "mode": enc.mode,
        "subsampling": ("4:2:0" if enc.subsampled else "4:4:4") if enc.mode == "ycbcr" else None,
        "layout": enc.layout,
        "tune": enc.tune,
        "ranks": dict(zip(names, enc.ranks)),
        "components": dict(zip(names, enc.components)),
        "policy": enc.policy,
        "predicted_rank": enc.predicted_rank,
        "correction": enc.correction,
        "model": enc.model,
        "measured": enc.measured,
        "reason": enc.reason,
        "evaluations": enc.evaluations,
        "bytes": enc.nbytes,
        "bpp": enc.bpp,
        "psnr": _finite(row.psnr),
        "ssim": row.ssim,
        "seconds": round(enc.seconds, 4),
        "notes": list(enc.notes),
    }


def _finite(x: float | None) -> float | None:
    """JSON has no infinity: a lossless PSNR is reported as None."""
    return None if x is None or x == float("inf") else x


def _row(codec: str, match: str, coded, reference, npx) -> Row:
    if coded is None:
        return Row(codec, match, None, None, None, None, None, "not reachable in this codec's quality range")
    p, s = measure(reference, coded.decoded)
    return Row(codec, match, coded.quality, coded.nbytes, 8 * coded.nbytes / npx, p, s)


def compare(image: ImageLike, *, codecs: list[str] | None = None, **options) -> Comparison:
    """Encode ``image`` with svdk (``options`` as :func:`svdk.compress`) and with the references."""
    pixels = load_image(image)
    enc = encode(pixels, **options)
    dec = decode(enc.data)
    original = pixels.merged()
    p, s = measure(original, dec)
    npx = pixels.width * pixels.height
    rows = [Row("svdk", "-", None, enc.nbytes, enc.bpp, p, s, enc.reason)]
    colour = pixels.color
    scorer = metrics.Scorer(colour) if s is not None else None
    have = baselines.available()
    wanted = [c for c in (codecs or have) if c in have]
    if "png" in wanted:
        rows.append(_row("png", "lossless", baselines.encode(colour, "png"), colour, npx))
    for codec in ("jpeg", "webp", "avif"):
        if codec not in wanted:
            continue
        probe = baselines.Probe(codec, colour)  # the two matches share its files
        rows.append(_row(codec, "same size", baselines.match_size(colour, codec, enc.nbytes, probe=probe), colour, npx))
        if s is not None:
            same = baselines.match_ssim(colour, codec, s, probe=probe, scorer=scorer)
            rows.append(_row(codec, "same SSIM", same, colour, npx))
    return Comparison(pixels.width, pixels.height, enc, dec, rows)
