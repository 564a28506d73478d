"""Speed of svdk against Pillow's JPEG on Kodak-24, plus a 12-megapixel case.

Run from the repository root::

    python -m benchmarks.codec_speed            # writes results/codec_speed.json

Figures (each with value, unit, target, pass and per-image values):

* ``compress_ms``: ``svdk.compress(img, ranks=(64, 16, 16))`` (ycbcr 4:2:0);
* ``decompress_ms``: ``svdk.decompress`` of that file;
* ``quality_ms``: ``svdk.encode(img, quality="ssim:0.90")`` (with the ranks
  chosen and the number of evaluations);
* ``tiled_quality_ms``: the same target in the tiled layout,
  ``svdk.encode(img, quality="ssim:0.90", tiled=True)``;
* ``tiled_decompress_ms``: ``svdk.decompress`` of that tiled file;
* ``jpeg_encode_ms`` / ``jpeg_decode_ms``: Pillow JPEG quality 75, 4:2:0,
  ``optimize=True`` (the settings of :mod:`svdk.baselines`), numpy array to
  bytes and back, and the ratios svdk / JPEG;
* ``large_compress_s`` / ``large_peak_*``: a Kodak image upscaled to
  4000x3000 with LANCZOS, compressed with ``ranks=(200, 50, 50)``, in a fresh
  subprocess (see :func:`large_child` for what the memory figures mean);
* ``rsvd_psnr_loss_*``: the PSNR lost at luma rank 64 because svdk's factors
  come from a randomized SVD instead of an exact ``numpy.linalg.svd``.

Times are medians: per image the median of ``--repeats`` runs after one
warm-up, then the median over the images. The machine is shared and noisy;
compare the ratios to JPEG, measured in the same run, rather than raw times
across runs.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import math
import pstats
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

import svdk
from svdk import format as fmt
from svdk import metrics

from ._common import (
    DEFAULT_KODAK,
    RESULTS,
    DataMissing,
    display_path,
    kodak_paths,
    load_rgb,
    machine_info,
    write_json,
)

RANKS = (64, 16, 16)
QUALITY = "ssim:0.90"
JPEG_SETTINGS = {"quality": 75, "subsampling": "4:2:0", "optimize": True}
LARGE_SIZE = (4000, 3000)  # width, height
LARGE_RANKS = (200, 50, 50)
LARGE_IMAGE = "kodim01.png"  # landscape
MB = 1e6  # memory in decimal megabytes: 1.5 GB = 1500 MB

#: name: (unit, comparison, limit); None where the brief sets no target.
TARGETS = {
    "compress_ms": ("ms", "<=", 40.0),
    "decompress_ms": ("ms", "<=", 15.0),
    "quality_ms": ("ms", "<=", 300.0),
    "tiled_quality_ms": ("ms", "<=", 500.0),
    "ratio_tiled_quality_to_jpeg_encode": ("x", "<=", 90.0),
    "ratio_tiled_decompress_to_jpeg_decode": ("x", "<=", 6.0),
    "large_compress_s": ("s", "<=", 2.0),
    "large_peak_delta_mb": ("MB", "<", 1500.0),
    "large_peak_absolute_mb": ("MB", "<", 1500.0),
}


# ----------------------------------------------------------------------------
# what is timed


def jpeg_encode(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", **JPEG_SETTINGS)
    return buf.getvalue()


def jpeg_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        if im.mode != "RGB":
            im = im.convert("RGB")
        return np.asarray(im)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def psnr_plane(reference: np.ndarray, decoded: np.ndarray) -> float:
    mse = float(np.mean((reference.astype(np.float64) - decoded.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def exact_svd_comparison(img: np.ndarray, data: bytes) -> dict:
    """PSNR of svdk's file against the same file made with an exact luma SVD.

    The luma plane (as svdk codes it) gets an exact ``numpy.linalg.svd``; its
    rank-k factors are quantized by svdk's own :class:`~svdk._codec.Plane`
    (given the exact decomposition instead of computing its own) and packed
    with svdk's chroma factors unchanged, so only the luma SVD differs. Three
    comparisons:

    * ``own step``: the exact factors with svdk's step rule applied to the
      exact ``s_k`` -- the file svdk would write with an exact SVD (the
      headline; its size differs a little, see ``bytes_*``);
    * ``same step``: the exact factors with the step of svdk's file;
    * ``unquantized``: the float rank-k approximations, svdk's randomized one
      (``svdk._codec._svd``, the function ``compress`` calls) against the
      exact one: the accuracy of the SVD alone.

    This leans on svdk's private helpers (``_codec.to_planes``, ``Plane``,
    ``_svd``, ``reconstruct``); as a check that they still match the encoder,
    re-packing svdk's own factors must give its bytes.
    """
    from svdk import _codec

    header, factors, _ = fmt.unpack(data)
    codes = [p.qstep for p in header.planes]
    common = dict(width=header.width, height=header.height, mode=header.mode,
                  subsampled=header.subsampled, predictor=header.predictor, coder=header.coder)
    repack_same = fmt.pack(factors=factors, qsteps=codes, **common) == bytes(data)

    y = _codec.to_planes(img, "ycbcr", True)[0]
    k = header.planes[0].rank
    u, s, vt = np.linalg.svd(y.astype(np.float64), full_matrices=False)

    def exact_plane(qstep=None):
        plane = _codec.Plane(y, qstep)
        n = min(plane._bucket(k), plane.max_rank)
        plane._svds[plane._bucket(k)] = (u[:, :n], s[:n], vt[:n])
        return plane

    *exact_y, own = exact_plane().quantize(k)
    exact = fmt.pack(factors=[tuple(exact_y), *factors[1:]], qsteps=[own, *codes[1:]], **common)
    *same_y, _ = exact_plane(codes[0] / 256.0).quantize(k)
    exact_same = fmt.pack(factors=[tuple(same_y), *factors[1:]], qsteps=codes, **common)
    ru, rs, rvt = _codec._svd(y, k)
    u, s, vt = u[:, :k], s[:k], vt[:k]

    def luma(f, code):
        return _codec.to_uint8(_codec.reconstruct(*f[:2], code, *f[2:]))

    out = {
        "rank": k,
        "repack_identical": repack_same,
        "psnr_y_randomized_db": psnr_plane(y, luma(factors[0], codes[0])),
        "psnr_y_exact_db": psnr_plane(y, luma(exact_y, own)),
        "psnr_y_exact_same_step_db": psnr_plane(y, luma(same_y, codes[0])),
        "psnr_y_randomized_unquantized_db": psnr_plane(y, _codec.to_uint8((ru * rs) @ rvt)),
        "psnr_y_exact_unquantized_db": psnr_plane(y, _codec.to_uint8((u * s) @ vt)),
        "psnr_rgb_randomized_db": metrics.psnr(img, svdk.decompress(data)),
        "psnr_rgb_exact_db": metrics.psnr(img, svdk.decompress(exact)),
        "psnr_rgb_exact_same_step_db": metrics.psnr(img, svdk.decompress(exact_same)),
        "bytes_randomized": len(data),
        "bytes_exact": len(exact),
        "bytes_exact_same_step": len(exact_same),
        "luma_step_code_randomized": codes[0],
        "luma_step_code_exact": own,
        "s_k_randomized": float(rs[-1]),
        "s_k_exact": float(s[-1]),
    }
    for key in ("y", "rgb"):
        out[f"loss_{key}_db"] = out[f"psnr_{key}_exact_db"] - out[f"psnr_{key}_randomized_db"]
        out[f"loss_{key}_same_step_db"] = (
            out[f"psnr_{key}_exact_same_step_db"] - out[f"psnr_{key}_randomized_db"]
        )
    out["loss_y_unquantized_db"] = (
        out["psnr_y_exact_unquantized_db"] - out["psnr_y_randomized_unquantized_db"]
    )
    return out


# ----------------------------------------------------------------------------
# the 12-megapixel case, in a fresh process


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024 / MB
    except OSError:
        pass
    return None


def _maxrss_mb() -> float:
    import resource

    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB


def large_child(path: Path, repeats: int) -> dict:
    """Time and memory of one 12-MP compress; runs in its own process.

    Memory: ``ru_maxrss`` is the process's peak resident set size. After the
    imports, a warm-up compress of the small image and building the 4000x3000
    array (intermediate Pillow images freed), the peak is reset to the
    current RSS by writing ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0),
    so that ``baseline`` is what the process holds when the step starts, not
    the high-water mark of building the image. ``delta`` is then the peak
    during the first 12-MP compress minus that baseline: the extra memory
    the step needs. ``absolute`` is the process's ``ru_maxrss`` after it
    (interpreter, libraries, the 36 MB input and the step). If the reset is
    refused, ``baseline`` is the older high-water mark and ``delta`` can only
    be too small; ``peak_reset`` says which happened.
    """
    small = load_rgb(path)
    svdk.compress(small, ranks=LARGE_RANKS)  # lazy imports, BLAS start-up
    with Image.fromarray(small) as im, im.resize(LARGE_SIZE, Image.Resampling.LANCZOS) as big:
        arr = np.array(big)
    del small
    gc.collect()
    rss_start = _status_mb("VmRSS")
    maxrss_before_reset = _maxrss_mb()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        reset = True
    except OSError:
        reset = False
    baseline = _maxrss_mb()
    times = []
    peak_first = None
    nbytes = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        data = svdk.compress(arr, ranks=LARGE_RANKS)
        times.append(time.perf_counter() - t0)
        if peak_first is None:
            peak_first = _maxrss_mb()
        nbytes = len(data)
        del data  # the next run must not hold two files at once
        gc.collect()
    return {
        "image": path.name,
        "size": list(LARGE_SIZE),
        "ranks": list(LARGE_RANKS),
        "times_s": times,
        "median_s": float(np.median(times)),
        "bytes": nbytes,
        "bpp": metrics.bpp(nbytes, *LARGE_SIZE),
        "rss_at_step_start_mb": rss_start,
        "maxrss_before_reset_mb": maxrss_before_reset,
        "peak_reset": reset,
        "maxrss_baseline_mb": baseline,
        "maxrss_after_first_mb": peak_first,
        "maxrss_after_all_mb": _maxrss_mb(),
        "delta_mb": peak_first - baseline,
        "absolute_mb": peak_first,
        "vm_hwm_after_mb": _status_mb("VmHWM"),
    }


def run_large(data_dir: Path, image: str, repeats: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.codec_speed", "--large-child",
           "--data", str(data_dir), "--large-image", image, "--large-repeats", str(repeats)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    if proc.returncode != 0:
        raise RuntimeError(f"the 12-MP subprocess failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------
# profile


def profile(images: list, fn, top: int = 12) -> dict:
    """cProfile of ``fn`` over ``images`` (arrays, or files for a decode)."""
    prof = cProfile.Profile()
    for img in images:
        prof.runcall(fn, img)
    st = pstats.Stats(prof)
    total = st.total_tt
    rows = []
    for (file, line, func), (cc, nc, tt, ct, _) in sorted(
        st.stats.items(), key=lambda kv: kv[1][2], reverse=True
    )[:top]:
        where = func if file == "~" else f"{display_path(Path(file))}:{line}({func})"
        rows.append({
            "function": where,
            "ncalls": nc,
            "tottime_ms_per_image": 1e3 * tt / len(images),
            "cumtime_ms_per_image": 1e3 * ct / len(images),
            "share_of_total": tt / total if total else None,
        })
    return {"images": len(images), "total_ms_per_image": 1e3 * total / len(images),
            "note": "cProfile, sorted by own time; cProfile adds overhead", "top": rows}


# ----------------------------------------------------------------------------
# main


def figure(name, value, per_image=None, *, unit=None, statistic="", target=None):
    if name in TARGETS:
        unit, op, limit = TARGETS[name]
        ok = bool(value <= limit) if op == "<=" else bool(value < limit)
        target = f"{op} {limit:g}"
    else:
        limit = ok = None
    out = {"value": value, "unit": unit, "target": target, "target_value": limit, "pass": ok,
           "statistic": statistic}
    if per_image is not None:
        out["per_image"] = per_image
    return out


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.codec_speed", description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_KODAK, help="folder with kodim01.png ... kodim24.png")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per image and operation (default 5)")
    p.add_argument("--images", type=int, default=None, help="only the first N images (quick tries)")
    p.add_argument("--large-repeats", type=int, default=5, help="timed runs of the 12-MP case (default 5)")
    p.add_argument("--large-image", default=LARGE_IMAGE, help=f"Kodak image to upscale (default {LARGE_IMAGE})")
    p.add_argument("--no-large", action="store_true", help="skip the 12-MP case")
    p.add_argument("--no-profile", action="store_true", help="skip the cProfile pass")
    p.add_argument("--output", type=Path, default=RESULTS / "codec_speed.json")
    p.add_argument("--large-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats < 1 or args.large_repeats < 1:
        p.error("--repeats and --large-repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.large_child:
            (path,) = [p for p in kodak_paths(args.data) if p.name == args.large_image] or [None]
            if path is None:
                raise DataMissing(f"--large-image {args.large_image!r} is not one of the Kodak files")
            print(json.dumps(large_child(path, args.large_repeats)))
            return 0
        paths = kodak_paths(args.data, args.images)
    except DataMissing as exc:
        print(f"codec_speed: {exc}", file=sys.stderr)
        return 2

    t_start = time.perf_counter()
    machine = machine_info()
    # The 12-MP case first, while this process is small: a child's ru_maxrss
    # starts from its parent's resident size at the fork.
    large = None
    if not args.no_large:
        print(f"12-MP case: {args.large_image} upscaled to {LARGE_SIZE[0]}x{LARGE_SIZE[1]}, "
              "in a subprocess ...", file=sys.stderr)
        large = run_large(args.data, args.large_image, args.large_repeats)

    ops = ("compress", "decompress", "quality", "tiled_quality", "tiled_decompress", "jpeg_encode", "jpeg_decode")
    per = {}
    images = {}
    tiled_files = {}
    for path in tqdm(paths, desc="codec_speed", unit="img", file=sys.stderr):
        img = load_rgb(path)
        images[path.stem] = img
        # Warm-up, and the outputs that get checked and recorded.
        data = svdk.compress(img, ranks=RANKS)
        dec = svdk.decompress(data)
        enc = svdk.encode(img, quality=QUALITY)
        tiled = svdk.encode(img, quality=QUALITY, tiled=True)
        tiled_files[path.stem] = tiled.data
        jdata = jpeg_encode(img)
        jdec = jpeg_decode(jdata)
        calls = {
            "compress": lambda: svdk.compress(img, ranks=RANKS),
            "decompress": lambda: svdk.decompress(data),
            "quality": lambda: svdk.encode(img, quality=QUALITY),
            "tiled_quality": lambda: svdk.encode(img, quality=QUALITY, tiled=True),
            "tiled_decompress": lambda: svdk.decompress(tiled.data),
            "jpeg_encode": lambda: jpeg_encode(img),
            "jpeg_decode": lambda: jpeg_decode(jdata),
        }
        times = {op: [] for op in ops}
        gc.collect()
        for _ in range(args.repeats):  # interleaved, so noise hits every codec alike
            for op in ops:
                times[op].append(_timed(calls[op]))
        h, w = img.shape[:2]
        per[path.stem] = {
            "width": w,
            "height": h,
            **{f"{op}_ms": 1e3 * float(np.median(times[op])) for op in ops},
            "times_ms": {op: [1e3 * t for t in times[op]] for op in ops},
            "svdk_bytes": len(data),
            "svdk_bpp": metrics.bpp(len(data), w, h),
            "svdk_psnr_rgb": metrics.psnr(img, dec),
            "svdk_deterministic": svdk.compress(img, ranks=RANKS) == data,
            "jpeg_bytes": len(jdata),
            "jpeg_bpp": metrics.bpp(len(jdata), w, h),
            "jpeg_psnr_rgb": metrics.psnr(img, jdec),
            "quality_ranks": list(enc.ranks),
            "quality_evaluations": enc.evaluations,
            "quality_bpp": enc.bpp,
            "quality_ssim_rgb": metrics.ssim(img, svdk.decompress(enc.data)),
            "quality_reason": enc.reason,
            "tiled_quality_bpp": tiled.bpp,
            "tiled_quality_evaluations": tiled.evaluations,
            "rsvd": exact_svd_comparison(img, data),
        }
    names = list(per)

    def col(key, sub=None):
        return {n: (per[n][sub][key] if sub else per[n][key]) for n in names}

    def med(d):
        return float(np.median(list(d.values())))

    def ratio(a, b):
        return {n: per[n][a] / per[n][b] for n in names}

    stat = f"median over {len(names)} images of each image's median of {args.repeats} runs"
    rstat = f"median over {len(names)} images of the per-image ratio of medians"
    figs = {}
    for key in ("compress_ms", "decompress_ms", "quality_ms", "tiled_quality_ms", "tiled_decompress_ms",
                "jpeg_encode_ms", "jpeg_decode_ms"):
        figs[key] = figure(key, med(col(key)), col(key), unit="ms", statistic=stat)
    for key, a, b in (
        ("compress_to_jpeg_encode", "compress_ms", "jpeg_encode_ms"),
        ("decompress_to_jpeg_decode", "decompress_ms", "jpeg_decode_ms"),
        ("quality_to_jpeg_encode", "quality_ms", "jpeg_encode_ms"),
        ("tiled_quality_to_jpeg_encode", "tiled_quality_ms", "jpeg_encode_ms"),
        ("tiled_decompress_to_jpeg_decode", "tiled_decompress_ms", "jpeg_decode_ms"),
    ):
        r = ratio(a, b)
        figs[f"ratio_{key}"] = figure(f"ratio_{key}", med(r), r, unit="x", statistic=rstat)
    figs["quality_evaluations"] = figure("quality_evaluations", med(col("quality_evaluations")),
                                         col("quality_evaluations"), unit="count",
                                         statistic="median over images")
    luma = {n: per[n]["quality_ranks"][0] for n in names}
    figs["quality_luma_rank"] = figure("quality_luma_rank", med(luma), luma, unit="rank",
                                       statistic="median over images")
    for key in ("svdk_bpp", "jpeg_bpp", "svdk_psnr_rgb", "jpeg_psnr_rgb", "quality_bpp", "tiled_quality_bpp"):
        unit = "bpp" if key.endswith("bpp") else "dB"
        figs[key] = figure(key, med(col(key)), col(key), unit=unit, statistic="median over images")
    rsvd_how = {
        "": "svdk's step rule on each SVD's own s_k (the file svdk would write)",
        "_same_step": "the exact factors quantized with the step of svdk's file",
        "_unquantized": "float rank-64 approximations, no quantization (luma only)",
    }
    for variant, how in rsvd_how.items():
        for plane in ("y", "rgb"):
            key = f"loss_{plane}{variant}_db"
            if key not in per[names[0]]["rsvd"]:
                continue
            figs[f"rsvd_psnr_loss_{plane}{variant}_db"] = figure(
                f"rsvd_psnr_loss_{plane}{variant}_db", med(col(key, "rsvd")), col(key, "rsvd"),
                unit="dB",
                statistic="median over images of PSNR(exact numpy.linalg.svd) - PSNR(svdk's "
                          f"randomized SVD) at luma rank 64, {'luma plane' if plane == 'y' else 'RGB image'}; "
                          + how,
            )
    size = {n: per[n]["rsvd"]["bytes_exact"] / per[n]["rsvd"]["bytes_randomized"] for n in names}
    figs["rsvd_bytes_ratio"] = figure("rsvd_bytes_ratio", med(size), size, unit="x",
                                      statistic="median over images of bytes(exact SVD file) / "
                                                "bytes(svdk file), svdk's step rule")
    if large is not None:
        figs["large_compress_s"] = figure(
            "large_compress_s", large["median_s"], None,
            statistic=f"median of {len(large['times_s'])} runs, {large['image']} upscaled to "
                      f"{LARGE_SIZE[0]}x{LARGE_SIZE[1]}, ranks={LARGE_RANKS}")
        figs["large_peak_delta_mb"] = figure(
            "large_peak_delta_mb", large["delta_mb"], None,
            statistic="ru_maxrss after the first 12-MP compress minus ru_maxrss at its start "
                      "(peak reset to the current RSS just before); see large_case")
        figs["large_peak_absolute_mb"] = figure(
            "large_peak_absolute_mb", large["absolute_mb"], None,
            statistic="the subprocess's ru_maxrss after the first 12-MP compress")

    profiles = {}
    if not args.no_profile:
        imgs = [images[n] for n in names]
        print("profiling compress, the quality policy and the tiled decode ...", file=sys.stderr)
        profiles["compress"] = profile(imgs, lambda im: svdk.compress(im, ranks=RANKS))
        profiles["quality"] = profile(imgs, lambda im: svdk.encode(im, quality=QUALITY))
        profiles["tiled_decompress"] = profile([tiled_files[n] for n in names], svdk.decompress)

    elapsed = time.perf_counter() - t_start
    result = {
        "name": "codec_speed",
        "description": "svdk compress/decompress/quality-policy times against Pillow JPEG q75 "
                       "on Kodak-24, a 12-MP case, and the PSNR cost of the randomized SVD",
        "command": "python -m benchmarks.codec_speed " + " ".join(sys.argv[1:] if argv is None else argv),
        "complete": len(names) == 24,
        "images": len(names),
        "repeats": args.repeats,
        "settings": {
            "svdk_ranks": list(RANKS), "svdk_mode": "ycbcr", "svdk_subsampling": "4:2:0",
            "svdk_quality": QUALITY, "jpeg": JPEG_SETTINGS,
            "timing": "time.perf_counter around one call; one warm-up per image and operation; "
                      "operations interleaved within each repeat",
            "memory_unit": "MB = 10^6 bytes",
        },
        "machine": machine,
        "load_average_after": machine_info()["load_average_1_5_15min"],
        "seconds": elapsed,
        "figures": figs,
        "large_case": large,
        "profile": profiles,
        "per_image": per,
    }
    write_json(args.output, result)
    print_summary(result, args.output)
    return 0


def print_summary(result: dict, output: Path) -> None:
    figs = result["figures"]
    print(f"codec_speed: {result['images']} Kodak images, {result['repeats']} repeats, "
          f"{result['seconds']:.0f} s; CPU {result['machine']['cpu_model']}")
    for name, f in figs.items():
        verdict = "" if f["pass"] is None else ("  PASS" if f["pass"] else "  FAIL")
        target = f"  (target {f['target']})" if f["target"] else ""
        print(f"  {name:34s} {f['value']:10.3f} {f['unit']:6s}{target}{verdict}")
    for what, prof in result["profile"].items():
        print(f"  top functions of {what} by own time ({prof['total_ms_per_image']:.1f} ms/image under cProfile):")
        for row in prof["top"][:5]:
            print(f"    {row['tottime_ms_per_image']:7.2f} ms  {100 * row['share_of_total']:4.1f}%  {row['function']}")
    print(f"wrote {display_path(output)}")


if __name__ == "__main__":
    sys.exit(main())
