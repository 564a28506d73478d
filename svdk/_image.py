"""Turning what a user hands us (a path, a PIL image, an array) into pixels.

The result is always ``uint8``: ``(H, W)`` for grayscale or ``(H, W, 3)``
for colour, plus an optional ``(H, W)`` alpha plane.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ._errors import ImageError, MissingFileError, SvdkWarning
from .format import MAX_PIXELS

__all__ = ["Pixels", "load_image", "ImageLike", "EXAMPLES"]

ImageLike = Union[np.ndarray, Image.Image, str, os.PathLike, bytes]

#: Photos that ship with scikit-image, usable as ``example:NAME`` anywhere a
#: path is accepted.
EXAMPLES = ("astronaut", "coffee", "chelsea", "camera", "rocket", "immunohistochemistry")


@dataclass(frozen=True)
class Pixels:
    """Decoded input pixels."""

    color: np.ndarray  # uint8, (H, W) or (H, W, 3)
    alpha: np.ndarray | None  # uint8 (H, W) or None
    notes: tuple[str, ...] = ()

    @property
    def height(self) -> int:
        return self.color.shape[0]

    @property
    def width(self) -> int:
        return self.color.shape[1]

    @property
    def is_gray(self) -> bool:
        return self.color.ndim == 2

    def merged(self) -> np.ndarray:
        """Colour and alpha in one array, as the decoder returns them."""
        if self.alpha is None:
            return self.color
        color = self.color if self.color.ndim == 3 else self.color[..., None]
        return np.concatenate([color, self.alpha[..., None]], axis=-1)


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise ImageError(f"the image has no pixels ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"the image is {width}x{height} = {width * height} pixels, above svdk's limit of "
            f"{MAX_PIXELS} pixels; downscale it first"
        )


def _example(name: str) -> np.ndarray:
    if name not in EXAMPLES:
        raise ImageError(f"unknown example {name!r}; choose one of: {', '.join(EXAMPLES)}")
    import skimage.data

    return getattr(skimage.data, name)()


def _from_pil(im: Image.Image) -> Pixels:
    notes = []
    _check_size(*im.size)
    if getattr(im, "n_frames", 1) > 1:
        msg = f"the image has {im.n_frames} frames; only the first is encoded"
        warnings.warn(msg, SvdkWarning, stacklevel=3)
        notes.append(msg)
        im.seek(0)
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # a broken EXIF block must not stop the encode
        notes.append("the EXIF orientation could not be read and was ignored")
    mode = im.mode
    if mode == "1":
        im = im.convert("L")
    elif mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        notes.append(f"converted from {mode} to RGB")
        im = im.convert("RGB")
    elif mode in ("La", "RGBa"):
        im = im.convert(mode.upper())
    elif mode.startswith("I;16"):
        return _from_array(np.asarray(im).astype(np.uint16), notes=notes)
    elif mode == "I":
        arr = np.asarray(im)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ImageError(
                f"32-bit integer pixels in [{arr.min()}, {arr.max()}] are not supported; "
                "use 8 or 16 bits per channel"
            )
        # 16-bit PNGs open as mode I; 8-bit data stored in mode I stays 8-bit
        top = int(arr.max()) if arr.size else 0
        return _from_array(arr.astype(np.uint16 if top > 255 else np.uint8), notes=notes)
    elif mode == "F":
        raise ImageError(
            "32-bit floating-point images are not supported; convert to 8 or 16 bits per channel"
        )
    if im.mode not in ("L", "LA", "RGB", "RGBA"):
        raise ImageError(f"unsupported image mode {im.mode!r}")
    return _from_array(np.asarray(im), notes=notes)


def _from_array(arr: np.ndarray, *, notes: list[str] | None = None) -> Pixels:
    notes = list(notes or [])
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)):
        raise ImageError(
            f"expected an image array of shape (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or "
            f"(H, W, 4); got {arr.shape}"
        )
    _check_size(arr.shape[1], arr.shape[0])
    if arr.dtype == np.uint8:
        pass
    elif arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        notes.append("reduced from 16 to 8 bits per channel")
        arr = np.clip(np.round(arr.astype(np.float64) * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ImageError("a floating-point image must not hold NaN or infinite values")
        if arr.min() < 0 or arr.max() > 1:
            raise ImageError(
                "a floating-point image must hold finite values in [0, 1]; "
                f"got values in [{arr.min()}, {arr.max()}]"
            )
        arr = np.round(arr * 255.0).astype(np.uint8)
    else:
        raise ImageError(
            f"unsupported array dtype {arr.dtype}; use uint8, uint16, bool or floats in [0, 1]"
        )
    alpha = None
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        alpha = np.ascontiguousarray(arr[..., -1])
        arr = arr[..., 0] if arr.shape[2] == 2 else arr[..., :3]
    return Pixels(np.ascontiguousarray(arr), alpha, tuple(notes))


def _open_path(path: Path) -> Pixels:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise MissingFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise ImageError(f"{path}: {exc.strerror or exc}") from None
    if path.is_dir():
        raise ImageError(f"{path} is a folder, not an image")
    if size == 0:
        raise ImageError(f"{path} is empty")
    with open(path, "rb") as fh:
        head = fh.read(4)
    from .format import MAGIC

    if head == MAGIC:
        raise ImageError(f"{path} is already an .svdk file; use 'svdk decompress'")
    return _open_pil(lambda: Image.open(path), str(path))


def _open_pil(opener, label: str) -> Pixels:
    old = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with opener() as im:
                _check_size(*im.size)
                im.load()
                return _from_pil(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{label}: refused as a possible decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise ImageError(f"{label} is not an image that Pillow can read") from None
    except ImageError as exc:
        raise ImageError(f"{label}: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise ImageError(f"{label} is corrupt or truncated: {exc}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old


def load_image(image: ImageLike) -> Pixels:
    """Read ``image`` (array, PIL image, path, encoded bytes or ``example:NAME``)."""
    if isinstance(image, Pixels):
        return image
    if isinstance(image, np.ndarray):
        return _from_array(image)
    if isinstance(image, Image.Image):
        try:
            return _from_pil(image)
        except ImageError:
            raise
        except (OSError, ValueError) as exc:
            raise ImageError(f"the PIL image cannot be read: {exc}") from None
    if isinstance(image, (bytes, bytearray)):
        if not image:
            raise ImageError("the image data is empty")
        return _open_pil(lambda: Image.open(io.BytesIO(image)), "the image data")
    if isinstance(image, str) and image.startswith("example:"):
        return _from_array(_example(image.split(":", 1)[1]))
    if isinstance(image, (str, os.PathLike)):
        return _open_path(Path(image))
    raise ImageError(
        f"expected a numpy array, a PIL image, a path or bytes; got {type(image).__name__}"
    )
