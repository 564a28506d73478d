"""Three baselines the rank predictor must beat, fitted on the same training data.

``constant``
    the training median rank at each target, for every image.
``energy``
    the codec's ``energy`` rule (smallest rank keeping a fraction ``F`` of
    ``sum(s_i**2)`` of the luma plane, its mean included), with one fraction
    per target tuned on the training images to minimise the MAE in k.
``features``
    ridge regression of ``log k`` on the standardized hand-crafted features
    (:data:`svdk.predictor.FEATURE_NAMES`), one per target.
"""

from __future__ import annotations

import numpy as np

from svdk.predictor import luma

__all__ = ["Constant", "Energy", "FeatureRidge", "BASELINES", "spectra"]

#: Candidate energy fractions: 1 - 10**-x for x in [0.5, 7].
FRACTIONS = 1.0 - 10.0 ** -np.linspace(0.5, 7.0, 1301)


def spectra(images: list[np.ndarray]) -> list[tuple[np.ndarray, float]]:
    """``(cumulative s_i**2, total energy)`` of each image's luma plane (exact SVD)."""
    out = []
    for img in images:
        y = luma(img).astype(np.float64)
        s = np.linalg.svd(y, compute_uv=False)
        out.append((np.cumsum(s**2), float(np.sum(y**2))))
    return out


def energy_rank(spectrum: tuple[np.ndarray, float], fraction: np.ndarray) -> np.ndarray:
    """The energy rule's rank for each fraction (as ``svdk.policies.energy`` defines it)."""
    cum, total = spectrum
    k = np.searchsorted(cum, np.asarray(fraction) * total * (1 - 1e-12), side="left") + 1
    return np.minimum(k, len(cum))


class Constant:
    name = "constant"
    description = "training median rank at each target"

    def fit(self, data):
        self.k = np.median(data.k, axis=0)
        return self

    def predict(self, data):
        return np.tile(np.rint(self.k), (len(data), 1)).astype(np.int64)

    def params(self):
        return {"k": [float(v) for v in self.k]}


class Energy:
    name = "energy"
    description = "codec's energy rule, one fraction per target tuned on train (MAE in k)"

    def fit(self, data):
        spec = _spectra(data)
        ranks = np.stack([energy_rank(sp, FRACTIONS) for sp in spec])  # (N, F)
        self.fraction = []
        for j in range(data.k.shape[1]):
            mae = np.mean(np.abs(ranks - data.k[:, j : j + 1]), axis=0)
            self.fraction.append(float(FRACTIONS[int(np.argmin(mae))]))
        return self

    def predict(self, data):
        spec = _spectra(data)
        return np.stack([energy_rank(sp, np.array(self.fraction)) for sp in spec]).astype(np.int64)

    def params(self):
        return {"fraction": self.fraction}


_SPECTRA: dict[int, tuple] = {}


def _spectra(data):
    out = []
    for img in data.work:
        key = id(img)
        if key not in _SPECTRA:
            _SPECTRA[key] = (img, spectra([img])[0])  # keep img alive so the id stays unique
        out.append(_SPECTRA[key][1])
    return out


class FeatureRidge:
    name = "features"
    description = "ridge regression of log k on the hand-crafted features"

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def fit(self, data):
        f = data.features.astype(np.float64)
        self.mean, self.std = f.mean(axis=0), f.std(axis=0) + 1e-9
        x = np.hstack([np.ones((len(f), 1)), (f - self.mean) / self.std])
        reg = self.alpha * np.eye(x.shape[1])
        reg[0, 0] = 0.0
        self.w = np.linalg.solve(x.T @ x + reg, x.T @ data.logk)
        return self

    def predict(self, data):
        f = data.features.astype(np.float64)
        x = np.hstack([np.ones((len(f), 1)), (f - self.mean) / self.std])
        return np.clip(np.rint(np.exp(x @ self.w)), 1, 256).astype(np.int64)

    def params(self):
        return {"alpha": self.alpha}


BASELINES = (Constant, Energy, FeatureRidge)
