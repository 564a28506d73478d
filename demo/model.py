"""The rank predictor the app uses, loaded once at start-up."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass


import svdk

__all__ = ["Model", "load_model"]

log = logging.getLogger("svdk.app")


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
        p.warm_up()  # the first prediction's set-up: now, not in a request
    except Exception as exc:  # a missing or broken model must not stop the app
        # the reason (paths, what to reinstall) is for whoever runs the server, not for visitors
        log.warning("no rank predictor: %s", svdk.predictor.describe_error(exc))
        return Model(None, "no rank predictor could be loaded (the server log says why); "
                           "automatic rank uses the exact SSIM search")
    # the page names the model file, not where the server keeps it
    return Model(p, p.describe().replace(str(p.path.parent) + os.sep, ""))
