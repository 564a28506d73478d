"""The rank predictor the app uses, loaded once at start-up."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import svdk

__all__ = ["Model", "load_model"]


@dataclass
class Model:
    """The rank predictor the app uses, or why there is none."""

    predictor: object | None
    description: str


def load_model() -> Model:
    """Load svdk's default rank predictor once, and describe it for the page.

    The ``cnn`` policy of the requests uses this same predictor
    (:func:`svdk.predictor.default_predictor` loads it once per process).
    """
    try:
        p = svdk.predictor.default_predictor()
    except svdk.SvdkError as exc:
        return Model(None, f"no rank predictor ({exc}); automatic rank uses the exact SSIM search")
    try:  # the first prediction traces the network: do it now, not in a request
        p.predict(np.full((64, 64, 3), 128, np.uint8), 0.9)
    except Exception as exc:  # a broken model must not stop the app
        return Model(None, f"the rank predictor failed a test prediction ({exc}); automatic rank uses the exact SSIM search")
    return Model(p, p.describe())
