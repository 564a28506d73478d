"""How ``tune="ssim"``'s constants were chosen: its variants on a sample of each set.

    python -m benchmarks.tune_choice               # about 3 minutes; writes results/tune_choice.json
    python -m benchmarks.tune_choice --images 2    # a quick try: the first 2 images of each sample

The sample is 12 Kodak images (every other one), 12 BSDS500 test images
(every 17th in name order) and scikit-image's four colour photos. Each
variant codes every image with the tiled layout at 12 component counts (0.1
to 3.2 luma components per tile, geometric; ``Encoder.pack(ranks_for(k))``),
decodes the files with ``svdk.decompress`` and is scored by BD-rate against
the image's JPEG curve in the committed ``svdk bench`` results, in PSNR-RGB
and in MS-SSIM (dB), over 0.25-1 and 0.1-0.3 bpp, per image then averaged
per set. The variants set ``svdk._tiled``'s constants :data:`SSIM_MASKING`,
:data:`SSIM_MASKING_C` and :data:`SSIM_STEP_FACTORS` (a private switch, on
purpose, as the coding ablations do); ``psnr`` is the default tune.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from ._common import RESULTS, display_path, machine_info, write_json
from .rd_change import _mean
from .tune import PHOTOS, arguments, images_in

__all__ = ["VARIANTS", "sample", "run_image", "main"]

#: name -> (tune, SSIM_MASKING, SSIM_MASKING_C, SSIM_STEP_FACTORS); "ssim" is what svdk writes.
VARIANTS = {
    "psnr": ("psnr", None, None, None),
    "masking 0.5": ("ssim", 0.5, 20.0, (1.5, 1.75)),
    "ssim": ("ssim", 0.7, 20.0, (1.5, 1.75)),
    "masking 1.0": ("ssim", 1.0, 20.0, (1.5, 1.75)),
    "constant 5": ("ssim", 0.7, 5.0, (1.5, 1.75)),
    "constant 58.5": ("ssim", 0.7, 58.5, (1.5, 1.75)),
    "steps 1.25-1.5": ("ssim", 0.7, 20.0, (1.25, 1.5)),
}
PER_TILE = np.geomspace(0.1, 3.2, 12)
SETS = {"kodak": "bench-kodak", "bsds500-test": "bench-bsds500-test", "scikit-image": "bench-photos"}


def sample(kodak: Path, bsds: Path, limit: int | None = None) -> dict[str, list[tuple[str, str]]]:
    """``{set: [(name, image), ...]}``: the images the constants were chosen on."""
    return {
        "kodak": images_in(kodak, "kodim*.png", 2, limit),
        "bsds500-test": images_in(bsds, "*.jpg", 17, limit),
        "scikit-image": [(n, f"example:{n}") for n in PHOTOS][:limit],
    }


def run_image(image, variant: str) -> dict:
    """``{"bpp", "psnr-rgb", "ms-ssim-rgb"}`` of one image (a path or ``example:NAME``) in one variant."""
    import svdk
    from svdk import _tiled, metrics

    tune, masking, constant, steps = VARIANTS[variant]
    if tune == "ssim":
        _tiled.SSIM_MASKING, _tiled.SSIM_MASKING_C, _tiled.SSIM_STEP_FACTORS = masking, constant, steps
    warnings.simplefilter("ignore", svdk.SvdkWarning)
    pixels = svdk.load_image(image).color
    enc = svdk.Encoder(pixels, tiled=True, tune=tune)
    scorer = metrics.Scorer(pixels, ssim=False)
    out = {"bpp": [], "psnr-rgb": [], "ms-ssim-rgb": []}
    for per_tile in PER_TILE:
        k = int(min(max(1, round(per_tile * enc.planes[0].ntiles)), enc.max_ranks[0]))
        data = enc.pack(enc.ranks_for(k))
        decoded = svdk.decompress(data)
        out["bpp"].append(8 * len(data) / (pixels.shape[0] * pixels.shape[1]))
        out["psnr-rgb"].append(scorer.psnr(decoded))
        out["ms-ssim-rgb"].append(metrics.ms_ssim(pixels, decoded))
    return out


def _one(job):
    key, image, variant = job
    return key, variant, run_image(image, variant)


def db(values) -> list[float]:
    """MS-SSIM values in dB (NaN where there is none)."""
    from svdk.metrics import ms_ssim_db

    return [np.nan if v is None or ms_ssim_db(v) is None else ms_ssim_db(v) for v in values]


def _bd(jpeg: dict, rows: dict) -> dict:
    from svdk.bench import BD_RANGES, bd_rate
    out = {}
    for span, (lo, hi) in BD_RANGES.items():
        out[f"psnr {span}"] = bd_rate(jpeg["bpp"], jpeg["psnr-rgb"], rows["bpp"], rows["psnr-rgb"], lo, hi)
        out[f"ms-ssim {span}"] = bd_rate(jpeg["bpp"], db(jpeg["ms-ssim-rgb"]), rows["bpp"], db(rows["ms-ssim-rgb"]),
                                         lo, hi)
    return out


def held_out(sets: dict[str, list[tuple[str, str]]]) -> dict:
    """From the committed ``svdk bench`` curves: MS-SSIM BD-rate against JPEG (0.25-1 bpp) of
    svdk-tiled and svdk-tiled-ssim on the sample and on the rest of each set, so that a choice fitted
    to the sample shows whether it carries over."""
    from svdk.bench import bd_rate
    out = {}
    for name, run in SETS.items():
        curves = {c: json.loads((RESULTS / run / f"{c}.json").read_text())["per_image"]
                  for c in ("jpeg", "svdk-tiled", "svdk-tiled-ssim")}
        chosen = {stem for stem, _ in sets[name]}
        groups = {"sample": sorted(chosen & set(curves["jpeg"])), "rest": sorted(set(curves["jpeg"]) - chosen)}
        out[name] = {}
        for group, stems in groups.items():
            if not stems:
                continue
            j = curves["jpeg"]
            out[name][group] = {"images": len(stems), **{
                c: _mean([bd_rate(j[s]["bpp"], db(j[s]["ms-ssim-rgb"]), curves[c][s]["bpp"],
                                  db(curves[c][s]["ms-ssim-rgb"])) for s in stems])
                for c in ("svdk-tiled", "svdk-tiled-ssim")}}
    return out


def main(argv: list[str] | None = None) -> int:
    args = arguments("tune_choice", __doc__, "tune_choice.json", "sample").parse_args(argv)
    try:
        sets = sample(args.kodak, args.bsds, args.images)
        jpeg = {name: json.loads((RESULTS / run / "jpeg.json").read_text())["per_image"] for name, run in SETS.items()}
    except (FileNotFoundError, OSError, ValueError) as exc:
        print(f"tune_choice: {exc}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    jobs = [((name, stem), image, v) for name, images in sets.items() for stem, image in images for v in VARIANTS]
    curves: dict = {name: {v: {} for v in VARIANTS} for name in sets}
    with Pool(args.jobs) as pool:
        for (name, stem), variant, rows in pool.imap_unordered(_one, jobs):
            curves[name][variant][stem] = rows
    summary = {}
    for name, by_variant in curves.items():
        summary[name] = {}
        for variant, per_image in by_variant.items():
            bds = [_bd(jpeg[name][stem], rows) for stem, rows in sorted(per_image.items())]
            summary[name][variant] = {k: _mean([b[k] for b in bds]) for k in bds[0]}
    write_json(args.output, {
        "command": "python -m benchmarks.tune_choice" + (f" --images {args.images}" if args.images else ""),
        "variants": {k: list(v) for k, v in VARIANTS.items()},
        "images": {name: [stem for stem, _ in images] for name, images in sets.items()},
        "summary": summary,
        "held_out": held_out(sets) if not args.images else None,
        "per_image": curves,
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": machine_info(),
    })
    for name, rows in summary.items():
        for variant, r in rows.items():
            print(f"{name:13s} {variant:15s} " + "  ".join(f"{k} {v:+6.1f} %" for k, v in r.items()))
    print(f"written {display_path(args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
