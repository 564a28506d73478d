"""What ``tune="ssim"`` saves at a quality target: file sizes at the same SSIM.

    python -m benchmarks.tune                # Kodak-24, BSDS500 test, scikit-image's 4 colour photos (about 3 minutes on 2 cores)
    python -m benchmarks.tune --images 3     # a quick try: the first 3 images of each set

Every image is encoded as a user would, ``svdk.encode(image, tiled=True,
quality=f"ssim:{t}", tune=tune)`` at each target ``t`` of :data:`TARGETS`,
once per tune. The file's bytes, the luma SSIM the target was checked on
(``Encoded.measured``: the encoder's reconstruction of the luma plane it
writes, which the test suite checks against the decoder) and PSNR-RGB of
the decoded file are recorded. Per set
and target, ``results/tune.json`` gives the median and mean of the size ratio
(``ssim`` over ``psnr``), how many files got smaller, whether every target
held, and the mean PSNR change. The BSDS500 and Kodak images are read from
``../shared/data`` (see its README); the photos ship with scikit-image.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from ._common import DEFAULT_KODAK, REPO, RESULTS, display_path, machine_info, write_json

__all__ = ["TARGETS", "TUNES", "PHOTOS", "DEFAULT_BSDS", "encode_both", "images_in", "summarize", "main"]

#: The SSIM targets (the default is 0.90).
TARGETS = (0.85, 0.90, 0.95)
TUNES = ("psnr", "ssim")
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
DEFAULT_BSDS = REPO.parent / "shared" / "data" / "bsds500" / "test"


def encode_both(image) -> dict:
    """``{target: {tune: {"bytes", "ssim_luma", "psnr_rgb"}}}`` of one image (a path or ``example:NAME``)."""
    import svdk
    from svdk import metrics

    warnings.simplefilter("ignore", svdk.SvdkWarning)
    pixels = svdk.load_image(image).color
    scorer = metrics.Scorer(pixels, ssim=False)
    out = {}
    for t in TARGETS:
        out[str(t)] = {}
        for tune in TUNES:
            enc = svdk.encode(pixels, tiled=True, quality=f"ssim:{t}", tune=tune)
            out[str(t)][tune] = {
                "bytes": enc.nbytes,
                "ssim_luma": enc.measured["value"],
                "psnr_rgb": scorer.psnr(svdk.decompress(enc.data)),
            }
    return out


def _one(job):
    name, image = job
    return name, encode_both(image)


def summarize(per_image: dict) -> dict:
    """Per target: the size ratio (tune ssim over psnr), files smaller, targets held, PSNR change."""
    out = {}
    for t in TARGETS:
        rows = [r[str(t)] for r in per_image.values()]
        ratio = np.array([r["ssim"]["bytes"] / r["psnr"]["bytes"] for r in rows])
        out[str(t)] = {
            "images": len(rows),
            "size_ratio_median": float(np.median(ratio)),
            "size_ratio_mean": float(np.mean(ratio)),
            "smaller": int(np.count_nonzero(ratio < 1)),
            "targets_met": int(sum(all(r[tune]["ssim_luma"] >= t for tune in TUNES) for r in rows)),
            "psnr_change_db_mean": float(np.mean([r["ssim"]["psnr_rgb"] - r["psnr"]["psnr_rgb"] for r in rows])),
        }
    return out


def images_in(folder: Path, pattern: str, step: int = 1, limit: int | None = None) -> list[tuple[str, str]]:
    """``[(stem, path), ...]``: every ``step``-th file of ``folder`` matching ``pattern``, in name order,
    the first ``limit`` of them; FileNotFoundError says where the data sets come from."""
    found = sorted(folder.glob(pattern))[::step]
    if not found:
        raise FileNotFoundError(
            f"no images in {folder}; ../shared/data/README.md says where the Kodak and BSDS500 "
            "sets come from (Kodak: r0k.us/graphics/kodak; BSDS500: github.com/BIDS/BSDS500)"
        )
    return [(p.stem, str(p)) for p in found][:limit]


def _sets(kodak: Path, bsds: Path, limit: int | None) -> dict[str, list[tuple[str, str]]]:
    return {
        "kodak": images_in(kodak, "kodim*.png", limit=limit),
        "bsds500-test": images_in(bsds, "*.jpg", limit=limit),
        "scikit-image": [(n, f"example:{n}") for n in PHOTOS[:limit]],
    }


def arguments(prog: str, doc: str, output: str, group: str) -> argparse.ArgumentParser:
    """The command line of ``benchmarks.tune`` and ``benchmarks.tune_choice``."""
    p = argparse.ArgumentParser(prog=f"python -m benchmarks.{prog}", description=doc.split("\n")[0])
    p.add_argument("--kodak", type=Path, default=DEFAULT_KODAK)
    p.add_argument("--bsds", type=Path, default=DEFAULT_BSDS, help="the BSDS500 test folder")
    p.add_argument("--images", type=int, help=f"only the first N images of each {group}")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--output", type=Path, default=RESULTS / output)
    return p


def main(argv: list[str] | None = None) -> int:
    args = arguments("tune", __doc__, "tune.json", "set").parse_args(argv)
    try:
        sets = _sets(args.kodak, args.bsds, args.images)
    except FileNotFoundError as exc:
        print(f"tune: {exc}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    jobs = [((name, stem), image) for name, images in sets.items() for stem, image in images]
    per_set: dict[str, dict] = {name: {} for name in sets}
    with Pool(args.jobs) as pool:
        for (name, stem), rows in pool.imap(_one, jobs):
            per_set[name][stem] = rows
    result = {
        "command": "python -m benchmarks.tune" + (f" --images {args.images}" if args.images else ""),
        "targets": list(TARGETS),
        "summary": {name: summarize(rows) for name, rows in per_set.items()},
        "per_image": per_set,
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": machine_info(),
    }
    write_json(args.output, result)
    for name, summary in result["summary"].items():
        for t, row in summary.items():
            print(f"{name:13s} ssim:{t}  size x{row['size_ratio_median']:.3f} (median), x{row['size_ratio_mean']:.3f} "
                  f"(mean), {row['smaller']}/{row['images']} smaller, targets met {row['targets_met']}/{row['images']}, "
                  f"PSNR {row['psnr_change_db_mean']:+.2f} dB")
    print(f"written {display_path(args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
