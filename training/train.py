"""Train a rank predictor: ``python -m training.train --arch compact|seed [--features] ...``.

1. BSDS500 (``--data``: a folder of train/val/test images or a Hub dataset
   id) resized to 256x256; labels from the codec's exact ``quality`` policy at
   each target of the grid (cached; ``--jobs`` processes or ``--engine ray``); one brightness-changed copy
   of every train+val image, with its label recomputed.
2. ``--folds`` K-fold cross-validation on train+val, grouped by source image
   (a brightness copy never sits in another fold than its source). Each fold
   keeps 10% of its training images aside for early stopping; flips and
   90-degree rotations are drawn at random for every batch (they leave the
   singular values, hence the labels, unchanged).
3. A final fit on all of train+val for the median best epoch of the folds.
4. One evaluation on test (see :mod:`training.evaluate`), and the latency of
   one prediction (batch 1, warm, CPU, median of 200).

Writes ``model.keras`` (no optimizer state), ``model.tflite`` (the same
network for LiteRT, checked against it: :func:`svdk.predictor.export_litert`),
``model.json`` (the configuration :class:`svdk.predictor.RankPredictor`
reads) and ``metrics.json`` into ``--out``. TensorFlow runs on one intra-op and one
inter-op thread.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from svdk.engine import add_options, check_options

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    from .data import DEFAULT_DATA
    from .models import POOLS, TRUNKS

    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", choices=("compact", "seed", "patch"), default="compact")
    p.add_argument("--features", action="store_true", help="add hand-crafted scikit-image features (compact, patch)")
    p.add_argument("--trunk", choices=TRUNKS, default="small", help="the patch network's shared trunk")
    p.add_argument("--pool", choices=POOLS, default="meanmax", help="the patch network's pooling across patches")
    p.add_argument("--patches", type=int, default=16, help="patches per image (a square number; patch network)")
    p.add_argument("--resolution", choices=("work", "native"), default="work",
                   help="patches of the 256x256 version (work) or of the native image (patch network)")
    p.add_argument("--area", type=int,
                   help="with --resolution native: resize every image to about this many pixels first "
                        "(154401: BSDS500's 481x321, which leaves its images as they are)")
    p.add_argument("--shift", action="store_true",
                   help="also shift the 256x256 image circularly by a random offset before cutting its 16 "
                        "patches, per batch (patch network, --resolution work, 16 patches)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds on train+val (0: none)")
    p.add_argument("--max-folds", type=int, help="run only the first N of the --folds folds (quick comparisons)")
    p.add_argument("--threads", type=int, default=1, help="TensorFlow threads (intra-op)")
    p.add_argument("--cv-only", action="store_true",
                   help="stop after cross-validation: metrics.json with the CV figures, no final fit, no model")
    p.add_argument("--epochs", type=int, default=150, help="most epochs per fit")
    p.add_argument("--final-epochs", type=int, help="epochs of the final fit (default: median best CV epoch)")
    p.add_argument("--patience", type=int, default=15, help="early-stopping patience (epochs)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 3e-3 compact, 1e-3 seed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-brightness", action="store_true", help="no brightness copies")
    p.add_argument("--data", default=str(DEFAULT_DATA), help=f"folder or Hub dataset id (default {DEFAULT_DATA})")
    p.add_argument("--limit", type=int, help="use only the first N images of each split (quick runs, tests)")
    add_options(p, jobs_dest="processes", jobs_aliases=("--processes",), what="images: the labels")
    p.add_argument("--cache", help="label cache folder (default runs/cache or $SVDK_CACHE)")
    p.add_argument("--out", help="run folder (default runs/ARCH[-features])")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    return p


def _setup_tf(seed: int, threads: int = 1):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already ran in this process (tests): keep its pools
        pass
    import keras

    keras.utils.set_random_seed(seed)
    return tf, keras


def _dataset(tf, x, y, feats, batch: int, seed: int, augment: bool, shift: bool = False):
    inputs = (x, feats) if feats is not None else x
    ds = tf.data.Dataset.from_tensor_slices((inputs, y))
    if augment:
        ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)

        def shifted(p):
            # the 4x4 grid of patches back into the 256x256 image, rolled, and cut again
            side, size = 4, p.shape[1]
            img = tf.reshape(tf.transpose(tf.reshape(p, (side, side, size, size, 1)), (0, 2, 1, 3, 4)),
                             (side * size, side * size, 1))
            img = tf.roll(img, shift=tf.random.uniform([2], 0, side * size, dtype=tf.int32), axis=[0, 1])
            return tf.reshape(tf.transpose(tf.reshape(img, (side, size, side, size, 1)), (0, 2, 1, 3, 4)),
                              (side * side, size, size, 1))

        def dihedral(img):
            if shift:
                img = shifted(img)
            img = tf.image.rot90(img, k=tf.random.uniform([], 0, 4, dtype=tf.int32))
            return tf.cond(tf.random.uniform([]) < 0.5, lambda: tf.image.flip_left_right(img), lambda: img)

        if feats is not None:
            ds = ds.map(lambda a, b: ((dihedral(a[0]), a[1]), b))
        else:
            ds = ds.map(lambda a, b: (dihedral(a), b))
    return ds.batch(batch).prefetch(2)


class _Bar:
    """A tqdm progress bar over epochs, as a Keras callback."""

    def __init__(self, keras, total: int):
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="epoch", desc="training", dynamic_ncols=True)
        bar = self.bar

        class CB(keras.callbacks.Callback):
            def __init__(self, stage):
                super().__init__()
                self.stage = stage

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                bar.set_postfix_str(
                    f"{self.stage} loss {logs.get('loss', math.nan):.4f}"
                    + (f" val {logs['val_loss']:.4f}" if "val_loss" in logs else "")
                )
                bar.update()

        self.cb = CB

    def close(self):
        self.bar.close()


def _targets_y(data, kind):
    return (data.logk if kind == "log_k" else data.k.astype(np.float64)).astype(np.float32)


def _fit(tf, keras, args, kind, train, early, feats_norm, bar, stage, epochs):
    from .models import build

    n_features = train.features.shape[1] if args.features else 0
    init = train.logk[train.original].mean(axis=0)
    lr = args.lr or (1e-3 if args.arch == "seed" or args.trunk == "seed" else 3e-3)
    model = build(args.arch, train.k.shape[1], n_features=n_features, init_logk=init, learning_rate=lr,
                  **_patch_options(args))

    def feats(d):
        return ((d.features - feats_norm[0]) / feats_norm[1]).astype(np.float32) if args.features else None

    ds = _dataset(tf, train.x, _targets_y(train, kind), feats(train), args.batch, args.seed, True, args.shift)
    callbacks = [bar.cb(stage)]
    val = None
    if early is not None and len(early):
        val = _dataset(tf, early.x, _targets_y(early, kind), feats(early), 256, args.seed, False)
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=args.patience, restore_best_weights=True)
        )
    hist = model.fit(ds, validation_data=val, epochs=epochs, verbose=0, callbacks=callbacks)
    losses = hist.history.get("val_loss") or hist.history["loss"]
    best_epoch = int(np.argmin(losses)) + 1
    bar.bar.update(max(0, epochs - len(hist.history["loss"])))  # epochs skipped by early stopping

    def predict(d):
        inputs = (d.x, feats(d)) if args.features else d.x
        return model.predict(inputs, batch_size=256, verbose=0)

    return model, best_epoch, predict


def _layout(args):
    """The :class:`svdk.predictor.PatchLayout` of a patch run; None for the whole-image models."""
    from svdk.predictor import PatchLayout

    if args.arch != "patch":
        return None
    return PatchLayout(count=args.patches, resolution=args.resolution, area=args.area)


def _patch_options(args) -> dict:
    return {"layout": _layout(args), "trunk": args.trunk, "pool": args.pool} if args.arch == "patch" else {}


def run_name(args) -> str:
    """``compact``, ``seed``, ``patch`` or ``patch-seed`` (the trunk), plus ``-features``."""
    name = args.arch + ("-seed" if args.arch == "patch" and args.trunk == "seed" else "")
    return name + ("-features" if args.features else "")


def _resolution_exponent(tv_items, store, targets) -> tuple[list[float], dict]:
    """Per target, beta with k_native = k_256 * (sqrt(H W) / 256) ** beta (median over train+val)."""
    natives = store.labels([it.native for it in tv_items], "native labels")
    works = store.labels([it.work for it in tv_items], "labels")
    k_nat = np.array([r["k"] for r in natives], dtype=np.float64)
    k_256 = np.array([r["k"] for r in works], dtype=np.float64)
    size = np.array([math.log(math.sqrt(it.native.shape[0] * it.native.shape[1]) / 256) for it in tv_items])
    ratio = np.log(k_nat / k_256) / size[:, None]
    beta = [float(v) for v in np.median(ratio, axis=0)]
    return beta, {"median_k_ratio": [float(v) for v in np.median(k_nat / k_256, axis=0)], "images": len(tv_items)}


def machine() -> dict:
    """The machine a figure was measured on: CPU model, cores, Python."""
    from svdk.bench import cpu_model

    cpu = cpu_model() or platform.processor()
    return {"cpu": cpu or "unknown", "cpu_count": os.cpu_count(), "python": platform.python_version()}


def latency_ms(predictor, image, n: int = 200) -> dict:
    """Median wall times (batch 1, after warm-up) of one prediction and of the network alone.

    ``predict_ms_median``: ``predictor.predict(image, 0.9)`` on a decoded
    native-size image: resize, luma, patches, features and network.
    ``network_ms_median``: the network on inputs already made.
    ``jpeg_encode_ms_median``: Pillow's JPEG encode (quality 75) of the same
    image, timed in the same run, and ``predict_vs_jpeg_encode`` the ratio.
    """
    for _ in range(10):
        predictor.predict(image, 0.9)

    def median_ms(call):
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        return 1e3 * float(np.median(times))

    import io

    from PIL import Image

    inputs = predictor.inputs(image)
    pil = Image.fromarray(image)
    predict = median_ms(lambda: predictor.predict(image, 0.9))
    jpeg = median_ms(lambda: pil.save(io.BytesIO(), "JPEG", quality=75))
    return {
        "predict_ms_median": predict,
        "network_ms_median": median_ms(lambda: predictor.run(inputs)),
        # a reference timed in the same run: on a loaded or slower machine both grow, their ratio much less
        "jpeg_encode_ms_median": jpeg,
        "predict_vs_jpeg_encode": predict / jpeg,
        "calls": n,
        "image": f"{image.shape[1]}x{image.shape[0]}",
        "runtime": predictor.runtime,
    }


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    check_options(parser, args)
    if args.features and args.arch == "seed":
        print("error: --features goes with --arch compact or patch", file=sys.stderr)
        return 2
    try:
        layout = _layout(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.shift and (layout is None or layout.resolution != "work" or layout.count != 16):
        print("error: --shift goes with --arch patch --resolution work --patches 16 (patches that tile the "
              "256x256 image)", file=sys.stderr)
        return 2
    from .data import DataError, load_images
    from .evaluate import build, cv_summary, folds, mae_per_target, test_metrics, to_ranks
    from .labels import LabelError, LabelStore, TARGETS, code_hash
    from .models import OUTPUT_KIND
    import svdk
    from svdk.predictor import FEATURE_NAMES, INPUT_SHAPE, MODEL_FORMAT, MODEL_VERSION, RankPredictor, export_litert

    name = run_name(args)
    out = Path(args.out or Path("runs") / name)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    try:
        items = load_images(args.data, limit=args.limit)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    store = LabelStore(args.cache, TARGETS, processes=args.processes, engine=args.engine, address=args.address)
    tv_items = items["train"] + items["val"]
    try:
        tv = build(tv_items, store, brightness=not args.no_brightness, desc="train+val labels", layout=layout)
        test = build(items["test"], store, brightness=False, desc="test labels", layout=layout)
        beta, beta_info = _resolution_exponent(tv_items, store, TARGETS)
    except (svdk.OptionError, LabelError) as exc:  # Ray missing or unreachable, a label that failed
        print(f"error: {exc}", file=sys.stderr)
        return 1
    kind = OUTPUT_KIND[args.arch]
    tf, keras = _setup_tf(args.seed, args.threads)

    fn = tv.features[tv.original]
    feats_norm = (fn.mean(axis=0), fn.std(axis=0) + 1e-6)
    n_groups = len(tv_items)
    rng = np.random.default_rng(args.seed)
    fold_maes, best_epochs = [], []
    fold_list = (folds(n_groups, args.folds, args.seed) if args.folds > 1 else [])[: args.max_folds]
    total = len(fold_list) * args.epochs + (args.final_epochs or args.epochs)
    bar = _Bar(keras, total)
    for f, held in enumerate(fold_list):
        is_held = np.isin(tv.group, held)
        rest = np.setdiff1d(np.arange(n_groups), held)
        early_groups = rng.choice(rest, size=max(1, len(rest) // 10), replace=False)
        is_early = np.isin(tv.group, early_groups) & tv.original
        train = tv.subset(~is_held & ~np.isin(tv.group, early_groups))
        _, best, predict = _fit(
            tf, keras, args, kind, train, tv.subset(is_early), feats_norm, bar, f"fold {f + 1}", args.epochs
        )
        ho = tv.subset(is_held & tv.original)
        fold_maes.append(mae_per_target(to_ranks(predict(ho), kind), ho.k))
        best_epochs.append(best)
    if args.cv_only:
        bar.close()
        if not fold_maes:
            print("error: --cv-only needs --folds 2 or more", file=sys.stderr)
            return 2
        cv_metrics = {
            "name": name,
            "arch": args.arch,
            "features": bool(args.features),
            "patches": layout.to_json() if layout else None,
            "command": "python -m training.train " + " ".join(argv if argv is not None else sys.argv[1:]),
            "cv": cv_summary(fold_maes, TARGETS),
            "cv_folds_run": f"{len(fold_list)} of {args.folds}",
            "cv_best_epochs": best_epochs,
            "seconds": time.time() - t_start,
            "settings": vars(args),
            "label_code_hash": code_hash(TARGETS),
        }
        (out / "metrics.json").write_text(json.dumps(cv_metrics, indent=2) + "\n")
        print(f"{name}: CV MAE in k at 0.90 = {cv_metrics['cv']['0.90']['mae_k_mean']:.2f}; wrote {out}/metrics.json")
        return 0
    final_epochs = args.final_epochs or (int(np.median(best_epochs)) if best_epochs else args.epochs)
    bar.bar.total = len(fold_list) * args.epochs + final_epochs
    bar.bar.refresh()
    model, _, predict = _fit(tf, keras, args, kind, tv, None, feats_norm, bar, "final", final_epochs)
    bar.close()
    k_test = to_ranks(predict(test), kind)
    metrics_test = test_metrics(k_test, test, store, TARGETS)

    # save: weights in a fresh, uncompiled copy so no optimizer state is stored
    from .models import build as build_model

    clean = build_model(args.arch, len(TARGETS), n_features=tv.features.shape[1] if args.features else 0,
                        **_patch_options(args))
    clean.set_weights(model.get_weights())
    model_path = out / "model.keras"
    clean.save(model_path)
    config = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION if layout else 1,  # the whole-image models stay version 1
        "arch": args.arch,
        **({"patches": layout.to_json(), "trunk": args.trunk, "pool": args.pool} if layout else {}),
        "input_shape": list(layout.input_shape if layout else INPUT_SHAPE),
        "targets": list(TARGETS),
        "output": kind,
        "metric": "ssim on luma (ycbcr 4:2:0), the codec's quality policy",
        "chroma_rank_fraction": svdk.CHROMA_RANK_FRACTION,
        "features": list(FEATURE_NAMES) if args.features else [],
        "feature_mean": [float(v) for v in feats_norm[0]] if args.features else [],
        "feature_std": [float(v) for v in feats_norm[1]] if args.features else [],
        "resolution_exponent": beta,
        "work_size": 256,
        "params": int(clean.count_params()),
        "svdk_version": svdk.__version__,
        "label_code_hash": code_hash(TARGETS),
        "keras_version": keras.__version__,
    }
    (out / "model.tflite").unlink(missing_ok=True)  # an earlier run's LiteRT file must not outlive its model
    (out / "model.json").write_text(json.dumps(config, indent=2) + "\n")
    export_litert(model_path)  # model.tflite beside it (and litert_sha256 in model.json): prediction without TensorFlow
    predictor = RankPredictor.load(model_path)
    latency = None if args.no_latency else latency_ms(predictor, items["test"][0].native)
    metrics = {
        "name": name,
        "arch": args.arch,
        "features": bool(args.features),
        "patches": config.get("patches"),
        "command": "python -m training.train " + " ".join(argv if argv is not None else sys.argv[1:]),
        "targets": list(TARGETS),
        "images": {"train+val": n_groups, "train+val with copies": len(tv), "test": len(test)},
        "test": metrics_test,
        "cv": cv_summary(fold_maes, TARGETS) if fold_maes else None,
        "cv_folds_run": f"{len(fold_list)} of {args.folds}" if fold_list else None,
        "cv_best_epochs": best_epochs,
        "final_epochs": final_epochs,
        "resolution": {"exponent": beta, **beta_info},
        "latency": latency,
        "model_bytes": model_path.stat().st_size,
        "params": int(clean.count_params()),
        "seconds": time.time() - t_start,
        "settings": {k: v for k, v in vars(args).items()},
        "machine": {**machine(), "tf_threads": args.threads},
        "label_code_hash": code_hash(TARGETS),
    }
    write_metrics(out, name, metrics)
    return 0


def write_metrics(out: Path, name: str, metrics: dict) -> None:
    """Write a run's ``metrics.json`` into ``out`` and say in one line what the run made."""
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    t90 = metrics["test"].get("0.90", {})
    latency = metrics.get("latency")
    print(
        f"{name}: test MAE in k at 0.90 = {t90.get('mae_k', math.nan):.2f}, "
        f"reach {t90.get('reach', math.nan):.2f}; model {metrics['model_bytes']} bytes; "
        + (f"latency {latency['predict_ms_median']:.2f} ms; " if latency else "")
        + f"wrote {out}/model.keras, model.tflite, model.json, metrics.json"
    )


if __name__ == "__main__":
    sys.exit(main())
