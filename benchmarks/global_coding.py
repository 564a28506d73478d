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

import argparse
import json
import lzma
import math
import sys
import time
import zlib
from pathlib import Path

import numpy as np
from scipy.fft import dct

from svdk import _codec, _entropy, format as fmt
from svdk import load_image
from svdk.bench import bd_psnr, codecs
from svdk.metrics import psnr

from ._common import DEFAULT_KODAK, RESULTS, DataMissing, kodak_paths, machine_info

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
    p = argparse.ArgumentParser(prog="python -m benchmarks.global_coding", description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_KODAK, help="folder of kodim01.png ... kodim24.png")
    p.add_argument("--jpeg", type=Path, default=RESULTS / "bench-kodak" / "jpeg.json")
    p.add_argument("--images", type=int)
    p.add_argument("--output", type=Path, default=RESULTS / "global_coding.json")
    args = p.parse_args(argv)
    try:
        paths = kodak_paths(args.data, args.images)
    except DataMissing as exc:
        print(f"global_coding: {exc}", file=sys.stderr)
        return 2
    try:
        jpeg = json.loads(args.jpeg.read_text())["per_image"]
    except (OSError, KeyError, ValueError) as exc:
        print(f"global_coding: cannot read the JPEG curves ({exc}); run 'svdk bench' first", file=sys.stderr)
        return 2
    ranks = [p[1] for p in codecs()["svdk-global-ycbcr"].sweep]
    names = list(VARIANTS)
    t0 = time.perf_counter()
    per_image, bd = {}, {n: [] for n in names}
    for path in paths:
        curves = run_image(path, ranks, names)
        per_image[path.stem] = curves
        ref = jpeg[path.stem]
        for n in names:
            bd[n].append(bd_psnr(ref["bpp"], ref["psnr-rgb"], curves[n]["bpp"], curves[n]["psnr-rgb"]))
        print(path.stem, " ".join(f"{n} {bd[n][-1]:+.2f}" for n in names), flush=True)
    summary = {n: {"bd_psnr_db": float(np.mean(bd[n])), **VARIANTS[n]} for n in names}
    result = {
        "name": "global_coding",
        "description": __doc__.split("\n\n")[2].replace("\n", " "),
        "command": "python -m benchmarks.global_coding" + (f" --images {args.images}" if args.images else ""),
        "images": [p.stem for p in paths],
        "ranks": ranks,
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


if __name__ == "__main__":
    sys.exit(main())
