"""Datasets for training and the metrics every model and baseline is judged by.

Metrics on the test split, per target ``t`` (predicted ranks rounded and
clipped to [1, 256]):

``mae_k``
    mean absolute error in luma rank against the exact label.
``mae_bytes_pct``
    mean over images of ``|bytes(k_pred) - bytes(k_label)| / bytes(k_label)``
    in percent, where ``bytes(k)`` is the size of the .svdk file svdk writes
    for the 256x256 image with luma rank ``k`` (chroma by the codec's rule).
``reach``, ``reach_minus_0.01``
    share of images whose file at the predicted rank reaches luma SSIM ``t``
    (and ``t - 0.01``), measured on that file's decoded luma.
``bias_k``
    mean signed error (positive: ranks too high).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from svdk.predictor import hand_features, model_input, patches

from .labels import BRIGHTNESS, LabelStore, brighten

__all__ = ["Data", "build", "folds", "test_metrics", "cv_summary", "to_ranks"]


@dataclass
class Data:
    """Arrays for one split (``group`` ties augmented copies to their source image)."""

    x: np.ndarray  # (N, 64, 64, 1) float32, or (N, patches, 64, 64, 1) for a patch model
    features: np.ndarray  # (N, F) float32
    k: np.ndarray  # (N, T) int labels
    group: np.ndarray  # (N,) source image index
    original: np.ndarray  # (N,) bool: not a brightness copy
    work: list = field(default_factory=list)  # uint8 256x256 images
    names: list = field(default_factory=list)

    def subset(self, mask: np.ndarray) -> "Data":
        idx = np.nonzero(mask)[0]
        return Data(
            self.x[idx], self.features[idx], self.k[idx], self.group[idx], self.original[idx],
            [self.work[i] for i in idx], [self.names[i] for i in idx],
        )

    @property
    def logk(self) -> np.ndarray:
        return np.log(self.k.astype(np.float64))

    def __len__(self) -> int:
        return len(self.k)


def build(items: list, store: LabelStore, *, brightness: bool = True, desc: str = "labels", layout=None) -> Data:
    """Inputs, features and labels of ``items`` (plus brightness copies, labels recomputed).

    ``layout`` (a :class:`svdk.predictor.PatchLayout`): the inputs are its
    patches, as :func:`svdk.predictor.patches` cuts them at prediction time
    (of the native image, or its brightness copy, for ``resolution="native"``);
    else the whole-image 64x64 input.
    """
    images, natives, group, original, names = [], [], [], [], []
    for j, it in enumerate(items):
        images.append(it.work)
        natives.append(it.native)
        group.append(j)
        original.append(True)
        names.append(it.name)
        if brightness:
            # one brightness copy per image, darker and brighter in turn
            for b in (BRIGHTNESS[j % len(BRIGHTNESS)],):
                images.append(brighten(it.work, b))
                natives.append((it.native, b))
                group.append(j)
                original.append(False)
                names.append(f"{it.name}@{b:g}")
    labels = store.labels(images, desc)
    if layout is None:
        x = np.stack([model_input(p) for p in images])
    elif layout.resolution == "work":
        x = np.stack([patches(p, layout, work=p) for p in images])
    else:
        x = np.stack([patches(brighten(*n) if isinstance(n, tuple) else n, layout) for n in natives])
    feats = np.stack([hand_features(p) for p in images])
    k = np.array([rec["k"] for rec in labels], dtype=np.int64)
    return Data(x, feats, k, np.array(group), np.array(original), images, names)


def folds(n_groups: int, n_folds: int, seed: int) -> list[np.ndarray]:
    """Group indices of each fold (a seeded shuffle, near-equal sizes)."""
    order = np.random.default_rng(seed).permutation(n_groups)
    return [np.sort(part) for part in np.array_split(order, n_folds)]


def to_ranks(pred: np.ndarray, kind: str = "log_k", top: int = 256) -> np.ndarray:
    """Model outputs to integer ranks in [1, top]."""
    k = np.exp(pred) if kind == "log_k" else np.asarray(pred, dtype=np.float64)
    return np.clip(np.rint(k), 1, top).astype(np.int64)


def mae_per_target(k_pred: np.ndarray, k_true: np.ndarray) -> list[float]:
    return [float(v) for v in np.mean(np.abs(k_pred - k_true), axis=0)]


def test_metrics(k_pred: np.ndarray, data: Data, store: LabelStore, targets) -> dict:
    """The metrics above for predictions ``k_pred`` (N, T) on the original images of ``data``."""
    sel = np.nonzero(data.original)[0]
    k_pred = np.asarray(k_pred)[sel]
    k_true = data.k[sel]
    pairs = [(data.work[i], int(kp)) for i, row in zip(sel, k_pred) for kp in row]
    pairs += [(data.work[i], int(kt)) for i, row in zip(sel, k_true) for kt in row]
    got = store.outcomes(pairs, "outcomes")
    n, t = k_pred.shape
    pred_out = np.array(got[: n * t], dtype=np.float64).reshape(n, t, 2)
    true_out = np.array(got[n * t :], dtype=np.float64).reshape(n, t, 2)
    out = {}
    for j, target in enumerate(targets):
        err = k_pred[:, j] - k_true[:, j]
        b_pred, s_pred = pred_out[:, j, 0], pred_out[:, j, 1]
        b_true = true_out[:, j, 0]
        out[f"{target:.2f}"] = {
            "mae_k": float(np.mean(np.abs(err))),
            "bias_k": float(np.mean(err)),
            "mae_bytes_pct": float(100 * np.mean(np.abs(b_pred - b_true) / b_true)),
            "reach": float(np.mean(s_pred >= target)),
            "reach_minus_0.01": float(np.mean(s_pred >= target - 0.01)),
            "oracle_bytes_mean": float(np.mean(b_true)),
            "label_k_mean": float(np.mean(k_true[:, j])),
        }
    return out


def cv_summary(fold_maes: list[list[float]], targets) -> dict:
    """Per target: mean and std (over folds) of the fold MAE in k."""
    a = np.asarray(fold_maes, dtype=np.float64)
    return {
        f"{t:.2f}": {
            "mae_k_mean": float(a[:, j].mean()),
            "mae_k_std": float(a[:, j].std(ddof=1)) if len(a) > 1 else math.nan,
            "folds": [float(v) for v in a[:, j]],
        }
        for j, t in enumerate(targets)
    }
