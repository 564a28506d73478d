"""Join two trained patch networks into one model that averages their ``log k``.

``python -m training.ensemble runs/patch runs/patch-features --out runs/patch-ensemble``

The two runs (``training.train --out``) must read the same patch layout and
predict ``log k`` at the same targets. The result is one Keras model: the
patches go to both networks, the hand-crafted features (when a member takes
them) to that member, and a Keras ``Average`` layer gives the mean of their
``log k``. Averaging two monotone curves keeps the curve monotone, so the
model is an ordinary rank predictor for :class:`svdk.predictor.RankPredictor`
(LiteRT file and configuration included) and needs nothing new at run time.

The run folder gets what ``training.train`` writes (``model.keras``,
``model.tflite``, ``model.json``, ``metrics.json``), with the test metrics
computed the same way. Nothing is fitted here: the weights are the members'
and the mean is unweighted, so the test split stays unseen. There is no
cross-validation figure of its own (the members' folds kept no predictions).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["main", "join"]


def join(members: list, keras):
    """One Keras model averaging the ``log k`` of ``members`` (Keras models on the same patches).

    Its inputs are the patches, then the features when a member takes
    them (one features input, shared).
    """
    patches = keras.Input(tuple(members[0].inputs[0].shape[1:]), name="patches")
    n_features = {int(m.inputs[1].shape[-1]) for m in members if len(m.inputs) == 2}
    if len(n_features) > 1:
        raise ValueError(f"the members take different numbers of features: {sorted(n_features)}")
    features = keras.Input((n_features.pop(),), name="features") if n_features else None
    # each member under a name of its own (two runs of one architecture share theirs)
    members = [
        keras.Model(m.inputs if len(m.inputs) == 2 else m.inputs[0], m.outputs[0], name=f"member_{i + 1}")
        for i, m in enumerate(members)
    ]
    outs = [m([patches, features] if len(m.inputs) == 2 else patches) for m in members]
    mean = keras.layers.Average(name="mean_log_k")(outs)
    return keras.Model([patches, features] if features is not None else patches, mean, name="ensemble")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.ensemble", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs=2, help="two run folders of training.train (patch networks)")
    p.add_argument("--out", default="runs/patch-ensemble", help="run folder to write (default runs/patch-ensemble)")
    p.add_argument("--data", default=None, help="BSDS500 folder or dataset id (default ../shared/data/bsds500)")
    p.add_argument("--cache", help="label cache folder (default runs/cache or $SVDK_CACHE)")
    p.add_argument("--area", type=int, help="the patch layout's area (see svdk.predictor.PatchLayout): a photo is "
                   "resized to about this many pixels before its patches are cut (BSDS500's 481x321: 154401)")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    args = p.parse_args(argv)
    t_start = time.time()

    from svdk.predictor import ModelError, PatchLayout, RankPredictor, export_litert, patch_layout

    from .data import DEFAULT_DATA, DataError, load_images
    from .evaluate import build, test_metrics, to_ranks
    from .labels import LabelError, LabelStore, TARGETS
    from .train import latency_ms, machine, write_metrics

    members, configs, member_metrics = [], [], []
    for run in args.runs:
        try:
            predictor = RankPredictor.load(Path(run) / "model.keras", runtime="keras")
            metrics = json.loads((Path(run) / "metrics.json").read_text())
        except ModelError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except (OSError, ValueError) as exc:
            print(f"error: {run}: no readable metrics.json ({exc.__class__.__name__}: {exc})", file=sys.stderr)
            return 1
        members.append(predictor)
        configs.append(predictor.config)
        member_metrics.append(metrics)
    # what the joined model shares: the members must agree on it
    shared = ("patches", "targets", "output", "input_shape", "trunk", "pool", "work_size", "chroma_rank_fraction",
              "label_code_hash")
    for key in shared:
        if configs[0].get(key) != configs[1].get(key):
            print(f"error: the runs differ in {key}: {configs[0].get(key)} and {configs[1].get(key)}", file=sys.stderr)
            return 2
    if configs[0].get("output", "log_k") != "log_k" or configs[0].get("patches") is None:
        print("error: both runs must be patch networks predicting log k", file=sys.stderr)
        return 2
    with_features = [c for c in configs if c.get("features")]
    standardized = {json.dumps([c[k] for k in ("features", "feature_mean", "feature_std")]) for c in with_features}
    if len(standardized) > 1:
        print("error: the runs read or standardize their features differently", file=sys.stderr)
        return 2
    layout = patch_layout(configs[0])
    if args.area is not None:
        try:
            layout = PatchLayout(**{**configs[0]["patches"], "area": args.area})
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    # the test split first: a run folder gets a model only with its metrics
    try:
        items = load_images(args.data or DEFAULT_DATA)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    store = LabelStore(args.cache, TARGETS)
    try:
        test = build(items["test"], store, brightness=False, desc="test labels", layout=layout)
    except LabelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    import keras

    import svdk

    model = join([m.model for m in members], keras)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("metrics.json", "model.tflite"):  # an earlier run's files must not outlive its model
        (out / stale).unlink(missing_ok=True)
    model_path = out / "model.keras"
    model.save(model_path)
    base = with_features[0] if with_features else configs[0]
    names = [Path(run).name for run in args.runs]
    n = len(configs[0]["targets"])
    config = {
        **base,
        "arch": "patch",
        "patches": layout.to_json(),
        "ensemble": [
            {"run": name, "features": bool(c.get("features")), "sha256": m.source["sha256"]}
            for name, m, c in zip(names, members, configs)
        ],
        "params": int(model.count_params()),
        # log k + beta s averaged is the mean log k plus the mean beta times s
        "resolution_exponent": [
            float(np.mean(v)) for v in zip(*(c.get("resolution_exponent", [1.0] * n) for c in configs))
        ],
        "svdk_version": svdk.__version__,
        "keras_version": keras.__version__,
    }
    config.pop("litert_sha256", None)
    (out / "model.json").write_text(json.dumps(config, indent=2) + "\n")
    export_litert(model_path)
    predictor = RankPredictor.load(model_path)

    inputs = [test.x]
    if with_features:
        mean, std = (np.asarray(base[k], dtype=np.float32) for k in ("feature_mean", "feature_std"))
        inputs.append(((test.features - mean) / std).astype(np.float32))
    pred = model.predict(inputs if len(inputs) > 1 else inputs[0], batch_size=256, verbose=0)
    metrics_test = test_metrics(to_ranks(pred, "log_k"), test, store, TARGETS)
    latency = None if args.no_latency else latency_ms(predictor, items["test"][0].native)
    metrics = {
        "name": out.name,
        "arch": "patch",
        "features": bool(with_features),
        "patches": config.get("patches"),
        "ensemble": names,
        "command": "python -m training.ensemble " + " ".join(argv if argv is not None else sys.argv[1:]),
        "targets": list(TARGETS),
        "images": {**member_metrics[0].get("images", {}), "test": len(test)},
        "members": [
            {
                "run": name,
                "features": bool(m.get("features")),
                **{k: m.get(k) for k in ("command", "final_epochs", "cv", "cv_folds_run")},
                "test_mae_k_at_0.90": (m.get("test") or {}).get("0.90", {}).get("mae_k"),
            }
            for name, m in zip(names, member_metrics)
        ],
        "test": metrics_test,
        "cv": None,
        "cv_folds_run": None,
        "cv_best_epochs": [],
        "final_epochs": None,
        "latency": latency,
        "model_bytes": model_path.stat().st_size,
        "params": int(model.count_params()),
        # training time: the members' (joining them takes seconds)
        "seconds": sum(m.get("seconds", 0.0) for m in member_metrics) + time.time() - t_start,
        "settings": {"runs": args.runs, "data": args.data},
        "machine": machine(),
        "label_code_hash": configs[0].get("label_code_hash"),  # the labels the members learnt
    }
    write_metrics(out, f"{out.name} ({' + '.join(names)})", metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
