"""The rank predictor without TensorFlow: the same network as a LiteRT (``.tflite``) file.

Importing TensorFlow and Keras takes 7-10 s on a small machine, longer than
the exact rank search the prediction saves. A model trained with Keras is
therefore also written as a ``.tflite`` file beside its ``.keras`` file
(:func:`svdk.predictor.export_litert`, called by ``python -m
training.train``; ``python -m training.export`` converts an existing run),
and :class:`LiteModel` runs it with LiteRT's interpreter
(``ai-edge-litert``, imported in about 10 ms). The export checks that both
give the same ``log k`` to 1e-4 on random inputs before it writes anything,
and records the file's sha256 in the model's configuration
(``litert_sha256``), which loading checks.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from pathlib import Path

import numpy as np

from ._features import INPUT_SHAPE
from ._files import ModelError, describe_error, image_shape

__all__ = ["LiteModel", "available", "convert", "largest_difference", "lite_path", "TOLERANCE"]

#: Largest difference in ``log k`` allowed between the Keras model and its LiteRT file.
TOLERANCE = 1e-4


def lite_path(model_path: str | Path) -> Path:
    """The ``.tflite`` file that goes with a ``.keras`` file."""
    return Path(model_path).with_suffix(".tflite")


def available() -> bool:
    """Whether LiteRT's interpreter (``ai-edge-litert``) is installed."""
    return importlib.util.find_spec("ai_edge_litert") is not None


class LiteModel:
    """A ``.tflite`` rank predictor, called like the Keras model: ``model(image, features) -> (1, targets)``.

    The interpreter is not safe to share between threads, so calls take a
    lock (a call takes well under a millisecond of the lock's time).
    """

    def __init__(self, path: Path, config: dict):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ModelError(
                "running the rank predictor with LiteRT needs ai-edge-litert; install it with "
                "pip install 'svdk[model]'"
            ) from None
        data = path.read_bytes()
        expected = config.get("litert_sha256")
        if expected is not None and hashlib.sha256(data).hexdigest() != expected:
            raise ModelError(
                f"{path}: sha256 {hashlib.sha256(data).hexdigest()} does not match the litert_sha256 recorded "
                f"in its configuration ({expected}); the file is corrupt or belongs to another model: "
                "export it again with 'python -m training.export'"
            )
        self._data = data  # the interpreter reads the model from this buffer: it must outlive it
        try:
            self._interpreter = Interpreter(model_content=data, num_threads=1)
            self._interpreter.allocate_tensors()
        except Exception as exc:  # the interpreter raises ValueError and RuntimeError for bad files
            raise ModelError(f"{path}: not a loadable LiteRT model ({describe_error(exc)})") from None
        self._lock = threading.Lock()
        inputs = self._interpreter.get_input_details()
        n_features = len(config.get("features") or ())
        self.image_shape = image_shape(config)
        images = [d for d in inputs if tuple(d["shape"][1:]) == self.image_shape]
        others = [d for d in inputs if d not in images]
        if len(images) != 1:
            shapes = [list(d["shape"][1:]) for d in inputs]
            raise ModelError(
                f"{path}: the model takes inputs of shapes {shapes}; its configuration expects one of "
                f"{list(self.image_shape)}: the file does not match the configuration's input layout"
            )
        if len(others) != (1 if n_features else 0) or (n_features and tuple(others[0]["shape"][1:]) != (n_features,)):
            raise ModelError(f"{path}: the model's inputs do not match the {n_features} features its configuration lists")
        (out,) = self._interpreter.get_output_details()
        if tuple(out["shape"][1:]) != (len(config["targets"]),):
            raise ModelError(
                f"{path}: the model has outputs of shape {list(out['shape'][1:])}; expected one per target "
                f"({len(config['targets'])})"
            )
        self._image, self._features = images[0]["index"], (others[0]["index"] if others else None)
        self._output = out["index"]

    def __call__(self, image: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
        with self._lock:
            self._interpreter.set_tensor(self._image, np.ascontiguousarray(image, dtype=np.float32))
            if self._features is not None:
                self._interpreter.set_tensor(self._features, np.ascontiguousarray(features, dtype=np.float32))
            self._interpreter.invoke()
            return self._interpreter.get_tensor(self._output).copy()


def convert(model) -> bytes:
    """The LiteRT file of a Keras rank predictor (needs TensorFlow).

    TensorFlow's converter reads the Keras model itself: converting a traced
    function of it instead gives a file whose variables are never set (its
    outputs are NaN), which :func:`largest_difference` would catch.
    """
    import contextlib
    import io

    import tensorflow as tf

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the converter prints the SavedModel it goes through
            return tf.lite.TFLiteConverter.from_keras_model(model).convert()
    except Exception as exc:  # the converter raises many types
        raise ModelError(f"converting the model to LiteRT failed ({describe_error(exc)})") from None


def largest_difference(keras_call, lite: LiteModel, n_features: int, *, n: int = 64, seed: int = 0,
                       shape: tuple[int, ...] = INPUT_SHAPE) -> float:
    """The largest difference of the two models' outputs on ``n`` random inputs of one image's ``shape``."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        inputs = [rng.random((1, *shape), dtype=np.float32)]
        if n_features:
            inputs.append(rng.normal(size=(1, n_features)).astype(np.float32))
        want = np.asarray(keras_call(*inputs), dtype=np.float64)
        diff = float(np.max(np.abs(lite(*inputs) - want)))
        if not np.isfinite(diff):  # NaN compares false: it must not pass as 0
            return float("inf")
        worst = max(worst, diff)
    return worst
