"""Collect the rank-predictor results into ``results/predictor.json``.

``python -m training.report [--runs runs] [--out results/predictor.json]``

Reads ``metrics.json`` of the runs in :data:`MODELS` (made by ``python -m
training.train --out runs/NAME``), fits and evaluates the three baselines of
:mod:`training.baselines` on the same data (same cross-validation folds, same
test metrics), times one prediction of every network on a native-size test
image (the machine is recorded), times the exact search on the 256x256 test
images, and checks the targets (:data:`TARGETS_CHECKED`). A run whose folder
is missing is left out, with a note.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["main"]

#: Run names, as ``training.train`` names its runs (``--out runs/NAME``).
MODELS = (
    "seed", "compact", "compact-features",  # the whole-image models
    "patch", "patch-features",  # patches of the native image (the resolution measured best)
    "patch-work", "patch-features-work",  # patches of the 256x256 version
    "patch-seed",  # the seed network's body as the trunk
    "patch-ensemble",  # patch and patch-features, their log k averaged (python -m training.ensemble)
)
#: At SSIM 0.90 on the test split: the MAE in k as a multiple of the constant baseline's, for a model on
#: pixels alone and one with the hand-crafted features; and one prediction's latency in ms.
TARGETS_CHECKED = {"pixels_vs_constant": 0.6, "features_vs_constant": 0.45, "latency_ms": 10.0}


def _exact_search_ms(images, target=0.90, n=20) -> float:
    import svdk
    from svdk import policies

    times = []
    for img in images[:n]:
        t0 = time.perf_counter()
        policies.get("quality")(svdk.Encoder(img), ("ssim", target))
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.report", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="runs")
    p.add_argument("--out", default="results/predictor.json")
    p.add_argument("--data", default=None)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from .baselines import BASELINES
    from .data import DEFAULT_DATA, load_images
    from .evaluate import build, cv_summary, folds, mae_per_target, test_metrics
    from .labels import LabelStore, TARGETS, code_hash

    items = load_images(args.data or DEFAULT_DATA)
    store = LabelStore(None, TARGETS)
    tv_items = items["train"] + items["val"]
    tv = build(tv_items, store, brightness=True, desc="train+val labels")
    test = build(items["test"], store, brightness=False, desc="test labels")

    rows = {}
    for name in MODELS:
        path = Path(args.runs) / name / "metrics.json"
        if not path.is_file():
            print(f"note: {path} is missing; {name} is left out", file=sys.stderr)
            continue
        m = json.loads(path.read_text())
        if m.get("label_code_hash") != code_hash(TARGETS):
            print(f"note: {path} was made with labels of another code version", file=sys.stderr)
        rows[name] = {
            "kind": "network",
            "features": bool(m.get("features")),
            "patches": m.get("patches"),
            "command": m["command"],
            "params": m["params"],
            "model_bytes": m["model_bytes"],
            "test": m["test"],
            "cv": m["cv"],
            "cv_folds_run": m.get("cv_folds_run"),
            "cv_best_epochs": m["cv_best_epochs"],
            "final_epochs": m["final_epochs"],
            "latency_during_training": m["latency"],
            "train_seconds": m["seconds"],
            "settings": m["settings"],
            "label_code_hash": m.get("label_code_hash"),
        }
    for cls in BASELINES:
        fold_maes = []
        for held in folds(len(tv_items), args.folds, args.seed):
            is_held = np.isin(tv.group, held)
            model = cls().fit(tv.subset(~is_held))
            ho = tv.subset(is_held & tv.original)
            fold_maes.append(mae_per_target(model.predict(ho), ho.k))
        model = cls().fit(tv)
        rows[cls.name] = {
            "kind": "baseline",
            "description": cls.description,
            "fitted": model.params(),
            "test": test_metrics(model.predict(test), test, store, TARGETS),
            "cv": cv_summary(fold_maes, TARGETS),
        }

    # One prediction's latency, measured here for every network in turn (the
    # training runs measured theirs while other jobs shared the machine).
    from svdk.predictor import RankPredictor

    from .train import latency_ms, machine

    for name, row in rows.items():
        if row["kind"] == "network":
            model = RankPredictor.load(Path(args.runs) / name / "model.keras")
            row["latency"] = latency_ms(model, items["test"][0].native)

    checks = {}
    const = rows["constant"]["test"]["0.90"]["mae_k"]
    energy = rows["energy"]["test"]["0.90"]["mae_k"]
    for name, row in rows.items():
        if row["kind"] != "network":
            continue
        c = row["test"]["0.90"]["mae_k"]
        lat = (row.get("latency") or {}).get("predict_ms_median", math.nan)
        limit = TARGETS_CHECKED["features_vs_constant" if row["features"] else "pixels_vs_constant"]
        checks[name] = {
            "vs_constant_at_0.90": {"ratio": c / const, "target": f"<= {limit:g}", "met": c / const <= limit},
            "beats_energy_at_0.90": {"model": c, "energy": energy, "met": c < energy},
            "latency_ms": {
                "value": lat,
                "target": f"<= {TARGETS_CHECKED['latency_ms']:g}",
                "met": lat <= TARGETS_CHECKED["latency_ms"],
            },
        }
    choice = _choice(rows, checks)
    from svdk.predictor import DEFAULT_MODEL, sha256_file

    shipped = sha256_file(DEFAULT_MODEL) if DEFAULT_MODEL.is_file() else None
    for name in rows:
        path = Path(args.runs) / name / "model.keras"
        if rows[name]["kind"] == "network" and path.is_file():
            rows[name]["shipped"] = sha256_file(path) == shipped
    report = {
        "name": "rank predictor on BSDS500",
        "description": (
            "Luma rank for a target SSIM on the 256x256 BSDS500 images: models trained on train+val "
            "(300 images plus one brightness copy each), evaluated once on test (200 images). "
            "Labels: the codec's exact quality policy (ycbcr 4:2:0, SSIM on luma)."
        ),
        "commands": [
            *(f"{row['command']}" for row in rows.values() if row["kind"] == "network"),
            "python -m training.report " + " ".join(argv if argv is not None else sys.argv[1:]),
        ],
        "targets": list(TARGETS),
        "metrics": {
            "mae_k": "mean |k_pred - k_label| on the test split",
            "mae_bytes_pct": "mean |bytes(k_pred) - bytes(k_label)| / bytes(k_label), percent",
            "reach": "share of test images whose file at k_pred reaches luma SSIM t",
            "reach_minus_0.01": "same for t - 0.01",
            "cv": "5-fold CV on train+val (grouped by source image): MAE in k, mean and std over folds",
        },
        "exact_search_ms_median_256": _exact_search_ms(test.work),
        "latency": (
            "one prediction: RankPredictor.predict(image, 0.9) on the first test image at its native size "
            "(decoded; resize, luma, patches, features and network included), batch 1, warm, median of 200 "
            "calls, with the model's default runtime (LiteRT), on the machine below"
        ),
        "machine": machine(),
        "label_code_hash": code_hash(TARGETS),
        "models": rows,
        "checks": checks,
        "default_choice": choice,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"wrote {out}")
    return 0


def _choice(rows: dict, checks: dict) -> dict | None:
    """The network svdk should ship: the lowest test MAE in k at 0.90 among those within the latency target."""
    fast = [n for n, c in checks.items() if c["latency_ms"]["met"]]
    if not fast:
        return None
    best = min(fast, key=lambda n: rows[n]["test"]["0.90"]["mae_k"])
    c = checks[best]
    others = sorted((n for n in checks if n != best), key=lambda n: rows[n]["test"]["0.90"]["mae_k"])
    text = (
        f"{best}: the lowest test MAE in k at SSIM 0.90 ({rows[best]['test']['0.90']['mae_k']:.1f}, "
        f"{c['vs_constant_at_0.90']['ratio']:.2f} x the constant baseline's; the energy rule "
        f"{c['beats_energy_at_0.90']['energy']:.1f}) of the networks whose one prediction takes at most "
        f"{TARGETS_CHECKED['latency_ms']:g} ms ({c['latency_ms']['value']:.1f} ms here)"
    )
    if others:
        text += "; then " + ", ".join(
            f"{n} {rows[n]['test']['0.90']['mae_k']:.1f}"
            + ("" if checks[n]["latency_ms"]["met"] else f" (but {checks[n]['latency_ms']['value']:.0f} ms)")
            for n in others
        )
    return {"name": best, "why": text}


def table(report: dict) -> str:
    """A Markdown table: per model, test MAE in k and % bytes, reach, CV at each target."""
    lines = [
        "| model | t | MAE k | MAE % bytes | reach t | reach t-0.01 | CV MAE k |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in report["models"].items():
        for t, m in row["test"].items():
            cv = (row.get("cv") or {}).get(t)
            if cv and len(cv.get("folds", [])) == 1:
                cvs = f"{cv['mae_k_mean']:.1f} (fold 1 of 5)"
            else:
                cvs = f"{cv['mae_k_mean']:.1f} ± {cv['mae_k_std']:.1f}" if cv else "-"
            lines.append(
                f"| {name} | {t} | {m['mae_k']:.1f} | {m['mae_bytes_pct']:.1f} | {m['reach']:.2f} | "
                f"{m['reach_minus_0.01']:.2f} | {cvs} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
