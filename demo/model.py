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
    #: the tiled layout's predictor (:class:`svdk.predictor.TiledPredictor`), or None
    tiled: object | None = None


def load_model() -> Model:
    """Load svdk's default rank predictors once (global and tiled layouts), and describe them for the page.

    The ``cnn`` policy of the requests uses these same predictors
    (:func:`svdk.predictor.default_predictor` and
    :func:`svdk.predictor.default_tiled_predictor` load each once per process).
    """
    try:
        tiled = svdk.predictor.default_tiled_predictor()
        tiled.warm_up()
        tiled_text = "; tiled layout: " + tiled.describe().replace(str(tiled.path.parent) + os.sep, "")
    except Exception as exc:  # the tiled layout then uses the exact search
        log.warning("no tiled-layout predictor: %s", svdk.predictor.describe_error(exc))
        tiled, tiled_text = None, "; tiled layout: no predictor could be loaded, the exact SSIM search"
    try:
        p = svdk.predictor.default_predictor()
        p.warm_up()  # the first prediction's set-up: now, not in a request
    except Exception as exc:  # a missing or broken model must not stop the app
        # the reason (paths, what to reinstall) is for whoever runs the server, not for visitors
        log.warning("no rank predictor: %s", svdk.predictor.describe_error(exc))
        return Model(None, "no rank predictor could be loaded (the server log says why); "
                           "automatic rank uses the exact SSIM search" + tiled_text, tiled)
    # the page names the model file, not where the server keeps it
    return Model(p, p.describe().replace(str(p.path.parent) + os.sep, "") + tiled_text, tiled)
