"""Fixtures for the svdk tests.

Images come from two places: small synthetic arrays made here (always
available) and crops of the Kodak suite read from ``../shared/data`` (tests
that need them skip, saying where to get them, when the folder is missing).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import settings

from _support import DATA, kodak, kodak_path, smooth_image

# Every property test in this suite sets its own max_examples; none of them
# should fail because one example is slow on a loaded 2-core machine.
settings.register_profile("svdk", deadline=None, print_blob=True)
settings.load_profile("svdk")


@pytest.fixture(scope="session")
def data_dir():
    """``../shared/data``; skips when it is missing."""
    if not DATA.is_dir():
        pytest.skip(
            f"needs the image data at {DATA} (Kodak and BSDS500); see ../shared/data/README.md"
        )
    return DATA


@pytest.fixture(scope="session")
def kodak_crop() -> np.ndarray:
    """A 128x128 RGB crop of kodim05 (motorbikes: edges, texture and flat areas)."""
    return np.ascontiguousarray(kodak("kodim05")[100:228, 200:328])


@pytest.fixture(scope="session")
def kodak_crop_wide() -> np.ndarray:
    """A 192x128 (width x height) RGB crop of kodim23 (parrots: smooth with sharp detail)."""
    return np.ascontiguousarray(kodak("kodim23")[150:278, 300:492])


@pytest.fixture(scope="session")
def kodak_small() -> np.ndarray:
    """A 64x64 RGB crop of kodim05, for the slower reference codecs."""
    return np.ascontiguousarray(kodak("kodim05")[100:164, 200:264])


@pytest.fixture(scope="session")
def kodak_file():
    return kodak_path("kodim05")


@pytest.fixture
def rgb_image() -> np.ndarray:
    """24x32 RGB gradient with noise."""
    return smooth_image(24, 32, 3, seed=1)


@pytest.fixture
def gray_image() -> np.ndarray:
    """23x31 (odd sides) grayscale gradient with noise."""
    return smooth_image(23, 31, 1, seed=2)


@pytest.fixture
def rgba_image() -> np.ndarray:
    """24x32 RGBA with an alpha ramp, a transparent corner and an opaque corner."""
    image = smooth_image(24, 32, 4, seed=3)
    assert len(np.unique(image[..., 3])) > 10  # the alpha is really not constant
    return image


@pytest.fixture
def gray_alpha_image() -> np.ndarray:
    """21x17 gray + alpha."""
    return smooth_image(21, 17, 2, seed=4)
