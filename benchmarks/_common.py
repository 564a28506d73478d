"""Shared pieces of the benchmarks: finding the data, machine facts, JSON output."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results"
#: The Kodak images live next to the repository, never inside it.
DEFAULT_KODAK = REPO.parent / "shared" / "data" / "kodak"
KODAK_NAMES = tuple(f"kodim{i:02d}.png" for i in range(1, 25))


class DataMissing(Exception):
    """The benchmark images are not where we looked."""


def data_help(folder: Path) -> str:
    return (
        f"the Kodak images were not found in {folder}.\n"
        "Get the 24 PNGs kodim01.png ... kodim24.png (768x512, six portrait) of the Kodak\n"
        "Lossless True Color Image Suite from http://r0k.us/graphics/kodak/ (mirrored on\n"
        "GitHub, e.g. coodie/quant, folder images/kodim) into ../shared/data/kodak next to\n"
        "this repository (../shared/data/README.md has checksums), or pass --data FOLDER.\n"
        "Do not copy them into the repository."
    )


def kodak_paths(folder: str | os.PathLike, limit: int | None = None) -> list[Path]:
    """The Kodak files in ``folder``, in order; ``limit`` keeps the first N."""
    folder = Path(folder)
    if limit is not None and not 1 <= limit <= len(KODAK_NAMES):
        raise DataMissing(f"--images must be in [1, {len(KODAK_NAMES)}]; got {limit}")
    names = KODAK_NAMES if limit is None else KODAK_NAMES[:limit]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        what = "all of them" if len(missing) == len(names) else ", ".join(missing)
        raise DataMissing(f"{data_help(folder)}\nMissing: {what}")
    return [folder / n for n in names]


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.ascontiguousarray(np.asarray(im.convert("RGB")))


def _cpu_model() -> str | None:
    from svdk.bench import cpu_model

    return cpu_model() or platform.processor() or None


def _git() -> dict:
    def run(*args):
        try:
            out = subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.rstrip("\n") if out.returncode == 0 else None

    status = run("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": (run("rev-parse", "HEAD") or "").strip() or None,
        # Uncommitted changes to tracked files: the numbers may not be those of `commit`.
        "dirty": bool(status) if status is not None else None,
        "modified": [line[3:] for line in status.splitlines()] if status else [],
    }


def _threadpools() -> list[dict]:
    from threadpoolctl import threadpool_info

    keep = ("user_api", "internal_api", "version", "num_threads", "threading_layer", "architecture")
    out = []
    for pool in threadpool_info():
        entry = {k: pool.get(k) for k in keep}
        entry["library"] = Path(pool.get("filepath") or "").name
        out.append(entry)
    return out


def machine_info() -> dict:
    """Facts that a timing depends on, recorded next to it."""
    import PIL
    import skimage
    from PIL import features

    import svdk

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "load_average_1_5_15min": load,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "scikit-image": skimage.__version__,
        "svdk": svdk.__version__,
        "pillow_codecs": {
            "libjpeg": features.version("jpg"),
            "libjpeg_turbo": features.version_feature("libjpeg_turbo"),
            "webp": features.version("webp"),
            "avif": features.version("avif"),
            "zlib": features.version("zlib"),
        },
        "threadpools": _threadpools(),
        "git": _git(),
    }


def clean(obj):
    """``obj`` with numpy scalars made plain and non-finite floats made None (valid JSON)."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(clean(obj), indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)


def display_path(path: Path) -> str:
    """``path`` relative to the repository when it is inside it."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def ablation_main(prog: str, doc: str, variants: dict, sweep: list, run_image, output: Path, argv=None) -> int:
    """The command line of a coding ablation (``global_coding``, ``tiled_coding``).

    ``run_image(path, sweep, names)`` gives each variant's ``{"bpp": [...],
    "psnr-rgb": [...]}`` on one Kodak image; every variant is scored by
    BD-PSNR against that image's JPEG curve from ``svdk bench``'s
    ``jpeg.json`` over 0.25-1.0 bpp, per image, then averaged. Writes the
    summary and the per-image curves to ``output`` (or ``--output``).
    """
    import argparse
    import time

    from svdk.bench import bd_psnr

    p = argparse.ArgumentParser(prog=f"python -m benchmarks.{prog}", description=doc.split("\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_KODAK, help="folder of kodim01.png ... kodim24.png")
    p.add_argument("--jpeg", type=Path, default=RESULTS / "bench-kodak" / "jpeg.json")
    p.add_argument("--images", type=int)
    p.add_argument("--output", type=Path, default=output)
    args = p.parse_args(argv)
    try:
        paths = kodak_paths(args.data, args.images)
    except DataMissing as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    try:
        jpeg = json.loads(args.jpeg.read_text())["per_image"]
    except (OSError, KeyError, ValueError) as exc:
        print(f"{prog}: cannot read the JPEG curves ({exc}); run 'svdk bench' first", file=sys.stderr)
        return 2
    names = list(variants)
    t0 = time.perf_counter()
    per_image, bd = {}, {n: [] for n in names}
    for path in paths:
        curves = run_image(path, sweep, names)
        per_image[path.stem] = curves
        ref = jpeg[path.stem]
        for n in names:
            bd[n].append(bd_psnr(ref["bpp"], ref["psnr-rgb"], curves[n]["bpp"], curves[n]["psnr-rgb"]))
        print(path.stem, " ".join(f"{n} {bd[n][-1]:+.2f}" for n in names), flush=True)
    summary = {n: {"bd_psnr_db": float(np.mean(bd[n])), **variants[n]} for n in names}
    result = {
        "name": prog,
        "description": doc.split("\n\n")[2].replace("\n", " "),
        "command": f"python -m benchmarks.{prog}" + (f" --images {args.images}" if args.images else ""),
        "images": [p.stem for p in paths],
        "sweep": sweep,
        "summary": summary,
        "per_image": per_image,
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": machine_info(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    for n in names:
        print(f"{n:12s} BD-PSNR vs JPEG {summary[n]['bd_psnr_db']:+.2f} dB")
    return 0
