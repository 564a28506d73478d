"""Keras 3 models of the rank predictor.

``seed``
    The network exactly as the original design gives it: 64x64x1 input,
    Conv2D+ReLU with 32, 64 and 128 filters (3x3, 'same'), one 2x2
    max-pooling, Flatten, Dense 128 and 64 (ReLU), Dropout 0.3, L2 0.001 on
    every kernel, a sigmoid output scaled to [10, 256], MSE loss, Adam. The
    one change: the output layer has one unit per target of the grid (5
    instead of 1), so that one network answers for every target, like the
    others. About 17 M parameters, almost all in the first Dense layer.
``compact``
    Four 3x3 convolutions (16, 32, 64, 64 filters) with 2x2 max-pooling
    between them, global average pooling, Dense 64, Dropout 0.2, L2 1e-4,
    and a monotone head: ``log k`` at the first target plus non-negative
    (softplus) increments for each next target, summed by a fixed
    triangular matrix, so the predicted rank never falls as the target
    rises. About 60 k parameters (a file of about 0.3 MB). Trained with the
    L1 loss on ``log k`` (the median rank, which minimises the error in k).
    With ``features=True`` a second input of standardized hand-crafted
    features (:data:`svdk.predictor.FEATURE_NAMES`) joins the dense head.
``patch``
    The patch network: ``count`` 64x64 luma patches of the image
    (:class:`svdk.predictor.PatchLayout`) go through one shared trunk
    (``TimeDistributed``), the per-patch vectors are pooled across patches
    (``mean``, ``max``, both concatenated, or ``attention``: a softmax over
    patches of a learned score), and the monotone head of ``compact`` (with
    Dense 64 and Dropout 0.2 before it, and the features joining there)
    gives ``log k`` at every target. Trunks:

    ``small``
        four 3x3 convolutions with stride 2 (16, 32, 64, 64 filters: 64 ->
        4 pixels), ReLU, global average and max pooling; about 3 M
        multiply-adds per patch.
    ``seed``
        the seed network's body on each patch: convolutions 32/64/128
        ('same'), one 2x2 max-pooling, Flatten, Dense 128 and 64, Dropout
        0.3, L2 0.001: about 17 M parameters and 380 M multiply-adds per
        patch.

Only standard Keras layers are used, so the files load with
``safe_mode=True`` and no custom objects.
"""

from __future__ import annotations

import numpy as np

__all__ = ["build", "OUTPUT_KIND", "TRUNKS", "POOLS"]

#: What each architecture outputs: ``log_k`` or ``k``.
OUTPUT_KIND = {"compact": "log_k", "seed": "k", "patch": "log_k"}
#: The patch network's trunks and poolings.
TRUNKS = ("small", "seed")
POOLS = ("mean", "max", "meanmax", "attention")


def _trunk(keras, name: str):
    from keras import layers, regularizers

    if name == "seed":
        l2 = regularizers.L2(0.001)
        body = [layers.Conv2D(f, 3, padding="same", activation="relu", kernel_regularizer=l2) for f in (32, 64, 128)]
        body += [
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(128, activation="relu", kernel_regularizer=l2),
            layers.Dense(64, activation="relu", kernel_regularizer=l2),
            layers.Dropout(0.3),
        ]
        return keras.Sequential([keras.Input((64, 64, 1)), *body], name="trunk_seed")
    if name != "small":
        raise ValueError(f"unknown trunk {name!r}; choose one of {', '.join(TRUNKS)}")
    l2 = regularizers.L2(1e-4)
    inp = keras.Input((64, 64, 1))
    x = inp
    for filters in (16, 32, 64, 64):
        x = layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu", kernel_regularizer=l2)(x)
    x = layers.Concatenate()([layers.GlobalAveragePooling2D()(x), layers.GlobalMaxPooling2D()(x)])
    return keras.Model(inp, x, name="trunk_small")


def _pool(layers, x, how: str):
    """Per-patch vectors ``(batch, patches, d)`` pooled across patches."""
    if how == "mean":
        return layers.GlobalAveragePooling1D()(x)
    if how == "max":
        return layers.GlobalMaxPooling1D()(x)
    if how == "meanmax":
        return layers.Concatenate()([layers.GlobalAveragePooling1D()(x), layers.GlobalMaxPooling1D()(x)])
    if how == "attention":
        weights = layers.Softmax(axis=1)(layers.Dense(1, name="patch_score")(x))
        return layers.Flatten()(layers.Dot(axes=1)([weights, x]))
    raise ValueError(f"unknown pooling {how!r}; choose one of {', '.join(POOLS)}")


def _monotone_head(keras, layers, x, n_targets: int, init_logk):
    """``log k`` at the first target plus non-negative increments, summed: never falls as the target rises."""
    init = np.zeros(n_targets) if init_logk is None else np.asarray(init_logk, dtype=np.float64)
    base = layers.Dense(1, name="base", bias_initializer=keras.initializers.Constant(float(init[0])))(x)
    # softplus^-1 of the mean step between targets, so training starts near the means
    steps = np.maximum(np.diff(init), 1e-3) if init_logk is not None else np.full(n_targets - 1, 0.3)
    inc = layers.Dense(
        n_targets - 1,
        activation="softplus",
        name="increments",
        bias_initializer=keras.initializers.Constant(np.log(np.expm1(steps))),
    )(x)
    z = layers.Concatenate()([base, inc])
    cumsum = layers.Dense(n_targets, use_bias=False, trainable=False, name="cumsum")
    out = cumsum(z)
    cumsum.set_weights([np.triu(np.ones((n_targets, n_targets), dtype=np.float32))])
    return out


def build(arch: str, n_targets: int, *, n_features: int = 0, init_logk: np.ndarray | None = None,
          learning_rate: float = 1e-3, layout=None, trunk: str = "small", pool: str = "meanmax"):
    """A compiled model; ``init_logk`` (mean log k per target) starts the monotone head there.

    ``layout`` (a :class:`svdk.predictor.PatchLayout`), ``trunk`` and
    ``pool`` are for ``arch="patch"``.
    """
    import keras
    from keras import layers, regularizers

    if arch == "patch":
        from svdk.predictor import PatchLayout

        layout = layout or PatchLayout()
        image = keras.Input(layout.input_shape, name="patches")
        inputs = [image]
        x = layers.TimeDistributed(_trunk(keras, trunk), name="per_patch")(image)
        x = _pool(layers, x, pool)
        l2 = regularizers.L2(1e-4)
        if n_features:
            feats = keras.Input((n_features,), name="features")
            inputs.append(feats)
            x = layers.Concatenate()([x, layers.Dense(16, activation="relu", kernel_regularizer=l2)(feats)])
        x = layers.Dense(64, activation="relu", kernel_regularizer=l2)(x)
        x = layers.Dropout(0.2)(x)
        model = keras.Model(inputs, _monotone_head(keras, layers, x, n_targets, init_logk), name=f"patch_{trunk}")
        model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mae")
        return model

    image = keras.Input((64, 64, 1), name="image")
    inputs = [image]
    if arch == "seed":
        if n_features:
            raise ValueError("the seed network takes no hand-crafted features")
        l2 = regularizers.L2(0.001)
        x = image
        for filters in (32, 64, 128):
            x = layers.Conv2D(filters, 3, padding="same", activation="relu", kernel_regularizer=l2)(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Flatten()(x)
        x = layers.Dense(128, activation="relu", kernel_regularizer=l2)(x)
        x = layers.Dense(64, activation="relu", kernel_regularizer=l2)(x)
        x = layers.Dropout(0.3)(x)
        x = layers.Dense(n_targets, activation="sigmoid", kernel_regularizer=l2)(x)
        out = layers.Rescaling(scale=246.0, offset=10.0, name="rank")(x)
        model = keras.Model(inputs, out, name="seed")
        model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
        return model
    if arch != "compact":
        raise ValueError(f"unknown architecture {arch!r}; choose 'compact', 'seed' or 'patch'")
    l2 = regularizers.L2(1e-4)
    x = image
    for j, filters in enumerate((16, 32, 64, 64)):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", kernel_regularizer=l2)(x)
        if j < 3:
            x = layers.MaxPooling2D(2)(x)
    x = layers.GlobalAveragePooling2D()(x)
    if n_features:
        feats = keras.Input((n_features,), name="features")
        inputs.append(feats)
        f = layers.Dense(16, activation="relu", kernel_regularizer=l2)(feats)
        x = layers.Concatenate()([x, f])
    x = layers.Dense(64, activation="relu", kernel_regularizer=l2)(x)
    x = layers.Dropout(0.2)(x)
    out = _monotone_head(keras, layers, x, n_targets, init_logk)
    model = keras.Model(inputs, out, name="compact")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mae")
    return model
