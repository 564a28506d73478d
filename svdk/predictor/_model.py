"""The rank predictor as a loaded model: :class:`RankPredictor`."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from .._image import ImageLike, load_image
from ._features import WORK_SIZE, hand_features, luma, model_input, patches, resize_work
from ._files import (
    DEFAULT_MODEL,
    MODEL_FILE,
    ModelError,
    check_config,
    config_path,
    describe_error,
    image_shape,
    patch_layout,
    sha256_file,
)
from ._litert import TOLERANCE, LiteModel, available as litert_available, convert, largest_difference, lite_path

RUNTIMES = ("auto", "litert", "keras")


def _runtime(path: Path, config: dict, runtime: str | None) -> str:
    """The runtime that will run the model at ``path``: ``"litert"`` or ``"keras"``."""
    asked = runtime or os.environ.get("SVDK_PREDICTOR_RUNTIME") or "auto"
    if asked not in RUNTIMES:
        raise ModelError(f"the rank predictor's runtime must be one of {', '.join(RUNTIMES)}; got {asked!r}")
    lite = lite_path(path)
    if asked == "litert":
        if not lite.is_file():
            raise ModelError(f"{lite}: missing; export it with 'python -m training.export {path}', or use the Keras runtime")
        if not config.get("litert_sha256"):
            raise ModelError(
                f"{config_path(path)} records no litert_sha256, so {lite.name} cannot be checked against this "
                f"model; export it again with 'python -m training.export {path}'"
            )
        return "litert"
    # only a LiteRT file the configuration vouches for: a stale one left beside a new model must not run
    if asked == "auto" and lite.is_file() and config.get("litert_sha256") and litert_available():
        return "litert"
    return "keras"

__all__ = ["RankPredictor", "RUNTIMES", "export_litert", "rank_at", "log_rank_at"]


def _import_keras():
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        import keras
    except ImportError:
        raise ModelError(
            "this rank predictor needs Keras and TensorFlow (pip install 'svdk[keras]'), or, when it has a "
            ".tflite file beside it, LiteRT (pip install 'svdk[model]')"
        ) from None
    return keras


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
        #: The :class:`~svdk.predictor.PatchLayout` the model reads, or None for a whole-image model.
        self.layout = patch_layout(config)
        self._fn = None

    # -- loading ---------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, *, runtime: str | None = None) -> "RankPredictor":
        """Load a model (default: the shipped :data:`DEFAULT_MODEL`).

        ``runtime`` runs the network with ``"litert"`` (the ``.tflite`` file
        beside the ``.keras`` one, through ``ai-edge-litert``: no TensorFlow
        to import) or ``"keras"`` (Keras and TensorFlow). The default,
        ``SVDK_PREDICTOR_RUNTIME`` or ``"auto"``, takes LiteRT when the file
        and the package are there, else Keras. Both give the same ranks
        (:func:`svdk.predictor.export_litert` checks ``log k`` to 1e-4).

        Raises :class:`ModelError`, naming the file, when the model or its
        JSON configuration is missing, unreadable, of another format version
        or made for another input shape, and when the runtime asked for is
        not installed. Keras loads with ``safe_mode=True``.
        """
        path = Path(path) if path is not None else DEFAULT_MODEL
        cfg_path = config_path(path)
        if path.suffix != ".keras":
            raise ModelError(f"{path}: expected a Keras 3 model file ending in .keras")
        if not path.is_file():
            raise ModelError(
                f"{path}: no such model file; expected a .keras file with its configuration {cfg_path.name} "
                "beside it"
                + (
                    "; svdk ships its model in svdk/models: reinstall svdk ('pip install --force-reinstall svdk')"
                    if path == DEFAULT_MODEL
                    else " (train one from a clone of svdk's repository with 'python -m training.train')"
                )
            )
        if not cfg_path.is_file():
            raise ModelError(f"{cfg_path}: missing; a rank-predictor model needs this JSON configuration")
        try:
            config = json.loads(cfg_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{cfg_path}: not a readable JSON configuration ({exc})") from None
        check_config(config, cfg_path)
        runtime = _runtime(path, config, runtime)
        if runtime == "litert":
            model = LiteModel(lite_path(path), config)
        else:
            keras = _import_keras()
            try:
                model = keras.saving.load_model(path, compile=False, safe_mode=True)
            except Exception as exc:  # Keras raises many types for a bad file
                raise ModelError(f"{path}: not a loadable Keras 3 model file ({describe_error(exc)})") from None
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
        A path that exists always wins over a Hub repo id; ``"shipped"``
        names the model shipped with svdk (as :meth:`shipped`), from any
        folder. Anything else is taken as a Hub repo id (``OWNER/NAME``):
        ``model.json``, ``model.keras`` and (when the repo has it) ``model.tflite`` at ``revision``
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
        if str(repo_id_or_local_dir) == "shipped":
            return cls.shipped()
        local = Path(repo_id_or_local_dir).expanduser()
        if local.is_dir():
            models = sorted(local.glob("*.keras"))
            only = models[0] if len(models) == 1 and not (local / MODEL_FILE).exists() else None
            return cls.load(only or local / MODEL_FILE)
        if local.suffix == ".keras" or local.exists():
            return cls.load(local)
        hint = (
            f"; there is no folder {str(repo_id_or_local_dir)!r} in {Path.cwd()} either "
            "(for the model shipped with svdk use RankPredictor.shipped() or from_pretrained('shipped'))"
        )
        from ._hub import pull

        path, source = pull(
            str(repo_id_or_local_dir),
            revision=revision,
            cache_dir=cache_dir,
            endpoint=endpoint,
            token=token,
            online=not local_files_only,
            cache_fallback=True,
            hint=hint,
        )
        predictor = cls.load(path)
        predictor.source = source
        return predictor

    @classmethod
    def shipped(cls) -> "RankPredictor":
        """The model shipped with svdk (:data:`DEFAULT_MODEL`), from any folder.

        Examples
        --------
        >>> from svdk.predictor import RankPredictor
        >>> RankPredictor.shipped().source["source"]        # doctest: +SKIP
        'shipped'
        """
        return cls.load(DEFAULT_MODEL)

    @property
    def runtime(self) -> str:
        """``"litert"`` or ``"keras"``: what runs the network."""
        return "litert" if isinstance(self.model, LiteModel) else "keras"

    def describe(self) -> str:
        """Where this model came from, in one line (for logs and the app)."""
        src = self.source
        sha = f"weights sha256 {src['sha256'][:12]}" if src.get("sha256") else "weights sha256 unknown"
        if self.runtime == "litert":
            sha += f"; run with LiteRT, {lite_path(self.path).name} sha256 {self.config['litert_sha256'][:12]}"
        else:
            sha += "; run with Keras"
        if src["source"] in ("hub", "cache"):
            where = "the Hugging Face Hub" if src["source"] == "hub" else "the local Hugging Face cache"
            return f"rank predictor {src['repo']} at {src['revision'] or 'an unknown revision'} from {where} ({sha})"
        if src["source"] == "shipped":
            return f"rank predictor shipped with svdk, {Path(src['path']).name} ({sha})"
        return f"rank predictor from {src['path']} ({sha})"

    @staticmethod
    def _check_model(model, config: dict, path: Path) -> None:
        inputs = model.inputs if isinstance(model.inputs, list) else [model.inputs]
        got, expected = tuple(inputs[0].shape[1:]), image_shape(config)
        if got != expected:
            layout = patch_layout(config)
            what = (
                f"{layout.count} patches of 64x64, as its configuration's patch layout says" if layout
                else "64x64 grayscale"
            )
            raise ModelError(
                f"{path}: the model takes inputs of shape {list(got)}; expected {list(expected)} ({what})"
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
        """The network as one compiled call for batch 1 (Keras: about 1 ms, against 10+ ms eagerly)."""
        if self._fn is None and self.runtime == "litert":
            self._fn = self.model
        if self._fn is None:
            import keras

            model = self.model
            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf

                specs = [tf.TensorSpec((1, *image_shape(self.config)), tf.float32)]
                if self.features:
                    specs.append(tf.TensorSpec((1, len(self.features)), tf.float32))

                @tf.function(input_signature=specs)
                def fn(*inputs):
                    return model(list(inputs), training=False)

                self._fn = fn
            else:
                self._fn = lambda *inputs: model(list(inputs), training=False)
        return self._fn

    def inputs(self, image: ImageLike) -> list[np.ndarray]:
        """The network's inputs for ``image`` (batch 1): its image input, and the features when the model takes them.

        A patch model reads the patches of its :attr:`layout` (of the
        256x256 version or of ``image`` itself); a whole-image model the
        256x256 version averaged to 64x64.
        """
        color = load_image(image).color
        if self.layout is not None and self.layout.resolution == "native" and not self.features:
            return [patches(color, self.layout)[None]]  # the 256x256 version is not needed
        work = resize_work(color)
        y = luma(work)
        x = patches(color, self.layout, work=work, y=y) if self.layout else model_input(work, y=y)
        inputs = [x[None]]
        if self.features:
            f = (hand_features(work, y=y) - self._feature_mean) / self._feature_std
            inputs.append(f[None].astype(np.float32))
        return inputs

    def run(self, inputs: list[np.ndarray]) -> np.ndarray:
        """The network's raw output for :meth:`inputs` (batch 1): ``log k`` at every grid target."""
        return np.asarray(self._forward()(*inputs), dtype=np.float64)

    def log_ranks(self, image: ImageLike) -> np.ndarray:
        """``log k`` at every grid target for the 256x256 version of ``image`` (before native scaling)."""
        out = self.run(self.inputs(image))[0]
        if self.config.get("output", "log_k") == "k":  # the seed network outputs ranks
            out = np.log(np.maximum(out, 1.0))
        return out

    def curve(self, image: ImageLike) -> tuple[np.ndarray, np.ndarray]:
        """``(targets, log k)`` of the predicted rank-quality curve at native resolution."""
        color = load_image(image).color
        h, w = color.shape[:2]
        logk = self.log_ranks(color)
        logk = logk + self.beta * math.log(math.sqrt(h * w) / WORK_SIZE)
        return self.targets, np.maximum.accumulate(logk)

    def warm_up(self) -> None:
        """Run the network once on a grey image, so that the first real prediction pays no set-up cost."""
        self.predict(np.full((64, 64, 3), 128, np.uint8), 0.9)

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
        return rank_at(targets, logk, float(target), min(color.shape[:2]))


def log_rank_at(targets: np.ndarray, logk: np.ndarray, t: float) -> float:
    """Piecewise-linear ``log k`` at ``t``, extended beyond the grid."""
    if t <= targets[0]:
        i = 0
    elif t >= targets[-1]:
        i = len(targets) - 2
    else:
        return float(np.interp(t, targets, logk))
    slope = (logk[i + 1] - logk[i]) / (targets[i + 1] - targets[i])
    return float(logk[i] + slope * (t - targets[i]))


def rank_at(targets, logk, t: float, max_rank: int) -> int:
    return int(min(max_rank, max(1, round(math.exp(log_rank_at(targets, logk, t))))))


def export_litert(model_path: str | os.PathLike) -> Path:
    """Write the LiteRT file (``.tflite``) of a ``.keras`` rank predictor beside it; returns its path.

    Needs TensorFlow. The file is checked against the Keras model on 64
    random inputs (``log k`` within 1e-4) before it is written, and its
    sha256 goes into the model's JSON configuration as ``litert_sha256``,
    which :meth:`RankPredictor.load` checks. Raises :class:`ModelError` when
    the conversion fails or the two disagree.
    """
    import hashlib

    model_path = Path(model_path)
    predictor = RankPredictor.load(model_path, runtime="keras")
    data = convert(predictor.model)
    out = lite_path(model_path)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    try:
        lite = LiteModel(tmp, {**predictor.config, "litert_sha256": None})
        worst = largest_difference(
            predictor._forward(), lite, len(predictor.features), shape=image_shape(predictor.config)
        )
        if worst > TOLERANCE:
            raise ModelError(f"{model_path}: the LiteRT file differs from the Keras model by {worst:.2g} (> {TOLERANCE})")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    cfg = config_path(model_path)
    config = json.loads(cfg.read_text())
    config["litert_sha256"] = hashlib.sha256(data).hexdigest()
    cfg.write_text(json.dumps(config, indent=2) + "\n")
    return out
