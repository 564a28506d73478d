"""The ``cnn`` policies on Kodak at native size: ``python -m training.eval_kodak [--layout tiled]``.

For every Kodak image (768x512 or 512x768) and target SSIM, encodes with the
exact ``quality`` policy, with ``cnn`` (prediction checked and corrected) and
with ``cnn-only`` (prediction alone), and records the luma SSIM each file
decodes to, its bytes, the SSIM evaluations and the encoding time. Writes
``results/predictor_kodak.json``, or with ``--layout tiled`` (the tiled
layout's component count and its predictor) ``results/predictor_kodak_tiled.json``.
``--images DIR --glob '*.jpg'`` runs another folder (BSDS500's test split),
``--examples`` scikit-image's photos (``example:NAME``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["main"]

DEFAULT_KODAK = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "kodak"


def luma_ssim_of_file(enc, image: np.ndarray) -> float:
    """Luma SSIM of the plane the file of ``enc`` decodes to, against the image's luma.

    svdk's files depend on the ranks alone (tiled layout: on the component
    counts), so a fresh encoder's score at the file's luma rank is the file's.
    """
    import svdk

    if enc.layout == "tiled":
        return float(svdk.Encoder(image, tiled=True).score(enc.components[0], "ssim"))
    return float(svdk.Encoder(image).score(enc.ranks[0], "ssim"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.eval_kodak", description=__doc__.split("\n\n")[0])
    p.add_argument("--kodak", default=str(DEFAULT_KODAK), help=f"folder of kodim*.png (default {DEFAULT_KODAK})")
    p.add_argument("--targets", default="0.85,0.90,0.95")
    p.add_argument("--model", help="a .keras model (default: the shipped one)")
    p.add_argument("--layout", choices=("global", "tiled"), default="global")
    p.add_argument("--images", help="another folder of images instead of Kodak (with --glob)")
    p.add_argument("--glob", default="kodim*.png", help="file pattern in the folder (default kodim*.png)")
    p.add_argument("--examples", action="store_true", help="scikit-image's example photos instead of Kodak")
    p.add_argument("--out", help="default results/predictor_kodak.json (tiled: results/predictor_kodak_tiled.json)")
    p.add_argument("--limit", type=int)
    args = p.parse_args(argv)
    tiled = args.layout == "tiled"
    args.out = args.out or ("results/predictor_kodak_tiled.json" if tiled else "results/predictor_kodak.json")

    import os

    from tqdm import tqdm

    if args.model:
        os.environ["SVDK_RANK_MODEL"] = args.model
    import svdk
    from svdk import predictor as pred

    folder = Path(args.images or args.kodak)
    if args.examples:
        files = [f"example:{name}" for name in sorted(svdk.EXAMPLES)][: args.limit]
    else:
        files = sorted(folder.glob(args.glob))[: args.limit]
    if not files:
        print(f"error: no {args.glob} in {folder}; see ../shared/data/README.md for the Kodak suite",
              file=sys.stderr)
        return 1
    targets = [float(t) for t in args.targets.split(",")]
    t0 = time.perf_counter()
    model = pred.default_tiled_predictor() if tiled else pred.default_predictor()
    model.predict(svdk.load_image(files[0]).color, 0.9)  # warm: load and trace once
    load_seconds = time.perf_counter() - t0

    rows = []
    for path in tqdm(files, desc="images", unit="img"):
        image = svdk.load_image(path).color
        for t in targets:
            rec = {"image": Path(str(path)).name, "size": f"{image.shape[1]}x{image.shape[0]}", "target": t}
            for policy in ("quality", "cnn", "cnn-only"):
                enc = svdk.encode(image, quality=("ssim", t), policy=None if policy == "quality" else policy,
                                  tiled=tiled)
                rec[policy] = {
                    "k": enc.components[0] if tiled else enc.ranks[0],
                    "predicted": enc.predicted_rank,
                    "correction": enc.correction,
                    "bytes": enc.nbytes,
                    "ssim_luma": luma_ssim_of_file(enc, image),
                    "evaluations": enc.evaluations,
                    "seconds": enc.seconds,
                    "reason": enc.reason,
                }
            rows.append(rec)

    summary = {}
    for t in targets:
        rs = [r for r in rows if r["target"] == t]

        def col(policy, key):
            return np.array([r[policy][key] for r in rs], dtype=np.float64)

        ex_b, ex_e, ex_s = col("quality", "bytes"), col("quality", "evaluations"), col("quality", "seconds")
        s = {"images": len(rs), "exact": {
            "evaluations_mean": float(ex_e.mean()), "evaluations_median": float(np.median(ex_e)),
            "seconds_mean": float(ex_s.mean()), "seconds_median": float(np.median(ex_s)),
            "ssim_mean": float(col("quality", "ssim_luma").mean()),
            "reach": float(np.mean(col("quality", "ssim_luma") >= t)),
        }}
        for policy in ("cnn", "cnn-only"):
            ssim = col(policy, "ssim_luma")
            b, e, sec = col(policy, "bytes"), col(policy, "evaluations"), col(policy, "seconds")
            s[policy] = {
                "ssim_mean": float(ssim.mean()),
                "ssim_min": float(ssim.min()),
                "reach": float(np.mean(ssim >= t)),
                "reached": f"{int(np.sum(ssim >= t))}/{len(rs)}",
                "reach_minus_0.01": float(np.mean(ssim >= t - 0.01)),
                "bytes_vs_exact_median": float(np.median(b / ex_b)),
                "time_vs_exact_median": float(np.median(sec / ex_s)),
                "evaluations_median": float(np.median(e)),
                "bytes_vs_exact_mean": float(np.mean(b / ex_b)),
                "bytes_vs_exact_max": float(np.max(b / ex_b)),
                "mae_k_vs_exact": float(np.mean(np.abs(col(policy, "k") - col("quality", "k")))),
                "evaluations_mean": float(e.mean()),
                "evaluations_max": int(e.max()),
                "evaluations_saved_mean": float((ex_e - e).mean()),
                "seconds_mean": float(sec.mean()),
                "time_saved_pct": float(100 * (1 - sec.sum() / ex_s.sum())),
            }
            if policy == "cnn":
                s[policy]["fell_back_to_exact_search"] = int(sum("exact search" in r["cnn"]["reason"] for r in rs))
                s[policy]["lowered_after_meeting"] = int(sum("lowered" in r["cnn"]["reason"] for r in rs))
                s[policy]["corrected_upward"] = int(sum("corrected upward" in r["cnn"]["reason"] for r in rs))
        summary[f"{t:.2f}"] = s

    report = {
        "name": f"cnn rank policies at native size, {args.layout} layout"
                + ("" if args.images or args.examples else ", Kodak"),
        "command": "python -m training.eval_kodak " + " ".join(argv if argv is not None else sys.argv[1:]),
        "layout": args.layout,
        "images_from": "scikit-image examples" if args.examples else str(folder.name),
        "model": str(model.path.name),
        "model_load_and_first_prediction_seconds": load_seconds,
        "how": (
            "Tiled layout: k is luma's component count over all 8x8 tiles; the tiled-layout predictor "
            "reads the tile spectrum the encoder computes (svdk.predictor.tiled_features) and predicts "
            "log(n / tiles) at native size. Exact = the 'quality' policy. SSIM is luma SSIM of the decoded "
            "file. Times are svdk.encode's wall time per image (model already loaded), on a 2-core machine "
            "shared with other jobs; time_vs_exact_median is the median over images of the per-image ratio."
        ) if tiled else (
            "The CNN predicts ranks for the 256x256 version; they are scaled to the native size by "
            "(sqrt(H W)/256)**beta_t (beta fitted on BSDS500 train+val at 481x321). Exact = the "
            "'quality' policy. SSIM is luma SSIM of the decoded file. Times are svdk.encode's wall "
            "time per image (model already loaded), on a 2-core machine shared with other jobs."
        ),
        "summary": summary,
        "images": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    for t, s in summary.items():
        c, o = s["cnn"], s["cnn-only"]
        print(
            f"t={t}: exact {s['exact']['evaluations_median']:.0f} evals (median) {s['exact']['seconds_mean']:.3f} s | "
            f"cnn reach {c['reached']} bytes x{c['bytes_vs_exact_mean']:.3f} {c['evaluations_median']:.0f} evals "
            f"(median) time x{c['time_vs_exact_median']:.2f} (median) "
            f"{c['seconds_mean']:.2f} s (saved {c['time_saved_pct']:.0f}%), fallbacks {c['fell_back_to_exact_search']} | "
            f"cnn-only reach {o['reach']:.2f} (t-0.01: {o['reach_minus_0.01']:.2f}) ssim {o['ssim_mean']:.4f} "
            f"bytes x{o['bytes_vs_exact_mean']:.3f}"
        )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
