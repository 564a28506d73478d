"""What the rank predictor sees: the 256x256 working image, its luma, its 64x64 patches, the features."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from .._codec import _OFFSET, _RGB_TO_YCBCR
from .._image import ImageLike, load_image

__all__ = [
    "INPUT_SHAPE",
    "WORK_SIZE",
    "FEATURE_NAMES",
    "PatchLayout",
    "resize_work",
    "luma",
    "model_input",
    "patch_positions",
    "patches",
    "hand_features",
]

#: Shape of the image input of a whole-image model (format version 1), and of one patch.
INPUT_SHAPE = (64, 64, 1)
#: Side of the square image labels are computed on.
WORK_SIZE = 256

#: Hand-crafted features (scikit-image) of the optional model variant.
FEATURE_NAMES = (
    "mean",
    "std",
    "edge_share",
    "entropy",
    "glcm_contrast",
    "sobel_mean",
    "sobel_std",
    "sobel_p90",
)



@dataclass(frozen=True)
class PatchLayout:
    """Which 64x64 luma patches a patch model reads (recorded in its ``model.json`` as ``patches``).

    ``count`` patches of ``size`` x ``size`` pixels of the codec's luma, in
    [0, 1], on a regular ``sqrt(count)`` x ``sqrt(count)`` grid
    (``sampling="grid"``) whose first and last rows and columns touch the
    image's edges. ``resolution`` says of which version of the image:
    ``"work"``, the 256x256 bicubic resize the labels are computed on (16
    patches tile it exactly), or ``"native"``, the image as given, or, when
    ``area`` is set, resized (bicubic, aspect kept) to about ``area`` pixels
    first, so that a patch covers as much of a large photo as it did of the
    training images (BSDS500's are all 481x321: ``area=154401`` leaves them
    as they are).
    """

    size: int = 64
    count: int = 16
    sampling: str = "grid"
    resolution: str = "work"
    area: int | None = None

    SAMPLINGS = ("grid",)
    RESOLUTIONS = ("work", "native")

    def __post_init__(self):
        side = int(round(self.count ** 0.5)) if isinstance(self.count, int) and self.count > 0 else 0
        if self.size != INPUT_SHAPE[0]:
            raise ValueError(f"patch size must be {INPUT_SHAPE[0]}; got {self.size!r}")
        if side * side != self.count or not 1 <= self.count <= 64:
            raise ValueError(f"patch count must be a square number from 1 to 64 (a grid); got {self.count!r}")
        if self.sampling not in self.SAMPLINGS:
            raise ValueError(f"patch sampling must be one of {', '.join(self.SAMPLINGS)}; got {self.sampling!r}")
        if self.resolution not in self.RESOLUTIONS:
            raise ValueError(
                f"patch resolution must be one of {', '.join(self.RESOLUTIONS)}; got {self.resolution!r}"
            )
        if self.area is not None and (
            self.resolution != "native" or not isinstance(self.area, int) or self.area < self.size * self.size
        ):
            raise ValueError(
                f"patch area must be a pixel count of at least {self.size * self.size}, with resolution "
                f"'native'; got {self.area!r} with {self.resolution!r}"
            )

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """The network's image input for one image: ``(count, size, size, 1)``."""
        return (self.count, self.size, self.size, 1)

    def to_json(self) -> dict:
        """The layout as ``model.json`` records it (``area`` only when set)."""
        data = asdict(self)
        if data["area"] is None:
            del data["area"]
        return data

    @classmethod
    def from_json(cls, data) -> "PatchLayout":
        """The layout a ``model.json`` records; ``ValueError`` saying what is wrong otherwise."""
        if not isinstance(data, dict):
            raise ValueError(f"expected an object with size, count, sampling and resolution; got {data!r}")
        unknown = sorted(set(data) - {"size", "count", "sampling", "resolution", "area"})
        if unknown:
            raise ValueError(f"unknown patch layout fields {unknown}")
        missing = sorted({"size", "count", "sampling", "resolution"} - set(data))
        if missing:
            raise ValueError(f"the patch layout lacks {missing}")
        return cls(**data)


def resize_work(image: ImageLike) -> np.ndarray:
    """``image`` as uint8 ``(256, 256)`` or ``(256, 256, 3)`` (alpha dropped)."""
    color = load_image(image).color
    if color.shape[:2] == (WORK_SIZE, WORK_SIZE):
        return color
    pil = Image.fromarray(color)
    return np.asarray(pil.resize((WORK_SIZE, WORK_SIZE), Image.BICUBIC))


def luma(color: np.ndarray) -> np.ndarray:
    """The codec's luma plane (float32, 0..255) of uint8 gray or RGB pixels."""
    if color.ndim == 2:
        return color.astype(np.float32)
    # rgb_to_ycbcr's first plane, computed alone (the same float32 arithmetic)
    x = color.astype(np.float32)
    m = _RGB_TO_YCBCR
    return m[0, 0] * x[..., 0] + m[0, 1] * x[..., 1] + m[0, 2] * x[..., 2] + _OFFSET[0]


def model_input(color256: np.ndarray, *, y: np.ndarray | None = None) -> np.ndarray:
    """The network's input ``(64, 64, 1)`` in [0, 1]: luma averaged over 4x4 blocks.

    ``y``, the image's :func:`luma` when the caller has it already.
    """
    y = luma(color256) if y is None else y
    f = WORK_SIZE // INPUT_SHAPE[0]
    small = y.reshape(INPUT_SHAPE[0], f, INPUT_SHAPE[1], f).mean(axis=(1, 3)) / 255.0
    return np.clip(small, 0.0, 1.0).astype(np.float32)[..., None]


def patch_positions(height: int, width: int, side: int, size: int = INPUT_SHAPE[0]) -> list[tuple[int, int]]:
    """Top-left corners of a ``side`` x ``side`` grid of ``size``-pixel patches, edge to edge.

    The image must be at least ``size`` pixels each way; patches overlap
    when it is smaller than ``side * size``, and leave gaps when larger.
    """
    ys = np.rint(np.linspace(0, height - size, side)).astype(int)
    xs = np.rint(np.linspace(0, width - size, side)).astype(int)
    return [(int(y), int(x)) for y in ys for x in xs]


def _at_least(color: np.ndarray, size: int) -> np.ndarray:
    """``color`` enlarged (bicubic, aspect kept) until both sides are at least ``size``; else unchanged."""
    h, w = color.shape[:2]
    if min(h, w) >= size:
        return color
    scale = size / min(h, w)
    new = (max(size, int(np.ceil(w * scale))), max(size, int(np.ceil(h * scale))))
    return np.asarray(Image.fromarray(color).resize(new, Image.BICUBIC))


def _to_area(color: np.ndarray, area: int) -> np.ndarray:
    """``color`` resized (bicubic, aspect kept) to about ``area`` pixels; unchanged when it has that size."""
    h, w = color.shape[:2]
    scale = (area / (h * w)) ** 0.5
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    if new == (w, h):
        return color
    return np.asarray(Image.fromarray(color).resize(new, Image.BICUBIC))


def patches(
    image: ImageLike, layout: PatchLayout, *, work: np.ndarray | None = None, y: np.ndarray | None = None
) -> np.ndarray:
    """The patch network's input for one image: ``layout.input_shape``, float32 luma in [0, 1].

    ``work`` and ``y``, the image's :func:`resize_work` and that one's
    :func:`luma`, when the caller has them already (used for
    ``resolution="work"``). An image narrower than one patch
    (down to 1x1) is enlarged first for ``resolution="native"``; the work
    version is always 256x256. Alpha is dropped.

    Examples
    --------
    >>> import numpy as np
    >>> from svdk.predictor import PatchLayout, patches
    >>> patches(np.zeros((1, 1, 3), np.uint8), PatchLayout()).shape
    (16, 64, 64, 1)
    """
    side, s = int(round(layout.count ** 0.5)), layout.size
    if layout.resolution == "work":
        if y is None:
            y = luma(resize_work(image) if work is None else work)
        out = np.stack([y[r : r + s, c : c + s] for r, c in patch_positions(*y.shape, side, s)])
    else:  # the luma of the patches alone: a large photo is not converted whole
        color = load_image(image).color
        if layout.area is not None:
            color = _to_area(color, layout.area)
        color = _at_least(color, s)
        crops = np.stack([color[r : r + s, c : c + s] for r, c in patch_positions(*color.shape[:2], side, s)])
        out = crops.astype(np.float32) if crops.ndim == 3 else luma(crops)
    return np.clip(out / 255.0, 0.0, 1.0).astype(np.float32)[..., None]


def hand_features(color256: np.ndarray, *, y: np.ndarray | None = None) -> np.ndarray:
    """:data:`FEATURE_NAMES` of the 256x256 luma (float32), about 2 ms.

    Mean and standard deviation of the luma in [0, 1]; the share of pixels
    whose Sobel gradient magnitude (scikit-image) exceeds 0.05; the Shannon
    entropy (bits) of the 8-bit luma histogram; the GLCM contrast (64 grey
    levels, one pixel right and down, symmetric, normalized, averaged over
    the two directions: what scikit-image's ``graycoprops(graycomatrix(...),
    "contrast")`` gives, computed directly as the mean squared difference of
    neighbouring levels, a test checks the two agree); the mean, standard
    deviation and 90th percentile of the Sobel magnitude.
    """
    from skimage.filters import sobel

    y = luma(color256) if y is None else y
    y8 = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    yf = y / 255.0
    q = (y8 // 4).astype(np.int32)
    contrast = 0.5 * (np.mean(np.square(q[:, 1:] - q[:, :-1])) + np.mean(np.square(q[1:] - q[:-1])))
    grad = sobel(yf)
    p = np.bincount(y8.ravel(), minlength=256) / y8.size
    p = p[p > 0]
    return np.array(
        [
            yf.mean(),
            yf.std(),
            np.count_nonzero(grad > 0.05) / grad.size,
            -np.sum(p * np.log2(p)),
            contrast,
            grad.mean(),
            grad.std(),
            np.percentile(grad, 90),
        ],
        dtype=np.float32,
    )

