"""Rank predictors on photos outside BSDS500: ``python -m training.eval_photos RUN...``.

For the 24 Kodak photos and the photos that ship with scikit-image
(:data:`svdk.EXAMPLES` less the microscope slide: ``astronaut``, ``coffee``,
``chelsea``, ``camera``, ``rocket``), the exact label, on each photo resized to 256x256 as in
training, at each target (the codec's ``quality`` policy,
cached like the training labels) is compared with the prediction of every
run (``RUN``: a run folder or a ``.keras`` file; it reads the photo as
given, its 256x256 version or patches of its layout) and with the constant
baseline fitted on BSDS500 train+val (its median rank at each target, read
from ``results/predictor.json``). Writes ``results/predictor_photos.json``:
per source and model, the MAE in k at each target and its ratio to the
constant's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

__all__ = ["main"]

REPO = Path(__file__).resolve().parent.parent
#: scikit-image's photographs (the slide, a microscope image, is left out).
PHOTOS = ("astronaut", "coffee", "chelsea", "camera", "rocket")


def main(argv: list[str] | None = None) -> int:
    from .eval_kodak import DEFAULT_KODAK

    p = argparse.ArgumentParser(prog="python -m training.eval_photos", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders (model.keras) or .keras files")
    p.add_argument("--kodak", default=str(DEFAULT_KODAK), help=f"folder of kodim*.png (default {DEFAULT_KODAK})")
    p.add_argument("--report", default=str(REPO / "results" / "predictor.json"),
                   help="the report whose constant baseline is compared (python -m training.report)")
    p.add_argument("--cache", help="label cache folder (default runs/cache or $SVDK_CACHE)")
    p.add_argument("--out", default=str(REPO / "results" / "predictor_photos.json"))
    args = p.parse_args(argv)

    import svdk
    from svdk.predictor import RankPredictor, resize_work

    from .labels import TARGETS, LabelStore, code_hash

    kodak = sorted(Path(args.kodak).glob("kodim*.png"))
    if not kodak:
        print(f"error: no kodim*.png in {args.kodak}", file=sys.stderr)
        return 1
    sources = {  # (name, the photo as given): labels on its 256x256 version, predictions from the photo
        "kodak": [(f.name, svdk.load_image(f).color) for f in kodak],
        "scikit-image": [(name, svdk.load_image(f"example:{name}").color) for name in PHOTOS],
    }
    report = json.loads(Path(args.report).read_text())
    constant = np.rint(report["models"]["constant"]["fitted"]["k"])
    store = LabelStore(args.cache, TARGETS)
    models = {}
    for run in args.runs:
        path = Path(run) / "model.keras" if Path(run).is_dir() else Path(run)
        name = Path(run).name if Path(run).is_dir() else path.stem
        models[name if name not in models else str(run)] = RankPredictor.load(path)

    out = {}
    for source, images in sources.items():
        labels = np.array([r["k"] for r in store.labels([resize_work(im) for _, im in images], f"{source} labels")])
        rows = {"constant": np.tile(constant, (len(images), 1))}
        for name, model in models.items():
            rows[name] = np.array([np.clip(np.rint(np.exp(model.log_ranks(im))), 1, 256) for _, im in images])
        const_mae = np.mean(np.abs(rows["constant"] - labels), axis=0)
        out[source] = {
            "images": [n for n, _ in images],
            "label_k_mean": {f"{t:.2f}": float(v) for t, v in zip(TARGETS, labels.mean(axis=0))},
            "models": {
                name: {
                    f"{t:.2f}": {"mae_k": float(m), "vs_constant": float(m / c)}
                    for t, m, c in zip(TARGETS, np.mean(np.abs(k - labels), axis=0), const_mae)
                }
                for name, k in rows.items()
            },
        }
    result = {
        "name": "rank predictors on photos outside BSDS500",
        "command": "python -m training.eval_photos " + " ".join(argv if argv is not None else sys.argv[1:]),
        "how": (
            "Labels on each photo resized to 256x256 (bicubic), as in training; each model reads the photo as "
            "given (the resize, or the patches of its layout); label: the codec's exact quality policy "
            "(ycbcr 4:2:0, SSIM on luma); MAE in k per target; vs_constant: that MAE over the MAE of the "
            "training median rank (BSDS500 train+val)."
        ),
        "svdk_version": svdk.__version__,
        "label_code_hash": code_hash(TARGETS),
        "sources": out,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for source, s in out.items():
        cells = ", ".join(
            f"{n} {m['0.90']['mae_k']:.1f} ({m['0.90']['vs_constant']:.2f}x)" for n, m in s["models"].items()
        )
        print(f"{source} ({len(s['images'])} photos), MAE k at 0.90: {cells}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
