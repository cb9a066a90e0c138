"""The text branch of the table networks: an embedding bag over hashed n-gram ids.

Each text column arrives as ``text_ids`` (int32) and ``text_weights`` (float32), both
``(batch, columns, n-grams)`` (``dlw.text``). ``HashedBagEmbedding`` looks up a learned
vector per id, in one table shared by the columns, and returns each column's weighted mean
of them (fastText's bag of n-grams): ``(batch, columns * dim)``. Padding carries weight 0;
an empty text gives a zero vector. In training each n-gram is dropped with probability
``dropout`` (the mean is over those kept): without it the table memorises the train rows
within a few epochs (bench/RESULTS.md). A registered Keras serializable (package ``dlw``), so
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
        dropout: in training, the probability that an n-gram is left out of the mean.
        seed: seed of the initializer and of the dropout.
    """

    def __init__(self, n_ids: int, dim: int, dropout: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.n_ids, self.dim, self.dropout, self.seed = int(n_ids), int(dim), float(dropout), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        init = keras.initializers.RandomNormal(0.0, 0.1, seed=self.seed)
        self.table = self.add_weight(name="table", shape=(self.n_ids, self.dim), initializer=init)

    def call(self, ids, weights, training=None):
        ids = ops.clip(ops.cast(ids, "int32"), 0, self.n_ids - 1)
        weights = ops.cast(weights, "float32")
        if training and self.dropout > 0:
            kept = keras.random.uniform(ops.shape(weights), seed=self.seed_generator) >= self.dropout
            weights = weights * ops.cast(kept, "float32")
        vectors = ops.take(self.table, ids, axis=0)  # (batch, columns, n-grams, dim)
        total = ops.sum(vectors * ops.expand_dims(weights, -1), axis=2)
        mean = total / ops.maximum(ops.sum(weights, axis=2, keepdims=True), 1e-6)
        return ops.reshape(mean, (-1, mean.shape[1] * self.dim))

    def compute_output_shape(self, ids_shape, weights_shape=None):
        return (ids_shape[0], ids_shape[1] * self.dim)

    def get_config(self):
        return {**super().get_config(), "n_ids": self.n_ids, "dim": self.dim, "dropout": self.dropout, "seed": self.seed}


def text_branch(inputs: dict, train_inputs: dict, *, n_ids: int, dim: int, seed: int | None, dropout: float = 0.8):
    """Add the ``text_ids`` and ``text_weights`` inputs to ``inputs``; returns the bag's output tensor."""
    columns, length = train_inputs["text_ids"].shape[1:]
    inputs["text_ids"] = keras.Input(shape=(columns, length), name="text_ids", dtype="int32")
    inputs["text_weights"] = keras.Input(shape=(columns, length), name="text_weights", dtype="float32")
    bag = HashedBagEmbedding(n_ids, dim, dropout=dropout, seed=seed, name="text_embedding")
    return bag(inputs["text_ids"], inputs["text_weights"])
