"""A model's files: their names, the JSON configuration and its checks, checksums."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .._errors import SvdkError
from ._features import FEATURE_NAMES, INPUT_SHAPE, PatchLayout

__all__ = [
    "ModelError",
    "MODEL_FORMAT",
    "MODEL_VERSION",
    "DEFAULT_MODEL",
    "MODEL_FILE",
    "CONFIG_FILE",
    "LITE_FILE",
    "config_path",
    "sha256_file",
    "check_config",
    "image_shape",
    "patch_layout",
    "describe_error",
]

#: The ``format`` field of a model's JSON configuration.
MODEL_FORMAT = "svdk-rank-predictor"
#: The configuration version this code writes: 2, a patch model (its ``patches`` field records the
#: :class:`PatchLayout` it was trained on). It also reads version 1, a whole-image model (the 256x256
#: luma averaged over 4x4 blocks to one 64x64 input), the kind svdk shipped before.
MODEL_VERSION = 2
READ_VERSIONS = (1, 2)
#: The shipped model (with ``patch.json`` and ``patch.tflite`` beside it).
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "patch.keras"
#: A model's files in a folder or a Hub repo (``training.train`` writes them, ``hub.publish`` uploads them).
MODEL_FILE = "model.keras"
CONFIG_FILE = "model.json"
#: The same network for LiteRT (optional: prediction without TensorFlow).
LITE_FILE = "model.tflite"


class ModelError(SvdkError):
    """A rank-predictor model that cannot be used (missing, corrupt, wrong version or shape)."""


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


def check_config(config, cfg_path: Path) -> None:
    """Raise :class:`ModelError` naming ``cfg_path`` unless ``config`` is a configuration this svdk reads."""
    if not isinstance(config, dict) or config.get("format") != MODEL_FORMAT:
        got = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise ModelError(f"{cfg_path}: expected format {MODEL_FORMAT!r}; got {got!r}")
    version = config.get("version")
    if version not in READ_VERSIONS:
        raise ModelError(
            f"{cfg_path}: model configuration version {version!r}; this svdk reads versions "
            f"{' and '.join(map(str, READ_VERSIONS))}: retrain the model or upgrade svdk"
        )
    if version == 1 and "patches" in config:
        raise ModelError(
            f"{cfg_path}: a version 1 configuration (a whole-image model) with a patch layout; a patch "
            "model's configuration is version 2"
        )
    layout = patch_layout(config, cfg_path)
    shape = tuple(config.get("input_shape") or ())
    expected = image_shape(config)
    if shape != expected:
        what = (
            f"its patch layout ({layout.count} patches of {layout.size}x{layout.size})" if layout
            else "a whole-image model (version 1)"
        )
        raise ModelError(f"{cfg_path}: input shape {list(shape)}; expected {list(expected)} for {what}")
    check_targets(config, cfg_path)
    features = config.get("features") or []
    if features and list(features) != list(FEATURE_NAMES):
        raise ModelError(
            f"{cfg_path}: the model was trained on the features {features}; this svdk computes "
            f"{list(FEATURE_NAMES)}: retrain the model or use the svdk it was made with"
        )


def patch_layout(config: dict, cfg_path: Path | None = None) -> PatchLayout | None:
    """The :class:`PatchLayout` a version 2 configuration records; None for a whole-image model."""
    if config.get("version") == 1:
        return None
    try:
        return PatchLayout.from_json(config.get("patches"))
    except (TypeError, ValueError) as exc:
        raise ModelError(
            f"{cfg_path or 'the model configuration'}: its patch layout cannot be used ({exc}); this svdk "
            f"reads grids of {'/'.join(PatchLayout.SAMPLINGS)} sampling of 64x64 patches at resolution "
            f"{' or '.join(PatchLayout.RESOLUTIONS)}: retrain the model or use the svdk it was made with"
        ) from None


def image_shape(config: dict) -> tuple[int, ...]:
    """The shape of one image's network input: ``(64, 64, 1)``, or ``(count, 64, 64, 1)`` for a patch model."""
    layout = patch_layout(config)
    return layout.input_shape if layout else INPUT_SHAPE


def describe_error(exc: BaseException) -> str:
    """An exception as ``Type: message`` on one line (at most 200 characters of message), for error messages."""
    msg = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {msg[:200]}" if msg else type(exc).__name__


def check_targets(config: dict, cfg_path) -> list:
    """The model's SSIM targets, or :class:`ModelError` unless they are an increasing list in (0, 1]."""
    targets = config.get("targets")
    if (
        not isinstance(targets, list)
        or len(targets) < 2
        or not all(isinstance(t, (int, float)) and 0 < t <= 1 for t in targets)
        or sorted(targets) != targets
    ):
        raise ModelError(f"{cfg_path}: 'targets' must be an increasing list of SSIM values; got {targets!r}")
    return targets
