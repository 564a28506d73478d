"""How one codec's curves moved between two ``svdk bench`` runs, rate by rate.

    git show b4f1cd4:results/bench-kodak/svdk-tiled.json > /tmp/before.json
    python -m benchmarks.rd_change /tmp/before.json results/bench-kodak/svdk-tiled.json

Both files are one codec's results as ``svdk bench`` writes them (per image,
the ``bpp`` of each setting and its PSNR-RGB, MS-SSIM and SSIM). For every image
both curves are read at each rate as ``svdk bench`` reads its "PSNR at"
figures (:func:`svdk.bench.psnr_at`: PCHIP in ``log bpp``, never
extrapolated), MS-SSIM and SSIM in dB (``-10 log10(1 - x)``); the table gives
the mean of new minus old, in dB, over the images the two runs share whose
curves both reach that rate.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from svdk.bench import psnr_at
from svdk.metrics import ms_ssim_db

__all__ = ["RATES", "changes", "main"]

#: Rates (bpp) the table reads.
RATES = (0.15, 0.25, 0.35, 0.5, 0.7, 1.0)
METRICS = {"psnr-rgb": "PSNR", "ms-ssim-rgb": "MS-SSIM", "ssim": "SSIM"}
#: Read in dB as -10 log10(1 - value).
_SIMILARITY = ("ms-ssim-rgb", "ssim")


def _at(rows: dict, metric: str, rate: float) -> float:
    """The curve's value at ``rate`` (NaN where it does not reach it)."""
    scale = ms_ssim_db if metric in _SIMILARITY else (lambda v: v)
    values = [np.nan if v is None or scale(v) is None else scale(v) for v in rows[metric]]
    return psnr_at([np.nan if b is None else b for b in rows["bpp"]], values, rate)


def changes(old: dict, new: dict, rates=RATES) -> dict[str, list[float]]:
    """``{metric: [mean change in dB at each rate]}`` over the images both ``per_image`` tables share
    (NaN at a rate no shared image's two curves reach)."""
    a, b = old["per_image"], new["per_image"]
    shared = sorted(set(a) & set(b))
    if not shared:
        raise ValueError("the two runs share no image")
    measured = [m for m in METRICS if all(m in a[i] and m in b[i] for i in shared)]
    return {m: [_mean([_at(b[i], m, r) - _at(a[i], m, r) for i in shared]) for r in rates] for m in measured}


def _mean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


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
    for m, values in moved.items():
        name = METRICS[m]
        cells = ["-" if not np.isfinite(v) else f"{v:+.2f}" if round(v, 2) != 0 else "0.00" for v in values]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
