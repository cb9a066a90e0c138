"""A convolutional network for images, built from scratch.

The model takes ``uint8`` images ``(height, width, channels)`` as they were
decoded, so the saved ``model.keras`` carries its own scaling: augmentation
layers (active in training only), ``Rescaling(1/255)``, then one block per entry
of ``conv_filters`` (3x3 convolution, optional batch normalization, ReLU, 2x2
max pooling while the feature map is at least 4 pixels wide), global average
pooling, the dense layers with dropout, and the output layer.
"""

from __future__ import annotations

from dlw.objectives import Objective


def augmentation_layers(augment) -> list:
    """Keras ``Random*`` layers for ``data.augment`` (an ``AugmentConfig`` or None); empty if none asked."""
    import keras

    if augment is None:
        return []
    layers = []
    if augment.flip:
        layers.append(keras.layers.RandomFlip(augment.flip, name="augment_flip"))
    if augment.rotation:
        layers.append(keras.layers.RandomRotation(augment.rotation, fill_mode="nearest", name="augment_rotation"))
    if augment.zoom:
        layers.append(keras.layers.RandomZoom(augment.zoom, fill_mode="nearest", name="augment_zoom"))
    if augment.translation:
        layers.append(
            keras.layers.RandomTranslation(augment.translation, augment.translation, fill_mode="nearest", name="augment_translation")
        )
    if augment.contrast:
        layers.append(keras.layers.RandomContrast(augment.contrast, value_range=(0, 255), name="augment_contrast"))
    return layers


def build_cnn(
    input_shape: tuple[int, int, int],
    objective: Objective,
    conv_filters=(32, 64, 128),
    dense_layers=(128,),
    dropout: float = 0.3,
    batch_norm: bool = True,
    augment=None,
):
    """Build (but do not compile) the CNN for ``input_shape`` = (height, width, channels)."""
    import keras

    inputs = keras.Input(shape=tuple(input_shape), dtype="uint8", name="image")
    x = inputs  # Rescaling casts the uint8 pixels to float itself
    for layer in augmentation_layers(augment):
        x = layer(x)
    x = keras.layers.Rescaling(1.0 / 255, name="rescale")(x)
    size = min(input_shape[0], input_shape[1])
    for i, filters in enumerate(conv_filters, start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=not batch_norm, name=f"conv_{i}")(x)
        if batch_norm:
            # momentum 0.9 (PyTorch's default), not Keras' 0.99: with a few hundred images an epoch is
            # a handful of steps, and 0.99's moving statistics lag so far behind that validation
            # accuracy sits at chance for the first epochs and early stopping gives up on a model
            # that is in fact learning.
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn_{i}")(x)
        x = keras.layers.Activation("relu", name=f"relu_{i}")(x)
        if size >= 4:
            x = keras.layers.MaxPooling2D(2, name=f"pool_{i}")(x)
            size //= 2
    x = keras.layers.GlobalAveragePooling2D(name="features")(x)
    return keras.Model(inputs=inputs, outputs=dense_head(x, objective, dense_layers, dropout), name="dlw_cnn")


def dense_head(x, objective: Objective, dense_layers, dropout: float, prefix: str = ""):
    """Dense(relu) + Dropout per entry of ``dense_layers``, then the task's output layer, named ``output``."""
    import keras

    for i, units in enumerate(dense_layers, start=1):
        x = keras.layers.Dense(units, activation="relu", name=f"{prefix}dense_{i}")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"{prefix}dropout_{i}")(x)
    return keras.layers.Dense(objective.output_units, activation=objective.output_activation, name="output")(x)
