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
svdk module a label's computation can run (:func:`label_modules`, found by
following the encoder's imports: image loading, colour conversion, SVD,
quantization, the policies, SSIM, the file format), of this file, and of the
target grid. A change anywhere in those modules starts a new cache, even one
that does not change a label. Outcomes (file bytes and SSIM at a given rank)
have their own file, keyed the same way. Entries are keyed by a hash of the exact input pixels, so a change in
resizing or augmentation can never reuse a stale label. Work is spread over
processes (2 by default) or a Ray cluster by :func:`svdk.engine.map_images`;
the cache is saved every 200 labels (and every minute), so a stopped run
goes on from there.

``python -m training.labels`` computes the labels the training's label step
needs (``--data``, ``--limit`` and ``--no-brightness`` as for
``training.train``) into that cache and nothing else::

    python -m training.labels --engine ray --address HEAD:6379
    python -m training.train --arch compact     # finds every label cached
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import svdk
from svdk import policies
from svdk.engine import add_options, check_options, positive_int

__all__ = [
    "TARGETS",
    "BRIGHTNESS",
    "code_hash",
    "label_image",
    "outcome",
    "pixel_key",
    "brighten",
    "LabelStore",
    "LabelError",
    "images_to_label",
    "main",
]

#: The target grid (SSIM on luma).
TARGETS = (0.80, 0.85, 0.90, 0.95, 0.98)
#: Brightness factors used for augmentation (labels recomputed).
BRIGHTNESS = (0.7, 1.3)

_SVDK = Path(svdk.__file__).resolve().parent
DEFAULT_CACHE = Path(__file__).resolve().parent.parent / "runs" / "cache"


def label_modules() -> list[Path]:
    """The svdk modules a label's computation can run, read from the code.

    ``svdk/_encoder.py`` (the encoder and its policies) and every svdk
    module it imports, transitively: a new module the codec starts using
    is in the cache key without anyone listing it.
    """
    todo, seen = ["_encoder"], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for node in ast.walk(ast.parse((_SVDK / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                for module in [node.module] if node.module else [alias.name for alias in node.names]:
                    module = module.split(".")[0]
                    if (_SVDK / f"{module}.py").is_file():
                        todo.append(module)
    return sorted(_SVDK / f"{name}.py" for name in seen)


def _hash_files(paths, extra: bytes = b"") -> str:
    h = hashlib.sha256(extra)
    for path in paths:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def code_hash(targets=TARGETS) -> str:
    """Hash of the code (and target grid) that makes the labels: :func:`label_modules` and this file."""
    return _hash_files([*label_modules(), Path(__file__)], json.dumps([float(t) for t in targets]).encode())


def outcome_hash() -> str:
    """Hash of the code that makes rank outcomes (the same modules: packing a file is in them)."""
    return _hash_files([], b"outcomes:" + code_hash(()).encode())


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


class LabelError(RuntimeError):
    """Labels that could not be computed (the message says how many, and why)."""


class LabelStore:
    """On-disk cache of labels and rank outcomes for one code hash.

    ``processes`` workers (None: the usable cores) on ``engine`` "local" or
    "ray" (``address``: see :func:`svdk.engine.map_images`) compute what is
    missing. ``work`` is the function a worker runs on a task (a subclass
    may label something else: :class:`training.tiled.TiledLabelStore`).
    """

    work = staticmethod(_work)

    def __init__(self, cache_dir: str | os.PathLike | None = None, targets=TARGETS, processes: int | None = 2,
                 *, engine: str = "local", address: str | None = None):
        self.targets = tuple(float(t) for t in targets)
        self.dir = Path(cache_dir or os.environ.get("SVDK_CACHE") or DEFAULT_CACHE)
        self.hash = code_hash(self.targets)
        self.path = self.dir / f"labels-{self.hash}.json"
        self.outcome_path = self.dir / f"outcomes-{outcome_hash()}.json"
        self.processes = processes
        self.engine = engine
        self.address = address
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

        from svdk.engine import Failure, map_images

        results = self.data
        failures = []
        saved = [0, time.monotonic()]

        def keep(index, value):  # as each finishes: a stopped run keeps what was done
            if isinstance(value, Failure):
                return
            kind, key, rec = value
            results["labels" if kind == "label" else "outcomes"][key] = rec
            saved[0] += 1
            if saved[0] % 200 == 0 or time.monotonic() - saved[1] > 60:
                self.save()
                saved[1] = time.monotonic()

        try:
            with tqdm(total=len(tasks), desc=desc, unit="img", leave=False) as bar:
                for index, value in map_images(self.work, tasks, engine=self.engine, jobs=self.processes,
                                               address=self.address, on_result=keep):
                    if isinstance(value, Failure):
                        failures.append(value.message)
                    bar.update()
        finally:
            self.save()
        if failures:
            raise LabelError(f"{len(failures)} of {len(tasks)} {desc} failed; the first: {failures[0]}")

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


def images_to_label(items: dict[str, list], brightness: bool = True) -> list[np.ndarray]:
    """Every image the label step of ``training.train`` labels, in its order.

    The 256x256 image of every train and val item, each followed by its
    brightness copy (as :func:`training.evaluate.build` makes it), the test
    items, then the native-size train and val images (the resolution exponent).
    """
    tv = items.get("train", []) + items.get("val", [])
    out = []
    for j, it in enumerate(tv):
        out.append(it.work)
        if brightness:
            out.append(brighten(it.work, BRIGHTNESS[j % len(BRIGHTNESS)]))
    out += [it.work for it in items.get("test", [])]
    out += [it.native for it in tv]
    return out


def _parser():
    import argparse

    from .data import DEFAULT_DATA

    p = argparse.ArgumentParser(
        prog="python -m training.labels",
        description="Compute the labels training.train needs into the label cache, and nothing else.",
    )
    p.add_argument("--data", default=str(DEFAULT_DATA), help=f"folder or Hub dataset id (default {DEFAULT_DATA})")
    p.add_argument("--limit", type=positive_int, help="only the first N images of each split")
    p.add_argument("--no-brightness", action="store_true", help="no brightness copies")
    p.add_argument("--cache", help="label cache folder (default runs/cache or $SVDK_CACHE)")
    add_options(p, what="images")
    return p


def main(argv: list[str] | None = None) -> int:
    """Label ``--data`` into the cache; return the exit status (1 if an image failed)."""
    from svdk import OptionError

    from .data import DataError, load_images

    parser = _parser()
    args = parser.parse_args(argv)
    check_options(parser, args)

    def fail(message: str) -> int:
        print(f"svdk: error: {message}", file=sys.stderr)
        return 1

    unreadable: list = []
    try:
        items = load_images(args.data, limit=args.limit, errors=unreadable)
    except DataError as exc:
        return fail(str(exc))
    images = images_to_label(items, brightness=not args.no_brightness)
    for _, message in unreadable:
        print(f"svdk: error: {message}", file=sys.stderr)
    if not images:
        return fail(f"no images to label in {args.data}")
    store = LabelStore(args.cache, TARGETS, processes=args.jobs, engine=args.engine, address=args.address)
    cached = len({pixel_key(p) for p in images} & set(store.data["labels"]))
    t0 = time.perf_counter()
    try:
        store.labels(images)
    except (OptionError, LabelError) as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return fail("interrupted; the labels done so far are in the cache: run the same command to go on")
    print(f"{len(images)} images labelled ({cached} already cached), {time.perf_counter() - t0:.1f} s; "
          f"cache {store.path}")
    return 1 if unreadable else 0


if __name__ == "__main__":
    sys.exit(main())
