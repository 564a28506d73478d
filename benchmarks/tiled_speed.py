"""A tiled encode at a quality target, exact search against the predictor: ``python -m benchmarks.tiled_speed``.

On each Kodak image, interleaved within every repeat and timed with
``time.perf_counter`` around one call (one warm-up per image and operation):

* ``quality``: ``svdk.encode(img, quality="ssim:0.90", tiled=True)``, the
  exact search (what ``benchmarks.codec_speed`` reports as ``tiled_quality``);
* ``cnn``: the same with ``policy="cnn"``: the tiled-layout predictor, then
  the check and correction (model loaded before the clock starts);
* ``jpeg``: Pillow's JPEG encode at quality 75 (``benchmarks.codec_speed``'s
  reference), so each time is also given as a ratio to JPEG's in the same run;
* what neither policy can save, timed apart: ``decompose``,
  ``svdk.Encoder(img, tiled=True)`` (the tile SVDs of all three planes), and
  ``pack``, ``encoder.pack(...)`` at the exact search's count (quantization
  and the entropy coding); ``fixed_share`` is their sum over the exact
  search's time.

Per operation, the median over images of each image's median over the
repeats; ``cnn_to_quality`` is the median over images of the per-image ratio.

The target (issue 12) is 0.6 times the exact search's time on the day it
was set, when the exact search took 90 times JPEG's encode: at most 54
for ``cnn_to_jpeg_per_image``, the median over images of the per-image
ratio (as ``codec_speed`` judges its ratios). ``cnn_to_quality`` compares with today's exact search, which has
become faster since; it is reported beside it.
Writes ``results/tiled_speed.json``. About a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from ._common import DEFAULT_KODAK, RESULTS, DataMissing, kodak_paths, load_rgb, machine_info
from .codec_speed import jpeg_encode

__all__ = ["main"]

QUALITY = "ssim:0.90"
#: At most this share of the exact search's time (issue 12) ...
TARGET_RATIO = 0.6
#: ... as it was when the goal was set: 90 times Pillow's JPEG encode, 321 ms a Kodak image (the
#: figures issue 12 gives, from ``codec_speed``'s run committed in d9e282f: 90.9x, 321.3 ms).
EXACT_TO_JPEG_WHEN_SET = 90.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tiled_speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_KODAK), help=f"Kodak folder (default {DEFAULT_KODAK})")
    p.add_argument("--images", type=int, help="only the first N Kodak images")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quality", default=QUALITY)
    p.add_argument("--out", default=str(RESULTS / "tiled_speed.json"))
    args = p.parse_args(argv)
    try:
        paths = kodak_paths(args.data, args.images)
    except DataMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import svdk
    from tqdm import tqdm

    warnings.simplefilter("ignore", svdk.SvdkWarning)
    model = svdk.predictor.default_tiled_predictor()
    model.warm_up()
    rows = []
    for path in tqdm(paths, desc="tiled speed", unit="img"):
        img = load_rgb(path)
        encoder = svdk.Encoder(img, tiled=True)
        exact_ranks = encoder.encode(quality=args.quality).components
        ops = {
            "quality": lambda img: svdk.encode(img, quality=args.quality, tiled=True),
            "cnn": lambda img: svdk.encode(img, quality=args.quality, tiled=True, policy="cnn"),
            "jpeg": jpeg_encode,
            "decompose": lambda img: svdk.Encoder(img, tiled=True),
            "pack": lambda img: encoder.pack(exact_ranks),
        }
        results = {name: fn(img) for name, fn in ops.items()}  # warm-up, and what each made
        times = {name: [] for name in ops}
        for _ in range(args.repeats):
            for name, fn in ops.items():
                t0 = time.perf_counter()
                fn(img)
                times[name].append(time.perf_counter() - t0)
        q, c = results["quality"], results["cnn"]
        rows.append({
            "image": path.name,
            **{f"{name}_ms": 1e3 * float(np.median(ts)) for name, ts in times.items()},
            "quality_evaluations": q.evaluations,
            "cnn_evaluations": c.evaluations,
            "cnn_predicted": c.predicted_rank,
            "cnn_count": c.components[0],
            "quality_count": q.components[0],
            "cnn_correction": c.correction,
            "cnn_bytes_vs_quality": c.nbytes / q.nbytes,
            "fixed_share": float((np.median(times["decompose"]) + np.median(times["pack"])) / np.median(times["quality"])),
        })

    def med(key):
        return float(np.median([r[key] for r in rows]))

    ratio = float(np.median([r["cnn_ms"] / r["quality_ms"] for r in rows]))
    cnn_to_jpeg = float(np.median([r["cnn_ms"] / r["jpeg_ms"] for r in rows]))
    summary = {
        "quality_ms": med("quality_ms"),
        "cnn_ms": med("cnn_ms"),
        "jpeg_ms": med("jpeg_ms"),
        "decompose_ms": med("decompose_ms"),
        "pack_ms": med("pack_ms"),
        "fixed_share": med("fixed_share"),
        "quality_to_jpeg": med("quality_ms") / med("jpeg_ms"),
        "cnn_to_jpeg": med("cnn_ms") / med("jpeg_ms"),
        "cnn_to_quality": ratio,
        # judged as codec_speed judges its ratios: the median over images of the per-image ratio
        "cnn_to_jpeg_per_image": cnn_to_jpeg,
        "cnn_to_jpeg_target": TARGET_RATIO * EXACT_TO_JPEG_WHEN_SET,
        "cnn_to_jpeg_met": cnn_to_jpeg <= TARGET_RATIO * EXACT_TO_JPEG_WHEN_SET,
        "quality_evaluations_median": med("quality_evaluations"),
        "cnn_evaluations_median": med("cnn_evaluations"),
        "cnn_bytes_vs_quality_median": med("cnn_bytes_vs_quality"),
    }
    report = {
        "name": "tiled_speed",
        "description": "a tiled encode at SSIM 0.90 on luma: exact search vs the tiled-layout predictor, "
                       "with Pillow's JPEG q75 encode as the reference in the same run",
        "command": "python -m benchmarks.tiled_speed " + " ".join(argv if argv is not None else sys.argv[1:]),
        "images": len(rows),
        "repeats": args.repeats,
        "settings": {"quality": args.quality, "model": model.describe()},
        "machine": machine_info(),
        "summary": summary,
        "per_image": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    s = summary
    print(f"tiled at {args.quality}: exact search {s['quality_ms']:.1f} ms ({s['quality_to_jpeg']:.1f}x JPEG, "
          f"{s['quality_evaluations_median']:.0f} evaluations), predictor {s['cnn_ms']:.1f} ms "
          f"({s['cnn_to_jpeg']:.1f}x JPEG, per image {cnn_to_jpeg:.1f}x, target <= {s['cnn_to_jpeg_target']:.0f}x: "
          f"{'met' if s['cnn_to_jpeg_met'] else 'not met'}; {s['cnn_evaluations_median']:.0f} evaluations); "
          f"predictor/exact {ratio:.2f}"
          f"; bytes x{s['cnn_bytes_vs_quality_median']:.3f}; decomposition and packing are "
          f"{100 * s['fixed_share']:.0f} % of the exact search's time; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
