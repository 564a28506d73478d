"""How ``svdk bench`` and the training labels scale over workers, locally and on Ray.

Run from the repository root (with ``pip install -e '.[test]'``, which brings Ray)::

    python -m benchmarks.scaling            # a few minutes; writes results/scaling.json

On the first ``--images`` Kodak images (default 8) it times, for 1 and 2
workers on each engine (:func:`svdk.engine.map_images`):

* ``bench``: :func:`svdk.bench.run` with ``svdk-global-ycbcr`` and ``jpeg``
  at ``--points`` settings each, without MS-SSIM (what ``svdk bench --codecs
  svdk-global-ycbcr,jpeg --points 4 --jobs N --no-ms-ssim [--engine ray]`` does);
* ``labels``: :class:`training.labels.LabelStore` labelling what the
  training's label step labels for each image: its 256x256 version, the
  brightness copy of that, and the native 768x512 image (``--images`` x 3
  labels at the 5 targets, an empty cache each time).

``local`` with 1 worker runs in this process; with 2 it is a process pool
(its start-up counted). Ray runs on a local Ray of 2 CPUs started once
before the timings: its start-up is reported apart (``ray_start_s``), as on
a cluster that is already up, and so is Ray's own cost per run: the same
map with a function that does nothing (``overhead_s``). Each configuration
runs ``--repeats`` times (default 2) and keeps the fastest; the speed-up is
the 1-worker time over the 2-worker time of the same engine. The 1-minute
load average before each run is recorded next to it: on a shared 2-core
machine another process's work takes cores the second worker needed. Results
are checked identical across configurations (timings aside) before they are
written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from ._common import DEFAULT_KODAK, RESULTS, DataMissing, display_path, kodak_paths, load_rgb, machine_info, write_json

TARGET_SPEEDUP = 1.7
CODECS = ["svdk-global-ycbcr", "jpeg"]


def _nothing(item):
    return None


def _bench(paths, jobs, engine, points):
    from svdk import bench

    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        # without MS-SSIM, as the committed figures were measured (it would add TensorFlow's import to each worker)
        bench.run(paths, CODECS, Path(out), workers=jobs, progress=False, points=points, engine=engine,
                  ms_ssim=False)
        seconds = time.perf_counter() - t0
        per = {}
        for name in CODECS:
            res = json.loads((Path(out) / f"{name}.json").read_text())
            per[name] = {img: {k: v for k, v in rows.items() if not k.endswith("_time")}
                         for img, rows in res["per_image"].items()}
    return seconds, per


def _labels(images, jobs, engine):
    from training.labels import LabelStore

    with tempfile.TemporaryDirectory() as cache:
        store = LabelStore(cache, processes=jobs, engine=engine)
        t0 = time.perf_counter()
        labels = store.labels(images, "labels")
        return time.perf_counter() - t0, labels


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_KODAK), help="folder of the Kodak images")
    p.add_argument("--images", type=int, default=8, help="first N Kodak images (default 8)")
    p.add_argument("--points", type=int, default=4, help="settings per codec in the bench (default 4)")
    p.add_argument("--repeats", type=int, default=2, help="runs per configuration; the fastest is kept")
    p.add_argument("--no-ray", action="store_true", help="local engine only")
    p.add_argument("--out", default=str(RESULTS / "scaling.json"))
    args = p.parse_args(argv)
    try:
        paths = kodak_paths(args.data, args.images)
    except DataMissing as exc:
        print(f"scaling: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from svdk.engine import map_images
    from svdk.predictor import resize_work
    from training.labels import BRIGHTNESS, brighten

    natives = [load_rgb(path) for path in paths]
    work = [resize_work(im) for im in natives]
    images = [im for j, w in enumerate(work) for im in (w, brighten(w, BRIGHTNESS[j % 2]))] + natives
    engines = ["local"] + ([] if args.no_ray else ["ray"])
    machine = machine_info()
    result = {"images": [p.name for p in paths], "codecs": CODECS, "points": args.points,
              "labels": len(images), "repeats": args.repeats, "target_speedup": TARGET_SPEEDUP}
    t_start = time.perf_counter()
    reference = {}
    for engine in engines:
        row = {}
        if engine == "ray":
            import ray

            t0 = time.perf_counter()
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            row["ray_start_s"] = round(time.perf_counter() - t0, 2)
        for jobs in (1, 2):
            for task in ("bench", "labels"):
                times, loads = [], []
                for _ in range(args.repeats):
                    loads.append(round(os.getloadavg()[0], 2))
                    print(f"scaling: {task}, {engine}, {jobs} worker(s) ...", file=sys.stderr)
                    if task == "bench":
                        seconds, out = _bench(paths, jobs, engine, args.points)
                    else:
                        seconds, out = _labels(images, jobs, engine)
                    times.append(seconds)
                    if reference.setdefault(task, out) != out:
                        raise SystemExit(f"scaling: {task} on {engine} with {jobs} workers gave other results")
                row[f"{task}_{jobs}_s"] = round(min(times), 2)
                row[f"{task}_{jobs}_all_s"] = [round(t, 2) for t in times]
                row[f"{task}_{jobs}_load_before"] = loads  # 1-minute load average before each run
            n = len(paths) * len(CODECS)  # as many items as the bench maps
            t0 = time.perf_counter()
            list(map_images(_nothing, list(range(n)), engine=engine, jobs=jobs))
            row[f"overhead_{jobs}_s"] = round(time.perf_counter() - t0, 2)
        for task, n in (("bench", len(paths)), ("labels", len(paths))):  # per source image
            row[f"{task}_speedup"] = round(row[f"{task}_1_s"] / row[f"{task}_2_s"], 2)
            row[f"{task}_per_image_1_worker_s"] = round(row[f"{task}_1_s"] / n, 3)
            row[f"{task}_meets_target"] = row[f"{task}_speedup"] >= TARGET_SPEEDUP
        if engine == "ray":
            ray.shutdown()
        result[engine] = row
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    result["command"] = "python -m benchmarks.scaling " + " ".join(sys.argv[1:] if argv is None else argv)
    machine["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    result["machine"] = machine
    out = Path(args.out)
    write_json(out, result)
    for engine in engines:
        r = result[engine]
        print(f"{engine:5} bench 1 worker {r['bench_1_s']:6.1f} s, 2 workers {r['bench_2_s']:6.1f} s: "
              f"x{r['bench_speedup']:.2f}; labels {r['labels_1_s']:6.1f} s, {r['labels_2_s']:6.1f} s: "
              f"x{r['labels_speedup']:.2f}; empty map {r['overhead_1_s']:.2f} / {r['overhead_2_s']:.2f} s"
              + (f"; Ray start {r['ray_start_s']:.1f} s" if "ray_start_s" in r else ""))
    print(f"wrote {display_path(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
