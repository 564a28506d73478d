"""One photo through the ``svdk`` command, start-up included: does the CNN pay?

    python -m benchmarks.cli_speed                 # 6 Kodak images x 3 runs, about 2 minutes
    python -m benchmarks.cli_speed --images 2 --repeats 1   # a quick try

A user compresses one file with ``svdk compress photo.png``: a new process
that imports svdk (and, for ``--policy cnn``, the rank predictor's runtime),
chooses the rank and writes the file. Each run here is such a process,
timed from start to exit, for:

* ``quality``: the default policy, the exact search (``--quality ssim:0.9``);
* ``cnn (LiteRT)``: ``--policy cnn`` with the shipped ``.tflite`` file
  (the default runtime when ``ai-edge-litert`` is installed);
* ``cnn (Keras)``: the same with ``SVDK_PREDICTOR_RUNTIME=keras``, which
  imports TensorFlow and Keras;
* ``pillow jpeg``: a Python process that opens the photo with Pillow and
  writes a JPEG at quality 75: the reference for this machine's speed
  (machines of this kind differ by 1.5x; ratios to it travel better).

Medians over images x runs; the target (from the issue) is that the CNN's
one-file wall time is at most 1.2 times the default policy's. Writes
``results/cli_speed.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ._common import DEFAULT_KODAK, RESULTS, DataMissing, kodak_paths, machine_info, write_json

TARGET_RATIO = 1.2
#: Kodak images spread over the set (landscape and portrait).
IMAGES = ("kodim01.png", "kodim04.png", "kodim08.png", "kodim13.png", "kodim19.png", "kodim23.png")
SVDK = Path(sys.executable).with_name("svdk")
JPEG = "import sys; from PIL import Image; Image.open(sys.argv[1]).convert('RGB').save(sys.argv[2], quality=75)"


def configurations(out: Path) -> dict[str, tuple[list[str], dict]]:
    quiet = {"HF_HUB_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    svdk = [str(SVDK), "compress", "{image}", "-f", "-o", str(out / "x.svdk"), "--quality", "ssim:0.9"]
    return {
        "quality": (svdk, quiet),
        "cnn (LiteRT)": ([*svdk, "--policy", "cnn"], {**quiet, "SVDK_PREDICTOR_RUNTIME": "litert"}),
        "cnn (Keras)": ([*svdk, "--policy", "cnn"], {**quiet, "SVDK_PREDICTOR_RUNTIME": "keras"}),
        "pillow jpeg": ([sys.executable, "-c", JPEG, "{image}", str(out / "x.jpg")], quiet),
    }


def run_once(argv: list[str], env: dict, image: Path) -> float:
    argv = [a.replace("{image}", str(image)) for a in argv]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cli_speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_KODAK), help="folder of the Kodak PNGs")
    p.add_argument("--images", type=int, default=len(IMAGES), help=f"how many of {', '.join(IMAGES)}")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--output", default=str(RESULTS / "cli_speed.json"))
    args = p.parse_args(argv)
    if not 1 <= args.images <= len(IMAGES) or args.repeats < 1:
        p.error(f"--images must be in [1, {len(IMAGES)}] and --repeats at least 1")
    try:
        paths = {p.name: p for p in kodak_paths(args.data)}
    except DataMissing as exc:
        print(f"cli_speed: {exc}", file=sys.stderr)
        return 1
    images = [paths[n] for n in IMAGES[: args.images]]
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="svdk-cli-speed-") as tmp:
        configs = configurations(Path(tmp))
        for argv_, env in configs.values():  # warm the file cache and Python's bytecode once
            run_once(argv_, env, images[0])
        times: dict[str, dict[str, list[float]]] = {name: {} for name in configs}
        # interleaved, so that a slow spell of the machine touches every configuration alike
        for image in images:
            for _ in range(args.repeats):
                for name, (argv_, env) in configs.items():
                    times[name].setdefault(image.name, []).append(run_once(argv_, env, image))
    medians = {name: statistics.median(t for ts in per.values() for t in ts) for name, per in times.items()}
    ratio = medians["cnn (LiteRT)"] / medians["quality"]
    result = {
        "name": "cli_speed",
        "description": "wall time of one `svdk compress` process per photo (start-up included), median over "
        "images x runs",
        "command": "python -m benchmarks.cli_speed " + " ".join(argv if argv is not None else sys.argv[1:]),
        "images": [i.name for i in images],
        "repeats": args.repeats,
        "machine": machine_info(),
        "seconds": time.perf_counter() - t_start,
        "median_s": medians,
        "ratio_cnn_litert_to_quality": {"value": ratio, "target": f"<= {TARGET_RATIO}", "pass": ratio <= TARGET_RATIO},
        "ratio_cnn_keras_to_quality": medians["cnn (Keras)"] / medians["quality"],
        "ratio_to_pillow_jpeg": {name: m / medians["pillow jpeg"] for name, m in medians.items()},
        "per_image_s": times,
    }
    write_json(Path(args.output), result)
    for name, m in medians.items():
        print(f"{name:14s} {m:6.2f} s  ({m / medians['pillow jpeg']:.1f}x Pillow's JPEG process)")
    print(f"cnn (LiteRT) / quality = {ratio:.2f} (target <= {TARGET_RATIO}: {'met' if ratio <= TARGET_RATIO else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
