"""Re-encode every committed svdk benchmark point and check it is unchanged.

A change to svdk that should not change its files (a refactor) proves it
with this script: every svdk point of the committed ``svdk bench`` results
(``results/bench-kodak`` and ``results/bench-bsds500-test``) is encoded
again with the installed svdk, and

* its size must equal the committed ``bpp`` exactly (always checked), and
* with ``--write FILE`` the sha256 of every file is recorded; with
  ``--check FILE`` each must equal the one recorded (run ``--write`` on the
  code before the change, ``--check`` after).

Usage::

    python -m benchmarks.reencode --write /tmp/before.json     # on the old code
    python -m benchmarks.reencode --check /tmp/before.json     # on the new code

It exits with status 1 and lists the points that differ. It uses only
svdk's public API (``svdk.bench.codecs``) and reads the images from
``../shared/data``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = {"bench-kodak": "kodak", "bench-bsds500-test": "bsds500/test"}


def _data_dir() -> Path:
    data = ROOT.parent / "shared" / "data"
    if not data.is_dir():
        sys.exit(f"reencode: {data} is missing; see the README's 'Data' section for how to get the images")
    return data


def _one(task):
    import svdk
    from svdk import bench

    warnings.simplefilter("ignore", svdk.SvdkWarning)
    run, codec_name, path, sweep, committed = task
    codec = bench.codecs()[codec_name]
    image = bench.read_image(Path(path))
    npx = image.shape[0] * image.shape[1]
    out = {}
    for i, (p, bpp) in enumerate(zip(sweep, committed)):
        key = f"{run}/{codec_name}/{Path(path).stem}/{i}"
        try:
            data = codec.encode(image, p)
        except svdk.OptionError:
            out[key] = (None, bpp is None)
            continue
        same_size = bpp is not None and 8 * len(data) / npx == bpp
        out[key] = (hashlib.sha256(data).hexdigest(), same_size)
    return out


def tasks(data: Path):
    from svdk import bench

    for run, folder in RUNS.items():
        for codec_name in bench.CODECS:
            if not codec_name.startswith("svdk"):
                continue
            results = json.loads((ROOT / "results" / run / f"{codec_name}.json").read_text())
            sweep = [tuple(next(iter(s.items()))) for s in results["sweep"]]
            files = {p.stem: p for p in bench.find_images(data / folder)}
            for stem, rows in results["per_image"].items():
                yield run, codec_name, str(files[stem]), sweep, rows["bpp"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reencode", description=__doc__.split("\n")[0])
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--write", type=Path, metavar="FILE", help="record the sha256 of every point")
    what.add_argument("--check", type=Path, metavar="FILE", help="compare with the sha256 recorded")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    found: dict[str, tuple] = {}
    with ProcessPoolExecutor(args.jobs) as pool:
        for part in pool.map(_one, list(tasks(_data_dir())), chunksize=4):
            found.update(part)
    bad = {k for k, (_, same) in found.items() if not same}
    if args.write:
        args.write.write_text(json.dumps({k: h for k, (h, _) in found.items()}, indent=0, sort_keys=True))
    if args.check:
        before = json.loads(args.check.read_text())
        bad |= {k for k in set(before) | set(found) if before.get(k) != found.get(k, (None,))[0]}
    bad = sorted(bad)
    print(f"{len(found)} points re-encoded; {len(bad)} differ")
    for k in bad[:50]:
        print("  differs:", k)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
