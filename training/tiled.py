"""The tiled layout's predictor, from labels to shipped files: ``python -m training.tiled [--ship]``.

One rerunnable command, because the tiled codec changes (its SSIM at a
given count moves with it):

1. **Labels.** For every BSDS500 image at its native size (481x321), a
   brightness-changed copy (0.7 or 1.3) and a seeded crop (50-95 % of each
   side, so sizes vary), and for each target of the grid (SSIM on luma
   0.80 ... 0.98): the luma component count svdk's exact ``quality`` policy
   chooses in the tiled layout (ycbcr 4:2:0, 8x8 tiles), with the features
   the model reads (:func:`svdk.predictor.tiled_features`). Cached in
   ``runs/cache/tiled-HASH.json``, where HASH covers every svdk module the
   encoder runs (:func:`training.labels.label_modules`), the feature module,
   :func:`tiled_label` and the grid: a change to the codec starts a new
   cache, and a stopped run goes on from the last save.
2. **Model** (Keras 3). The standardized features through Dense 32 - Dense
   32 (ReLU) to one output per target, added to the proxy features
   (:data:`svdk.predictor.TILED_FEATURES`: the count where an SSIM proxy of
   the tile spectrum reaches each target): the network learns the proxy's
   error, in ``log(n / tiles)``, with the L1 loss (the median). Train+val
   images (and their copies) train it; 10 % of the source images, copies
   with them, pick the epoch count, then it is fitted again on all of them.
3. **Test.** On the BSDS500 test split at native size: the mean absolute
   error in ``log n`` and the median and 90th percentile of ``|n/n_exact - 1|``,
   against the proxy alone and the constant (median components per tile).
4. Writes ``model.keras``, ``model.json``, ``model.tflite`` (checked against
   Keras to 1e-4) and ``metrics.json`` to ``--out`` (default ``runs/tiled``);
   ``--ship`` also copies the model to ``svdk/models/tiled/`` and the
   metrics to ``results/tiled_predictor.json``.

The first check's margin (``check_margin`` in ``model.json``) is the 0.75
quantile of the held-out images' errors in ``log n``.

About 4 minutes on 2 quiet cores with the labels to compute (1,100
images), under a minute with them cached.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np

import svdk
from svdk import policies
from svdk.engine import add_options, check_options

from .labels import BRIGHTNESS, TARGETS, LabelError, LabelStore, brighten, label_modules

__all__ = ["tiled_label", "tiled_hash", "TiledLabelStore", "images_to_label", "build_model", "main"]

REPO = Path(__file__).resolve().parent.parent
#: The first check adds this quantile of the held-out errors in log n to the prediction: most
#: checks then meet the target at once, and a met count costs no further evaluation.
MARGIN_QUANTILE = 0.75
#: Crops are this share of each side, drawn per image from a fixed seed.
CROP = (0.5, 0.95)


def tiled_label(pixels: np.ndarray, targets=TARGETS) -> dict:
    """The exact ``quality`` choice in the tiled layout at each target, and the model's features.

    Returns ``{"n": [...], "ssim": [...], "evaluations": [...], "features":
    [...], "tiles": T, "max_count": N, "size": [h, w]}``.
    """
    quality = policies.get("quality")
    encoder = svdk.Encoder(svdk.Pixels(np.ascontiguousarray(pixels), None), mode="ycbcr", tiled=True)
    features, tiles = svdk.predictor.tiled_features(encoder)
    out = {"n": [], "ssim": [], "evaluations": [], "features": [float(v) for v in features], "tiles": int(tiles),
           "max_count": int(encoder.max_ranks[0]), "size": list(pixels.shape[:2])}
    for t in targets:
        before = encoder.evaluations
        choice = quality(encoder, ("ssim", float(t)))  # the file's count depends on the count alone
        out["n"].append(int(choice.ranks[0]))
        out["ssim"].append(float(choice.measured["value"]))
        out["evaluations"].append(int(encoder.evaluations - before))
    return out


def _work(task):
    kind, key, pixels, targets = task
    return kind, key, tiled_label(pixels, targets)


def tiled_hash(targets=TARGETS) -> str:
    """Hash of what makes a tiled label: the encoder's modules, the feature module, :func:`tiled_label`, the grid.

    The feature module is the file :func:`svdk.predictor.tiled_features` is
    defined in (the feature code alone); the model's code is left out, so
    retraining with other settings reuses the labels.
    """
    files = [*label_modules(), Path(inspect.getsourcefile(svdk.predictor.tiled_features))]
    h = hashlib.sha256(json.dumps([float(t) for t in targets]).encode())
    for path in files:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    h.update(inspect.getsource(tiled_label).encode())
    return h.hexdigest()[:16]


class TiledLabelStore(LabelStore):
    """:class:`training.labels.LabelStore` for tiled labels: its own file, ``tiled-HASH.json``."""

    work = staticmethod(_work)

    def __init__(self, cache_dir=None, targets=TARGETS, processes: int | None = 2, *, engine: str = "local",
                 address: str | None = None):
        super().__init__(cache_dir, targets, processes, engine=engine, address=address)
        self.hash = tiled_hash(self.targets)
        self.path = self.dir / f"tiled-{self.hash}.json"
        self.data = {"labels": self._read(self.path), "outcomes": {}}

    def save(self) -> None:
        """Write the labels (there are no outcomes here), atomically."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data["labels"]))
        tmp.replace(self.path)


def _crop(pixels: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = pixels.shape[:2]
    ch, cw = (max(8, int(round(d * rng.uniform(*CROP)))) for d in (h, w))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return np.ascontiguousarray(pixels[y : y + ch, x : x + cw])


def images_to_label(items: dict, brightness: bool = True) -> tuple[list[np.ndarray], list[int], list[str]]:
    """``(images, source group, split)``: every train/val image, its brightness copy and its crop, then test."""
    images, groups, splits = [], [], []
    tv = items.get("train", []) + items.get("val", [])
    for j, it in enumerate(tv):
        copies = [it.native, _crop(it.native, j)]
        if brightness:
            copies.insert(1, brighten(it.native, BRIGHTNESS[j % len(BRIGHTNESS)]))
        images += copies
        groups += [j] * len(copies)
        splits += ["trainval"] * len(copies)
    for j, it in enumerate(items.get("test", [])):
        images.append(it.native)
        groups.append(len(tv) + j)
        splits.append("test")
    return images, groups, splits


def build_model(n_features: int, n_targets: int, proxy_columns: list[int], feature_mean, feature_std,
                learning_rate: float = 3e-3):
    """The compiled network: proxy (undone from its standardization by a fixed layer) plus a learned correction."""
    import keras
    from keras import layers, regularizers

    x = keras.Input((n_features,), name="features")
    h = layers.Dense(32, activation="relu", kernel_regularizer=regularizers.L2(1e-4))(x)
    h = layers.Dense(32, activation="relu", kernel_regularizer=regularizers.L2(1e-4))(h)
    correction = layers.Dense(n_targets, name="correction", kernel_initializer="zeros")(h)
    # the proxy columns back in log(n / tiles): x * std + mean, a fixed linear layer
    select = layers.Dense(n_targets, name="proxy", trainable=False)
    proxy = select(x)
    w = np.zeros((n_features, n_targets), np.float32)
    b = np.zeros(n_targets, np.float32)
    for j, c in enumerate(proxy_columns):
        w[c, j] = feature_std[c]
        b[j] = feature_mean[c]
    select.set_weights([w, b])
    out = layers.Add(name="log_n_per_tile")([proxy, correction])
    model = keras.Model(x, out, name="tiled")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mae")
    return model


def _errors(pred_logn: np.ndarray, n: np.ndarray) -> dict:
    rel = np.abs(np.exp(pred_logn) / n - 1)
    return {
        "mae_log_n": float(np.mean(np.abs(pred_logn - np.log(n)))),
        "median_rel_error": float(np.median(rel)),
        "p90_rel_error": float(np.percentile(rel, 90)),
    }


def _parser():
    from .data import DEFAULT_DATA

    p = argparse.ArgumentParser(prog="python -m training.tiled", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help=f"folder or Hub dataset id (default {DEFAULT_DATA})")
    p.add_argument("--limit", type=int, help="only the first N images of each split (quick runs, tests)")
    p.add_argument("--no-brightness", action="store_true", help="no brightness copies")
    p.add_argument("--epochs", type=int, default=300, help="most epochs (early stopping picks fewer)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", help="label cache folder (default runs/cache or $SVDK_CACHE)")
    p.add_argument("--out", default="runs/tiled", help="run folder (default runs/tiled)")
    p.add_argument("--ship", action="store_true",
                   help="also copy the model to svdk/models/tiled/ and the metrics to results/tiled_predictor.json")
    p.add_argument("--labels-only", action="store_true", help="compute the labels into the cache and stop")
    add_options(p, what="images: the labels")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    check_options(parser, args)
    from tqdm import tqdm

    from .data import DataError, load_images

    t_start = time.time()
    try:
        items = load_images(args.data, limit=args.limit)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    images, groups, splits = images_to_label(items, brightness=not args.no_brightness)
    store = TiledLabelStore(args.cache, TARGETS, processes=args.jobs, engine=args.engine, address=args.address)
    try:
        recs = store.labels(images, "tiled labels")
    except (svdk.OptionError, LabelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; the labels done so far are in the cache: run the same command to go on",
              file=sys.stderr)
        return 1
    label_seconds = time.time() - t_start
    print(f"{len(images)} images labelled in {label_seconds:.0f} s; cache {store.path}")
    if args.labels_only:
        return 0

    names = list(svdk.predictor.TILED_FEATURES)
    proxy_columns = [names.index(f"proxy@{t:.2f}") for t in TARGETS]
    X = np.array([r["features"] for r in recs], np.float32)
    tiles = np.array([r["tiles"] for r in recs], np.float64)
    N = np.array([r["n"] for r in recs], np.float64)
    Y = (np.log(N) - np.log(tiles)[:, None]).astype(np.float32)
    groups, splits = np.array(groups), np.array(splits)
    tv, test = splits == "trainval", splits == "test"
    mean, std = X[tv].mean(axis=0), X[tv].std(axis=0) + 1e-6
    Z = ((X - mean) / std).astype(np.float32)

    keras = _keras(args.seed)
    rng = np.random.default_rng(args.seed)
    sources = np.unique(groups[tv])
    early = np.isin(groups, rng.choice(sources, size=max(1, len(sources) // 10), replace=False)) & tv
    fit = tv & ~early
    bar = tqdm(total=args.epochs, unit="epoch", desc="tiled model")

    class Bar(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            bar.set_postfix_str(f"loss {(logs or {}).get('loss', math.nan):.4f}")
            bar.update()

    model = build_model(len(names), len(TARGETS), proxy_columns, mean, std)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=40, restore_best_weights=True)
    hist = model.fit(Z[fit], Y[fit], validation_data=(Z[early], Y[early]), epochs=args.epochs, batch_size=64,
                     verbose=0, callbacks=[stop, Bar()])
    best = int(np.argmin(hist.history["val_loss"])) + 1
    # the first check's margin: a quantile of the held-out errors at the middle targets (0.85-0.95)
    resid = Y[early] - model.predict(Z[early], verbose=0)
    margin = float(np.quantile(resid[:, 1:4], MARGIN_QUANTILE))
    keras.utils.set_random_seed(args.seed)
    model = build_model(len(names), len(TARGETS), proxy_columns, mean, std)
    bar.total = bar.n + best
    model.fit(Z[tv], Y[tv], epochs=best, batch_size=64, verbose=0, callbacks=[Bar()])
    bar.close()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clean = build_model(len(names), len(TARGETS), proxy_columns, mean, std)
    clean.set_weights(model.get_weights())
    model_path = out / "model.keras"
    clean.save(model_path)
    config = {
        "format": svdk.predictor.TILED_FORMAT,
        "version": 1,
        "layout": "tiled",
        "tile": 8,
        "mode": "ycbcr 4:2:0; the count is luma's, chroma follows the codec's threshold rule",
        "targets": list(TARGETS),
        "output": "log(n / tiles): luma components kept per 8x8 tile, at each target",
        "metric": "ssim on luma, the codec's quality policy in the tiled layout",
        "features": names,
        "feature_mean": [float(v) for v in mean],
        "feature_std": [float(v) for v in std],
        "check_margin": margin,
        "check_margin_quantile": MARGIN_QUANTILE,
        "params": int(clean.count_params()),
        "svdk_version": svdk.__version__,
        "label_code_hash": store.hash,
        "keras_version": keras.__version__,
        "command": "python -m training.tiled " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    (out / "model.tflite").unlink(missing_ok=True)
    (out / "model.json").write_text(json.dumps(config, indent=2) + "\n")
    svdk.predictor.export_tiled_litert(model_path)
    predictor = svdk.predictor.TiledPredictor.load(model_path)

    # test split: the shipped runtime's predictions from the cached features, against the exact counts
    pred = np.array([predictor.log_per_tile(x) for x in X[test]], np.float64)
    pred = np.maximum.accumulate(pred, axis=1) + np.log(tiles[test])[:, None]
    proxy = X[test][:, proxy_columns].astype(np.float64) + np.log(tiles[test])[:, None]
    const = np.median(Y[tv], axis=0)[None].astype(np.float64) + np.log(tiles[test])[:, None]
    metrics_test = {}
    for j, t in enumerate(TARGETS):
        n = N[test][:, j]
        metrics_test[f"{t:.2f}"] = {
            "first_check_meets": float(np.mean(pred[:, j] + margin >= np.log(n))),
            "model": _errors(pred[:, j], n),
            "proxy_alone": _errors(proxy[:, j], n),
            "constant_per_tile": _errors(const[:, j], n),
        }
    spread = {
        "std_log_n": [float(v) for v in np.log(N[tv]).std(axis=0)],
        "std_log_n_per_tile": [float(v) for v in Y[tv].std(axis=0)],
        "crop_shift_log_n": _crop_shift(np.log(N), groups, tv, len(images), brightness=not args.no_brightness),
        "crop_shift_log_n_per_tile": _crop_shift(Y, groups, tv, len(images), brightness=not args.no_brightness),
    }
    metrics = {
        "name": "tiled-layout predictor",
        "command": config["command"],
        "targets": list(TARGETS),
        "images": {"train+val with copies": int(tv.sum()), "sources": int(len(sources)), "test": int(test.sum())},
        "epochs": best,
        "check_margin": margin,
        "test": metrics_test,
        "quantity": spread,
        "params": config["params"],
        "model_bytes": model_path.stat().st_size,
        "tflite_bytes": (out / "model.tflite").stat().st_size,
        "label_code_hash": store.hash,
        "label_seconds": label_seconds,
        "seconds": time.time() - t_start,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    m90 = metrics_test["0.90"]
    print(f"tiled: test at 0.90: model MAE log n {m90['model']['mae_log_n']:.3f} (median |n/n_exact-1| "
          f"{m90['model']['median_rel_error']:.3f}), proxy alone {m90['proxy_alone']['mae_log_n']:.3f}, "
          f"constant {m90['constant_per_tile']['mae_log_n']:.3f}; wrote {out}")
    if args.ship:
        models = REPO / "svdk" / "models" / "tiled"
        models.mkdir(exist_ok=True)
        for suffix in (".keras", ".json", ".tflite"):
            shutil.copyfile(out / f"model{suffix}", models / f"model{suffix}")
        (REPO / "results").mkdir(exist_ok=True)
        shutil.copyfile(out / "metrics.json", REPO / "results" / "tiled_predictor.json")
        print(f"shipped: {models}/model.keras, model.json, model.tflite; results/tiled_predictor.json")
    return 0


def _keras(seed: int):
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already ran in this process: keep its pools
        pass
    import keras

    keras.utils.set_random_seed(seed)
    return keras


def _crop_shift(values: np.ndarray, groups: np.ndarray, tv: np.ndarray, n: int, brightness: bool) -> list[float]:
    """Mean |value(crop) - value(native)| per target over the train+val sources: how much a size change moves it."""
    per = 3 if brightness else 2
    idx = np.nonzero(tv)[0]
    native, crop = idx[0::per], idx[per - 1 :: per]
    return [float(v) for v in np.mean(np.abs(values[crop] - values[native]), axis=0)]


if __name__ == "__main__":
    sys.exit(main())
