"""How one codec's curves moved between two ``svdk bench`` runs, rate by rate.

    git show b4f1cd4:results/bench-kodak/svdk-tiled.json > /tmp/before.json
    python -m benchmarks.rd_change /tmp/before.json results/bench-kodak/svdk-tiled.json

Both files are one codec's results as ``svdk bench`` writes them (per image,
the ``bpp`` of each setting and its PSNR-RGB and MS-SSIM). For every image
both curves are read at each rate, linear in ``log bpp`` between measured
points (and held at their ends: a rate outside a curve reads its nearest
point), MS-SSIM in dB (``-10 log10(1 - MS-SSIM)``); the table gives the
mean over the images the two runs share of new minus old, in dB.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from svdk.metrics import ms_ssim_db

__all__ = ["RATES", "changes", "main"]

#: Rates (bpp) the table reads.
RATES = (0.15, 0.25, 0.35, 0.5, 0.7, 1.0)
METRICS = {"psnr-rgb": "PSNR", "ms-ssim-rgb": "MS-SSIM"}


def _at(rows: dict, metric: str, rate: float) -> float:
    scale = ms_ssim_db if metric == "ms-ssim-rgb" else (lambda v: v)
    points = [(b, scale(v)) for b, v in zip(rows["bpp"], rows[metric]) if b is not None and v is not None]
    points = [(b, v) for b, v in points if v is not None]  # (MS-SSIM 1.0 has no dB value)
    x = np.log([b for b, _ in points])
    y = np.array([v for _, v in points], dtype=float)
    order = np.argsort(x)
    return float(np.interp(np.log(rate), x[order], y[order]))


def changes(old: dict, new: dict, rates=RATES) -> dict[str, list[float]]:
    """``{metric: [mean change in dB at each rate]}`` over the images both ``per_image`` tables share."""
    a, b = old["per_image"], new["per_image"]
    shared = sorted(set(a) & set(b))
    if not shared:
        raise ValueError("the two runs share no image")
    return {
        m: [float(np.mean([_at(b[i], m, r) - _at(a[i], m, r) for i in shared])) for r in rates]
        for m in METRICS
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.rd_change", description=__doc__.split("\n\n")[0])
    p.add_argument("old", help="one codec's results JSON of the earlier run")
    p.add_argument("new", help="the same codec's results JSON of the later run")
    args = p.parse_args(argv)
    try:
        old, new = (json.load(open(f)) for f in (args.old, args.new))
        moved = changes(old, new)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("| measure | " + " | ".join(f"{r:g} bpp" for r in RATES) + " |")
    print("|---|" + "---|" * len(RATES))
    for m, name in METRICS.items():
        cells = [f"{v:+.2f}" if round(v, 2) != 0 else "0.00" for v in moved[m]]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
