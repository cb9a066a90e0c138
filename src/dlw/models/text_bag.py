"""The text branch of the table networks: an embedding bag over hashed n-gram ids.

Each text column arrives as ``text_ids`` (int32) and ``text_weights`` (float32), both
``(batch, columns, n-grams)`` (``dlw.text``). ``HashedBagEmbedding`` looks up a learned
vector per id, in one table shared by the columns, and returns each column's weighted mean
of them (fastText's bag of n-grams): ``(batch, columns * dim)``. Padding carries weight 0;
an empty text gives a zero vector. A registered Keras serializable (package ``dlw``), so
``model.keras`` loads with ``safe_mode=True``; ``keras.ops`` only.
"""

from __future__ import annotations

import keras
from keras import ops

PACKAGE = "dlw"


@keras.saving.register_keras_serializable(package=PACKAGE)
class HashedBagEmbedding(keras.layers.Layer):
    """Weighted mean of learned bucket vectors, per text column.

    Args:
        n_ids: rows of the embedding table (the hashed ids of every n-gram kind).
        dim: width of each vector, and of each column's output.
        seed: seed of the initializer.
    """

    def __init__(self, n_ids: int, dim: int, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.n_ids, self.dim, self.seed = int(n_ids), int(dim), seed

    def build(self, input_shape):
        init = keras.initializers.RandomNormal(0.0, 0.1, seed=self.seed)
        self.table = self.add_weight(name="table", shape=(self.n_ids, self.dim), initializer=init)

    def call(self, ids, weights):
        ids = ops.clip(ops.cast(ids, "int32"), 0, self.n_ids - 1)
        weights = ops.cast(weights, "float32")
        vectors = ops.take(self.table, ids, axis=0)  # (batch, columns, n-grams, dim)
        total = ops.sum(vectors * ops.expand_dims(weights, -1), axis=2)
        mean = total / ops.maximum(ops.sum(weights, axis=2, keepdims=True), 1e-6)
        return ops.reshape(mean, (-1, mean.shape[1] * self.dim))

    def compute_output_shape(self, ids_shape, weights_shape=None):
        return (ids_shape[0], ids_shape[1] * self.dim)

    def get_config(self):
        return {**super().get_config(), "n_ids": self.n_ids, "dim": self.dim, "seed": self.seed}


def text_branch(inputs: dict, train_inputs: dict, *, n_ids: int, dim: int, seed: int):
    """Add the ``text_ids`` and ``text_weights`` inputs to ``inputs``; returns the bag's output tensor."""
    columns, length = train_inputs["text_ids"].shape[1:]
    inputs["text_ids"] = keras.Input(shape=(columns, length), name="text_ids", dtype="int32")
    inputs["text_weights"] = keras.Input(shape=(columns, length), name="text_weights", dtype="float32")
    return HashedBagEmbedding(n_ids, dim, seed=seed, name="text_embedding")(inputs["text_ids"], inputs["text_weights"])
