"""What the rank predictor sees: the 256x256 working image, its luma, the network input, the features."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .._codec import _OFFSET, _RGB_TO_YCBCR
from .._image import ImageLike, load_image

__all__ = ["INPUT_SHAPE", "WORK_SIZE", "FEATURE_NAMES", "resize_work", "luma", "model_input", "hand_features"]

#: Shape of the network's image input.
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

