"""What coder 3's contexts within a factor vector are worth: ``python -m benchmarks.coder_contexts``.

    python -m benchmarks.coder_contexts              # 24 Kodak images x 3 targets, about 4 minutes on 2 cores
    python -m benchmarks.coder_contexts --images 2   # a quick try

Coder 3 (``svdk._tilecoder``) codes each factor vector one position at a
time: the context of coefficient ``j`` includes ``2 |x[j-1]| + |x[j-2]|``,
the magnitudes just decoded in the same vector. That makes every position
of every component its own pass (17 passes per component and plane), and
the tiled decoder's time goes mostly into those passes. A coder that read
a whole vector in one pass could only use what is known before the vector
starts: the summed magnitudes ``n`` that coder 3 adds too (the previous
component's, or the same component's ``A``), and the previous component's
coefficient at the same position.

This measures what giving up the in-vector part would cost, before anyone
builds such a coder. Each Kodak image is encoded as a user would
(``svdk.encode(image, quality=t, tiled=True)`` at each target ``t`` of
:data:`TARGETS`); the integers the file codes are captured, and the
coefficient symbols' empirical conditional entropy (per factor and
position, given the context's bucket, the same 11 octave buckets) is
computed under four contexts:

* ``coder3``: coder 3's own (checked against the buckets its walk
  produces; the script stops if they differ);
* ``vector``: ``n // (j + 1)`` alone (a whole-vector pass);
* ``vector_prev``: that plus twice the previous component's magnitude at
  position ``j``;
* ``none``: no context (one distribution per factor and position).

Empirical entropies are the ideal for each set of contexts (each file
would send its own statistics); coder 3's real model families cost more.
The difference between two of them, as a share of the file's real bits,
says how much larger files would be if nothing else changed. Writes
``results/coder_contexts.json``. It reaches inside the codec on purpose,
as the other ablations do.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

from ._common import DEFAULT_KODAK, RESULTS, DataMissing, kodak_paths, load_rgb, machine_info, write_json

__all__ = ["main", "plane_entropies"]

TARGETS = ("ssim:0.80", "ssim:0.90", "ssim:0.97")
CONTEXTS = ("coder3", "vector", "vector_prev", "none")


def _entropy(groups: dict) -> float:
    """Summed empirical entropy (bits) of values given their bucket, over groups ``{key: (buckets, values)}``."""
    from svdk import _tilecoder

    total = 0.0
    for buckets, values in groups.values():
        buckets, values = np.concatenate(buckets), np.concatenate(values)
        if values.size == 0:
            continue
        offset = values - values.min()
        width = int(offset.max()) + 1
        counts = np.bincount(buckets * width + offset, minlength=_tilecoder.COEF_BUCKETS * width)
        counts = counts.reshape(_tilecoder.COEF_BUCKETS, width).astype(np.float64)
        per_bucket = counts.sum(axis=1, keepdims=True)
        p = np.where(counts > 0, counts / np.maximum(per_bucket, 1.0), 1.0)
        total -= float((counts * np.log2(p)).sum())
    return total


def plane_entropies(grid, tile: int, max_rank: int, known) -> dict:
    """Entropy in bits of one plane's coefficient symbols under each of :data:`CONTEXTS`.

    ``grid``, ``tile``, ``max_rank`` and ``known = (ranks, dc, A, B)`` are
    what the encoder hands coder 3 for the plane.
    """
    from svdk import _tilecoder as tc

    ranks, _, a_all, b_all = known
    ranks = np.asarray(ranks, dtype=np.int64).ravel()
    bucket = tc.COEF_BUCKET_OF

    def of(c):
        return bucket[np.minimum(c, tc.CONTEXT_CAP)]

    # coder 3's own passes, to check the replication below against
    walked = []
    tc.walk(grid, tile, max_rank, lambda g, c, v: (walked.append((g, c, v)) if g[0] == "coef" else None) or v, known)
    walked = iter(walked)
    groups = {name: {} for name in CONTEXTS}
    start = 0
    norm = np.zeros(ranks.size, dtype=np.int64)
    previous = [np.zeros((ranks.size, tile), dtype=np.int64) for _ in range(2)]
    for i in range(max_rank):
        tiles = np.flatnonzero(ranks > i)
        m = tiles.size
        if m == 0:
            break
        n = np.zeros(m, dtype=np.int64) if i == 0 else norm[tiles] // 2
        sums = []
        for f, vectors in enumerate((a_all[start : start + m], b_all[start : start + m])):
            mag = np.abs(vectors)
            before = previous[f][tiles]
            for j in range(tile):
                base = n // (j + 1)
                inside = base + (2 * mag[:, j - 1] if j >= 1 else 0) + (mag[:, j - 2] if j >= 2 else 0)
                group, ctx, values = next(walked)
                if group != ("coef", f, j) or not np.array_equal(bucket[ctx], of(inside)) or not np.array_equal(
                    values, vectors[:, j]
                ):
                    raise RuntimeError(f"the contexts of component {i}, factor {f}, position {j} differ from coder 3's")
                for name, ctx_bucket in (
                    ("coder3", of(inside)),
                    ("vector", of(base)),
                    ("vector_prev", of(base + 2 * before[:, j])),
                    ("none", np.zeros(m, dtype=np.int64)),
                ):
                    b, v = groups[name].setdefault((f, j), ([], []))
                    b.append(ctx_bucket)
                    v.append(vectors[:, j])
            n = mag.sum(axis=1)
            sums.append(n)
            previous[f][tiles] = mag
        norm[tiles] = sums[0] + sums[1]
        start += m
    if next(walked, None) is not None:
        raise RuntimeError("coder 3 codes more coefficient passes than the replication")
    return {name: _entropy(g) for name, g in groups.items()}


def image_row(img: np.ndarray, target: str) -> dict:
    """The file's bits and its coefficient symbols' entropies under each context, at ``target``."""
    import svdk
    from svdk import _tilecoder

    captured = []
    real = _tilecoder.encode

    def capture(planes):
        captured.append(planes)
        return real(planes)

    _tilecoder.encode = capture
    try:
        data = svdk.encode(img, quality=target, tiled=True).data
    finally:
        _tilecoder.encode = real
    row = {"file_bits": 8 * len(data), **{name: 0.0 for name in CONTEXTS}}
    for plane in captured[-1]:
        for name, bits in plane_entropies(*plane).items():
            row[name] += bits
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.coder_contexts", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_KODAK), help=f"Kodak folder (default {DEFAULT_KODAK})")
    p.add_argument("--images", type=int, help="only the first N Kodak images")
    p.add_argument("--out", type=Path, default=RESULTS / "coder_contexts.json")
    args = p.parse_args(argv)
    try:
        paths = kodak_paths(args.data, args.images)
    except DataMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import svdk

    warnings.simplefilter("ignore", svdk.SvdkWarning)
    per_image = {path.stem: {} for path in paths}
    for path in paths:
        img = load_rgb(path)
        for target in TARGETS:
            per_image[path.stem][target] = image_row(img, target)
        print(f"{path.stem}: done", file=sys.stderr)
    summary = {}
    for target in TARGETS:
        rows = [per_image[name][target] for name in per_image]
        bits = sum(r["file_bits"] for r in rows)
        totals = {name: sum(r[name] for r in rows) for name in CONTEXTS}
        summary[target] = {
            "file_bits": bits,
            "entropy_bits": totals,
            # what each context set would add to coder 3's, as a share of the files' real bits
            "extra_share": {name: (totals[name] - totals["coder3"]) / bits for name in CONTEXTS if name != "coder3"},
        }
        extra = summary[target]["extra_share"]
        print(f"{target}: whole-vector contexts {100 * extra['vector']:+.1f} % of the files' bits, with the "
              f"previous component {100 * extra['vector_prev']:+.1f} %, no context {100 * extra['none']:+.1f} %")
    write_json(args.out, {
        "name": "coder_contexts",
        "description": "empirical conditional entropy of the tiled coefficient symbols under coder 3's contexts "
                       "and under contexts a whole-vector pass could use",
        "command": "python -m benchmarks.coder_contexts " + " ".join(sys.argv[1:] if argv is None else argv),
        "images": len(per_image),
        "targets": list(TARGETS),
        "machine": machine_info(),
        "summary": summary,
        "per_image": per_image,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
