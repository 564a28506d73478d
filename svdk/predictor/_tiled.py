"""The tiled layout's predictor: the luma component count for a target SSIM.

In the tiled layout a plane's quality is a function of one integer, ``n``:
the count of tile components kept (every tile keeps its components whose
singular value reaches the ``n``-th largest of the plane). The ``cnn``
policies predict ``n`` for an SSIM target with a second, small model, apart
from the global layout's network, and check it as they check a rank.

What the model reads: :mod:`svdk.predictor._tiled_features` (features of the tile
spectrum the encoder has computed, a few milliseconds).

The model outputs ``log(n / tiles)``, components *per tile*, at each target
of its grid: a per-tile quantity does not move when the same content is
cropped to another size (``log n`` does, by the log of the size ratio),
which is why a model trained on BSDS500's 481x321 photos applies to Kodak's
768x512. A target between grid points is interpolated in ``log n``.

Model files
-----------
``model.keras`` + ``model.json`` + ``model.tflite`` in ``svdk/models/tiled``
(a folder of their own: ``svdk/models`` holds the global model alone, as
:meth:`RankPredictor.from_pretrained` expects), as ``python -m
training.tiled --ship`` writes them (``SVDK_TILED_MODEL`` names
another ``.keras`` file). The JSON configuration (format
``svdk-tiled-predictor``, version 1) names the features in input order, their
standardization, the target grid, the tile size and colour mode the labels
were made for, and the sha256 of the LiteRT file. The network runs with
LiteRT when ``ai-edge-litert`` is installed (``pip install 'svdk[model]'``),
else with Keras; ``SVDK_PREDICTOR_RUNTIME`` chooses as for the global model.
It is loaded on first use, once per process (:func:`default_tiled_predictor`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from pathlib import Path

import numpy as np

from ._files import ModelError, check_targets, config_path, describe_error, sha256_file
from ._litert import TOLERANCE, available as litert_available, convert, lite_path
from ._tiled_features import TILED_FEATURES, tiled_features

__all__ = [
    "TILED_FEATURES",
    "TILED_FORMAT",
    "TILED_MODEL",
    "TiledPredictor",
    "tiled_features",
    "default_tiled_predictor",
    "export_tiled_litert",
]

#: The ``format`` field of a tiled predictor's configuration, and the version read.
TILED_FORMAT = "svdk-tiled-predictor"
TILED_VERSION = 1
#: The shipped model (``model.json`` and ``model.tflite`` beside it, in a folder of its own).
TILED_MODEL = Path(__file__).resolve().parent.parent / "models" / "tiled" / "model.keras"

# ----------------------------------------------------------------------------
# the model


def _check_config(config, cfg_path: Path) -> None:
    if not isinstance(config, dict) or config.get("format") != TILED_FORMAT:
        got = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise ModelError(f"{cfg_path}: expected format {TILED_FORMAT!r}; got {got!r}")
    if config.get("version") != TILED_VERSION:
        raise ModelError(
            f"{cfg_path}: tiled predictor configuration version {config.get('version')!r}; this svdk reads "
            f"version {TILED_VERSION}: retrain it with 'python -m training.tiled' or upgrade svdk"
        )
    if list(config.get("features") or []) != list(TILED_FEATURES):
        raise ModelError(
            f"{cfg_path}: the model was trained on the features {config.get('features')}; this svdk computes "
            f"{list(TILED_FEATURES)}: retrain it with 'python -m training.tiled'"
        )
    check_targets(config, cfg_path)
    n = len(TILED_FEATURES)
    for key in ("feature_mean", "feature_std"):
        if len(config.get(key) or []) != n:
            raise ModelError(f"{cfg_path}: '{key}' must hold {n} numbers, one per feature")


class _LiteFunction:
    """A LiteRT file with one input ``(1, F)`` and one output ``(1, targets)``; calls take a lock."""

    def __init__(self, path: Path, config: dict):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ModelError(
                "running the tiled predictor with LiteRT needs ai-edge-litert; install it with "
                "pip install 'svdk[model]'"
            ) from None
        data = path.read_bytes()
        expected = config.get("litert_sha256")
        got = hashlib.sha256(data).hexdigest()
        if expected is not None and got != expected:
            raise ModelError(
                f"{path}: sha256 {got} does not match the litert_sha256 recorded in its configuration "
                f"({expected}); export it again with 'python -m training.export MODEL'"
            )
        self._data = data  # the interpreter reads from this buffer: it must outlive it
        try:
            self._interpreter = Interpreter(model_content=data, num_threads=1)
            self._interpreter.allocate_tensors()
        except Exception as exc:  # ValueError, RuntimeError for bad files
            raise ModelError(f"{path}: not a loadable LiteRT model ({describe_error(exc)})") from None
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        want_in, want_out = (len(TILED_FEATURES),), (len(config["targets"]),)
        if len(inputs) != 1 or tuple(inputs[0]["shape"][1:]) != want_in:
            raise ModelError(f"{path}: the model's inputs are {[list(d['shape'][1:]) for d in inputs]}; expected [{want_in[0]}]")
        if len(outputs) != 1 or tuple(outputs[0]["shape"][1:]) != want_out:
            raise ModelError(f"{path}: the model's outputs are {[list(d['shape'][1:]) for d in outputs]}; "
                             f"expected one per target ({want_out[0]})")
        self._in, self._out = inputs[0]["index"], outputs[0]["index"]
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            self._interpreter.set_tensor(self._in, np.ascontiguousarray(x, dtype=np.float32))
            self._interpreter.invoke()
            return self._interpreter.get_tensor(self._out).copy()


def _keras_function(path: Path, config: dict):
    from ._model import _import_keras

    keras = _import_keras()
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a bad file
        raise ModelError(f"{path}: not a loadable Keras 3 model file ({describe_error(exc)})") from None
    if tuple(model.inputs[0].shape[1:]) != (len(TILED_FEATURES),) or len(model.inputs) != 1:
        raise ModelError(f"{path}: the model does not take the {len(TILED_FEATURES)} features its configuration lists")
    if tuple(model.outputs[0].shape[1:]) != (len(config["targets"]),):
        raise ModelError(f"{path}: the model's output is not one value per target ({len(config['targets'])})")
    fn = lambda x: np.asarray(model(x, training=False))  # noqa: E731 (one dense pass: eager is fast enough)
    fn.model = model
    return fn


class TiledPredictor:
    """A loaded tiled-layout predictor: component counts for SSIM targets.

    :meth:`load` reads a ``.keras`` file with its ``.json`` configuration
    (default: the shipped :data:`TILED_MODEL`); :meth:`curve` gives ``log n``
    at every target of its grid for a :class:`svdk.Encoder` in the tiled
    layout, :meth:`predict` the count for one target.
    """

    def __init__(self, function, config: dict, path: Path, runtime: str):
        self._fn = function
        self.config = config
        self.path = path
        self.runtime = runtime
        self.targets = np.asarray(config["targets"], dtype=np.float64)
        self._mean = np.asarray(config["feature_mean"], dtype=np.float32)
        self._std = np.asarray(config["feature_std"], dtype=np.float32)
        #: added to the predicted ``log n`` for the first check (a quantile of the validation errors, from training)
        self.check_margin = float(config.get("check_margin", 0.0))
        self.sha256 = sha256_file(path)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, *, runtime: str | None = None) -> "TiledPredictor":
        """Load a tiled predictor (default: the shipped one); :class:`ModelError` names what is wrong.

        ``runtime``: ``"litert"``, ``"keras"`` or ``"auto"`` (the default,
        or ``SVDK_PREDICTOR_RUNTIME``): LiteRT when the ``.tflite`` file, its
        recorded sha256 and ``ai-edge-litert`` are there, else Keras.
        """
        from ._model import RUNTIMES

        path = Path(path) if path is not None else TILED_MODEL
        if path.suffix != ".keras":
            raise ModelError(f"{path}: expected a Keras 3 model file ending in .keras")
        if not path.is_file():
            raise ModelError(
                f"{path}: no such tiled predictor; "
                + ("svdk ships it in svdk/models: reinstall svdk" if path == TILED_MODEL
                   else "train one from a clone of svdk's repository with 'python -m training.tiled'")
            )
        cfg_path = config_path(path)
        try:
            config = json.loads(cfg_path.read_text())
        except FileNotFoundError:
            raise ModelError(f"{cfg_path}: missing; a tiled predictor needs this JSON configuration") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{cfg_path}: not a readable JSON configuration ({exc})") from None
        _check_config(config, cfg_path)
        asked = runtime or os.environ.get("SVDK_PREDICTOR_RUNTIME") or "auto"
        if asked not in RUNTIMES:
            raise ModelError(f"the predictor's runtime must be one of {', '.join(RUNTIMES)}; got {asked!r}")
        lite = lite_path(path)
        use_lite = asked == "litert" or (
            asked == "auto" and lite.is_file() and config.get("litert_sha256") and litert_available()
        )
        if use_lite:
            if not lite.is_file() or not config.get("litert_sha256"):
                raise ModelError(f"{lite}: missing or not recorded in {cfg_path.name}; export it with "
                                 "'python -m training.export MODEL', or use the Keras runtime")
            return cls(_LiteFunction(lite, config), config, path, "litert")
        return cls(_keras_function(path, config), config, path, "keras")

    def describe(self) -> str:
        """The model in one line (for ``Encoded.model``, logs and the app)."""
        shipped = self.path.resolve() == TILED_MODEL.resolve()
        where = "shipped with svdk, tiled/" if shipped else f"from {self.path.parent}, "
        run = (f"run with LiteRT, {lite_path(self.path).name} sha256 {self.config['litert_sha256'][:12]}"
               if self.runtime == "litert" else "run with Keras")
        return f"tiled-layout predictor {where}{self.path.name} (weights sha256 {self.sha256[:12]}; {run})"

    def log_per_tile(self, features: np.ndarray) -> np.ndarray:
        """The network's output for one feature vector: ``log(n / tiles)`` at each grid target."""
        x = ((np.asarray(features, np.float32) - self._mean) / self._std)[None].astype(np.float32)
        return np.asarray(self._fn(x), dtype=np.float64)[0]

    def curve(self, encoder) -> tuple[np.ndarray, np.ndarray]:
        """``(targets, log n)``: the predicted count of luma components at each grid target."""
        tile = int(self.config.get("tile", 8))
        if encoder.tile != tile:
            from .._errors import OptionError

            raise OptionError(
                f"the tiled predictor was trained for {tile}x{tile} tiles; this encoder uses "
                f"{encoder.tile}x{encoder.tile}: use tile_size={tile} (--tile-size {tile}) or the quality policy"
            )
        features, ntiles = tiled_features(encoder)
        out = self.log_per_tile(features) + math.log(ntiles)
        top = math.log(encoder.planes[0].max_rank)
        return self.targets, np.clip(np.maximum.accumulate(out), 0.0, top)

    def predict(self, image, target: float, *, tile_size: int | None = None) -> int:
        """The predicted luma component count of ``image`` (tiled layout, ycbcr) for SSIM ``target``."""
        import svdk

        from ._model import rank_at

        encoder = image if isinstance(image, svdk.Encoder) else svdk.Encoder(image, tiled=True, tile_size=tile_size)
        targets, logn = self.curve(encoder)
        return rank_at(targets, logn, float(target), encoder.planes[0].max_rank)

    def warm_up(self) -> None:
        """One prediction on a small grey image, so the first real one pays no set-up cost."""
        self._fn(np.zeros((1, len(TILED_FEATURES)), np.float32))


_LOCK = threading.Lock()
_DEFAULT: TiledPredictor | None = None
_FAILED: ModelError | None = None


def default_tiled_predictor() -> TiledPredictor:
    """The tiled predictor the ``cnn`` policies use: ``SVDK_TILED_MODEL`` or the shipped one, loaded once.

    A failure is kept: later calls raise the same :class:`ModelError` at once.
    """
    global _DEFAULT, _FAILED
    with _LOCK:
        if _FAILED is not None:
            raise _FAILED
        if _DEFAULT is None:
            try:
                _DEFAULT = TiledPredictor.load(os.environ.get("SVDK_TILED_MODEL") or None)
            except ModelError as exc:
                _FAILED = exc
                raise
        return _DEFAULT


def export_tiled_litert(model_path: str | os.PathLike) -> Path:
    """Write ``NAME.tflite`` beside a tiled ``.keras`` model, checked against it; returns its path.

    Needs TensorFlow. Both are run on 256 random standardized feature vectors
    and must agree to 1e-4 in ``log n``; the file's sha256 goes into the JSON
    configuration (``litert_sha256``).
    """
    model_path = Path(model_path)
    keras_fn = TiledPredictor.load(model_path, runtime="keras")._fn
    data = convert(keras_fn.model)
    out = lite_path(model_path)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    cfg = config_path(model_path)
    config = json.loads(cfg.read_text())
    try:
        lite = _LiteFunction(tmp, {**config, "litert_sha256": None})
        x = np.random.default_rng(0).normal(size=(256, 1, len(TILED_FEATURES))).astype(np.float32)
        worst = max(float(np.max(np.abs(lite(v) - keras_fn(v)))) for v in x)
        if not worst <= TOLERANCE:  # NaN fails too
            raise ModelError(f"{model_path}: the LiteRT file differs from the Keras model by {worst:.2g} (> {TOLERANCE})")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    config["litert_sha256"] = hashlib.sha256(data).hexdigest()
    cfg.write_text(json.dumps(config, indent=2) + "\n")
    return out
