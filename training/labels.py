"""Labels: the smallest luma rank that reaches a target SSIM, exactly as the codec finds it.

For an RGB image (in training, the 256x256 version) and each target ``t`` of
the grid, the label is the luma rank that svdk's own ``quality`` policy
chooses for ``quality=("ssim", t)`` in ycbcr 4:2:0 mode: the smallest ``k``
whose quantized, 8-bit-rounded luma reconstruction reaches SSIM >= t, with
``k - 1`` measured not to. Each target runs svdk's ``quality`` policy on a
fresh :class:`svdk.Encoder`, exactly as ``svdk.encode`` would. Chroma ranks
follow the codec's documented rule (``svdk.CHROMA_RANK_FRACTION`` of the
luma rank, :meth:`svdk.Encoder.ranks_for`).

Labels are cached on disk (``runs/cache`` by default, or ``$SVDK_CACHE``),
in one JSON file per *code hash*: the SHA-256 of the whole source of every
svdk module a label's computation runs through (:data:`LABEL_MODULES`:
image loading, colour conversion, SVD, quantization, the encoder, the
policies, SSIM), of this file, and of the target grid. A change anywhere in
those modules starts a new cache, even one that does not change a label.
Outcomes (file bytes and SSIM at a given rank) have their own file, whose
hash adds the byte layout and the entropy coder. Entries are keyed by a hash of the exact input pixels, so a change in
resizing or augmentation can never reuse a stale label. Work is spread over
processes (2 by default).
"""

from __future__ import annotations

import hashlib
import json
import os
from multiprocessing import get_context
from pathlib import Path

import numpy as np

import svdk
from svdk import policies

__all__ = [
    "TARGETS",
    "BRIGHTNESS",
    "code_hash",
    "label_image",
    "outcome",
    "pixel_key",
    "brighten",
    "LabelStore",
]

#: The target grid (SSIM on luma).
TARGETS = (0.80, 0.85, 0.90, 0.95, 0.98)
#: Brightness factors used for augmentation (labels recomputed).
BRIGHTNESS = (0.7, 1.3)

_SVDK = Path(svdk.__file__).resolve().parent
DEFAULT_CACHE = Path(__file__).resolve().parent.parent / "runs" / "cache"
#: The svdk modules a label's computation runs through (hashed whole).
LABEL_MODULES = ("_errors.py", "_image.py", "_codec.py", "_tiled.py", "_encoder.py", "policies.py", "metrics.py")
#: What an outcome adds: the byte layout and its entropy coder.
OUTCOME_MODULES = ("format.py", "_entropy.py")


def _hash_files(paths, extra: bytes = b"") -> str:
    h = hashlib.sha256(extra)
    for path in paths:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def code_hash(targets=TARGETS) -> str:
    """Hash of the code (and target grid) that makes the labels."""
    files = [_SVDK / name for name in LABEL_MODULES] + [Path(__file__)]
    return _hash_files(files, json.dumps([float(t) for t in targets]).encode())


def outcome_hash() -> str:
    """Hash of the code that makes rank outcomes: the labels' code plus the file format."""
    return _hash_files([_SVDK / name for name in OUTCOME_MODULES], code_hash(()).encode())


def pixel_key(pixels: np.ndarray) -> str:
    """A key for exactly these pixels (shape included)."""
    a = np.ascontiguousarray(pixels)
    return hashlib.sha256(repr(a.shape).encode() + a.tobytes()).hexdigest()[:20]


def brighten(pixels: np.ndarray, factor: float) -> np.ndarray:
    """Brightness change: scale and round back to 8 bits (this changes the label)."""
    return np.clip(np.rint(pixels.astype(np.float32) * factor), 0, 255).astype(np.uint8)


def _encoder(pixels: np.ndarray) -> svdk.Encoder:
    return svdk.Encoder(svdk.Pixels(np.ascontiguousarray(pixels), None), mode="ycbcr")


def label_image(pixels: np.ndarray, targets=TARGETS) -> dict:
    """The codec's exact ``quality`` choice at each target.

    Returns ``{"k": [...], "ranks": [[Y, Cb, Cr], ...], "ssim": [...],
    "evaluations": [...]}``, one entry per target.
    """
    quality = policies.get("quality")
    out = {"k": [], "ranks": [], "ssim": [], "evaluations": []}
    for t in targets:
        encoder = _encoder(pixels)
        choice = quality(encoder, ("ssim", float(t)))
        out["k"].append(int(choice.ranks[0]))
        out["ranks"].append([int(k) for k in choice.ranks])
        out["ssim"].append(float(choice.measured["value"]))
        out["evaluations"].append(int(encoder.evaluations))
    return out


def outcome(pixels: np.ndarray, k: int) -> tuple[int, float]:
    """``(file bytes, luma SSIM)`` of the file svdk writes with luma rank ``k``.

    A fresh encoder with the ranks fixed (chroma by the codec's rule), as
    ``svdk.encode(pixels, rank=k)`` would code it.
    """
    encoder = _encoder(pixels)
    k = int(min(max(k, 1), encoder.max_ranks[0]))
    score = encoder.score(k, "ssim")
    nbytes = len(encoder.pack(encoder.ranks_for(k)))
    return nbytes, float(score)


def _work(task):
    kind, key, pixels, arg = task
    if kind == "label":
        return kind, key, label_image(pixels, arg)
    return kind, key, list(outcome(pixels, arg))


class LabelStore:
    """On-disk cache of labels and rank outcomes for one code hash."""

    def __init__(self, cache_dir: str | os.PathLike | None = None, targets=TARGETS, processes: int = 2):
        self.targets = tuple(float(t) for t in targets)
        self.dir = Path(cache_dir or os.environ.get("SVDK_CACHE") or DEFAULT_CACHE)
        self.hash = code_hash(self.targets)
        self.path = self.dir / f"labels-{self.hash}.json"
        self.outcome_path = self.dir / f"outcomes-{outcome_hash()}.json"
        self.processes = processes
        self.data = {"labels": self._read(self.path), "outcomes": self._read(self.outcome_path)}

    @staticmethod
    def _read(path: Path) -> dict:
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}  # missing or broken: rebuilt

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for path, part in ((self.path, "labels"), (self.outcome_path, "outcomes")):
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.data[part]))
            os.replace(tmp, path)

    def _run(self, tasks, desc: str) -> None:
        if not tasks:
            return
        from tqdm import tqdm

        results = self.data
        with tqdm(total=len(tasks), desc=desc, unit="img", leave=False) as bar:
            if self.processes > 1 and len(tasks) > 1:
                with get_context("spawn").Pool(self.processes) as pool:
                    for n, (kind, key, rec) in enumerate(pool.imap_unordered(_work, tasks, chunksize=2)):
                        results["labels" if kind == "label" else "outcomes"][key] = rec
                        bar.update()
                        if n % 200 == 199:
                            self.save()
            else:
                for task in tasks:
                    kind, key, rec = _work(task)
                    results["labels" if kind == "label" else "outcomes"][key] = rec
                    bar.update()
        self.save()

    def labels(self, images: list[np.ndarray], desc: str = "labels") -> list[dict]:
        """Labels of each image (computed and cached when missing)."""
        keys = [pixel_key(p) for p in images]
        todo = {}
        for key, p in zip(keys, images):
            if key not in self.data["labels"] and key not in todo:
                todo[key] = ("label", key, p, self.targets)
        self._run(list(todo.values()), desc)
        return [self.data["labels"][k] for k in keys]

    def outcomes(self, pairs: list[tuple[np.ndarray, int]], desc: str = "outcomes") -> list[tuple[int, float]]:
        """``(bytes, luma SSIM)`` for each ``(image, luma rank)``."""
        keys = [f"{pixel_key(p)}:{int(k)}" for p, k in pairs]
        todo = {}
        for key, (p, k) in zip(keys, pairs):
            if key not in self.data["outcomes"] and key not in todo:
                todo[key] = ("outcome", key, p, int(k))
        self._run(list(todo.values()), desc)
        return [tuple(self.data["outcomes"][k]) for k in keys]
