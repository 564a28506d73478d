"""BSDS500 through Hugging Face ``datasets``.

``load_images(source)`` reads a local folder of ``train/``, ``val/`` and
``test/`` images with ``load_dataset("imagefolder", ...)`` (by default
``../shared/data/bsds500`` next to the repository) or a Hub dataset id, and
returns, per split, :class:`Item` records: a stable id (the SHA-256 of the
file bytes), the native-size RGB pixels and the 256x256 version the labels
are computed on. The network input (64x64 luma in [0, 1]) comes from
:func:`svdk.predictor.model_input`, so training and the codec agree.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from svdk.predictor import resize_work

__all__ = ["Item", "DEFAULT_DATA", "DataError", "load_images", "SPLITS"]

REPO = Path(__file__).resolve().parent.parent
#: Where the BSDS500 images are expected by default.
DEFAULT_DATA = REPO.parent / "shared" / "data" / "bsds500"
#: Our split names and the names ``datasets`` may use for them.
SPLITS = {"train": ("train",), "val": ("validation", "val", "valid"), "test": ("test",)}

HOW_TO_GET = (
    "Put BSDS500's images there as train/*.jpg (200), val/*.jpg (100) and test/*.jpg (200): "
    "from the Berkeley segmentation benchmark page or its GitHub mirror BIDS/BSDS500 "
    "(folder BSDS500/data/images/). Or pass --data with another folder or a Hugging Face "
    "dataset id that has train/validation/test splits with an image column."
)


class DataError(RuntimeError):
    """The training data cannot be found or read."""


@dataclass
class Item:
    """One image: its id, split, native pixels and the 256x256 version."""

    id: str
    split: str
    name: str
    native: np.ndarray  # uint8 (H, W, 3)
    work: np.ndarray  # uint8 (256, 256, 3)


def _is_local(source: str | os.PathLike) -> bool:
    s = str(source)
    return os.path.sep in s or s.startswith(".") or Path(s).exists() or s == str(DEFAULT_DATA)


def _load_dataset(source, offline: bool = True):
    os.environ.setdefault("HF_HUB_OFFLINE", "1" if offline else "0")
    try:
        import datasets
    except ImportError:
        raise DataError("training needs Hugging Face datasets: pip install 'svdk[train]'") from None
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    if _is_local(source):
        folder = Path(source)
        missing = [s for s in ("train", "val", "test") if not (folder / s).is_dir()]
        if missing:
            raise DataError(
                f"BSDS500 not found at {folder} (missing {', '.join(s + '/' for s in missing)}). "
                + HOW_TO_GET
            )
        try:
            ds = datasets.load_dataset("imagefolder", data_dir=str(folder), drop_labels=True)
        except datasets.data_files.EmptyDatasetError:
            raise DataError(f"no images in {folder} (its train/, val/ and test/ folders are empty). " + HOW_TO_GET) from None
    else:
        try:
            ds = datasets.load_dataset(str(source))
        except Exception as exc:
            raise DataError(
                f"cannot load the dataset {source!r} ({type(exc).__name__}: {exc}). "
                f"The default is the folder {DEFAULT_DATA}. " + HOW_TO_GET
            ) from None
    return ds


def _image_column(split) -> str:
    import datasets

    for name, feature in split.features.items():
        if isinstance(feature, datasets.Image):
            return name
    raise DataError(f"the dataset has no image column (columns: {', '.join(split.features)})")


def load_images(
    source: str | os.PathLike = DEFAULT_DATA,
    splits: tuple[str, ...] = ("train", "val", "test"),
    limit: int | None = None,
    errors: list | None = None,
) -> dict[str, list[Item]]:
    """Images of each split (``limit`` keeps the first few of each, for tests).

    An image that cannot be decoded raises :class:`DataError`, or, when an
    ``errors`` list is given, is left out and ``(name, message)`` appended to it.
    """
    import datasets

    ds = _load_dataset(source)
    out: dict[str, list[Item]] = {}
    for split in splits:
        name = next((n for n in SPLITS[split] if n in ds), None)
        if name is None:
            raise DataError(f"the dataset {source} has no {split!r} split (it has {', '.join(ds)}). " + HOW_TO_GET)
        part = ds[name]
        col = _image_column(part)
        part = part.cast_column(col, datasets.Image(decode=False))
        n = len(part) if limit is None else min(limit, len(part))
        items = []
        for j in range(n):
            rec = part[j][col]
            raw = rec.get("bytes")
            path = rec.get("path") or f"{split}-{j}"
            if raw is None:
                raw = Path(path).read_bytes()
            try:
                with Image.open(io.BytesIO(raw)) as im:
                    native = np.asarray(im.convert("RGB"))
            except Exception as exc:  # Pillow raises several types for bad files
                message = f"{path}: cannot read the image ({type(exc).__name__}: {exc})"
                if errors is None:
                    raise DataError(message) from None
                errors.append((Path(path).name, message))
                continue
            items.append(
                Item(
                    id=hashlib.sha256(raw).hexdigest()[:16],
                    split=split,
                    name=Path(path).name,
                    native=native,
                    work=resize_work(native),
                )
            )
        # a fixed order, independent of how the loader listed the files
        out[split] = sorted(items, key=lambda it: it.name)
    return out
