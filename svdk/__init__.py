"""svdk: image compression by truncated SVD, with honest measurements.

>>> import numpy as np, svdk
>>> image = (np.add.outer(np.arange(32), np.arange(48)) * 2).astype(np.uint8)
>>> data = svdk.compress(image, rank=4)
>>> data[:4]
b'SVDK'
>>> svdk.decompress(data).shape
(32, 48)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import format, metrics, policies
from ._codec import CHROMA_RANK_FRACTION
from ._encoder import Encoded, Encoder, decode, encode
from ._errors import FormatError, ImageError, MissingFileError, OptionError, SvdkError, SvdkWarning
from ._image import EXAMPLES, ImageLike, Pixels, load_image
from ._tiled import TUNES
from .format import MAX_PIXELS
from . import predictor  # registers the cnn and cnn-only policies; the network's runtime loads only when used

__version__ = "0.2.0"

__all__ = [
    "compress",
    "decompress",
    "encode",
    "Encoder",
    "compress_file",
    "decompress_file",
    "info",
    "load_image",
    "Encoded",
    "Pixels",
    "SvdkError",
    "FormatError",
    "ImageError",
    "OptionError",
    "MissingFileError",
    "SvdkWarning",
    "CHROMA_RANK_FRACTION",
    "MAX_PIXELS",
    "EXAMPLES",
    "TUNES",
    "format",
    "metrics",
    "policies",
    "__version__",
]


def compress(
    image: ImageLike,
    *,
    mode: str = "ycbcr",
    subsampling: str | None = "4:2:0",
    rank: int | None = None,
    ranks=None,
    quality=None,
    size=None,
    energy: float | None = None,
    policy: str | None = None,
    qstep: float | None = None,
    tiled: bool = False,
    tile_size: int | None = None,
    tune: str = "psnr",
) -> bytes:
    """Compress ``image`` into the bytes of an .svdk file.

    Parameters
    ----------
    image : ndarray, PIL.Image.Image, path, bytes or ``"example:NAME"``
        ``uint8`` (or ``uint16``, ``bool``, floats in [0, 1]) arrays of shape
        ``(H, W)``, ``(H, W, 3)`` or with alpha ``(H, W, 2)``/``(H, W, 4)``.
    mode : {'ycbcr', 'rgb'}, optional
        Colour planes to code (default ``'ycbcr'``); grayscale images are
        always one plane.
    subsampling : {'4:2:0', '4:4:4'}, optional
        Chroma subsampling in ycbcr mode (default ``'4:2:0'``).
    rank : int, optional
        One rank: all planes in rgb mode, luma in ycbcr mode (chroma gets
        ``CHROMA_RANK_FRACTION`` of it).
    ranks : sequence of int, optional
        One rank per plane (R, G, B or Y, Cb, Cr).
    quality : str or (str, float), optional
        ``"ssim:0.95"`` or ``"psnr:32"``: smallest ranks reaching the target.
        This is the default policy, with ``"ssim:0.90"``.
    size : int or str, optional
        Byte budget such as ``30000`` or ``"30KB"``: best quality that fits.
    energy : float, optional
        Fraction of spectral energy to keep per plane.
    policy : str, optional
        A registered rank policy to use with the target above
        (:func:`svdk.policies.names`); one that takes another kind of
        target, or does not handle the layout, raises :class:`OptionError`
        naming the policies that fit.
    qstep : float, optional
        Quantization step of the weakest kept component of every plane
        (default: chosen per plane); stronger components get finer steps,
        in proportion to ``1 / sqrt(singular value)``.
    tiled : bool, optional
        Use the tiled layout: an SVD per tile (8x8 by default, ``tile_size``
        to change) with per-tile ranks from one threshold. It takes a
        ``quality``, ``size`` or ``energy`` target. Usually much smaller
        files than the global layout at the same quality.
    tile_size : int, optional
        Tile side of the tiled layout (4 to 64; default 8).
    tune : {'psnr', 'ssim'}, optional
        What the tiled layout's choice of components is tuned for. ``'psnr'``
        (default) keeps the largest singular values of each plane: the best
        PSNR for the bytes. ``'ssim'`` weighs them by their tiles' contrast
        first, keeping more faint detail in flat regions and less in busy
        ones, with a coarser step: better SSIM and MS-SSIM for the bytes
        (at SSIM 0.90, files about 10 % smaller on photos; 11 to 14 % fewer
        bytes at the same MS-SSIM over 0.25-1 bpp), at some cost in PSNR
        (:data:`svdk.TUNES`). Files decode the same way either way.

    Notes
    -----
    In ycbcr mode a quality target is met on luma; the RGB figures of the
    decoded image are usually a little lower, as chroma has fewer components.

    Returns
    -------
    bytes
        The .svdk file. Use :func:`encode` to also learn the ranks chosen,
        and :class:`Encoder` to code one image at many ranks.
    """
    return encode(
        image,
        mode=mode,
        subsampling=subsampling,
        rank=rank,
        ranks=ranks,
        quality=quality,
        size=size,
        energy=energy,
        policy=policy,
        qstep=qstep,
        tiled=tiled,
        tile_size=tile_size,
        tune=tune,
    ).data


def decompress(data: bytes | bytearray | memoryview, *, max_rank: int | None = None) -> np.ndarray:
    """Decode .svdk bytes to a ``uint8`` array ``(H, W)`` or ``(H, W, C)``.

    ``C`` is 3 for colour, plus one for alpha (``(H, W, 2)`` for gray with
    alpha, ``(H, W, 4)`` for colour with alpha). ``max_rank=j`` decodes
    only the first ``j`` components of every plane: a progressive preview
    from the same file.
    """
    return decode(data, max_rank=max_rank)


def _read(path: str | os.PathLike) -> bytes:
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise MissingFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise FormatError(f"{path} is a folder, not an .svdk file") from None
    except OSError as exc:
        raise FormatError(f"{path}: {exc.strerror or exc}") from None


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` is either complete or untouched."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def compress_file(src: ImageLike, dst: str | os.PathLike, **options) -> Encoded:
    """Compress the image ``src`` and write the .svdk file ``dst``."""
    result = encode(src, **options)
    _write_atomic(Path(dst), result.data)
    return result


_OUTPUT_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
}


def decompress_file(
    src: str | os.PathLike, dst: str | os.PathLike, *, max_rank: int | None = None
) -> np.ndarray:
    """Decode the .svdk file ``src`` and write the image ``dst`` (PNG by default)."""
    from PIL import Image
    import io

    dst = Path(dst)
    fmt_name = _OUTPUT_FORMATS.get(dst.suffix.lower())
    if fmt_name is None:
        raise OptionError(
            f"cannot tell the image format from {dst.name!r}; use one of: {', '.join(_OUTPUT_FORMATS)}"
        )
    image = decode(_read(src), max_rank=max_rank)
    if fmt_name in ("JPEG", "BMP") and image.ndim == 3 and image.shape[2] in (2, 4):
        raise OptionError(f"{dst.suffix} cannot hold alpha; write a .png instead")
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, fmt_name)
    _write_atomic(dst, buf.getvalue())
    return image


def info(data: bytes | bytearray | memoryview | str | os.PathLike) -> dict:
    """The header of an .svdk file (bytes or path) as a plain dict.

    ``ranks`` is each plane's SVD rank (tiled layout: the largest rank of
    any tile), ``components`` how many components each plane keeps (tiled
    layout: summed over the tiles, read from the payload), as in
    :class:`Encoded`. ``deblock`` is each plane's deblocking strength
    (tiled layout, format 3.0; 0 where the filter is off).
    """
    if isinstance(data, (str, os.PathLike)):
        data = _read(data)
    h = format.read_header(data)
    if h.layout == "tiled":
        _, factors, _ = format.unpack(data)
        components = [int(f[0].sum()) for f in factors]
    else:
        components = list(h.ranks)
    return {
        "version": f"{h.version[0]}.{h.version[1]}",
        "width": h.width,
        "height": h.height,
        "mode": h.mode,
        "subsampling": "4:2:0" if h.subsampled else ("4:4:4" if h.mode == "ycbcr" else None),
        "alpha": h.alpha,
        "ranks": list(h.ranks),
        "components": components,
        "qsteps": [p.step for p in h.planes],
        "sample_bytes": [p.sample_bytes for p in h.planes],
        "layout": h.layout,
        "tile": h.tile or None,
        "coder": h.coder,
        "predictor": h.predictor,
        "deblock": [p.deblock for p in h.planes],
        "header_bytes": h.header_length,
        "payload_bytes": h.payload_length,
        "bytes": h.file_length,
        "bpp": metrics.bpp(h.file_length, h.width, h.height),
    }
