"""The rank predictor: a small CNN that guesses the luma rank for a target SSIM.

The package is split by job: ``_features`` (what the network sees),
``_files`` (model files, their configuration and checks), ``_litert`` (the
network without TensorFlow), ``_model`` (:class:`RankPredictor`: loading
and predicting), ``_hub`` (the Hugging Face Hub), ``_tiled`` (the tiled
layout's predictor) and ``_policies`` (the ``cnn`` policies and the models
they use).
Everything public is here.

Nothing heavy is imported until a model is loaded, so ``import svdk`` stays
light. The network runs with LiteRT (``pip install 'svdk[model]'``: the
``ai-edge-litert`` interpreter, about 20 MB, imported in about 10 ms) from
the ``.tflite`` file beside each ``.keras`` file, or with Keras and
TensorFlow (``pip install 'svdk[keras]'``: several hundred MB, 7-10 s to
import) when there is no such file or ``SVDK_PREDICTOR_RUNTIME=keras`` is
set. Both give the same ranks; :attr:`RankPredictor.runtime` says which
one runs.

How a prediction is made
------------------------
1. The luma is JPEG's BT.601 (the codec's own conversion); alpha is dropped.
   Labels, and the hand-crafted features, belong to the image resized to
   256x256 (Pillow, bicubic).
2. A patch model (the shipped one; configuration version 2) reads ``count``
   grayscale 64x64 patches of that luma in [0, 1], on a regular grid edge to
   edge (:class:`PatchLayout`, recorded in its ``model.json`` as
   ``patches``: 16 patches tile the 256x256 version exactly; a layout at
   ``resolution="native"`` cuts them from the image as given, resized first
   to about ``area`` pixels when the layout sets it, as the shipped model's
   does: BSDS500's 481x321, so that a patch of a larger photo covers what
   it covered in training; enlarged when a side is under 64 pixels). One
   shared convolutional trunk runs over every patch and the results are
   pooled across patches. A whole-image model
   (version 1, the kind svdk shipped before) reads the 256x256 luma averaged
   over 4x4 blocks instead. Either may also read eight hand-crafted features
   of the 256x256 luma (:data:`FEATURE_NAMES`).
   The network outputs ``log k`` at every target of its grid (for the shipped
   model 0.80, 0.85, 0.90, 0.95, 0.98). The head adds non-negative
   increments, so the ranks grow with the target by construction. A target
   between grid points is interpolated linearly in ``log k``; outside the grid
   the end segments are extended.
3. Native resolution: ``k`` was learned for the 256x256 version. For an
   image of ``H x W`` pixels the rank is scaled by ``(sqrt(H W) / 256) **
   beta_t``, with one exponent per grid target fitted on the BSDS500 training
   images at their native 481x321 size (stored in the model's JSON
   configuration), and clipped to ``[1, min(H, W)]``.

Chroma ranks follow the codec's rule (:data:`svdk.CHROMA_RANK_FRACTION` of
the luma rank).

Policies
--------
``cnn``
    predicts ``k``, measures it, and corrects it with at most two more SSIM
    evaluations (guided by the slope of the predicted rank-quality curve). If
    the target is still not met it falls back to the exact search, so the
    target is always met; the reason says which path was taken and how many
    evaluations it used.
``cnn-only``
    uses the prediction alone, with no evaluation: fastest, but the target is
    not guaranteed.

Both accept SSIM targets only (``--quality ssim:T``), and refuse others
with an :class:`~svdk.OptionError` naming the policies that fit. In the
tiled layout they predict luma's component count with a second, small model
that reads the tile spectrum (``_tiled``: :class:`TiledPredictor`,
:func:`tiled_features`, shipped in ``svdk/models/tiled``), and the check
lowers a met count at most once. :class:`svdk.Encoded` reports the
prediction (``predicted_rank``), what the check did (``correction``) and the
model (``model``).

Model files
-----------
A model is a Keras 3 ``.keras`` file plus a JSON configuration with the same
stem (``patch.keras`` + ``patch.json``). The configuration names the
format (``svdk-rank-predictor``), its version (:data:`READ_VERSIONS`: 1, a
whole-image model; 2, a patch model, with its ``patches`` layout), the input
shape, the target grid, the feature list (for the variants with hand-crafted
features) and the resolution exponents, and ``litert_sha256``: the sha256 of
the LiteRT file (``patch.tflite``) beside it, the same network for the light
runtime. :meth:`RankPredictor.load` checks all of them, and that the network
takes the inputs its layout makes, and raises :class:`ModelError` naming the
file and what was expected.

Where the model comes from
--------------------------
:meth:`RankPredictor.from_pretrained` takes a local folder (holding
``model.keras``, ``model.tflite`` and ``model.json``, as ``python -m training.train`` writes
them) or a Hugging Face Hub repo id, optionally at a pinned revision; the Hub
files are downloaded through ``huggingface_hub`` (imported only then) into its
cache. A downloaded file whose checksum differs from the one the Hub announced
for it (the sha256 of an LFS file, the git blob id of another), or a
``model.keras`` whose sha256 differs from the ``weights_sha256`` that
``python -m hub.publish`` records in ``model.json``, is refused and removed
from the cache.

:func:`default_predictor` picks the model the ``cnn`` policies use:

* with ``SVDK_MODEL_REPO=OWNER/NAME`` (and ``SVDK_MODEL_REVISION``, a commit
  id, tag or branch; ``main`` when unset): that repo from the Hub, then from
  the local Hugging Face cache, then the local model below (``HF_ENDPOINT``
  and ``HF_HUB_CACHE`` are read when the model is chosen);
* otherwise, or when those fail: the ``.keras`` file named by
  ``SVDK_RANK_MODEL``, else the model shipped in ``svdk/models``.

Each source that fails is logged (logger ``svdk.predictor``) with the reason,
and the one used is logged and kept in :attr:`RankPredictor.source`
(:meth:`RankPredictor.describe` gives it as one line).
"""

from __future__ import annotations

from ._features import (
    FEATURE_NAMES,
    INPUT_SHAPE,
    WORK_SIZE,
    PatchLayout,
    hand_features,
    luma,
    model_input,
    patch_positions,
    patches,
    resize_work,
)
from ._files import (
    CONFIG_FILE,
    DEFAULT_MODEL,
    LITE_FILE,
    MODEL_FILE,
    MODEL_FORMAT,
    MODEL_VERSION,
    READ_VERSIONS,
    ModelError,
    config_path,
    describe_error,
    image_shape,
    patch_layout,
    sha256_file,
)
from ._model import RUNTIMES, RankPredictor, export_litert
from ._policies import default_predictor  # registers the cnn and cnn-only policies
from ._tiled import (
    TILED_FEATURES,
    TILED_FORMAT,
    TILED_MODEL,
    TiledPredictor,
    default_tiled_predictor,
    export_tiled_litert,
    tiled_features,
)

__all__ = [
    "RankPredictor",
    "RUNTIMES",
    "export_litert",
    "ModelError",
    "DEFAULT_MODEL",
    "MODEL_FILE",
    "CONFIG_FILE",
    "LITE_FILE",
    "default_predictor",
    "sha256_file",
    "config_path",
    "describe_error",
    "MODEL_FORMAT",
    "MODEL_VERSION",
    "READ_VERSIONS",
    "INPUT_SHAPE",
    "PatchLayout",
    "patch_layout",
    "image_shape",
    "patches",
    "patch_positions",
    "WORK_SIZE",
    "FEATURE_NAMES",
    "resize_work",
    "luma",
    "model_input",
    "hand_features",
    "TiledPredictor",
    "TILED_FEATURES",
    "TILED_FORMAT",
    "TILED_MODEL",
    "tiled_features",
    "default_tiled_predictor",
    "export_tiled_litert",
]
