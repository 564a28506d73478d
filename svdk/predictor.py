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
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from . import policies
from ._codec import rgb_to_ycbcr
from ._errors import OptionError, SvdkError
from ._image import ImageLike, load_image

__all__ = [
    "RankPredictor",
    "ModelError",
    "DEFAULT_MODEL",
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

#: Hand-crafted features (scikit-image) of the optional model variant.
FEATURE_NAMES = (
    "mean",
    "std",
    "edge_density",
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
    return rgb_to_ycbcr(color)[..., 0]


def model_input(color256: np.ndarray) -> np.ndarray:
    """The network's input ``(64, 64, 1)`` in [0, 1]: luma averaged over 4x4 blocks."""
    y = luma(color256)
    f = WORK_SIZE // INPUT_SHAPE[0]
    small = y.reshape(INPUT_SHAPE[0], f, INPUT_SHAPE[1], f).mean(axis=(1, 3)) / 255.0
    return np.clip(small, 0.0, 1.0).astype(np.float32)[..., None]


def hand_features(color256: np.ndarray) -> np.ndarray:
    """:data:`FEATURE_NAMES` of the 256x256 luma, from scikit-image (float32)."""
    from skimage.feature import canny, graycomatrix, graycoprops
    from skimage.filters import sobel
    from skimage.measure import shannon_entropy

    y = luma(color256)
    y8 = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    yf = y / 255.0
    edges = canny(yf, sigma=1.0)
    glcm = graycomatrix(y8 // 4, distances=[1], angles=[0, np.pi / 2], levels=64, symmetric=True, normed=True)
    grad = sobel(yf)
    return np.array(
        [
            yf.mean(),
            yf.std(),
            edges.mean(),
            shannon_entropy(y8),
            graycoprops(glcm, "contrast").mean(),
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


class RankPredictor:
    """A loaded rank-predictor model and its configuration.

    Use :meth:`load`; then :meth:`predict` gives the luma rank for an image
    and a target SSIM.
    """

    def __init__(self, model, config: dict, path: Path):
        self.model = model
        self.config = config
        self.path = path
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
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelError(
                f"{path}: not a loadable Keras 3 model file ({type(exc).__name__}: {msg[:200]})"
            ) from None
        cls._check_model(model, config, path)
        return cls(model, config, path)

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
        inputs = [model_input(color256)[None]]
        if self.features:
            f = (hand_features(color256) - self._feature_mean) / self._feature_std
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


_LOCK = threading.Lock()
_DEFAULT: RankPredictor | None = None


def default_predictor() -> RankPredictor:
    """The shipped model, loaded once (or the file named by ``SVDK_RANK_MODEL``)."""
    global _DEFAULT
    with _LOCK:
        if _DEFAULT is None:
            _DEFAULT = RankPredictor.load(os.environ.get("SVDK_RANK_MODEL") or None)
        return _DEFAULT


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
