"""What each part of format 2.0's coding of the global layout is worth.

    python -m benchmarks.global_coding              # Kodak-24, writes results/global_coding.json
    python -m benchmarks.global_coding --images 3   # a quick try

Every variant codes the same SVD factors of each image (ycbcr 4:2:0, the
luma ranks of ``svdk bench``'s sweep, chroma a quarter) and is scored by
BD-PSNR against the JPEG curves of ``results/bench-kodak/jpeg.json`` (made
by ``svdk bench``), over 0.25-1.0 bpp, per image then averaged. Sizes are
the real coded bytes of each variant's planes plus svdk's 52-byte header and
CRC; qualities come from the decoded 8-bit image. The variants:

* ``v1``: format 1.0, one step per plane (``0.5 sqrt(s_k / n)``), factors
  delta-coded and zlib-compressed;
* ``v1-lzma``: the same integers with LZMA;
* ``steps``: a step per component (``1.5 sqrt(s_k / n) sqrt(s_k / s_i)``),
  delta coding, zlib;
* ``steps-lzma``: the same with LZMA;
* ``v2``: format 2.0, per-component steps, DCT of the factors, rANS over
  band models (what svdk writes; the test suite checks that its sizes are
  svdk's);
* ``v2-step1.2`` and ``v2-step2.0``: format 2.0 with other step factors.

An ablation has to reach inside the codec: this script uses svdk's private
helpers (``svdk._codec``'s quantization and ``svdk._entropy``'s coder) on
purpose, and is the one place outside ``svdk/`` besides the speed
benchmark's SVD comparison that does; the test suite checks that its ``v2``
still writes svdk's bytes.
"""

from __future__ import annotations

import lzma
import math
import sys
import zlib
from pathlib import Path

import numpy as np
from scipy.fft import dct

from svdk import _codec, _entropy, format as fmt
from svdk import load_image
from svdk.bench import codecs
from svdk.metrics import psnr

from ._common import RESULTS, ablation_main

OVERHEAD = 52 + 4  # header of a 3-plane file, CRC
VARIANTS = {
    "v1": dict(factor=0.5, per_component=False, transform="delta", coder="zlib"),
    "v1-lzma": dict(factor=0.5, per_component=False, transform="delta", coder="lzma"),
    "steps": dict(factor=1.5, per_component=True, transform="delta", coder="zlib"),
    "steps-lzma": dict(factor=1.5, per_component=True, transform="delta", coder="lzma"),
    "v2": dict(factor=_codec.STEP_FACTOR, per_component=True, transform="dct", coder="ans"),
    "v2-step1.2": dict(factor=1.2, per_component=True, transform="dct", coder="ans"),
    "v2-step2.0": dict(factor=2.0, per_component=True, transform="dct", coder="ans"),
}


def code_plane(plane: _codec.Plane, k: int, v: dict) -> tuple[np.ndarray, object]:
    """The decoded float plane and what the entropy stage needs for this variant.

    The same operations as :meth:`svdk._codec.Plane.quantize` and
    :func:`svdk._codec.reconstruct`, with the variant's choices.
    """
    u, s, vt = plane._factors(k)
    if v["per_component"]:
        ref = _codec.reference_value(s, plane.shape)
        exps = _codec.component_exponents(s, plane.shape)
    else:  # format 1.0's rule
        ref, exps = max(float(s[-1]), 1e-6), np.zeros(k, dtype=np.int64)
    code = _codec.step_code(v["factor"] * math.sqrt(ref / max(plane.shape)))
    scale = (np.sqrt(s) / _codec.component_steps(code, exps))[:, None]
    fa, fb = u.T * scale, vt * scale
    if v["transform"] == "dct":
        fa, fb = dct(fa, norm="ortho", axis=1), dct(fb, norm="ortho", axis=1)
    a, b = np.rint(fa).astype(np.int64), np.rint(fb).astype(np.int64)
    if v["transform"] == "dct":
        decoded = _codec.reconstruct(a, b, code, exps)
    else:
        steps = _codec.component_steps(code, exps)[:, None]
        decoded = ((a * steps).T @ (b * steps)).astype(np.float32)
    return decoded, (a, b, exps)


def coded_bytes(parts: list, v: dict) -> int:
    if v["coder"] == "ans":
        side, coded = [], []
        for a, b, exps in parts:
            la, lb = _entropy.choose_levels(a), _entropy.choose_levels(b)
            coded += [(a, la), (b, lb)]
            side.append(exps.astype(np.uint8).tobytes() + la.tobytes() + lb.tobytes())
        escapes, words = _entropy.encode(coded)
        return 4 + len(zlib.compress(b"".join(side) + _entropy.write_varints(escapes), 9)) + 4 * words.size
    raw = b"".join(
        fmt._write_ints(np.concatenate([np.diff(m, axis=1, prepend=0).ravel() for m in (a, b)]))[0]
        + (exps.astype(np.uint8).tobytes() if v["per_component"] else b"")
        for a, b, exps in parts
    )
    if v["coder"] == "zlib":
        return len(zlib.compress(raw, 6))
    return len(lzma.compress(raw, format=lzma.FORMAT_RAW, filters=fmt._LZMA_FILTERS))


def run_image(path: Path, ranks: list[int], names: list[str]) -> dict:
    pixels = load_image(str(path))
    image = pixels.color
    h, w = image.shape[:2]
    planes = [_codec.Plane(p) for p in _codec.to_planes(image, "ycbcr", True)]
    out = {}
    for name in names:
        v = VARIANTS[name]
        bpp, quality = [], []
        for k in ranks:
            c = _codec.chroma_rank(k, planes[1].shape)
            coded = [code_plane(p, r, v) for p, r in zip(planes, (k, c, c))]
            decoded = _codec.from_planes([d for d, _ in coded], "ycbcr", h, w)
            bpp.append(8 * (OVERHEAD + coded_bytes([x for _, x in coded], v)) / (h * w))
            quality.append(psnr(image, decoded))
        out[name] = {"bpp": bpp, "psnr-rgb": quality}
    return out


def main(argv: list[str] | None = None) -> int:
    sweep = [p[1] for p in codecs()["svdk-global-ycbcr"].sweep]
    return ablation_main("global_coding", __doc__, VARIANTS, sweep, run_image, RESULTS / "global_coding.json", argv)


if __name__ == "__main__":
    sys.exit(main())
