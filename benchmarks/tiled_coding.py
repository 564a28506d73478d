"""What each part of format 3.0's coding of the tiled layout is worth.

    python -m benchmarks.tiled_coding              # Kodak-24 (about 12 minutes), writes results/tiled_coding.json
    python -m benchmarks.tiled_coding --images 3   # a quick try

Every variant codes each image at the settings of ``svdk bench``'s
``svdk-tiled`` sweep (energy fractions, 8x8 tiles, ycbcr 4:2:0): the same
tile SVDs and the same components kept, so only the coding differs. Each is
scored by BD-PSNR against the JPEG curves of ``results/bench-kodak/jpeg.json``
(made by ``svdk bench``), over 0.25-1.0 bpp, per image then averaged. Sizes
are the real bytes of the files; qualities come from decoding them with
``svdk.decompress``. Each variant adds one part to the one before:

* ``v2``: format 2.0, one step ``sqrt(tau / T)`` per plane, the integers
  written as bytes and compressed with LZMA;
* ``ctx``: entropy coder 3 (rANS with context-chosen models) instead of LZMA;
* ``deblock``: and the deblocking filter, its strength chosen per plane;
* ``refine``: and the least-squares refinement of each factor to the other's
  rounding;
* ``v3``: and the step factor of format 3.0's first encoder, 1.25 at every
  rate (:data:`svdk._tiled.TILE_STEP_FACTOR`);
* ``lowstep``: and a coarser step factor at low rates
  (:data:`svdk._tiled.TILE_STEP_FACTOR_LOW` up to ``STEP_RAMP[0]``
  components per luma tile, see :func:`svdk._tiled.step_factor`): what svdk
  writes (the test suite checks that these are svdk's bytes).

An ablation has to reach inside the codec: like ``benchmarks.global_coding``,
this script sets private switches of ``svdk._tiled`` and calls
``svdk.format.pack`` directly, on purpose.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from pathlib import Path

import numpy as np

import svdk
from svdk import _tiled, format as fmt, policies
from svdk.bench import codecs
from svdk.metrics import psnr

from ._common import RESULTS, ablation_main

FINAL_STEP = _tiled.TILE_STEP_FACTOR
FINAL_LOW = _tiled.TILE_STEP_FACTOR_LOW
VARIANTS = {
    "v2": dict(coder="lzma", deblock=False, refine=0, step=1.0, low=1.0),
    "ctx": dict(coder="ctx", deblock=False, refine=0, step=1.0, low=1.0),
    "deblock": dict(coder="ctx", deblock=True, refine=0, step=1.0, low=1.0),
    "refine": dict(coder="ctx", deblock=True, refine=_tiled.REFINE_PASSES, step=1.0, low=1.0),
    "v3": dict(coder="ctx", deblock=True, refine=_tiled.REFINE_PASSES, step=FINAL_STEP, low=FINAL_STEP),
    "lowstep": dict(coder="ctx", deblock=True, refine=_tiled.REFINE_PASSES, step=FINAL_STEP, low=FINAL_LOW),
}


@contextlib.contextmanager
def variant(v: dict):
    """svdk's tiled encoder with the variant's choices, restored afterwards."""
    saved = (_tiled.TILE_STEP_FACTOR, _tiled.TILE_STEP_FACTOR_LOW, _tiled.REFINE_PASSES, _tiled.DEBLOCK_CANDIDATES)
    _tiled.TILE_STEP_FACTOR = v["step"]
    _tiled.TILE_STEP_FACTOR_LOW = v["low"]
    _tiled.REFINE_PASSES = v["refine"]
    _tiled.DEBLOCK_CANDIDATES = saved[3] if v["deblock"] else (0,)
    try:
        yield
    finally:
        (_tiled.TILE_STEP_FACTOR, _tiled.TILE_STEP_FACTOR_LOW, _tiled.REFINE_PASSES,
         _tiled.DEBLOCK_CANDIDATES) = saved


def encode(image: np.ndarray, energy: float, v: dict, **options) -> bytes:
    """The file of one variant at one setting of the sweep (``options``: those of :class:`svdk.Encoder`)."""
    with variant(v), warnings.catch_warnings():
        warnings.simplefilter("ignore", svdk.SvdkWarning)
        enc = svdk.Encoder(image, tiled=True, **options)
        counts = enc.check_ranks(policies.energy(enc, energy).ranks)
        if v["coder"] == "ctx":
            return enc.pack(counts)
        factors, codes = [], []
        for plane, k in zip(enc.planes, counts):
            *data, code = plane.quantize(k)
            factors.append(tuple(data))
            codes.append(code)
        return fmt.pack(
            width=enc.width, height=enc.height, mode=enc.mode, subsampled=enc.subsampled, factors=factors,
            qsteps=codes, alpha=enc.pixels.alpha, predictor="none", coder="lzma", layout="tiled", tile=enc.tile,
        )


def run_image(path: Path, energies: list[float], names: list[str]) -> dict:
    image = svdk.load_image(str(path)).color
    h, w = image.shape[:2]
    out = {}
    for name in names:
        bpp, quality = [], []
        for e in energies:
            data = encode(image, e, VARIANTS[name])
            bpp.append(8 * len(data) / (h * w))
            quality.append(psnr(image, svdk.decompress(data)))
        out[name] = {"bpp": bpp, "psnr-rgb": quality}
    return out


def main(argv: list[str] | None = None) -> int:
    sweep = [p[1] for p in codecs()["svdk-tiled"].sweep]
    return ablation_main("tiled_coding", __doc__, VARIANTS, sweep, run_image, RESULTS / "tiled_coding.json", argv)


if __name__ == "__main__":
    sys.exit(main())
