"""The rank predictor: a small CNN that guesses the luma rank for a target SSIM.

Keras (TensorFlow backend) is imported only when a model is loaded, so
``import svdk`` stays light; install it with ``pip install 'svdk[model]'``.

How a prediction is made
------------------------
1. The image is resized to 256x256 (Pillow, bicubic), converted to JPEG's
   BT.601 luma (the codec's own conversion) and averaged over 4x4 blocks to a
   64x64 grayscale input in [0, 1].
2. The network outputs ``log k`` at every target of its grid (for the shipped
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

Both accept SSIM targets only (``--quality ssim:T``).

Model files
-----------
A model is a Keras 3 ``.keras`` file plus a JSON configuration with the same
stem (``compact.keras`` + ``compact.json``). The configuration names the
format (``svdk-rank-predictor``), its version, the input shape, the target
grid, the feature list (for the variant with hand-crafted features) and the
resolution exponents. :meth:`RankPredictor.load` checks all of them and
raises :class:`ModelError` naming the file and what was expected.

Where the model comes from
--------------------------
:meth:`RankPredictor.from_pretrained` takes a local folder (holding
``model.keras`` and ``model.json``, as ``python -m training.train`` writes
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

import hashlib
import json
import logging
import math
import os
import re
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from . import policies
from ._codec import _OFFSET, _RGB_TO_YCBCR
from ._errors import OptionError, SvdkError
from ._image import ImageLike, load_image

__all__ = [
    "RankPredictor",
    "ModelError",
    "DEFAULT_MODEL",
    "MODEL_FILE",
    "CONFIG_FILE",
    "default_predictor",
    "sha256_file",
    "MODEL_FORMAT",
    "MODEL_VERSION",
    "INPUT_SHAPE",
    "WORK_SIZE",
    "FEATURE_NAMES",
    "resize_work",
    "luma",
    "model_input",
    "hand_features",
]

#: The ``format`` field of a model's JSON configuration.
MODEL_FORMAT = "svdk-rank-predictor"
#: The configuration version this code reads.
MODEL_VERSION = 1
#: Shape of the network's image input.
INPUT_SHAPE = (64, 64, 1)
#: Side of the square image labels are computed on.
WORK_SIZE = 256
#: The shipped model (with ``compact.json`` beside it).
DEFAULT_MODEL = Path(__file__).parent / "models" / "compact.keras"
#: A model's files in a folder or a Hub repo (``training.train`` writes them, ``hub.publish`` uploads them).
MODEL_FILE = "model.keras"
CONFIG_FILE = "model.json"

log = logging.getLogger("svdk.predictor")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")  # also the length of a git blob id

#: Hand-crafted features (scikit-image) of the optional model variant.
FEATURE_NAMES = (
    "mean",
    "std",
    "edge_share",
    "entropy",
    "glcm_contrast",
    "sobel_mean",
    "sobel_std",
    "sobel_p90",
)


class ModelError(SvdkError):
    """A rank-predictor model that cannot be used (missing, corrupt, wrong version or shape)."""


# ----------------------------------------------------------------------------
# preprocessing (shared with training/, so training and inference agree)


def resize_work(image: ImageLike) -> np.ndarray:
    """``image`` as uint8 ``(256, 256)`` or ``(256, 256, 3)`` (alpha dropped)."""
    color = load_image(image).color
    if color.shape[:2] == (WORK_SIZE, WORK_SIZE):
        return color
    pil = Image.fromarray(color)
    return np.asarray(pil.resize((WORK_SIZE, WORK_SIZE), Image.BICUBIC))


def luma(color: np.ndarray) -> np.ndarray:
    """The codec's luma plane (float32, 0..255) of uint8 gray or RGB pixels."""
    if color.ndim == 2:
        return color.astype(np.float32)
    # rgb_to_ycbcr's first plane, computed alone (the same float32 arithmetic)
    x = color.astype(np.float32)
    m = _RGB_TO_YCBCR
    return m[0, 0] * x[..., 0] + m[0, 1] * x[..., 1] + m[0, 2] * x[..., 2] + _OFFSET[0]


def model_input(color256: np.ndarray, *, y: np.ndarray | None = None) -> np.ndarray:
    """The network's input ``(64, 64, 1)`` in [0, 1]: luma averaged over 4x4 blocks.

    ``y``, the image's :func:`luma` when the caller has it already.
    """
    y = luma(color256) if y is None else y
    f = WORK_SIZE // INPUT_SHAPE[0]
    small = y.reshape(INPUT_SHAPE[0], f, INPUT_SHAPE[1], f).mean(axis=(1, 3)) / 255.0
    return np.clip(small, 0.0, 1.0).astype(np.float32)[..., None]


def hand_features(color256: np.ndarray, *, y: np.ndarray | None = None) -> np.ndarray:
    """:data:`FEATURE_NAMES` of the 256x256 luma (float32), about 2 ms.

    Mean and standard deviation of the luma in [0, 1]; the share of pixels
    whose Sobel gradient magnitude (scikit-image) exceeds 0.05; the Shannon
    entropy (bits) of the 8-bit luma histogram; the GLCM contrast (64 grey
    levels, one pixel right and down, symmetric, normalized, averaged over
    the two directions: what scikit-image's ``graycoprops(graycomatrix(...),
    "contrast")`` gives, computed directly as the mean squared difference of
    neighbouring levels, a test checks the two agree); the mean, standard
    deviation and 90th percentile of the Sobel magnitude.
    """
    from skimage.filters import sobel

    y = luma(color256) if y is None else y
    y8 = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    yf = y / 255.0
    q = (y8 // 4).astype(np.int32)
    contrast = 0.5 * (np.mean(np.square(q[:, 1:] - q[:, :-1])) + np.mean(np.square(q[1:] - q[:-1])))
    grad = sobel(yf)
    p = np.bincount(y8.ravel(), minlength=256) / y8.size
    p = p[p > 0]
    return np.array(
        [
            yf.mean(),
            yf.std(),
            np.count_nonzero(grad > 0.05) / grad.size,
            -np.sum(p * np.log2(p)),
            contrast,
            grad.mean(),
            grad.std(),
            np.percentile(grad, 90),
        ],
        dtype=np.float32,
    )


# ----------------------------------------------------------------------------
# the predictor


def _import_keras():
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        import keras
    except ImportError:
        raise ModelError(
            "the rank predictor needs Keras and TensorFlow; install them with "
            "pip install 'svdk[model]'"
        ) from None
    return keras


def config_path(model_path: str | os.PathLike) -> Path:
    """The JSON configuration that goes with a ``.keras`` file."""
    return Path(model_path).with_suffix(".json")


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class RankPredictor:
    """A loaded rank-predictor model and its configuration.

    Use :meth:`load` (a ``.keras`` file) or :meth:`from_pretrained` (a
    folder or a Hub repo); then :meth:`predict` gives the luma rank for an
    image and a target SSIM.

    Attributes
    ----------
    source : dict
        Where the model came from: ``source`` (``"hub"``: the Hub was reached
        and resolved the revision, and the files were downloaded or found
        already cached at that commit; ``"cache"``: the Hub was not asked or
        not reached; ``"shipped"``: :data:`DEFAULT_MODEL`; ``"file"``: any
        other local file), ``repo`` (Hub repo id or None), ``revision``
        (commit id when known, else None), ``sha256`` (of the ``.keras``
        file) and ``path`` (the file loaded).
    """

    def __init__(self, model, config: dict, path: Path, source: dict | None = None):
        self.model = model
        self.config = config
        self.path = path
        self.source = source or {"source": "file", "repo": None, "revision": None, "sha256": None, "path": str(path)}
        self.targets = np.asarray(config["targets"], dtype=np.float64)
        self.features = tuple(config.get("features") or ())
        self._feature_mean = np.asarray(config.get("feature_mean", [0.0] * len(self.features)), np.float32)
        self._feature_std = np.asarray(config.get("feature_std", [1.0] * len(self.features)), np.float32)
        self.beta = np.asarray(config.get("resolution_exponent", [1.0] * len(self.targets)), np.float64)
        self._fn = None

    # -- loading ---------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> "RankPredictor":
        """Load a model (default: the shipped :data:`DEFAULT_MODEL`).

        Raises :class:`ModelError`, naming the file, when the model or its
        JSON configuration is missing, unreadable, of another format version
        or made for another input shape. Keras loads with ``safe_mode=True``.
        """
        path = Path(path) if path is not None else DEFAULT_MODEL
        cfg_path = config_path(path)
        if path.suffix != ".keras":
            raise ModelError(f"{path}: expected a Keras 3 model file ending in .keras")
        if not path.is_file():
            raise ModelError(
                f"{path}: no such model file; expected a .keras file with its configuration {cfg_path.name} "
                "beside it (train one with 'python -m training.train')"
            )
        if not cfg_path.is_file():
            raise ModelError(f"{cfg_path}: missing; a rank-predictor model needs this JSON configuration")
        try:
            config = json.loads(cfg_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{cfg_path}: not a readable JSON configuration ({exc})") from None
        cls._check_config(config, cfg_path)
        keras = _import_keras()
        try:
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as exc:  # Keras raises many types for a bad file
            raise ModelError(f"{path}: not a loadable Keras 3 model file ({_summary(exc)})") from None
        cls._check_model(model, config, path)
        shipped = path.resolve() == DEFAULT_MODEL.resolve()
        source = {
            "source": "shipped" if shipped else "file",
            "repo": None,
            "revision": None,
            "sha256": sha256_file(path),
            "path": str(path),
        }
        return cls(model, config, path, source)

    @classmethod
    def from_pretrained(
        cls,
        repo_id_or_local_dir: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        endpoint: str | None = None,
        token: str | None = None,
        local_files_only: bool = False,
    ) -> "RankPredictor":
        """Load a model from a local folder or a Hugging Face Hub repo, the same call for both.

        A local folder is loaded with :meth:`load`: its ``model.keras``, or
        its only ``.keras`` file (``svdk/models`` holds the shipped one), with
        the ``.json`` configuration of the same stem; so is a ``.keras`` path.
        Anything else is taken as a Hub repo id (``OWNER/NAME``):
        ``model.json`` and ``model.keras`` at ``revision``
        (a commit id, tag or branch; default ``main``) are downloaded into the
        Hugging Face cache (``cache_dir``, default ``HF_HUB_CACHE``) from
        ``endpoint`` (default ``HF_ENDPOINT``, else huggingface.co). When the
        Hub cannot be reached, or ``local_files_only`` or ``HF_HUB_OFFLINE=1``
        is set, the cached copy is used.

        Raises :class:`ModelError` with one clear message for a repo or
        revision that does not exist, a repo that holds no rank-predictor
        model, files that are neither on the Hub nor in the cache, a file
        whose checksum does not match the one the Hub announced for it, a
        ``model.keras`` whose sha256 is not the ``weights_sha256`` recorded
        in ``model.json`` (a refused file is removed from the cache), and
        every check of :meth:`load`.

        Examples
        --------
        >>> from svdk.predictor import RankPredictor                      # doctest: +SKIP
        >>> p = RankPredictor.from_pretrained("OWNER/NAME", revision="0123abc...")  # doctest: +SKIP
        >>> p.describe()                                                  # doctest: +SKIP
        'rank predictor OWNER/NAME at 0123abc... from the Hugging Face Hub (weights sha256 ...)'
        """
        local = Path(repo_id_or_local_dir)
        if local.is_dir():
            models = sorted(local.glob("*.keras"))
            only = models[0] if len(models) == 1 and not (local / MODEL_FILE).exists() else None
            return cls.load(only or local / MODEL_FILE)
        if local.suffix == ".keras":
            return cls.load(local)
        return _pull(
            cls,
            str(repo_id_or_local_dir),
            revision=revision,
            cache_dir=cache_dir,
            endpoint=endpoint,
            token=token,
            online=not local_files_only,
            cache_fallback=True,
        )

    def describe(self) -> str:
        """Where this model came from, in one line (for logs and the app)."""
        src = self.source
        sha = f"weights sha256 {src['sha256'][:12]}" if src.get("sha256") else "weights sha256 unknown"
        if src["source"] in ("hub", "cache"):
            where = "the Hugging Face Hub" if src["source"] == "hub" else "the local Hugging Face cache"
            return f"rank predictor {src['repo']} at {src['revision'] or 'an unknown revision'} from {where} ({sha})"
        if src["source"] == "shipped":
            return f"rank predictor shipped with svdk, {Path(src['path']).name} ({sha})"
        return f"rank predictor from {src['path']} ({sha})"

    @staticmethod
    def _check_config(config, cfg_path: Path) -> None:
        if not isinstance(config, dict) or config.get("format") != MODEL_FORMAT:
            got = config.get("format") if isinstance(config, dict) else type(config).__name__
            raise ModelError(f"{cfg_path}: expected format {MODEL_FORMAT!r}; got {got!r}")
        version = config.get("version")
        if version != MODEL_VERSION:
            raise ModelError(
                f"{cfg_path}: model configuration version {version!r}; this svdk reads version "
                f"{MODEL_VERSION}: retrain the model or upgrade svdk"
            )
        shape = tuple(config.get("input_shape") or ())
        if shape != INPUT_SHAPE:
            raise ModelError(f"{cfg_path}: input shape {list(shape)}; expected {list(INPUT_SHAPE)}")
        targets = config.get("targets")
        if (
            not isinstance(targets, list)
            or len(targets) < 2
            or not all(isinstance(t, (int, float)) and 0 < t <= 1 for t in targets)
            or sorted(targets) != targets
        ):
            raise ModelError(f"{cfg_path}: 'targets' must be an increasing list of SSIM values; got {targets!r}")
        features = config.get("features") or []
        if features and list(features) != list(FEATURE_NAMES):
            raise ModelError(
                f"{cfg_path}: the model was trained on the features {features}; this svdk computes "
                f"{list(FEATURE_NAMES)}: retrain the model or use the svdk it was made with"
            )

    @staticmethod
    def _check_model(model, config: dict, path: Path) -> None:
        inputs = model.inputs if isinstance(model.inputs, list) else [model.inputs]
        image_shape = tuple(inputs[0].shape[1:])
        if image_shape != INPUT_SHAPE:
            raise ModelError(
                f"{path}: the model takes inputs of shape {list(image_shape)}; expected {list(INPUT_SHAPE)} "
                "(64x64 grayscale)"
            )
        n_features = len(config.get("features") or ())
        if n_features and (len(inputs) != 2 or tuple(inputs[1].shape[1:]) != (n_features,)):
            raise ModelError(f"{path}: the configuration lists {n_features} features but the model does not take them")
        if not n_features and len(inputs) != 1:
            raise ModelError(f"{path}: the model takes {len(inputs)} inputs; its configuration lists no features")
        out = tuple(model.outputs[0].shape[1:])
        if out != (len(config["targets"]),):
            raise ModelError(
                f"{path}: the model has outputs of shape {list(out)}; expected one per target "
                f"({len(config['targets'])})"
            )

    # -- prediction ------------------------------------------------------------

    def _forward(self):
        """The network as one compiled call for batch 1 (about 1 ms, against 10+ ms eagerly)."""
        if self._fn is None:
            import keras

            model = self.model
            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf

                specs = [tf.TensorSpec((1, *INPUT_SHAPE), tf.float32)]
                if self.features:
                    specs.append(tf.TensorSpec((1, len(self.features)), tf.float32))

                @tf.function(input_signature=specs)
                def fn(*inputs):
                    return model(list(inputs), training=False)

                self._fn = fn
            else:
                self._fn = lambda *inputs: model(list(inputs), training=False)
        return self._fn

    def log_ranks(self, color256: np.ndarray) -> np.ndarray:
        """``log k`` at every grid target for one 256x256 image (uint8)."""
        y = luma(color256)
        inputs = [model_input(color256, y=y)[None]]
        if self.features:
            f = (hand_features(color256, y=y) - self._feature_mean) / self._feature_std
            inputs.append(f[None].astype(np.float32))
        out = np.asarray(self._forward()(*inputs), dtype=np.float64)[0]
        if self.config.get("output", "log_k") == "k":  # the seed network outputs ranks
            out = np.log(np.maximum(out, 1.0))
        return out

    def curve(self, image: ImageLike) -> tuple[np.ndarray, np.ndarray]:
        """``(targets, log k)`` of the predicted rank-quality curve at native resolution."""
        color = load_image(image).color
        h, w = color.shape[:2]
        logk = self.log_ranks(resize_work(color))
        logk = logk + self.beta * math.log(math.sqrt(h * w) / WORK_SIZE)
        return self.targets, np.maximum.accumulate(logk)

    def predict(self, image: ImageLike, target: float) -> int:
        """The predicted luma rank of ``image`` for SSIM ``target``.

        Examples
        --------
        >>> import svdk.predictor as p                          # doctest: +SKIP
        >>> p.RankPredictor.load().predict("example:astronaut", 0.9)  # doctest: +SKIP
        87
        """
        color = load_image(image).color
        targets, logk = self.curve(color)
        return _rank_at(targets, logk, float(target), min(color.shape[:2]))


def _log_rank_at(targets: np.ndarray, logk: np.ndarray, t: float) -> float:
    """Piecewise-linear ``log k`` at ``t``, extended beyond the grid."""
    if t <= targets[0]:
        i = 0
    elif t >= targets[-1]:
        i = len(targets) - 2
    else:
        return float(np.interp(t, targets, logk))
    slope = (logk[i + 1] - logk[i]) / (targets[i + 1] - targets[i])
    return float(logk[i] + slope * (t - targets[i]))


def _rank_at(targets, logk, t: float, max_rank: int) -> int:
    return int(min(max_rank, max(1, round(math.exp(_log_rank_at(targets, logk, t))))))


def _summary(exc: BaseException) -> str:
    """An exception as ``Type: message`` on one line (at most 200 characters of message)."""
    msg = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {msg[:200]}" if msg else type(exc).__name__


# ----------------------------------------------------------------------------
# the Hugging Face Hub (huggingface_hub is imported only here)


def _import_hub():
    try:
        import huggingface_hub
    except ImportError:
        raise ModelError(
            "pulling a model from the Hugging Face Hub needs huggingface_hub; install it with "
            "pip install 'svdk[hub]'"
        ) from None
    return huggingface_hub


def _hub_answer(exc: BaseException, repo_id: str, revision: str, host: str) -> ModelError | None:
    """A clear error for the Hub's answers about the repo itself; None for failures to reach it."""
    from huggingface_hub import errors

    answers = (  # GatedRepoError is a RepositoryNotFoundError: it comes first
        (errors.GatedRepoError, "{repo} on {host} is gated: accept its conditions on its page and pass a token "
         "(token= or HF_TOKEN)"),
        (errors.RepositoryNotFoundError, "{repo}: no such model repo on {host} (or it is private and no token "
         "with access was given); check the repo id, or pass token= / set HF_TOKEN"),
        (errors.RevisionNotFoundError, "{repo} on {host} has no revision {revision!r}; pass a commit id, tag or "
         "branch that exists"),
        (errors.RemoteEntryNotFoundError, "{repo} at {revision} on {host} holds no svdk rank-predictor model "
         "({detail}); expected " + f"{MODEL_FILE} and {CONFIG_FILE}, as 'python -m hub.publish' uploads them"),
    )
    for kind, message in answers:
        if isinstance(exc, kind):
            return ModelError(message.format(repo=repo_id, host=host, revision=revision, detail=_summary(exc)))
    return None


def _evict(pointer: Path) -> None:
    """Remove a cached file: its snapshot entry and the blob it points to."""
    blob = Path(os.path.realpath(pointer))
    for f in (pointer, blob):
        try:
            f.unlink()
        except OSError:
            pass


def _git_blob_id(path: Path) -> str:
    """The git object id of a file (the Hub's ETag for a file it keeps in git rather than LFS)."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _verify_download(model_path: Path, label: str) -> str:
    """The sha256 of a downloaded ``model.keras``; both files checked against every checksum announced.

    The cache names each blob by the ETag the Hub announced: the sha256 of a
    file kept in LFS, the git blob id of one kept in git. ``model.json`` may
    also record the sha256 of ``model.keras`` (``weights_sha256``).
    """
    sha = sha256_file(model_path)
    checks = []  # (file, kind, what, expected, actual)
    for path in (config_path(model_path), model_path):
        etag = Path(os.path.realpath(path)).name
        if _SHA256.fullmatch(etag):
            checks.append((path, "sha256", "the checksum the Hub announced for it", etag, sha256_file(path)))
        elif _COMMIT.fullmatch(etag):
            checks.append((path, "git blob id", "the checksum the Hub announced for it", etag, _git_blob_id(path)))
    try:
        recorded = json.loads(config_path(model_path).read_text()).get("weights_sha256")
    except (OSError, ValueError, AttributeError):
        recorded = None  # load() reports an unreadable configuration
    if recorded is not None:
        checks.append((model_path, "sha256", f"the weights_sha256 recorded in {CONFIG_FILE}", recorded, sha))
    for path, kind, what, expected, actual in checks:
        if expected != actual:
            _evict(path)
            raise ModelError(
                f"{path.name} of {label}: {kind} {actual} does not match {what} ({expected}); the file is "
                "corrupt or was altered, so it is refused and removed from the cache. Download it again, or "
                "use another revision"
            )
    return sha


def _pull(cls, repo_id: str, *, revision, cache_dir, endpoint, token, online: bool, cache_fallback: bool):
    """``model.json`` and ``model.keras`` of a Hub repo, from the Hub (``online``) or the local cache."""
    hub = _import_hub()
    from huggingface_hub import constants, errors
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except errors.HFValidationError as exc:
        raise ModelError(
            f"{repo_id!r} is neither a local folder nor a valid Hub repo id ({exc}); pass a folder holding "
            f"{MODEL_FILE} and {CONFIG_FILE}, or a repo id OWNER/NAME"
        ) from None
    rev = revision or constants.DEFAULT_REVISION
    host = (endpoint or constants.ENDPOINT).rstrip("/")
    label = f"{repo_id} at {rev}"
    reason = None
    if online and constants.is_offline_mode():
        online, reason = False, "HF_HUB_OFFLINE is set"
    elif online:
        try:
            info = hub.HfApi(endpoint=endpoint, token=token).model_info(repo_id, revision=rev)
        except Exception as exc:  # the Hub's answers become clear errors; anything else means unreachable
            answer = _hub_answer(exc, repo_id, rev, host)
            if answer is not None:
                raise answer from None
            online, reason = False, f"the Hub at {host} could not be reached ({_summary(exc)})"
        else:
            names = [s.rfilename for s in info.siblings or []]
            missing = [n for n in (CONFIG_FILE, MODEL_FILE) if n not in names]
            if missing:
                found = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "") if names else "no files"
                raise ModelError(
                    f"{label} on {host} holds no svdk rank-predictor model: {' and '.join(missing)} missing "
                    f"(found: {found}); publish one with 'python -m hub.publish'"
                )
    if reason is not None:
        if not cache_fallback:
            raise ModelError(f"{label}: {reason}")
        log.warning("%s: %s; trying the local Hugging Face cache", label, reason)
    paths = {}
    for name in (CONFIG_FILE, MODEL_FILE):
        try:
            paths[name] = Path(
                hub.hf_hub_download(
                    repo_id,
                    name,
                    revision=rev,
                    cache_dir=cache_dir,
                    endpoint=endpoint,
                    token=token,
                    local_files_only=not online,
                )
            )
        except Exception as exc:
            if not online and isinstance(exc, errors.LocalEntryNotFoundError):
                raise ModelError(
                    f"{label}: {name} is not in the local Hugging Face cache "
                    f"({cache_dir or constants.HF_HUB_CACHE}); download it once with network access"
                ) from None
            answer = _hub_answer(exc, repo_id, rev, host)
            raise (answer or ModelError(f"{label}: downloading {name} failed ({_summary(exc)})")) from None
    model_path = paths[MODEL_FILE]
    commit = model_path.parent.name
    if paths[CONFIG_FILE].parent != model_path.parent:
        raise ModelError(
            f"{label}: {CONFIG_FILE} and {MODEL_FILE} came from different commits (the branch moved during "
            "the download); try again, or pin a commit id"
        )
    sha = _verify_download(model_path, f"{repo_id} at {commit}")
    predictor = cls.load(model_path)
    predictor.source = {
        "source": "hub" if online else "cache",
        "repo": repo_id,
        "revision": commit if _COMMIT.fullmatch(commit) else None,
        "sha256": sha,
        "path": str(model_path),
    }
    return predictor


# ----------------------------------------------------------------------------
# the model the policies use


_LOCK = threading.Lock()
_DEFAULT: RankPredictor | None = None


def default_predictor() -> RankPredictor:
    """The model the ``cnn`` policies use, chosen once (see "Where the model comes from" above).

    The choice is logged (logger ``svdk.predictor``) and kept in the
    predictor's :attr:`~RankPredictor.source`.
    """
    global _DEFAULT
    with _LOCK:
        if _DEFAULT is None:
            _DEFAULT = _choose_default()
            log.info("using %s", _DEFAULT.describe())
        return _DEFAULT


def _choose_default() -> RankPredictor:
    local = os.environ.get("SVDK_RANK_MODEL") or None
    local_name = f"SVDK_RANK_MODEL={local}" if local else "the model shipped with svdk"
    repo = os.environ.get("SVDK_MODEL_REPO")
    if repo:
        revision = os.environ.get("SVDK_MODEL_REVISION") or None
        if revision is None:
            log.warning(
                "SVDK_MODEL_REPO=%s is set without SVDK_MODEL_REVISION: its main branch is used, which can "
                "change; set SVDK_MODEL_REVISION to a commit id",
                repo,
            )
        options = {
            "revision": revision,
            "cache_dir": os.environ.get("HF_HUB_CACHE") or None,
            "endpoint": os.environ.get("HF_ENDPOINT") or None,
            "token": None,
            "cache_fallback": False,
        }
        steps = (("the Hub", True, "the local Hugging Face cache"), ("the local Hugging Face cache", False, local_name))
        for where, online, then in steps:
            try:
                return _pull(RankPredictor, repo, online=online, **options)
            except ModelError as exc:
                log.warning("rank predictor from %s not used: %s; trying %s", where, exc, then)
    return RankPredictor.load(local)


# ----------------------------------------------------------------------------
# policies


def _ssim_target(target, name: str) -> float:
    metric, value = target
    if metric != "ssim":
        raise OptionError(
            f"the {name} policy predicts ranks for SSIM targets; got {metric}:{value:g}. "
            "Use --quality ssim:T, or the default 'quality' policy for PSNR"
        )
    return float(value)


def _predicted(session, value: float):
    predictor = default_predictor()
    t0 = time.perf_counter()
    targets, logk = predictor.curve(session.pixels.color)
    seconds = time.perf_counter() - t0
    return predictor, targets, logk, seconds


@policies.register("cnn-only")
def cnn_only(session, target) -> policies.RankChoice:
    value = _ssim_target(target, "cnn-only")
    _, targets, logk, seconds = _predicted(session, value)
    k = _rank_at(targets, logk, value, session.planes[0].max_rank)
    ranks = session.family(k) if session.mode != "rgb" else (k, k, k)
    return policies.RankChoice(
        ranks,
        f"ranks predicted by the CNN for ssim >= {value:g} ({seconds * 1e3:.1f} ms), not checked: "
        f"{policies._fmt(session, ranks)}",
    )


def _correct(session, i: int, value: float, k0: int, targets, logk) -> tuple[int, float, str]:
    """Check ``k0`` on plane ``i``; at most two more evaluations, then the exact search."""
    plane = session.planes[i]
    top = plane.max_rank
    base = policies.plane_score(session, i, "ssim")
    seen: dict[int, float] = {}

    def score(k: int) -> float:
        if k not in seen:  # factors depend on k alone, so a score never changes
            seen[k] = base(k)
        return seen[k]

    def guess(t: float) -> int:
        return _rank_at(targets, logk, t, top)

    k = min(max(k0, 1), top)
    s = score(k)
    if s >= value:
        # Met: spend up to two evaluations looking for a smaller rank that
        # still meets it. ``fail`` is the largest rank measured to miss.
        best, fail = k, 0
        for _ in range(2):
            if best - fail <= 1:
                break
            if fail == 0:
                # the true curve sits (score - target) above the predicted one
                cand = guess(value - (seen[best] - value))
            else:
                cand = (fail + best) // 2
            cand = min(best - 1, max(fail + 1, cand))
            if score(cand) >= value:
                best = cand
            else:
                fail = cand
        how = "predicted rank met the target" + ("; lowered" if best < k else "")
        return best, seen[best], how
    lo = k
    for attempt in range(2):
        # the measured shortfall, plus a margin that grows on the second try
        shortfall = value - seen.get(lo, s)
        cand = max(lo + 1, guess(value + shortfall * (1 + attempt) + 0.002 * (1 + attempt)))
        cand = min(cand, top)
        if score(cand) >= value:
            return cand, seen[cand], f"predicted rank missed; corrected upward ({attempt + 1})"
        lo = cand
        if cand == top:
            break
    k, v = policies.search_rank(score, value, top, start=min(top, lo))
    return k, v, "predicted rank missed twice; exact search"


@policies.register("cnn")
def cnn(session, target) -> policies.RankChoice:
    value = _ssim_target(target, "cnn")
    _, targets, logk, seconds = _predicted(session, value)
    found = {}
    paths = []
    for i in policies.searched_planes(session):
        k0 = _rank_at(targets, logk, value, session.planes[i].max_rank)
        try:
            k, v, how = _correct(session, i, value, k0, targets, logk)
        except OptionError as exc:
            raise OptionError(f"ssim >= {value:g} on plane {session.plane_names[i]}: {exc}") from None
        found[i] = (k, v)
        paths.append(f"{session.plane_names[i]}: predicted {k0}, {how}")
    if session.mode == "rgb":
        ranks = tuple(found[i][0] for i in range(3))
    else:
        ranks = session.family(found[0][0])
    got = ", ".join(f"{session.plane_names[i]} {v:.4f}" for i, (_, v) in found.items())
    return policies.RankChoice(
        ranks,
        f"CNN-predicted ranks checked for ssim >= {value:g} ({got}; {'; '.join(paths)}): "
        f"{policies._fmt(session, ranks)}; {session.evaluations} evaluations, "
        f"prediction {seconds * 1e3:.1f} ms",
    )
