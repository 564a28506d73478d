"""A change's speed against an earlier commit, in one process: ``python -m benchmarks.ab_speed --baseline REV``.

These shared machines change speed from run to run by more than most
changes are worth (a tiled encode measured from 85x to 94x JPEG's encode
within an hour), and the ratio to Pillow's JPEG does not cancel it all. So this loads svdk as it was at ``REV`` (``git archive``,
imported as the package ``svdk_baseline``) beside the working tree's svdk
and times both on each Kodak image, alternating within every repeat
(each version first in every other repeat) after one warm-up each:

* ``tiled_quality``: ``encode(img, quality="ssim:0.90", tiled=True)``
  (``codec_speed``'s ``tiled_quality``);
* ``tiled_decompress``: ``decompress`` of that file;
* ``decompress``: ``decompress`` of ``compress(img, ranks=(64, 16, 16))``;
* ``tiled_cnn``, the working tree's only: the tiled encode at SSIM 0.90
  with ``policy="cnn"`` (the tiled-layout predictor, loaded and warmed up
  before the clock starts), timed in each repeat after the pairs and
  compared with both versions' ``tiled_quality``.

Each figure is the median over images of the per-image ratio of medians
(``this tree / baseline``; below 1 is faster). Both versions must write the
same bytes and decode the same pixels, or the script says where they
differ (a speed change that changes files is not a refactor). With
``--other-format`` the baseline is an earlier release whose files differ by
design (an older format, another encoder): the script then times both all
the same and only checks that the tree decodes the baseline's files to the
baseline's own pixels (old files keep decoding). This is how the speed
goals set against "today's" encoder of an earlier day are judged: against
that day's commit, in the same process, not against a figure from a run
on another day.

Writes ``results/ab_speed.json`` (``--output``). About three minutes on 2
cores with the 24 images and 6 repeats (an even number: each version goes
first as often as the other).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from ._common import DEFAULT_KODAK, REPO, RESULTS, DataMissing, kodak_paths, load_rgb, machine_info, write_json

QUALITY = "ssim:0.90"
RANKS = (64, 16, 16)
OPERATIONS = ("tiled_quality", "tiled_decompress", "decompress")
#: timed on the working tree only
TREE_ONLY = ("tiled_cnn",)


def _forget_baseline() -> None:
    """Drop ``svdk_baseline`` and its submodules from ``sys.modules`` (a later load starts afresh)."""
    for name in [m for m in sys.modules if m == "svdk_baseline" or m.startswith("svdk_baseline.")]:
        del sys.modules[name]


def load_baseline(rev: str, into: Path):
    """svdk as it was at ``rev``, imported as the package ``svdk_baseline``."""
    _forget_baseline()
    try:
        tar = subprocess.run(["git", "-C", str(REPO), "archive", rev, "svdk"], capture_output=True, check=True).stdout
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"ab_speed: git cannot export svdk at {rev!r}: {exc.stderr.decode().strip()}") from None
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        # (our own repository's files; the "data" filter where this Python has it, 3.11.4 and later)
        archive.extractall(into, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    spec = importlib.util.spec_from_file_location(
        "svdk_baseline", into / "svdk" / "__init__.py", submodule_search_locations=[str(into / "svdk")]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["svdk_baseline"] = module
    spec.loader.exec_module(module)
    return module


def run(base, tree, paths: list[Path], repeats: int, other_format: bool = False) -> tuple[dict, list[str]]:
    """Per-image times of ``base`` and ``tree`` (the two svdk packages), and where their files or pixels
    differ (``other_format``: only where the tree decodes the baseline's files to other pixels)."""
    versions = {"baseline": base, "tree": tree}
    for v in versions.values():
        warnings.simplefilter("ignore", v.SvdkWarning)
    tree.predictor.default_tiled_predictor().warm_up()
    rows, differ = {}, []
    for path in paths:
        img = load_rgb(path)
        files = {}
        for name, v in versions.items():
            tiled = v.encode(img, quality=QUALITY, tiled=True).data
            files[name] = (tiled, v.compress(img, ranks=RANKS))
        # (warm-ups: the tree's cnn encode, whose file must decode, and the tree's own files
        # where they differ from the baseline's, which the check below decodes anyway)
        tree.decompress(tree.encode(img, quality=QUALITY, tiled=True, policy="cnn").data)
        for mine, theirs in zip(files["tree"], files["baseline"]):
            if mine != theirs:
                tree.decompress(mine)
        if files["tree"] != files["baseline"] and not other_format:
            differ.append(f"{path.stem}: the files differ")
        if not all(np.array_equal(tree.decompress(f), base.decompress(f)) for f in files["baseline"]):
            differ.append(f"{path.stem}: the tree decodes the baseline's files to other pixels")

        def calls(v, name):
            tiled, plain = files[name]
            return {
                "tiled_quality": lambda: v.encode(img, quality=QUALITY, tiled=True),
                "tiled_decompress": lambda: v.decompress(tiled),
                "decompress": lambda: v.decompress(plain),
            }

        ops = {name: calls(v, name) for name, v in versions.items()}
        ops["tree"]["tiled_cnn"] = lambda: tree.encode(img, quality=QUALITY, tiled=True, policy="cnn")
        times = {(name, op): [] for name in versions for op in OPERATIONS}
        times.update({("tree", op): [] for op in TREE_ONLY})
        for r in range(repeats):
            for op in OPERATIONS:
                # alternating, op by op, and which goes first too (the second call of
                # a pair runs a few per cent faster, its data still in the cache)
                for name in (("baseline", "tree") if r % 2 == 0 else ("tree", "baseline")):
                    t0 = time.perf_counter()
                    ops[name][op]()
                    times[name, op].append(time.perf_counter() - t0)
            for op in TREE_ONLY:
                t0 = time.perf_counter()
                ops["tree"][op]()
                times["tree", op].append(time.perf_counter() - t0)
        rows[path.stem] = {f"{op}_{name}_ms": 1e3 * float(np.median(t)) for (name, op), t in times.items()}
        print(f"{path.stem}: " + ", ".join(
            f"{op} x{rows[path.stem][f'{op}_tree_ms'] / rows[path.stem][f'{op}_baseline_ms']:.3f}"
            for op in OPERATIONS) + f", tiled_cnn / baseline's tiled_quality x"
            f"{rows[path.stem]['tiled_cnn_tree_ms'] / rows[path.stem]['tiled_quality_baseline_ms']:.3f}", file=sys.stderr)
    return rows, differ


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ab_speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", required=True, metavar="REV", help="the commit to compare with (e.g. HEAD~3)")
    p.add_argument("--data", default=str(DEFAULT_KODAK), help=f"Kodak folder (default {DEFAULT_KODAK})")
    p.add_argument("--images", type=int, help="only the first N Kodak images")
    p.add_argument("--repeats", type=int, default=6, help="an even number (default 6): each version goes first as often")
    p.add_argument("--output", type=Path, default=RESULTS / "ab_speed.json")
    p.add_argument("--other-format", action="store_true",
                   help="the baseline writes other files by design (an earlier release): time it all the same")
    args = p.parse_args(argv)
    if args.repeats < 2 or args.repeats % 2:
        p.error(f"--repeats must be an even number of at least 2; got {args.repeats}")
    try:
        paths = kodak_paths(args.data, args.images)
    except DataMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import svdk

    rev = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet", f"{args.baseline}^{{commit}}"],
        capture_output=True, text=True,
    )
    if rev.returncode:
        print(f"error: no commit {args.baseline!r} in {REPO}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        try:
            base = load_baseline(rev.stdout.strip(), Path(tmp))
            rows, differ = run(base, svdk, paths, args.repeats, args.other_format)
        finally:
            _forget_baseline()
    summary = {}
    for op in OPERATIONS:
        ratios = [r[f"{op}_tree_ms"] / r[f"{op}_baseline_ms"] for r in rows.values()]
        summary[op] = {
            "ratio_median": float(np.median(ratios)),
            "ratio_range": [float(min(ratios)), float(max(ratios))],
            "baseline_ms_median": float(np.median([r[f"{op}_baseline_ms"] for r in rows.values()])),
            "tree_ms_median": float(np.median([r[f"{op}_tree_ms"] for r in rows.values()])),
        }
    for op in TREE_ONLY:
        to_base = [r[f"{op}_tree_ms"] / r["tiled_quality_baseline_ms"] for r in rows.values()]
        summary[op] = {
            "tree_ms_median": float(np.median([r[f"{op}_tree_ms"] for r in rows.values()])),
            "to_baseline_tiled_quality_median": float(np.median(to_base)),
            "to_baseline_tiled_quality_range": [float(min(to_base)), float(max(to_base))],
            "to_tree_tiled_quality_median": float(np.median(
                [r[f"{op}_tree_ms"] / r["tiled_quality_tree_ms"] for r in rows.values()])),
        }
    result = {
        "name": "ab_speed",
        "description": "svdk's working tree against an earlier commit, timed alternately in one process",
        "command": "python -m benchmarks.ab_speed " + " ".join(sys.argv[1:] if argv is None else argv),
        "baseline": {"rev": args.baseline, "commit": rev.stdout.strip()},
        "images": len(rows),
        "repeats": args.repeats,
        "settings": {"quality": QUALITY, "ranks": list(RANKS), "other_format": args.other_format,
                     "statistic": "median over images of the per-image ratio of medians (tree / baseline)"},
        "machine": machine_info(),
        "same_files_and_pixels": None if args.other_format else not differ,
        "differences": differ,
        "summary": summary,
        "per_image": rows,
    }
    write_json(args.output, result)
    for op in OPERATIONS:
        s = summary[op]
        print(f"{op}: x{s['ratio_median']:.3f} of the baseline's time (range {s['ratio_range'][0]:.2f} to "
              f"{s['ratio_range'][1]:.2f}; {s['baseline_ms_median']:.1f} -> {s['tree_ms_median']:.1f} ms)")
    for op in TREE_ONLY:
        s = summary[op]
        print(f"{op}: {s['tree_ms_median']:.1f} ms, x{s['to_baseline_tiled_quality_median']:.3f} of the baseline's "
              f"tiled_quality (range {s['to_baseline_tiled_quality_range'][0]:.2f} to "
              f"{s['to_baseline_tiled_quality_range'][1]:.2f}), x{s['to_tree_tiled_quality_median']:.3f} of the tree's")
    if args.other_format:
        print("other format: files not compared; " + (
            "the tree decodes the baseline's files to its pixels" if not differ else f"DIFFERENT: {differ[:5]}"))
    else:
        print("same files and pixels" if not differ else f"DIFFERENT: {differ[:5]}")
    return 0 if not differ else 1


if __name__ == "__main__":
    sys.exit(main())
